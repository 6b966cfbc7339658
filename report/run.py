"""A run folder read through its typed records: metrics.jsonl, samples.jsonl, result.json, the
trace (the Analyst's text, the run header) and rounds/round_NNN/dev_predictions.json.

It reads only the run folder's files, so it works on any finished or interrupted run, including
one written on another machine.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from evokd.core.bio import describe_entities
from evokd.core.files import read_jsonl
from evokd.core.records import (
    DevPredictions,
    EvalReport,
    FinalFitResult,
    NodeTurn,
    RoundMetrics,
    RunHeader,
    RunResult,
    SampleRecord,
    metric_name,
)
from evokd.core.runfolder import RunFolder, describe_budget, describe_teacher
from evokd.core.trace import TraceError, read_trace

BOOTSTRAP_RESAMPLES = 1000
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
    # The resolved config (the trace's header, else config.toml); empty when neither is readable.
    config: dict[str, Any] = field(default_factory=dict)
    # The Analyst's text per round, from the trace's analyst turns (the last one of a redone round).
    analyses: dict[int, str] = field(default_factory=dict)
    # rounds/round_NNN/dev_predictions.json, for the rounds that have one.
    predictions: dict[int, DevPredictions] = field(default_factory=dict)

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
        if self.result:
            return self.result.task_name
        return str(self.config.get("task", {}).get("name", self.task))

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
    def final_fit(self) -> FinalFitResult | None:
        return self.result.final_fit if self.result else None

    @property
    def metric(self) -> str:
        return metric_name(self.task)

    @property
    def method(self) -> str:
        return self.result.method if self.result else self.seed.method

    @property
    def teacher(self) -> str:
        if self.result and self.result.teacher:
            return self.result.teacher
        return describe_teacher(self.config) if self.config else "unknown (no trace or config.toml)"

    @property
    def student(self) -> str:
        if self.result:
            return self.result.student_model
        return str(self.config.get("student", {}).get("model", "unknown"))

    @property
    def budget(self) -> dict[str, float | int]:
        return self.result.budget if self.result and self.result.budget else describe_budget(self.config)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class SampleView:
    round: int
    intent: str
    text: str
    gold: str
    predicted: str
    correct: bool | None  # None: no prediction was recorded
    accepted: bool = True
    reason: str = ""


@dataclass(frozen=True)
class ReasonGroup:
    reason: str
    count: int
    example: str  # the text of the first sample rejected for this reason


def load_run(run_dir: Path) -> Run:
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    folder = RunFolder(run_dir)
    rounds = sorted(read_jsonl(folder.metrics, RoundMetrics, error=ReportError), key=lambda m: m.round)
    if not rounds:
        raise ReportError(f"{folder.metrics}: no finished round yet")
    samples = read_jsonl(folder.samples, SampleRecord, error=ReportError)
    result = read_result(folder.result) if folder.result.is_file() else None
    header, analyses = read_trace_parts(folder.trace)
    config = header.config if header is not None else read_config(folder.config)
    return Run(name=run_dir.resolve().name, rounds=rounds, samples=samples, result=result, config=config,
               analyses=analyses, predictions=read_predictions(folder, [m.round for m in rounds]))


def read_trace_parts(path: Path) -> tuple[RunHeader | None, dict[int, str]]:
    """The first run header and the Analyst's text per round; a missing or unreadable trace gives
    neither (the report still renders what the other files hold)."""
    header, analyses = None, {}
    if not path.is_file():
        return None, {}
    try:
        for record in read_trace(path):
            if isinstance(record, RunHeader) and header is None:
                header = record
            elif isinstance(record, NodeTurn) and record.node == "analyst" and record.output.get("analysis"):
                analyses[record.round] = str(record.output["analysis"])
    except (TraceError, OSError, UnicodeDecodeError):
        return header, analyses
    return header, analyses


def read_config(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def read_predictions(folder: RunFolder, rounds: list[int]) -> dict[int, DevPredictions]:
    found = {}
    for r in rounds:
        path = folder.rounds / f"round_{r:03d}" / "dev_predictions.json"
        if path.is_file():
            try:
                found[r] = DevPredictions.model_validate_json(path.read_text(encoding="utf-8"))
            except ValidationError as exc:
                raise ReportError(f"{path}: not a DevPredictions: {exc}") from exc
    return found


def per_round_tokens(run: Run) -> tuple[list[int], list[int]]:
    """metrics.jsonl keeps cumulative counters; a round's own spend is the difference."""
    tokens_in, tokens_out, before_in, before_out = [], [], 0, 0
    for m in run.rounds:
        tokens_in.append(m.tokens_in - before_in)
        tokens_out.append(m.tokens_out - before_out)
        before_in, before_out = m.tokens_in, m.tokens_out
    return tokens_in, tokens_out


