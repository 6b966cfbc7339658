"""Per-round wall time of a real run, split into LLM, train, eval and graph + tracing overhead.

    python benchmarks/round_time.py [CONFIG] [--set section.key=value ...]

Runs CONFIG (default: the sentiment demo on the embedded teacher) in-process, timing every
trace write, then prints a table and writes docs/benchmarks/round_time.json.
Targets: graph + tracing <= 1 % of a round; everything but the LLM <= 30 %.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evokd.config import load_config
from evokd.core import trace as trace_module
from evokd.core.files import read_jsonl
from evokd.core.records import LLMCall, NodeTurn
from evokd.core.trace import read_trace
from evokd.graph.runner import execute

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "round_time.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(ROOT / "examples" / "sentiment" / "config.toml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    cfg = load_config(Path(args.config), args.overrides)

    trace_seconds = {"total": 0.0}
    write = trace_module.TraceWriter.write

    def timed_write(self, record) -> None:
        started = time.perf_counter()
        write(self, record)
        trace_seconds["total"] += time.perf_counter() - started

    trace_module.TraceWriter.write = timed_write  # type: ignore[method-assign]
    started = time.time()
    result = execute(cfg)
    wall = time.time() - started

    records = list(read_trace(result.run.trace))
    metrics = read_jsonl(result.run.metrics)
    rows = []
    for m in metrics[1:]:
        r = m["round"]
        turns = [t for t in records if isinstance(t, NodeTurn) and t.round == r]
        calls = [c for c in records if isinstance(c, LLMCall) and c.round == r]
        span = max(t.ended_at for t in turns) - min(t.started_at for t in turns)
        llm = sum(c.latency_s for c in calls)
        in_nodes = sum(t.seconds for t in turns)
        rows.append({"round": r, "wall": span, "llm": llm, "train": m["seconds"]["train"],
                     "eval": m["seconds"]["eval"], "between_nodes": max(span - in_nodes, 0.0)})
    # Trace writes happen inside and between nodes: spread their total over the rounds by wall time.
    total_span = sum(row["wall"] for row in rows) or 1.0
    for row in rows:
        row["tracing"] = trace_seconds["total"] * row["wall"] / total_span
        row["graph_and_tracing"] = row["between_nodes"] + row["tracing"]
        row["other"] = max(row["wall"] - row["llm"] - row["train"] - row["eval"] - row["graph_and_tracing"], 0.0)
        row["graph_share"] = row["graph_and_tracing"] / row["wall"]
        row["non_llm_share"] = (row["wall"] - row["llm"]) / row["wall"]

    table = Table(title=f"round time: {result.run.root.name}")
    for col in ("round", "wall s", "LLM s", "train s", "eval s", "graph+trace s", "other s", "graph %", "non-LLM %"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(str(row["round"]), f"{row['wall']:.1f}", f"{row['llm']:.1f}", f"{row['train']:.1f}",
                      f"{row['eval']:.2f}", f"{row['graph_and_tracing']:.3f}", f"{row['other']:.1f}",
                      f"{row['graph_share']:.2%}", f"{row['non_llm_share']:.1%}")
    console = Console()
    console.print(table)
    summary = {
        "config": str(args.config), "overrides": args.overrides, "run": str(result.run.root), "wall_s": wall,
        "rounds": rows,
        "mean_graph_share": sum(r["graph_share"] for r in rows) / max(len(rows), 1),
        "mean_non_llm_share": sum(r["non_llm_share"] for r in rows) / max(len(rows), 1),
        "seed_f1": metrics[0]["f1"], "best_f1": max(m["f1"] for m in metrics),
    }
    console.print(f"mean graph+tracing share {summary['mean_graph_share']:.2%} (target <= 1 %), "
                  f"mean non-LLM share {summary['mean_non_llm_share']:.1%} (target <= 30 %)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
