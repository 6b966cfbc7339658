"""Set up and run (or resume) one EvoKD run: run folder, teacher, data, checkpointer, graph."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph.state import CompiledStateGraph

import evokd
from evokd.agents.client import Budget, TeacherClient, make_chat_model, resolve_mode
from evokd.agents.recording import Recording
from evokd.config import RunConfig, dump_config, load_config
from evokd.core.files import write_atomic
from evokd.core.records import RoundMetrics, RunHeader, RunResult
from evokd.core.runfolder import RunFolder
from evokd.core.trace import TraceWriter, read_trace
from evokd.graph.build import build_graph, recursion_limit
from evokd.graph.callbacks import Callback, CallbackList, TraceCallback
from evokd.graph.context import Context, StudentHolder
from evokd.graph.methods import recorded_name
from evokd.graph.prepare import Prepared, prepare
from evokd.teacher import local_teacher
from evokd.tracking import MlflowLogger, observers_for

log = logging.getLogger("evokd.run")
THREAD: RunnableConfig = {"configurable": {"thread_id": "evokd"}}


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
    callbacks: Iterable[Callback] = (),
    chat_model: Any = None,
    base_url: str | None = None,
    on_status: Callable[[str], None] | None = None,
) -> Executed:
    """Run the graph to its end. `prepared` is what `prepare(cfg)` checked before the run folder
    existed (else it is prepared here); `callbacks` hear what the run does after the trace does
    (graph/callbacks.py: the live view, a tracker); `chat_model` replaces the teacher (tests, replays)."""
    prepared = prepared if prepared is not None else prepare(cfg)
    if run is None:
        run = RunFolder.create(cfg.runs_dir, cfg.name)
        write_atomic(run.config, dump_config(cfg))
    if resume and recording is None:
        # Calls an interrupted node already paid for are answered from the trace, not asked again.
        recording = Recording.from_run(run.root)
    secret = os.environ.get(cfg.llm.api_key_env, "")
    trace = TraceWriter(run.trace, secrets=[secret])
    trackers = [TrackerCallback(logger, cfg, run) for logger in observers_for(cfg)]  # when [tracking] names one
    listeners = CallbackList([TraceCallback(trace), *callbacks, *trackers])
    try:
        if chat_model is not None:
            endpoint: contextlib.AbstractContextManager = contextlib.nullcontext(
                (base_url or "scripted", False))
        else:
            endpoint = teacher_endpoint(cfg, run, on_status)
        with endpoint as (url, embedded):
            model = chat_model if chat_model is not None else make_chat_model(cfg.llm, url)
            loop = cfg.loop
            budget = Budget(loop.max_tokens, loop.max_cost, loop.price_in_per_1k, loop.price_out_per_1k)
            teacher = TeacherClient(model, cfg.llm, mode=resolve_mode(cfg.llm, embedded), base_url=url,
                                    on_call=listeners.on_llm_call, recording=recording, budget=budget,
                                    run_seed=cfg.sampling.seed)
            listeners.on_run_start(RunHeader(
                run_id=run.root.name, evokd_version=evokd.__version__, created_at=time.time(),
                config_hash=cfg.digest(), config=cfg.model_dump(mode="json"), teacher_model=cfg.llm.model,
                teacher_url=url, student_model=cfg.student.model,
                seeds={"sampling": cfg.sampling.seed, "student": cfg.student.seed},
                libraries=library_versions(), resumed=resume, parent=parent, method=prepared.method.name,
                prompts=prepared.prompts.digests()))
            ctx = Context(cfg=cfg, run=run, teacher=teacher, prompts=prepared.prompts, data=prepared.data,
                          holder=StudentHolder(cfg), method=prepared.method, callbacks=listeners,
                          method_data=prepared.method_data)
            state = _invoke(ctx, resume)
    finally:
        trace.close()
        for tracker in trackers:
            tracker.stopped()
    return Executed(run=run, state=state)



class TrackerCallback(Callback):
    """An experiment tracker (evokd/tracking.py) hearing the run; a run that stops before its end (an
    error, Ctrl-C) is marked stopped there, and a resume continues the tracker's run."""

    def __init__(self, logger: MlflowLogger, cfg: RunConfig, run: RunFolder) -> None:
        self.logger, self.cfg, self.run = logger, cfg, run
        self.ended = False

    def on_run_start(self, header: RunHeader) -> None:
        self.logger.on_run_start(self.cfg, self.run, header.resumed)

    def on_round_end(self, metrics: RoundMetrics) -> None:
        self.logger.on_round_end(metrics.model_dump(mode="json"))

    def on_run_end(self, result: RunResult) -> None:
        self.ended = True
        self.logger.on_run_end(result)

    def stopped(self) -> None:
        if not self.ended:
            self.logger.on_run_end(None)


