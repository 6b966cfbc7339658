"""The final fit: a fresh student trained once on everything a run bought, with one recipe.

    student, report = final_fit(cfg.task, cfg.student, cfg.final_fit, train, dev, seed=cfg.student.seed)

The student is scored on dev after every epoch (every few epochs for a small training set, which
gets more of them to last `recipe.min_steps` steps) and the best score's weights are kept (the
stopping point is chosen on dev, never on test); the fit ends after `recipe.patience` scores
without a gain. Then a temperature fitted on dev calibrates its probabilities (calibration.py),
folded into the head so that the saved student, `evokd predict`, `transformers.pipeline` and the
ONNX export all give them. The recipe's defaults and why: docs/method.md, "The student recipe and
the final fit" (measured by benchmarks/student_recipe.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from pydantic import BaseModel

from evokd.config import FinalFitConfig, StudentConfig, TaskConfig
from evokd.core.records import Sample

from .calibration import expected_calibration_error, fit_temperature, nll
from .model import build_student
from .protocol import Student


class FitReport(BaseModel):
    """What a final fit did: where it stopped and why, and how calibrated its probabilities are."""

    train_size: int
    seed: int
    # Dev F1 at each score, the epochs (1-based) it was scored after, and the epoch whose weights were kept.
    dev_curve: list[float]
    scored_at: list[int]
    best_epoch: int
    dev_f1: float
    epochs_run: int
    # The epochs the fit was allowed (recipe.epochs, or more to reach recipe.min_steps).
    max_epochs: int
    steps: int
    # Mean training loss over the last epoch run.
    train_loss: float
    # Dev expected calibration error and negative log-likelihood of the kept weights, before and
    # after temperature scaling (on the data the temperature was fitted on, so "after" is optimistic).
    temperature: float
    dev_ece_before: float
    dev_ece_after: float
    dev_nll_before: float
    dev_nll_after: float
    seconds: float
    recipe: FinalFitConfig


def for_task(recipe: FinalFitConfig, task: TaskConfig) -> FinalFitConfig:
    """The recipe with its task-dependent defaults filled in (min_steps: 300 for NER, 0 else)."""
    if recipe.min_steps is not None:
        return recipe
    return recipe.model_copy(update={"min_steps": NER_MIN_STEPS if task.type == "ner" else 0})


NER_MIN_STEPS = 300


def schedule(recipe: FinalFitConfig, train_size: int) -> tuple[int, int]:
    """(epochs, every): the fit's epochs, at least `recipe.epochs` and enough for `recipe.min_steps`
    steps, and how many epochs apart dev is scored, so that a small set is scored about
    `recipe.epochs` times too."""
    per_epoch = math.ceil(train_size / recipe.batch_size)
    epochs = max(recipe.epochs, math.ceil((recipe.min_steps or 0) / max(per_epoch, 1)))
    return epochs, math.ceil(epochs / recipe.epochs)


class BestOnDev:
    """An `on_epoch` callback for `Student.fit`: scores dev every `every` epochs and after the last
    one, keeps a copy of the weights of the best score (a gain must exceed `min_delta`; ties keep the
    earlier epoch) and asks the fit to stop after `patience` scores without a gain."""

    def __init__(self, student: Student, dev: list[Sample], *, epochs: int, every: int, patience: int,
                 min_delta: float = 0.0) -> None:
        self.student, self.dev = student, dev
        self.epochs, self.every, self.patience, self.min_delta = epochs, every, patience, min_delta
        self.curve: list[float] = []
        self.scored_at: list[int] = []
        self.best_epoch = 0
        self.best_f1 = float("-inf")
        self.best_weights: dict[str, torch.Tensor] | None = None

    def __call__(self, epoch: int) -> bool:
        if epoch % self.every and epoch != self.epochs:
            return False
        f1 = self.student.evaluate(self.dev).f1
        self.curve.append(f1)
        self.scored_at.append(epoch)
        if f1 > self.best_f1 + self.min_delta:
            self.best_epoch, self.best_f1, self.best_weights = epoch, f1, self.student.snapshot()
        return len(self.scored_at) - 1 - self.scored_at.index(self.best_epoch) >= self.patience

    def restore(self) -> None:
        """Put the best score's weights back (a no-op when the last one was the best)."""
        if self.best_weights is not None and self.best_epoch != self.scored_at[-1]:
            self.student.restore(self.best_weights)


def final_fit(
    task: TaskConfig,
    student_cfg: StudentConfig,
    recipe: FinalFitConfig,
    train: list[Sample],
    dev: list[Sample],
    *,
    seed: int,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[Student, FitReport]:
    """A fresh `student_cfg.model` student fitted on `train` with `recipe`, stopped at its best
    dev epoch and calibrated on dev. `seed` sets the new head, the order and the dropout, so the
    same call gives the same student. `on_step(step, total)` reports progress; total counts every
    epoch allowed, so a fit stopped early ends below it."""
    if not train:
        raise ValueError("final fit: no training samples")
    if not dev:
        raise ValueError("final fit: no dev samples to choose the stopping point on")
    started = time.perf_counter()
    recipe = for_task(recipe, task)
    cfg = student_cfg.model_copy(update={
        "learning_rate": recipe.learning_rate, "lr_schedule": recipe.lr_schedule,
        "warmup_ratio": recipe.warmup_ratio, "batch_size": recipe.batch_size, "seed": seed,
    })
    student = build_student(task, cfg)
    epochs, every = schedule(recipe, len(train))
    best = BestOnDev(student, dev, epochs=epochs, every=every, patience=recipe.patience, min_delta=recipe.min_delta)
    fitted = student.fit(train, epochs=epochs, seed=seed, on_step=on_step, on_epoch=best,
                         label_smoothing=recipe.label_smoothing)
    best.restore()
    logits, gold = student.calibration_logits(dev)
    temperature = fit_temperature(logits, gold) if recipe.calibrate else 1.0
    if temperature != 1.0:
        student.apply_temperature(temperature)
    report = FitReport(
        train_size=len(train), seed=seed, dev_curve=best.curve, scored_at=best.scored_at, best_epoch=best.best_epoch,
        dev_f1=best.best_f1, epochs_run=fitted.epochs, max_epochs=epochs, steps=fitted.steps, train_loss=fitted.loss,
        temperature=temperature,
        dev_ece_before=expected_calibration_error(logits.softmax(-1), gold),
        dev_ece_after=expected_calibration_error((logits / temperature).softmax(-1), gold),
        dev_nll_before=nll(logits, gold), dev_nll_after=nll(logits, gold, temperature),
        seconds=time.perf_counter() - started, recipe=recipe,
    )
    return student, report
