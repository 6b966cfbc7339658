"""The teacher-facing nodes: each adapts the run state to one agent's plain inputs and the agent's
reply back to a state update (usage from its calls, SampleRecords, the cheap checks)."""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import Any

from langgraph.runtime import Runtime

from evokd.agents import auggpt, static
from evokd.agents.analyst import analyse, dev_metrics, diagnose
from evokd.agents.ask import Answer
from evokd.agents.client import price
from evokd.agents.generator import generate, write_targeted
from evokd.agents.llm2llm import near_duplicate, write_similar
from evokd.agents.verifier import Verdict, check_label, confirm_texts, judge, label_texts
from evokd.core.bio import entities
from evokd.core.records import LLMCall, SampleRecord
from evokd.core.text import normalise
from evokd.graph.context import Context
from evokd.graph.nodes import for_analyst, is_correct, predicted_value, to_sample
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


def with_entities(record: SampleRecord, entities: list[dict[str, str]], label: str, ctx: Context) -> None:
    """NER: the entities a sentence was written with, aligned to its tokens by the Verifier's span
    rules; a sentence asked for an entity of type `label` and holding none is rejected."""
    apply(record, judge(record.text, entities, ctx.cfg.task))
    if record.reason is None and f"B-{label}" not in (record.tags or []):
        record.reason = f"no {label} entity in the sentence"


def dumped(records: list[SampleRecord]) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in records]


# --- evokd-paper -------------------------------------------------------------------------------


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


# --- evokd (the default loop, docs/method.md) -------------------------------------------------------


def loss(record: dict[str, Any]) -> float:
    """How wrong the student was on a sample before it trained on it: 1 - p(its label)."""
    if record.get("confidence") is None:
        return 0.0 if is_correct(record) else 1.0
    return 1.0 - record["confidence"]


def hardest(latest: list[dict[str, Any]], label: str, k: int, ner: bool, min_loss: float = 0.25
            ) -> list[dict[str, Any]]:
    """The student's hardest generated samples of a label in the batch it has just seen, before it
    trained on them: highest loss first (at least `min_loss`); for NER, sentences with an entity of
    that type it tagged wrong."""
    seen = [s for s in latest if s.get("intent") != "seed" and s.get("predicted") is not None]
    if ner:
        return [for_analyst(s) for s in seen if not is_correct(s) and f"B-{label}" in (s.get("tags") or [])][:k]
    mine = [s for s in seen if s.get("label") == label and loss(s) >= min_loss]
    return sorted(mine, key=loss, reverse=True)[:k]


def diagnosis(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The default loop's Analyst: no call while the latest batch holds no mistake (round 1 probes the
    seed set the student was fitted on), and a new diagnosis only every `loop.analyst_every` rounds."""
    ctx = runtime.context
    loop = ctx.cfg.loop
    latest = state.get("latest", [])
    errors = [s for s in latest if s.get("predicted") is not None and not is_correct(s)]
    analysed = state.get("analysed_round")
    if not errors or (analysed is not None and state["round"] - analysed < loop.analyst_every):
        return {}
    rng = random.Random(ctx.cfg.sampling.seed + state["round"])
    shown = [for_analyst(s) for s in rng.sample(errors, min(loop.max_shown, len(errors)))]
    answer = diagnose(ctx.teacher, ctx.prompts, ctx.cfg.task, round=state["round"], errors=shown,
                      n_seen=len(latest),
                      metrics=dev_metrics(state.get("history", [])) if loop.analyst_sees_metrics else None)
    update: dict[str, Any] = {"usage": usage_of(answer.calls, ctx)}
    if answer.reply is not None:
        weaknesses = [" ".join(w.split()) for w in answer.reply.weaknesses if w.strip()][:3]
        update |= {"diagnosis": weaknesses, "analysis": "\n".join(f"- {w}" for w in weaknesses),
                   "analysed_round": state["round"]}
    return update


def targeted(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The default loop's Generator: per label, hard and easy texts written for that label."""
    ctx = runtime.context
    loop, task = ctx.cfg.loop, ctx.cfg.task
    candidates: list[dict[str, Any]] = []
    calls: list[LLMCall] = []
    for label in task.labels:
        errors = hardest(state.get("latest", []), label, max(loop.show_errors, 1), task.type == "ner")
        examples = errors[: loop.show_errors]
        n_hard = loop.n_hard if errors or not loop.hard_from_errors else 0
        found, new_calls, budget_spent = write_targeted(
            ctx.teacher, ctx.prompts, task, round=state["round"], label=label,
            weaknesses=state.get("diagnosis", []), examples=examples,
            n_hard=n_hard, n_easy=loop.n_easy + loop.n_hard - n_hard)
        candidates += found
        calls += new_calls
        if budget_spent:
            break
    return {"candidates": candidates, "conversation": [], "usage": usage_of(calls, ctx)}


def near_duplicates(texts: list[str], kept: list[str], encoder: Any, threshold: float) -> list[str | None]:
    """For each text, the accepted (or earlier new) text its sentence embedding nearly repeats."""
    if threshold >= 1.0 or not texts:
        return [None] * len(texts)
    import torch

    vectors = encoder.embed([*kept, *texts])
    pool, pool_vectors = list(kept), vectors[: len(kept)]
    twins: list[str | None] = []
    for text, vector in zip(texts, vectors[len(kept):], strict=True):
        twin = None
        if pool:
            similarity = pool_vectors @ vector
            best = int(torch.argmax(similarity))
            twin = pool[best] if float(similarity[best]) >= threshold else None
        twins.append(twin)
        if twin is None:
            pool.append(text)
            pool_vectors = torch.cat([pool_vectors, vector.unsqueeze(0)])
    return twins


