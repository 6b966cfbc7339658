"""A final fit on finished runs' own pools: does a fresh student on everything a run accepted beat
the run's best-round student? (issue 25)

    python benchmarks/final_fit_on_runs.py RUN_DIR... [--test FILE] [--json docs/benchmarks/final_fit_on_runs.json]

For each run folder (one that ended without a final fit: its student/ is the best round's): the
seed set and every accepted sample of samples.jsonl are fitted with the run's [final_fit] recipe
(its config, or today's defaults for a run recorded before the section existed), stopped on the
run's own dev set and calibrated on it, then scored on the run's test set beside student/. With
--test, both are also scored on that whole file (e.g. all 872 SST-2 test texts).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import evokd  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
from evokd.core.files import read_jsonl, write_atomic
from evokd.core.samples import to_sample
from evokd.graph.prepare import load_task_data
from evokd.graph.runner import resume_config
from evokd.student.data import read_samples
from evokd.student.final_fit import final_fit
from evokd.student.model import load_student


def measure(run_dir: Path, test_file: Path | None) -> dict[str, Any]:
    cfg, run = resume_config(run_dir)
    data = load_task_data(cfg)
    pool = [to_sample(s) for s in read_jsonl(run.samples) if s["accepted"]]
    best = load_student(run.student, cfg.task, cfg.student)
    student, report = final_fit(cfg.task, cfg.student, cfg.final_fit, pool, data.dev, seed=cfg.student.seed)
    row: dict[str, Any] = {
        "run": run.root.name, "method": json.loads(run.result.read_text())["method"], "pool": len(pool),
        "dev": len(data.dev), "test": len(data.test),
        "best_round": {"test_f1": best.evaluate(data.test).f1},
        "final_fit": {"test_f1": student.evaluate(data.test).f1, **report.model_dump(mode="json", exclude={"recipe"})},
    }
    if test_file is not None:
        whole = read_samples(test_file, cfg.task)
        row["whole_test"] = {"n": len(whole), "best_round": best.evaluate(whole).f1,
                             "final_fit": student.evaluate(whole).f1}
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--test", type=Path, help="also score both students on this whole test file")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
                        / "final_fit_on_runs.json")
    args = parser.parse_args(argv)
    rows = json.loads(args.json.read_text())["runs"] if args.json.is_file() else []
    for run_dir in args.runs:
        row = measure(run_dir, args.test)
        rows = [r for r in rows if r["run"] != row["run"]] + [row]
        write_atomic(args.json, json.dumps({"runs": rows}, indent=1) + "\n")
        whole = row.get("whole_test")
        print(f"{row['run']} ({row['method']}, {row['pool']} samples): test F1 best round "
              f"{row['best_round']['test_f1']:.4f}, final fit {row['final_fit']['test_f1']:.4f}"
              + (f"; whole test ({whole['n']}): {whole['best_round']:.4f} vs {whole['final_fit']:.4f}" if whole else "")
              + f"; final fit epoch {row['final_fit']['best_epoch']} of {row['final_fit']['epochs_run']}, "
              f"dev {row['final_fit']['dev_f1']:.4f}, dev ECE {row['final_fit']['dev_ece_before']:.3f} -> "
              f"{row['final_fit']['dev_ece_after']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
