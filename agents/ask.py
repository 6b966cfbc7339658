"""How an agent asks the teacher: one call that never stops a round, and calls in turn until the
budget is spent.

An agent is an LLM role: a function of plain inputs (samples, metrics, the task's label set, a
`TeacherClient`, the `PromptSet`) that renders its prompt, makes its call(s) and returns the
validated reply with the `LLMCall` records the calls left. Agents know nothing of the graph's state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel

from evokd.agents.client import BudgetExhausted, Message, StructuredOutputError, TeacherClient
from evokd.agents.prompts import Template
from evokd.core.records import LLMCall

log = logging.getLogger("evokd.agents")

T = TypeVar("T")  # what an agent makes of a reply
R = TypeVar("R", bound=BaseModel)  # a reply schema
K = TypeVar("K")


@dataclass
class Answer(Generic[T]):
    """One teacher turn as an agent sees it."""

    reply: T | None  # None: the budget was spent, or no reply validated within the retries
    conversation: list[Message]  # with the accepted reply; the request itself when there is none
    calls: list[LLMCall] = field(default_factory=list)  # what the attempts cost
    budget_spent: bool = False
    error: StructuredOutputError | None = None


def ask(teacher: TeacherClient, messages: list[Message], schema: type[R], *, round: int, node: str,
        template: Template, temperature: float | None = None, log_as: str | None = None,
        warn: bool = True) -> Answer[R]:
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


def ask_in_turn(keys: Iterable[K], ask_one: Callable[[K], Answer[T]]) -> tuple[list[tuple[K, T]], list[LLMCall]]:
    """One call per key, in turn, until the budget is spent (no later call starts): each reply that
    came, with its key (a key whose reply never validated is left out), and every call's record."""
    replies: list[tuple[K, T]] = []
    calls: list[LLMCall] = []
    for key in keys:
        answer = ask_one(key)
        calls += answer.calls
        if answer.budget_spent:
            break
        if answer.reply is not None:
            replies.append((key, answer.reply))
    return replies, calls
