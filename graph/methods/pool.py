"""Active distillation from the user's own unlabelled texts, `loop.method = "pool"`.

    pick -> verifier -> trainer

Each round the student scores the pool (`data.unlabeled`, or `data.hf.unlabeled_split`), a query
strategy (`loop.pool_query`: random, uncertainty, diverse; student/query.py) picks
`loop.pool_per_round` texts (fewer when the token budget would otherwise pay for fewer than
`loop.rounds_to_fit` rounds, 8 unless set), the Verifier labels them blind (for NER it annotates their entities,
kept by the span rules), and the trainer continues training on them, the seed set and a review
sample, as in the other loops. The pool is indexed and encoded once per machine (student/pool.py);
a round scores all of it with a proxy on the cached vectors and lets the student rescore a
shortlist, so a round costs about the same at 1,000 texts as at 100,000. Texts in dev or test, in
the seed set, repeats and texts without words are dropped before the first round; a text is asked
once; the run stops (`pool_exhausted`) when none is left.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from evokd.agents.verifier import Labelled, label_texts
from evokd.agents.verifier_probs import label_by_probability, or_json, reads_probabilities
from evokd.config import LoopConfig, RunConfig
from evokd.core.bio import entities
from evokd.core.records import Sample, SampleRecord
from evokd.core.samples import as_rows
from evokd.graph.context import Context, StudentHolder, TaskData
from evokd.graph.estimate import Asks, asks_for
from evokd.graph.method import BenchRow, Method, Step, Stop, Training
from evokd.graph.state import RunState
from evokd.graph.steps import trainer
from evokd.student.data import DataError
from evokd.student.hub import hub_pool_source
from evokd.student.pool import PoolIndex, PoolSource, Usable, file_source, model_key, open_pool
from evokd.student.query import select, student_uncertainty

log = logging.getLogger("evokd.pool")


def round_steps(loop: LoopConfig) -> list[Step]:
    return [Step("pick", pick, "picking the pool's texts the student is least sure of"),
            Step("verifier", label, "Verifier: labelling the picked texts"),
            Step("trainer", trainer, "Trainer: training and evaluating the student")]


# --- the pool, loaded in the pre-flight ----------------------------------------------------------


def pool_source(cfg: RunConfig) -> PoolSource:
    """The configured pool: the file `data.unlabeled`, else the split `data.hf.unlabeled_split`."""
    if cfg.data.unlabeled is not None:
        return file_source(cfg.data.unlabeled, cfg.task)
    assert cfg.data.hf is not None and cfg.data.hf.unlabeled_split  # `check` made sure
    return hub_pool_source(cfg.data.hf, cfg.task)


class Pool:
    """The run's pool: opened (scanned, on first use on this machine) before the run folder exists,
    encoded by the frozen encoder when the first round needs it, kept for the rest of the run."""

    def __init__(self, cfg: RunConfig, index: PoolIndex, usable: Usable) -> None:
        self.cfg = cfg
        self.index = index
        self.usable = usable
        self._vectors: np.ndarray | None = None
        self._seen: dict[str, np.ndarray] = {}  # vectors of labelled texts not in the pool (the seed set)
        self._per_round: int | None = None

    def per_round(self, ctx: Context) -> int:
        """The texts a round picks (`picks_a_round`, as `--dry-run` sizes them), worked out once."""
        if self._per_round is None:
            self._per_round = picks_a_round(asks_for(ctx.cfg, ctx.data, ctx.prompts, method_data=self))
        return self._per_round

    @classmethod
    def open(cls, cfg: RunConfig, data: TaskData) -> Pool:
        index = open_pool(pool_source(cfg), cfg.task)
        usable = index.usable([s.text for s in [*data.dev, *data.test]], known=[s.text for s in data.seed])
        log.info("data.unlabeled %s: %s", index.source.name, usable.describe())
        if not len(usable.rows):
            raise DataError(f"{index.source.name}: no text left to pick ({usable.describe()})")
        return cls(cfg, index, usable)

    def preview(self, seed: int, n: int = 32) -> list[Sample]:
        """A seeded handful of the pool's texts as the Verifier will see them (for `--dry-run`)."""
        rows = np.random.default_rng(seed).choice(self.usable.rows, size=min(n, len(self.usable.rows)),
                                                  replace=False)
        return self.texts(np.sort(rows))

    def describe(self) -> str:
        """One line for `--dry-run`: the pool and what is left of it to pick from."""
        return f"pool {self.index.source.name}: {self.usable.describe()}"

    def vectors(self, ctx: Context) -> np.ndarray:
        """Every pool row's sentence vector; encoded on first use (progress to the live view)."""
        if self._vectors is None:
            from evokd.student.loading import resolve_model_path  # torch: only once a run needs the student

            encoder = ctx.holder.encoder()
            key = model_key(resolve_model_path(self.cfg.student.model), self.cfg.student.max_length)
            self._vectors = self.index.embeddings(
                key, lambda texts: encoder.embed(texts).numpy(),
                progress=lambda done, total: ctx.callbacks.on_progress("encoding the pool", done, total))
        return self._vectors

    def texts(self, rows: Any) -> list[Sample]:
        """The rows as the Verifier sees and the student trains on them (`shown`)."""
        return [shown(s, self.cfg.loop.max_text_chars) for s in self.index.samples(rows)]

    def labelled_vectors(self, records: list[dict[str, Any]], vectors: np.ndarray,
                         students: StudentHolder) -> np.ndarray:
        """Each labelled record's vector, in order: its cached one when it is a pool row, else (the
        seed set) the frozen encoder's, computed once per text."""
        out = np.empty((len(records), vectors.shape[1]), dtype=np.float32)
        rows = [(i, r["row"]) for i, r in enumerate(records) if r.get("row") is not None]
        if rows:
            out[[i for i, _ in rows]] = vectors[[row for _, row in rows]]
        others = [i for i, r in enumerate(records) if r.get("row") is None]
        todo = [t for t in dict.fromkeys(records[i]["text"] for i in others) if t not in self._seen]
        if todo:
            self._seen.update(zip(todo, students.encoder().embed(todo).numpy(), strict=True))
        for i in others:
            out[i] = self._seen[records[i]["text"]]
        return out


