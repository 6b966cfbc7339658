"""The student's schedule, replayed offline on finished runs (issue 18, hypothesis 8).

A run folder keeps every accepted sample with its round. This script trains a fresh student on the
same seed set and the same rounds of samples under other schedules, with no teacher call, and
reports the dev F1 per round and the test F1 of the best dev round, as the run itself does. The
first schedule, `review`, is the one the runs used: it reproduces their curves and so checks the
replay. For `static` the texts did not depend on the student, so its rows are exact; for the
feedback loops they answer "these texts, another schedule".

    python benchmarks/schedule_replay.py RUN_DIR [RUN_DIR ...] [--schedules review,all-2,all-3]
        [--json docs/benchmarks/schedule_replay.json]

Schedules: `review` continues training on the round's samples + seed set + a review sample of
loop.review_size earlier ones for student.epochs_per_round epochs; `all-E` continues on seed set +
every sample accepted so far for E epochs; `:k=v+k=v` sets student options
(review:lr_schedule=linear+learning_rate=5e-5).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from evokd.config import load_config
from evokd.core.files import read_jsonl
from evokd.core.samples import to_sample
from evokd.graph.prepare import load_task_data
from evokd.graph.steps import review_sample
from evokd.student.model import build_student


def rounds_of(run: Path) -> dict[int, list[dict[str, Any]]]:
    samples = read_jsonl(run / "samples.jsonl")
    by_round: dict[int, list[dict[str, Any]]] = {}
    for s in samples:
        if s["accepted"] and s["intent"] != "seed":
            by_round.setdefault(s["round"], []).append(s)
    return dict(sorted(by_round.items()))


def replay(run: Path, schedule: str) -> dict[str, Any]:
    cfg = load_config(run / "config.toml")
    data = load_task_data(cfg)
    schedule, _, changes = schedule.partition(":")
    update = {k: (v if k == "lr_schedule" else float(v)) for k, v in (c.split("=") for c in changes.split("+") if c)}
    student_cfg = cfg.student.model_validate({**cfg.student.model_dump(), **update})
    student = build_student(cfg.task, student_cfg)
    student.fit(data.seed, epochs=cfg.student.seed_epochs, seed=cfg.student.seed)
    curve = [student.evaluate(data.dev).f1]
    best, best_test = curve[0], student.evaluate(data.test).f1
    kept: list[dict[str, Any]] = []
    started = time.time()
    for number, batch in rounds_of(run).items():
        if schedule == "review":
            # The trainer's own draw: `kept` is what its state holds (accepted, generated samples).
            extra = review_sample({"samples": kept}, cfg.loop.review_size, cfg.sampling.seed + number)
            epochs = cfg.student.epochs_per_round
        else:
            extra, epochs = list(kept), int(schedule.split("-")[1])
        # The trainer's order: the round's samples, the seed set, then the replayed ones.
        train = [to_sample(s) for s in batch] + list(data.seed) + [to_sample(s) for s in extra]
        student.fit(train, epochs=epochs, seed=cfg.student.seed + number)
        kept += batch
        curve.append(student.evaluate(data.dev).f1)
        if curve[-1] > best:
            best, best_test = curve[-1], student.evaluate(data.test).f1
    return {"run": run.name, "method": cfg.loop.method, "seed": cfg.sampling.seed,
            "schedule": f"{schedule}:{changes}" if changes else schedule,
            "dev_curve": [round(f, 4) for f in curve], "best_dev": best, "test_f1": best_test,
            "samples": len(kept), "seconds": round(time.time() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--schedules", default="review,all-2,all-3")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for run in args.runs:
        for schedule in args.schedules.split(","):
            row = replay(run, schedule)
            rows.append(row)
            print(f"{row['run']:<45} {schedule:<8} dev {row['best_dev']:.3f} test {row['test_f1']:.3f} "
                  f"swing {max_swing(row['dev_curve']):.3f}  {row['dev_curve']}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print("\nmean over runs (method, schedule): best dev, test, largest drop between rounds")
    for key in sorted({(r["method"], r["schedule"]) for r in rows}):
        mine = [r for r in rows if (r["method"], r["schedule"]) == key]
        print(f"{key[0]:<8} {key[1]:<8} dev {statistics.mean(r['best_dev'] for r in mine):.3f} "
              f"test {statistics.mean(r['test_f1'] for r in mine):.3f} "
              f"drop {statistics.mean(max_swing(r['dev_curve']) for r in mine):.3f}  ({len(mine)} runs)")
    return 0


def max_swing(curve: list[float]) -> float:
    """The largest fall of dev F1 from one round to the next."""
    return max([a - b for a, b in itertools.pairwise(curve)] + [0.0])


if __name__ == "__main__":
    sys.exit(main())
