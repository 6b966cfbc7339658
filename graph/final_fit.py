"""The final fit, the node between the last `decide` and `finish` (with loop.final_fit, the default).

The per-round student is the loop's probe: it continues from round to round on each new batch and
a review sample, so most of what the teacher wrote is seen only in its own round, and the best round
is the luckiest of several noisy dev scores. When the loop stops, this node fits a fresh student
once on everything the run bought, the seed set and every accepted sample (each method's own pool),
with the [final_fit] recipe: its stopping point chosen on dev, its probabilities calibrated on dev
(student/final_fit.py). It ships as student/, unless the best round's student scored higher on dev
(final_fit.ship, `ships`): a pool of a few dozen texts can fit worse than the rounds did, and the
choice is made on dev, never on test. The best round's student is set aside in best_round_student/
(and copied back to student/ when it ships; the final fit then goes to final_fit_student/), and
`finish` scores both on test.

A resumed run killed here redoes the whole node (the fit is seeded, so it gives the same student), and
a replay re-executes it: it is part of the recorded run.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

from langgraph.runtime import Runtime

from evokd.core.files import write_atomic
from evokd.core.records import Sample
from evokd.core.samples import to_sample
from evokd.graph.context import Context
from evokd.graph.state import RunState

log = logging.getLogger("evokd.graph")


def weighed(record: dict[str, Any], by_teacher: bool) -> Sample:
    """A sample of the pool; with `by_teacher`, weighing what the Verifier gave its label (else 1)."""
    sample = to_sample(record)
    if by_teacher and record.get("teacher_p") is not None:
        sample.weight = record["teacher_p"]
    return sample


def ships(rule: str, final_dev: float, round_dev: float | None) -> bool:
    """Whether the final fit ships rather than the best round's student (`rule`: final_fit.ship).
    Ties go to the final fit, which learned from everything the run bought."""
    return rule == "final_fit" or round_dev is None or final_dev >= round_dev


def final_fit(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """A fresh student on the seed set and every accepted sample; it becomes student/ unless the best
    round's student scored higher on dev."""
    from evokd.student.final_fit import final_fit as fit  # torch, transformers: loaded when a run first trains

    ctx = runtime.context
    pool = [weighed(s, ctx.cfg.final_fit.weigh_by_teacher) for s in state.get("samples", []) if s["accepted"]]
    ctx.run.set_aside_best_round()
    student, report = fit(ctx.cfg.task, ctx.cfg.student, ctx.cfg.final_fit, pool, ctx.data.dev,
                          seed=ctx.cfg.student.seed,
                          on_step=lambda done, total: ctx.callbacks.on_progress("final fit", done, total))
    shipped = ships(ctx.cfg.final_fit.ship, report.dev_f1, state.get("best_f1"))
    if shipped:
        shutil.rmtree(ctx.run.final_fit_student, ignore_errors=True)
        student.save(ctx.run.student)
    else:
        log.info("the best round's student ships: dev %.4f against the final fit's %.4f",
                 state.get("best_f1"), report.dev_f1)
        student.save(ctx.run.final_fit_student)
        ctx.run.keep_best(ctx.run.best_round_student)
    ctx.holder.student, ctx.holder.source = student, str(ctx.run.final_fit_at())
    write_atomic(ctx.run.final_fit, report.model_dump_json(indent=2) + "\n")
    return {"final_fit": {**report.model_dump(mode="json", exclude={"recipe"}), "shipped": shipped},
            "usage": {"train": report.seconds}}
