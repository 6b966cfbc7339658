"""What `evokd predict` reads and writes, without torch.

Inputs: texts given as arguments, standard input (one text per line unless `input_format` says
otherwise) or a file: CSV/TSV with a header and a text column, JSONL with a text field, plain text
(one text per line) and, for NER, CoNLL (one word per line, the first field, blank lines between
sentences; other columns such as gold tags are ignored) or JSONL `{"tokens": [...]}`.

A malformed line raises a `DataError` naming the file and line; with `skip_bad` it is left out
and counted instead. Outputs are CSV or JSONL, written to a temporary file that replaces the
target only once complete, so a failed run never leaves half a file behind.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from evokd.core.files import read_text

from .data import DataError
from .predictor import Item, Result

INPUT_FORMATS = ("auto", "lines", "csv", "tsv", "jsonl", "conll")
OUTPUT_FORMATS = ("jsonl", "csv")
_TAG_RE = re.compile(r"^(O|[BIESLUM]-\S+)$")


@dataclass
class Inputs:
    items: list[Item]
    skipped: list[str] = field(default_factory=list)  # "file:line: reason" of each skipped line


class _Bad(Exception):
    """One malformed line; `where` is "file:line"."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where


def _item(text: str, task_type: str, where: str) -> Item:
    if not text.strip():
        raise _Bad(where, "empty text")
    text = text.strip()
    return Item.from_text(text, where) if task_type == "ner" else Item(text=text, where=where)


def _records_jsonl(lines: Iterable[str], name: str, task_type: str, text_column: str) -> Iterator[Item | _Bad]:
    for number, line in enumerate(lines, start=1):
        where = f"{name}:{number}"
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield _Bad(where, f"invalid JSON: {exc.msg}")
            continue
        if not isinstance(record, dict):
            yield _Bad(where, "expected a JSON object")
            continue
        tokens = record.get("tokens")
        if task_type == "ner" and text_column not in record and tokens is not None:
            if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
                yield _Bad(where, "'tokens' must be a non-empty list of strings")
            else:
                yield Item.from_tokens(tokens, where)
            continue
        text = record.get(text_column)
        if not isinstance(text, str):
            what = "no" if text is None else "a non-string"
            yield _Bad(where, f"{what} {text_column!r} field" + (" (or 'tokens')" if task_type == "ner" else ""))
            continue
        try:
            yield _item(text, task_type, where)
        except _Bad as bad:
            yield bad


def _records_delimited(handle: TextIO, name: str, task_type: str, text_column: str,
                       tab: bool) -> Iterator[Item | _Bad]:
    # GLUE-style TSV files are unquoted, and their sentences may start with a quote character.
    reader = csv.reader(handle, delimiter="\t" if tab else ",", quoting=csv.QUOTE_NONE if tab else csv.QUOTE_MINIMAL)
    try:
        header = [column.strip() for column in next(reader)]
    except StopIteration:
        raise DataError(f"{name}:1: empty file, expected a header row") from None
    except csv.Error as exc:
        raise DataError(f"{name}:1: {exc}") from None
    if text_column not in header:
        raise DataError(f"{name}:1: no column {text_column!r} (columns: {', '.join(header)}); "
                        "name the text column with --text-column")
    index = header.index(text_column)
    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The csv module cannot go on after a broken quote: this ends the file.
            raise DataError(f"{name}:{line}: {exc}") from None
        where = f"{name}:{line}"
        line = reader.line_num + 1
        if not any(value.strip() for value in values):
            continue
        if len(values) != len(header):
            yield _Bad(where, f"{len(values)} fields, the header has {len(header)}")
            continue
        try:
            yield _item(values[index], task_type, where)
        except _Bad as bad:
            yield bad


def _records_lines(lines: Iterable[str], name: str, task_type: str) -> Iterator[Item | _Bad]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield _item(line, task_type, f"{name}:{number}")


def _records_conll(lines: Iterable[str], name: str) -> Iterator[Item | _Bad]:
    tokens: list[str] = []
    first = 0
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                yield Item.from_tokens(tokens, f"{name}:{first}")
            tokens = []
            continue
        if not tokens:
            first = number
        tokens.append(fields[0])
    if tokens:
        yield Item.from_tokens(tokens, f"{name}:{first}")


