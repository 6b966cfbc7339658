"""LLM2LLM's teacher (Lee et al. 2024, arXiv 2403.15042): for each seed example the student gets
wrong, write a few similar examples with their labels; drop near-duplicates by ROUGE-L.

There is no separate Verifier here, as in LLM2LLM: the teacher labels what it writes. The same
rejection rules still apply (label outside the set, empty or over-long, duplicate, equal to a
dev/test text), plus LLM2LLM's own near-duplicate filter against everything kept so far.
"""

from __future__ import annotations

import logging
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel

from evokd.agents.analyst import usage_of
from evokd.agents.llm import BudgetExhausted, StructuredOutputError
from evokd.agents.verifier import accepted_keys, check_label, precheck
from evokd.core.records import SampleRecord
from evokd.core.text import normalise
from evokd.graph.context import Context
from evokd.graph.state import RunState

log = logging.getLogger("evokd.agents")


class Example(BaseModel):
    text: str
    label: str


class AugmenterReply(BaseModel):
    examples: list[Example] = []


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure of two texts over normalised word tokens (longest common subsequence)."""
    x, y = normalise(a).split(), normalise(b).split()
    if not x or not y:
        return 0.0
    prev = [0] * (len(y) + 1)
    for token in x:
        row = [0]
        for j, other in enumerate(y, start=1):
            row.append(prev[j - 1] + 1 if token == other else max(prev[j], row[j - 1]))
        prev = row
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(x), lcs / len(y)
    return 2 * precision * recall / (precision + recall)


def near_duplicate(text: str, kept: list[str], threshold: float) -> str | None:
    """The kept text this one is too similar to, if any."""
    return next((k for k in kept if rouge_l(text, k) >= threshold), None)


def augmenter(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    loop, task = ctx.cfg.loop, ctx.cfg.task
    round = state["round"]
    seen = accepted_keys(state)
    kept = [s["text"] for s in state.get("samples", []) if s["accepted"]]
    records: list[SampleRecord] = []
    calls: list[Any] = []
    for example in state.get("incorrect", []):
        messages, template = ctx.prompts.messages(
            "llm2llm", task_description=task.description, labels=task.labels,
            label_descriptions=task.label_descriptions, example=example, n=loop.llm2llm_per_example)
        try:
            reply, _, new_calls = ctx.teacher.ask(messages, AugmenterReply, round=round, node="augmenter",
                                                  prompt_file=template.name, prompt_sha256=template.sha256)
        except BudgetExhausted:
            break
        except StructuredOutputError as exc:
            log.warning("augmenter, round %d: %s", round, exc)
            calls += exc.calls
            continue
        calls += new_calls
        for item in reply.examples[: loop.llm2llm_per_example]:
            text = " ".join(item.text.split())
            record = SampleRecord(round=round, text=text, intent="hard", accepted=False, method="llm2llm")
            record.reason = precheck(text, seen, ctx.data.eval_keys, loop.max_text_chars)
            if record.reason is None:
                record.label, record.reason = check_label(item.label, task.labels)
            if record.reason is None and (twin := near_duplicate(text, kept, loop.dedup_rouge_l)):
                record.reason = f"near-duplicate (ROUGE-L >= {loop.dedup_rouge_l}) of {twin[:60]!r}"
            record.accepted = record.reason is None
            if record.accepted:
                kept.append(text)
            records.append(record)
    return {"batch": [r.model_dump(mode="json") for r in records], "usage": usage_of(calls, ctx)}
