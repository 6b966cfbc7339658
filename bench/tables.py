"""The benchmark's numbers as tables and plots: per-method statistics over seeds, the markdown
table, the terminal table, and the figures written next to the JSON (loaded by harness.py)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evokd.core.files import write_atomic

# The methods compared with static and full; the pool's query strategies also with random picking.
EVOKD = ["evokd", "evokd-paper", "evokd-paper+metrics", "pool", "pool+diverse", "pool-random"]
POOL = ["pool", "pool+diverse"]
DELTA = 0.02  # the difference the tables are asked to see (issue 25): each says how many seeds that takes


def stats(values: list[float | None]) -> dict[str, Any] | None:
    """Mean, sample standard deviation and count of the values that exist."""
    xs = [v for v in values if v is not None and not math.isnan(v)]
    if not xs:
        return None
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}


def paired_difference(own: dict[int, float], other: dict[int, float],
                      resamples: int = 10_000) -> dict[str, Any] | None:
    """own − other on the seeds both ran: the mean difference, its 95 % percentile bootstrap interval
    (the seeds resampled with replacement; none with one seed) and how many seeds own won (strictly
    higher). Paired, as both ran on the same seed sets, so the seed-to-seed spread they share cancels."""
    seeds = sorted(own.keys() & other.keys())
    if not seeds:
        return None
    diffs = [own[s] - other[s] for s in seeds]
    low = high = None
    if len(diffs) > 1:
        # scipy: a transitive dependency (seqeval -> scikit-learn), slow to import: only when a table is made.
        import numpy as np
        from scipy.stats import bootstrap

        ci = bootstrap((np.array(diffs),), np.mean, confidence_level=0.95, n_resamples=resamples,
                       method="percentile", random_state=np.random.default_rng(0)).confidence_interval
        low, high = float(ci.low), float(ci.high)
    sd = statistics.stdev(diffs) if len(diffs) > 1 else None
    return {"mean": statistics.fmean(diffs), "low": low, "high": high, "n": len(diffs),
            "won": sum(d > 0 for d in diffs), "sd": sd, "seeds_to_see": seeds_to_see(sd)}


def seeds_to_see(sd: float | None, delta: float = DELTA) -> int | None:
    """Paired seeds for 80 % power to find a true difference of `delta` at α = 0.05 (two-sided), at
    this spread of the paired differences: n ≈ (1.96 + 0.84)² σ² / Δ² = 7.85 σ² / Δ² (the normal
    approximation; at least 2). How many seeds a table needs before its interval can exclude 0."""
    if sd is None:
        return None
    return max(2, math.ceil(7.85 * sd**2 / delta**2))


def fmt_paired(paired: dict[str, Any] | None) -> tuple[str, str, str, str]:
    """(mean, interval, seeds won, seeds to see DELTA) as table cells."""
    if paired is None:
        return "–", "–", "–", "–"
    interval = "–" if paired["low"] is None else f"[{paired['low']:+.4f}, {paired['high']:+.4f}]"
    needed = paired.get("seeds_to_see")
    return (f"{paired['mean']:+.4f}", interval, f"{paired['won']} of {paired['n']}",
            "–" if needed is None else f"{needed} (σ {paired['sd']:.3f})")


def best_within(curve: list[list[float]], tokens: float) -> float:
    """The best dev F1 a run had reached once it had spent at most `tokens` teacher tokens."""
    return max(f1 for spent, f1 in curve if spent <= tokens)


def headline(run: dict[str, Any]) -> float | None:
    """The F1 a method is reported by: test F1 of the student the run ships (its final fit, or the best
    dev round's without one or when that scored higher on dev), else its dev F1."""
    if run.get("test_f1") is not None:
        return run["test_f1"]
    final = run.get("final_fit")
    return final["dev_f1"] if final else run.get("dev_f1")


def finished_f1(run: dict[str, Any]) -> float:
    """The headline F1 of a run that finished (one that failed has an "error" and none)."""
    f1 = headline(run)
    if f1 is None:
        raise ValueError(f"run {run.get('method')} seed {run.get('seed')} has no F1")
    return f1


def summarise(runs: list[dict[str, Any]], methods: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per method mean ± std, and the comparisons the paper reports (paired by seed)."""
    ok = [r for r in runs if r.get("error") is None]
    by = {m: {r["seed"]: r for r in ok if r["method"] == m} for m in methods}
    summary: dict[str, Any] = {}
    for method in methods:
        rs = list(by[method].values())
        gains = [(r["dev_f1"] - r["seed_f1"]) / r["tokens"] * 1000 for r in rs if r["tokens"]]
        summary[method] = {"f1": stats([headline(r) for r in rs]), "test_f1": stats([r["test_f1"] for r in rs]),
                           "dev_f1": stats([r["dev_f1"] for r in rs]), "seed_f1": stats([r["seed_f1"] for r in rs]),
                           # The best round's student beside the final fit (graph runs with a final fit).
                           "best_round_test_f1": stats([r.get("best_round_test_f1") for r in rs
                                                        if r.get("final_fit")]),
                           "tokens": stats([r["tokens"] for r in rs]), "rounds": stats([r["rounds"] for r in rs]),
                           "similarity": stats([r.get("similarity") for r in rs]),
                           "gain_per_1k_tokens": stats(gains)}
    comparisons: dict[str, Any] = {}
    for method in (m for m in EVOKD if by.get(m)):
        own, static, full = by[method], by.get("static", {}), by.get("full", {})
        paired = [s for s in own if s in static]
        comparisons[method] = {
            "minus_static": stats([finished_f1(own[s]) - finished_f1(static[s]) for s in paired]),
            # Best dev F1 of each within the tokens both had spent (the smaller of the two totals).
            "minus_static_at_equal_tokens": stats([
                best_within(own[s]["curve"], t) - best_within(static[s]["curve"], t)
                for s in paired for t in [min(own[s]["tokens"], static[s]["tokens"])]]),
            "over_full": stats([finished_f1(own[s]) / finished_f1(full[s]) for s in own
                                if s in full and headline(full[s])]),
        }
        if method in POOL and by.get("pool-random"):
            # What picking by the student's doubt buys over picking at random, paired by seed.
            comparisons[method]["versus_pool_random"] = paired_difference(
                {s: finished_f1(r) for s, r in own.items()},
                {s: finished_f1(r) for s, r in by["pool-random"].items()})
    if by.get("static"):
        static_f1 = {s: finished_f1(r) for s, r in by["static"].items()}
        for method in methods:
            if method != "static" and by[method]:
                versus = paired_difference({s: finished_f1(r) for s, r in by[method].items()}, static_f1)
                comparisons.setdefault(method, {})["versus_static"] = versus
    return summary, comparisons


def fmt(stat: dict[str, Any] | None, digits: int = 4, sign: bool = False) -> str:
    if stat is None:
        return "–"
    mean = f"{stat['mean']:+.{digits}f}" if sign else f"{stat['mean']:.{digits}f}"
    return mean if stat["n"] < 2 else f"{mean} ± {stat['std']:.{digits}f}"


def chose_on_dev(results: Iterable[dict[str, Any]]) -> bool:
    """Whether the benchmarks' runs chose on dev which student ships (final_fit.ship): rows recorded
    before did not say, and shipped the final fit."""
    return any("shipped" in r for result in results for r in result.get("runs", []))


def render_markdown(result: dict[str, Any]) -> str:
    summary, comparisons = result["summary"], result["comparisons"]
    f1_name = "test F1" if result["has_test"] else "dev F1"
    lines = [
        f"# Benchmark: {result['dataset']} ({result['profile']} profile)",
        "",
        f"- task: {result['task']}; metric: {result['metric']}; seeds: {len(result['seeds'])} "
        f"(sampling.seed {', '.join(str(s['sampling']) for s in result['seeds'])})",
        f"- teacher: {result['teacher']}; student: {result['student']}",
        f"- teacher-token budget per generating run: {result['settings']['max_tokens']}; "
        f"dev_limit {result['settings']['dev_limit']}, test_limit {result['settings']['test_limit']}; "
        f"full: up to {result['settings']['full_samples']} gold samples, " + (
            "fitted as a final fit" if any(r.get("final_fit") for r in result.get("runs", []) if r["method"] == "full")
            else f"{result['settings']['full_epochs']} epochs"),
        f"- wall time: {result['minutes']:.1f} min{'' if result.get('complete', True) else ' so far (not finished)'}",
        f"- F1: {f1_name} of the student a run ships: its final fit (a fresh student on every accepted sample, "
        "loop.final_fit), or the best dev round's without one" + (
            " or when that scored higher on dev (final_fit.ship)"
            if chose_on_dev([result]) else "")
        + (f"; the mean of {result['fit_seeds']} final fits of the run's pool, each with its own student seed"
           if result.get("fit_seeds", 1) > 1 else "") + "; no-aug and full are final fits on gold data "
        "(fixed epochs without); best round: the best dev round's student; dev F1: the best round's; gain: "
        "(best dev F1 − seed dev F1) per 1k teacher tokens; mean ± std over seeds",
        "",
        f"| method | {f1_name} | {f1_name}, best round | dev F1 (best round) | teacher tokens | F1 gain / 1k tokens "
        "| rounds |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in result["methods"]:
        s = summary[method]
        lines.append(f"| {method} | {fmt(s['f1'])} | {fmt(s.get('best_round_test_f1'))} | {fmt(s['dev_f1'])} | "
                     f"{fmt(s['tokens'], 0)} | {fmt(s['gain_per_1k_tokens'], 4, sign=True)} | {fmt(s['rounds'], 1)} |")
    alike = {m: summary[m]["similarity"] for m in result["methods"] if summary[m].get("similarity")}
    if alike:
        lines += ["", "How alike the accepted texts read: the mean pairwise cosine of their sentence vectors (the "
                  "student's pretrained encoder; lower is more varied).", "",
                  "| method | mean pairwise cosine |", "|---|---|"]
        lines += [f"| {m} | {fmt(a, 3)} |" for m, a in alike.items()]
    versus = {m: c["versus_static"] for m, c in comparisons.items() if c.get("versus_static")}
    if versus:
        lines += ["", f"Each method against static, paired by seed ({f1_name}): the mean difference, its 95 % "
                  "bootstrap interval over the seeds, the seeds it won, and the seeds a true difference of "
                  f"{DELTA} would need at this spread (σ of the paired differences) to be found 4 times in 5.", "",
                  f"| method | − static | 95 % interval | seeds won | seeds to see {DELTA} |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join([m, *fmt_paired(p)]) + " |" for m, p in versus.items()]
    evokd = {m: c for m, c in comparisons.items() if "minus_static" in c}
    if evokd:
        lines += ["", "| loop | − static (same budget) | − static, best dev F1 at equal tokens | / full |",
                  "|---|---|---|---|"]
        for method, c in evokd.items():
            lines.append(f"| {method} | {fmt(c['minus_static'], sign=True)} | "
                         f"{fmt(c['minus_static_at_equal_tokens'], sign=True)} | {fmt(c['over_full'], 3)} |")
        against_random = {m: c["versus_pool_random"] for m, c in comparisons.items() if c.get("versus_pool_random")}
        if against_random:
            lines += ["", f"Picking by the student's doubt against picking at random, paired by seed ({f1_name}).", "",
                      f"| method | − pool-random | 95 % interval | seeds won | seeds to see {DELTA} |",
                      "|---|---|---|---|---|"]
            lines += ["| " + " | ".join([m, *fmt_paired(p)]) + " |" for m, p in against_random.items()]
    if any(summary[m].get("price") for m in result["methods"]):
        lines += ["", "What the teacher cost (price: input-token equivalents, an output token priced as 4 input "
                  "tokens; teacher seconds: time in teacher calls):", "",
                  "| method | tokens in | tokens out | price | teacher seconds |", "|---|---|---|---|---|"]
        lines += [f"| {m} | {fmt(summary[m].get('tokens_in'), 0)} | {fmt(summary[m].get('tokens_out'), 0)} | "
                  f"{fmt(summary[m].get('price'), 0)} | {fmt(summary[m].get('seconds'), 0)} |"
                  for m in result["methods"] if summary[m].get("price")]
        if evokd:
            lines += ["", "| loop | − static, best dev F1 at equal price | at equal teacher seconds |",
                      "|---|---|---|"]
            lines += [f"| {m} | {fmt(c.get('minus_static_at_equal_price'), sign=True)} | "
                      f"{fmt(c.get('minus_static_at_equal_seconds'), sign=True)} |" for m, c in evokd.items()]
        lines += ["", f"![dev F1 against tokens, price and teacher seconds]({result.get('cost_plot')})"]
    notes = [f"- {method}: not run ({reason})" for method, reason in result["skipped"].items()]
    notes += [f"- {r['method']} seed {r['seed']} failed: {r['error']}" for r in result["runs"] if r.get("error")]
    lines += ["", *notes] if notes else []
    table = mean_per_class(result)
    if table:
        labels = sorted({label for scores in table.values() for label in scores})
        split = "test" if result["has_test"] else "dev"
        lines += ["", f"Per-{'class' if result['task'] == 'classification' else 'type'} {split} F1 of the best round "
                  "(mean over seeds):", "", "| method | " + " | ".join(labels) + " |",
                  "|---|" + "---|" * len(labels)]
        lines += [f"| {method} | " + " | ".join(f"{scores.get(label, 0.0):.3f}" for label in labels) + " |"
                  for method, scores in table.items()]
    lines += ["", f"![dev F1 against teacher tokens]({result['plot']})", ""]
    if table:
        lines += [f"![per-class F1]({result['per_class_plot']})", ""]
    return "\n".join(lines)


def mean_curve(curves: list[list[list[float]]], grid: list[float]) -> list[float]:
    """Each run's dev F1 at each grid point (its latest round finished within those tokens), averaged."""
    return [statistics.fmean(max((c for c in curve if c[0] <= x), key=lambda c: c[0])[1] for curve in curves)
            for x in grid]


def plot(result: dict[str, Any], path: Path, levels: set[str]) -> None:
    """Dev F1 against teacher tokens; `levels` (methods without a teacher) are horizontal lines."""
    import matplotlib  # pyplot, with the file-only Agg backend chosen before it loads: slow, only to plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in result["runs"] if r.get("error") is None]
    top = max([r["tokens"] for r in runs] + [1])
    grid = [top * i / 100 for i in range(101)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in result["methods"]:
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        if method in levels:  # no teacher tokens: a level
            level = statistics.fmean(r["dev_f1"] for r in mine)
            ax.axhline(level, linestyle="--" if method == "full" else ":", color="grey" if method == "full" else "k",
                       linewidth=1, label=f"{method} ({level:.3f})")
            continue
        ax.plot(grid, mean_curve([r["curve"] for r in mine], grid), drawstyle="steps-post", label=method)
    ax.set_xlabel("teacher tokens (cumulative)")
    ax.set_ylabel(f"dev {result['metric']}")
    n = len(result["seeds"])
    ax.set_title(f"{result['dataset']} ({result['profile']}): dev F1 against teacher tokens, "
                 f"mean of {n} seed{'s' if n != 1 else ''}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mean_per_class(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Method -> label -> F1 averaged over seeds, for the runs that recorded per-class scores."""
    out: dict[str, dict[str, float]] = {}
    for method in result["methods"]:
        scores = [r["per_class"] for r in result["runs"]
                  if r["method"] == method and r.get("error") is None and r.get("per_class")]
        if scores:
            out[method] = {label: statistics.fmean(s.get(label, 0.0) for s in scores) for label in scores[0]}
    return out


def plot_per_class(result: dict[str, Any], path: Path) -> None:
    """Grouped bars: per-class (per-type for NER) F1 of each method's best round."""
    import matplotlib  # pyplot, with the file-only Agg backend chosen before it loads: slow, only to plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from evokd.report import grouped_bars  # matplotlib too

    table = mean_per_class(result)
    if not table:
        return
    labels = sorted({label for scores in table.values() for label in scores})
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(labels) * len(table) / 3), 4.5))
    grouped_bars(ax, labels, [(method, [scores.get(label, 0.0) for label in labels])
                              for method, scores in table.items()])
    split = "test" if result["has_test"] else "dev"
    ax.set_ylabel(f"{split} F1")
    ax.set_ylim(0, 1)
    unit = "class" if result["task"] == "classification" else "type"
    ax.set_title(f"{result['dataset']} ({result['profile']}): per-{unit} {split} F1 of the best round, "
                 f"mean of {len(result['seeds'])} seed(s)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"{result['dataset']} ({result['profile']}), {len(result['seeds'])} seed(s)")
    for col in ("method", "test F1" if result["has_test"] else "dev F1", "dev F1 (best)", "tokens", "gain/1k tok",
                "rounds"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for method in result["methods"]:
        s = result["summary"][method]
        table.add_row(method, fmt(s["f1"]), fmt(s["dev_f1"]), fmt(s["tokens"], 0),
                      fmt(s["gain_per_1k_tokens"], 4, sign=True), fmt(s["rounds"], 1))
    console.print(table)
    for method, c in result["comparisons"].items():
        if c.get("versus_static"):
            mean, interval, won, needed = fmt_paired(c["versus_static"])
            console.print(f"{method} − static, paired by seed: {mean} (95 % interval {interval}; won {won} seeds; "
                          f"seeds to see {DELTA}: {needed})", highlight=False)
        if "minus_static" not in c:
            continue
        console.print(f"{method} − static: {fmt(c['minus_static'], sign=True)} "
                      f"(best dev F1 at equal tokens {fmt(c['minus_static_at_equal_tokens'], sign=True)}); "
                      f"{method} / full: {fmt(c['over_full'], 3)}", highlight=False)


def write_budgets(results: dict[int, dict[str, Any]], stem: Path, console: Console) -> dict[str, Any]:
    """Test F1 (else dev F1) of each method at each budget of a sweep: JSON, markdown and a plot."""
    import matplotlib  # pyplot, with the file-only Agg backend chosen before it loads: slow, only to plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted(results)
    first = results[budgets[0]]
    methods = list(dict.fromkeys(m for b in budgets for m in results[b]["methods"]))
    f1 = {m: {str(b): results[b]["summary"].get(m, {}).get("f1") for b in budgets} for m in methods}
    minus_static = {m: {str(b): results[b]["comparisons"].get(m, {}).get("minus_static") for b in budgets}
                    for m in EVOKD if any(m in results[b]["comparisons"] for b in budgets)}
    combined = {"dataset": first["dataset"], "profile": first["profile"], "metric": first["metric"],
                "has_test": first["has_test"], "budgets": budgets, "seeds": first["seeds"], "f1": f1,
                "minus_static": minus_static}
    split = "test" if first["has_test"] else "dev"
    lines = [f"# Budget sweep: {first['dataset']} ({first['profile']} profile)", "",
             f"{split} {first['metric']} of the student each run ships (its final fit; the best dev round's without "
             f"one{' or when that scored higher on dev' if chose_on_dev(results.values()) else ''}), "
             f"mean ± std over {len(first['seeds'])} seed(s), "
             "at each teacher-token budget (the round cap grows with the budget, so the budget stops a run).", "",
             "| method | " + " | ".join(f"{b:,} tokens" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    lines += [f"| {m} | " + " | ".join(fmt(f1[m][str(b)]) for b in budgets) + " |" for m in methods]
    if minus_static:
        lines += ["", "| | " + " | ".join(f"− static at {b:,}" for b in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]
        lines += [f"| {m} | " + " | ".join(fmt(d[str(b)], sign=True) for b in budgets) + " |"
                  for m, d in minus_static.items()]
    lines += ["", f"![{split} F1 against budget]({stem.name}.png)", ""]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for m in methods:
        points = [(b, f1[m][str(b)]) for b in budgets if f1[m][str(b)]]
        if points:
            ax.errorbar([b for b, _ in points], [s["mean"] for _, s in points], yerr=[s["std"] for _, s in points],
                        marker="o", capsize=3, label=m)
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{b:,}" for b in budgets])
    ax.set_xticks([], minor=True)  # a log axis labels some minor ticks too ("4 x 10^3")
    ax.set_xlabel("teacher-token budget per run", fontsize=11)
    ax.set_ylabel(f"{split} {first['metric']}", fontsize=11)
    ax.set_title(f"{first['dataset']} ({first['profile']}): {split} F1 against budget", fontsize=12)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    plt.close(fig)
    write_atomic(stem.with_suffix(".json"), json.dumps(combined, indent=1) + "\n")
    write_atomic(stem.with_suffix(".md"), "\n".join(lines))
    console.print("\n".join(lines[:-2]), highlight=False)
    return combined
