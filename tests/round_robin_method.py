"""A method that exists only for the tests: adding a method is this one module and one registry line.

`loop.method = "round-robin"`: each round asks the teacher for texts of one label, the labels in
turn (the static agent's prompt), and keeps them under that label; it stops once every label was
asked twice. It owns a node (`label_gen`), a config check, a stop rule, a benchmark row and an
in-memory cache (`prepare`: how often each label was asked in this process).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from langgraph.runtime import Runtime

from evokd.agents.static import write_for_label
from evokd.config import LoopConfig, RunConfig
from evokd.core.records import SampleRecord
from evokd.core.samples import accepted_keys, as_rows, precheck
from evokd.graph.context import Context, TaskData
from evokd.graph.estimate import Asks
from evokd.graph.method import BenchRow, Method, Step, Stop
from evokd.graph.state import RunState
from evokd.graph.steps import trainer


def round_steps(loop: LoopConfig) -> list[Step]:
    return [Step("label_gen", label_gen, "round-robin: writing texts of this round's label"),
            Step("trainer", trainer, "Trainer: training and evaluating the student")]


def label_gen(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    labels, n = ctx.cfg.task.labels, ctx.cfg.loop.n_easy
    label = labels[(state["round"] - 1) % len(labels)]
    ctx.method_data[label] += 1
    answer = write_for_label(ctx.teacher, ctx.prompts, ctx.cfg.task, round=state["round"], label=label, n=n)
    seen = accepted_keys(state.get("samples", []))
    records = []
    for text in answer.reply.texts[:n] if answer.reply is not None else []:
        record = SampleRecord(round=state["round"], text=text, intent="easy", label=label, accepted=False,
                              method=ctx.method.name)
        record.reason = precheck(text, seen, ctx.data.eval_keys, ctx.cfg.loop.max_text_chars)
        record.accepted = record.reason is None
        records.append(record)
    return {"batch": as_rows(records), "calls": answer.calls}


def each_label_twice(state: RunState) -> Stop | None:
    labels = {s["label"] for s in state.get("samples", []) if s["intent"] != "seed"}
    rounds = state.get("round", 0)
    return Stop("converged", "every label asked twice") if labels and rounds >= 2 * len(labels) else None


def check(cfg: RunConfig) -> tuple[str, str] | None:
    return ("loop.n_easy", "round-robin needs loop.n_easy >= 1") if cfg.loop.n_easy < 1 else None


def estimate(asks: Asks) -> None:
    messages = asks.messages("static", n=asks.loop.n_easy, round=1, label=asks.cfg.task.labels[0])
    asks.call("label_gen", 1, messages, asks.loop.n_easy * asks.per_text + 6)


def count_asks(cfg: RunConfig, data: TaskData) -> Counter[str]:
    return Counter(dict.fromkeys(cfg.task.labels, 0))


METHOD = Method(
    name="round-robin",
    round=round_steps,
    prompts=lambda cfg: ["static.user"],
    estimate=estimate,
    stop=each_label_twice,
    tasks=("classification",),
    check=check,
    bench=(BenchRow("round-robin", ("loop.n_easy=3",)),),
    prepare=count_asks,
)
