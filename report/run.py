"""A run folder read through its typed records: metrics.jsonl, samples.jsonl and result.json.

It reads only the run folder's files, so it works on any finished or interrupted run, including
one written on another machine.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from evokd.core.bio import describe_entities
from evokd.core.records import EvalReport, RoundMetrics, RunResult, SampleRecord
from evokd.core.runfolder import RunFolder

SAMPLES_SHOWN = 3
# Quoted values inside a reason (a label, an entity) vary per sample; the rest names the cause.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")

M = TypeVar("M", bound=BaseModel)


class ReportError(ValueError):
    """A run folder whose files cannot be read as a run."""


@dataclass(frozen=True)
class Run:
    name: str
    rounds: list[RoundMetrics]
    samples: list[SampleRecord]
    # Written by the finish node, so an unfinished run has none.
    result: RunResult | None = None

    @property
    def seed(self) -> RoundMetrics:
        return self.rounds[0]

    @property
    def best(self) -> RoundMetrics:
        best_round = self.rounds[-1].best_round
        return next((m for m in self.rounds if m.round == best_round), max(self.rounds, key=lambda m: m.f1))

    @property
    def task(self) -> str:
        return str(self.seed.dev.get("task", "classification"))

    @property
    def task_name(self) -> str:
        return self.result.task_name if self.result else self.task

    @property
    def stop_reason(self) -> str | None:
        if self.result is None or self.result.stop_reason is None:
            return None
        detail = f" ({self.result.stop_detail})" if self.result.stop_detail else ""
        return self.result.stop_reason + detail

    @property
    def test_f1(self) -> float | None:
        return self.result.test_f1 if self.result else None

    @property
    def metric(self) -> str:
        return "macro-F1" if self.task == "classification" else "micro-F1"


@dataclass(frozen=True)
class SampleView:
    intent: str
    text: str
    gold: str
    predicted: str
    correct: bool | None  # None: no prediction was recorded


@dataclass(frozen=True)
class ReasonGroup:
    reason: str
    count: int
    example: str


def load_run(run_dir: Path) -> Run:
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    folder = RunFolder(run_dir)
    rounds = sorted(read_jsonl(folder.metrics, RoundMetrics), key=lambda m: m.round)
    if not rounds:
        raise ReportError(f"{folder.metrics}: no finished round yet")
    samples = read_jsonl(folder.samples, SampleRecord)
    result = read_result(folder.result) if folder.result.is_file() else None
    return Run(name=run_dir.resolve().name, rounds=rounds, samples=samples, result=result)


def read_jsonl(path: Path, model: type[M]) -> list[M]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(model.model_validate_json(line))
        except ValidationError as exc:
            raise ReportError(f"{path}:{number}: not a {model.__name__}: {exc}") from exc
    return rows


def read_result(path: Path) -> RunResult:
    try:
        return RunResult.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise ReportError(f"{path}: not a RunResult: {exc}") from exc


def dev_report(metrics: RoundMetrics) -> EvalReport:
    return EvalReport.model_validate(metrics.dev)


# --- rejections and samples ---------------------------------------------------------------------


def reason_group(reason: str) -> str:
    """The cause of a rejection without its per-sample details: quoted values become "...", so
    "label 'mixed' not in the label set" and "label 'none' ..." share a group, and anything after a
    colon (an exception message) is dropped, or one cause would split into as many groups as messages."""
    return _QUOTED.sub("...", reason).split(":", 1)[0].strip()


def rejection_reasons(samples: Sequence[SampleRecord]) -> list[ReasonGroup]:
    rejected = [s.reason or "no reason recorded" for s in samples if not s.accepted]
    counts = Counter(reason_group(r) for r in rejected)
    examples = {reason_group(r): r for r in reversed(rejected)}  # the first of each group wins
    return [ReasonGroup(reason, count, examples[reason])
            for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def sample_view(sample: SampleRecord) -> SampleView:
    if sample.tokens is not None:  # NER: compare whole tag sequences, show entities
        gold_value: str | list[str] | None = sample.tags
        gold = describe_entities(sample.tokens, sample.tags, none="no entities")
        predicted = describe_entities(sample.tokens, sample.predicted, none="no entities") \
            if isinstance(sample.predicted, list) else None
    else:
        gold_value = sample.label
        gold = sample.label or "none"
        predicted = str(sample.predicted) if sample.predicted is not None else None
    correct = None if sample.predicted is None else sample.predicted == gold_value
    return SampleView(intent=sample.intent, text=sample.text, gold=gold, predicted=predicted or "not recorded",
                      correct=correct)


def samples_by_round(samples: Sequence[SampleRecord]) -> dict[int, list[SampleView]]:
    shown: dict[int, list[SampleView]] = {}
    for intent in ("hard", "easy"):
        counts: Counter[int] = Counter()
        for sample in samples:
            if sample.accepted and sample.intent == intent and counts[sample.round] < SAMPLES_SHOWN:
                counts[sample.round] += 1
                shown.setdefault(sample.round, []).append(sample_view(sample))
    return dict(sorted(shown.items()))


