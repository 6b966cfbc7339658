"""Samples, and the readers that turn data files into them.

A `Sample` is the unit that flows through the whole loop. Classification samples carry a `label`;
NER samples carry word `tokens` and word-level BIO `tags` (`text` is then the tokens joined by spaces
unless the source had the original sentence).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from evokd.config import TaskConfig
from evokd.core.bio import bio_from_spans, normalise_bio, split_tag
from evokd.core.files import decoding, read_text
from evokd.core.records import Sample
from evokd.core.text import token_offsets, tokenize

__all__ = ["DataError", "Sample", "cap", "iter_unlabeled", "read_samples", "sample_k_shot", "token_offsets",
           "tokenize"]


class DataError(Exception):
    """A data-file problem, phrased as one line naming the file and the line."""


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: file not found")


def _resolve_label(raw: object, task: TaskConfig, where: str) -> str:
    value = str(raw).strip()
    label = task.label_map.get(value, value)
    if label not in task.labels:
        raise DataError(f"{where}: label {value!r} is not one of {task.labels}")
    return label


def _classification_sample(row: dict[str, object], task: TaskConfig, where: str) -> Sample:
    for column in (task.text_column, task.label_column):
        if row.get(column) is None:
            raise DataError(f"{where}: missing column {column!r}")
    text = row[task.text_column]
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: empty text in column {task.text_column!r}")
    return Sample(text=text.strip(), label=_resolve_label(row[task.label_column], task, where))


def _read_delimited(path: Path, task: TaskConfig) -> list[Sample]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        header_line = handle.readline()
        tab = path.suffix.lower() == ".tsv" or "\t" in header_line
        handle.seek(0)
        # GLUE-style TSV files are unquoted, and their sentences may start with a quote character.
        reader = csv.reader(handle, delimiter="\t" if tab else ",",
                            quoting=csv.QUOTE_NONE if tab else csv.QUOTE_MINIMAL)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise DataError(f"{path}:1: empty file, expected a header row") from None
        for column in (task.text_column, task.label_column):
            if column not in header:
                raise DataError(f"{path}:1: no column {column!r} (columns: {', '.join(header)})")
        samples: list[Sample] = []
        line = reader.line_num + 1
        try:
            for values in reader:
                if any(value.strip() for value in values):
                    row: dict[str, object] = dict(zip(header, values, strict=False))
                    samples.append(_classification_sample(row, task, f"{path}:{line}"))
                line = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(f"{path}:{line}: {exc}") from exc
    return samples


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """(line number, object) for each non-blank line of a JSONL file."""
    with path.open(encoding="utf-8-sig") as handle:
        yield from _json_objects(enumerate(handle, start=1), path)


def _json_objects(lines: Iterable[tuple[int, str]], path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank numbered line, each a JSON object."""
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: invalid JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object")
        yield number, record


def _json_list(path: Path) -> list[dict[str, object]]:
    try:
        records = json.loads(read_text(path, DataError))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{path}:1: expected a JSON list of objects")
    return records


def read_classification(path: Path, task: TaskConfig) -> list[Sample]:
    """Read labelled texts from CSV, TSV (by extension or a tab in the header), JSONL or a JSON list.

    Raw label values go through `task.label_map`; every problem is a DataError naming `file:line`.
    """
    path = Path(path)
    _require_file(path)
    suffix = path.suffix.lower()
    with decoding(path, DataError):
        if suffix == ".jsonl":
            return [_classification_sample(record, task, f"{path}:{number}")
                    for number, record in _json_lines(path)]
        if suffix == ".json":
            return [_classification_sample(record, task, f"{path}: item {index}")
                    for index, record in enumerate(_json_list(path))]
        return _read_delimited(path, task)


def _entity_type(raw: str, task: TaskConfig, where: str) -> str:
    entity_type = task.label_map.get(raw, raw)
    if entity_type not in task.labels:
        raise DataError(f"{where}: entity type {raw!r} is not one of {task.labels}")
    return entity_type


