"""LLM2LLM (Lee et al. 2024, arXiv 2403.15042), `loop.method = "llm2llm"`: a baseline.

    probe -> llm2llm (node "augmenter") -> trainer (from the base weights)

Each round the student is evaluated on the seed set; for each seed example it gets wrong the
teacher writes `loop.llm2llm_per_example` similar labelled examples (no separate Verifier, as in
LLM2LLM: the teacher labels what it writes); near-duplicates by ROUGE-L against everything kept are
dropped; the student retrains from its base weights on the seed set plus everything generated.
Classification only. The run stops (`converged`) once the student gets every seed example right.
"""

from __future__ import annotations

import logging
from typing import Any

from langgraph.runtime import Runtime

from evokd.agents.ask import ask_in_turn
from evokd.agents.llm2llm import near_duplicate, write_similar
from evokd.agents.verifier import check_label
from evokd.config import LoopConfig
from evokd.core.records import SampleRecord
from evokd.core.samples import accepted_keys, as_rows, is_correct, precheck, predicted_value, to_sample
from evokd.graph.context import Context
from evokd.graph.estimate import Asks
from evokd.graph.method import BenchRow, Method, Step, Stop, Training
from evokd.graph.state import RunState
from evokd.graph.steps import trainer

log = logging.getLogger("evokd.graph")


def round_steps(loop: LoopConfig) -> list[Step]:
    # "augmenter" is the node's name in 0.2's traces and checkpoints, which a resume goes by.
    return [Step("probe", probe, "probing the student on the seed set"),
            Step("augmenter", write, "LLM2LLM: writing look-alikes of the wrong seed examples"),
            Step("trainer", trainer, "Trainer: training the student again from its base weights")]


def probe(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The seed examples the current student gets wrong (all of them, every round)."""
    ctx = runtime.context
    student = ctx.holder.at(state["student_dir"])
    seed = [dict(s) for s in state.get("samples", []) if s["intent"] == "seed"]
    for record, prediction in zip(seed, student.predict([to_sample(s) for s in seed]), strict=True):
        record["predicted"] = predicted_value(prediction)
    incorrect = [s for s in seed if not is_correct(s)]
    if not incorrect:
        log.warning("round %d: the student gets every seed example right, so LLM2LLM has nothing to "
                    "target and stops; more seed examples (sampling.k_per_class) give it something",
                    state["round"])
    return {"correct": [s for s in seed if is_correct(s)], "incorrect": incorrect}


def write(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Similar labelled examples for each seed example the student got wrong."""
    ctx = runtime.context
    loop, task = ctx.cfg.loop, ctx.cfg.task
    round = state["round"]
    seen = accepted_keys(state.get("samples", []))
    kept = [s["text"] for s in state.get("samples", []) if s["accepted"]]
    replies, calls = ask_in_turn(state.get("incorrect", []), lambda example: write_similar(
        ctx.teacher, ctx.prompts, task, round=round, example=example, n=loop.llm2llm_per_example))
    records: list[SampleRecord] = []
    for _, reply in replies:
        for item in reply.examples[: loop.llm2llm_per_example]:
            text = " ".join(item.text.split())
            record = SampleRecord(round=round, text=text, intent="hard", accepted=False, method=ctx.method.name)
            record.reason = precheck(text, seen, ctx.data.eval_keys, loop.max_text_chars)
            if record.reason is None:
                record.label, record.reason = check_label(item.label, task.labels)
            if record.reason is None and (twin := near_duplicate(text, kept, loop.dedup_rouge_l)):
                record.reason = f"near-duplicate (ROUGE-L >= {loop.dedup_rouge_l}) of {twin[:60]!r}"
            record.accepted = record.reason is None
            if record.accepted:
                kept.append(text)
            records.append(record)
    return {"batch": as_rows(records), "calls": calls}


def converged(state: RunState) -> Stop | None:
    """Further rounds would only retrain on the same data."""
    if state.get("round", 0) >= 1 and not state.get("incorrect"):
        return Stop("converged", "the student got every seed example right: LLM2LLM has nothing to target")
    return None


def estimate(asks: Asks) -> None:
    """One call per seed example the student gets wrong: half of them, say."""
    loop = asks.loop
    messages = asks.messages("llm2llm", n=loop.llm2llm_per_example, round=1, example=asks.records(1)[0])
    asks.call("llm2llm", max(1, len(asks.seed) // 2), messages,
              loop.llm2llm_per_example * (asks.per_text + 8) + 6)


METHOD = Method(
    name="llm2llm",
    round=round_steps,
    prompts=lambda cfg: ["llm2llm.user"],
    estimate=estimate,
    training=lambda loop: Training(fresh=True, review_all=True),
    stop=converged,
    tasks=("classification",),
    bench=(BenchRow("llm2llm"),),
)
