"""What every agent shares: one teacher call that never stops a round, and reply-schema helpers.

An agent is an LLM role: a function of plain inputs (samples, metrics, the task's label set, a
`Teacher`, the `PromptSet`) that renders its prompt, makes its call(s) and returns the validated
reply with the `LLMCall` records the calls left. Agents know nothing of the graph's state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, Field

from evokd.agents.llm import BudgetExhausted, Message, StructuredOutputError, Teacher
from evokd.agents.prompts import Template
from evokd.config import TaskConfig
from evokd.core.records import LLMCall

log = logging.getLogger("evokd.agents")

T = TypeVar("T", bound=BaseModel)


@dataclass
class Answer(Generic[T]):
    """One teacher turn as an agent sees it."""

    reply: T | None  # None: the budget was spent, or no reply validated within the retries
    conversation: list[Message]  # with the accepted reply; the request itself when there is none
    calls: list[LLMCall] = field(default_factory=list)  # what the attempts cost
    budget_spent: bool = False
    error: StructuredOutputError | None = None


def ask(teacher: Teacher, messages: list[Message], schema: type[T], *, round: int, node: str,
        template: Template, temperature: float | None = None, log_as: str | None = None,
        warn: bool = True) -> Answer[T]:
    """Ask the teacher; a spent budget or a reply that never validates becomes an empty answer
    (the failed attempts are in the trace, and logged unless `warn` is false), so the round winds
    down instead of failing."""
    try:
        reply, conversation, calls = teacher.ask(messages, schema, round=round, node=node,
                                                 prompt_file=template.name, prompt_sha256=template.sha256,
                                                 temperature=temperature)
    except BudgetExhausted:
        return Answer(None, list(messages), budget_spent=True)
    except StructuredOutputError as exc:
        if warn:
            log.warning("%s, round %d: %s", log_as or node, round, exc)
        return Answer(None, list(messages), exc.calls, error=exc)
    return Answer(reply, conversation, calls)


def task_variables(task: TaskConfig) -> dict[str, Any]:
    """The prompt variables every agent provides."""
    return {"task_description": task.description, "labels": task.labels,
            "label_descriptions": task.label_descriptions}


def one_of(values: list[str]) -> Any:
    """A string whose JSON schema lists the allowed values: a grammar-constrained backend then
    cannot stray, while validation still accepts any string so that a stray value becomes a
    per-sample rejection with a reason instead of a failed reply."""
    return Annotated[str, Field(json_schema_extra={"enum": values})]


def counted(item: Any, n: int, what: str | None = None, alias: str | None = None) -> Any:
    """A list field whose JSON schema asks for exactly n items while validation takes any number
    (a short list is topped up or accepted as it is); `alias` is its key in the reply."""
    return (list[item], Field(default_factory=list, description=what, alias=alias,
                              json_schema_extra={"minItems": n, "maxItems": n}))
