"""The user's unlabelled texts (`data.unlabeled`), indexed once on disk, so that a round can score
100,000 of them without holding them in memory or encoding them again.

`open_pool` scans the file once (streamed by `data.iter_unlabeled`) into a cache folder:

    texts.jsonl    each text (NER: its word list) as one JSON line, so any text is one seek away
    offsets.npy    the byte offset of each line of texts.jsonl
    lines.npy      the line of the source file each text starts on (for messages)
    keys.npy       a 64-bit hash of each text's duplicate key (core.text.normalise)

`PoolIndex.embeddings` adds the frozen encoder's sentence vectors (float16), computed once per
model in bounded batches and resumable: `emb-<model>.f16` is filled batch by batch and
`emb-<model>.json` records how far it got after each one.

A folder is named by the file's SHA-256 and how it is read, lives under `cache_root()/pools`, and is
shared by every run on the machine; folders not used for longest are removed once the cache holds
more than `EVOKD_POOL_CACHE_MB` (4,096 MB by default). A run holds a shared lock on its folder, so
another process never removes it while it is read, and building takes the exclusive lock, so two
processes never build (or encode) the same folder twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from evokd.config import TaskConfig
from evokd.core.cache import cache_root
from evokd.core.records import Sample
from evokd.core.text import normalise

from .data import DataError, iter_unlabeled

log = logging.getLogger("evokd.pool")

# Bump when the scan's output changes, so old folders are not read as new ones.
_FORMAT = 1
_DEFAULT_CAP_MB = 4096

Entry = str | list[str]  # a text, or for NER its word tokens


def text_of(entry: Entry) -> str:
    """The text of a pool entry (NER word lists are joined by spaces, as their Samples are)."""
    return entry if isinstance(entry, str) else " ".join(entry)


def key_hash(text: str) -> int:
    """A 64-bit hash of a text's duplicate key; 0 for a text with no words (nothing to label)."""
    key = normalise(text)
    if not key:
        return 0
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") or 1


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_key(model_dir: str | Path, max_length: int) -> str:
    """Names an encoder's vectors: its files' names and sizes, its config, and the token limit."""
    root = Path(model_dir)
    digest = hashlib.sha256(f"{max_length}".encode())
    if root.is_dir():
        for item in sorted(root.iterdir()):
            if item.is_file():
                digest.update(f"{item.name}:{item.stat().st_size}".encode())
        if (root / "config.json").is_file():
            digest.update((root / "config.json").read_bytes())
    else:  # a hub name: the name is all there is
        digest.update(str(model_dir).encode())
    return digest.hexdigest()[:16]


@dataclass
class PoolSource:
    """Where a pool's texts come from: a file, or a split of a `datasets` dataset (student.hub)."""

    name: str  # for messages: the file, or the dataset and split
    identity: dict[str, str]  # what names its content: the file's SHA-256, the dataset's fingerprint
    rows: Callable[[], Iterator[tuple[int, Entry]]]  # (line or row number, text), streamed
    unit: str = "line"  # what the numbers count, for `PoolIndex.where`


def file_source(path: Path, task: TaskConfig) -> PoolSource:
    """A pool file (`data.unlabeled`), read by `data.iter_unlabeled`."""
    path = Path(path).resolve()
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return PoolSource(name=str(path), identity={"sha256": file_digest(path)},
                      rows=lambda: iter_unlabeled(path, task))


@dataclass
class Usable:
    """The pool rows a run may pick from, and what was dropped."""

    rows: np.ndarray  # int64 row numbers, ascending
    in_eval: int  # texts that occur in dev or test
    known: int  # texts already labelled (the seed set)
    repeated: int  # later copies of a text already in the pool
    empty: int  # texts with no words

    def describe(self) -> str:
        return (f"{len(self.rows):,} texts to pick from; dropped {self.in_eval:,} that occur in dev or test, "
                f"{self.known:,} in the seed set, {self.repeated:,} repeats, {self.empty:,} without words")


