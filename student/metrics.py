"""Evaluation reports for both tasks (classification: sklearn-style; NER: seqeval)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from seqeval.metrics import classification_report as seqeval_report

from evokd.core.bio import entities
from evokd.core.records import ClassScore, ConfusedPair, DevPredictions, EvalReport

__all__ = ["ClassScore", "ConfusedPair", "DevPredictions", "EvalReport", "classification_predictions",
           "classification_report", "entities", "ner_predictions", "ner_report"]


def classification_report(gold: list[str], pred: list[str], labels: list[str]) -> EvalReport:
    """Accuracy, macro-F1 over every configured label, micro-F1, per-class scores and confusions.

    A prediction outside `labels` (e.g. an unparsable answer) counts as wrong for its gold label
    and as a false positive for no label.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    unknown = sorted(set(gold) - set(labels))
    if unknown:
        raise ValueError(f"gold labels {unknown} are not among {labels}")
    index = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    for g, p in zip(gold, pred, strict=True):
        if p in index:
            confusion[index[g], index[p]] += 1
    support = np.array([gold.count(label) for label in labels])
    correct = np.diag(confusion)
    per_class = {
        label: _score(int(correct[i]), int(confusion[:, i].sum()), int(support[i]))
        for i, label in enumerate(labels)
    }
    micro = _score(int(correct.sum()), int(confusion.sum()), len(gold))
    macro_f1 = _macro_f1(per_class)
    return EvalReport(
        task="classification",
        n=len(gold),
        f1=macro_f1,
        accuracy=float(correct.sum() / len(gold)) if gold else 0.0,
        macro_f1=macro_f1,
        micro_f1=micro.f1,
        per_class=per_class,
        labels=list(labels),
        confusion=confusion.tolist(),
        confused_pairs=_confused_pairs(confusion, labels),
    )


def _score(correct: int, predicted: int, support: int) -> ClassScore:
    # Zero divisions score 0, as sklearn and seqeval do with zero_division=0.
    precision = correct / predicted if predicted else 0.0
    recall = correct / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ClassScore(precision=precision, recall=recall, f1=f1, support=support)


def _macro_f1(per_class: dict[str, ClassScore]) -> float:
    return sum(score.f1 for score in per_class.values()) / len(per_class) if per_class else 0.0


def _confused_pairs(confusion: np.ndarray, labels: list[str]) -> list[ConfusedPair]:
    pairs = [
        ConfusedPair(gold=labels[g], predicted=labels[p], count=int(confusion[g, p]))
        for g in range(len(labels))
        for p in range(len(labels))
        if g != p and confusion[g, p] > 0
    ]
    # sorted() is stable, so equal counts stay in label order.
    return sorted(pairs, key=lambda pair: -pair.count)


def ner_report(gold: list[list[str]], pred: list[list[str]], types: list[str]) -> EvalReport:
    """seqeval (conlleval mode) micro/macro F1 and per-type scores, plus an entity error breakdown.

    Per-type scores cover every configured type (zeros when a type never occurs). `errors` counts
    gold entities that were missed, got the wrong type (same span) or a wrong boundary (overlap,
    any type), and predicted entities that overlap no gold entity (spurious).
    """
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred, strict=False)):
        raise ValueError("gold and predicted tag sequences differ in number or length")
    # seqeval fails on no sentences and averages to NaN over no entities; both score 0 here.
    has_entities = any(tag != "O" for tags in [*gold, *pred] for tag in tags)
    scores = seqeval_report(gold, pred, output_dict=True, zero_division=0) if has_entities else {}
    empty = {"support": 0}
    per_class = {entity_type: _seqeval_score(scores.get(entity_type, empty)) for entity_type in types}
    errors, wrong_types = _entity_errors(gold, pred)
    micro_f1 = _seqeval_score(scores.get("micro avg", empty)).f1
    return EvalReport(
        task="ner",
        n=len(gold),
        f1=micro_f1,
        macro_f1=_seqeval_score(scores.get("macro avg", empty)).f1,
        micro_f1=micro_f1,
        per_class=per_class,
        labels=list(types),
        confused_pairs=_confused_types(wrong_types),
        errors=errors,
    )


def _seqeval_score(row: dict[str, Any]) -> ClassScore:
    return ClassScore(
        precision=float(row.get("precision", 0.0)),
        recall=float(row.get("recall", 0.0)),
        f1=float(row.get("f1-score", 0.0)),
        support=int(row["support"]),
    )


def _entity_errors(
    gold: list[list[str]], pred: list[list[str]]
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Error counts and the (gold type, predicted type) of each same-span type error."""
    errors = {"missed": 0, "spurious": 0, "wrong_type": 0, "wrong_boundary": 0}
    wrong_types: list[tuple[str, str]] = []
    for gold_tags, pred_tags in zip(gold, pred, strict=True):
        gold_spans, pred_spans = entities(gold_tags), entities(pred_tags)
        pred_by_span = {(start, end): entity_type for entity_type, start, end in pred_spans}
        for entity_type, start, end in gold_spans:
            predicted_type = pred_by_span.get((start, end))
            if predicted_type == entity_type:
                continue
            if predicted_type is not None:
                errors["wrong_type"] += 1
                wrong_types.append((entity_type, predicted_type))
            elif any(_overlap((start, end), (s, e)) for _, s, e in pred_spans):
                errors["wrong_boundary"] += 1
            else:
                errors["missed"] += 1
        errors["spurious"] += sum(
            not any(_overlap((start, end), (s, e)) for _, s, e in gold_spans) for _, start, end in pred_spans
        )
    return errors, wrong_types


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _confused_types(wrong_types: list[tuple[str, str]]) -> list[ConfusedPair]:
    counts = Counter(wrong_types)
    return [ConfusedPair(gold=g, predicted=p, count=c) for (g, p), c in counts.most_common()]


def classification_predictions(gold: list[str], pred: list[str], labels: list[str]) -> DevPredictions:
    index = {label: i for i, label in enumerate(labels)}
    return DevPredictions(task="classification", labels=list(labels), gold=[index[g] for g in gold],
                          predicted=[index.get(p, -1) for p in pred])


def ner_predictions(gold: list[list[str]], pred: list[list[str]], types: list[str]) -> DevPredictions:
    counts = []
    for gold_tags, pred_tags in zip(gold, pred, strict=True):
        gold_set, pred_set = set(entities(gold_tags)), set(entities(pred_tags))
        counts.append((len(gold_set & pred_set), len(pred_set), len(gold_set)))
    return DevPredictions(task="ner", labels=list(types), entity_counts=counts)
