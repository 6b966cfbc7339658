"""Query strategies: which of the pool's texts the teacher labels next. Pure functions of arrays.

- `random`: the baseline every active-learning paper reports.
- `uncertainty`: the texts the student is least sure of: the smallest gap between its two most
  likely labels (margin, "breaking ties"; the strongest of the simple measures for fine-tuned
  transformers in Schröder et al., 2022, arXiv 2107.05687) or the largest entropy. For NER the
  sentence's least certain word (its smallest tag margin): a sentence of confident "O" words and
  one doubtful entity is what needs a label, and a mean over words would drown it.
- `diverse`: uncertain *and* spread out (Zhdanov, 2019, arXiv 1901.05954): the 10·n most uncertain
  candidates are clustered into n groups by k-means on their sentence vectors, weighted by
  uncertainty, and the candidate nearest each centre is taken, so one round does not spend its
  labels on n paraphrases of the same doubt.

A round cannot run the fine-tuned student over 100,000 texts. `select` scores the whole pool with
a cheap proxy instead, a logistic regression on the frozen encoder's cached vectors trained on
what is labelled so far, and lets the student rescore a shortlist (`shortlist` texts: the proxy's
most uncertain, plus a quarter drawn at random so that what the proxy is sure of, and the
fine-tuned student is not, can still be found).

Why not small-text (the active-learning library on PyPI, 1.4.1 checked): its dependencies fit
ours (numpy, scipy, scikit-learn, tqdm, dill, packaging; torch only in extras), but each strategy's
`query(clf, dataset, ...)` asks a small-text classifier for `predict_proba` over the whole
dataset, so precomputed probabilities would need a stand-in classifier and dataset around arrays
we already hold; its random, k-means and lightweight core-set draws use NumPy's global random
state, which a replayed run cannot pin per call; `import small_text` imports its torch and
transformers integrations (12 s measured); it has nothing for sequence tagging. What is left is
a margin, an entropy and a k-means, a few lines each over scikit-learn, which evokd already
installs (seqeval requires it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Strategy = Literal["random", "uncertainty", "diverse"]
Measure = Literal["margin", "entropy"]

_CHUNK = 16384  # pool rows scored at once by the proxy: bounds its memory at any pool size
_PREFILTER = 10  # diverse: clustered candidates per pick (Zhdanov's beta)
_EXPLORE = 0.25  # share of the shortlist drawn at random rather than by the proxy


def margin(probs: np.ndarray) -> np.ndarray:
    """The gap between the two most likely labels of each row (small: unsure)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape[1] < 2:
        return np.ones(len(probs))
    top = np.partition(probs, -2, axis=1)[:, -2:]
    return top[:, 1] - top[:, 0]


def entropy(probs: np.ndarray) -> np.ndarray:
    """The entropy of each row's label distribution, in nats (large: unsure)."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(probs * np.log(probs)).sum(axis=1)


def uncertainty(probs: np.ndarray, measure: Measure = "margin") -> np.ndarray:
    """Higher is less sure, whichever the measure: 1 - margin, or the entropy."""
    return 1.0 - margin(probs) if measure == "margin" else entropy(probs)


def student_uncertainty(predictions: Sequence[Any], measure: Measure = "margin") -> np.ndarray:
    """Uncertainty of the student's predictions (`model.Prediction`): from each text's label
    probabilities, or for NER from its least certain word's margin."""
    if predictions and all(p.probs is not None for p in predictions):
        return uncertainty(np.array([list(p.probs.values()) for p in predictions]), measure)
    return 1.0 - np.array([1.0 if p.margin is None else p.margin for p in predictions])


def pick_random(candidates: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n candidates drawn without replacement, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, size=min(n, len(candidates)), replace=False))


