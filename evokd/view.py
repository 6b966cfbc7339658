"""The live terminal view of a run: the current node with a spinner, and a row per finished round."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from evokd.core.records import LLMCall
from evokd.graph.context import Events

NODE_TEXT = {
    "seed": "training the student on the seed set",
    "probe": "probing the student on the latest batch",
    "analyst": "Analyst: reading the student's mistakes",
    "generator": "Generator: writing hard and easy samples",
    "verifier": "Verifier: labelling the new samples",
    "self_check": "checking the Generator's own labels",
    "augmenter": "LLM2LLM: writing look-alikes of the wrong seed examples",
    "static_gen": "static: writing texts for each label",
    "augment_gen": "augment: paraphrasing the seed examples",
    "trainer": "Trainer: training and evaluating the student",
    "decide": "deciding whether to go on",
    "finish": "scoring the best round on test",
}


class LiveView:
    def __init__(self, console: Console | None = None, metric: str = "dev F1") -> None:
        self.console = console or Console()
        self.metric = metric
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

    def events(self) -> Events:
        return Events(node_started=self.node_started, round_finished=self.round_finished,
                      llm_call=self.llm_call, progress=self.progress)

    def say(self, message: str) -> None:
        self.status.plain = message
        self.live.refresh()

    def node_started(self, node: str, round: int) -> None:
        self.node_started_at = time.time()
        self.status.plain = f"round {round} · {NODE_TEXT.get(node, node)}"
        self.detail.plain = ""

    def llm_call(self, call: LLMCall) -> None:
        self.tokens += call.tokens_in + call.tokens_out
        note = f" · {call.error}" if call.error else ""
        self.detail.plain = (f"last teacher call: {call.tokens_in} tokens in, {call.tokens_out} out, "
                             f"{call.latency_s:.1f}s{note}")

    def progress(self, what: str, done: int, total: int) -> None:
        self.detail.plain = f"{what}: step {done}/{total}"

    def round_finished(self, m: dict[str, Any]) -> None:
        change = "" if self.prev_f1 is None else f"{m['f1'] - self.prev_f1:+.4f}"
        self.prev_f1 = m["f1"]
        best = " *" if m["best_round"] == m["round"] else ""
        self.table.add_row(str(m["round"]), f"{m['f1']:.4f}{best}", change, str(m["accepted"]),
                           str(m["rejected"]), str(m["tokens_in"] + m["tokens_out"]),
                           f"{m['seconds']['total']:.0f}s")
