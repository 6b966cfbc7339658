"""A final-fit setting measured on finished runs' own pools, with no teacher call.

    python benchmarks/refit_runs.py RUN_DIR... --set final_fit.weigh_by_teacher=true \
        [--json docs/benchmarks/refit_runs.json]

For each run folder that ended with a final fit: the seed set and every accepted sample are fitted
again with the run's own config plus the `--set` overrides (same student seed, same dev set), and
the new student's dev and test F1 are printed beside the run's own final fit (result.json), paired
by run, with the mean difference and a 95 % bootstrap interval over the runs (bench/tables.py's).
Choose on dev: the test column is reported, not chosen on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import evokd  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
from evokd.bench.tables import paired_difference
from evokd.core.files import read_jsonl, write_atomic
from evokd.core.records import RunResult
from evokd.graph.final_fit import weighed
from evokd.graph.prepare import load_task_data
from evokd.graph.runner import resume_config
from evokd.student.final_fit import final_fit


def refit(run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    cfg, run = resume_config(run_dir, overrides)
    result = RunResult.model_validate_json(run.result.read_text())
    if result.final_fit is None:
        raise SystemExit(f"{run_dir}: the run has no final fit to compare with")
    data = load_task_data(cfg)
    pool = [weighed(s, cfg.final_fit.weigh_by_teacher) for s in read_jsonl(run.samples) if s["accepted"]]
    student, report = final_fit(cfg.task, cfg.student, cfg.final_fit, pool, data.dev, seed=cfg.student.seed)
    return {"run": run.root.name, "method": result.method, "pool": len(pool),
            "weights": sorted(s.weight for s in pool)[:: max(1, len(pool) // 8)],
            "before": {"dev_f1": result.final_fit.dev_f1, "test_f1": result.final_fit.test_f1},
            "after": {"dev_f1": report.dev_f1, "test_f1": student.evaluate(data.test).f1 if data.test else None,
                      "best_epoch": report.best_epoch}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for the refit (repeatable)")
    parser.add_argument("--json", type=Path, help="write the rows and the paired differences here")
    args = parser.parse_args(argv)
    if not args.overrides:
        parser.error("give at least one --set: the setting to measure")
    rows = []
    for run_dir in args.runs:
        row = refit(run_dir, args.overrides)
        rows.append(row)
        print(f"{row['run']} ({row['method']}, {row['pool']} samples): dev {row['before']['dev_f1']:.4f} -> "
              f"{row['after']['dev_f1']:.4f}, test {row['before']['test_f1']:.4f} -> {row['after']['test_f1']:.4f}",
              flush=True)
    out: dict[str, Any] = {"overrides": args.overrides, "runs": rows}
    for split in ("dev_f1", "test_f1"):
        scored = [(i, r) for i, r in enumerate(rows) if r["after"][split] is not None]
        stat = paired_difference({i: r["after"][split] for i, r in scored}, {i: r["before"][split] for i, r in scored})
        out[split] = stat
        if stat is not None:
            interval = f" [{stat['low']:+.4f}, {stat['high']:+.4f}]" if stat["low"] is not None else ""
            print(f"{split}: {' '.join(args.overrides)} minus the run's own final fit {stat['mean']:+.4f}{interval}, "
                  f"up on {stat['won']} of {stat['n']} runs")
    if args.json:
        write_atomic(args.json, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
