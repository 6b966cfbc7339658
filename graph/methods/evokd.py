"""The default loop, `loop.method = "evokd"` (docs/method.md): EvoKD's roles, each spending fewer
teacher tokens per sample than the paper's.

    analyst -> generator -> verifier -> trainer

- analyst: a short diagnosis (at most 3 weaknesses) of the texts the student got wrong in the batch
  it has just seen, before training on them; no call while there is nothing wrong to read (round 1:
  the seed set it was fitted on), and a new one only every `loop.analyst_every` rounds (none with
  `loop.analyst = false`). With feedback texts (data.feedback, data.feedback_share: gold texts the
  student never trains on, S3's idea) the node first has the student label them, and its mistakes
  there, text and gold label, are what the Analyst reads and the Generator varies.
- generator: per label, a fresh call for hard and easy texts written *for* that label, shown the
  diagnosis and the student's highest-loss texts of the label to vary (its real mistakes when there
  are feedback texts).
- verifier: the cheap checks, near-duplicates by sentence embedding, then the hard texts labelled
  blind; a text is kept when the Verifier's label is the one it was written for (with
  `loop.verifier = "probabilities"`: when that label's probability reaches `loop.verifier_threshold`).
- trainer: continue training on the new texts, the seed set and a review sample (or, with
  `loop.replay_all`, every earlier accepted sample).
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

from langgraph.runtime import Runtime

from evokd.agents.analyst import dev_metrics, diagnose
from evokd.agents.ask import Answer, ask_in_turn
from evokd.agents.attributes import GENERIC_ATTRIBUTES, draw
from evokd.agents.generator import write_targeted
from evokd.agents.verifier import Labelled, confirm_texts, judge_entities
from evokd.agents.verifier_probs import confirm_by_probability, or_json, reads_probabilities
from evokd.config import LoopConfig, RunConfig
from evokd.core.records import Sample
from evokd.core.samples import (
    Record,
    as_rows,
    for_analyst,
    is_correct,
    note_prediction,
    prechecked,
    predicted_value,
    to_sample,
)
from evokd.graph.context import Context
from evokd.graph.estimate import Asks, asks_for
from evokd.graph.method import BenchRow, Method, Step, Training
from evokd.graph.state import RunState
from evokd.graph.steps import trainer
from evokd.student.protocol import Student


def round_steps(loop: LoopConfig) -> list[Step]:
    return [Step("analyst", analyst, "Analyst: reading the student's mistakes"),
            Step("generator", generator, "Generator: writing hard and easy texts for each label"),
            Step("verifier", verifier, "Verifier: confirming the hard texts blind"),
            Step("trainer", trainer, "Trainer: training and evaluating the student")]


def analyst(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The Analyst reads what the student got wrong: on the feedback texts when there are any, else
    in the batch it has just seen."""
    ctx = runtime.context
    loop = ctx.cfg.loop
    update: dict[str, Any] = {}
    if is_broad(state, loop):
        return update
    if ctx.data.feedback:
        real = real_errors(ctx.holder.at(state["student_dir"]), ctx.data.feedback, cap=REAL_ERRORS_KEPT)
        update["real_errors"] = real
        n_seen, errors = len(ctx.data.feedback), [s for s in real if not is_correct(s)]
    else:
        latest = state.get("latest", [])
        n_seen, errors = len(latest), [s for s in latest if s.get("predicted") is not None and not is_correct(s)]
    analysed = state.get("analysed_round")
    if not loop.analyst or not errors or (analysed is not None and state["round"] - analysed < loop.analyst_every):
        return update
    rng = random.Random(ctx.cfg.sampling.seed + state["round"])
    shown = [for_analyst(s) for s in rng.sample(errors, min(loop.max_shown, len(errors)))]
    answer = diagnose(ctx.teacher, ctx.prompts, ctx.cfg.task, round=state["round"], errors=shown,
                      n_seen=n_seen, real=bool(ctx.data.feedback),
                      metrics=dev_metrics(state.get("history", [])) if loop.analyst_sees_metrics else None)
    update["calls"] = answer.calls
    if answer.reply is not None:
        weaknesses = [" ".join(w.split()) for w in answer.reply.weaknesses if w.strip()][:3]
        update |= {"diagnosis": weaknesses, "analysis": "\n".join(f"- {w}" for w in weaknesses),
                   "analysed_round": state["round"]}
    return update


# The feedback records kept in the state each round (the hardest first): enough for every label's
# examples and the Analyst's sample, without a large feedback file in every checkpoint.
REAL_ERRORS_KEPT = 64


