"""Evaluation reports in evokd.student.metrics, checked against hand-computed values."""

from __future__ import annotations

import warnings

import pytest
from sklearn.metrics import f1_score

from evokd.student.metrics import ConfusedPair, classification_report, entities, ner_report

# --- classification ------------------------------------------------------------------------------

GOLD = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "b", "a", "b", "c", "c"]


def test_classification_report_by_hand() -> None:
    report = classification_report(GOLD, PRED, ["a", "b", "c"])
    # a: 2 of 2 predicted right, 2 of 3 found; b: 1 of 2, 1 of 2; c: 1 of 2, 1 of 1.
    assert report.per_class["a"].model_dump() == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert report.per_class["b"].model_dump() == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert report.per_class["c"].model_dump() == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.micro_f1 == pytest.approx(4 / 6)
    assert report.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report.f1 == report.macro_f1
    assert report.n == 6
    assert report.task == "classification"
    assert report.labels == ["a", "b", "c"]
    assert report.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report.confused_pairs == [ConfusedPair(gold="a", predicted="b", count=1),
                                     ConfusedPair(gold="b", predicted="c", count=1)]


def test_macro_f1_counts_every_configured_label_like_sklearn() -> None:
    labels = ["a", "b", "c", "d"]  # "d" never occurs: its F1 of 0 still counts
    report = classification_report(GOLD, PRED, labels)
    assert report.macro_f1 == pytest.approx(f1_score(GOLD, PRED, labels=labels, average="macro", zero_division=0))
    assert report.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 4)
    assert report.per_class["d"].support == 0


def test_confused_pairs_sorted_by_count() -> None:
    gold = ["x", "x", "y", "y", "y", "z"]
    pred = ["y", "z", "x", "x", "z", "z"]
    pairs = [(p.gold, p.predicted, p.count) for p in classification_report(gold, pred, ["x", "y", "z"]).confused_pairs]
    assert pairs == [("y", "x", 2), ("x", "y", 1), ("x", "z", 1), ("y", "z", 1)]


def test_prediction_outside_labels_is_wrong() -> None:
    report = classification_report(["a", "b"], ["a", "???"], ["a", "b"])
    assert report.accuracy == 0.5
    assert report.per_class["b"].recall == 0.0
    assert report.per_class["a"].precision == 1.0
    assert report.confusion == [[1, 0], [0, 0]]


def test_classification_report_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2 gold labels but 1 predictions"):
        classification_report(["a", "b"], ["a"], ["a", "b"])
    with pytest.raises(ValueError, match=r"gold labels \['q'\]"):
        classification_report(["q"], ["a"], ["a", "b"])


def test_empty_classification_report() -> None:
    report = classification_report([], [], ["a", "b"])
    assert (report.n, report.accuracy, report.f1) == (0, 0.0, 0.0)


# --- NER -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["B-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),
        # conlleval reading: an I- that continues nothing starts an entity.
        (["I-PER", "I-PER", "I-LOC", "O", "I-ORG"], [("PER", 0, 2), ("LOC", 2, 3), ("ORG", 4, 5)]),
        (["O", "O"], []),
        ([], []),
    ],
)
def test_entities(tags: list[str], spans: list[tuple[str, int, int]]) -> None:
    assert entities(tags) == spans


TYPES = ["PER", "ORG", "LOC", "MISC"]
NER_GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER"]]
NER_PRED = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "O"]]


def test_ner_report_by_hand() -> None:
    report = ner_report(NER_GOLD, NER_PRED, TYPES)
    # Gold: PER(0,2) LOC(3,4) | ORG(0,1) PER(2,3). Predicted: PER(0,2) ORG(3,4) | ORG(0,1). Right: 2.
    precision, recall = 2 / 3, 2 / 4
    assert report.micro_f1 == pytest.approx(2 * precision * recall / (precision + recall))  # 4/7
    assert report.f1 == report.micro_f1
    # seqeval's macro averages the types that occur (LOC 0, ORG 2/3, PER 2/3); MISC does not count.
    assert report.macro_f1 == pytest.approx(4 / 9)
    assert report.per_class["PER"].model_dump() == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert report.per_class["ORG"].model_dump() == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert report.per_class["LOC"].model_dump() == pytest.approx(
        {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert report.per_class["MISC"].support == 0
    assert (report.task, report.n, report.labels, report.accuracy, report.confusion) == ("ner", 2, TYPES, None, None)
    assert report.errors == {"missed": 1, "spurious": 0, "wrong_type": 1, "wrong_boundary": 0}
    assert report.confused_pairs == [ConfusedPair(gold="LOC", predicted="ORG", count=1)]


def test_ner_error_breakdown() -> None:
    gold = [
        ["B-PER", "I-PER", "O", "O"],            # predicted too short: boundary
        ["B-ORG", "I-ORG", "I-ORG", "O"],        # overlapping, other type: boundary
        ["O", "O", "O", "O"],                    # a prediction from nowhere: spurious
        ["B-LOC", "O", "B-PER", "O"],            # right, and missed
    ]
    pred = [
        ["B-PER", "O", "O", "B-LOC"],
        ["O", "B-LOC", "I-LOC", "I-LOC"],
        ["O", "B-MISC", "O", "O"],
        ["B-LOC", "O", "O", "O"],
    ]
    report = ner_report(gold, pred, TYPES)
    assert report.errors == {"missed": 1, "spurious": 2, "wrong_type": 0, "wrong_boundary": 2}
    assert report.confused_pairs == []


def test_ner_report_without_entities_is_zero_and_quiet() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = ner_report([["O", "O"]], [["O", "O"]], TYPES)
        empty = ner_report([], [], TYPES)
    assert (report.f1, report.macro_f1, empty.n) == (0.0, 0.0, 0)
    assert report.errors == {"missed": 0, "spurious": 0, "wrong_type": 0, "wrong_boundary": 0}


def test_ner_report_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="differ"):
        ner_report([["O", "B-PER"]], [["O"]], TYPES)
