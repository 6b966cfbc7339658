"""Budgets hold whatever the teacher's token counts: exceeded by at most the call in flight."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from evokd.agents.client import Budget, BudgetExhausted, TeacherClient
from evokd.agents.scripted import ScriptedChatModel
from evokd.config import LLMConfig


class Reply(BaseModel):
    summary: str


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=40),
       max_tokens=st.integers(min_value=1, max_value=3000))
def test_token_budget_exceeded_by_at_most_one_call(lengths: list[int], max_tokens: int) -> None:
    replies = iter(json.dumps({"summary": " ".join(["w"] * n)}) for n in lengths)
    teacher = TeacherClient(ScriptedChatModel(script=lambda messages: next(replies)), LLMConfig(),
                      mode="none", budget=Budget(max_tokens=max_tokens))
    costs: list[int] = []
    try:
        for _ in lengths:
            _, _, calls = teacher.ask([{"role": "user", "content": "go"}], Reply, round=1, node="analyst")
            costs.append(calls[-1].tokens_in + calls[-1].tokens_out)
    except BudgetExhausted:
        assert teacher.budget.tokens >= max_tokens  # it stopped only once the budget was spent
    spent = sum(costs)
    assert spent == teacher.budget.tokens
    assert spent - max_tokens < (costs[-1] if costs else 1)


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=30),
       max_cost=st.floats(min_value=0.001, max_value=2.0))
def test_cost_budget_exceeded_by_at_most_one_call(lengths: list[int], max_cost: float) -> None:
    replies = iter(json.dumps({"summary": " ".join(["w"] * n)}) for n in lengths)
    budget = Budget(max_cost=max_cost, price_in_per_1k=0.5, price_out_per_1k=2.0)
    teacher = TeacherClient(ScriptedChatModel(script=lambda messages: next(replies)), LLMConfig(), mode="none",
                      budget=budget)
    last = 0.0
    try:
        for _ in lengths:
            before = budget.cost
            teacher.ask([{"role": "user", "content": "go"}], Reply, round=1, node="analyst")
            last = budget.cost - before
    except BudgetExhausted:
        assert budget.cost >= max_cost
    assert budget.cost - max_cost < last + 1e-12 or budget.cost < max_cost
