"""The run folder: every stage leaves its artefact here, readable without evokd."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from evokd.core.trace import write_atomic


def new_run_id(name: str) -> str:
    stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40] or "run"
    return f"{stamp}-{safe}"


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
    rounds = property(lambda self: self.root / "rounds")
    teacher_log = property(lambda self: self.root / "teacher-server.log")
    result = property(lambda self: self.root / "result.json")

    def round_checkpoint(self, round: int) -> Path:
        return self.rounds / f"round_{round:03d}" / "student"

    def keep_best(self, checkpoint: Path) -> None:
        """Copy a round's checkpoint to student/, swapping it in with a rename."""
        tmp = self.root / ".student.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(checkpoint, tmp)
        old = self.root / ".student.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.student.exists():
            self.student.rename(old)
        tmp.rename(self.student)
        shutil.rmtree(old, ignore_errors=True)

    def prune_checkpoints(self, keep: set[int]) -> None:
        """Round checkpoints are 90 MB each: keep only those a resume or the best may need."""
        if not self.rounds.exists():
            return
        for path in self.rounds.glob("round_*/student"):
            if int(path.parent.name.split("_")[1]) not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def write_round_artifact(self, round: int, name: str, data: object) -> None:
        write_atomic(self.rounds / f"round_{round:03d}" / name,
                     json.dumps(data, indent=2, ensure_ascii=False) + "\n")
