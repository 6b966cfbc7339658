"""The run folder: every stage leaves its artefact here, readable without evokd."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evokd.core.files import write_atomic


def new_run_id(name: str) -> str:
    stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40] or "run"
    return f"{stamp}-{safe}"


def describe_teacher(config: dict[str, Any]) -> str:
    """The teacher of a run's config (as a dict), as a person names it: the embedded weights (the
    embedded server's address dies with the run) or the model at its endpoint."""
    llm, teacher = config.get("llm", {}), config.get("teacher", {})
    if llm.get("base_url"):
        return f"{llm.get('model', '?')} at {llm['base_url']}"
    weights = Path(teacher["gguf"]).name if teacher.get("gguf") else teacher.get("weights", "?")
    return f"{weights} (embedded llama.cpp teacher)"


def describe_budget(config: dict[str, Any]) -> dict[str, float | int]:
    """The limits a run's config sets: max_rounds, and max_tokens, max_cost, max_minutes if set."""
    loop = config.get("loop", {})
    return {key: loop[key] for key in ("max_rounds", "max_tokens", "max_cost", "max_minutes")
            if loop.get(key) is not None}


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @classmethod
    def create(cls, runs_dir: Path, name: str) -> RunFolder:
        runs_dir.mkdir(parents=True, exist_ok=True)
        base = new_run_id(name)
        # Two runs started in the same second get distinct folders; mkdir is the atomic claim.
        for n in range(1000):
            root = runs_dir / (base if n == 0 else f"{base}-{n}")
            try:
                root.mkdir()
            except FileExistsError:
                continue
            return cls(root)
        raise RuntimeError(f"could not create a run folder under {runs_dir}")

    config = property(lambda self: self.root / "config.toml")
    trace = property(lambda self: self.root / "trace.jsonl")
    samples = property(lambda self: self.root / "samples.jsonl")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    summary = property(lambda self: self.root / "summary.md")
    report = property(lambda self: self.root / "report.html")
    checkpoints_db = property(lambda self: self.root / "checkpoints.sqlite")
    student = property(lambda self: self.root / "student")
    # With the final fit, student/ is the final student and the best round's is set aside here.
    best_round_student = property(lambda self: self.root / "best_round_student")
    final_fit = property(lambda self: self.root / "final_fit.json")
    # The final fit's student when the best round's ships instead (final_fit.ship).
    final_fit_student = property(lambda self: self.root / "final_fit_student")
    rounds = property(lambda self: self.root / "rounds")
    teacher_log = property(lambda self: self.root / "teacher-server.log")
    result = property(lambda self: self.root / "result.json")

    def round_checkpoint(self, round: int) -> Path:
        return self.rounds / f"round_{round:03d}" / "student"

    def keep_best(self, checkpoint: Path) -> None:
        """Make student/ the round's checkpoint, swapping it in with a rename. The files are hard
        links to the checkpoint's (a save never rewrites a file in place, it swaps in a new
        directory), so the best student is stored once however many rounds keep it."""
        tmp = self.root / ".student.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(checkpoint, tmp, copy_function=_link_or_copy)
        old = self.root / ".student.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.student.exists():
            self.student.rename(old)
        tmp.rename(self.student)
        shutil.rmtree(old, ignore_errors=True)

    def set_aside_best_round(self) -> None:
        """Move the best round's student/ to best_round_student/, once: a redone final fit (after a
        resume) finds it there already, and student/ empty or half replaced."""
        if not self.best_round_student.exists():
            self.student.rename(self.best_round_student)

    def best_round(self) -> Path:
        """The best round's student: set aside by a final fit, else student/."""
        return self.best_round_student if self.best_round_student.exists() else self.student

    def final_fit_at(self) -> Path:
        """The final fit's student: final_fit_student/ when it did not ship, else student/."""
        return self.final_fit_student if self.final_fit_student.exists() else self.student

    def prune_checkpoints(self, keep: set[int]) -> None:
        """Round checkpoints are 90 MB each: delete all but the rounds in `keep`."""
        if not self.rounds.exists():
            return
        for path in self.rounds.glob("round_*/student"):
            if int(path.parent.name.split("_")[1]) not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def checkpoint_rounds(self) -> list[int]:
        """The rounds whose student checkpoint is on disk."""
        if not self.rounds.exists():
            return []
        return sorted(int(p.parent.name.split("_")[1]) for p in self.rounds.glob("round_*/student"))

    def write_round_artifact(self, round: int, name: str, data: object) -> None:
        write_atomic(self.rounds / f"round_{round:03d}" / name,
                     json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)
