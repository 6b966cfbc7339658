"""The students: small pretrained encoders (all-MiniLM-L6-v2 by default) fine-tuned with transformers.

`ClassifierStudent` labels whole texts, `TaggerStudent` tags words with BIO entity tags. Both keep
their weights across `fit` calls, so the loop can train round after round, and save in the plain
Hugging Face layout, so a saved student also loads with `transformers.pipeline`.

The training loss is cross-entropy, as the models' own: each sample counts `Sample.weight` times,
a classification sample may carry a label distribution (`Sample.soft_label`) instead of one label,
and `fit(label_smoothing=...)` spreads that share of each target over every class.
"""

from __future__ import annotations

import math
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    BatchEncoding,
)

from evokd.config import StudentConfig, TaskConfig
from evokd.core.bio import normalise_bio
from evokd.core.files import normal_mode
from evokd.core.records import Prediction, Sample
from evokd.core.text import tokenize

from .loading import quiet_transformers, replace_dir, resolve_model_path, seeded
from .metrics import (
    DevPredictions,
    EvalReport,
    classification_predictions,
    classification_report,
    ner_predictions,
    ner_report,
)
from .protocol import FitResult, Student

_PREDICT_BATCH = 32
_MAX_GRAD_NORM = 1.0


def rate_factor(cfg: StudentConfig, total: int) -> Callable[[int], float]:
    """The learning rate's factor at each step of one `fit`: constant, or (`lr_schedule = "linear"`)
    a warmup over `warmup_ratio` of the steps and a linear decay to zero, the usual fine-tuning
    schedule. Each round's fit starts a fresh AdamW, whose first steps are full-size whatever the
    gradient: the warmup keeps them from throwing the student off what it learnt before."""
    if cfg.lr_schedule == "constant" or total <= 0:
        return lambda step: 1.0
    warmup = max(1, round(total * cfg.warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def training_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
                  smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of `logits` [rows, classes] against class ids [rows] (-100: a row that does not
    count) or label distributions [rows, classes]; row i weighs `weights[i]` (None: all alike) in
    a weighted mean over the rows that count, as torch's class weights do. Weights are relative:
    they say which samples pull harder, not how large a step is, so a recipe's learning rate holds
    whatever their scale; a weight of 0 leaves a sample out."""
    if weights is None and smoothing == 0 and targets.dim() == 1:
        # The models' own loss (transformers: mean cross-entropy, -100 ignored), so plain training,
        # and every recorded run, stays unchanged to the bit.
        return F.cross_entropy(logits, targets)
    per_row = F.cross_entropy(logits, targets, reduction="none", label_smoothing=smoothing)
    counts = (targets != -100).float() if targets.dim() == 1 else torch.ones(len(targets), device=logits.device)
    if weights is not None:
        counts = counts * weights
    # No row that counts (all ignored, or all weight 0): a zero loss that still reaches the graph.
    return (per_row * counts).sum() / counts.sum().clamp(min=1e-12) if counts.sum() > 0 else per_row.sum() * 0


class _EncoderStudent(ABC):
    """Loading, the training loop, batched prediction and saving, shared by both students."""

    auto_class: ClassVar[Any]

    def __init__(self, task: TaskConfig, cfg: StudentConfig, model_path: str | None = None) -> None:
        self.task = task
        self.cfg = cfg
        self.label_names = self.labels_for(task)
        self.label_ids = {name: i for i, name in enumerate(self.label_names)}
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        path = model_path or resolve_model_path(cfg.model)
        local = Path(path).is_dir()
        # The seed fixes the new head's initial weights, so two fresh students start identical.
        with quiet_transformers(), seeded(cfg.seed, self.device):
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
            self.model = self.auto_class.from_pretrained(
                path,
                num_labels=len(self.label_names),
                id2label=dict(enumerate(self.label_names)),
                label2id=self.label_ids,
                # A checkpoint with another task's head gets a fresh one; `load` checks labels first.
                ignore_mismatched_sizes=True,
                local_files_only=local,
            )
        # fp32 whatever the checkpoint's dtype: plain AdamW in half precision does not train well.
        self.model.float().to(self.device).eval()
        # Some checkpoints (e.g. small test models) have fewer positions than their tokenizer allows.
        positions = getattr(self.model.config, "max_position_embeddings", None) or cfg.max_length
        self.max_length = min(cfg.max_length, self.tokenizer.model_max_length, positions)

    @staticmethod
    @abstractmethod
    def labels_for(task: TaskConfig) -> list[str]:
        """The head's label names, in id order."""

    @classmethod
    def load(cls, directory: Path, cfg: StudentConfig, task: TaskConfig) -> Self:
        """A student saved with `save`; its labels must be the ones this task would give it."""
        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"{directory}: no saved student here (config.json is missing)")
        saved = AutoConfig.from_pretrained(directory, local_files_only=True)
        names, expected = [saved.id2label[i] for i in range(len(saved.id2label))], cls.labels_for(task)
        if names != expected:
            raise ValueError(f"{directory}: saved labels {names} differ from the task's {expected}")
        return cls(task, cfg, model_path=str(directory))

    def fit(
        self,
        samples: list[Sample],
        *,
        epochs: int,
        seed: int,
        on_step: Callable[[int, int], None] | None = None,
        on_epoch: Callable[[int], bool] | None = None,
        label_smoothing: float = 0.0,
    ) -> FitResult:
        """Train from the current weights with a fresh AdamW for at most `epochs` epochs;
        `on_step(step, total)` after each step, `on_epoch(epoch)` after each epoch (1-based; the
        model is in eval mode then, and a True return ends the fit there). The rate schedule spans
        all `epochs`, whether or not the fit is stopped early."""
        self._check_trainable(samples)
        started = time.perf_counter()
        total = math.ceil(len(samples) / self.cfg.batch_size) * max(epochs, 0)
        # The fused kernel makes the optimizer step ~10x faster on CPU, where it dominates a small batch.
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.learning_rate, fused=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate_factor(self.cfg, total))
        shuffler = torch.Generator().manual_seed(seed)
        losses: list[float] = []
        step = epoch = 0
        self.model.train()
        try:
            with seeded(seed, self.device):
                while epoch < epochs:
                    losses = []
                    for batch in self._shuffled_batches(samples, shuffler):
                        losses.append(self._train_step(batch, optimizer, label_smoothing))
                        scheduler.step()
                        step += 1
                        if on_step is not None:
                            on_step(step, total)
                    epoch += 1
                    if on_epoch is not None:
                        # Evaluating must not consume the training's random numbers (dropout, order).
                        self.model.eval()
                        with torch.random.fork_rng(devices=[]):
                            stop = on_epoch(epoch)
                        self.model.train()
                        if stop:
                            break
        finally:
            self.model.eval()
        loss = sum(losses) / len(losses) if losses else 0.0
        return FitResult(loss=loss, steps=step, seconds=time.perf_counter() - started, epochs=epoch)

    def _shuffled_batches(self, samples: list[Sample], shuffler: torch.Generator) -> Iterator[list[Sample]]:
        order = torch.randperm(len(samples), generator=shuffler).tolist()
        for start in range(0, len(order), self.cfg.batch_size):
            yield [samples[i] for i in order[start : start + self.cfg.batch_size]]

    def _train_step(self, batch: list[Sample], optimizer: torch.optim.Optimizer, smoothing: float) -> float:
        encoding = self._encode(batch, train=True)
        labels = encoding.pop("labels")
        logits = self.model(**encoding).logits
        loss = self._loss(batch, logits, labels, smoothing)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), _MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.item())

    def _batched_logits(self, samples: list[Sample]) -> Iterator[tuple[list[int], BatchEncoding, torch.Tensor]]:
        """(indices, encoding, logits) per batch; batches group samples of similar length to pad little."""
        order = sorted(range(len(samples)), key=lambda i: len(samples[i].text))
        self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), _PREDICT_BATCH):
                indices = order[start : start + _PREDICT_BATCH]
                encoding = self._encode([samples[i] for i in indices], train=False)
                yield indices, encoding, self.model(**encoding).logits.float().cpu()

    def predict(self, samples: list[Sample]) -> list[Prediction]:
        """Predictions in input order."""
        predictions: dict[int, Prediction] = {}
        for indices, encoding, logits in self._batched_logits(samples):
            batch = [samples[i] for i in indices]
            predictions.update(zip(indices, self._decode(batch, encoding, logits), strict=True))
        return [predictions[i] for i in range(len(samples))]

    def calibration_logits(self, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        """What a predicted probability is read from, with the gold answer: logits [n, classes] and
        gold class ids [n], one row per text (classification) or per word the student reads (NER:
        its first sub-token, as predictions are made)."""
        rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for indices, encoding, logits in self._batched_logits(samples):
            for row, i in enumerate(indices):
                rows[i] = self._gold_rows(samples[i], encoding, row, logits[row])
        if not rows:
            return torch.zeros(0, len(self.label_names)), torch.zeros(0, dtype=torch.long)
        ordered = [rows[i] for i in range(len(samples))]
        return torch.cat([logits for logits, _ in ordered]), torch.cat([gold for _, gold in ordered])

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A copy of the weights (in memory: 90 MB for MiniLM), for `restore`."""
        return {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}

    def restore(self, weights: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(weights)

    def _head(self) -> torch.nn.Linear:
        """The layer that writes the logits: the last linear layer with one output per label."""
        layers = [m for m in self.model.modules()
                  if isinstance(m, torch.nn.Linear) and m.out_features == len(self.label_names)]
        if not layers:
            raise ValueError(f"{type(self.model).__name__}: no linear layer with one output per label")
        return layers[-1]

    def apply_temperature(self, temperature: float) -> None:
        """Divide every logit by `temperature` from now on (temperature scaling), by dividing the
        output layer's weights and bias by it: exactly logits / T, so `predict`, a saved student
        (transformers.pipeline included) and its ONNX export all give the calibrated probabilities
        with no code of their own. config.json records the temperature folded in so far."""
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        head = self._head()
        with torch.no_grad():
            head.weight.div_(temperature)
            if head.bias is not None:
                head.bias.div_(temperature)
        self.model.config.evokd_temperature = self.temperature * temperature

    @property
    def temperature(self) -> float:
        """The temperature folded into the head (1.0: none)."""
        return float(getattr(self.model.config, "evokd_temperature", 1.0))

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Unit-length sentence vectors (mean of the encoder's last hidden states): how the student
        itself sees a text, used to spot near-duplicates without spending teacher tokens."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: dict[int, torch.Tensor] = {}
        self.model.eval()
        encoder = self.model.base_model
        with torch.inference_mode():
            for start in range(0, len(order), _PREDICT_BATCH):
                indices = order[start : start + _PREDICT_BATCH]
                encoding = self.tokenizer([texts[i] for i in indices], padding=True, truncation=True,
                                          max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = encoder(**encoding).last_hidden_state
                mask = encoding["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()
                vectors.update(zip(indices, pooled, strict=True))
        if not texts:
            return torch.zeros(0, self.model.config.hidden_size)
        return torch.stack([vectors[i] for i in range(len(texts))])

    def save(self, directory: Path) -> None:
        """Write model and tokenizer beside `directory`, then swap it in, so no reader sees half a save."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = directory.with_name(f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with quiet_transformers():
                self.model.save_pretrained(staging)
                self.tokenizer.save_pretrained(staging)
            normal_mode(staging)
            replace_dir(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def evaluate(self, samples: list[Sample]) -> EvalReport:
        """Predict and score against the samples' gold labels or tags."""
        return self.score(samples, self.predict(samples))[0]

    @abstractmethod
    def score(self, samples: list[Sample], predictions: list[Prediction]) -> tuple[EvalReport, DevPredictions]:
        """Score predictions of `samples`: the report, and the per-example record it came from."""

    @abstractmethod
    def _check_trainable(self, samples: list[Sample]) -> None:
        """Raise ValueError naming the first sample the head cannot be trained on."""

    @abstractmethod
    def _loss(self, batch: list[Sample], logits: torch.Tensor, labels: torch.Tensor,
              smoothing: float) -> torch.Tensor:
        """The batch's training loss from the model's logits and `_encode`'s labels."""

    @abstractmethod
    def _gold_rows(self, sample: Sample, encoding: BatchEncoding, row: int,
                   logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The calibration rows of one encoded sample: (logits [k, classes], gold ids [k])."""

    @abstractmethod
    def _encode(self, batch: list[Sample], *, train: bool) -> BatchEncoding:
        """Model inputs for a batch (with `labels` when training), on the student's device."""

    @abstractmethod
    def _decode(self, batch: list[Sample], encoding: BatchEncoding, logits: torch.Tensor) -> list[Prediction]:
        """One prediction per sample from the batch's logits."""


class ClassifierStudent(_EncoderStudent):
    """Text classification with one label per text (a sequence-classification head)."""

    auto_class = AutoModelForSequenceClassification

    @staticmethod
    def labels_for(task: TaskConfig) -> list[str]:
        return list(task.labels)

    def _check_trainable(self, samples: list[Sample]) -> None:
        for i, sample in enumerate(samples):
            if sample.label not in self.label_ids:
                raise ValueError(f"sample {i}: label {sample.label!r} is not one of {self.label_names}")
            unknown = sorted(set(sample.soft_label or {}) - set(self.label_ids))
            if unknown:
                raise ValueError(f"sample {i}: soft_label names {unknown}, not among {self.label_names}")

    def _loss(self, batch: list[Sample], logits: torch.Tensor, labels: torch.Tensor,
              smoothing: float) -> torch.Tensor:
        targets = labels
        if any(sample.soft_label is not None for sample in batch):
            # Every row as a distribution: a soft label as given, a hard one as its one-hot vector.
            targets = F.one_hot(labels, len(self.label_names)).float()
            for row, sample in enumerate(batch):
                if sample.soft_label is not None:
                    targets[row] = torch.tensor([sample.soft_label.get(name, 0.0) for name in self.label_names])
            targets = targets.to(logits.device)
        return training_loss(logits, targets, _weights(batch, logits.device), smoothing)

    def _gold_rows(self, sample: Sample, encoding: BatchEncoding, row: int,
                   logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return logits.unsqueeze(0), torch.tensor([self.label_ids[str(sample.label)]])

    def _encode(self, batch: list[Sample], *, train: bool) -> BatchEncoding:
        encoding = self.tokenizer(
            [sample.text for sample in batch],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        if train:
            encoding["labels"] = torch.tensor([self.label_ids[str(sample.label)] for sample in batch])
        return encoding.to(self.device)

    def _decode(self, batch: list[Sample], encoding: BatchEncoding, logits: torch.Tensor) -> list[Prediction]:
        predictions = []
        for row in logits.softmax(dim=-1).tolist():
            best = max(range(len(row)), key=row.__getitem__)
            probs = dict(zip(self.label_names, row, strict=True))
            top = sorted(row, reverse=True)
            predictions.append(Prediction(label=self.label_names[best], probs=probs,
                                          margin=top[0] - top[1] if len(top) > 1 else 1.0))
        return predictions

    def score(self, samples: list[Sample], predictions: list[Prediction]) -> tuple[EvalReport, DevPredictions]:
        gold = [str(s.label) for s in samples]
        predicted = [prediction.label or "" for prediction in predictions]
        return (classification_report(gold, predicted, self.task.labels),
                classification_predictions(gold, predicted, self.task.labels))


class TaggerStudent(_EncoderStudent):
    """Named-entity tagging with word-level BIO tags (a token-classification head).

    Each word is labelled on its first sub-token; words cut off by `max_length` are predicted "O".
    """

    auto_class = AutoModelForTokenClassification

    @staticmethod
    def labels_for(task: TaskConfig) -> list[str]:
        return ["O"] + [f"{prefix}-{entity_type}" for entity_type in task.labels for prefix in ("B", "I")]

    def _check_trainable(self, samples: list[Sample]) -> None:
        for i, sample in enumerate(samples):
            if sample.tokens is None or sample.tags is None or len(sample.tokens) != len(sample.tags):
                raise ValueError(f"sample {i}: needs tokens and as many tags")
            unknown = sorted(set(sample.tags) - set(self.label_ids))
            if unknown:
                raise ValueError(f"sample {i}: tags {unknown} are not among {self.label_names}")
            if sample.soft_label is not None:
                raise ValueError(f"sample {i}: soft_label is for classification; NER trains on hard tags")

    def _loss(self, batch: list[Sample], logits: torch.Tensor, labels: torch.Tensor,
              smoothing: float) -> torch.Tensor:
        # Each word's tag on its first sub-token; a sample's weight applies to every one of its words.
        weights = _weights(batch, logits.device)
        if weights is not None:
            weights = weights.unsqueeze(1).expand(labels.shape).reshape(-1)
        return training_loss(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), weights, smoothing)

    def _gold_rows(self, sample: Sample, encoding: BatchEncoding, row: int,
                   logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tags = sample.tags or []
        positions, gold, previous = [], [], None
        for position, word in enumerate(encoding.word_ids(row)):
            if word is not None and word != previous:
                positions.append(position)
                gold.append(self.label_ids[tags[word]])
            previous = word
        return logits[positions], torch.tensor(gold, dtype=torch.long)

    @staticmethod
    def _words(sample: Sample) -> list[str]:
        # Generated sentences may arrive as text only; tokenize() is what their gold tags align to.
        return sample.tokens if sample.tokens is not None else tokenize(sample.text)

    def _encode(self, batch: list[Sample], *, train: bool) -> BatchEncoding:
        encoding = self.tokenizer(
            [self._words(sample) for sample in batch],
            is_split_into_words=True,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        if train:
            encoding["labels"] = torch.tensor(
                [self._word_labels(encoding.word_ids(i), sample.tags or []) for i, sample in enumerate(batch)]
            )
        return encoding.to(self.device)

    def _word_labels(self, word_ids: list[int | None], tags: list[str]) -> list[int]:
        """Label ids per sub-token: the word's tag on its first piece, -100 (ignored) elsewhere."""
        labels, previous = [], None
        for word in word_ids:
            labels.append(-100 if word is None or word == previous else self.label_ids[tags[word]])
            previous = word
        return labels

    def _decode(self, batch: list[Sample], encoding: BatchEncoding, logits: torch.Tensor) -> list[Prediction]:
        predictions = []
        top = logits.softmax(dim=-1).topk(2, dim=-1).values
        gaps = (top[..., 0] - top[..., 1]).tolist()
        for row, sample in enumerate(batch):
            tags = ["O"] * len(self._words(sample))
            best = logits[row].argmax(dim=-1).tolist()
            previous, margin = None, 1.0
            for position, word in enumerate(encoding.word_ids(row)):
                if word is not None and word != previous:
                    tags[word] = self.label_names[best[position]]
                    margin = min(margin, gaps[row][position])
                previous = word
            # The head may emit I-X without a preceding X; normalise_bio turns that into B-X.
            predictions.append(Prediction(tags=normalise_bio(tags), margin=margin))
        return predictions

    def score(self, samples: list[Sample], predictions: list[Prediction]) -> tuple[EvalReport, DevPredictions]:
        gold = [s.tags or [] for s in samples]
        predicted = [prediction.tags or [] for prediction in predictions]
        return (ner_report(gold, predicted, self.task.labels),
                ner_predictions(gold, predicted, self.task.labels))


def _weights(batch: list[Sample], device: torch.device) -> torch.Tensor | None:
    """The batch's sample weights, or None when every sample counts once (the plain loss)."""
    if all(sample.weight == 1.0 for sample in batch):
        return None
    return torch.tensor([sample.weight for sample in batch], dtype=torch.float32, device=device)


def build_student(task: TaskConfig, cfg: StudentConfig) -> Student:
    """A fresh student for the task type, from `cfg.model`."""
    return TaggerStudent(task, cfg) if task.type == "ner" else ClassifierStudent(task, cfg)


def load_student(directory: Path, task: TaskConfig, cfg: StudentConfig) -> Student:
    """A student saved with `save`, for the task type."""
    student_class = TaggerStudent if task.type == "ner" else ClassifierStudent
    return student_class.load(directory, cfg, task)
