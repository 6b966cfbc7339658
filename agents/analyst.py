"""Analyst: reads what the student got right and wrong and says what it is weak at.

`analyse` is the paper's Analyst (evokd-paper); `diagnose` the default loop's (docs/method.md)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from evokd.agents.ask import Answer, ask
from evokd.agents.client import TeacherClient
from evokd.agents.prompts import PromptSet, task_variables
from evokd.config import TaskConfig


class AnalystReply(BaseModel):
    summary: str = Field(min_length=1, description="patterns of inputs the student gets wrong")


def dev_metrics(history: list[dict[str, Any]], top: int = 3) -> dict[str, Any] | None:
    """Per-label F1 and the most confused pairs of the latest round (RoundMetrics dicts), for the prompt."""
    if not history:
        return None
    dev = history[-1]["dev"]
    return {
        "f1": dev["f1"],
        "per_label": {label: score["f1"] for label, score in dev["per_class"].items()},
        "confused": dev.get("confused_pairs", [])[:top],
        "errors": dev.get("errors"),
    }


def analyse(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, *, round: int,
            correct: list[dict[str, Any]] | None, incorrect: list[dict[str, Any]],
            metrics: dict[str, Any] | None) -> Answer[AnalystReply]:
    """The Analyst's turn. `correct` or `metrics` None leaves that section out of the prompt (the
    ablation switches); the answer's conversation is the one the Generator continues."""
    messages, template = prompts.messages("analyst", **task_variables(task), round=round,
                                          correct=correct, incorrect=incorrect, metrics=metrics)
    return ask(teacher, messages, AnalystReply, round=round, node="analyst", template=template)


class DiagnosisReply(BaseModel):
    weaknesses: list[str] = Field(default_factory=list, description="at most 3 kinds of text the model gets wrong",
                                  json_schema_extra={"maxItems": 3})


def diagnose(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, *, round: int, errors: list[dict[str, Any]],
             n_seen: int, metrics: dict[str, Any] | None, real: bool = False) -> Answer[DiagnosisReply]:
    """The default loop's Analyst: at most three weaknesses, read from the samples the student got
    wrong before it trained on them (`errors`, out of `n_seen`) and its dev scores after (`metrics`);
    with `real`, its mistakes on the gold feedback texts, which it never trains on."""
    messages, template = prompts.messages("diagnosis", **task_variables(task), errors=errors, n_seen=n_seen,
                                          metrics=metrics, real=real)
    return ask(teacher, messages, DiagnosisReply, round=round, node="analyst", template=template)
