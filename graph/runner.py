"""Set up and run (or resume) one EvoKD run: run folder, teacher, data, checkpointer, graph."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import platform
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

import evokd
from evokd.agents.client import Budget, TeacherClient, make_chat_model, resolve_mode
from evokd.agents.recording import Recording
from evokd.config import RunConfig, dump_config, load_config
from evokd.core.files import write_atomic
from evokd.core.records import LLMCall, RunHeader
from evokd.core.runfolder import RunFolder
from evokd.core.trace import TraceWriter, read_trace
from evokd.graph.build import build_graph, recursion_limit
from evokd.graph.context import Context, Events, StudentHolder
from evokd.graph.prepare import Prepared, prepare

log = logging.getLogger("evokd.run")
THREAD = {"configurable": {"thread_id": "evokd"}}


class RunError(Exception):
    """A run could not start or continue; the message is one line for the user."""


@dataclass
class Executed:
    """A run as `execute` leaves it: its folder and the graph's final state (result.json, the
    RunResult, is in the folder once the run has finished)."""

    run: RunFolder
    state: dict[str, Any]


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "langgraph", "langchain-openai", "pydantic", "seqeval"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


@contextlib.contextmanager
def teacher_endpoint(cfg: RunConfig, run: RunFolder, on_status: Any = None) -> Iterator[tuple[str, bool]]:
    """(base_url, embedded): the configured endpoint, or the embedded teacher for the run's duration."""
    if cfg.llm.base_url:
        yield cfg.llm.base_url, False
        return
    from evokd.teacher import local_teacher

    with local_teacher(cfg.teacher, run.root, on_status=on_status) as info:
        yield info.base_url, True


def execute(
    cfg: RunConfig,
    *,
    run: RunFolder | None = None,
    prepared: Prepared | None = None,
    resume: bool = False,
    recording: Recording | None = None,
    parent: str | None = None,
    events: Events | None = None,
    chat_model: Any = None,
    base_url: str | None = None,
    on_status: Any = None,
) -> Executed:
    """Run the graph to its end. `prepared` is what `prepare(cfg)` checked before the run folder
    existed (else it is prepared here); `chat_model` replaces the teacher (tests, replays)."""
    prepared = prepared if prepared is not None else prepare(cfg)
    data, prompts = prepared.data, prepared.prompts
    if run is None:
        run = RunFolder.create(cfg.runs_dir, cfg.name)
        write_atomic(run.config, dump_config(cfg))
    if resume and recording is None:
        # Calls an interrupted node already paid for are answered from the trace, not asked again.
        recording = Recording.from_run(run.root)
    secret = os.environ.get(cfg.llm.api_key_env, "")
    trace = TraceWriter(run.trace, secrets=[secret])
    try:
        if chat_model is not None:
            endpoint: contextlib.AbstractContextManager = contextlib.nullcontext(
                (base_url or "scripted", False))
        else:
            endpoint = teacher_endpoint(cfg, run, on_status)
        with endpoint as (url, embedded):
            model = chat_model if chat_model is not None else make_chat_model(cfg.llm, url)
            events = events or Events()

            def on_call(call: LLMCall) -> None:
                trace.write(call)
                events.llm_call(call)

            loop = cfg.loop
            budget = Budget(loop.max_tokens, loop.max_cost, loop.price_in_per_1k, loop.price_out_per_1k)
            teacher = TeacherClient(model, cfg.llm, mode=resolve_mode(cfg.llm, embedded), base_url=url,
                              on_call=on_call, recording=recording, budget=budget, run_seed=cfg.sampling.seed)
            trace.write(RunHeader(
                run_id=run.root.name, evokd_version=evokd.__version__, created_at=time.time(),
                config_hash=cfg.digest(), config=cfg.model_dump(mode="json"), teacher_model=cfg.llm.model,
                teacher_url=url, student_model=cfg.student.model,
                seeds={"sampling": cfg.sampling.seed, "student": cfg.student.seed},
                libraries=library_versions(), resumed=resume, parent=parent, method=cfg.loop.method,
                prompts=prompts.digests()))
            ctx = Context(cfg=cfg, run=run, teacher=teacher, prompts=prompts, data=data,
                          holder=StudentHolder(cfg), trace=trace, events=events)
            state = _invoke(ctx, resume)
    finally:
        trace.close()
    return Executed(run=run, state=state)


def _invoke(ctx: Context, resume: bool) -> dict[str, Any]:
    conn = sqlite3.connect(ctx.run.checkpoints_db, check_same_thread=False)
    try:
        graph = build_graph(ctx.cfg.loop.method, ctx.cfg.loop.separate_verifier).compile(
            checkpointer=SqliteSaver(conn))
        config = {**THREAD, "recursion_limit": recursion_limit(ctx.cfg.loop.max_rounds)}
        if resume:
            snapshot = graph.get_state(config)
            if not snapshot.values:
                # Stopped before the first checkpoint: nothing was finished, so start from the top.
                return graph.invoke({"round": 0}, config=config, context=ctx)
            if not snapshot.next and not snapshot.tasks:
                # Finished. (A node that ended just before a kill -9 saved its writes but not the next
                # checkpoint: `next` is then empty while its task is still listed, and invoke goes on.)
                return dict(snapshot.values)
            # What the finished nodes spent still counts against the budget.
            spent = snapshot.values.get("usage", {})
            ctx.teacher.budget.tokens = int(spent.get("tokens_in", 0) + spent.get("tokens_out", 0))
            ctx.teacher.budget.cost = spent.get("cost", 0.0)
            return graph.invoke(None, config=config, context=ctx)
        return graph.invoke({"round": 0}, config=config, context=ctx)
    finally:
        conn.close()


def resume_config(run_dir: Path, overrides: list[str] | None = None) -> tuple[RunConfig, RunFolder]:
    run = RunFolder(Path(run_dir))
    if not run.config.exists():
        raise RunError(f"{run_dir}: not a run folder (no config.toml)")
    cfg = load_config(run.config, overrides)
    if cfg.loop.method == "evokd" and recorded_before_default_loop(run):
        # Until 0.2.0 "evokd" named the paper's loop: a resume or replay of such a run stays on it.
        cfg = load_config(run.config, [*(overrides or []), 'loop.method="evokd-paper"'])
    return cfg, run


def recorded_before_default_loop(run: RunFolder) -> bool:
    """Whether the run was recorded by evokd 0.1 (whose loop.method "evokd" is today's evokd-paper)."""
    if not run.trace.exists():
        return False
    header = next((r for r in read_trace(run.trace) if isinstance(r, RunHeader)), None)
    return header is not None and header.evokd_version.startswith("0.1.")
