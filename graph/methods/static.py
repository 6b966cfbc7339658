"""The static baseline (ZeroGen-style, Ye et al. 2022), `loop.method = "static"`.

    static_gen -> trainer

Each round the teacher writes texts for each label in turn, with no student feedback; the label
asked for is the label (no Verifier, as in ZeroGen). For NER it writes sentences with an entity of
the type asked for and lists every entity, aligned to BIO tags by the Verifier's span rules. A round
writes as many texts as an EvoKD round asks for (`loop.n_hard + loop.n_easy`), spread over the
labels, under the same cheap rejection rules.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

from langgraph.runtime import Runtime

from evokd.agents.ask import Answer, ask_in_turn
from evokd.agents.attributes import GENERIC_ATTRIBUTES, draw
from evokd.agents.static import per_label, write_for_label
from evokd.agents.verifier import judge_entities
from evokd.config import LoopConfig
from evokd.core.records import SampleRecord
from evokd.core.samples import accepted_keys, as_rows, precheck
from evokd.graph.context import Context
from evokd.graph.estimate import Asks
from evokd.graph.method import BenchRow, Method, Step
from evokd.graph.state import RunState
from evokd.graph.steps import trainer


def round_steps(loop: LoopConfig) -> list[Step]:
    return [Step("static_gen", write, "static: writing texts for each label"),
            Step("trainer", trainer, "Trainer: training and evaluating the student")]


def write(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Texts for each label in turn, the label asked for is the label."""
    ctx = runtime.context
    loop, task = ctx.cfg.loop, ctx.cfg.task
    n = per_label(loop.n_hard, loop.n_easy, task.labels)
    asks = [Ask(label, None, partial(write_for_label, ctx.teacher, ctx.prompts, task, round=state["round"],
                                     label=label, n=n, style=draw(task.attributes, seed=ctx.cfg.sampling.seed,
                                                                  round=state["round"], label=label)))
            for label in task.labels]
    return keep_as_asked(state, ctx, n=n, asks=asks)


class Ask(NamedTuple):
    """One no-feedback call: for texts of `label`, with, for NER, the entities each must hold."""

    label: str
    entities: list[dict[str, str]] | None  # None: those the teacher lists with each sentence
    call: Callable[[], Answer[Any]]


def keep_as_asked(state: RunState, ctx: Context, *, n: int, asks: list[Ask]) -> dict[str, Any]:
    """The no-feedback baselines' round (static, augment): one call per ask for n texts, each kept
    under its label once it passes the cheap checks. For NER a text's entities are those the teacher
    listed with it (static) or the ask's (augment: its seed sentence's), aligned by the Verifier's
    span rules; a sentence without an entity of the label's type is rejected."""
    loop, task = ctx.cfg.loop, ctx.cfg.task
    ner = task.type == "ner"
    seen = accepted_keys(state.get("samples", []))
    records: list[SampleRecord] = []
    replies, calls = ask_in_turn(asks, lambda ask: ask.call())
    for ask, reply in replies:
        items = reply.sentences if hasattr(reply, "sentences") else reply.texts
        for item in items[:n]:
            text = " ".join(str(getattr(item, "text", item)).split())
            record = SampleRecord(round=state["round"], text=text, intent="easy", label=None if ner else ask.label,
                                  accepted=False, method=ctx.method.name)
            record.reason = precheck(text, seen, ctx.data.eval_keys, loop.max_text_chars)
            if ner and record.reason is None:
                entities = ask.entities if ask.entities is not None else [e.model_dump() for e in item.entities]
                judge_entities(text, entities, ask.label, task).apply_to(record)
            record.accepted = record.reason is None
            records.append(record)
    return {"batch": as_rows(records), "calls": calls}


def estimate(asks: Asks) -> None:
    """One call per label."""
    labels = asks.cfg.task.labels
    k = per_label(asks.loop.n_hard, asks.loop.n_easy, labels)
    style = draw(asks.cfg.task.attributes, seed=0, round=1, label=labels[0])
    asks.call("static", len(labels), asks.messages("static", n=k, round=1, label=labels[0], style=style),
              k * asks.per_text + 6)


METHOD = Method(
    name="static",
    round=round_steps,
    prompts=lambda cfg: ["static.user"],
    estimate=estimate,
    # static+attributes: each request asks for texts of a drawn length and register (AttrPrompt's idea).
    bench=(BenchRow("static"), BenchRow("static+attributes", (f"task.attributes={GENERIC_ATTRIBUTES}",))),
)
