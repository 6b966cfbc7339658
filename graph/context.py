"""What every node may use besides the state: built once per process, never checkpointed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evokd.agents.client import TeacherClient
from evokd.agents.prompts import PromptSet
from evokd.config import RunConfig
from evokd.core.records import Sample
from evokd.core.runfolder import RunFolder
from evokd.core.text import normalise
from evokd.graph.callbacks import CallbackList
from evokd.student.protocol import Student

if TYPE_CHECKING:
    from evokd.graph.method import Method


@dataclass
class TaskData:
    seed: list[Sample]
    dev: list[Sample]
    test: list[Sample]
    # Labelled texts whose mistakes the student is shown (data.feedback, data.feedback_share).
    feedback: list[Sample] = field(default_factory=list)
    # Normalised dev, test and feedback texts: generated samples equal to one of them are rejected.
    eval_keys: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.eval_keys = {normalise(s.text) for s in [*self.dev, *self.test, *self.feedback]}


class StudentHolder:
    """Keeps the student in memory between nodes; reloads it from a checkpoint after a resume.

    student.model imports torch and transformers: it is imported when a run first needs a student,
    so that `evokd --help`, `--dry-run` and the pre-flight start without them."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.student: Student | None = None
        self.source: str | None = None
        self._encoder: Student | None = None

    def fresh(self) -> Student:
        from evokd.student.model import build_student  # torch, transformers: see the class doc

        self.student, self.source = build_student(self.cfg.task, self.cfg.student), None
        return self.student

    def encoder(self) -> Student:
        """A student with its pretrained weights, kept apart from the one being trained: its sentence
        embeddings do not drift with fine-tuning, so a near-duplicate means the same every round."""
        if self._encoder is None:
            from evokd.student.model import build_student  # torch, transformers: see the class doc

            self._encoder = build_student(self.cfg.task, self.cfg.student)
        return self._encoder

    def at(self, checkpoint: str) -> Student:
        if self.student is None or self.source != checkpoint:
            from evokd.student.model import load_student  # torch, transformers: see the class doc

            self.student = load_student(Path(checkpoint), self.cfg.task, self.cfg.student)
            self.source = checkpoint
        return self.student


@dataclass
class Context:
    cfg: RunConfig
    run: RunFolder
    teacher: TeacherClient
    prompts: PromptSet
    data: TaskData
    holder: StudentHolder
    method: Method
    # The trace, the live view, trackers: the nodes tell them what happens (graph/callbacks.py).
    callbacks: CallbackList = field(default_factory=CallbackList)
    # What the method's `prepare` loaded, for its nodes (None for the methods shipped).
    method_data: Any = None
