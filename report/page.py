"""The report page: one self-contained HTML file (plots, rejections, samples) that renders offline,
from the Jinja2 template `page.html.j2` shipped beside this module."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, Template

from evokd.core.runfolder import RunFolder
from evokd.core.trace import write_atomic
from evokd.report.plots import plots
from evokd.report.run import SAMPLES_SHOWN, Run, dev_report, load_run, rejection_reasons, samples_by_round


def write_report(run_dir: Path) -> Path:
    """Write RUN_DIR/report.html and return its path."""
    run = load_run(run_dir)
    path = RunFolder(run_dir).report
    write_atomic(path, render(run))
    return path


@cache
def template() -> Template:
    # Autoescaping matters: sample texts and reasons are written by an LLM.
    env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True)
    return env.get_template("page.html.j2")


def render(run: Run) -> str:
    return template().render(
        run=run, seed=run.seed, best=run.best, labels=dev_report(run.seed).labels,
        accepted=sum(m.accepted for m in run.rounds if m.round > 0),
        rejected=sum(m.rejected for m in run.rounds if m.round > 0),
        tokens=run.rounds[-1].tokens_in + run.rounds[-1].tokens_out,
        minutes=sum(m.seconds.get("total", 0.0) for m in run.rounds) / 60,
        plots=plots(run), reasons=rejection_reasons(run.samples), shown=samples_by_round(run.samples),
        shown_per_intent=SAMPLES_SHOWN,
    )
