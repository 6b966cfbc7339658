"""Who hears what a run does: one list of callbacks, carried by the Context (the HF Trainer pattern).

The runner, the node wrapper, the nodes and the teacher client each say a thing once, to the list;
the trace (`TraceCallback`, always first, so a record is on disk before anything shows it), the
live view (evokd/view.py) and any tracker listen. A tracker is a `Callback` that overrides what it
needs, e.g. for MLflow: `on_run_start` (start a run, log `header.config` as params), `on_llm_call`
(count tokens), `on_round_end` (log the round's dev F1 and spend at step `metrics.round`),
`on_run_end` (log the result, end the run); `execute(..., callbacks=[MyTracker()])` adds it.
"""

from __future__ import annotations

from collections.abc import Iterable

from evokd.core.records import Decision, LLMCall, NodeTurn, RoundMetrics, RunHeader, RunResult
from evokd.core.trace import TraceWriter


class Callback:
    """One listener; every hook does nothing until overridden. Hooks run in the run's thread, except
    `on_llm_call`, which Verifier batches labelled at once (llm.concurrency) call from theirs."""

    def on_run_start(self, header: RunHeader) -> None:
        """The run starts, or resumes (`header.resumed`): its config, teacher, seeds and versions."""

    def on_node_start(self, node: str, round: int) -> None:
        """A node starts (round 0 is the seed round)."""

    def on_llm_call(self, call: LLMCall) -> None:
        """A teacher call ended: one attempt, with its prompt, reply, tokens and time."""

    def on_progress(self, what: str, done: int, total: int) -> None:
        """A step of something long (training)."""

    def on_round_end(self, metrics: RoundMetrics) -> None:
        """A round's student is trained and evaluated (metrics.jsonl's line)."""

    def on_decision(self, decision: Decision) -> None:
        """Whether the loop goes on, and why it stops."""

    def on_node_end(self, turn: NodeTurn) -> None:
        """A node ended (with `turn.error` when it failed): its time and a short view of its output."""

    def on_run_end(self, result: RunResult) -> None:
        """The run finished: result.json's record."""


class CallbackList(Callback):
    """The callbacks of a run, told in order."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_run_start(self, header: RunHeader) -> None:
        for callback in self.callbacks:
            callback.on_run_start(header)

    def on_node_start(self, node: str, round: int) -> None:
        for callback in self.callbacks:
            callback.on_node_start(node, round)

    def on_llm_call(self, call: LLMCall) -> None:
        for callback in self.callbacks:
            callback.on_llm_call(call)

    def on_progress(self, what: str, done: int, total: int) -> None:
        for callback in self.callbacks:
            callback.on_progress(what, done, total)

    def on_round_end(self, metrics: RoundMetrics) -> None:
        for callback in self.callbacks:
            callback.on_round_end(metrics)

    def on_decision(self, decision: Decision) -> None:
        for callback in self.callbacks:
            callback.on_decision(decision)

    def on_node_end(self, turn: NodeTurn) -> None:
        for callback in self.callbacks:
            callback.on_node_end(turn)

    def on_run_end(self, result: RunResult) -> None:
        for callback in self.callbacks:
            callback.on_run_end(result)


class TraceCallback(Callback):
    """trace.jsonl: the run header, every teacher call, node turn and decision, one typed record each."""

    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer

    def on_run_start(self, header: RunHeader) -> None:
        self.writer.write(header)

    def on_llm_call(self, call: LLMCall) -> None:
        self.writer.write(call)

    def on_decision(self, decision: Decision) -> None:
        self.writer.write(decision)

    def on_node_end(self, turn: NodeTurn) -> None:
        self.writer.write(turn)
