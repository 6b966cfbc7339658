"""LLM2LLM's teacher (Lee et al. 2024, arXiv 2403.15042): for each seed example the student gets
wrong, write a few similar examples with their labels; drop near-duplicates by ROUGE-L.

There is no separate Verifier here, as in LLM2LLM: the teacher labels what it writes. The graph
still applies the same rejection rules (label outside the set, empty or over-long, duplicate, equal to a
dev/test text), plus LLM2LLM's own near-duplicate filter against everything kept so far.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from evokd.agents.ask import Answer, ask
from evokd.agents.client import TeacherClient
from evokd.agents.prompts import PromptSet, task_variables
from evokd.config import TaskConfig
from evokd.core.text import normalise


class Example(BaseModel):
    text: str
    label: str


class AugmenterReply(BaseModel):
    # The schema's name is part of every recorded request (its key): it stays as runs recorded it.
    examples: list[Example] = []


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure of two texts over normalised word tokens (longest common subsequence)."""
    x, y = normalise(a).split(), normalise(b).split()
    if not x or not y:
        return 0.0
    prev = [0] * (len(y) + 1)
    for token in x:
        row = [0]
        for j, other in enumerate(y, start=1):
            row.append(prev[j - 1] + 1 if token == other else max(prev[j], row[j - 1]))
        prev = row
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(x), lcs / len(y)
    return 2 * precision * recall / (precision + recall)


def near_duplicate(text: str, kept: list[str], threshold: float) -> str | None:
    """The kept text this one is too similar to, if any."""
    return next((k for k in kept if rouge_l(text, k) >= threshold), None)


def write_similar(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, *, round: int,
                  example: dict[str, Any], n: int) -> Answer[AugmenterReply]:
    """n labelled examples like one the student got wrong (a SampleRecord dict)."""
    messages, template = prompts.messages("llm2llm", **task_variables(task), example=example, n=n)
    return ask(teacher, messages, AugmenterReply, round=round, node="augmenter", template=template)
