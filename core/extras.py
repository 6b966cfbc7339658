"""Optional features and the extra that installs each: a missing one is one line with the command.

Every feature behind an extra imports its packages through `require`, so a fresh `.[local]` install
asked to export ONNX, read [data.hf], log to MLflow or run on Ray says which extra to install
instead of ending in an ImportError's traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(Exception):
    """An optional feature whose packages are not installed; the message is one line."""


def require(module: str, feature: str, extra: str) -> ModuleType:
    """Import `module` for `feature`, or raise MissingExtra naming `pip install "evokd[extra]"`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise MissingExtra(f'{feature} needs {package}, which is not installed: pip install "evokd[{extra}]"'
                           ) from exc
