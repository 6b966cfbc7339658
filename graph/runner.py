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
from evokd.agents.llm import Budget, Teacher, make_chat_model, resolve_mode
from evokd.agents.recording import Recording
from evokd.config import RunConfig, dump_config, load_config
from evokd.core.records import LLMCall, RunHeader
from evokd.core.records import RunResult as ResultRecord
from evokd.core.runfolder import RunFolder
from evokd.core.trace import TraceWriter, read_trace, write_atomic
from evokd.graph.build import build_graph, recursion_limit
from evokd.graph.context import Context, Events, StudentHolder
from evokd.graph.prepare import Prepared, prepare
from evokd.tracking import observers_for

log = logging.getLogger("evokd.run")
THREAD = {"configurable": {"thread_id": "evokd"}}


class RunError(Exception):
    """A run could not start or continue; the message is one line for the user."""


@dataclass
class RunResult:
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
) -> RunResult:
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
    observers = observers_for(cfg)  # the experiment tracker, when [tracking] names one
    outcome: ResultRecord | None = None
    try:
        if chat_model is not None:
            endpoint: contextlib.AbstractContextManager = contextlib.nullcontext(
                (base_url or "scripted", False))
        else:
            endpoint = teacher_endpoint(cfg, run, on_status)
        with endpoint as (url, embedded):
            model = chat_model if chat_model is not None else make_chat_model(cfg.llm, url)
            events = _with_observers(events or Events(), observers)

            def on_call(call: LLMCall) -> None:
                trace.write(call)
                events.llm_call(call)

            loop = cfg.loop
            budget = Budget(loop.max_tokens, loop.max_cost, loop.price_in_per_1k, loop.price_out_per_1k)
            teacher = Teacher(model, cfg.llm, mode=resolve_mode(cfg.llm, embedded), base_url=url,
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
            for observer in observers:
                observer.on_run_start(cfg, run, resume)
            state = _invoke(ctx, resume)
            if run.result.exists():
                outcome = ResultRecord.model_validate_json(run.result.read_text(encoding="utf-8"))
    finally:
        trace.close()
        for observer in observers:  # outcome None: stopped before the end (an error, Ctrl-C)
            observer.on_run_end(outcome)
    return RunResult(run=run, state=state)


def _with_observers(events: Events, observers: list[Any]) -> Events:
    """`events` with each observer's on_round_end called after the live view's round_finished."""
    if not observers:
        return events
    shown = events.round_finished

    def round_finished(metrics: dict[str, Any]) -> None:
        shown(metrics)
        for observer in observers:
            observer.on_round_end(metrics)

    return Events(node_started=events.node_started, round_finished=round_finished, llm_call=events.llm_call,
                  progress=events.progress)


def _invoke(ctx: Context, resume: bool) -> dict[str, Any]:
    conn = sqlite3.connect(ctx.run.checkpoints_db, check_same_thread=False)
    try:
        graph = build_graph(ctx.cfg.loop.method, ctx.cfg.loop.separate_verifier).compile(
            checkpointer=SqliteSaver(conn))
        config = {**THREAD, "recursion_limit": recursion_limit(ctx.cfg.loop.max_rounds)}
        # "sync": each step's checkpoint is on disk before the next step starts. LangGraph's default,
        # "async", writes it while the next step runs, so a kill -9 could land after `decide` had
        # deleted the previous round's student but before the trainer's step was saved: the resume
        # then redid the trainer from a checkpoint that was gone (found by tests/test_soak.py).
        if resume:
            snapshot = graph.get_state(config)
            if not snapshot.values:
                # Stopped before the first checkpoint: nothing was finished, so start from the top.
                return graph.invoke({"round": 0}, config=config, context=ctx, durability="sync")
            if not snapshot.next and not snapshot.tasks:
                # Finished. (A node that ended just before a kill -9 saved its writes but not the next
                # checkpoint: `next` is then empty while its task is still listed, and invoke goes on.)
                return dict(snapshot.values)
            # What the finished nodes spent still counts against the budget.
            spent = snapshot.values.get("usage", {})
            ctx.teacher.budget.tokens = int(spent.get("tokens_in", 0) + spent.get("tokens_out", 0))
            ctx.teacher.budget.cost = spent.get("cost", 0.0)
            return graph.invoke(None, config=config, context=ctx, durability="sync")
        return graph.invoke({"round": 0}, config=config, context=ctx, durability="sync")
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