def _invoke(ctx: Context, resume: bool) -> dict[str, Any]:
    conn = sqlite3.connect(ctx.run.checkpoints_db, check_same_thread=False)
    try:
        # "sync": each step's checkpoint is on disk before the next step starts. LangGraph's default,
        # "async", writes it while the next step runs, so a kill -9 could land after `decide` had
        # deleted the previous round's student but before the trainer's step was saved: the resume
        # then redid the trainer from a checkpoint that was gone (found by tests/test_soak.py).
        graph = build_graph(ctx.method, ctx.cfg.loop).compile(checkpointer=SqliteSaver(conn))
        config: RunnableConfig = {"configurable": {"thread_id": "evokd"},
                                  "recursion_limit": recursion_limit(ctx.method, ctx.cfg.loop)}
        if resume:
            snapshot = graph.get_state(config)
            if not snapshot.values:
                # Stopped before the first checkpoint: nothing was finished, so start from the top.
                return graph.invoke({"round": 0}, config=config, context=ctx, durability="sync")
            if waits_on_a_removed_node(graph, config):
                # The run stopped where a node of its round used to be (0.2's default loop opened each
                # round with "probe"): decide's routing is taken again, into the round as it is now.
                graph.update_state(config, None, as_node="decide")
                snapshot = graph.get_state(config)
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


def waits_on_a_removed_node(graph: CompiledStateGraph[Any, Any, Any, Any], config: RunnableConfig) -> bool:
    """Whether the last checkpoint triggered a node this graph does not have."""
    checkpointer = graph.checkpointer
    saved = checkpointer.get_tuple(config) if isinstance(checkpointer, BaseCheckpointSaver) else None
    if saved is None:
        return False
    checkpoint = saved.checkpoint
    for channel, version in checkpoint["channel_versions"].items():
        node = channel.removeprefix("branch:to:")
        if channel.startswith("branch:to:") and node not in graph.nodes \
                and checkpoint["versions_seen"].get(node, {}).get(channel) != version:
            return True
    return False


def resume_config(run_dir: Path, overrides: list[str] | None = None) -> tuple[RunConfig, RunFolder]:
    run = RunFolder(Path(run_dir))
    if not run.config.exists():
        raise RunError(f"{run_dir}: not a run folder (no config.toml)")
    cfg = load_config(run.config, overrides)
    header = recorded_header(run)
    if header is not None and (meant := recorded_name(cfg.loop.method, header.evokd_version)) != cfg.loop.method:
        cfg = load_config(run.config, [*(overrides or []), f"loop.method={json.dumps(meant)}"])
    if header is not None and "final_fit" not in header.config.get("loop", {}) and cfg.loop.final_fit:
        # Recorded before runs had a final fit (evokd 0.2): resumed and rerun as it ran, without one.
        cfg = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"final_fit": False})})
    if header is not None and "ship" not in header.config.get("final_fit", {"ship": None}):
        # Recorded before final_fit.ship: the final fit shipped whatever dev said; so it does again.
        cfg = cfg.model_copy(update={"final_fit": cfg.final_fit.model_copy(update={"ship": "final_fit"})})
    return cfg, run


def recorded_header(run: RunFolder) -> RunHeader | None:
    """The header of the run's trace: which evokd recorded it."""
    if not run.trace.exists():
        return None
    return next((r for r in read_trace(run.trace) if isinstance(r, RunHeader)), None)
