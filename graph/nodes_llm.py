"""The teacher-facing nodes: each adapts the run state to one agent's plain inputs and the agent's
reply back to a state update (usage from its calls, SampleRecords, the cheap checks)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from langgraph.runtime import Runtime

from evokd.agents import augment, static
from evokd.agents.analyst import analyse, dev_metrics
from evokd.agents.augmenter import near_duplicate, write_similar
from evokd.agents.common import Answer
from evokd.agents.generator import generate
from evokd.agents.llm import price
from evokd.agents.verifier import Verdict, check_label, judge, label_texts
from evokd.core.records import LLMCall, SampleRecord
from evokd.core.text import normalise
from evokd.graph.context import Context
from evokd.graph.state import RunState

# --- adapters ----------------------------------------------------------------------------------


def usage_of(calls: list[LLMCall], ctx: Context) -> dict[str, float]:
    """Counters to add to the state for a node's LLM calls (recorded replies cost nothing)."""
    loop = ctx.cfg.loop
    paid = [c for c in calls if not c.from_record or c.paid_before_resume]
    tokens_in = sum(c.tokens_in for c in paid)
    tokens_out = sum(c.tokens_out for c in paid)
    return {
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost": price(tokens_in, tokens_out, loop.price_in_per_1k, loop.price_out_per_1k),
        "calls": len(paid),
        "llm": sum(c.latency_s for c in paid),
    }


def precheck(text: str, seen: set[str], eval_keys: set[str], max_chars: int) -> str | None:
    """Why a text is rejected before labelling, or None. `seen` gains the text when it passes."""
    key = normalise(text)
    if not key:
        return "empty text"
    if len(text) > max_chars:
        return f"text longer than {max_chars} characters"
    if key in eval_keys:
        return "equal to a dev/test text"
    if key in seen:
        return "duplicate of an earlier sample"
    seen.add(key)
    return None


def accepted_keys(state: RunState) -> set[str]:
    """Normalised texts of every sample accepted so far: what a new text must not repeat."""
    return {normalise(s["text"]) for s in state.get("samples", []) if s["accepted"]}


def prechecked(state: RunState, ctx: Context) -> list[SampleRecord]:
    """The round's candidates as records, already rejected where a cheap check fails."""
    loop = ctx.cfg.loop
    seen = accepted_keys(state)
    records = []
    for cand in state.get("candidates", []):
        record = SampleRecord(round=state["round"], text=cand["text"], intent=cand["intent"], accepted=False,
                              method=loop.method)
        record.reason = precheck(cand["text"], seen, ctx.data.eval_keys, loop.max_text_chars)
        records.append(record)
    return records


def apply(record: SampleRecord, verdict: Verdict) -> None:
    record.label, record.tokens, record.tags, record.reason = verdict.label, verdict.tokens, verdict.tags, \
        verdict.reason
    record.accepted = verdict.accepted


def dumped(records: list[SampleRecord]) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in records]


# --- evokd -------------------------------------------------------------------------------------


