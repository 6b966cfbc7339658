"""When to stop: a pure function of the state and the loop settings."""

from __future__ import annotations

from typing import Literal

from evokd.config import LoopConfig
from evokd.graph.state import RunState

StopReason = Literal["max_rounds", "max_tokens", "max_cost", "max_minutes", "plateau"]


def rounds_since_improvement(history: list[dict], min_delta: float) -> int:
    """Rounds after the last one that beat every earlier round by more than min_delta."""
    best, since = float("-inf"), 0
    for entry in history:
        if entry["f1"] > best + min_delta:
            best, since = entry["f1"], 0
        else:
            since += 1
    return since


def stop_reason(state: RunState, loop: LoopConfig) -> StopReason | None:
    usage = state.get("usage", {})
    tokens = usage.get("tokens_in", 0) + usage.get("tokens_out", 0)
    if state.get("round", 0) >= loop.max_rounds:
        return "max_rounds"
    if loop.max_tokens is not None and tokens >= loop.max_tokens:
        return "max_tokens"
    if loop.max_cost is not None and usage.get("cost", 0.0) >= loop.max_cost:
        return "max_cost"
    if loop.max_minutes is not None and usage.get("total", 0.0) >= loop.max_minutes * 60:
        return "max_minutes"
    if rounds_since_improvement(state.get("history", []), loop.min_delta) >= loop.patience:
        return "plateau"
    return None


def next_step(state: RunState) -> Literal["probe", "finish"]:
    """The conditional edge after `decide`."""
    return "finish" if state.get("stop_reason") else "probe"
