"""The student-facing nodes: seed training, probe, trainer, the stop decision, and the finish."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from langgraph.runtime import Runtime

from evokd.core.bio import describe_entities
from evokd.core.files import write_atomic, write_jsonl_atomic
from evokd.core.records import Decision, RoundMetrics, RunResult, Sample, SampleRecord
from evokd.core.runfolder import describe_budget, describe_teacher
from evokd.graph.context import Context
from evokd.graph.route import should_stop
from evokd.graph.state import RunState

log = logging.getLogger("evokd.graph")


def to_sample(record: dict[str, Any]) -> Sample:
    return Sample(text=record["text"], label=record.get("label"), tokens=record.get("tokens"),
                  tags=record.get("tags"))


def predicted_value(prediction: Any) -> str | list[str] | None:
    return prediction.label if prediction.label is not None else prediction.tags


def note_prediction(record: dict[str, Any], prediction: Any) -> None:
    """What the student said of a sample, and (classification) how sure it was of the sample's label."""
    record["predicted"] = predicted_value(prediction)
    if prediction.probs is not None and record.get("label") in prediction.probs:
        record["confidence"] = round(prediction.probs[record["label"]], 6)


def is_correct(record: dict[str, Any]) -> bool:
    gold = record.get("label") if record.get("tags") is None else record.get("tags")
    return record.get("predicted") == gold


def for_analyst(record: dict[str, Any]) -> dict[str, Any]:
    if record.get("tokens") is None:
        return record
    return {**record, "gold_entities": describe_entities(record["tokens"], record.get("tags")),
            "predicted_entities": describe_entities(record["tokens"], record.get("predicted"))}


def review_sample(state: RunState, size: int, seed: int) -> list[dict[str, Any]]:
    """Earlier accepted samples replayed with a new batch (the paper's "review")."""
    earlier = [s for s in state.get("samples", []) if s["accepted"] and s["intent"] != "seed"]
    rng = random.Random(seed)
    return rng.sample(earlier, min(size, len(earlier)))


def write_run_files(ctx: Context, samples: list[dict], history: list[dict]) -> None:
    """samples.jsonl and metrics.jsonl are rewritten whole from the state, so a resumed round
    can never leave a duplicate line behind."""
    write_jsonl_atomic(ctx.run.samples, samples)
    write_jsonl_atomic(ctx.run.metrics, history)


def _round_seconds(state: RunState, own: dict[str, float]) -> dict[str, float]:
    """This round's wall time split, from the cumulative counters at the end of the previous round."""
    usage = state.get("usage", {})
    before = state["history"][-1]["usage_at_end"] if state.get("history") else {}
    spent = {k: usage.get(k, 0.0) - before.get(k, 0.0) + own.get(k, 0.0)
             for k in ("llm", "train", "eval", "total")}
    spent["other"] = max(spent["total"] - spent["llm"] - spent["train"] - spent["eval"], 0.0)
    return spent


