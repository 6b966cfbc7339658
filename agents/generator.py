"""Generator: in the Analyst's conversation, writes hard and easy inputs (no labels).

With `loop.separate_verifier = false` (an ablation) it writes labelled texts instead (a label, or
an entity list for NER), and `self_check` applies the Verifier's rules to its own labels."""

from __future__ import annotations

import logging
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field, create_model

from evokd.agents.analyst import prompt_variables, usage_of
from evokd.agents.llm import BudgetExhausted, StructuredOutputError
from evokd.agents.verifier import _one_of
from evokd.core.text import normalise
from evokd.graph.context import Context
from evokd.graph.state import RunState

log = logging.getLogger("evokd.agents")


def reply_schema(n_hard: int, n_easy: int) -> type[BaseModel]:
    """Hard and easy texts. The counts are in the JSON schema, so a grammar-constrained backend
    returns exactly that many; validation is lenient, since a short list is topped up instead."""

    return create_model("GeneratorReply",
                        hard=_counted(str, n_hard, "inputs the student will likely get wrong"),
                        easy=_counted(str, n_easy, "inputs the student will likely get right"))


def _counted(item: Any, n: int, what: str) -> Any:
    """A list field whose JSON schema asks for exactly n items while validation takes any number."""
    return (list[item], Field(default_factory=list, description=what,
                              json_schema_extra={"minItems": n, "maxItems": n}))


def labelled_schema(task_type: str, labels: list[str], n_hard: int, n_easy: int) -> type[BaseModel]:
    """Hard and easy texts, each with its label (or its entities for NER): the Generator labels
    its own texts when there is no separate Verifier."""
    if task_type == "ner":
        entity = create_model("Entity", text=(str, ...), type=(_one_of(labels), ...))
        item = create_model("LabelledSentence", text=(str, ...), entities=(list[entity], Field(default_factory=list)))
    else:
        # Default None without "| None", as in the Verifier: a missing label is a per-text rejection.
        item = create_model("LabelledText", text=(str, ...), label=(_one_of(labels), Field(None)))

    return create_model("LabelledGeneratorReply",
                        hard=_counted(item, n_hard, "inputs the student will likely get wrong, labelled"),
                        easy=_counted(item, n_easy, "inputs the student will likely get right, labelled"))


def annotation_of(item: Any) -> Any:
    """A labelled item's annotation as plain JSON: the label, or the entity list for NER."""
    if hasattr(item, "entities"):
        return [e.model_dump() for e in item.entities]
    return item.label


def take_new(items: list[Any], want: int, seen: set[str]) -> list[dict[str, Any]]:
    """Up to `want` stripped, non-empty texts not seen before (seen is updated), as candidates:
    {"text"} for plain texts, {"text", "annotation"} for labelled items."""
    out: list[dict[str, Any]] = []
    for item in items:
        text = " ".join(str(item if isinstance(item, str) else item.text).split())
        key = normalise(text)
        if len(out) == want:
            break
        if key and key not in seen:
            seen.add(key)
            out.append({"text": text} if isinstance(item, str) else {"text": text, "annotation": annotation_of(item)})
    return out


def generator(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    loop = ctx.cfg.loop
    variables = prompt_variables(state, ctx)
    conversation = list(state.get("conversation", []))
    labelled = not loop.separate_verifier
    agent = "generator_labelled" if labelled else "generator"
    hard: list[dict[str, Any]] = []
    easy: list[dict[str, Any]] = []
    seen: set[str] = set()
    calls = []
    # A small teacher often returns fewer items than asked: ask again for what is missing, bounded.
    for attempt in range(loop.max_top_ups + 1):
        need_hard, need_easy = loop.n_hard - len(hard), loop.n_easy - len(easy)
        if need_hard <= 0 and need_easy <= 0:
            break
        messages, template = ctx.prompts.messages(
            agent, **variables, n_hard=max(need_hard, 0), n_easy=max(need_easy, 0))
        user = messages[-1]  # the generator speaks in the analyst's conversation, no new system prompt
        schema = labelled_schema(ctx.cfg.task.type, ctx.cfg.task.labels, max(need_hard, 0), max(need_easy, 0)) \
            if labelled else reply_schema(max(need_hard, 0), max(need_easy, 0))
        try:
            reply, conversation, new_calls = ctx.teacher.ask(
                [*conversation, user], schema, round=state["round"],
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
    candidates = [{**c, "intent": "hard"} for c in hard] + [{**c, "intent": "easy"} for c in easy]
    return {"candidates": candidates, "conversation": conversation, "usage": usage_of(calls, ctx)}
