"""A run's report: `write_report(RUN_DIR)` writes RUN_DIR/report.html.

`run` reads the run folder through its typed records, `plots` draws the figures, `page` fills the
Jinja2 template `page.html.j2`. It imports only the bottom layer (`evokd.core`).
"""

from evokd.report.page import render, write_report
from evokd.report.plots import grouped_bars
from evokd.report.run import ReportError, Run, load_run, reason_group, rejection_reasons

__all__ = ["ReportError", "Run", "grouped_bars", "load_run", "reason_group",
           "rejection_reasons", "render", "write_report"]
