"""Where a benchmark's teacher tokens went and what they bought, read from its runs' traces.

    python benchmarks/spending.py docs/benchmarks/sst2-quick.json [--json OUT]

Per method (summed over seeds): tokens per agent node, generated and accepted samples, tokens per
accepted sample, and the rejection reasons. This is how results.md explains a method's score:
EvoKD's Analyst turn and separate Verifier make each accepted sample dearer than a static one.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evokd.core.files import read_jsonl
from evokd.core.records import LLMCall, SampleRecord
from evokd.core.trace import read_trace


def reason_kind(reason: str) -> str:
    """A rejection reason without its specifics ("entity 'X' not found" -> "entity not found")."""
    return re.sub(r"\s+", " ", re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "", reason)).strip()


def run_spending(run_dir: Path) -> dict[str, Any]:
    nodes: Counter[str] = Counter()
    for record in read_trace(run_dir / "trace.jsonl"):
        if isinstance(record, LLMCall):
            nodes[record.node.removesuffix("-top-up")] += record.tokens_in + record.tokens_out
    generated = [s for s in read_jsonl(run_dir / "samples.jsonl", SampleRecord) if s.intent != "seed"]
    return {"nodes": nodes, "generated": len(generated), "accepted": sum(s.accepted for s in generated),
            "reasons": Counter(reason_kind(s.reason) for s in generated if s.reason)}


def spending(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Method -> summed spending of its runs that have a run folder on this machine."""
    out: dict[str, dict[str, Any]] = defaultdict(lambda: {"runs": 0, "nodes": Counter(), "generated": 0,
                                                         "accepted": 0, "reasons": Counter()})
    for run in result["runs"]:
        if not run.get("run_dir") or not Path(run["run_dir"], "trace.jsonl").exists():
            continue
        one, total = run_spending(Path(run["run_dir"])), out[run["method"]]
        total["runs"] += 1
        for key in ("nodes", "reasons"):
            total[key].update(one[key])
        total["generated"] += one["generated"]
        total["accepted"] += one["accepted"]
    return dict(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="a benchmark JSON written by evokd bench")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    table = spending(json.loads(args.result.read_text(encoding="utf-8")))
    if not table:
        raise SystemExit(f"{args.result}: none of its run folders is on this machine (they stay in runs/bench/ "
                         "where the benchmark ran); run the benchmark here first")
    view = Table(title=f"teacher spending per method, summed over seeds: {args.result.name}")
    for col in ("method", "runs", "tokens by node", "generated", "accepted", "tokens / accepted", "rejections"):
        view.add_column(col)
    for method, t in table.items():
        tokens = sum(t["nodes"].values())
        view.add_row(method, str(t["runs"]), ", ".join(f"{n} {v:,}" for n, v in t["nodes"].most_common()),
                     str(t["generated"]), str(t["accepted"]), f"{tokens / t['accepted']:.0f}" if t["accepted"] else "–",
                     "; ".join(f"{r} ×{c}" for r, c in t["reasons"].most_common()))
    Console(width=200).print(view)
    if args.json:
        args.json.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
