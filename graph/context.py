"""What every node may use besides the state: built once per process, never checkpointed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evokd.agents.client import TeacherClient
from evokd.agents.prompts import PromptSet
from evokd.config import RunConfig
from evokd.core.records import LLMCall, Sample
from evokd.core.runfolder import RunFolder
from evokd.core.text import normalise
from evokd.core.trace import TraceWriter


@dataclass
class TaskData:
    seed: list[Sample]
    dev: list[Sample]
    test: list[Sample]
    # Normalised dev and test texts: generated samples equal to one of them are rejected.
    eval_keys: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.eval_keys = {normalise(s.text) for s in [*self.dev, *self.test]}


class StudentHolder:
    """Keeps the student in memory between nodes; reloads it from a checkpoint after a resume."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.student: Any = None
        self.source: str | None = None
        self._encoder: Any = None

    def fresh(self) -> Any:
        from evokd.student.model import build_student

        self.student, self.source = build_student(self.cfg.task, self.cfg.student), None
        return self.student

    def encoder(self) -> Any:
        """A student with its pretrained weights, kept apart from the one being trained: its sentence
        embeddings do not drift with fine-tuning, so a near-duplicate means the same every round."""
        if self._encoder is None:
            from evokd.student.model import build_student

            self._encoder = build_student(self.cfg.task, self.cfg.student)
        return self._encoder

    def at(self, checkpoint: str) -> Any:
        if self.student is None or self.source != checkpoint:
            from evokd.student.model import load_student

            self.student = load_student(Path(checkpoint), self.cfg.task, self.cfg.student)
            self.source = checkpoint
        return self.student


class Events:
    """Hooks the live view listens to; all optional so tests and replays run headless."""

    def __init__(self, node_started: Callable[[str, int], None] | None = None,
                 round_finished: Callable[[dict[str, Any]], None] | None = None,
                 llm_call: Callable[[LLMCall], None] | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> None:
        self.node_started = node_started or (lambda node, round: None)
        self.round_finished = round_finished or (lambda metrics: None)
        self.llm_call = llm_call or (lambda call: None)
        self.progress = progress or (lambda what, done, total: None)


@dataclass
class Context:
    cfg: RunConfig
    run: RunFolder
    teacher: TeacherClient
    prompts: PromptSet
    data: TaskData
    holder: StudentHolder
    trace: TraceWriter
    events: Events = field(default_factory=Events)