class PoolIndex:
    """One scanned pool file: its texts on disk, read by row number."""

    def __init__(self, folder: Path, source: PoolSource, lock: IO[bytes]) -> None:
        self.folder = folder
        self.source = source
        self._lock = lock  # a shared flock for as long as this index is open
        self.offsets = np.load(folder / "offsets.npy")
        self.lines = np.load(folder / "lines.npy")
        self.keys = np.load(folder / "keys.npy")

    def __len__(self) -> int:
        return len(self.offsets)

    def close(self) -> None:
        self._lock.close()

    def where(self, row: int) -> str:
        """Where a row comes from, for messages and the trace: `file:line`, or `dataset[split] row N`."""
        line = int(self.lines[row])
        return f"{self.source.name}:{line}" if self.source.unit == "line" else f"{self.source.name} row {line}"

    def entries(self, rows: Iterable[int]) -> list[Entry]:
        """The texts of the given rows, in the order given: one seek each, read in file order."""
        rows = [int(r) for r in rows]
        found: dict[int, Entry] = {}
        with (self.folder / "texts.jsonl").open("rb") as handle:
            for row in sorted(set(rows)):
                handle.seek(int(self.offsets[row]))
                found[row] = json.loads(handle.readline())
        return [found[r] for r in rows]

    def samples(self, rows: Iterable[int]) -> list[Sample]:
        """The given rows as unlabelled Samples (NER: with their word tokens)."""
        return [Sample(text=e) if isinstance(e, str) else Sample(text=" ".join(e), tokens=e)
                for e in self.entries(rows)]

    def chunks(self, start: int, size: int) -> Iterator[tuple[int, list[Entry]]]:
        """(first row, entries) of consecutive rows from `start`, `size` at a time."""
        with (self.folder / "texts.jsonl").open("rb") as handle:
            if start < len(self):
                handle.seek(int(self.offsets[start]))
            row = start
            while row < len(self):
                batch = [json.loads(handle.readline()) for _ in range(min(size, len(self) - row))]
                yield row, batch
                row += len(batch)

    def usable(self, eval_texts: Iterable[str], known: Iterable[str] = ()) -> Usable:
        """Rows whose text (as `normalise` sees it) is neither in dev or test nor already labelled
        (`known`, the seed set), first copies only."""

        def hashes(texts: Iterable[str]) -> np.ndarray:
            return np.array(sorted({key_hash(t) for t in texts} - {0}), dtype=np.uint64)

        in_eval = np.isin(self.keys, hashes(eval_texts))
        in_known = np.isin(self.keys, hashes(known)) & ~in_eval
        empty = self.keys == 0
        first = np.zeros(len(self), dtype=bool)
        first[np.unique(self.keys, return_index=True)[1]] = True
        dropped = in_eval | in_known | empty
        return Usable(rows=np.flatnonzero(first & ~dropped).astype(np.int64), in_eval=int(in_eval.sum()),
                      known=int(in_known.sum()), repeated=int((~first & ~dropped).sum()), empty=int(empty.sum()))

    def embeddings(self, model: str, embed: Callable[[list[str]], np.ndarray], *, batch: int = 512,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Every row's sentence vector (float16, read-only memmap), computed on first use.

        `embed(texts)` returns float vectors for at most `batch` texts; after each batch the
        progress is saved, so an interrupted encoding continues where it stopped."""
        vectors, state = self.folder / f"emb-{model}.f16", self.folder / f"emb-{model}.json"
        done, dim = _read_progress(state)
        if done < len(self) or dim == 0:
            # Another process encoding the same pool with the same model makes this wait, then
            # finds the work done.
            with _locked(self.folder / f"emb-{model}.lock"):
                done, dim = _read_progress(state)
                dim = self._encode(vectors, state, done, dim, embed, batch, progress)
        if len(self) == 0:
            return np.zeros((0, dim), dtype=np.float16)
        return np.memmap(vectors, dtype=np.float16, mode="r", shape=(len(self), dim))

    def _encode(self, vectors: Path, state: Path, done: int, dim: int,
                embed: Callable[[list[str]], np.ndarray], batch: int,
                progress: Callable[[int, int], None] | None) -> int:
        total = len(self)
        if progress is not None:
            progress(done, total)
        out: np.memmap | None = None
        for first, entries in self.chunks(done, batch):
            block = np.asarray(embed([text_of(e) for e in entries]), dtype=np.float32)
            if out is None:
                if dim == 0:
                    dim = block.shape[1]
                    vectors.unlink(missing_ok=True)
                out = np.memmap(vectors, dtype=np.float16, mode="r+" if vectors.exists() else "w+",
                                shape=(total, dim))
            out[first:first + len(entries)] = block
            out.flush()
            _write_json(state, {"done": first + len(entries), "dim": dim, "rows": total})
            if progress is not None:
                progress(first + len(entries), total)
        if total == 0:
            _write_json(state, {"done": 0, "dim": dim, "rows": 0})
        del out
        return dim


def _read_progress(state: Path) -> tuple[int, int]:
    try:
        data = json.loads(state.read_text())
        return int(data["done"]), int(data["dim"])
    except (OSError, ValueError, KeyError):
        return 0, 0


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _lock_file(folder: Path) -> Path:
    return folder.with_name(f"{folder.name}.lock")


def _scan(source: PoolSource, folder: Path) -> int:
    """Stream the source into `folder` (built beside it, then renamed); returns the row count."""
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        offsets: list[int] = []
        lines: list[int] = []
        keys: list[int] = []
        with (staging / "texts.jsonl").open("wb") as out:
            for number, entry in source.rows():
                offsets.append(out.tell())
                lines.append(number)
                keys.append(key_hash(text_of(entry)))
                out.write(json.dumps(entry, ensure_ascii=False).encode() + b"\n")
        np.save(staging / "offsets.npy", np.array(offsets, dtype=np.int64))
        np.save(staging / "lines.npy", np.array(lines, dtype=np.int64))
        np.save(staging / "keys.npy", np.array(keys, dtype=np.uint64))
        _write_json(staging / "meta.json", {"source": source.name, "rows": len(offsets), "format": _FORMAT})
        os.replace(staging, folder)
        return len(offsets)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pools_dir() -> Path:
    return cache_root() / "pools"


def open_pool(source: PoolSource | Path, task: TaskConfig, *, root: Path | None = None,
              max_bytes: int | None = None) -> PoolIndex:
    """The index of a pool (a file, or a `PoolSource`), scanned on first use; a DataError names the
    file and line of any problem. Also trims the cache to `max_bytes` (default
    `EVOKD_POOL_CACHE_MB`), least recently used first."""
    if not isinstance(source, PoolSource):
        source = file_source(source, task)
    root = root or pools_dir()
    root.mkdir(parents=True, exist_ok=True)
    how = {"format": _FORMAT, "task": task.type, "column": task.text_column, **source.identity}
    folder = root / hashlib.sha256(json.dumps(how, sort_keys=True).encode()).hexdigest()[:20]
    # Readers hold the folder's lock shared; building upgrades it (only ever before the folder
    # exists, so no reader in this process holds it then), evicting takes it exclusive.
    lock = _lock_file(folder).open("ab")
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)
        if not (folder / "meta.json").is_file():
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (folder / "meta.json").is_file():
                rows = _scan(source, folder)
                log.info("data.unlabeled: indexed %s texts of %s in %s", f"{rows:,}", source.name, folder)
            fcntl.flock(lock, fcntl.LOCK_SH)
    except BaseException:
        lock.close()
        raise
    os.utime(folder / "meta.json")  # last used: what eviction goes by
    trim_cache(root, keep=folder, max_bytes=max_bytes)
    return PoolIndex(folder, source, lock)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def trim_cache(root: Path, *, keep: Path | None = None, max_bytes: int | None = None) -> list[Path]:
    """Remove the least recently used pool folders until the cache holds at most `max_bytes`;
    a folder in use (locked by any process) or `keep` is never removed. Returns what was removed."""
    if max_bytes is None:
        max_bytes = int(float(os.environ.get("EVOKD_POOL_CACHE_MB", _DEFAULT_CAP_MB)) * 1024 * 1024)
    for staging in root.glob(".*"):  # left by a scan that was killed
        if staging.is_dir() and time.time() - staging.stat().st_mtime > 86400:
            shutil.rmtree(staging, ignore_errors=True)
    folders = [f for f in root.iterdir() if f.is_dir() and (f / "meta.json").is_file()]
    sizes = {f: folder_bytes(f) for f in folders}
    total = sum(sizes.values())
    removed: list[Path] = []
    for folder in sorted(folders, key=lambda f: (f / "meta.json").stat().st_mtime):
        if total <= max_bytes:
            break
        if folder == keep:
            continue
        with _lock_file(folder).open("ab") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another run reads it
            shutil.rmtree(folder, ignore_errors=True)
            _lock_file(folder).unlink(missing_ok=True)
        total -= sizes[folder]
        removed.append(folder)
    return removed
