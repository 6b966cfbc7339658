"""Where evokd keeps what it computes once per machine: the teacher's weights, the pool indexes."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$EVOKD_CACHE_DIR`, else `$XDG_CACHE_HOME/evokd`, else `~/.cache/evokd`."""
    if override := os.environ.get("EVOKD_CACHE_DIR"):
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "evokd"
