"""The stop rules, as pure functions of a state."""

from __future__ import annotations

import pytest

from evokd.config import LoopConfig
from evokd.graph.methods import METHODS
from evokd.graph.steps import round_spending, should_stop


def history(*tokens: int, f1s: list[float] | None = None) -> list[dict]:
    """Metrics of rounds 0..n with running token totals and rising F1 (no plateau)."""
    f1s = f1s or [0.1 * (i + 1) for i in range(len(tokens))]
    return [{"round": i, "f1": f1, "tokens_in": t, "tokens_out": 0, "cost": t / 1000}
            for i, (t, f1) in enumerate(zip(tokens, f1s, strict=True))]


def state(*tokens: int, **extra: object) -> dict:
    return {"round": len(tokens) - 1, "history": history(*tokens),
            "usage": {"tokens_in": tokens[-1], "tokens_out": 0, "cost": tokens[-1] / 1000}, **extra}


def test_round_spending_is_the_difference_of_running_totals() -> None:
    spending = round_spending(history(0, 900, 2100))
    assert [t for t, _ in spending] == [900, 1200]
    assert [c for _, c in spending] == pytest.approx([0.9, 1.2])


def test_forecast_stops_before_a_round_that_would_not_fit() -> None:
    loop = LoopConfig(max_tokens=3000, max_rounds=10)
    # Rounds of 900 and 1200 tokens: about 1200 expected (the last, dearer than the mean), 900 left.
    stop = should_stop(state(0, 900, 2100), loop)
    assert stop is not None and stop.reason == "max_tokens"
    assert stop.detail == "a round costs about 1,200 tokens, 900 left"
    assert should_stop(state(0, 900, 1900), loop) is None  # 1,100 left: the next round fits
    assert should_stop(state(0), loop) is None  # nothing to forecast from before round 1
    assert should_stop(state(0, 900, 2100), loop.model_copy(update={"forecast_budget": False})) is None


def test_forecast_expects_the_last_round_when_rounds_got_dearer() -> None:
    # Four cheap broad rounds, then an aimed one of 1,800: 900 left is less than the last round,
    # though more than the mean (860); the mean alone would start a round the budget cannot pay for.
    loop = LoopConfig(max_tokens=4700, max_rounds=10)
    stop = should_stop(state(0, 500, 1000, 1500, 2000, 3800), loop)
    assert stop is not None and stop.detail == "a round costs about 1,800 tokens, 900 left"
    # Cheaper last round: the mean (dearer) is what is expected.
    assert should_stop(state(0, 1800, 2300), loop.model_copy(update={"max_tokens": 3400})) is not None
    assert should_stop(state(0, 1800, 2300), loop.model_copy(update={"max_tokens": 3500})) is None


def test_forecast_applies_to_money_too() -> None:
    loop = LoopConfig(max_cost=2.5, max_rounds=10)
    stop = should_stop(state(0, 1000, 2000), loop)
    assert stop is not None and stop.reason == "max_cost" and "left" in stop.detail


def test_llm2llm_converges_when_the_student_gets_every_seed_example_right() -> None:
    loop, converged = LoopConfig(method="llm2llm", max_rounds=10), METHODS["llm2llm"].stop
    stop = should_stop(state(0, 0, incorrect=[]), loop, converged)
    assert stop is not None and stop.reason == "converged"
    assert should_stop(state(0, 0, incorrect=[{"text": "x"}]), loop, converged) is None
    assert METHODS["evokd"].stop is None  # not a rule of the default loop
    assert should_stop(state(0, 0, incorrect=[]), LoopConfig(max_rounds=10)) is None
