"""The pool's query strategies (evokd.student.query) on fixtures whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from evokd.student.query import (
    entropy,
    margin,
    pick_diverse,
    pick_random,
    pick_uncertain,
    proxy_uncertainty,
    select,
    shortlist,
    uncertainty,
)

PROBS = np.array([[0.9, 0.1], [0.55, 0.45], [0.5, 0.5], [0.99, 0.01], [0.6, 0.4]])


def test_margin_and_entropy_rank_the_same_two_label_rows() -> None:
    assert margin(PROBS) == pytest.approx([0.8, 0.1, 0.0, 0.98, 0.2])
    assert entropy(PROBS)[2] == pytest.approx(np.log(2))
    by_margin = np.argsort(-uncertainty(PROBS, "margin"))
    by_entropy = np.argsort(-uncertainty(PROBS, "entropy"))
    assert by_margin.tolist() == by_entropy.tolist() == [2, 1, 4, 0, 3]


def test_margin_and_entropy_differ_on_three_labels() -> None:
    # Row 0: two labels tied, the third absent (margin 0); row 1: spread over all three.
    probs = np.array([[0.5, 0.5, 0.0], [0.4, 0.3, 0.3]])
    assert np.argmax(uncertainty(probs, "margin")) == 0
    assert np.argmax(uncertainty(probs, "entropy")) == 1


def test_uncertainty_picks_the_least_sure_rows() -> None:
    candidates = np.array([10, 11, 12, 13, 14])
    assert pick_uncertain(candidates, uncertainty(PROBS), 2).tolist() == [12, 11]
    # Ties keep the candidates' order.
    assert pick_uncertain(candidates, np.zeros(5), 3).tolist() == [10, 11, 12]


def test_random_is_seeded_and_draws_without_replacement() -> None:
    candidates = np.arange(100, 1100)
    first = pick_random(candidates, 20, seed=7)
    assert first.tolist() == pick_random(candidates, 20, seed=7).tolist()
    assert first.tolist() != pick_random(candidates, 20, seed=8).tolist()
    assert len(set(first.tolist())) == 20 and set(first.tolist()) <= set(candidates.tolist())
    assert pick_random(candidates[:3], 20, seed=7).tolist() == [100, 101, 102]


def clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three tight groups of 20 points far apart; group 0 is a little less sure than the rest, so
    by uncertainty alone every pick would come from it."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 8) * 10
    vectors = np.concatenate([c + rng.normal(0, 0.1, (20, 8)) for c in centres])
    group = np.repeat([0, 1, 2], 20)
    scores = np.where(group == 0, 0.95, 0.9) + rng.uniform(0, 0.01, 60)
    return vectors, scores, group


def test_diverse_spreads_the_picks_over_clusters() -> None:
    vectors, scores, group = clusters()
    candidates = np.arange(60)
    by_uncertainty = pick_uncertain(candidates, scores, 3)
    assert set(group[by_uncertainty].tolist()) == {0}
    picked = pick_diverse(candidates, scores, vectors, 3, seed=0, prefilter=20)
    assert sorted(group[picked].tolist()) == [0, 1, 2]
    assert picked.tolist() == pick_diverse(candidates, scores, vectors, 3, seed=0, prefilter=20).tolist()


def test_diverse_keeps_to_the_most_uncertain_candidates() -> None:
    vectors, scores, group = clusters()
    # With a prefilter of 20·1 only group 0's points (the 20 least sure) are clustered.
    picked = pick_diverse(np.arange(60), scores, vectors, 1, seed=0, prefilter=20)
    assert group[picked].tolist() == [0]


def test_proxy_finds_the_point_between_two_labelled_groups() -> None:
    train_x = np.array([[-1.0, 0.0], [-1.2, 0.1], [1.0, 0.0], [1.1, -0.1]])
    train_y = np.array([0, 0, 1, 1])
    pool = np.array([[-2.0, 0.0], [0.0, 0.0], [2.0, 0.0], [0.05, 1.0]], dtype=np.float16)
    scores = proxy_uncertainty(train_x, train_y, pool, np.array([0, 1, 2]))
    assert scores is not None and int(np.argmax(scores)) == 1
    assert proxy_uncertainty(train_x, np.zeros(4, dtype=int), pool, np.array([0, 1])) is None


def test_ner_proxy_takes_the_least_certain_entity_type() -> None:
    train_x = np.array([[-1.0, 0.0], [-1.0, 0.1], [1.0, 0.0], [1.0, 0.1]])
    # Type 0 is present on the right only; type 1 in every sentence (nothing to learn: skipped).
    train_y = np.array([[0, 1], [0, 1], [1, 1], [1, 1]])
    pool = np.array([[-3.0, 0.0], [0.0, 0.0], [3.0, 0.0]])
    scores = proxy_uncertainty(train_x, train_y, pool, np.arange(3))
    assert scores is not None and int(np.argmax(scores)) == 1


def test_shortlist_is_the_proxy_top_plus_a_random_quarter() -> None:
    candidates = np.arange(1000, 2000)
    proxy = np.linspace(0, 1, 1000)  # the last candidates are the least sure
    listed = shortlist(candidates, proxy, 100, seed=3)
    assert len(listed) == 100 and np.all(np.diff(listed) > 0)
    assert set(range(1925, 2000)) <= set(listed.tolist())  # the 75 least sure
    assert listed.tolist() == shortlist(candidates, proxy, 100, seed=3).tolist()
    assert len(shortlist(candidates, None, 100, seed=3)) == 100
    assert shortlist(candidates[:50], proxy[:50], 100, seed=3).tolist() == candidates[:50].tolist()


def test_select_rescores_only_the_shortlist_and_picks_what_the_student_doubts() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5000, 16)).astype(np.float16)
    train_x = rng.normal(size=(10, 16))
    train_y = np.array([0, 1] * 5)
    asked: list[np.ndarray] = []

    def rescore(rows: np.ndarray) -> np.ndarray:
        asked.append(rows)
        return rows / 5000  # the student doubts the later rows most

    candidates = np.arange(0, 5000, 2)
    picked = select("uncertainty", candidates=candidates, n=4, seed=1, vectors=vectors, train_x=train_x,
                    train_y=train_y, rescore=rescore, shortlist_size=500)
    assert len(asked) == 1 and len(asked[0]) == 500 and set(asked[0].tolist()) <= set(candidates.tolist())
    assert picked.shortlisted == 500 and picked.proxy
    assert picked.rows.tolist() == sorted(asked[0].tolist(), reverse=True)[:4]
    assert picked.scores is not None and picked.scores.tolist() == (picked.rows / 5000).tolist()

    asked.clear()
    few = select("uncertainty", candidates=candidates[:300], n=4, seed=1, vectors=vectors, train_x=train_x,
                 train_y=train_y, rescore=rescore, shortlist_size=500)
    assert not few.proxy and asked[0].tolist() == candidates[:300].tolist()  # the student rescores them all

    asked.clear()
    drawn = select("random", candidates=candidates, n=4, seed=1, vectors=vectors, train_x=train_x,
                   train_y=train_y, rescore=rescore)
    assert not asked and drawn.scores is None and len(drawn.rows) == 4


def test_the_student_reports_its_margin(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    import torch

    from evokd.config import StudentConfig, TaskConfig
    from evokd.core.records import Sample
    from evokd.student.model import build_student

    cfg = StudentConfig(model=str(tiny_model_dir), max_length=32)
    classifier = build_student(TaskConfig(labels=["a", "b", "c"]), cfg)
    for prediction in classifier.predict([Sample(text="one text"), Sample(text="and another one")]):
        assert prediction.probs is not None and prediction.margin is not None
        assert prediction.margin == pytest.approx(float(margin(np.array([list(prediction.probs.values())]))[0]))

    tagger = build_student(TaskConfig(type="ner", labels=["PER", "LOC"]), cfg)
    sample = Sample(text="Ann went to Rome", tokens=["Ann", "went", "to", "Rome"])
    [prediction] = tagger.predict([sample])
    encoding = tagger.tokenizer([sample.tokens], is_split_into_words=True, return_tensors="pt")
    with torch.inference_mode():
        probs = tagger.model(**encoding).logits.softmax(-1)[0].numpy()
    firsts = [i for i, w in enumerate(encoding.word_ids(0)) if w is not None and w != encoding.word_ids(0)[i - 1]]
    assert prediction.margin == pytest.approx(float(margin(probs[firsts]).min()), abs=1e-6)
