"""The end of a run, in one place: the best round and the final fit (if any) scored on test, the
outcome written (result.json, the typed `RunResult`; summary.md, rendered from it; report.html), the
round checkpoints deleted."""

from __future__ import annotations

import logging
from typing import Any

from langgraph.runtime import Runtime

from evokd.core.files import write_atomic
from evokd.core.records import FinalFitResult, RunResult
from evokd.core.runfolder import describe_budget, describe_teacher
from evokd.graph.context import Context
from evokd.graph.estimate import Estimate, estimate
from evokd.graph.state import RunState

log = logging.getLogger("evokd.graph")


def finish(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Score the best round's student and the final fit's on test; write result.json, summary.md and
    report.html; delete the round checkpoints (nothing needs them any more: student/ is the final
    fit's, or the best round's without one)."""
    ctx = runtime.context
    test = final_test = None
    if ctx.data.test:
        test = ctx.holder.at(str(ctx.run.best_round())).evaluate(ctx.data.test).model_dump(mode="json")
        if state.get("final_fit"):
            final_test = ctx.holder.at(str(ctx.run.final_fit_at())).evaluate(ctx.data.test).model_dump(mode="json")
    result = run_result(state, ctx, test, final_test)
    write_atomic(ctx.run.result, result.model_dump_json(indent=2) + "\n")
    write_atomic(ctx.run.summary, render_summary(result, state.get("history", []), dry_run_estimate(ctx)))
    try:
        # The report draws with matplotlib, slow to import: it is loaded when a run ends, not at start-up.
        from evokd.report import write_report

        write_report(ctx.run.root)
    except Exception as exc:
        log.warning("could not write report.html: %s", exc)
    ctx.run.prune_checkpoints(set())
    ctx.callbacks.on_run_end(result)
    return {"test": test, "final_test": final_test}


def run_result(state: RunState, ctx: Context, test: dict[str, Any] | None,
               final_test: dict[str, Any] | None = None) -> RunResult:
    """result.json: the run's outcome as a typed record."""
    history = state.get("history", [])
    fit = state.get("final_fit")
    final = FinalFitResult.model_validate(
        {**fit, "test_f1": final_test["f1"] if final_test is not None else None}) if fit else None
    best = history[state.get("best_round", 0)] if history else {}
    usage = state.get("usage", {})
    config = ctx.cfg.model_dump(mode="json")
    return RunResult(
        run_id=ctx.run.root.name, task_name=ctx.cfg.task.name, task_type=ctx.cfg.task.type,
        labels=list(ctx.cfg.task.labels), method=ctx.method.name, teacher_model=ctx.teacher.cfg.model,
        teacher_url=ctx.teacher.base_url, student_model=ctx.cfg.student.model,
        teacher=describe_teacher(config), budget=describe_budget(config),
        stop_reason=state.get("stop_reason"), stop_detail=state.get("stop_detail", ""),
        rounds=max(len(history) - 1, 0), seed_f1=history[0]["f1"] if history else float("nan"),
        best_round=state.get("best_round", 0), best_f1=best.get("f1", float("nan")),
        test_f1=test["f1"] if test is not None else None, final_fit=final,
        accepted=sum(h["accepted"] for h in history[1:]), rejected=sum(h["rejected"] for h in history[1:]),
        tokens_in=int(usage.get("tokens_in", 0)), tokens_out=int(usage.get("tokens_out", 0)),
        cost=usage.get("cost", 0.0), calls=int(usage.get("calls", 0)),
        seconds={k: usage.get(k, 0.0) for k in ("llm", "train", "eval", "total")})


def dry_run_estimate(ctx: Context) -> Estimate | None:
    """What `evokd run --dry-run` estimated for this config and data, for the summary to show beside
    what the run spent; None when it cannot say (the summary is written whatever the estimate does)."""
    try:
        return estimate(ctx.cfg, ctx.data, ctx.prompts, ctx.method, speed=False, method_data=ctx.method_data)
    except Exception as exc:
        log.warning("no estimate for summary.md: %s", exc)
        return None


def _score(f1: float | None) -> str:
    return "–" if f1 is None else f"{f1:.4f}"


def final_fit_sentence(final: FinalFitResult) -> str:
    """What the final fit did, in one sentence of summary.md."""
    calibration = (f"dev log-loss {final.dev_nll_before:.4f} before, {final.dev_nll_after:.4f} after (what T "
                   "minimises); " if final.dev_nll_before is not None and final.dev_nll_after is not None else "")
    return (f"Final fit: a fresh student trained on {final.train_size} samples (the seed set and every accepted "
            f"one), {final.epochs_run} of at most {final.max_epochs} epochs, the weights of epoch {final.best_epoch} "
            f"(best on dev) kept, then temperature-scaled on dev (T = {final.temperature:.3f}): {calibration}"
            f"dev expected calibration error {final.dev_ece_before:.4f} before, {final.dev_ece_after:.4f} after "
            f"(binned, so noisy on a small dev set) ({final.seconds / 60:.1f} min).")


def render_summary(result: RunResult, history: list[dict[str, Any]], est: Estimate | None = None) -> str:
    """summary.md: the RunResult for a person, the dry run's estimate beside the spend, and the rounds."""
    seconds = result.seconds
    lines = [
        f"# evokd run {result.run_id}",
        "",
        f"- task: {result.task_name} ({result.task_type}), labels: {', '.join(result.labels)}",
        f"- teacher: {result.teacher}",
        f"- student: {result.student_model}",
        f"- method: {result.method}",
        f"- stop reason: {result.stop_reason}" + (f" ({result.stop_detail})" if result.stop_detail else ""),
        "",
        f"| student | dev {result.metric} | test {result.metric} |",
        "|---|---|---|",
        f"| seed (round 0) | {result.seed_f1:.4f} | |",
    ]
    final = result.final_fit
    best_ships = " · ships" if final is not None and not final.shipped else ""
    lines.append(f"| best (round {result.best_round}){best_ships} | {result.best_f1:.4f} | {_score(result.test_f1)} |")
    if final is not None:
        final_ships = " · ships" if final.shipped else ""
        lines.append(f"| final fit (epoch {final.best_epoch}){final_ships} | {final.dev_f1:.4f} | "
                     f"{_score(final.test_f1)} |")
    lines += [
        "",
        f"- rounds: {result.rounds} generation rounds after the seed round",
        f"- samples: {result.accepted} accepted, {result.rejected} rejected",
        f"- teacher tokens: {result.tokens_in} in, {result.tokens_out} out; cost {result.cost:.4f}",
        f"- time: {seconds.get('total', 0.0) / 60:.1f} min (LLM {seconds.get('llm', 0.0) / 60:.1f}, "
        f"train {seconds.get('train', 0.0) / 60:.1f}, eval {seconds.get('eval', 0.0) / 60:.1f})",
    ]
    if est is not None:
        lines += [
            "",
            "| | rounds | teacher calls | tokens in | tokens out | tokens | cost |",
            "|---|---|---|---|---|---|---|",
            f"| estimated before the run (`--dry-run`) | {est.rounds} | {est.round_calls * est.rounds:.0f} | "
            f"{est.rounds * est.round_in:,} | {est.rounds * est.round_out:,} | {est.tokens:,} | {est.cost:.4f} |",
            f"| spent | {result.rounds} | {result.calls} | {result.tokens_in:,} | {result.tokens_out:,} | "
            f"{result.tokens_in + result.tokens_out:,} | {result.cost:.4f} |",
        ]
    lines += [
        "",
        "| round | dev F1 | accepted | rejected | tokens (cumulative) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {h['round']} | {h['f1']:.4f} | {h['accepted']} | {h['rejected']} | "
              f"{h['tokens_in'] + h['tokens_out']} |" for h in history]
    if final is not None:
        where = ("The final fit's student is in `student/`, the best round's in `best_round_student/`"
                 if final.shipped else
                 "The best round's student scored higher on dev than the final fit, so it ships: it is in "
                 "`student/` (and `best_round_student/`), the final fit's in `final_fit_student/`")
        lines += ["", final_fit_sentence(final), "", f"{where} (load either with `transformers.pipeline`).", ""]
    else:
        lines += ["", "The best student is in `student/` (load it with `transformers.pipeline`).", ""]
    return "\n".join(lines)
