"""The report page: one self-contained HTML file (plots, analyses, every sample, rejections) that
renders offline, from the Jinja2 template `page.html.j2` shipped beside this module."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, Template

from evokd.core.files import write_atomic
from evokd.core.runfolder import RunFolder
from evokd.report.plots import plots
from evokd.report.run import (
    Interval,
    Run,
    dev_report,
    f1_intervals,
    generated,
    load_run,
    per_round_tokens,
    rejection_reasons,
)


def write_report(run_dir: Path) -> Path:
    """Write RUN_DIR/report.html and return its path."""
    run = load_run(run_dir)
    path = RunFolder(run_dir).report
    write_atomic(path, render(run))
    return path


@cache
def template() -> Template:
    # Autoescaping matters: sample texts, reasons and analyses are written by an LLM.
    env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True)
    return env.get_template("page.html.j2")


@dataclass(frozen=True)
class RoundRow:
    round: int
    f1: float
    interval: Interval
    delta: float
    accepted: int
    rejected: int
    train_size: int
    tokens_in: int
    tokens_out: int
    seconds: float
    best: bool


def round_rows(run: Run, intervals: dict[int, Interval]) -> list[RoundRow]:
    tokens_in, tokens_out = per_round_tokens(run)
    return [RoundRow(round=m.round, f1=m.f1, interval=intervals[m.round], delta=m.f1 - run.seed.f1,
                     accepted=m.accepted, rejected=m.rejected, train_size=m.train_size, tokens_in=i, tokens_out=o,
                     seconds=m.seconds.get("total", 0.0), best=m.round == run.best.round)
            for m, i, o in zip(run.rounds, tokens_in, tokens_out, strict=True)]


def render(run: Run) -> str:
    intervals, interval_method = f1_intervals(run)
    last = run.rounds[-1]
    return template().render(
        run=run, seed=run.seed, best=run.best, labels=dev_report(run.seed).labels,
        accepted=sum(m.accepted for m in run.rounds if m.round > 0),
        rejected=sum(m.rejected for m in run.rounds if m.round > 0),
        tokens_in=last.tokens_in, tokens_out=last.tokens_out, cost=last.cost,
        minutes=sum(m.seconds.get("total", 0.0) for m in run.rounds) / 60,
        plots=plots(run, intervals), intervals=intervals, interval_method=interval_method,
        rows=round_rows(run, intervals), reports={m.round: dev_report(m) for m in run.rounds},
        reasons=rejection_reasons(run.samples),
        accepted_samples=generated(run.samples, accepted=True),
        rejected_samples=generated(run.samples, accepted=False),
    )
