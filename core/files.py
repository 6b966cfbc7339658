"""Files, written whole or not at all and read as UTF-8 with a one-line error naming the file.

Every evokd file write that must survive a crash (run files, predictions, benchmark results) goes
through `write_atomic`; every text file evokd reads from the user (configs, data, inputs to label)
through `read_text` or, for a file read as a stream, `decoding`. Pure helpers over paths; this
module imports nothing of evokd.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


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
    """Write a file so a crash leaves the old version or the new one, never half of either; the text
    is written as given (no newline translation) with the mode a plain open() would give it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
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


@contextmanager
def decoding(path: Path, error: type[Exception] = ValueError) -> Iterator[None]:
    """Turn a decoding failure anywhere in the block (a file read as a stream) into `error` naming
    the file."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from exc


def read_text(path: Path, error: type[Exception] = ValueError, what: str = "file") -> str:
    """A text file as UTF-8 (a byte-order mark is dropped); a missing file or another encoding is
    `error` with a one-line message naming it."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    with decoding(path, error):
        return path.read_text(encoding="utf-8-sig")


@overload
def read_jsonl(path: Path, model: type[M], *, missing_ok: bool = ..., error: type[Exception] = ...) -> list[M]: ...
@overload
def read_jsonl(path: Path, model: None = ..., *, missing_ok: bool = ...,
               error: type[Exception] = ...) -> list[dict[str, Any]]: ...
def read_jsonl(path: Path, model: type[M] | None = None, *, missing_ok: bool = False,
               error: type[Exception] = ValueError) -> list[M] | list[dict[str, Any]]:
    """The rows of a JSONL file evokd wrote (metrics.jsonl, samples.jsonl), as `model` records or
    dicts; blank lines are skipped. A missing file is FileNotFoundError (or no rows, `missing_ok`),
    a bad line `error` naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return []
        raise FileNotFoundError(f"{path}: no such file")
    rows: list[Any] = []
    for number, line in enumerate(read_text(path, error).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(model.model_validate_json(line) if model is not None else json.loads(line))
        except (ValidationError, ValueError) as exc:
            what = f"a {model.__name__}" if model is not None else "JSON"
            raise error(f"{path}:{number}: not {what}: {exc}") from exc
    return rows