def _ner_sample(tokens: list[str], raw_tags: list[str], task: TaskConfig, where: list[str]) -> Sample:
    """A BIO sample from tags in any scheme; `where[i]` locates token i for error messages."""
    typed: list[str] = []
    for tag, location in zip(raw_tags, where, strict=True):
        try:
            prefix, raw_type = split_tag(tag)
        except ValueError as exc:
            raise DataError(f"{location}: {exc}") from None
        typed.append(tag if raw_type is None else f"{prefix}-{_entity_type(raw_type, task, location)}")
    return Sample(text=" ".join(tokens), tokens=tokens, tags=normalise_bio(typed))


def _read_conll(path: Path, task: TaskConfig) -> list[Sample]:
    samples: list[Sample] = []
    tokens: list[str] = []
    tags: list[str] = []
    where: list[str] = []

    def flush() -> None:
        if tokens:
            samples.append(_ner_sample(tokens.copy(), tags.copy(), task, where.copy()))
        tokens.clear()
        tags.clear()
        where.clear()

    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                flush()
                continue
            if len(fields) < 2:
                raise DataError(f"{path}:{number}: expected 'token ... tag', got {line.strip()!r}")
            tokens.append(fields[0])
            tags.append(fields[-1])
            where.append(f"{path}:{number}")
    flush()
    return samples


def _ner_record(record: dict[str, object], task: TaskConfig, where: str) -> Sample:
    """One JSON(L) record: {tokens, tags}, {tokens, entities: token spans} or {text, entities: char spans}."""
    tokens = record.get("tokens")
    if isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
        tags = record.get("tags")
        if tags is None:
            tags = _tags_from_spans(len(tokens), record.get("entities"), None, task, where)
        if not isinstance(tags, list) or len(tags) != len(tokens):
            raise DataError(f"{where}: 'tags' must be a list as long as 'tokens'")
        return _ner_sample(list(tokens), [str(t) for t in tags], task, [where] * len(tokens))
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: expected 'tokens' and 'tags', or a non-empty 'text' and 'entities'")
    offsets = token_offsets(text)
    tags = _tags_from_spans(len(offsets), record.get("entities", []), (text, offsets), task, where)
    tokens = [text[start:end] for start, end in offsets]
    return _ner_sample(tokens, tags, task, [where] * len(tokens))


def _tags_from_spans(
    length: int,
    entities: object,
    chars: tuple[str, list[tuple[int, int]]] | None,
    task: TaskConfig,
    where: str,
) -> list[str]:
    """BIO tags from entity spans: token spans when `chars` is None, else character spans in its text."""
    if not isinstance(entities, list):
        raise DataError(f"{where}: 'entities' must be a list of {{start, end, type}}")
    spans: list[tuple[str, int, int]] = []
    for entity in entities:
        if not isinstance(entity, dict) or not all(k in entity for k in ("start", "end", "type")):
            raise DataError(f"{where}: each entity needs 'start', 'end' and 'type', got {entity!r}")
        entity_type = _entity_type(str(entity["type"]), task, where)
        start, end = int(entity["start"]), int(entity["end"])
        if chars is not None:
            start, end = _align_chars(chars[0], chars[1], start, end, where)
        spans.append((entity_type, start, end))
    try:
        return bio_from_spans(length, spans)
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from None


def _align_chars(
    text: str, offsets: list[tuple[int, int]], start: int, end: int, where: str
) -> tuple[int, int]:
    """The token span `[first, last + 1)` whose characters are exactly `text[start:end]`."""
    surface = text[start:end]
    # Spans from generators often include a neighbouring space; that is not a boundary mismatch.
    start += len(surface) - len(surface.lstrip())
    end -= len(surface) - len(surface.rstrip())
    starts = {s: i for i, (s, _) in enumerate(offsets)}
    ends = {e: i for i, (_, e) in enumerate(offsets)}
    if start >= end or start not in starts or end not in ends:
        raise DataError(f"{where}: entity {surface!r} at [{start}, {end}) does not align with token "
                        f"boundaries (tokens: {[text[s:e] for s, e in offsets]})")
    return starts[start], ends[end] + 1