def shown(sample: Sample, limit: int) -> Sample:
    """The text as the Verifier sees and the student trains on it: cut at a word boundary to at
    most `limit` characters (the student reads only its first student.max_length tokens anyway, and
    a label must be of the text trained on)."""
    if len(sample.text) <= limit:
        return sample
    if sample.tokens is None:
        cut = sample.text[:limit]
        return Sample(text=cut.rsplit(" ", 1)[0] if " " in cut else cut)
    tokens: list[str] = []
    for token in sample.tokens:
        if len(" ".join([*tokens, token])) > limit:
            break
        tokens.append(token)
    tokens = tokens or sample.tokens[:1]
    return Sample(text=" ".join(tokens), tokens=tokens)


def targets(records: list[dict[str, Any]], cfg: RunConfig) -> np.ndarray:
    """What the proxy learns from the labelled records: label ids, or for NER a 0/1 column per
    entity type (whether the sentence holds one)."""
    labels = cfg.task.labels
    if cfg.task.type == "ner":
        return np.array([[int(any(t == kind for t, _, _ in entities(r.get("tags") or []))) for kind in labels]
                         for r in records], dtype=int)
    return np.array([labels.index(r["label"]) for r in records], dtype=int)


# --- the round -----------------------------------------------------------------------------------


def pick(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The query strategy's picks from the texts not asked yet: `picks_a_round` of them."""
    ctx = runtime.context
    loop, pool = ctx.cfg.loop, ctx.method_data
    assert isinstance(pool, Pool)  # the pre-flight opened it (`prepare` below)
    vectors = pool.vectors(ctx)
    asked = state.get("asked", [])
    candidates = pool.usable.rows[~np.isin(pool.usable.rows, np.array(asked, dtype=np.int64))]
    labelled = [s for s in state.get("samples", []) if s["accepted"]]
    student = ctx.holder.at(state["student_dir"])

    def rescore(rows: np.ndarray) -> np.ndarray:
        return student_uncertainty(student.predict(pool.texts(rows)), loop.pool_measure)

    chosen = select(loop.pool_query, candidates=candidates, n=pool.per_round(ctx),
                    seed=ctx.cfg.sampling.seed + state["round"], vectors=vectors,
                    train_x=pool.labelled_vectors(labelled, vectors, ctx.holder),
                    train_y=targets(labelled, ctx.cfg), rescore=rescore, shortlist_size=loop.pool_shortlist,
                    measure=loop.pool_measure)
    rows = [int(r) for r in chosen.rows]
    picked = [{"text": s.text, "row": r, "origin": pool.index.where(r)} for r, s in zip(rows, pool.texts(rows),
                                                                                       strict=True)]
    seen: dict[str, Any] = {"strategy": loop.pool_query, "shortlisted": chosen.shortlisted, "proxy": chosen.proxy}
    if chosen.scores is not None and len(chosen.scores):
        # The student's uncertainty of the picks, least and most.
        seen["uncertainty"] = [float(np.round(chosen.scores.min(), 4)), float(np.round(chosen.scores.max(), 4))]
    if state["round"] == 1:
        seen["pool"] = pool.usable.describe()
    return {"candidates": picked, "asked": [*asked, *rows], "pool_left": len(candidates) - len(rows),
            "pick": seen}


def by_probability(cfg: RunConfig) -> bool:
    """Whether the pool's Verifier reads label probabilities: its own way unless loop.verifier says json."""
    return reads_probabilities(cfg.task, cfg.loop.verifier, default="probabilities")


def label_pool(ctx: Context, texts: list[str], round: int) -> Labelled:
    """The one place the pool's texts get their labels: the Verifier, blind, in batches. For
    classification it reads each text's label distribution unless `loop.verifier = "json"`, and a
    text is kept with its most likely label when that label reaches `loop.verifier_threshold`."""
    loop, task = ctx.cfg.loop, ctx.cfg.task
    if by_probability(ctx.cfg):
        return or_json(lambda: label_by_probability(ctx.teacher, ctx.prompts, task, texts, round=round,
                                                    batch_size=loop.verifier_batch_size,
                                                    threshold=loop.verifier_threshold),
                       lambda: label_pool_json(ctx, texts, round))
    return label_pool_json(ctx, texts, round)


def label_pool_json(ctx: Context, texts: list[str], round: int) -> Labelled:
    return label_texts(ctx.teacher, ctx.prompts, ctx.cfg.task, texts, round=round,
                       batch_size=ctx.cfg.loop.verifier_batch_size, concurrency=ctx.cfg.llm.concurrency,
                       temperature=ctx.cfg.llm.verifier_temperature)


def label(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The Verifier labels the picks; a text it cannot label (or finds fits no label) is rejected."""
    ctx = runtime.context
    picked = state.get("candidates", [])
    labelled = label_pool(ctx, [p["text"] for p in picked], state["round"])
    records = []
    for item, verdict in zip(picked, labelled.verdicts, strict=True):
        record = SampleRecord(round=state["round"], text=item["text"], intent="pool", accepted=False,
                              method=ctx.method.name, row=item["row"], origin=item["origin"])
        verdict.apply_to(record)
        if (verdict.label or "").strip().casefold() == "none":  # the prompt's way out: fits no label
            record.reason = "the Verifier found it fits none of the labels (mixed or unclear)"
        records.append(record)
    return {"batch": as_rows(records), "calls": labelled.calls}


def exhausted(state: RunState) -> Stop | None:
    if state.get("pool_left") == 0:
        return Stop("pool_exhausted", "every text of the pool has been sent to the Verifier")
    return None


def estimate(asks: Asks) -> None:
    """Only the Verifier: `picks_a_round` texts a round, in batches; the texts are a seeded handful
    of the pool's own, cut as the Verifier sees them (the seed set's when no pool is open)."""
    n, loop = picks_a_round(asks), asks.loop
    if n < loop.pool_per_round:
        asks.notes.append(f"picks: {n} a round of loop.pool_per_round = {loop.pool_per_round}, so that "
                          f"{loop.max_tokens:,} tokens pay for {pool_rounds(asks.cfg)} rounds (loop.rounds_to_fit)")
    verifier_calls(asks, n)


def verifier_calls(asks: Asks, n: int) -> None:
    """The Verifier's calls for `n` picked texts."""
    loop = asks.loop
    batch = loop.verifier_batch_size
    pool = asks.method_data
    preview = pool.preview(asks.cfg.sampling.seed) if isinstance(pool, Pool) else asks.seed
    texts = [shown(preview[i % len(preview)], loop.max_text_chars).text for i in range(min(batch, n))]
    probabilities = by_probability(asks.cfg)
    verify = asks.messages("verifier_probs" if probabilities else "verifier", texts=texts)
    asks.call("verifier", math.ceil(n / batch), verify, min(batch, n) * (4 if probabilities else asks.per_label) + 4)


# loop.rounds_to_fit unset: the rounds a pool run's token budget should pay for at least. Active
# learning learns between rounds; 6,000 tokens bought under two rounds of 16 IMDB reviews (about
# 200 tokens each to label, as estimated), picked by what the 2-shot seed student knew.
POOL_ROUNDS = 8


def pool_rounds(cfg: RunConfig) -> int:
    """The rounds a budget should pay for: loop.rounds_to_fit (8 unless set), at most loop.max_rounds."""
    rounds = cfg.loop.rounds_to_fit if cfg.loop.rounds_to_fit is not None else POOL_ROUNDS
    return min(rounds, cfg.loop.max_rounds)


def picks_a_round(asks: Asks) -> int:
    """loop.pool_per_round, or with a token budget the most (at least 1) that let it pay for
    `pool_rounds` rounds at the estimate's cost of labelling them."""
    loop = asks.loop
    rounds = pool_rounds(asks.cfg)
    if loop.max_tokens is None or rounds <= 0:
        return loop.pool_per_round
    for n in range(loop.pool_per_round, 1, -1):
        one = replace(asks, calls=[])
        verifier_calls(one, n)
        if rounds * one.round_tokens() <= loop.max_tokens:
            return n
    return 1


def check(cfg: RunConfig) -> tuple[str, str] | None:
    if cfg.data.unlabeled is None and not (cfg.data.hf is not None and cfg.data.hf.unlabeled_split):
        return "loop.method", ('loop.method = "pool" needs data.unlabeled (a file of unlabelled texts) '
                               "or data.hf.unlabeled_split")
    return None


METHOD = Method(
    name="pool",
    round=round_steps,
    # verifier.user too with probabilities: the JSON Verifier is the fallback (and NER's).
    prompts=lambda cfg: ["verifier.user", *(["verifier_probs.user"] if by_probability(cfg) else [])],
    estimate=estimate,
    training=lambda loop: Training(review_all=loop.replay_all),
    stop=exhausted,
    owns=("pool_query", "pool_measure", "pool_per_round", "pool_shortlist"),
    check=check,
    # The full profile's (or --methods'): a pool's first encoding takes minutes (docs/method.md).
    bench=(BenchRow("pool-random", ('loop.pool_query="random"',), ablation=True),
           BenchRow("pool", ('loop.pool_query="uncertainty"',), ablation=True),
           BenchRow("pool+diverse", ('loop.pool_query="diverse"',), ablation=True)),
    prepare=Pool.open,
)
