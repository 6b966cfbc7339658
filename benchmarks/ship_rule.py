"""Which student should a run ship: its final fit, its best round's, or the one of the two that scored
higher on dev (final_fit.ship = "better_on_dev", the default)? Measured on recorded benchmark runs.

    python benchmarks/ship_rule.py BENCH_JSON... [--json docs/benchmarks/ship_rule.json]

Every graph run of an `evokd bench` JSON with a final fit records both students' dev F1 (the best
round's, and the final fit's at its kept epoch) and test F1 (`best_round_test_f1`; `test_f1`, or
`fits[0]` for a row with several final fits). So the rule is applied here to what the runs recorded,
with nothing refitted: for each table and method, the mean test F1 of the final fit, of the best round
and of the student the rule ships, and how many runs shipped the final fit. Rows recorded under the rule
keep the final fit's test F1 apart (`final_fit_test_f1`). Only the run's own final fit counts, not the
extra fits of `--fit-seeds`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evokd.core.files import write_atomic
from evokd.graph.final_fit import ships


def final_fit_test(row: dict[str, Any]) -> float:
    """The test F1 of the run's own final fit: `final_fit_test_f1` in rows recorded under the rule (whose
    `test_f1` may be the best round's), else the student the run shipped."""
    if row.get("final_fit_test_f1") is not None:
        return row["final_fit_test_f1"]
    return row["fits"][0] if row.get("fits") else row["test_f1"]


def readings(path: Path, seen: set[str]) -> dict[str, list[dict[str, float]]]:
    """Method -> one reading per graph run with a final fit: both students' dev and test F1. A run
    already in `seen` (a row kept from another table by --resume) is counted once, where first met."""
    out: dict[str, list[dict[str, float]]] = defaultdict(list)
    for row in json.loads(path.read_text()).get("runs", []):
        final = row.get("final_fit")
        if "error" in row or not final or row.get("best_round_test_f1") is None or row.get("run_dir") in seen:
            continue
        seen.add(row.get("run_dir") or f"{path}:{len(seen)}")
        out[row["method"]].append({"final_dev": final["dev_f1"], "round_dev": row["dev_f1"],
                                   "final_test": final_fit_test(row), "round_test": row["best_round_test_f1"]})
    return out


def summarise(runs: list[dict[str, float]]) -> dict[str, Any]:
    ships_final = [ships("better_on_dev", r["final_dev"], r["round_dev"]) for r in runs]
    chosen = [r["final_test"] if s else r["round_test"] for r, s in zip(runs, ships_final, strict=True)]
    return {"runs": len(runs), "final_fit": statistics.mean(r["final_test"] for r in runs),
            "best_round": statistics.mean(r["round_test"] for r in runs),
            "better_on_dev": statistics.mean(chosen), "final_fit_shipped": sum(ships_final),
            # The oracle (the better of the two on test): what no rule chosen on dev can beat.
            "oracle": statistics.mean(max(r["final_test"], r["round_test"]) for r in runs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+", type=Path, help="evokd bench JSON files")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in args.tables:
        for method, runs in readings(path, seen).items():
            rows.append({"table": str(path), "method": method, **summarise(runs)})
    if not rows:
        print("no graph run with a final fit and a test score in these tables", file=sys.stderr)
        return 1
    table = Table(title="test F1 of the student each rule ships (mean over a table's runs)")
    for column in ("table", "method", "runs", "final fit", "best round", "better on dev", "oracle",
                   "final fit shipped"):
        table.add_column(column)
    for r in rows:
        table.add_row(Path(r["table"]).parent.name, r["method"], str(r["runs"]), f"{r['final_fit']:.3f}",
                      f"{r['best_round']:.3f}", f"{r['better_on_dev']:.3f}", f"{r['oracle']:.3f}",
                      f"{r['final_fit_shipped']} of {r['runs']}")
    console = Console(width=max(Console().width, 110))
    console.print(table)
    runs = sum(r["runs"] for r in rows)
    overall = {key: sum(r[key] * r["runs"] for r in rows) / runs for key in
               ("final_fit", "best_round", "better_on_dev", "oracle")}
    console.print(f"over all {runs} runs: final fit {overall['final_fit']:.4f}, "
                  f"best round {overall['best_round']:.4f}, better on dev {overall['better_on_dev']:.4f}, "
                  f"oracle {overall['oracle']:.4f}", highlight=False)
    if args.json:
        write_atomic(args.json, json.dumps({"rows": rows, "overall": {"runs": runs, **overall}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
