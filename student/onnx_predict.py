"""Run an exported student (`evokd export RUN DIR --format onnx`) with onnxruntime, without torch.

    from evokd.student.onnx_predict import load_exported
    predictor, meta = load_exported("export-dir")
    predictor.predict([Item(text="a gripping film")])

An export directory holds `model.onnx`, the student's tokenizer files, and `evokd-export.json`
(task type, label names in the head's order, max_length, quantization, the self-check result).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from evokd.core.extras import require

from .predictor import Predictor, load_tokenizer

META_FILE = "evokd-export.json"
MODEL_FILE = "model.onnx"


class ExportError(Exception):
    """An export directory that cannot be used, or an export that failed its self-check."""


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise ExportError(f"{directory}: not an evokd export (no {META_FILE}); make one with evokd export RUN DIR")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    for key in ("task_type", "labels", "max_length"):
        if key not in meta:
            raise ExportError(f"{path}: missing {key!r}")
    return meta


def is_export(directory: Path) -> bool:
    return (Path(directory) / META_FILE).is_file()


class OnnxBackend:
    """An onnxruntime session on the CPU that returns the model's logits."""

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        ort = require("onnxruntime", "running an ONNX export (evokd predict --onnx)", "onnx")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Threads wait passively, as evokd sets OMP_WAIT_POLICY for torch: on a small machine shared with
        # the teacher or other jobs, spinning threads steal the cores the work needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
            threads = int(os.environ["OMP_NUM_THREADS"])
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feeds)[0]


def load_exported(directory: Path, threads: int | None = None) -> tuple[Predictor, dict[str, Any]]:
    """A predictor on an export directory, and the export's metadata."""
    directory = Path(directory)
    meta = read_meta(directory)
    model = directory / MODEL_FILE
    if not model.is_file():
        raise ExportError(f"{model}: not found")
    tokenizer = load_tokenizer(directory, int(meta["max_length"]))
    predictor = Predictor(tokenizer, OnnxBackend(model, threads), meta["task_type"], meta["labels"])
    return predictor, meta
