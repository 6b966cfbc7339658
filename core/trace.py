"""The run folder's append-only trace: one typed record per line."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, TypeAdapter, ValidationError

from evokd.core.files import read_text
from evokd.core.records import TraceRecord

_TRACE = TypeAdapter(TraceRecord)


class TraceError(Exception):
    pass


class TraceWriter:
    """Appends one JSON line per record, flushed at once so a crash loses at most the last line."""

    def __init__(self, path: Path, secrets: Iterable[str] = ()) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(path)
        self._fh = path.open("a", encoding="utf-8")
        # Verifier batches may run in threads (llm.concurrency): one record, one whole line.
        self._lock = threading.Lock()
        # Defence in depth: nothing should carry a key, but if it does it never reaches disk.
        self._secrets = [s for s in secrets if s and len(s) >= 8]

    def write(self, record: BaseModel) -> None:
        line = record.model_dump_json()
        for secret in self._secrets:
            line = line.replace(secret, "[redacted]")
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line a crash left half-written, so records appended by a resume start on a line
    of their own (else the torn line and the next record would fuse into one unreadable line)."""
    if not path.exists():
        return
    with path.open("rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        # Scan back for the last newline in chunks; no newline at all: the whole file is torn.
        end = size
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            cut = fh.read(end - start).rfind(b"\n")
            if cut != -1:
                fh.truncate(start + cut + 1)
                return
            end = start
        fh.truncate(0)


def read_trace(path: Path) -> Iterator[TraceRecord]:
    """Validated records; a torn last line (a crash mid-write) is skipped, any other bad line is an error."""
    lines = read_text(path, TraceError).splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield _TRACE.validate_json(line)
        except ValidationError as exc:
            if number == len(lines):
                return
            raise TraceError(f"{path}:{number}: not a trace record: {exc.errors()[0]['msg']}") from exc
