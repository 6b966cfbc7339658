"""What a benchmark run cost, measured three ways: teacher tokens, price and teacher seconds.

Tokens alone flatter a method that reads much and writes little: an API bills input tokens at a
fraction of output tokens (1:4 is what hosted models charge; `OUT_PRICE`), and a local teacher spends
its time decoding output. So each run's rounds are also placed at their price (input-token
equivalents: input + 4 x output) and at the teacher seconds spent, and EvoKD is compared with static
at equal tokens, at equal price and at equal teacher seconds (loaded by tables.py and harness.py).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from evokd.bench.tables import best_within, mean_curve
from evokd.core.files import read_jsonl

OUT_PRICE = 4.0  # an output token costs this many input tokens
MEASURES = {
    "tokens": "teacher tokens (in + out)",
    "price": f"price (input-token equivalents, output x{OUT_PRICE:g})",
    "seconds": "teacher seconds",
}


def spend(run: dict[str, Any]) -> list[list[float]] | None:
    """Per finished round, cumulative [tokens in, tokens out, teacher seconds, dev F1]: recorded with
    the run, else read from its run folder's metrics.jsonl (runs benchmarked before it was recorded)."""
    if run.get("spend"):
        return run["spend"]
    metrics = Path(run["run_dir"]) / "metrics.jsonl" if run.get("run_dir") else None
    if metrics is None or not metrics.is_file():
        return None
    return spend_of(read_jsonl(metrics))


def spend_of(history: list[dict[str, Any]]) -> list[list[float]]:
    """The spend rows of RoundMetrics dicts (usage_at_end holds the cumulative teacher seconds)."""
    return [[h["tokens_in"], h["tokens_out"], h.get("usage_at_end", {}).get("llm", 0.0), h["f1"]] for h in history]


def position(row: list[float], measure: str) -> float:
    tokens_in, tokens_out, seconds, _ = row
    return {"tokens": tokens_in + tokens_out, "price": tokens_in + OUT_PRICE * tokens_out, "seconds": seconds}[measure]


def curve(run: dict[str, Any], measure: str) -> list[list[float]] | None:
    """[spent, dev F1] per round in the given measure."""
    rows = spend(run)
    return None if rows is None else [[position(row, measure), row[3]] for row in rows]


def at_equal(own: dict[str, Any], other: dict[str, Any], measure: str) -> float | None:
    """Best dev F1 of `own` minus `other`'s, each within what both had spent in the measure."""
    a, b = curve(own, measure), curve(other, measure)
    if not a or not b:
        return None
    limit = min(a[-1][0], b[-1][0])
    return best_within(a, limit) - best_within(b, limit)


def totals(run: dict[str, Any]) -> dict[str, float] | None:
    rows = spend(run)
    if not rows:
        return None
    last = rows[-1]
    return {"tokens_in": last[0], "tokens_out": last[1], "price": position(last, "price"), "seconds": last[2]}


def plot_costs(result: dict[str, Any], path: Path, levels: set[str]) -> None:
    """Dev F1 against tokens, price and teacher seconds, one panel each, mean over seeds."""
    import matplotlib  # pyplot, with the file-only Agg backend chosen before it loads: slow, only to plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in result["runs"] if r.get("error") is None]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, (measure, label) in zip(axes, MEASURES.items(), strict=True):
        by_method = {m: [c for r in runs if r["method"] == m and (c := curve(r, measure))] for m in result["methods"]}
        top = max([c[-1][0] for cs in by_method.values() for c in cs] + [1.0])
        grid = [top * i / 100 for i in range(101)]
        for method, curves in by_method.items():
            if method in levels:
                mine = [r["dev_f1"] for r in runs if r["method"] == method]
                if mine:
                    ax.axhline(statistics.fmean(mine), linestyle="--", color="grey" if method == "full" else "k",
                               linewidth=1, label=method)
            elif curves:
                ax.plot(grid, mean_curve(curves, grid), drawstyle="steps-post", label=method)
        ax.set_xlabel(label, fontsize=11)
        ax.set_ylabel(f"dev {result['metric']}", fontsize=11)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=9, loc="lower right")
    n = len(result["seeds"])
    fig.suptitle(f"{result['dataset']} ({result['profile']}): dev F1 against what the teacher cost, "
                 f"mean of {n} seed{'s' if n != 1 else ''}", fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def annotate(summary: dict[str, Any], comparisons: dict[str, Any], runs: list[dict[str, Any]],
             stats: Any) -> None:
    """Add each method's spend (tokens in and out, price, teacher seconds) to `summary`, and EvoKD
    against static at equal price and at equal teacher seconds to `comparisons` (paired by seed)."""
    ok = [r for r in runs if r.get("error") is None]
    for method, row in summary.items():
        spent = [t for r in ok if r["method"] == method and (t := totals(r))]
        for key in ("tokens_in", "tokens_out", "price", "seconds"):
            row[key] = stats([t[key] for t in spent])
    static = {r["seed"]: r for r in ok if r["method"] == "static"}
    for method, row in comparisons.items():
        if "minus_static" not in row:  # a baseline's row holds only its paired difference with static
            continue
        own = {r["seed"]: r for r in ok if r["method"] == method}
        for measure in ("price", "seconds"):
            row[f"minus_static_at_equal_{measure}"] = stats(
                [at_equal(own[s], static[s], measure) for s in own if s in static])
