"""Generator: in the Analyst's conversation, writes hard and easy inputs (no labels)."""

from __future__ import annotations

import logging
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field, create_model

from evokd.agents.analyst import prompt_variables, usage_of
from evokd.agents.llm import BudgetExhausted, StructuredOutputError
from evokd.graph.context import Context, normalise
from evokd.graph.state import RunState

log = logging.getLogger("evokd.agents")


def reply_schema(n_hard: int, n_easy: int) -> type[BaseModel]:
    """Hard and easy texts. The counts are in the JSON schema, so a grammar-constrained backend
    returns exactly that many; validation is lenient, since a short list is topped up instead."""

    def texts(n: int, what: str) -> Any:
        return (list[str], Field(default_factory=list, description=what,
                                 json_schema_extra={"minItems": n, "maxItems": n}))

    return create_model("GeneratorReply",
                        hard=texts(n_hard, "inputs the student will likely get wrong"),
                        easy=texts(n_easy, "inputs the student will likely get right"))


def take_new(texts: list[str], want: int, seen: set[str]) -> list[str]:
    """Up to `want` stripped, non-empty texts not seen before (seen is updated)."""
    out = []
    for text in texts:
        text = " ".join(str(text).split())
        key = normalise(text)
        if len(out) == want:
            break
        if key and key not in seen:
            seen.add(key)
            out.append(text)
    return out


def generator(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    loop = ctx.cfg.loop
    variables = prompt_variables(state, ctx)
    conversation = list(state.get("conversation", []))
    hard: list[str] = []
    easy: list[str] = []
    seen: set[str] = set()
    calls = []
    # A small teacher often returns fewer items than asked: ask again for what is missing, bounded.
    for attempt in range(loop.max_top_ups + 1):
        need_hard, need_easy = loop.n_hard - len(hard), loop.n_easy - len(easy)
        if need_hard <= 0 and need_easy <= 0:
            break
        messages, template = ctx.prompts.messages(
            "generator", **variables, n_hard=max(need_hard, 0), n_easy=max(need_easy, 0))
        user = messages[-1]  # the generator speaks in the analyst's conversation, no new system prompt
        try:
            reply, conversation, new_calls = ctx.teacher.ask(
                [*conversation, user], reply_schema(max(need_hard, 0), max(need_easy, 0)), round=state["round"],
                node="generator" if attempt == 0 else "generator-top-up",
                prompt_file=template.name, prompt_sha256=template.sha256)
        except BudgetExhausted:
            break
        except StructuredOutputError as exc:
            # Bounded retries are spent; keep what earlier attempts gave and let the round go on.
            log.warning("generator, round %d: %s", state["round"], exc)
            calls += exc.calls
            continue
        calls += new_calls
        hard += take_new(reply.hard, max(need_hard, 0), seen)
        easy += take_new(reply.easy, max(need_easy, 0), seen)
    candidates = [{"text": t, "intent": "hard"} for t in hard] + [{"text": t, "intent": "easy"} for t in easy]
    return {"candidates": candidates, "conversation": conversation, "usage": usage_of(calls, ctx)}
