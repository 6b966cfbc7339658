"""The report's plots: matplotlib figures as PNG data URIs, so the page renders offline."""

from __future__ import annotations

import base64
import io
from typing import Any

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from evokd.core.records import EvalReport
from evokd.report.run import Interval, Run, dev_report, per_round_tokens

ERROR_KINDS = ("missed", "spurious", "wrong_type", "wrong_boundary")
TIME_PARTS = ("llm", "train", "eval", "other")


# The page is at most 1100 px wide: an 11-inch figure at 100 dpi shows at its own size, so 13 pt
# text stays 13 pt at normal zoom.
DPI = 100
PAGE_WIDTH = 11.0
STYLE: dict[Any, Any] = {"font.size": 13, "axes.titlesize": 15, "axes.labelsize": 13, "legend.fontsize": 12,
         "xtick.labelsize": 12, "ytick.labelsize": 12, "axes.grid": True, "grid.alpha": 0.3}


def new_figure(ncols: int = 1, width: float = PAGE_WIDTH, height: float = 4.6) -> tuple[Figure, list[Axes]]:
    """`width` is the whole figure's, shared by its `ncols` panels."""
    # A bare Figure on an Agg canvas never touches pyplot's global backend or figure registry,
    # so the caller's matplotlib state is unchanged and nothing needs closing.
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def png_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    # No "Software" tag: the PNG would otherwise carry matplotlib's web address.
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.15, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def integer_rounds(ax: Axes, rounds: list[int]) -> None:
    ax.set_xlim(min(rounds) - 0.5, max(rounds) + 0.5)
    # min_n_ticks=1: the locator would otherwise put fractional ticks around a single round.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("round")


