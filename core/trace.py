"""The run folder's append-only trace and its atomic file writes."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from evokd.core.records import TraceRecord

_TRACE = TypeAdapter(TraceRecord)


class TraceError(Exception):
    pass


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (os.umask can only
    set it, and setting it for a moment would race with files created by other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_mode(path: Path) -> None:
    """Give a file (or a directory and everything in it) the mode a plain open() or mkdir would
    have: 0666 or 0777 minus the umask. mkstemp makes files 0600, and so do some libraries' saves
    (safetensors), which would make a run folder unreadable to a colleague or a web server."""
    mask = current_umask()
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        if p.is_symlink():
            continue
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def write_atomic(path: Path, text: str) -> None:
    """Write a file so a crash leaves the old version or the new one, never half of either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl_atomic(path: Path, rows: Iterable[BaseModel | dict[str, Any]]) -> None:
    lines = [r.model_dump_json() if isinstance(r, BaseModel) else json.dumps(r, ensure_ascii=False)
             for r in rows]
    write_atomic(path, "".join(line + "\n" for line in lines))


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
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield _TRACE.validate_json(line)
        except ValidationError as exc:
            if number == len(lines):
                return
            raise TraceError(f"{path}:{number}: not a trace record: {exc.errors()[0]['msg']}") from exc
