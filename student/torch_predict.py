"""The PyTorch student behind the shared `Predictor` (what `evokd predict RUN` uses)."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch

from .model import Student
from .predictor import Predictor, load_tokenizer


class TorchBackend:
    """The student's transformers model, in inference mode on its device."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model.eval()
        accepted = inspect.signature(model.forward).parameters
        self.input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]
        self.device = next(model.parameters()).device

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v).to(self.device) for k, v in feeds.items()}
            return self.model(**inputs).logits.float().cpu().numpy()


def torch_predictor(student: Student, directory: Path) -> Predictor:
    """A predictor on a loaded student; `directory` is where it was saved (its tokenizer.json)."""
    tokenizer = load_tokenizer(directory, student.max_length)  # type: ignore[attr-defined]
    return Predictor(tokenizer, TorchBackend(student.model), student.task.type,  # type: ignore[attr-defined]
                     student.label_names)  # type: ignore[attr-defined]
