"""The paper's loop, `loop.method = "evokd-paper"` (Liu et al. 2024, as published), kept so that its
table and ablations can be reproduced.

    probe -> analyst -> generator -> verifier (or self_check) -> trainer

- probe: the samples of the latest batch the student got right and wrong, before it trained on
  them (round 1: the seed set, predicted by the seeded student).
- analyst: a free-text analysis of up to `loop.max_shown` right and wrong samples (and, with
  `loop.analyst_sees_metrics`, the dev scores), every round.
- generator: continues the Analyst's conversation; `n_hard` + `n_easy` unlabelled texts.
- verifier: the cheap checks, then every text labelled blind ("none", a mixed text, rejects).
- trainer: continue training on the new texts, the seed set and a review sample.

Ablation switches: `loop.n_easy = 0`, `loop.analyst_sees_correct = false` (only wrong samples),
`loop.review_size = 0` (no review), `loop.separate_verifier = false` (the Generator labels its own
texts, and `self_check` applies the Verifier's rules to them instead of a Verifier call).
"""

from __future__ import annotations

import math
import random
from typing import Any

from langgraph.runtime import Runtime

from evokd.agents.analyst import analyse, dev_metrics
from evokd.agents.generator import generate
from evokd.agents.verifier import judge, label_texts
from evokd.config import LoopConfig
from evokd.core.samples import as_rows, for_analyst, is_correct, prechecked, predicted_value, to_sample
from evokd.graph.context import Context
from evokd.graph.estimate import Asks
from evokd.graph.method import BenchRow, Method, Step
from evokd.graph.state import RunState
from evokd.graph.steps import trainer


def round_steps(loop: LoopConfig) -> list[Step]:
    check = Step("verifier", verifier, "Verifier: labelling the new texts") if loop.separate_verifier \
        else Step("self_check", self_check, "checking the Generator's own labels")
    return [Step("probe", probe, "probing the student on the latest batch"),
            Step("analyst", analyst, "Analyst: reading the student's mistakes"),
            Step("generator", generator, "Generator: writing hard and easy texts"),
            check,
            Step("trainer", trainer, "Trainer: training and evaluating the student")]


def probe(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The latest batch split into samples the student got right and wrong, as the Analyst sees them.

    Round 1 probes the seed set with the seeded student (as in the paper); later rounds use the
    predictions the student made on the previous batch before it trained on it, which is what
    tells the Analyst something new."""
    ctx = runtime.context
    round = state["round"]
    latest = [dict(s) for s in state.get("latest", []) if s["accepted"]]
    if round == 1:
        student = ctx.holder.at(state["student_dir"])
        for record, prediction in zip(latest, student.predict([to_sample(s) for s in latest]), strict=True):
            record["predicted"] = predicted_value(prediction)
    shown = ctx.cfg.loop.max_shown
    rng = random.Random(ctx.cfg.sampling.seed + round)
    correct = [s for s in latest if is_correct(s)]
    incorrect = [s for s in latest if not is_correct(s)]
    if not ctx.cfg.loop.analyst_sees_correct:
        correct = []  # ablation: the Analyst sees only what the student got wrong
    return {"correct": [for_analyst(s) for s in rng.sample(correct, min(shown, len(correct)))],
            "incorrect": [for_analyst(s) for s in rng.sample(incorrect, min(shown, len(incorrect)))]}


def analyst(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The Analyst's analysis starts the conversation the Generator continues."""
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
            "calls": answer.calls}


