"""The live terminal view of a run: the current node with a spinner, and a row per finished round.

A callback of the run (graph/callbacks.py): it hears the nodes start, the teacher calls, the
training steps and the rounds end."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from evokd.core.records import LLMCall, RoundMetrics
from evokd.graph.callbacks import Callback


class LiveView(Callback):
    def __init__(self, console: Console | None = None, metric: str = "dev F1",
                 doing: dict[str, str] | None = None) -> None:
        """`doing`: what each node is doing, as the method's steps say it (graph.build.node_texts)."""
        self.console = console or Console()
        self.metric = metric
        self.doing = doing or {}
        self.table = Table(title="rounds", expand=False)
        for col in ("round", metric, "change", "accepted", "rejected", "tokens", "time"):
            self.table.add_column(col, justify="right")
        self.status = Text("starting")
        self.detail = Text("", style="dim")
        self.spinner = Spinner("dots", text=self.status)
        self.live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False)
        self.prev_f1: float | None = None
        self.round_started = time.time()
        self.node_started_at = time.time()
        self.tokens = 0

    def _render(self, finished: str | None = None) -> Group:
        if finished is not None:
            return Group(self.table, Text(finished, style="bold"))
        return Group(self.table, self.spinner, self.detail)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        # The last frame stays on screen: no spinner left turning beside a finished run.
        self.live.update(self._render("finished" if exc[0] is None else "stopped"))
        self.live.__exit__(*exc)

    def say(self, message: str) -> None:
        self.status.plain = message
        self.live.refresh()

    def on_node_start(self, node: str, round: int) -> None:
        self.node_started_at = time.time()
        self.status.plain = f"round {round} · {self.doing.get(node, node)}"
        self.detail.plain = ""

    def on_llm_call(self, call: LLMCall) -> None:
        self.tokens += call.tokens_in + call.tokens_out
        note = f" · {call.error}" if call.error else ""
        self.detail.plain = (f"last teacher call: {call.tokens_in} tokens in, {call.tokens_out} out, "
                             f"{call.latency_s:.1f}s{note}")

    def on_progress(self, what: str, done: int, total: int) -> None:
        # Training counts steps; encoding a pool counts texts, up to hundreds of thousands.
        self.detail.plain = f"{what}: {done:,}/{total:,}" + (f" ({done / total:.0%})" if total > 1000 else "")

    def on_round_end(self, metrics: RoundMetrics) -> None:
        m = metrics
        change = "" if self.prev_f1 is None else f"{m.f1 - self.prev_f1:+.4f}"
        self.prev_f1 = m.f1
        best = " *" if m.best_round == m.round else ""
        self.table.add_row(str(m.round), f"{m.f1:.4f}{best}", change, str(m.accepted), str(m.rejected),
                           str(m.tokens_in + m.tokens_out), f"{m.seconds['total']:.0f}s")
