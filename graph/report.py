"""A run's report: one self-contained HTML page (plots, rejections, samples) that renders offline.

It reads only the run folder's files, so it works on any finished or interrupted run, including
one written on another machine.
"""

from __future__ import annotations

import base64
import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from jinja2 import Environment
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pydantic import BaseModel, ValidationError

from evokd.core.records import RoundMetrics, SampleRecord
from evokd.core.runfolder import RunFolder
from evokd.core.trace import write_atomic
from evokd.student.metrics import EvalReport, entities

SAMPLES_SHOWN = 3
ERROR_KINDS = ("missed", "spurious", "wrong_type", "wrong_boundary")
TIME_PARTS = ("llm", "train", "eval", "other")
# Quoted values inside a reason (a label, an entity) vary per sample; the rest names the cause.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")

M = TypeVar("M", bound=BaseModel)


class ReportError(ValueError):
    """A run folder whose files cannot be read as a run."""


@dataclass(frozen=True)
class Summary:
    """What only summary.md knows: it is written by the finish node, so an unfinished run lacks it."""

    task_name: str | None = None
    stop_reason: str | None = None
    test_f1: float | None = None


@dataclass(frozen=True)
class Run:
    name: str
    rounds: list[RoundMetrics]
    samples: list[SampleRecord]
    summary: Summary

    @property
    def seed(self) -> RoundMetrics:
        return self.rounds[0]

    @property
    def best(self) -> RoundMetrics:
        best_round = self.rounds[-1].best_round
        return next((m for m in self.rounds if m.round == best_round), max(self.rounds, key=lambda m: m.f1))

    @property
    def task(self) -> str:
        return str(self.seed.dev.get("task", "classification"))

    @property
    def metric(self) -> str:
        return "macro-F1" if self.task == "classification" else "micro-F1"


@dataclass(frozen=True)
class SampleView:
    intent: str
    text: str
    gold: str
    predicted: str
    correct: bool | None  # None: no prediction was recorded


@dataclass(frozen=True)
class ReasonGroup:
    reason: str
    count: int
    example: str


def write_report(run_dir: Path) -> Path:
    """Write RUN_DIR/report.html and return its path."""
    run = load_run(run_dir)
    path = RunFolder(run_dir).report
    write_atomic(path, render(run))
    return path


# --- reading the run folder -------------------------------------------------------------------


def load_run(run_dir: Path) -> Run:
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    folder = RunFolder(run_dir)
    rounds = sorted(read_jsonl(folder.metrics, RoundMetrics), key=lambda m: m.round)
    if not rounds:
        raise ReportError(f"{folder.metrics}: no finished round yet")
    samples = read_jsonl(folder.samples, SampleRecord)
    summary = parse_summary(folder.summary.read_text(encoding="utf-8")) if folder.summary.is_file() else Summary()
    return Run(name=run_dir.resolve().name, rounds=rounds, samples=samples, summary=summary)


def read_jsonl(path: Path, model: type[M]) -> list[M]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(model.model_validate_json(line))
        except ValidationError as exc:
            raise ReportError(f"{path}:{number}: not a {model.__name__}: {exc}") from exc
    return rows


def parse_summary(text: str) -> Summary:
    task = re.search(r"^- task: (.+?) \((?:classification|ner)\)", text, re.MULTILINE)
    stop = re.search(r"^- stop reason: (.+)$", text, re.MULTILINE)
    test = re.search(r"^\| test, best round \| ([-+0-9.eE]+|nan) \|", text, re.MULTILINE)
    return Summary(task_name=task.group(1) if task else None, stop_reason=stop.group(1).strip() if stop else None,
                   test_f1=float(test.group(1)) if test else None)


def dev_report(metrics: RoundMetrics) -> EvalReport:
    return EvalReport.model_validate(metrics.dev)


# --- rejections and samples -------------------------------------------------------------------


def reason_group(reason: str) -> str:
    """The cause of a rejection without its per-sample details: quoted values become "...", so
    "label 'mixed' not in the label set" and "label 'none' ..." share a group, and anything after a
    colon (an exception message) is dropped, or one cause would split into as many groups as messages."""
    return _QUOTED.sub("...", reason).split(":", 1)[0].strip()