def generator(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The Generator writes hard and easy texts in the Analyst's conversation (labelled, without a
    separate Verifier)."""
    ctx = runtime.context
    loop = ctx.cfg.loop
    out = generate(ctx.teacher, ctx.prompts, ctx.cfg.task, round=state["round"],
                   conversation=state.get("conversation", []), n_hard=loop.n_hard, n_easy=loop.n_easy,
                   max_top_ups=loop.max_top_ups, labelled=not loop.separate_verifier)
    return {"candidates": out.candidates, "conversation": out.conversation, "calls": out.calls}


def verifier(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The Verifier labels every text that passed the cheap checks, blind."""
    ctx = runtime.context
    records = prechecked(state.get("candidates", []), state.get("samples", []), round=state["round"],
                         method=ctx.method.name, eval_keys=ctx.data.eval_keys, max_chars=ctx.cfg.loop.max_text_chars)
    to_label = [r for r in records if r.reason is None]
    labelled = label_texts(ctx.teacher, ctx.prompts, ctx.cfg.task, [r.text for r in to_label],
                           round=state["round"], batch_size=ctx.cfg.loop.verifier_batch_size,
                           concurrency=ctx.cfg.llm.concurrency, temperature=ctx.cfg.llm.verifier_temperature)
    for record, verdict in zip(to_label, labelled.verdicts, strict=True):
        verdict.apply_to(record)
    return {"batch": as_rows(records), "calls": labelled.calls}


def self_check(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """No separate Verifier (an ablation, `loop.separate_verifier = false`): the Generator labelled
    its own texts, and those labels go through the Verifier's rules without another teacher call."""
    ctx = runtime.context
    candidates = state.get("candidates", [])
    records = prechecked(candidates, state.get("samples", []), round=state["round"], method=ctx.method.name,
                         eval_keys=ctx.data.eval_keys, max_chars=ctx.cfg.loop.max_text_chars)
    for record, cand in zip(records, candidates, strict=True):
        if record.reason is None:
            judge(record.text, cand.get("annotation"), ctx.cfg.task).apply_to(record)
    return {"batch": as_rows(records)}


def estimate(asks: Asks) -> None:
    """An Analyst call, a Generator call that continues its conversation, the Verifier's batches."""
    loop, seed = asks.loop, asks.seed
    # Round 1 shows the Analyst the seed set, later rounds the last batch (up to max_shown right
    # and max_shown wrong): the mean of the two, half right and half wrong.
    shown = max(1, round((len(seed) + min(asks.n, 2 * loop.max_shown)) / 4))
    analysis = asks.messages("analyst", round=1, correct=asks.records(shown) if loop.analyst_sees_correct else None,
                             incorrect=asks.records(shown),
                             metrics=asks.metrics if loop.analyst_sees_metrics else None)
    asks.call("analyst", 1, analysis, asks.replies.analyst)
    agent = "generator" if loop.separate_verifier else "generator_labelled"
    ask_for_texts = asks.messages(agent, round=1, n_hard=loop.n_hard, n_easy=loop.n_easy)[-1]
    generated = asks.n * (asks.per_text + (0 if loop.separate_verifier else asks.per_label)) + 10
    # The Generator continues the Analyst's conversation: its prompt, its reply, then the ask.
    asks.call("generator", 1, [*analysis, ask_for_texts], generated,
              extra_in=asks.reply(asks.replies.analyst) + asks.message_overhead)
    if loop.separate_verifier:
        batch = loop.verifier_batch_size
        verify = asks.messages("verifier", texts=[r["text"] for r in asks.records(min(batch, asks.n))])
        asks.call("verifier", math.ceil(asks.n / batch), verify, min(batch, asks.n) * asks.per_label + 4)


PAPER = ('loop.analyst_sees_metrics=false',)  # the paper's Analyst: samples only

METHOD = Method(
    name="evokd-paper",
    round=round_steps,
    prompts=lambda cfg: ["analyst.user", "verifier.user",
                         "generator.user" if cfg.loop.separate_verifier else "generator_labelled.user"],
    estimate=estimate,
    owns=("separate_verifier",),
    bench=(BenchRow("evokd-paper", PAPER),
           BenchRow("evokd-paper+metrics", ("loop.analyst_sees_metrics=true",)),
           BenchRow("evokd-paper-no-easy", (*PAPER, "loop.n_easy=0"), ablation=True),
           BenchRow("evokd-paper-no-correct", (*PAPER, "loop.analyst_sees_correct=false"), ablation=True),
           BenchRow("evokd-paper-no-review", (*PAPER, "loop.review_size=0"), ablation=True),
           BenchRow("evokd-paper-no-verifier", (*PAPER, "loop.separate_verifier=false"), ablation=True)),
    # Until 0.2.0 "evokd" named the paper's loop: a resume or replay of such a run stays on it.
    formerly=(("0.1.", "evokd"),),
)
