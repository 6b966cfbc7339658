"""What a run folder keeps: one copy of the best student, no checkpoint a finished run no longer
needs, files any colleague (or web server) can read as the umask allows."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SentimentTeacher, write_config
from typer.testing import CliRunner

from evokd.agents.scripted import ScriptedChatModel
from evokd.config import load_config
from evokd.core.files import normal_mode, write_atomic, write_jsonl_atomic
from evokd.core.records import DevPredictions, RoundMetrics
from evokd.core.runfolder import RunFolder
from evokd.graph.runner import execute


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_atomic_writes_follow_the_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        write_atomic(tmp_path / "a.txt", "x")
        write_jsonl_atomic(tmp_path / "b.jsonl", [{"a": 1}])
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.txt") == 0o666 & ~mask
    assert mode(tmp_path / "b.jsonl") == 0o666 & ~mask


def test_normal_mode_on_a_directory(tmp_path: Path, umask_027: None) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "w.bin").write_bytes(b"x")
    os.chmod(tmp_path / "d" / "e" / "w.bin", 0o600)
    os.chmod(tmp_path / "d" / "e", 0o700)
    normal_mode(tmp_path / "d")
    assert mode(tmp_path / "d" / "e") == 0o750 and mode(tmp_path / "d" / "e" / "w.bin") == 0o640


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> RunFolder:
    tmp = tmp_path_factory.mktemp("folder")
    old = os.umask(0o022)
    try:
        cfg = load_config(write_config(tmp, tiny_model_dir, max_rounds=2))
        return execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher())).run
    finally:
        os.umask(old)


def test_finished_run_keeps_one_student(finished: RunFolder) -> None:
    assert (finished.student / "model.safetensors").is_file()
    assert finished.checkpoint_rounds() == []
    # The per-round records stay: metrics and the dev predictions the report bootstraps from.
    for r in (0, 1, 2):
        RoundMetrics.model_validate_json((finished.rounds / f"round_{r:03d}" / "metrics.json").read_text())
        preds = DevPredictions.model_validate_json(
            (finished.rounds / f"round_{r:03d}" / "dev_predictions.json").read_text())
        assert preds.task == "classification" and len(preds.gold) == len(preds.predicted) == 48
    assert not list(finished.root.glob(".*"))  # no staging leftovers


def test_run_folder_files_are_readable(finished: RunFolder) -> None:
    for path in finished.root.rglob("*"):
        expected = 0o755 if path.is_dir() else 0o644
        assert mode(path) == expected, (path, oct(mode(path)))


def test_finished_folder_still_predicts_and_reports(finished: RunFolder) -> None:
    from evokd.cli import app

    result = CliRunner().invoke(app, ["predict", str(finished.root), "A great and superb delight."])
    assert result.exit_code == 0, result.output
    assert "A great and superb delight." in result.output
    result = CliRunner().invoke(app, ["report", str(finished.root)])
    assert result.exit_code == 0, result.output


def test_summary_names_the_teacher_model(finished: RunFolder) -> None:
    summary = finished.summary.read_text()
    # write_config points at an endpoint: its model, not a loopback port of an embedded server.
    assert "- teacher: local-teacher at http://scripted.invalid/v1" in summary


def test_describe_teacher_embedded() -> None:
    from evokd.core.runfolder import describe_teacher

    assert describe_teacher({"llm": {"base_url": None, "model": "local-teacher"},
                             "teacher": {"weights": "qwen2.5-coder-1.5b", "gguf": None}}) \
        == "qwen2.5-coder-1.5b (embedded llama.cpp teacher)"
