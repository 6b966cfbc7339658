"""What every `evokd` command shares: the consoles, the one-line error exit, the known errors."""

from __future__ import annotations

import logging

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)


def _out() -> Console:
    """stdout as rich sees it: the terminal's width on a terminal; piped into grep or a file,
    one line per line whatever its length (rich would otherwise wrap at 80 columns)."""
    if console.is_terminal:
        return console
    return Console(width=1_000_000, soft_wrap=True)


def fail(message: str, code: int = 1) -> None:
    from rich.markup import escape

    # Escaped: a message quoting `evokd[hf]` or a list of labels is text, not console markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _known_errors(*more: type[Exception]) -> tuple[type[Exception], ...]:
    """The errors a command reports as one line (and `more` of its own), not as a traceback."""
    from evokd.agents.client import StructuredOutputError, TeacherUnreachable
    from evokd.agents.prompts import PromptError
    from evokd.agents.recording import ReplayDivergence
    from evokd.config import ConfigError
    from evokd.core.extras import MissingExtra
    from evokd.graph.runner import RunError
    from evokd.student.data import DataError
    from evokd.teacher import TeacherError

    return (ConfigError, DataError, PromptError, RunError, TeacherError, TeacherUnreachable,
            StructuredOutputError, ReplayDivergence, MissingExtra, FileNotFoundError, *more)


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False)])