def _finish_round(state: RunState, ctx: Context, *, round: int, student: Any, batch: list[dict],
                  train_size: int, own: dict[str, float], started: float,
                  train_loss: float | None = None) -> dict[str, Any]:
    """Evaluate on dev, checkpoint, track the best round and write the round's files."""
    t0 = time.time()
    report, predictions = student.score(ctx.data.dev, student.predict(ctx.data.dev))
    own["eval"] = time.time() - t0
    checkpoint = ctx.run.round_checkpoint(round)
    student.save(checkpoint)
    ctx.holder.source = str(checkpoint)
    best_round, best_f1 = state.get("best_round", 0), state.get("best_f1", float("-inf"))
    improved = report.f1 > best_f1
    if improved:
        best_round, best_f1 = round, report.f1
        ctx.run.keep_best(checkpoint)
    # Keep this round (the next resume point) and the previous one (this round's input, in case it is
    # redone); the best is in student/. `decide` drops the previous one once this round is committed.
    ctx.run.prune_checkpoints({round, round - 1})
    own["total"] = time.time() - started
    usage = state.get("usage", {})
    seconds = _round_seconds(state, own)
    accepted = sum(1 for s in batch if s["accepted"])
    metrics = RoundMetrics(
        round=round, f1=report.f1, dev=report.model_dump(mode="json"), accepted=accepted,
        rejected=len(batch) - accepted, train_size=train_size,
        tokens_in=int(usage.get("tokens_in", 0)), tokens_out=int(usage.get("tokens_out", 0)),
        cost=usage.get("cost", 0.0), seconds=seconds, best_round=best_round, train_loss=train_loss,
        method=ctx.cfg.loop.method,
        usage_at_end={k: usage.get(k, 0.0) + own.get(k, 0.0) for k in ("llm", "train", "eval", "total")},
    ).model_dump(mode="json")
    history = [*state.get("history", []), metrics]
    samples = [*state.get("samples", []), *batch]
    write_run_files(ctx, samples, history)
    ctx.run.write_round_artifact(round, "metrics.json", metrics)
    ctx.run.write_round_artifact(round, "dev_predictions.json", predictions.model_dump(mode="json"))
    ctx.events.round_finished(metrics)
    return {
        "samples": samples, "history": history, "best_round": best_round, "best_f1": best_f1,
        "student_dir": str(checkpoint),
        # The wrapper adds the node's wall time to "total"; train and eval are ours to report.
        "usage": {"train": own.get("train", 0.0), "eval": own["eval"]},
    }


