"""The students on the real all-MiniLM-L6-v2 weights: learning, determinism, save/load, pipelines."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from transformers import pipeline

from evokd.config import StudentConfig, TaskConfig
from evokd.student.data import Sample, tokenize
from evokd.student.model import (
    ClassifierStudent,
    Prediction,
    TaggerStudent,
    build_student,
    load_student,
    rate_factor,
    resolve_model_path,
)

SENTIMENT = TaskConfig(labels=["negative", "positive"])
NER = TaskConfig(type="ner", labels=["PER", "LOC"])
CFG = StudentConfig(max_length=32, learning_rate=1e-4, batch_size=8, seed=0)
NER_CFG = CFG.model_copy(update={"learning_rate": 3e-4})

WORDS = {"positive": ["good", "great"], "negative": ["bad", "awful"]}


def sentiment(templates: list[str]) -> list[Sample]:
    return [Sample(text=template.format(word), label=label)
            for template in templates for label, words in WORDS.items() for word in words]


TRAIN = sentiment(["the movie was {}", "a {} film", "{} acting", "the plot is {}", "such a {} story",
                   "really {} music", "{} ending overall", "the cast was {}"])
HELD_OUT = sentiment(["what a {} day", "the food was {}"])


def labels_of(predictions: list[Prediction]) -> list[str | None]:
    return [p.label for p in predictions]


@pytest.fixture(scope="module")
def classifier() -> tuple[ClassifierStudent, float]:
    """A classifier trained on TRAIN, with its held-out accuracy before training."""
    student = build_student(SENTIMENT, CFG)
    assert isinstance(student, ClassifierStudent)
    before = student.evaluate(HELD_OUT).accuracy or 0.0
    steps: list[tuple[int, int]] = []
    result = student.fit(TRAIN, epochs=4, seed=7, on_step=lambda done, total: steps.append((done, total)))
    assert result.steps == 16 and steps == [(i, 16) for i in range(1, 17)]
    assert result.loss > 0 and result.seconds > 0
    return student, before


def test_resolve_model_path(tmp_path: Path) -> None:
    default = Path(resolve_model_path("default"))
    assert (default / "config.json").is_file()
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_model_path(str(tmp_path / "missing"))


def test_classifier_learns_a_separable_task(classifier: tuple[ClassifierStudent, float]) -> None:
    student, before = classifier
    assert before <= 0.75
    assert student.evaluate(TRAIN).accuracy == 1.0
    report = student.evaluate(HELD_OUT)
    assert (report.accuracy, report.macro_f1, report.n) == (1.0, 1.0, len(HELD_OUT))
    [prediction] = student.predict([Sample(text="a great song")])
    assert prediction.label == "positive" and prediction.probs is not None
    assert set(prediction.probs) == {"negative", "positive"}
    assert sum(prediction.probs.values()) == pytest.approx(1.0)
    assert prediction.probs["positive"] > 0.5


def test_fit_is_deterministic_and_continues_exactly_after_a_reload(
    classifier: tuple[ClassifierStudent, float], tmp_path: Path
) -> None:
    trained, _ = classifier
    twin = ClassifierStudent(SENTIMENT, CFG)
    rng_state = torch.get_rng_state()
    twin.fit(TRAIN, epochs=4, seed=7)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the caller's randomness is untouched
    assert twin.predict(HELD_OUT) == trained.predict(HELD_OUT)

    # A fresh optimizer per fit: training a reloaded copy equals training on in memory.
    twin.save(tmp_path / "twin")
    reloaded = ClassifierStudent.load(tmp_path / "twin", CFG, SENTIMENT)
    more = [Sample(text="not good at all", label="negative"), Sample(text="not bad at all", label="positive")]
    twin.fit(more, epochs=1, seed=3)
    reloaded.fit(more, epochs=1, seed=3)
    assert twin.predict(HELD_OUT) == reloaded.predict(HELD_OUT)
    assert twin.predict(HELD_OUT) != trained.predict(HELD_OUT)  # it trained on from where it was


def test_save_load_and_pipeline(classifier: tuple[ClassifierStudent, float], tmp_path: Path) -> None:
    student, _ = classifier
    target = tmp_path / "nested" / "student"
    student.save(target)
    student.save(target)  # replacing an existing save works
    assert sorted(p.name for p in target.parent.iterdir()) == ["student"]  # no staging leftovers
    loaded = load_student(target, SENTIMENT, CFG)
    assert isinstance(loaded, ClassifierStudent)
    assert loaded.predict(HELD_OUT) == student.predict(HELD_OUT)

    classify = pipeline("text-classification", model=str(target))
    results = classify(["what a great day", "the food was awful"])
    assert [r["label"] for r in results] == ["positive", "negative"]


def test_load_checks_the_task(classifier: tuple[ClassifierStudent, float], tmp_path: Path) -> None:
    student, _ = classifier
    student.save(tmp_path / "s")
    other = TaskConfig(labels=["negative", "neutral", "positive"])
    with pytest.raises(ValueError, match="saved labels"):
        load_student(tmp_path / "s", other, CFG)
    with pytest.raises(FileNotFoundError):
        load_student(tmp_path / "missing", SENTIMENT, CFG)


def test_fit_rejects_unknown_labels(classifier: tuple[ClassifierStudent, float]) -> None:
    student, _ = classifier
    with pytest.raises(ValueError, match="sample 1: label 'neutral'"):
        student.fit([TRAIN[0], Sample(text="meh", label="neutral")], epochs=1, seed=0)


# --- tagger --------------------------------------------------------------------------------------


def tagged(sentence: str, entities: dict[str, str]) -> Sample:
    """A sample whose single-word entities are given as {word: type}."""
    tokens = tokenize(sentence)
    tags = [f"B-{entities[t]}" if t in entities else "O" for t in tokens]
    return Sample(text=" ".join(tokens), tokens=tokens, tags=tags)


PEOPLE = ["Anna", "Boris", "Carla", "David", "Elena", "Felix", "Greta", "Hugo"]
CITIES = ["Paris", "Berlin", "Madrid", "Rome", "Vienna", "Oslo", "Lisbon", "Prague"]
FRAMES = ["{p} lives in {c} .", "{p} flew to {c} yesterday .", "Yesterday {p} arrived in {c} .",
          "{p} works in {c} now ."]
NER_TRAIN = [tagged(FRAMES[i % len(FRAMES)].format(p=p, c=c), {p: "PER", c: "LOC"})
             for i, (p, c) in enumerate(zip(PEOPLE, CITIES, strict=True))]
NER_HELD_OUT = [tagged("Maria lives in Dublin .", {"Maria": "PER", "Dublin": "LOC"}),
                tagged("Yesterday Tom arrived in Warsaw .", {"Tom": "PER", "Warsaw": "LOC"})]


@pytest.fixture(scope="module")
def tagger() -> TaggerStudent:
    student = build_student(NER, NER_CFG)
    assert isinstance(student, TaggerStudent)
    student.fit(NER_TRAIN, epochs=8, seed=1)
    return student


def test_tagger_learns_a_toy_ner_task(tagger: TaggerStudent) -> None:
    assert tagger.evaluate(NER_TRAIN).f1 == 1.0
    report = tagger.evaluate(NER_HELD_OUT)
    assert report.f1 == 1.0
    assert report.errors == {"missed": 0, "spurious": 0, "wrong_type": 0, "wrong_boundary": 0}


def test_tagger_predicts_every_word(tagger: TaggerStudent) -> None:
    long = Sample(text=" ".join(["word"] * 40 + ["Oslo"]))  # beyond max_length: the tail is "O"
    text_only = Sample(text="Maria lives in Dublin.")  # no tokens: tokenize() supplies them
    long_prediction, text_prediction = tagger.predict([long, text_only])
    assert long_prediction.tags == ["O"] * 41
    assert text_prediction.tags == ["B-PER", "O", "O", "B-LOC", "O"]


def test_tagger_round_trip_and_pipeline(tagger: TaggerStudent, tmp_path: Path) -> None:
    tagger.save(tmp_path / "tagger")
    loaded = load_student(tmp_path / "tagger", NER, NER_CFG)
    assert isinstance(loaded, TaggerStudent)
    assert loaded.predict(NER_HELD_OUT) == tagger.predict(NER_HELD_OUT)

    tag = pipeline("token-classification", model=str(tmp_path / "tagger"), aggregation_strategy="simple")
    found = [(e["entity_group"], e["word"]) for e in tag("Maria lives in Dublin .")]
    assert found == [("PER", "maria"), ("LOC", "dublin")]


def test_tagger_fit_rejects_bad_samples(tagger: TaggerStudent) -> None:
    with pytest.raises(ValueError, match="sample 0: needs tokens"):
        tagger.fit([Sample(text="a b", tokens=["a", "b"], tags=["O"])], epochs=1, seed=0)
    with pytest.raises(ValueError, match=r"tags \['B-ORG'\]"):
        tagger.fit([Sample(text="a", tokens=["a"], tags=["B-ORG"])], epochs=1, seed=0)


def test_linear_rate_schedule_warms_up_and_decays() -> None:
    assert [rate_factor(StudentConfig(), 10)(s) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    factor = rate_factor(StudentConfig(lr_schedule="linear", warmup_ratio=0.2), 10)
    rates = [factor(s) for s in range(10)]
    # Two warmup steps up to the full rate, then down in a straight line towards zero.
    assert rates[:3] == [0.5, 1.0, 1.0] and rates[-1] == 0.125
    assert all(a >= b for a, b in itertools.pairwise(rates[1:]))
