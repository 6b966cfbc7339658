"""The nodes every method shares: `seed` (round 0), `trainer` (the end of each round) and `decide`
(after each round: go on, or stop on a budget, a plateau or the method's own rule)."""

from __future__ import annotations

import itertools
import logging
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from langgraph.runtime import Runtime

from evokd.config import LoopConfig
from evokd.core.files import write_jsonl_atomic
from evokd.core.records import Decision, RoundMetrics, SampleRecord
from evokd.core.samples import Record, note_prediction, to_sample
from evokd.graph.context import Context
from evokd.graph.method import Stop
from evokd.graph.state import RunState
from evokd.student.protocol import Student

log = logging.getLogger("evokd.graph")


def seed(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Round 0: a fresh student fine-tuned on the k-shot gold seed set."""
    ctx = runtime.context
    started = time.time()
    student = ctx.holder.fresh()
    batch = [SampleRecord(round=0, text=s.text, intent="seed", label=s.label, tokens=s.tokens,
                          tags=s.tags, accepted=True, method=ctx.method.name).model_dump(mode="json")
             for s in ctx.data.seed]
    t0 = time.time()
    fitted = student.fit(ctx.data.seed, epochs=ctx.cfg.student.seed_epochs, seed=ctx.cfg.student.seed,
                         on_step=lambda done, total: ctx.callbacks.on_progress("seed training", done, total))
    own = {"train": time.time() - t0}
    update = _finish_round({**state, "round": 0}, ctx, round=0, student=student, batch=batch,
                           train_size=len(ctx.data.seed), own=own, started=started, train_loss=fitted.loss)
    return {**update, "round": 0, "latest": batch}


def trainer(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Train on the round's accepted samples, the seed set and earlier samples, as the method's
    `training` says (continue, or start again from the base weights; a review sample, or every
    earlier one); evaluate on dev, checkpoint, and write the round's files. The student's prediction
    on each accepted sample, before it trains on it, is recorded with it."""
    ctx = runtime.context
    started = time.time()
    round = state["round"]
    training = ctx.method.training(ctx.cfg.loop)
    student = ctx.holder.at(state["student_dir"])
    batch = [dict(s) for s in state.get("batch", [])]
    accepted = [s for s in batch if s["accepted"]]
    for record, prediction in zip(accepted, student.predict([to_sample(s) for s in accepted]), strict=True):
        note_prediction(record, prediction)
    earlier = [s for s in state.get("samples", []) if s["accepted"]]
    seed_samples = [s for s in earlier if s["intent"] == "seed"]
    if training.review_all:
        review = [s for s in earlier if s["intent"] != "seed"]
    else:
        review = review_sample(state, ctx.cfg.loop.review_size, ctx.cfg.sampling.seed + round)
    epochs = ctx.cfg.student.seed_epochs if training.fresh else ctx.cfg.student.epochs_per_round
    train = [to_sample(s) for s in [*accepted, *seed_samples, *review]]
    own: dict[str, float] = {"train": 0.0}
    loss = None
    if accepted:
        t0 = time.time()
        if training.fresh:
            student = ctx.holder.fresh()
        loss = student.fit(train, epochs=epochs, seed=ctx.cfg.student.seed + round,
                           on_step=lambda done, total: ctx.callbacks.on_progress("training", done, total)).loss
        own["train"] = time.time() - t0
    update = _finish_round(state, ctx, round=round, student=student, batch=batch,
                           train_size=len(train) if accepted else 0, own=own, started=started, train_loss=loss)
    # A round that accepted nothing leaves the previous batch as the one to look at next.
    return {**update, "latest": accepted or state.get("latest", [])}


def review_sample(state: RunState, size: int, seed: int) -> list[Record]:
    """Earlier accepted samples replayed with a new batch (the paper's "review")."""
    earlier = [s for s in state.get("samples", []) if s["accepted"] and s["intent"] != "seed"]
    rng = random.Random(seed)
    return rng.sample(earlier, min(size, len(earlier)))


def _finish_round(state: RunState, ctx: Context, *, round: int, student: Student, batch: list[Record],
                  train_size: int, own: dict[str, float], started: float,
                  train_loss: float | None = None) -> dict[str, Any]:
    """Evaluate on dev, checkpoint, track the best round and write the round's files (samples.jsonl
    and metrics.jsonl are rewritten whole from the state, so a redone round leaves no duplicate line)."""
    t0 = time.time()
    report, predictions = student.score(ctx.data.dev, student.predict(ctx.data.dev))
    own["eval"] = time.time() - t0
    checkpoint = ctx.run.round_checkpoint(round)
    student.save(checkpoint)
    ctx.holder.source = str(checkpoint)
    best_round, best_f1 = state.get("best_round", 0), state.get("best_f1", float("-inf"))
    if report.f1 > best_f1:
        best_round, best_f1 = round, report.f1
        ctx.run.keep_best(checkpoint)
    # Keep this round (the next resume point) and the previous one (this round's input, in case it is
    # redone); the best is in student/. `decide` drops the previous one once this round is committed.
    ctx.run.prune_checkpoints({round, round - 1})
    own["total"] = time.time() - started
    usage = state.get("usage", {})
    accepted = sum(1 for s in batch if s["accepted"])
    metrics = RoundMetrics(
        round=round, f1=report.f1, dev=report.model_dump(mode="json"), accepted=accepted,
        rejected=len(batch) - accepted, train_size=train_size,
        tokens_in=int(usage.get("tokens_in", 0)), tokens_out=int(usage.get("tokens_out", 0)),
        cost=usage.get("cost", 0.0), seconds=_round_seconds(state, own), best_round=best_round,
        train_loss=train_loss, method=ctx.method.name,
        usage_at_end={k: usage.get(k, 0.0) + own.get(k, 0.0) for k in ("llm", "train", "eval", "total")})
    row = metrics.model_dump(mode="json")
    history = [*state.get("history", []), row]
    samples = [*state.get("samples", []), *batch]
    write_jsonl_atomic(ctx.run.samples, samples)
    write_jsonl_atomic(ctx.run.metrics, history)
    ctx.run.write_round_artifact(round, "metrics.json", row)
    ctx.run.write_round_artifact(round, "dev_predictions.json", predictions.model_dump(mode="json"))
    ctx.callbacks.on_round_end(metrics)
    return {
        "samples": samples, "history": history, "best_round": best_round, "best_f1": best_f1,
        "student_dir": str(checkpoint),
        # The wrapper adds the node's wall time to "total"; train and eval are ours to report.
        "usage": {"train": own.get("train", 0.0), "eval": own["eval"]},
    }


def _round_seconds(state: RunState, own: dict[str, float]) -> dict[str, float]:
    """This round's wall time split, from the cumulative counters at the end of the previous round."""
    usage = state.get("usage", {})
    before = state["history"][-1]["usage_at_end"] if state.get("history") else {}
    spent = {k: usage.get(k, 0.0) - before.get(k, 0.0) + own.get(k, 0.0)
             for k in ("llm", "train", "eval", "total")}
    spent["other"] = max(spent["total"] - spent["llm"] - spent["train"] - spent["eval"], 0.0)
    return spent


def decide(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Go on, or stop (the conditional edge after this node reads `stop_reason`)."""
    ctx = runtime.context
    # The round is committed: a resume starts from its checkpoint, so only that one stays.
    ctx.run.prune_checkpoints({state["round"]})
    reason, detail = should_stop(state, ctx.cfg.loop, ctx.method.stop) or (None, "")
    if detail:
        log.info("stopping before round %d (%s): %s", state["round"] + 1, reason, detail)
    ctx.callbacks.on_decision(Decision(round=state["round"], next="stop" if reason else "continue",
                                       stop_reason=reason, detail=detail))
    return {"stop_reason": reason, "stop_detail": detail}


# --- when to stop: pure functions of the state and the loop settings ---------------------------------


def should_stop(state: RunState, loop: LoopConfig,
                method_stop: Callable[[RunState], Stop | None] | None = None) -> Stop | None:
    """The first stop that applies: rounds, budgets, a plateau, the method's own rule, and (with
    loop.forecast_budget) a budget the next round is not expected to fit in."""
    usage = state.get("usage", {})
    tokens = usage.get("tokens_in", 0) + usage.get("tokens_out", 0)
    cost = usage.get("cost", 0.0)
    if state.get("round", 0) >= loop.max_rounds:
        return Stop("max_rounds")
    if loop.max_tokens is not None and tokens >= loop.max_tokens:
        return Stop("max_tokens")
    if loop.max_cost is not None and cost >= loop.max_cost:
        return Stop("max_cost")
    if loop.max_minutes is not None and usage.get("total", 0.0) >= loop.max_minutes * 60:
        return Stop("max_minutes")
    if rounds_since_improvement(state.get("history", []), loop.min_delta) >= loop.patience:
        return Stop("plateau")
    if method_stop is not None and (stop := method_stop(state)) is not None:
        return stop
    if loop.forecast_budget:
        spending = round_spending(state.get("history", []))
        if loop.max_tokens is not None and (
                why := unaffordable(tokens, loop.max_tokens, [t for t, _ in spending], "tokens")):
            return Stop("max_tokens", why)
        if loop.max_cost is not None and (why := unaffordable(cost, loop.max_cost, [c for _, c in spending], "$")):
            return Stop("max_cost", why)
    return None


def rounds_since_improvement(history: list[dict], min_delta: float) -> int:
    """Rounds after the last one that beat every earlier round by more than min_delta."""
    best, since = float("-inf"), 0
    for entry in history:
        if entry["f1"] > best + min_delta:
            best, since = entry["f1"], 0
        else:
            since += 1
    return since


def round_spending(history: list[dict]) -> list[tuple[int, float]]:
    """Teacher tokens and cost of each generation round (history holds running totals)."""
    totals = [(h["tokens_in"] + h["tokens_out"], h["cost"]) for h in history]
    return [(t1 - t0, c1 - c0) for (t0, c0), (t1, c1) in itertools.pairwise(totals)]


def unaffordable(spent: float, limit: float, per_round: list[float], unit: str) -> str | None:
    """Why the next round should not start: it is expected to cost more than what is left.
    A round cut short by the budget wastes what it spent on texts nobody labels or trains on.

    The expected cost is the mean round so far, or the last round when that cost more: rounds get
    dearer when their kind changes (loop.broad_share's cheap broad rounds, then aimed ones), and a
    mean over the cheap ones let a run start a round it could not pay for (6,358 of 6,000 tokens)."""
    if not per_round:
        return None
    expected = max(statistics.fmean(per_round), per_round[-1])
    left = limit - spent
    if expected <= left:
        return None
    places = 0 if unit == "tokens" else 4
    return f"a round costs about {expected:,.{places}f} {unit}, {left:,.{places}f} left"
