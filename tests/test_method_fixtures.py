"""Runs of every method recorded before the method modules (issue 24), re-executed by the code as it
is now: `evokd replay --rerun` must give the same dev metrics, samples and outcome round by round,
and a run interrupted in round 1 must resume to the same end as the uninterrupted one.

The fixtures (tests/fixtures/methods/, recorded by tests/fixtures/record_methods.py with evokd 0.2.0
at 1ac939a) are not to be regenerated to make this pass: a difference here is a change of behaviour.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import ROOT
from teachers import FixtureTeacher

from evokd.agents.scripted import ScriptedChatModel
from evokd.core.runfolder import RunFolder
from evokd.graph import replay
from evokd.graph.prepare import load_task_data
from evokd.graph.runner import execute, resume_config
from evokd.student.model import build_student

FIXTURES = Path(__file__).parent / "fixtures" / "methods"
RECORDED = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and not p.name.endswith("-resume"))
INTERRUPTED = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and p.name.endswith("-resume"))
ROUND_FIELDS = ("round", "f1", "dev", "accepted", "rejected", "train_size", "train_loss", "best_round", "method",
                "tokens_in", "tokens_out", "cost")
RESULT_FIELDS = ("method", "task_type", "labels", "stop_reason", "stop_detail", "rounds", "seed_f1", "best_round",
                 "best_f1", "test_f1", "accepted", "rejected", "tokens_in", "tokens_out", "cost")


def copy_fixture(name: str, to: Path, student: Path) -> Path:
    """The fixture in a folder of its own, its config naming the tiny student and the shipped data."""
    shutil.copytree(FIXTURES / name, to)
    config = to / "config.toml"
    config.write_text(config.read_text().replace('"TINY_STUDENT"', json.dumps(str(student)))
                      .replace("../../../../examples", str(ROOT / "examples")))
    return to


class Close:
    """A float equal to another within a relative 1e-5 (None only to None)."""

    def __init__(self, value: float | None) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Close):
            return NotImplemented
        if self.value is None or other.value is None:
            return self.value is other.value
        return math.isclose(self.value, other.value, rel_tol=1e-5, abs_tol=2e-6)

    def __repr__(self) -> str:
        return f"~{self.value}"


def outcome(run_dir: Path) -> dict:
    """What a run came to, without its times and run id: per round, per sample, and at the end."""
    def jsonl(name: str) -> list[dict]:
        return [json.loads(line) for line in (run_dir / name).read_text().splitlines() if line.strip()]

    result = json.loads((run_dir / "result.json").read_text())
    # The training loss to a relative 1e-5: its last digits differ between CPUs and library builds
    # (float sums in another order) while every prediction, score and sample stays the same.
    return {"rounds": [{k: Close(m[k]) if k == "train_loss" else m[k] for k in ROUND_FIELDS}
                       for m in jsonl("metrics.jsonl")],
            # The student's confidence likewise (rounded to 6 decimals, so its last one may flip).
            "samples": [{k: Close(v) if k == "confidence" else v for k, v in sample.items()}
                        for sample in jsonl("samples.jsonl")],
            "result": {k: result[k] for k in RESULT_FIELDS}}


@pytest.mark.parametrize("name", RECORDED)
def test_rerun_of_a_recorded_run(name: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    run = copy_fixture(name, tmp_path / name, tiny_model_dir)
    result, diffs = replay.rerun(run, out=tmp_path / "rerun")
    assert diffs and all(d.same for d in diffs), diffs
    before, after = outcome(run), outcome(result.run.root)
    assert after["rounds"] == before["rounds"]
    assert as_recorded(after["samples"], before["samples"]) == before["samples"]
    assert after["result"] == before["result"]


def as_recorded(samples: list[dict], recorded: list[dict]) -> list[dict]:
    """The samples with the fields the recording has; a field added since (teacher_p) must be empty."""
    assert len(samples) == len(recorded)
    for sample, old in zip(samples, recorded, strict=True):
        assert all(sample[k] is None for k in sample.keys() - old.keys()), sample
    return [{k: v for k, v in sample.items() if k in old} for sample, old in zip(samples, recorded, strict=True)]


def test_the_fixtures_cover_every_method_and_stop() -> None:
    results = [json.loads((FIXTURES / name / "result.json").read_text()) for name in RECORDED]
    assert {r["method"] for r in results} == {"evokd", "evokd-paper", "llm2llm", "static", "augment"}
    assert {r["stop_reason"] for r in results} == {"max_rounds", "max_tokens"}
    assert {r["task_type"] for r in results} == {"classification", "ner"}


@pytest.mark.parametrize("name", INTERRUPTED)
def test_a_0_2_run_interrupted_in_round_1_resumes(name: str, tmp_path: Path, tiny_model_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The run folder is relative, as it was recorded: its checkpoints name the students by relative paths.
    copy_fixture(name, tmp_path / "run", tiny_model_dir)
    monkeypatch.chdir(tmp_path)
    run = RunFolder(Path("run"))
    cfg, _ = resume_config(run.root)
    # The fixture leaves out the round-0 student the resume starts from: trained here as the seed round did.
    student = build_student(cfg.task, cfg.student)
    student.fit(load_task_data(cfg).seed, epochs=cfg.student.seed_epochs, seed=cfg.student.seed)
    student.save(run.round_checkpoint(0))
    run.keep_best(run.round_checkpoint(0))

    result = execute(cfg, run=run, resume=True, chat_model=ScriptedChatModel(script=FixtureTeacher()))
    assert result.state["stop_reason"] == "max_rounds"
    uninterrupted = outcome(FIXTURES / name.removesuffix("-resume"))
    resumed = outcome(run.root)
    assert resumed["rounds"] == uninterrupted["rounds"]
    assert as_recorded(resumed["samples"], uninterrupted["samples"]) == uninterrupted["samples"]
    assert resumed["result"] == uninterrupted["result"]
