"""When to stop: pure functions of the state and the loop settings."""

from __future__ import annotations

import itertools
import statistics
from typing import Literal, NamedTuple

from evokd.config import LoopConfig
from evokd.graph.state import RunState

StopReason = Literal["max_rounds", "max_tokens", "max_cost", "max_minutes", "plateau", "converged"]


class Stop(NamedTuple):
    reason: StopReason
    detail: str = ""


def rounds_since_improvement(history: list[dict], min_delta: float) -> int:
    """Rounds after the last one that beat every earlier round by more than min_delta."""
    best, since = float("-inf"), 0
    for entry in history:
        if entry["f1"] > best + min_delta:
            best, since = entry["f1"], 0
        else:
            since += 1
    return since


def round_spending(history: list[dict]) -> list[tuple[int, float]]:
    """Teacher tokens and cost of each generation round (history holds running totals)."""
    totals = [(h["tokens_in"] + h["tokens_out"], h["cost"]) for h in history]
    return [(t1 - t0, c1 - c0) for (t0, c0), (t1, c1) in itertools.pairwise(totals)]


def unaffordable(spent: float, limit: float, per_round: list[float], unit: str) -> str | None:
    """Why the next round should not start: the mean round so far costs more than what is left.
    A round cut short by the budget wastes what it spent on texts nobody labels or trains on."""
    if not per_round:
        return None
    expected = statistics.fmean(per_round)
    left = limit - spent
    if expected <= left:
        return None
    places = 0 if unit == "tokens" else 4
    return f"a round costs about {expected:,.{places}f} {unit}, {left:,.{places}f} left"


def should_stop(state: RunState, loop: LoopConfig) -> Stop | None:
    usage = state.get("usage", {})
    tokens = usage.get("tokens_in", 0) + usage.get("tokens_out", 0)
    cost = usage.get("cost", 0.0)
    if state.get("round", 0) >= loop.max_rounds:
        return Stop("max_rounds")
    if loop.max_tokens is not None and tokens >= loop.max_tokens:
        return Stop("max_tokens")
    if loop.max_cost is not None and cost >= loop.max_cost:
        return Stop("max_cost")
    if loop.max_minutes is not None and usage.get("total", 0.0) >= loop.max_minutes * 60:
        return Stop("max_minutes")
    if rounds_since_improvement(state.get("history", []), loop.min_delta) >= loop.patience:
        return Stop("plateau")
    if loop.method == "llm2llm" and state.get("round", 0) >= 1 and not state.get("incorrect"):
        # Further rounds would only retrain on the same data.
        return Stop("converged", "the student got every seed example right: LLM2LLM has nothing to target")
    if loop.forecast_budget:
        spending = round_spending(state.get("history", []))
        if loop.max_tokens is not None and (
                why := unaffordable(tokens, loop.max_tokens, [t for t, _ in spending], "tokens")):
            return Stop("max_tokens", why)
        if loop.max_cost is not None and (why := unaffordable(cost, loop.max_cost, [c for _, c in spending], "$")):
            return Stop("max_cost", why)
    return None


def next_step(state: RunState) -> Literal["probe", "finish"]:
    """The conditional edge after `decide`."""
    return "finish" if state.get("stop_reason") else "probe"
