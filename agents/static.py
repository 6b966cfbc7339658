"""The static baseline (ZeroGen-style, Ye et al. 2022): each round the teacher writes texts for
each label in turn, with no student feedback. The label asked for is the annotation: there is no
Verifier, as in ZeroGen. For NER the teacher writes sentences containing an entity of the type asked
for and lists every entity; the graph aligns the list to BIO tags by the Verifier's span rules.

The graph applies the same cheap rejection rules as everywhere (empty or over-long, duplicate,
equal to a dev/test text). A round writes as many texts as an EvoKD round asks for (`loop.n_hard +
loop.n_easy`), spread evenly over the labels.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, create_model

from evokd.agents.ask import Answer, ask
from evokd.agents.client import TeacherClient, counted
from evokd.agents.prompts import PromptSet, task_variables
from evokd.config import TaskConfig


def reply_schema(n: int, annotated: bool = False) -> Any:
    """n texts, or (`annotated`, NER) n sentences each with its entities listed; the count is in the
    JSON schema, validation accepts any length."""
    if annotated:
        entity = create_model("Entity", text=(str, ...), type=(str, ...))
        sentence = create_model("AnnotatedSentence", text=(str, ...),
                                entities=(list[entity], Field(default_factory=list)))
        return create_model("SentencesReply", sentences=counted(sentence, n))
    return create_model("TextsReply", texts=counted(str, n))


def per_label(n_hard: int, n_easy: int, labels: list[str]) -> int:
    """Texts asked per label per round: an EvoKD round's count, spread over the labels."""
    return max(1, math.ceil((n_hard + n_easy) / len(labels)))


def write_texts(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, *, agent: str, round: int, n: int,
                annotated: bool = False, **variables: Any) -> Answer[Any]:
    """One no-feedback call: n texts from the `agent` prompt (static or augment) with its variables;
    `annotated`: sentences with their entities listed."""
    messages, template = prompts.messages(agent, **task_variables(task), n=n, round=round, **variables)
    return ask(teacher, messages, reply_schema(n, annotated), round=round, node=f"{agent}_gen", template=template)


def write_for_label(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, *, round: int, label: str,
                    n: int, style: list[str] | None = None) -> Answer[Any]:
    """n texts whose label is `label`; for NER, n sentences with a `label` entity, entities listed;
    `style`: the attributes drawn for the request (attributes.py)."""
    return write_texts(teacher, prompts, task, agent="static", round=round, n=n, label=label, style=style or [],
                       annotated=task.type == "ner")