def analyst(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    loop = ctx.cfg.loop
    answer = analyse(
        ctx.teacher, ctx.prompts, ctx.cfg.task, round=state["round"],
        # None (not an empty list) leaves the section out of the prompt (ablation switch).
        correct=state.get("correct", []) if loop.analyst_sees_correct else None,
        incorrect=state.get("incorrect", []),
        metrics=dev_metrics(state.get("history", [])) if loop.analyst_sees_metrics else None)
    # Without a reply (budget spent, or invalid) the Generator works without an analysis.
    return {"analysis": answer.reply.summary if answer.reply else "", "conversation": answer.conversation,
            "usage": usage_of(answer.calls, ctx)}


def generator(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    loop = ctx.cfg.loop
    out = generate(ctx.teacher, ctx.prompts, ctx.cfg.task, round=state["round"],
                   conversation=state.get("conversation", []), n_hard=loop.n_hard, n_easy=loop.n_easy,
                   max_top_ups=loop.max_top_ups, labelled=not loop.separate_verifier)
    return {"candidates": out.candidates, "conversation": out.conversation, "usage": usage_of(out.calls, ctx)}


def verifier(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    records = prechecked(state, ctx)
    to_label = [r for r in records if r.reason is None]
    labelled = label_texts(ctx.teacher, ctx.prompts, ctx.cfg.task, [r.text for r in to_label],
                           round=state["round"], batch_size=ctx.cfg.loop.verifier_batch_size,
                           concurrency=ctx.cfg.llm.concurrency, temperature=ctx.cfg.llm.verifier_temperature)
    for record, verdict in zip(to_label, labelled.verdicts, strict=True):
        apply(record, verdict)
    return {"batch": dumped(records), "usage": usage_of(labelled.calls, ctx)}


def self_check(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """No separate Verifier (an ablation, `loop.separate_verifier = false`): the Generator labelled
    its own texts, and those labels go through the Verifier's rules without another teacher call."""
    ctx = runtime.context
    records = prechecked(state, ctx)
    for record, cand in zip(records, state.get("candidates", []), strict=True):
        if record.reason is None:
            apply(record, judge(record.text, cand.get("annotation"), ctx.cfg.task))
    return {"batch": dumped(records)}


# --- llm2llm -----------------------------------------------------------------------------------


def augmenter(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """LLM2LLM: similar labelled examples for each seed example the student got wrong."""
    ctx = runtime.context
    loop, task = ctx.cfg.loop, ctx.cfg.task
    round = state["round"]
    seen = accepted_keys(state)
    kept = [s["text"] for s in state.get("samples", []) if s["accepted"]]
    records: list[SampleRecord] = []
    calls: list[LLMCall] = []
    for example in state.get("incorrect", []):
        answer = write_similar(ctx.teacher, ctx.prompts, task, round=round, example=example,
                               n=loop.llm2llm_per_example)
        calls += answer.calls
        if answer.budget_spent:
            break
        if answer.reply is None:
            continue
        for item in answer.reply.examples[: loop.llm2llm_per_example]:
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
    return {"batch": dumped(records), "usage": usage_of(calls, ctx)}


# --- static and augment --------------------------------------------------------------------------


def _texts_round(state: RunState, ctx: Context, *, method: str, n: int,
                 asks: list[tuple[str, Callable[[], Answer[Any]]]]) -> dict[str, Any]:
    """The no-feedback baselines' round: one call per (label, ask) for n texts, each text kept
    under that label once it passes the cheap checks."""
    loop = ctx.cfg.loop
    seen = accepted_keys(state)
    records: list[SampleRecord] = []
    calls: list[LLMCall] = []
    for label, ask in asks:
        answer = ask()
        calls += answer.calls
        if answer.budget_spent:
            break
        if answer.reply is None:
            continue
        for text in answer.reply.texts[:n]:
            text = " ".join(str(text).split())
            record = SampleRecord(round=state["round"], text=text, intent="easy", label=label, accepted=False,
                                  method=method)
            record.reason = precheck(text, seen, ctx.data.eval_keys, loop.max_text_chars)
            record.accepted = record.reason is None
            records.append(record)
    return {"batch": dumped(records), "usage": usage_of(calls, ctx)}


def static_gen(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """ZeroGen-style: texts for each label in turn, the label asked for is the label."""
    ctx = runtime.context
    loop, task = ctx.cfg.loop, ctx.cfg.task
    n = static.per_label(loop.n_hard, loop.n_easy, task.labels)
    asks = [(label, partial(static.write_for_label, ctx.teacher, ctx.prompts, task, round=state["round"],
                            label=label, n=n)) for label in task.labels]
    return _texts_round(state, ctx, method="static", n=n, asks=asks)


def augment_gen(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """AugGPT-style: paraphrases of every seed example, each keeping its example's label."""
    ctx = runtime.context
    loop = ctx.cfg.loop
    seed = [s for s in state.get("samples", []) if s["intent"] == "seed"]
    n = augment.per_example(loop.n_hard, loop.n_easy, len(seed))
    asks = [(example["label"], partial(augment.paraphrase, ctx.teacher, ctx.prompts, ctx.cfg.task,
                                       round=state["round"], example=example, n=n)) for example in seed]
    return _texts_round(state, ctx, method="augment", n=n, asks=asks)