def read_ner(path: Path, task: TaskConfig) -> list[Sample]:
    """Read NER sentences as BIO-tagged samples over the entity types in `task.labels`.

    Formats: CoNLL text (token ... tag per line), a JSON list of {tokens, tags} (conll04; tags in
    any scheme) or of {tokens, entities: token spans}, and JSONL of {text, entities: char spans}
    or {tokens, tags}. Raw types go through `task.label_map`.
    """
    path = Path(path)
    _require_file(path)
    suffix = path.suffix.lower()
    with decoding(path, DataError):
        if suffix == ".json":
            return [_ner_record(record, task, f"{path}: sentence {index}")
                    for index, record in enumerate(_json_list(path))]
        if suffix == ".jsonl":
            return [_ner_record(record, task, f"{path}:{number}") for number, record in _json_lines(path)]
        return _read_conll(path, task)


def read_samples(path: Path, task: TaskConfig) -> list[Sample]:
    """Read a data file for the configured task type."""
    return read_ner(path, task) if task.type == "ner" else read_classification(path, task)


# ---------------------------------------------------------------------------------------------
# Unlabelled texts (data.unlabeled): streamed, never read whole
# ---------------------------------------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line with its newline) of a UTF-8 file, decoded one line at a time: a bad byte
    is reported at its line, and only the current line is held in memory."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not UTF-8 text (byte {exc.start} of the line: "
                                f"{exc.reason})") from None
            yield number, line.removeprefix("\ufeff") if number == 1 else line


def _looks_conll(path: Path) -> bool:
    """For NER: CoNLL (a token per line, blank lines between sentences) rather than one sentence a
    line, judged on the first 50 lines with text: a -DOCSTART- line, or at least two lines all with
    the same number of fields (sentences differ in length, token lines do not)."""
    counts: set[int] = set()
    seen = 0
    for _, line in _lines(path):
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "-DOCSTART-":
            return True
        counts.add(len(fields))
        seen += 1
        if seen == 50:
            break
    return seen >= 2 and len(counts) == 1


def _pool_text(value: object, column: str, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: missing column {column!r}" if value is None
                        else f"{where}: column {column!r} is not text")
    if not value.strip():
        raise DataError(f"{where}: empty text in column {column!r}")
    return value.strip()


def _pool_delimited(path: Path, task: TaskConfig) -> Iterator[tuple[int, str]]:
    lines = _lines(path)
    starts: list[int] = []  # source line of each physical line the csv reader has consumed

    def feed() -> Iterator[str]:
        for number, line in lines:
            starts.append(number)
            yield line

    tab = path.suffix.lower() == ".tsv"
    reader: Any = None
    try:
        first = next(lines, None)
        if first is None:
            raise DataError(f"{path}:1: empty file, expected a header row")
        tab = tab or "\t" in first[1]
        # The header's own line, then the rest streamed; GLUE-style TSV files are unquoted.
        header = next(csv.reader([first[1]], delimiter="\t" if tab else ","))
        header = [name.strip() for name in header]
        if task.text_column not in header:
            raise DataError(f"{path}:1: no column {task.text_column!r} (columns: {', '.join(header)})")
        column = header.index(task.text_column)
        reader = csv.reader(feed(), delimiter="\t" if tab else ",",
                            quoting=csv.QUOTE_NONE if tab else csv.QUOTE_MINIMAL)
        for values in reader:
            number = starts[0] if starts else 2
            starts.clear()
            if not any(value.strip() for value in values):
                continue
            where = f"{path}:{number}"
            yield number, _pool_text(values[column] if column < len(values) else None, task.text_column, where)
    except csv.Error as exc:
        raise DataError(f"{path}:{starts[0] if starts else '?'}: {exc}") from exc


def _pool_jsonl(path: Path, task: TaskConfig) -> Iterator[tuple[int, str | list[str]]]:
    for number, record in _json_objects(_lines(path), path):
        where = f"{path}:{number}"
        tokens = record.get("tokens") if task.type == "ner" else None
        if tokens is not None:
            if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t.strip()
                                                                     for t in tokens):
                raise DataError(f"{where}: 'tokens' must be a non-empty list of words")
            yield number, [t.strip() for t in tokens]
            continue
        column = "text" if task.type == "ner" and "text" in record else task.text_column
        yield number, _pool_text(record.get(column), column, where)


