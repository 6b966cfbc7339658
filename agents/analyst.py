"""Analyst: reads what the student got right and wrong and says what it is weak at."""

from __future__ import annotations

import logging
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from evokd.agents.llm import BudgetExhausted, StructuredOutputError, price
from evokd.graph.context import Context
from evokd.graph.state import RunState

log = logging.getLogger("evokd.agents")


class AnalystReply(BaseModel):
    summary: str = Field(min_length=1, description="patterns of inputs the student gets wrong")


def dev_metrics(history: list[dict[str, Any]], top: int = 3) -> dict[str, Any] | None:
    """Per-label F1 and the most confused pairs of the latest round, for the prompt."""
    if not history:
        return None
    dev = history[-1]["dev"]
    return {
        "f1": dev["f1"],
        "per_label": {label: score["f1"] for label, score in dev["per_class"].items()},
        "confused": dev.get("confused_pairs", [])[:top],
        "errors": dev.get("errors"),
    }


def prompt_variables(state: RunState, ctx: Context) -> dict[str, Any]:
    task = ctx.cfg.task
    return {
        "task_description": task.description,
        "labels": task.labels,
        "label_descriptions": task.label_descriptions,
        "round": state["round"],
    }


def analyst(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    show_metrics = ctx.cfg.loop.analyst_sees_metrics
    messages, template = ctx.prompts.messages(
        "analyst",
        **prompt_variables(state, ctx),
        # None (not an empty list) leaves the section out of the prompt (ablation switch).
        correct=state.get("correct", []) if ctx.cfg.loop.analyst_sees_correct else None,
        incorrect=state.get("incorrect", []),
        metrics=dev_metrics(state.get("history", [])) if show_metrics else None,
    )
    try:
        reply, conversation, calls = ctx.teacher.ask(
            messages, AnalystReply, round=state["round"], node="analyst",
            prompt_file=template.name, prompt_sha256=template.sha256)
    except BudgetExhausted:
        # The round winds down with nothing new; the router then stops on the budget.
        return {"analysis": "", "conversation": messages}
    except StructuredOutputError as exc:
        # The failed attempts are in the trace; the Generator works without an analysis.
        log.warning("analyst, round %d: %s", state["round"], exc)
        return {"analysis": "", "conversation": messages, "usage": usage_of(exc.calls, ctx)}
    return {"analysis": reply.summary, "conversation": conversation, "usage": usage_of(calls, ctx)}


def usage_of(calls: list, ctx: Context) -> dict[str, float]:
    """Counters to add to the state for a node's LLM calls (recorded replies cost nothing)."""
    loop = ctx.cfg.loop
    paid = [c for c in calls if not c.from_record or c.paid_before_resume]
    tokens_in = sum(c.tokens_in for c in paid)
    tokens_out = sum(c.tokens_out for c in paid)
    return {
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost": price(tokens_in, tokens_out, loop.price_in_per_1k, loop.price_out_per_1k),
        "calls": len(paid),
        "llm": sum(c.latency_s for c in paid),
    }
