"""The augment baseline (AugGPT-style, Dai et al. 2023), `loop.method = "augment"`.

    augment_gen -> trainer

Each round the teacher paraphrases every seed example (agents/auggpt.py), with no student feedback
and no Verifier; a paraphrase keeps its seed example's label. For NER it must keep every entity of
its seed sentence word for word (a paraphrase that lost one is rejected). A round writes about as
many texts as an EvoKD round asks for (`loop.n_hard + loop.n_easy`), spread over the seed examples,
under the same cheap rejection rules.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from langgraph.runtime import Runtime

from evokd.agents.auggpt import paraphrase, per_example
from evokd.config import LoopConfig
from evokd.core.bio import entities
from evokd.core.samples import Record
from evokd.graph.context import Context
from evokd.graph.estimate import Asks
from evokd.graph.method import BenchRow, Method, Step
from evokd.graph.methods.static import Ask, keep_as_asked
from evokd.graph.state import RunState
from evokd.graph.steps import trainer


def round_steps(loop: LoopConfig) -> list[Step]:
    return [Step("augment_gen", write, "augment: paraphrasing the seed examples"),
            Step("trainer", trainer, "Trainer: training and evaluating the student")]


def write(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Paraphrases of every seed example, each keeping its example's label (for NER: its entities,
    which must all be found again in the paraphrase; a seed sentence with none is skipped)."""
    ctx = runtime.context
    loop, ner = ctx.cfg.loop, ctx.cfg.task.type == "ner"
    seed = [s for s in state.get("samples", []) if s["intent"] == "seed"]
    n = per_example(loop.n_hard, loop.n_easy, len(seed))
    asks = []
    for example in seed:
        keep = seed_entities(example) if ner else None
        if ner and not keep:
            continue
        example = {**example, "entities": keep} if keep else example
        label = keep[0]["type"] if keep else example["label"]
        asks.append(Ask(label, keep, partial(paraphrase, ctx.teacher, ctx.prompts, ctx.cfg.task,
                                             round=state["round"], example=example, n=n)))
    return keep_as_asked(state, ctx, n=n, asks=asks)


def seed_entities(example: Record) -> list[dict[str, str]]:
    """A seed sentence's entities as {text, type}, as its paraphrases must keep them."""
    return [{"text": " ".join(example["tokens"][start:end]), "type": type_}
            for type_, start, end in entities(example.get("tags") or [])]


def estimate(asks: Asks) -> None:
    """One call per seed example."""
    k = per_example(asks.loop.n_hard, asks.loop.n_easy, len(asks.seed))
    example = asks.records(1)[0]
    if example.get("tokens") is not None:
        example = {**example, "entities": seed_entities(example)}
    asks.call("augment", len(asks.seed), asks.messages("augment", n=k, round=1, example=example),
              k * asks.per_text + 6)


METHOD = Method(
    name="augment",
    round=round_steps,
    prompts=lambda cfg: ["augment.user"],
    estimate=estimate,
    bench=(BenchRow("augment"),),
)