def pick_uncertain(candidates: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """The n candidates with the highest uncertainty; equal scores go in candidate order."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return np.asarray(candidates)[order[:n]]


def pick_diverse(candidates: np.ndarray, scores: np.ndarray, vectors: np.ndarray, n: int, seed: int,
                 prefilter: int = _PREFILTER) -> np.ndarray:
    """Uncertain and spread out: k-means (n clusters, weighted by uncertainty) over the
    `prefilter`·n most uncertain candidates; from each cluster the candidate nearest its centre."""
    from sklearn.cluster import KMeans

    candidates, scores = np.asarray(candidates), np.asarray(scores, dtype=np.float64)
    top = np.argsort(-scores, kind="stable")[:prefilter * n]
    if len(top) <= n:
        return candidates[top]
    points = np.asarray(vectors, dtype=np.float32)[top]
    weights = np.clip(scores[top], 1e-6, None)
    km = KMeans(n_clusters=n, random_state=seed, n_init=3).fit(points, sample_weight=weights)
    distances = km.transform(points)  # (candidates, centres)
    picked: list[int] = []
    # Centres in order of their nearest member's distance; a member is taken once.
    for centre in np.argsort(distances.min(axis=0), kind="stable"):
        for member in np.argsort(distances[:, centre], kind="stable"):
            if member not in picked:
                picked.append(int(member))
                break
    return candidates[top[picked]]


def proxy_uncertainty(train_x: np.ndarray, train_y: np.ndarray, vectors: np.ndarray, rows: np.ndarray,
                      measure: Measure = "margin") -> np.ndarray | None:
    """Uncertainty of each pool row in `rows` under a logistic regression fitted on the labelled
    vectors; None when the labelled set cannot fit one (a single class).

    `train_y` holds label ids (classification), or a 0/1 column per entity type (NER: does the
    sentence hold one); for NER a row is as uncertain as its least certain type. Scored in chunks,
    so the float32 copy of the pool's float16 vectors never exceeds `_CHUNK` rows."""
    from sklearn.linear_model import LogisticRegression

    train_x = np.asarray(train_x, dtype=np.float32)
    train_y = np.asarray(train_y)
    columns = [train_y] if train_y.ndim == 1 else [train_y[:, j] for j in range(train_y.shape[1])]
    heads = [LogisticRegression(max_iter=1000).fit(train_x, y) for y in columns if len(np.unique(y)) > 1]
    if not heads:
        return None
    out = np.empty(len(rows))
    for start in range(0, len(rows), _CHUNK):
        block = np.asarray(vectors[rows[start:start + _CHUNK]], dtype=np.float32)
        scores = [uncertainty(head.predict_proba(block), measure) for head in heads]
        out[start:start + _CHUNK] = np.max(scores, axis=0)
    return out


def shortlist(candidates: np.ndarray, proxy: np.ndarray | None, size: int, seed: int) -> np.ndarray:
    """At most `size` candidates for the student to rescore: the proxy's most uncertain and a
    random quarter (all random when there is no proxy), in pool order."""
    if len(candidates) <= size:
        return np.asarray(candidates)
    rng = np.random.default_rng(seed)
    if proxy is None:
        return np.sort(rng.choice(candidates, size=size, replace=False))
    explore = int(size * _EXPLORE)
    best = np.argsort(-proxy, kind="stable")[:size - explore]
    rest = np.setdiff1d(np.arange(len(candidates)), best, assume_unique=True)
    drawn = rng.choice(rest, size=min(explore, len(rest)), replace=False)
    return np.sort(np.asarray(candidates)[np.concatenate([best, drawn])])


@dataclass
class Selection:
    rows: np.ndarray  # the picked pool rows, in pick order
    scores: np.ndarray | None  # the student's uncertainty of each pick (None for random)
    shortlisted: int  # texts the student rescored
    proxy: bool  # whether a proxy chose the shortlist


def select(strategy: Strategy, *, candidates: np.ndarray, n: int, seed: int, vectors: np.ndarray,
           train_x: np.ndarray, train_y: np.ndarray, rescore: Callable[[np.ndarray], np.ndarray],
           shortlist_size: int = 2000, measure: Measure = "margin") -> Selection:
    """One round's picks from the pool rows in `candidates` (unlabelled, usable).

    `vectors` are the pool's cached sentence vectors (any array indexable by row), `train_x` and
    `train_y` the labelled set's vectors and targets for the proxy, and `rescore(rows)` the fine-
    tuned student's uncertainty of those rows (higher: less sure)."""
    candidates = np.asarray(candidates, dtype=np.int64)
    if strategy == "random" or len(candidates) <= n:
        return Selection(pick_random(candidates, n, seed), None, 0, False)
    # No proxy when the student can rescore every candidate itself.
    proxy = proxy_uncertainty(train_x, train_y, vectors, candidates, measure) \
        if len(candidates) > shortlist_size else None
    listed = shortlist(candidates, proxy, shortlist_size, seed)
    scores = np.asarray(rescore(listed), dtype=np.float64)
    if strategy == "uncertainty":
        picked = pick_uncertain(listed, scores, n)
    else:
        picked = pick_diverse(listed, scores, vectors[listed], n, seed)
    position = {int(row): i for i, row in enumerate(listed)}
    return Selection(picked, scores[[position[int(r)] for r in picked]], len(listed), proxy is not None)