# --- how noisy the dev F1 is ---------------------------------------------------------------------


def bootstrap_f1(predictions: DevPredictions, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Interval:
    """95% percentile interval of the dev F1 over `resamples` resamples (with replacement) of the
    dev set: macro-F1 over the labels (classification) or entity micro-F1 (NER)."""
    rng = np.random.default_rng(seed)
    if predictions.task == "classification":
        gold, pred = np.array(predictions.gold), np.array(predictions.predicted)
        if not len(gold):
            return Interval(0.0, 0.0)
        index = rng.integers(0, len(gold), size=(resamples, len(gold)))
        g, p = gold[index], pred[index]
        scores = []
        for k in range(len(predictions.labels)):
            tp = ((g == k) & (p == k)).sum(axis=1)
            denominator = (g == k).sum(axis=1) + (p == k).sum(axis=1)
            scores.append(np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0))
        f1 = np.mean(scores, axis=0)
    else:
        counts = np.array(predictions.entity_counts, dtype=float).reshape(-1, 3)
        if not len(counts):
            return Interval(0.0, 0.0)
        index = rng.integers(0, len(counts), size=(resamples, len(counts)))
        correct, predicted, gold = counts[index].sum(axis=1).T
        denominator = predicted + gold
        f1 = np.where(denominator > 0, 2 * correct / np.maximum(denominator, 1), 0.0)
    low, high = np.percentile(f1, [2.5, 97.5])
    return Interval(float(low), float(high))


def normal_interval(f1: float, n: int) -> Interval:
    """F1 +- 1.96 sqrt(F1 (1 - F1) / n): treats F1 like a proportion over n dev examples. A rough
    stand-in for runs that stored no per-example predictions (written before evokd kept them)."""
    half = 1.96 * (f1 * (1 - f1) / n) ** 0.5 if n else 0.0
    return Interval(max(0.0, f1 - half), min(1.0, f1 + half))


def f1_intervals(run: Run) -> tuple[dict[int, Interval], str]:
    """Each round's 95% interval of the dev F1, and how it was computed (for the page to say)."""
    n = int(dev_report(run.seed).n)
    unit = "texts" if run.task == "classification" else "sentences"
    if run.predictions and all(m.round in run.predictions for m in run.rounds):
        return ({m.round: bootstrap_f1(run.predictions[m.round]) for m in run.rounds},
                f"95% bootstrap interval: {BOOTSTRAP_RESAMPLES} resamples of the {n} dev {unit}, "
                "from each round's stored dev predictions")
    return ({m.round: normal_interval(m.f1, n) for m in run.rounds},
            f"approximate 95% interval F1 &plusmn; 1.96&middot;&radic;(F1(1&minus;F1)/n) with n = {n} dev "
            f"{unit} (this run stored no per-example dev predictions to bootstrap from)")


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
    rejected = [(s.reason or "no reason recorded", s.text) for s in samples if not s.accepted]
    counts = Counter(reason_group(reason) for reason, _ in rejected)
    examples = {reason_group(reason): text for reason, text in reversed(rejected)}  # the first of each group wins
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
    return SampleView(round=sample.round, intent=sample.intent, text=sample.text, gold=gold,
                      predicted=predicted or "not recorded", correct=correct, accepted=sample.accepted,
                      reason=sample.reason or ("" if sample.accepted else "no reason recorded"))


def generated(samples: Sequence[SampleRecord], accepted: bool) -> list[SampleView]:
    """Every generated sample (not the gold seed set) with this verdict, hard before easy per round."""
    order = {"hard": 0, "easy": 1}
    chosen = [s for s in samples if s.intent != "seed" and s.accepted == accepted]
    return [sample_view(s) for s in sorted(chosen, key=lambda s: (s.round, order.get(s.intent, 2)))]


