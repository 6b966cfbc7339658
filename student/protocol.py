"""What the loop needs from a student, whatever the task: the seam between graph/ and student/.

This module imports neither torch nor transformers: graph/ types its student with `Student` and
loads the real one (student.model) only when a run first trains.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel

from evokd.config import StudentConfig, TaskConfig
from evokd.core.records import DevPredictions, EvalReport, Prediction, Sample

if TYPE_CHECKING:
    import torch


class FitResult(BaseModel):
    # Mean training loss over the last epoch (dropout on): a cheap signal of how well the data is fit.
    loss: float
    steps: int
    seconds: float
    # Epochs run: fewer than asked when `on_epoch` stopped the fit.
    epochs: int = 0


class Student(Protocol):
    task: TaskConfig
    cfg: StudentConfig

    def fit(self, samples: list[Sample], *, epochs: int, seed: int,
            on_step: Callable[[int, int], None] | None = None,
            on_epoch: Callable[[int], bool] | None = None,
            label_smoothing: float = 0.0) -> FitResult:
        """Train from the current weights; `on_step(step, total)` after each step, `on_epoch(epoch)`
        after each epoch (True ends the fit there)."""
        ...

    def calibration_logits(self, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [n, classes] and gold class ids [n] that predicted probabilities are read from."""
        ...

    def apply_temperature(self, temperature: float) -> None:
        """Divide every logit by `temperature` from now on (folded into the output layer)."""
        ...

    @property
    def temperature(self) -> float:
        """The temperature folded in so far (1.0: none)."""
        ...

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A copy of the weights in memory, for `restore`."""
        ...

    def restore(self, weights: dict[str, torch.Tensor]) -> None:
        ...

    def predict(self, samples: list[Sample]) -> list[Prediction]:
        """Predictions in input order."""
        ...

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Unit-length sentence vectors, one row per text (how the student sees a text)."""
        ...

    def evaluate(self, samples: list[Sample]) -> EvalReport:
        """Predict and score against the samples' gold labels or tags."""
        ...

    def score(self, samples: list[Sample], predictions: list[Prediction]) -> tuple[EvalReport, DevPredictions]:
        """The report of predictions of `samples`, and the per-example record it came from."""
        ...

    def save(self, directory: Path) -> None:
        """The model and its tokenizer in the plain Hugging Face layout, swapped in whole."""
        ...
