"""Benchmark datasets derived from the shared ones, written once into the benchmark's run folder.

`sst2-sentences`: SST-2's train and dev files hold every phrase of each sentence's parse tree
("kids , spirit", mean 9 words) beside the sentences themselves, while its test file holds
sentences only (mean 19 words). Drawn from all rows, the seed set, dev (on which every stop and
every choice is made) and the 1,000 gold texts of `full` are half fragments, so the instrument
scores a recipe partly on phrases it is never tested on (docs/method.md, "`full` on whole
sentences"). The derived files keep the rows no longer row contains, the sentences; the test file
is SST-2's own.
"""

from __future__ import annotations

import csv
from pathlib import Path

from evokd.core.files import write_atomic


def whole_sentences(texts: list[str]) -> set[str]:
    """The texts no longer text contains (word-aligned): in SST-2's train and dev files, which hold
    every phrase of each sentence's parse tree (mean 9 words against the test file's 19), these are
    the sentences themselves (6,885 of 67,349 rows, mean 19 words). Each text is checked only against
    the longer texts that hold its rarest word, so all of SST-2 takes about two seconds."""
    words = [text.split() for text in texts]
    holding: dict[str, list[int]] = {}
    for i, ws in enumerate(words):
        for w in set(ws):
            holding.setdefault(w, []).append(i)
    padded = [f" {' '.join(ws)} " for ws in words]

    def contained(i: int) -> bool:
        rarest = min(set(words[i]), key=lambda w: len(holding[w]))
        return any(len(padded[j]) > len(padded[i]) and padded[i] in padded[j] for j in holding[rarest])

    return {texts[i] for i, ws in enumerate(words) if ws and not contained(i)}


def _read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file, expected a header row")
        rows = [row for row in reader if row]
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}, row {line}: {len(row)} tab-separated fields, expected {len(header)} "
                             f"({', '.join(header)})")
    return header, rows


def _tsv(header: list[str], rows: list[list[str]]) -> str:
    # As read: unquoted, unescaped (a csv writer would escape a text's own backslashes).
    return "".join("\t".join(row) + "\n" for row in [header, *rows])


def sst2_sentences(source: Path, dest: Path) -> Path:
    """dest/{train,dev,test}.tsv from SST-2's files in `source`: train and dev kept to their whole
    sentences (judged across both files, since the split separated a sentence from its phrases),
    test copied. Rewritten only when what it would write differs, so a resumed benchmark reads the
    same files. Returns `dest`."""
    tables = {name: _read_tsv(source / f"{name}.tsv") for name in ("train", "dev", "test")}
    column = tables["train"][0].index("sentence") if "sentence" in tables["train"][0] else 0
    whole = whole_sentences([row[column] for name in ("train", "dev") for row in tables[name][1]])
    dest.mkdir(parents=True, exist_ok=True)
    for name, (header, rows) in tables.items():
        kept = rows if name == "test" else [row for row in rows if row[column] in whole]
        text = _tsv(header, kept)
        target = dest / f"{name}.tsv"
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            write_atomic(target, text)
    return dest
