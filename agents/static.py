"""The static baseline (ZeroGen-style, Ye et al. 2022): each round the teacher writes texts for
each label in turn, with no student feedback. The label asked for is the annotation: there is no
Verifier, as in ZeroGen.

The graph applies the same cheap rejection rules as everywhere (empty or over-long, duplicate,
equal to a dev/test text). A round writes as many texts as an EvoKD round asks for (`loop.n_hard +
loop.n_easy`), spread evenly over the labels.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field, create_model

from evokd.agents.common import Answer, ask, task_variables
from evokd.agents.llm import Teacher
from evokd.agents.prompts import PromptSet
from evokd.config import TaskConfig


def reply_schema(n: int) -> type[BaseModel]:
    """n texts; the count is in the JSON schema, validation accepts any length."""
    return create_model("TextsReply", texts=(list[str], Field(default_factory=list,
                                                               json_schema_extra={"minItems": n, "maxItems": n})))


def per_label(n_hard: int, n_easy: int, labels: list[str]) -> int:
    """Texts asked per label per round: an EvoKD round's count, spread over the labels."""
    return max(1, math.ceil((n_hard + n_easy) / len(labels)))


def write_texts(teacher: Teacher, prompts: PromptSet, task: TaskConfig, *, agent: str, round: int, n: int,
                **variables: Any) -> Answer[Any]:
    """One no-feedback call: n texts from the `agent` prompt (static or augment) with its variables."""
    messages, template = prompts.messages(agent, **task_variables(task), n=n, round=round, **variables)
    return ask(teacher, messages, reply_schema(n), round=round, node=f"{agent}_gen", template=template)


def write_for_label(teacher: Teacher, prompts: PromptSet, task: TaskConfig, *, round: int, label: str,
                    n: int) -> Answer[Any]:
    """n texts whose label is `label`."""
    return write_texts(teacher, prompts, task, agent="static", round=round, n=n, label=label)