def seed(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Round 0: a fresh student fine-tuned on the k-shot gold seed set."""
    ctx = runtime.context
    started = time.time()
    student = ctx.holder.fresh()
    batch = [SampleRecord(round=0, text=s.text, intent="seed", label=s.label, tokens=s.tokens,
                          tags=s.tags, accepted=True, method=ctx.cfg.loop.method).model_dump(mode="json")
             for s in ctx.data.seed]
    t0 = time.time()
    fitted = student.fit(ctx.data.seed, epochs=ctx.cfg.student.seed_epochs, seed=ctx.cfg.student.seed,
                         on_step=lambda done, total: ctx.events.progress("seed training", done, total))
    own = {"train": time.time() - t0}
    update = _finish_round({**state, "round": 0}, ctx, round=0, student=student, batch=batch,
                           train_size=len(ctx.data.seed), own=own, started=started, train_loss=fitted.loss)
    return {**update, "round": 0, "latest": batch}


def probe(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Split the latest batch into samples the student got right and wrong.

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
    return {
        "correct": [for_analyst(s) for s in rng.sample(correct, min(shown, len(correct)))],
        "incorrect": [for_analyst(s) for s in rng.sample(incorrect, min(shown, len(incorrect)))],
        # A new round starts a new Analyst conversation.
        "conversation": [], "candidates": [], "batch": [], "analysis": "",
    }


def probe_seed(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """LLM2LLM's probe: the seed examples the current student gets wrong (all of them, every round)."""
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
    return {"correct": [s for s in seed if is_correct(s)],
            "incorrect": incorrect, "batch": []}


def _train_round(state: RunState, ctx: Context, *, restart: bool) -> dict[str, Any]:
    started = time.time()
    round = state["round"]
    student = ctx.holder.at(state["student_dir"])
    batch = [dict(s) for s in state.get("batch", [])]
    accepted = [s for s in batch if s["accepted"]]
    for record, prediction in zip(accepted, student.predict([to_sample(s) for s in accepted]), strict=True):
        note_prediction(record, prediction)
    earlier = [s for s in state.get("samples", []) if s["accepted"]]
    seed_samples = [s for s in earlier if s["intent"] == "seed"]
    if restart:
        # LLM2LLM: the student starts again from its base weights on seed + everything generated.
        replay = [s for s in earlier if s["intent"] != "seed"]
        epochs = ctx.cfg.student.seed_epochs
    elif ctx.cfg.loop.method == "evokd" and ctx.cfg.loop.replay_all:
        replay = [s for s in earlier if s["intent"] != "seed"]
        epochs = ctx.cfg.student.epochs_per_round
    else:
        replay = review_sample(state, ctx.cfg.loop.review_size, ctx.cfg.sampling.seed + round)
        epochs = ctx.cfg.student.epochs_per_round
    train = [to_sample(s) for s in [*accepted, *seed_samples, *replay]]
    own: dict[str, float] = {"train": 0.0}
    loss = None
    if accepted:
        t0 = time.time()
        if restart:
            student = ctx.holder.fresh()
        loss = student.fit(train, epochs=epochs, seed=ctx.cfg.student.seed + round,
                           on_step=lambda done, total: ctx.events.progress("training", done, total)).loss
        own["train"] = time.time() - t0
    update = _finish_round(state, ctx, round=round, student=student, batch=batch,
                           train_size=len(train) if accepted else 0, own=own, started=started, train_loss=loss)
    # A round that accepted nothing leaves the previous batch as the one to probe next.
    return {**update, "latest": accepted or state.get("latest", [])}


def trainer(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Continue training on the round's accepted samples plus the seed set and a review sample."""
    return _train_round(state, runtime.context, restart=False)


def retrainer(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """LLM2LLM's trainer: from the base weights, on the seed set and every accepted sample so far."""
    return _train_round(state, runtime.context, restart=True)


def decide(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    # The round is committed: a resume starts from its checkpoint, so only that one stays.
    ctx.run.prune_checkpoints({state["round"]})
    reason, detail = should_stop(state, ctx.cfg.loop) or (None, "")
    if detail:
        log.info("stopping before round %d (%s): %s", state["round"] + 1, reason, detail)
    ctx.trace.write(Decision(round=state["round"], next="stop" if reason else "continue",
                             stop_reason=reason, detail=detail))
    return {"stop_reason": reason, "stop_detail": detail}


def finish(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Score the best round on test; write result.json, summary.md and report.html; delete the round
    checkpoints (nothing needs them any more: student/ is the best round's)."""
    ctx = runtime.context
    test = None
    if ctx.data.test:
        best = ctx.holder.at(str(ctx.run.student))
        test = best.evaluate(ctx.data.test).model_dump(mode="json")
    write_atomic(ctx.run.result, run_result(state, ctx, test).model_dump_json(indent=2) + "\n")
    write_atomic(ctx.run.summary, render_summary(state, ctx, test))
    try:
        from evokd.report import write_report

        write_report(ctx.run.root)
    except Exception as exc:
        log.warning("could not write report.html: %s", exc)
    ctx.run.prune_checkpoints(set())
    return {"test": test}


def run_result(state: RunState, ctx: Context, test: dict | None) -> RunResult:
    """result.json: the run's outcome as a typed record (what summary.md says, for programs)."""
    history = state.get("history", [])
    best = history[state.get("best_round", 0)] if history else {}
    usage = state.get("usage", {})
    config = ctx.cfg.model_dump(mode="json")
    return RunResult(
        run_id=ctx.run.root.name, task_name=ctx.cfg.task.name, task_type=ctx.cfg.task.type,
        labels=list(ctx.cfg.task.labels), method=ctx.cfg.loop.method, teacher_model=ctx.teacher.cfg.model,
        teacher_url=ctx.teacher.base_url, student_model=ctx.cfg.student.model,
        teacher=describe_teacher(config), budget=describe_budget(config),
        stop_reason=state.get("stop_reason"), stop_detail=state.get("stop_detail", ""),
        rounds=max(len(history) - 1, 0), seed_f1=history[0]["f1"] if history else float("nan"),
        best_round=state.get("best_round", 0), best_f1=best.get("f1", float("nan")),
        test_f1=test["f1"] if test is not None else None,
        accepted=sum(h["accepted"] for h in history[1:]), rejected=sum(h["rejected"] for h in history[1:]),
        tokens_in=int(usage.get("tokens_in", 0)), tokens_out=int(usage.get("tokens_out", 0)),
        cost=usage.get("cost", 0.0),
        seconds={k: usage.get(k, 0.0) for k in ("llm", "train", "eval", "total")})


def estimate_beside_spent(state: RunState, ctx: Context) -> list[str]:
    """What `evokd run --dry-run` estimated for this config and data, beside what the run spent."""
    from evokd.graph.estimate import estimate

    try:
        est = estimate(ctx.cfg, ctx.data, ctx.prompts, speed=False)
    except Exception as exc:  # the summary must be written whatever the estimate does
        log.warning("no estimate for summary.md: %s", exc)
        return []
    usage = state.get("usage", {})
    spent_in, spent_out = int(usage.get("tokens_in", 0)), int(usage.get("tokens_out", 0))
    return [
        "",
        "| | rounds | teacher calls | tokens in | tokens out | tokens | cost |",
        "|---|---|---|---|---|---|---|",
        f"| estimated before the run (`--dry-run`) | {est.rounds} | {est.round_calls * est.rounds:.0f} | "
        f"{est.rounds * est.round_in:,} | {est.rounds * est.round_out:,} | {est.tokens:,} | {est.cost:.4f} |",
        f"| spent | {len(state.get('history', [])) - 1} | {int(usage.get('calls', 0))} | {spent_in:,} | "
        f"{spent_out:,} | {spent_in + spent_out:,} | {usage.get('cost', 0.0):.4f} |",
    ]


def render_summary(state: RunState, ctx: Context, test: dict | None) -> str:
    history = state.get("history", [])
    seed_f1 = history[0]["f1"] if history else float("nan")
    best = history[state.get("best_round", 0)] if history else {}
    usage = state.get("usage", {})
    lines = [
        f"# evokd run {ctx.run.root.name}",
        "",
        f"- task: {ctx.cfg.task.name} ({ctx.cfg.task.type}), labels: {', '.join(ctx.cfg.task.labels)}",
        f"- teacher: {describe_teacher(ctx.cfg.model_dump(mode='json'))}",
        f"- student: {ctx.cfg.student.model}",
        f"- method: {ctx.cfg.loop.method}",
        f"- stop reason: {state.get('stop_reason')}"
        + (f" ({state['stop_detail']})" if state.get("stop_detail") else ""),
        "",
        f"| | dev {ctx.cfg.task.metric} |",
        "|---|---|",
        f"| seed (round 0) | {seed_f1:.4f} |",
        f"| best (round {state.get('best_round', 0)}) | {best.get('f1', float('nan')):.4f} |",
    ]
    if test is not None:
        lines.append(f"| test, best round | {test['f1']:.4f} |")
    lines += [
        "",
        f"- rounds: {len(history) - 1} generation rounds after the seed round",
        f"- samples: {sum(h['accepted'] for h in history[1:])} accepted, "
        f"{sum(h['rejected'] for h in history[1:])} rejected",
        f"- teacher tokens: {int(usage.get('tokens_in', 0))} in, {int(usage.get('tokens_out', 0))} out; "
        f"cost {usage.get('cost', 0.0):.4f}",
        f"- time: {usage.get('total', 0.0) / 60:.1f} min (LLM {usage.get('llm', 0.0) / 60:.1f}, "
        f"train {usage.get('train', 0.0) / 60:.1f}, eval {usage.get('eval', 0.0) / 60:.1f})",
        *estimate_beside_spent(state, ctx),
        "",
        "| round | dev F1 | accepted | rejected | tokens (cumulative) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {h['round']} | {h['f1']:.4f} | {h['accepted']} | {h['rejected']} | "
              f"{h['tokens_in'] + h['tokens_out']} |" for h in history]
    lines += ["", "The best student is in `student/` (load it with `transformers.pipeline`).", ""]
    return "\n".join(lines)