def rejection_reasons(samples: Sequence[SampleRecord]) -> list[ReasonGroup]:
    rejected = [s.reason or "no reason recorded" for s in samples if not s.accepted]
    counts = Counter(reason_group(r) for r in rejected)
    examples = {reason_group(r): r for r in reversed(rejected)}  # the first of each group wins
    return [ReasonGroup(reason, count, examples[reason])
            for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def describe_entities(tokens: list[str], tags: Sequence[str] | None) -> str:
    found = [f"{' '.join(tokens[start:end])} ({type_})" for type_, start, end in entities(list(tags or []))]
    return ", ".join(found) or "no entities"


def sample_view(sample: SampleRecord) -> SampleView:
    if sample.tokens is not None:  # NER: compare whole tag sequences, show entities
        gold_value: str | list[str] | None = sample.tags
        gold = describe_entities(sample.tokens, sample.tags)
        predicted = describe_entities(sample.tokens, sample.predicted) if isinstance(sample.predicted, list) else None
    else:
        gold_value = sample.label
        gold = sample.label or "none"
        predicted = str(sample.predicted) if sample.predicted is not None else None
    correct = None if sample.predicted is None else sample.predicted == gold_value
    return SampleView(intent=sample.intent, text=sample.text, gold=gold, predicted=predicted or "not recorded",
                      correct=correct)


def samples_by_round(samples: Sequence[SampleRecord]) -> dict[int, list[SampleView]]:
    shown: dict[int, list[SampleView]] = {}
    for intent in ("hard", "easy"):
        counts: Counter[int] = Counter()
        for sample in samples:
            if sample.accepted and sample.intent == intent and counts[sample.round] < SAMPLES_SHOWN:
                counts[sample.round] += 1
                shown.setdefault(sample.round, []).append(sample_view(sample))
    return dict(sorted(shown.items()))


# --- plots ------------------------------------------------------------------------------------


def new_figure(ncols: int = 1, width: float = 6.0, height: float = 3.6) -> tuple[Figure, list[Axes]]:
    # A bare Figure on an Agg canvas never touches pyplot's global backend or figure registry,
    # so the caller's matplotlib state is unchanged and nothing needs closing.
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def png_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    # No "Software" tag: the PNG would otherwise carry matplotlib's web address.
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", pad_inches=0.15, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def integer_rounds(ax: Axes, rounds: list[int]) -> None:
    ax.set_xlim(min(rounds) - 0.5, max(rounds) + 0.5)
    # min_n_ticks=1: the locator would otherwise put fractional ticks around a single round.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("round")


def placeholder(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_axis_off()


def plot_f1(run: Run) -> str:
    fig, (ax,) = new_figure()
    rounds = [m.round for m in run.rounds]
    ax.plot(rounds, [m.f1 for m in run.rounds], marker="o", label=f"dev {run.metric}")
    ax.axhline(run.seed.f1, color="grey", linestyle="--", linewidth=1, label="seed")
    ax.scatter([run.best.round], [run.best.f1], marker="*", s=260, color="#d62728", zorder=3,
               label=f"best: round {run.best.round} ({run.best.f1:.4f})")
    integer_rounds(ax, rounds)
    ax.set_ylabel(f"dev {run.metric}")
    ax.set_title(f"dev {run.metric} per round")
    ax.legend(loc="best", fontsize="small")
    return png_uri(fig)


def per_round_tokens(run: Run) -> tuple[list[int], list[int]]:
    """metrics.jsonl keeps cumulative counters; a round's own spend is the difference."""
    tokens_in, tokens_out, before_in, before_out = [], [], 0, 0
    for m in run.rounds:
        tokens_in.append(m.tokens_in - before_in)
        tokens_out.append(m.tokens_out - before_out)
        before_in, before_out = m.tokens_in, m.tokens_out
    return tokens_in, tokens_out


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
        ax.legend(loc="best", fontsize="small")
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
    ax.legend(loc="best", fontsize="small")
    return png_uri(fig)


def compared_rounds(run: Run) -> list[tuple[str, EvalReport]]:
    if run.best.round == run.seed.round:
        return [(f"seed = best (round {run.seed.round})", dev_report(run.seed))]
    return [("seed (round 0)", dev_report(run.seed)), (f"best (round {run.best.round})", dev_report(run.best))]


def plot_confusions(run: Run) -> str:
    panels = compared_rounds(run)
    labels = dev_report(run.seed).labels
    side = max(3.6, 0.55 * len(labels) + 2.0)
    fig, axes = new_figure(ncols=len(panels), width=side, height=side)
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


def plots(run: Run) -> dict[str, str]:
    detail = plot_confusions(run) if run.task == "classification" else plot_ner(run)
    return {"f1": plot_f1(run), "cost": plot_cost(run), "verdicts": plot_verdicts(run), "detail": detail}


# --- the page ---------------------------------------------------------------------------------


def render(run: Run) -> str:
    # Autoescaping matters: sample texts and reasons are written by an LLM.
    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(TEMPLATE).render(
        run=run, seed=run.seed, best=run.best, labels=dev_report(run.seed).labels,
        accepted=sum(m.accepted for m in run.rounds if m.round > 0),
        rejected=sum(m.rejected for m in run.rounds if m.round > 0),
        tokens=run.rounds[-1].tokens_in + run.rounds[-1].tokens_out,
        minutes=sum(m.seconds.get("total", 0.0) for m in run.rounds) / 60,
        plots=plots(run), reasons=rejection_reasons(run.samples), shown=samples_by_round(run.samples),
        shown_per_intent=SAMPLES_SHOWN,
    )


TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>evokd report: {{ run.name }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; word-break: break-all; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: .5em 0; }
.ok { color: #1a7f37; font-weight: bold; }
.bad { color: #cf222e; font-weight: bold; }
.muted { color: #777; }
.intent { font-size: .85em; text-transform: uppercase; letter-spacing: .05em; }
</style>
</head>
<body>
<h1>evokd run {{ run.name }}</h1>
<table>
<tr><th>task</th><td>{{ run.summary.task_name or run.task }} ({{ run.task }})</td></tr>
<tr><th>labels</th><td>{{ labels | join(", ") }}</td></tr>
<tr><th>method</th><td>{{ best.method }}</td></tr>
<tr><th>stop reason</th><td>{{ run.summary.stop_reason or "unknown: no summary.md (run not finished?)" }}</td></tr>
<tr><th>seed dev {{ run.metric }} (round {{ seed.round }})</th><td class="num">{{ "%.4f" % seed.f1 }}</td></tr>
<tr><th>best dev {{ run.metric }} (round {{ best.round }})</th>
<td class="num">{{ "%.4f" % best.f1 }} ({{ "%+.4f" % (best.f1 - seed.f1) }})</td></tr>
<tr><th>test {{ run.metric }}, best round</th>
<td class="num">{{ "%.4f" % run.summary.test_f1 if run.summary.test_f1 is not none else "not scored" }}</td></tr>
<tr><th>generation rounds</th><td class="num">{{ run.rounds | length - 1 }}</td></tr>
<tr><th>samples</th><td>{{ accepted }} accepted, {{ rejected }} rejected</td></tr>
<tr><th>teacher tokens</th><td class="num">{{ tokens }}</td></tr>
<tr><th>time</th><td class="num">{{ "%.1f" % minutes }} min</td></tr>
</table>

<h2>Dev {{ run.metric }}</h2>
<img src="{{ plots.f1 }}" alt="dev {{ run.metric }} per round">

<h2>Cost</h2>
<img src="{{ plots.cost }}" alt="teacher tokens and time per round">

<h2>Verifier verdicts</h2>
<img src="{{ plots.verdicts }}" alt="accepted and rejected samples per round">
{% if reasons %}
<table>
<tr><th>rejection reason</th><th>count</th><th>example</th></tr>
{% for group in reasons %}
<tr><td>{{ group.reason }}</td><td class="num">{{ group.count }}</td><td class="muted">{{ group.example }}</td></tr>
{% endfor %}
</table>
{% else %}
<p class="muted">No sample was rejected.</p>
{% endif %}

{% if run.task == "classification" %}
<h2>Confusion on dev (rows gold, columns predicted)</h2>
<img src="{{ plots.detail }}" alt="dev confusion matrices at the seed and best rounds">
{% else %}
<h2>Entity types and errors on dev</h2>
<img src="{{ plots.detail }}" alt="per-type F1 and entity errors at the seed and best rounds">
{% endif %}

<h2>Accepted samples</h2>
<p class="muted">Up to {{ shown_per_intent }} hard and {{ shown_per_intent }} easy samples per round, with the
verifier's {{ "label" if run.task == "classification" else "entities" }} and the student's prediction
before it trained on them.</p>
{% for round, views in shown.items() %}
<h3>Round {{ round }}</h3>
<table>
<tr><th>intent</th><th>text</th><th>verifier</th><th>student before training</th><th></th></tr>
{% for view in views %}
<tr>
<td class="intent">{{ view.intent }}</td><td>{{ view.text }}</td>
<td>{{ view.gold }}</td><td>{{ view.predicted }}</td>
<td>
{%- if view.correct is none %}<span class="muted">?</span>
{%- elif view.correct %}<span class="ok">&#10003; correct</span>
{%- else %}<span class="bad">&#10007; wrong</span>{% endif -%}
</td>
</tr>
{% endfor %}
</table>
{% else %}
<p class="muted">No generated samples yet.</p>
{% endfor %}
</body>
</html>
"""
