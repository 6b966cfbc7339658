"""A budget sweep: the same benchmark at several teacher-token budgets (`evokd bench DATASET
--budgets 3000,6000,12000`), then test F1 against budget per method (loaded by harness.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console


def budget_overrides(max_rounds: int, max_tokens: int, budget: int) -> list[str]:
    """A token budget, and a round cap scaled with it (from the profile's `max_rounds` at its
    `max_tokens`) so that the budget, not the cap, stops a run."""
    cap = math.ceil(max_rounds * budget / max_tokens)
    extra = [f"loop.max_rounds={cap}", f"loop.patience={cap}"] if cap > max_rounds else []
    return [f"loop.max_tokens={budget}", *extra]


def run_budgets(run_benchmark: Callable[..., dict[str, Any]], write: Callable[..., dict[str, Any]],
                settings: Any, dataset: str, budgets: list[int], methods: list[str] | None = None,
                seeds: int | None = None, profile: str = "quick", out_dir: Path = Path("."),
                base_url: str | None = None, *, overrides: list[str] | None = None,
                console: Console | None = None, name: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """One benchmark per budget (the profile's own budget keeps its usual file, the others
    <name>-<profile>-<budget>tok), then <name>-<profile>-budgets.json/.md/.png in out_dir; `name` is
    the benchmark's (the dataset, or a config file's name)."""
    name = name or dataset
    console = console or Console()
    results = {}
    for budget in sorted(set(budgets)):
        own = budget == settings.max_tokens
        console.print(f"budget: {budget:,} teacher tokens per run", highlight=False)
        extra = [] if own else budget_overrides(settings.max_rounds, settings.max_tokens, budget)
        results[budget] = run_benchmark(dataset, methods, seeds, profile, out_dir, base_url, console=console,
                                        overrides=[*(overrides or []), *extra],
                                        stem=None if own else f"{name}-{profile}-{budget}tok", **kwargs)
    return write(results, Path(out_dir) / f"{name}-{profile}-budgets", console)


def parse_budgets(text: str) -> list[int]:
    """"3000,6000,12000" -> [3000, 6000, 12000]; ValueError names what was wrong."""
    try:
        budgets = [int(part.strip().replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        budgets = []
    if not budgets or min(budgets) < 1:
        raise ValueError(f"--budgets {text!r}: expected positive token counts like 3000,6000,12000")
    return budgets