def _pool_conll(path: Path) -> Iterator[tuple[int, list[str]]]:
    tokens: list[str] = []
    start, width, width_line = 0, 0, 0
    for number, line in _lines(path):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                yield start, tokens
            tokens = []
            continue
        if not width:
            width, width_line = len(fields), number
        elif len(fields) != width:
            raise DataError(f"{path}:{number}: expected {width} fields (token ... tag) as on line "
                            f"{width_line}, got {len(fields)}: {line.strip()!r}")
        if not tokens:
            start = number
        tokens.append(fields[0])
    if tokens:
        yield start, tokens


def iter_unlabeled(path: Path, task: TaskConfig) -> Iterator[tuple[int, str | list[str]]]:
    """The texts of an unlabelled pool file, streamed one at a time: (line number, text), or for NER
    (line number, word tokens).

    By extension: .csv/.tsv read `task.text_column` (other columns, a label among them, are
    ignored); .jsonl reads `task.text_column` (NER: "tokens", else "text"); any other file is one
    text a line, or for NER CoNLL (a tag column, if any, is ignored) when it is named .conll, .iob
    or .bio or its lines look like it (`_looks_conll`). Blank lines and rows are skipped; every
    problem is a DataError naming file:line.
    """
    path = Path(path)
    _require_file(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        raise DataError(f"{path}: a pool file is read as a stream, one text at a time: use JSONL "
                        "(one object a line), CSV, TSV, or plain text (one text a line)")
    if suffix in (".csv", ".tsv"):
        rows: Iterator[tuple[int, str | list[str]]] = _pool_delimited(path, task)
    elif suffix == ".jsonl":
        rows = _pool_jsonl(path, task)
    elif task.type == "ner" and (suffix in (".conll", ".iob", ".bio") or _looks_conll(path)):
        yield from _pool_conll(path)
        return
    else:
        rows = ((number, line.strip()) for number, line in _lines(path) if line.strip())
    for number, text in rows:
        yield number, tokenize(text) if task.type == "ner" and isinstance(text, str) else text


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


def entity_types(sample: Sample) -> set[str]:
    """The entity types present in a BIO-tagged sample."""
    return {tag[2:] for tag in sample.tags or [] if tag != "O"}


def sample_k_shot(samples: list[Sample], task: TaskConfig, k: int, seed: int) -> list[Sample]:
    """k samples per label (classification) or k sentences per entity type (NER); k = 0 means all.

    Seeded and deterministic; a label with fewer than k samples contributes what it has. The result
    keeps the input order.
    """
    if k == 0:
        return list(samples)
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    if task.type == "ner":
        chosen = _greedy_ner_shots(samples, task, k, order)
    else:
        chosen = set()
        for label in task.labels:
            chosen.update([i for i in order if samples[i].label == label][:k])
    return [samples[i] for i in sorted(chosen)]


def _greedy_ner_shots(samples: list[Sample], task: TaskConfig, k: int, order: list[int]) -> set[int]:
    # Sentences picked for one type count toward every type they contain, which keeps the set small.
    types = [entity_types(sample) for sample in samples]
    chosen: set[int] = set()
    for entity_type in task.labels:
        have = sum(entity_type in types[i] for i in chosen)
        for i in order:
            if have >= k:
                break
            if i not in chosen and entity_type in types[i]:
                chosen.add(i)
                have += 1
    return chosen


def cap(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """A seeded subsample of at most `limit` samples (input order kept); all of them when limit is None."""
    if limit is None or len(samples) <= limit:
        return list(samples)
    keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[i] for i in keep]


def split_off(samples: list[Sample], share: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(rest, part): a seeded `share` of the samples set apart, each side in input order."""
    n = round(len(samples) * share)
    part = set(random.Random(seed).sample(range(len(samples)), n))
    return ([s for i, s in enumerate(samples) if i not in part], [s for i, s in enumerate(samples) if i in part])
