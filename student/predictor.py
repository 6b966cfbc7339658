"""Batch prediction shared by the PyTorch student and an exported ONNX model, without torch.

A `Predictor` tokenizes with the student's own `tokenizer.json` (the `tokenizers` library, which
is what a fast transformers tokenizer runs underneath), hands padded numpy arrays to a backend
that returns logits, and decodes them: a label and its probability per text, or for NER word-level
BIO tags turned into entities with a character span and a score. The PyTorch backend lives in
`evokd.student.model`'s world (see `torch_predictor`); the ONNX one in `onnx_predict`. Nothing
here imports torch, so `evokd predict --onnx` starts in a fraction of a second.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tokenizers import Tokenizer

from .data import normalise_bio, token_offsets

DEFAULT_BATCH = 32


class Backend(Protocol):
    """Logits `[batch, classes]` (classification) or `[batch, tokens, tags]` (NER) for padded inputs."""

    @property
    def input_names(self) -> Sequence[str]: ...

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


@dataclass
class Item:
    """One text to label. For NER `tokens` are its words and `offsets` their character spans."""

    text: str
    where: str = ""
    tokens: list[str] | None = None
    offsets: list[tuple[int, int]] | None = None

    @classmethod
    def from_text(cls, text: str, where: str = "") -> Item:
        offsets = token_offsets(text)
        return cls(text=text, where=where, tokens=[text[s:e] for s, e in offsets], offsets=offsets)

    @classmethod
    def from_tokens(cls, tokens: list[str], where: str = "") -> Item:
        """Words that come without their sentence (CoNLL): the text is the words joined by spaces."""
        offsets, position = [], 0
        for token in tokens:
            offsets.append((position, position + len(token)))
            position += len(token) + 1
        return cls(text=" ".join(tokens), where=where, tokens=list(tokens), offsets=offsets)


@dataclass
class Entity:
    type: str
    start: int
    end: int
    text: str
    score: float


@dataclass
class Result:
    text: str
    truncated: bool
    label: str | None = None
    score: float | None = None
    entities: list[Entity] | None = None
    # Word-level BIO tags (NER): what the self-check compares and seqeval scores.
    tags: list[str] | None = field(default=None, repr=False)


def load_tokenizer(directory: Path, max_length: int) -> Tokenizer:
    """The student's fast tokenizer, truncating to `max_length` like transformers does, no padding."""
    path = Path(directory) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (the student needs a fast tokenizer)")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length, strategy="longest_first", direction="right")
    return tokenizer


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class Predictor:
    """Labels texts (classification) or finds entities (NER) with a tokenizer and a logits backend."""

    def __init__(self, tokenizer: Tokenizer, backend: Backend, task_type: str, label_names: list[str]) -> None:
        self.tokenizer = tokenizer
        self.backend = backend
        self.task_type = task_type
        self.label_names = list(label_names)
        padding = tokenizer.token_to_id("[PAD]")
        self.pad_id = 0 if padding is None else padding

    def predict(self, items: Sequence[Item], batch_size: int = DEFAULT_BATCH,
                on_batch: Callable[[int], None] | None = None) -> list[Result]:
        """Results in input order; batches group texts of similar length to pad little.
        `on_batch(n)` is called after each batch with the number of texts it held."""
        order = sorted(range(len(items)), key=lambda i: len(items[i].text))
        results: dict[int, Result] = {}
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            batch = [items[i] for i in indices]
            results.update(zip(indices, self._predict_batch(batch), strict=True))
            if on_batch is not None:
                on_batch(len(batch))
        return [results[i] for i in range(len(items))]

    def _encode(self, batch: list[Item]) -> tuple[list[Any], dict[str, np.ndarray]]:
        if self.task_type == "ner":
            encodings = self.tokenizer.encode_batch([item.tokens or [] for item in batch], is_pretokenized=True)
        else:
            encodings = self.tokenizer.encode_batch([item.text for item in batch])
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        types = np.zeros((len(batch), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            mask[row, :n] = 1
            types[row, :n] = encoding.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return encodings, {name: feeds[name] for name in self.backend.input_names}

    def _predict_batch(self, batch: list[Item]) -> list[Result]:
        encodings, feeds = self._encode(batch)
        probs = _softmax(np.asarray(self.backend(feeds), dtype=np.float32))
        if self.task_type != "ner":
            results = []
            for item, encoding, row in zip(batch, encodings, probs, strict=True):
                best = int(row.argmax())
                results.append(Result(text=item.text, truncated=bool(encoding.overflowing),
                                      label=self.label_names[best], score=float(row[best])))
            return results
        return [self._entities(item, encoding, row) for item, encoding, row in zip(batch, encodings, probs,
                                                                                    strict=True)]

    def _entities(self, item: Item, encoding: Any, probs: np.ndarray) -> Result:
        """Word tags from each word's first sub-token (words cut off are "O"), then entity spans."""
        words = item.tokens or []
        tags, scores = ["O"] * len(words), [math.nan] * len(words)
        previous = None
        for position, word in enumerate(encoding.word_ids):
            if word is not None and word != previous:
                best = int(probs[position].argmax())
                tags[word], scores[word] = self.label_names[best], float(probs[position, best])
            previous = word
        tags = normalise_bio(tags)
        offsets = item.offsets or []
        entities: list[Entity] = []
        i = 0
        while i < len(tags):
            if tags[i] == "O":
                i += 1
                continue
            # normalise_bio makes every entity start with B-X and continue with I-X of the same type.
            j = i + 1
            while j < len(tags) and tags[j] == f"I-{tags[i][2:]}":
                j += 1
            start, end = offsets[i][0], offsets[j - 1][1]
            known = [s for s in scores[i:j] if not math.isnan(s)]
            entities.append(Entity(type=tags[i][2:], start=start, end=end, text=item.text[start:end],
                                   score=sum(known) / len(known) if known else 0.0))
            i = j
        return Result(text=item.text, truncated=bool(encoding.overflowing), entities=entities, tags=tags)