def placeholder(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_axis_off()


def plot_f1(run: Run, intervals: dict[int, Interval]) -> str:
    fig, (ax,) = new_figure()
    rounds = [m.round for m in run.rounds]
    ax.fill_between(rounds, [intervals[r].low for r in rounds], [intervals[r].high for r in rounds],
                    color="#1f77b4", alpha=0.18, linewidth=0, label="95% interval")
    ax.plot(rounds, [m.f1 for m in run.rounds], marker="o", linewidth=2, label=f"dev {run.metric}")
    ax.axhline(run.seed.f1, color="grey", linestyle="--", linewidth=1.5, label=f"seed ({run.seed.f1:.4f})")
    ax.scatter([run.best.round], [run.best.f1], marker="*", s=260, color="#d62728", zorder=3,
               label=f"best: round {run.best.round} ({run.best.f1:.4f})")
    integer_rounds(ax, rounds)
    ax.set_ylabel(f"dev {run.metric}")
    ax.set_title(f"dev {run.metric} per round")
    ax.legend(loc="best")
    return png_uri(fig)


def plot_cost(run: Run) -> str:
    fig, (tokens_ax, time_ax) = new_figure(ncols=2)
    rounds = [m.round for m in run.rounds]
    tokens_in, tokens_out = per_round_tokens(run)
    tokens_ax.bar(rounds, tokens_in, label="prompt (in)")
    tokens_ax.bar(rounds, tokens_out, bottom=tokens_in, label="completion (out)")
    tokens_ax.set_ylabel("teacher tokens")
    # A seed-only run spent no tokens; a fixed floor keeps its empty axis from showing negatives.
    tokens_ax.set_ylim(0, max(1, *(i + o for i, o in zip(tokens_in, tokens_out, strict=True))) * 1.1)
    tokens_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    tokens_ax.set_title("teacher tokens per round")
    bottom = [0.0] * len(rounds)
    for part in TIME_PARTS:
        values = [m.seconds.get(part, 0.0) for m in run.rounds]
        time_ax.bar(rounds, values, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    time_ax.set_ylabel("seconds")
    time_ax.set_title("time per round")
    for ax in (tokens_ax, time_ax):
        integer_rounds(ax, rounds)
        ax.legend(loc="best")
    return png_uri(fig)


def plot_per_class(run: Run) -> str:
    """Each label's (entity type's) dev F1, round by round."""
    fig, (ax,) = new_figure()
    rounds = [m.round for m in run.rounds]
    reports = [dev_report(m) for m in run.rounds]
    for label in reports[0].labels:
        ax.plot(rounds, [r.per_class[label].f1 if label in r.per_class else 0.0 for r in reports],
                marker="o", linewidth=2, label=label)
    integer_rounds(ax, rounds)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("dev F1")
    ax.set_title("dev F1 per " + ("label" if run.task == "classification" else "entity type") + " and round")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return png_uri(fig)


def plot_verdicts(run: Run) -> str:
    fig, (ax,) = new_figure()
    generated = [m for m in run.rounds if m.round > 0]  # round 0 is the gold seed set, never judged
    if not generated:
        placeholder(ax, "no generation rounds yet")
        return png_uri(fig)
    rounds = [m.round for m in generated]
    accepted = [m.accepted for m in generated]
    ax.bar(rounds, accepted, color="#2ca02c", label="accepted")
    ax.bar(rounds, [m.rejected for m in generated], bottom=accepted, color="#d62728", label="rejected")
    integer_rounds(ax, rounds)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("samples")
    ax.set_title("verifier verdicts per round")
    ax.legend(loc="best")
    return png_uri(fig)


def compared_rounds(run: Run) -> list[tuple[str, EvalReport]]:
    if run.best.round == run.seed.round:
        return [(f"seed = best (round {run.seed.round})", dev_report(run.seed))]
    return [("seed (round 0)", dev_report(run.seed)), (f"best (round {run.best.round})", dev_report(run.best))]


def plot_confusions(run: Run) -> str:
    panels = compared_rounds(run)
    labels = dev_report(run.seed).labels
    side = min(max(4.5, 0.6 * len(labels) + 2.5), PAGE_WIDTH / len(panels))
    fig, axes = new_figure(ncols=len(panels), width=side * len(panels), height=side)
    # One colour scale for both panels, so equal shades mean equal counts.
    peak = max((count for _, report in panels for row in report.confusion or [] for count in row), default=0)
    for ax, (title, report) in zip(axes, panels, strict=True):
        if report.confusion is None:
            placeholder(ax, f"{title}: no confusion matrix")
            continue
        draw_confusion(ax, report.confusion, report.labels, peak)
        ax.set_title(title)
    return png_uri(fig)


def draw_confusion(ax: Axes, confusion: list[list[int]], labels: list[str], peak: int) -> None:
    ax.imshow(confusion, cmap="Blues", vmin=0, vmax=max(peak, 1))
    ax.grid(False)
    for gold, row in enumerate(confusion):
        for pred, count in enumerate(row):
            # Counts on dark cells are written in white so they stay legible.
            ax.text(pred, gold, str(count), ha="center", va="center",
                    color="white" if peak and count > peak / 2 else "black")
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")


def grouped_bars(ax: Axes, categories: list[str], series: list[tuple[str, list[float]]]) -> None:
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar([x + offset for x in range(len(categories))], values, width=width, label=name)
    ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")


def plot_ner(run: Run) -> str:
    panels = compared_rounds(run)
    types = dev_report(run.seed).labels
    fig, (f1_ax, errors_ax) = new_figure(ncols=2)
    grouped_bars(f1_ax, types, [(title, [r.per_class[t].f1 if t in r.per_class else 0.0 for t in types])
                                for title, r in panels])
    f1_ax.set_ylim(0, 1)
    f1_ax.set_ylabel("dev F1")
    f1_ax.set_title("F1 per entity type")
    grouped_bars(errors_ax, list(ERROR_KINDS), [(title, [float((r.errors or {}).get(k, 0)) for k in ERROR_KINDS])
                                                for title, r in panels])
    errors_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    errors_ax.set_ylabel("entities")
    errors_ax.set_title("entity errors on dev")
    # Both panels compare the same rounds: one legend above them instead of one over each's bars.
    fig.legend(*f1_ax.get_legend_handles_labels(), loc="outside upper center", ncols=len(panels))
    return png_uri(fig)


def plots(run: Run, intervals: dict[int, Interval]) -> dict[str, str]:
    # Text sizes are read from rcParams when each title, label or legend is made: the whole drawing
    # happens inside the style (rc_context restores the caller's settings afterwards).
    with rc_context(STYLE):
        return draw_all(run, intervals)


def draw_all(run: Run, intervals: dict[int, Interval]) -> dict[str, str]:
    detail = plot_confusions(run) if run.task == "classification" else plot_ner(run)
    return {"f1": plot_f1(run, intervals), "cost": plot_cost(run), "per_class": plot_per_class(run),
            "verdicts": plot_verdicts(run), "detail": detail}