def real_errors(student: Student, feedback: list[Sample], cap: int, min_loss: float = 0.25) -> list[Record]:
    """The feedback samples the student gets wrong or nearly wrong (loss at least `min_loss`; NER:
    any tag wrong), each with its gold annotation, what the student said and how sure it was of the
    gold label: at most `cap`, highest loss first."""
    records: list[Record] = []
    for sample, prediction in zip(feedback, student.predict(feedback), strict=True):
        record: Record = {"text": sample.text, "label": sample.label, "tokens": sample.tokens, "tags": sample.tags,
                          "intent": "feedback"}
        note_prediction(record, prediction)
        if not is_correct(record) or loss(record) >= min_loss:
            records.append(record)
    return sorted(records, key=loss, reverse=True)[:cap]


def generator(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The Generator writes, per label, hard and easy texts for that label."""
    ctx = runtime.context
    loop, task = ctx.cfg.loop, ctx.cfg.task

    broad = is_broad(state, loop)

    def write_for(label: str) -> Answer[list[dict[str, Any]]]:
        k, ner = max(loop.show_errors, 1), task.type == "ner"
        # The student's real mistakes of the label when it has feedback texts, else its own generated ones.
        errors = [] if broad else (hardest(state.get("real_errors", []), label, k, ner)
                                   or hardest(state.get("latest", []), label, k, ner))
        n_hard = 0 if broad or (loop.hard_from_errors and not errors) else loop.n_hard
        return write_targeted(ctx.teacher, ctx.prompts, task, round=state["round"], label=label,
                              weaknesses=[] if broad else state.get("diagnosis", []),
                              examples=errors[: loop.show_errors],
                              n_hard=n_hard, n_easy=loop.n_easy + loop.n_hard - n_hard,
                              style=draw(task.attributes, seed=ctx.cfg.sampling.seed, round=state["round"],
                                         label=label))

    labels = labels_of_round(task.labels, state["round"], round_size(ctx))
    written, calls = ask_in_turn(labels, write_for)
    return {"candidates": [c for _, found in written for c in found], "calls": calls}


def is_broad(state: RunState, loop: LoopConfig) -> bool:
    """Whether this round is one of the broad first ones (loop.broad_share): judged by the tokens
    spent before it (the last finished round's running total), or by rounds without a token budget."""
    if loop.broad_share <= 0:
        return False
    if loop.max_tokens is None:
        return state["round"] <= loop.broad_share * loop.max_rounds
    history = state.get("history", [])
    spent = history[-1]["tokens_in"] + history[-1]["tokens_out"] if history else 0
    return spent < loop.broad_share * loop.max_tokens


def labels_of_round(labels: list[str], round: int, k: int) -> list[str]:
    """Round r's k labels, in turn (round 1 from the first label); k = 0 or k >= len: all of them."""
    if k <= 0 or k >= len(labels):
        return list(labels)
    start = (round - 1) * k
    return [labels[(start + i) % len(labels)] for i in range(k)]


def rounds_to_fit(cfg: RunConfig) -> int:
    """loop.rounds_to_fit, its None resolved (4 for NER, 0 (off) for classification), at most
    loop.max_rounds: a budget sized for rounds that cannot run would be left unspent."""
    rounds = cfg.loop.rounds_to_fit if cfg.loop.rounds_to_fit is not None else 4 if cfg.task.type == "ner" else 0
    return min(rounds, cfg.loop.max_rounds)


def round_size(ctx: Context) -> int:
    """The labels a round writes for (0: all): loop.labels_per_round, or as `--dry-run` sizes it."""
    if not sized(ctx.cfg):  # labels_per_round set, or no budget to size by
        return ctx.cfg.loop.labels_per_round
    return labels_a_round(asks_for(ctx.cfg, ctx.data, ctx.prompts))


def sized(cfg: RunConfig) -> bool:
    """Whether round sizes follow the budget (loop.rounds_to_fit with a token budget)."""
    return not cfg.loop.labels_per_round and rounds_to_fit(cfg) > 0 and cfg.loop.max_tokens is not None


def labels_affordable(n_labels: int, *, budget: float, rounds: int, per_label: float) -> int:
    """The labels a round can write for (at least 1, at most all) so that `budget` tokens pay for
    `rounds` rounds like it, each label costing `per_label`."""
    if per_label <= 0:
        return n_labels
    return max(1, min(n_labels, math.floor(budget / (rounds * per_label))))


def hardest(latest: list[Record], label: str, k: int, ner: bool, min_loss: float = 0.25) -> list[Record]:
    """The student's hardest generated samples of a label in the batch it has just seen, before it
    trained on them: highest loss first (at least `min_loss`); for NER, sentences with an entity of
    that type it tagged wrong."""
    seen = [s for s in latest if s.get("intent") != "seed" and s.get("predicted") is not None]
    if ner:
        return [for_analyst(s) for s in seen if not is_correct(s) and f"B-{label}" in (s.get("tags") or [])][:k]
    mine = [s for s in seen if s.get("label") == label and loss(s) >= min_loss]
    return sorted(mine, key=loss, reverse=True)[:k]


def loss(record: Record) -> float:
    """How wrong the student was on a sample before it trained on it: 1 - p(its label)."""
    if record.get("confidence") is None:
        return 0.0 if is_correct(record) else 1.0
    return 1.0 - record["confidence"]


def verifier(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """After the cheap checks and the near-duplicate check, the hard texts (`loop.verify`; or all of
    them, or those the student labels otherwise than intended) are labelled blind and kept when the
    Verifier confirms the intended label (for NER: the intended entities)."""
    ctx = runtime.context
    loop, task = ctx.cfg.loop, ctx.cfg.task
    ner = task.type == "ner"
    candidates = state.get("candidates", [])
    records = prechecked(candidates, state.get("samples", []), round=state["round"], method=ctx.method.name,
                         eval_keys=ctx.data.eval_keys, max_chars=loop.max_text_chars)
    for record, cand in zip(records, candidates, strict=True):
        if not ner:
            record.label = cand["annotation"]  # what the text was written for, kept or not
        elif record.reason is None:
            judge_entities(record.text, cand["annotation"], cand["label"], task).apply_to(record)
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
    texts, intended = [records[i].text for i in check], [candidates[i]["annotation"] for i in check]

    def by_json() -> Labelled:
        return confirm_texts(ctx.teacher, ctx.prompts, task, texts, intended, round=state["round"],
                             batch_size=loop.verifier_batch_size, concurrency=ctx.cfg.llm.concurrency,
                             temperature=ctx.cfg.llm.verifier_temperature)

    if reads_probabilities(task, loop.verifier):
        confirmed = or_json(lambda: confirm_by_probability(ctx.teacher, ctx.prompts, task, texts, intended,
                                                           round=state["round"], batch_size=loop.verifier_batch_size,
                                                           threshold=loop.verifier_threshold), by_json)
    else:
        confirmed = by_json()
    for i, verdict in zip(check, confirmed.verdicts, strict=True):
        records[i].reason, records[i].teacher_p = verdict.reason, verdict.p
    for record in records:
        record.accepted = record.reason is None
    return {"batch": as_rows(records), "calls": confirmed.calls}


def near_duplicates(texts: list[str], kept: list[str], encoder: Student, threshold: float) -> list[str | None]:
    """For each text, the accepted (or earlier new) text its sentence embedding nearly repeats."""
    if threshold >= 1.0 or not texts:
        return [None] * len(texts)
    import torch  # heavy: imported when a round first compares embeddings, not at start-up

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


def estimate(asks: Asks) -> None:
    """Per label a fresh Generator call for n texts, shown the diagnosis and the student's hardest
    texts; a diagnosis in a share of the rounds; the Verifier labels the hard texts (loop.verify)."""
    k, cfg = labels_a_round(asks), asks.cfg
    if sized(cfg):
        asks.notes.append(f"labels: {k} of {len(cfg.task.labels)} a round, in turn (loop.rounds_to_fit = "
                          f"{rounds_to_fit(cfg)} rounds in {cfg.loop.max_tokens:,} tokens; loop.labels_per_round "
                          "sets it)")
    if cfg.loop.broad_share:
        asks.notes.append(f"broad first: rounds until {cfg.loop.broad_share:.0%} of the budget is spent write plain "
                          "texts (no Analyst or Verifier call), cheaper than the aimed round estimated here")
    round_calls(asks, k)


def labels_a_round(asks: Asks) -> int:
    """The labels every round writes for: loop.labels_per_round; or, with rounds_to_fit and a
    token budget, as many as let the budget pay for rounds_to_fit rounds at a one-label round's
    estimate (the estimate errs high, so a run makes at least that many rounds, often more); or all."""
    loop, cfg = asks.loop, asks.cfg
    if not sized(cfg):
        return len(labels_of_round(cfg.task.labels, 1, loop.labels_per_round))
    one = replace(asks, calls=[])
    round_calls(one, 1)
    per_label = one.round_tokens()
    return labels_affordable(len(cfg.task.labels), budget=loop.max_tokens or 0, rounds=rounds_to_fit(cfg),
                             per_label=per_label)


def round_calls(asks: Asks, labels: int) -> None:
    """A round writing for `labels` labels, as `estimate` describes it."""
    loop, task = asks.loop, asks.cfg.task
    gen = asks.messages("targeted", round=1, label=task.labels[0], weaknesses=["a few words of diagnosis"] * 3,
                        examples=asks.records(loop.show_errors), n_hard=loop.n_hard, n_easy=loop.n_easy,
                        keys=("tricky_label", "plain_label"),
                        style=draw(task.attributes, seed=0, round=1, label=task.labels[0]))
    asks.call("generator", labels, gen,
              asks.n * (asks.per_text + (0 if task.type == "classification" else asks.per_label)) + 10)
    # No diagnosis in round 1 (nothing wrong to read), then one every loop.analyst_every rounds:
    # its tokens are spread over the rounds as an average share.
    if loop.analyst:
        real = bool(asks.cfg.data.feedback or asks.cfg.data.feedback_share)
        diagnosis = asks.messages("diagnosis", errors=asks.records(loop.max_shown), n_seen=asks.n * labels,
                                  metrics=asks.metrics if loop.analyst_sees_metrics else None, real=real)
        # Without feedback texts round 1 has nothing wrong to read; with them it has.
        analysed = loop.max_rounds if real else max(loop.max_rounds - 1, 0)
        share = round(math.ceil(analysed / loop.analyst_every) / max(loop.max_rounds, 1), 3)
        asks.call("analyst", share, diagnosis, asks.replies.analyst // 2)
    checked = {"hard": loop.n_hard, "all": asks.n, "contested": asks.n // 2}[loop.verify] * labels
    if checked:
        batch = loop.verifier_batch_size
        probabilities = reads_probabilities(task, loop.verifier)
        verify = asks.messages("verifier_probs" if probabilities else "verifier",
                               texts=[r["text"] for r in asks.records(min(batch, checked))])
        per_round: float = math.ceil(checked / batch)
        if loop.verify == "hard" and loop.hard_from_errors:
            # Round 1 has no wrong texts to vary, so no hard ones: an average share of the later rounds'.
            per_round = round(per_round * max(loop.max_rounds - 1, 0) / max(loop.max_rounds, 1), 3)
        # A label in a word per text ("3: positive"), or a label and its key in JSON.
        per_text = 4 if probabilities else asks.per_label
        asks.call("verifier", per_round, verify, min(batch, checked) * per_text + 4)


METHOD = Method(
    name="evokd",
    round=round_steps,
    # verifier.user too with probabilities: the JSON Verifier is the fallback (and NER's).
    prompts=lambda cfg: ["diagnosis.user", "targeted.user", "verifier.user",
                         *(["verifier_probs.user"] if reads_probabilities(cfg.task, cfg.loop.verifier) else [])],
    estimate=estimate,
    training=lambda loop: Training(review_all=loop.replay_all),
    # evokd+probs: the same loop with the Verifier reading label probabilities (NER rows: as evokd).
    # evokd+broad: the first half of the budget buys plain texts per label, the rest is aimed.
    # evokd+feedback: the Analyst and the Generator read the student's mistakes on a fifth of dev (S3's
    # real errors; the other four fifths score); s3: the same without the Analyst; s3+probs: s3 with
    # the probability Verifier (the two changes that each measured ahead of the default, together);
    # evokd-no-analyst: the default without it (full profile, or --methods).
    bench=(BenchRow("evokd"), BenchRow("evokd+probs", ('loop.verifier="probabilities"',)),
           BenchRow("evokd+feedback", ("data.feedback_share=0.2",), ablation=True),
           BenchRow("s3", ("data.feedback_share=0.2", "loop.analyst=false"), ablation=True),
           BenchRow("s3+probs", ("data.feedback_share=0.2", "loop.analyst=false", 'loop.verifier="probabilities"'),
                    ablation=True),
           BenchRow("evokd-no-analyst", ("loop.analyst=false",), ablation=True),
           BenchRow("evokd+attributes", (f"task.attributes={GENERIC_ATTRIBUTES}",), ablation=True),
           BenchRow("evokd+broad", ("loop.broad_share=0.5",), ablation=True)),
    reads_feedback=True,
)