def _looks_like_conll(lines: list[str]) -> bool:
    """Lines of `word ... TAG` (a trailing BIO-style tag on every non-blank line), or one word each."""
    sample = [line.split() for line in lines[:50] if line.strip() and not line.startswith("-DOCSTART-")]
    if not sample or not any(not line.strip() for line in lines[:200]):
        return False
    return all(len(f) >= 2 and _TAG_RE.match(f[-1]) for f in sample)


def detect_format(path: Path | None, lines: list[str] | None, task_type: str) -> str:
    """The input format from the file's extension, or for text files and stdin from its first lines."""
    suffix = path.suffix.lower() if path is not None else ""
    by_suffix = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".conll": "conll",
                 ".iob": "conll", ".bio": "conll"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    if task_type == "ner" and lines is not None and _looks_like_conll(lines):
        return "conll"
    return "lines"


def read_inputs(source: Path | None, *, task_type: str, text_column: str = "text", input_format: str = "auto",
                skip_bad: bool = False, stdin: TextIO | None = None) -> Inputs:
    """Items from a file, or from standard input when `source` is None or "-"."""
    if input_format not in INPUT_FORMATS:
        raise DataError(f"unknown input format {input_format!r}; one of {', '.join(INPUT_FORMATS)}")
    if source is not None and str(source) != "-":
        path = Path(source)
        text = read_text(path, DataError)
        name: str = str(path)
    else:
        path, name = None, "<stdin>"
        text = (stdin or sys.stdin).read()
    lines = text.splitlines()
    fmt = detect_format(path, lines, task_type) if input_format == "auto" else input_format
    if fmt == "conll" and task_type != "ner":
        raise DataError(f"{name}: CoNLL input is for NER runs; this run classifies texts")
    if fmt in ("csv", "tsv"):
        records = _records_delimited(io.StringIO(text, newline=""), name, task_type, text_column, tab=fmt == "tsv")
    elif fmt == "jsonl":
        records = _records_jsonl(lines, name, task_type, text_column)
    elif fmt == "conll":
        records = _records_conll(lines, name)
    else:
        records = _records_lines(lines, name, task_type)
    return collect(records, skip_bad)


def collect(records: Iterable[Item | _Bad], skip_bad: bool) -> Inputs:
    inputs = Inputs(items=[])
    try:
        for record in records:
            if isinstance(record, _Bad):
                if not skip_bad:
                    raise DataError(f"{record} (--skip-bad leaves such lines out)")
                inputs.skipped.append(str(record))
            else:
                inputs.items.append(record)
    except _Bad as bad:  # raised from a generator that cannot yield it (plain lines)
        if not skip_bad:
            raise DataError(f"{bad} (--skip-bad leaves such lines out)") from None
        inputs.skipped.append(str(bad))
    return inputs


def items_from_args(texts: list[str], task_type: str) -> Inputs:
    records: list[Item | _Bad] = []
    for number, text in enumerate(texts, start=1):
        try:
            records.append(_item(text, task_type, f"argument {number}"))
        except _Bad as bad:
            records.append(bad)
    return collect(records, skip_bad=False)


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def output_format(path: Path | None, given: str | None) -> str:
    if given is not None:
        if given not in OUTPUT_FORMATS:
            raise DataError(f"unknown output format {given!r}; one of {', '.join(OUTPUT_FORMATS)}")
        return given
    if path is not None and path.suffix.lower() in (".csv", ".tsv"):
        return "csv"
    return "jsonl"


def _row(result: Result) -> dict[str, object]:
    row: dict[str, object] = {"text": result.text}
    if result.entities is not None:
        row["entities"] = [{k: round(v, 4) if k == "score" else v for k, v in asdict(e).items()}
                           for e in result.entities]
    else:
        row["label"] = result.label
        row["score"] = None if result.score is None else round(result.score, 4)
    row["truncated"] = result.truncated
    return row


def render(results: list[Result], fmt: str) -> str:
    """The whole output as one string: CSV with a header, or one JSON object per line."""
    rows = [_row(r) for r in results]
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    buffer = io.StringIO()
    ner = bool(rows) and "entities" in rows[0]
    columns = ["text", "entities", "truncated"] if ner else ["text", "label", "score", "truncated"]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        if ner:
            row = {**row, "entities": json.dumps(row["entities"], ensure_ascii=False)}
        writer.writerow(row)
    return buffer.getvalue()