def confirm(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The default loop's Verifier. After the cheap checks and the near-duplicate check, the hard texts
    (`loop.verify`; or all of them, or those the student labels otherwise than intended) are labelled
    blind and kept when the Verifier confirms the intended label (for NER: the intended entities)."""
    ctx = runtime.context
    loop, task = ctx.cfg.loop, ctx.cfg.task
    ner = task.type == "ner"
    records = prechecked(state, ctx)
    candidates = state.get("candidates", [])
    for record, cand in zip(records, candidates, strict=True):
        if not ner:
            record.label = cand["annotation"]  # what the text was written for, kept or not
        elif record.reason is None:
            with_entities(record, cand["annotation"], cand["label"], ctx)
    kept = [s["text"] for s in state.get("samples", []) if s["accepted"]]
    open_ = [i for i, r in enumerate(records) if r.reason is None]
    twins = near_duplicates([records[i].text for i in open_], kept, ctx.holder.encoder(), loop.dedup_cosine)
    for i, twin in zip(open_, twins, strict=True):
        if twin is not None:
            records[i].reason = f"near-duplicate (cosine >= {loop.dedup_cosine}) of {twin[:60]!r}"
    open_ = [i for i in open_ if records[i].reason is None]
    if loop.verify == "contested" and open_:
        # Generator and student agreeing are two votes already: the Verifier settles disagreements.
        student = ctx.holder.at(state["student_dir"])
        said = student.predict([to_sample(records[i].model_dump()) for i in open_])
        check = [i for i, p in zip(open_, said, strict=True)
                 if predicted_value(p) != (records[i].tags if ner else records[i].label)]
    else:
        check = [i for i in open_ if loop.verify == "all" or records[i].intent == "hard"]
    # Shuffled so that a batch's order says nothing about the labels its texts were written for.
    random.Random(ctx.cfg.sampling.seed + state["round"]).shuffle(check)
    confirmed = confirm_texts(ctx.teacher, ctx.prompts, task, [records[i].text for i in check],
                              [candidates[i]["annotation"] for i in check], round=state["round"],
                              batch_size=loop.verifier_batch_size, concurrency=ctx.cfg.llm.concurrency,
                              temperature=ctx.cfg.llm.verifier_temperature)
    for i, verdict in zip(check, confirmed.verdicts, strict=True):
        records[i].reason = verdict.reason
    for record in records:
        record.accepted = record.reason is None
    return {"batch": dumped(records), "usage": usage_of(confirmed.calls, ctx)}


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
                 asks: list[tuple[str, list[dict[str, str]] | None, Callable[[], Answer[Any]]]]) -> dict[str, Any]:
    """The no-feedback baselines' round: one call per (label, keep, ask) for n texts, each kept under
    that label once it passes the cheap checks. For NER a text's entities are those the teacher
    listed with it (static), or `keep`, those its seed sentence had (augment), aligned by the
    Verifier's span rules; a sentence without an entity of the label's type is rejected."""
    loop, task = ctx.cfg.loop, ctx.cfg.task
    ner = task.type == "ner"
    seen = accepted_keys(state)
    records: list[SampleRecord] = []
    calls: list[LLMCall] = []
    for label, keep, ask in asks:
        answer = ask()
        calls += answer.calls
        if answer.budget_spent:
            break
        if answer.reply is None:
            continue
        items = answer.reply.sentences if hasattr(answer.reply, "sentences") else answer.reply.texts
        for item in items[:n]:
            text = " ".join(str(getattr(item, "text", item)).split())
            record = SampleRecord(round=state["round"], text=text, intent="easy", label=None if ner else label,
                                  accepted=False, method=method)
            record.reason = precheck(text, seen, ctx.data.eval_keys, loop.max_text_chars)
            if ner and record.reason is None:
                with_entities(record, keep if keep is not None else [e.model_dump() for e in item.entities],
                              label, ctx)
            record.accepted = record.reason is None
            records.append(record)
    return {"batch": dumped(records), "usage": usage_of(calls, ctx)}


def static_gen(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """ZeroGen-style: texts for each label in turn, the label asked for is the label."""
    ctx = runtime.context
    loop, task = ctx.cfg.loop, ctx.cfg.task
    n = static.per_label(loop.n_hard, loop.n_easy, task.labels)
    asks = [(label, None, partial(static.write_for_label, ctx.teacher, ctx.prompts, task, round=state["round"],
                                  label=label, n=n)) for label in task.labels]
    return _texts_round(state, ctx, method="static", n=n, asks=asks)


def augment_gen(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """AugGPT-style: paraphrases of every seed example, each keeping its example's label (for NER:
    its entities, which must all be found again in the paraphrase)."""
    ctx = runtime.context
    loop = ctx.cfg.loop
    seed = [s for s in state.get("samples", []) if s["intent"] == "seed"]
    n = auggpt.per_example(loop.n_hard, loop.n_easy, len(seed))
    asks = []
    for example in seed:
        keep = None
        if ctx.cfg.task.type == "ner":
            keep = [{"text": " ".join(example["tokens"][start:end]), "type": type_}
                    for type_, start, end in entities(example.get("tags") or [])]
            if not keep:
                continue
            example = {**example, "entities": keep}
        label = keep[0]["type"] if keep else example["label"]
        asks.append((label, keep, partial(auggpt.paraphrase, ctx.teacher, ctx.prompts, ctx.cfg.task,
                                          round=state["round"], example=example, n=n)))
    return _texts_round(state, ctx, method="augment", n=n, asks=asks)
