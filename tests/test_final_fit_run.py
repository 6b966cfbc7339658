"""The final fit as part of a run (graph/final_fit.py): it runs when the loop stops, ships as student/,
is recorded (result.json, summary.md, the trace), redone by a resume that was killed in it, and
reproduced by a replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SentimentTeacher, write_config
from rich.console import Console

import evokd.graph.final_fit as graph_final_fit
import evokd.student.final_fit as student_final_fit
from evokd.agents.scripted import ScriptedChatModel
from evokd.config import load_config
from evokd.core.records import NodeTurn, RunResult
from evokd.core.runfolder import RunFolder
from evokd.core.trace import read_trace
from evokd.graph import replay
from evokd.graph.prepare import load_task_data
from evokd.graph.runner import execute, resume_config
from evokd.student.model import load_student


def run(tmp_path: Path, model_dir: Path, *overrides: str, folder: RunFolder | None = None, resume: bool = False):
    cfg = load_config(write_config(tmp_path, model_dir, method="evokd", max_rounds=1),
                      ["final_fit.epochs=3", "final_fit.patience=2", *overrides])
    return execute(cfg, run=folder, resume=resume, chat_model=ScriptedChatModel(script=SentimentTeacher()))


def result_of(folder: RunFolder) -> RunResult:
    return RunResult.model_validate_json(folder.result.read_text())


def test_a_run_ends_with_a_final_fit_on_everything_accepted(tmp_path: Path, tiny_model_dir: Path) -> None:
    done = run(tmp_path, tiny_model_dir, 'final_fit.ship="final_fit"')
    folder, state = done.run, done.state
    nodes = [r.node for r in read_trace(folder.trace) if isinstance(r, NodeTurn)]
    assert nodes[-3:] == ["decide", "final_fit", "finish"]
    result = result_of(folder)
    final = result.final_fit
    assert final is not None and final.test_f1 is not None and result.test_f1 is not None
    accepted = [s for s in state["samples"] if s["accepted"]]
    assert final.train_size == len(accepted) > sum(1 for s in accepted if s["intent"] == "seed")
    assert 1 <= final.best_epoch <= final.epochs_run <= 3
    # student/ is the final fit's (calibrated: its temperature is in its config); the best round's is kept.
    shipped = load_student(folder.student, result_cfg(folder).task, result_cfg(folder).student)
    assert shipped.temperature == pytest.approx(final.temperature)
    assert (folder.best_round_student / "config.json").is_file()
    assert json.loads((folder.best_round_student / "config.json").read_text()).get("evokd_temperature") is None
    assert json.loads(folder.final_fit.read_text())["dev_f1"] == final.dev_f1
    summary = folder.summary.read_text()
    assert final.shipped
    assert f"| final fit (epoch {final.best_epoch}) · ships | {final.dev_f1:.4f} | {final.test_f1:.4f} |" in summary
    assert f"{final.dev_ece_before:.4f} before, {final.dev_ece_after:.4f} after" in summary
    # The log-loss is what the temperature was fitted to lower, and it never rises.
    assert final.dev_nll_before is not None and final.dev_nll_after is not None
    assert final.dev_nll_after <= final.dev_nll_before + 1e-9
    assert f"dev log-loss {final.dev_nll_before:.4f} before, {final.dev_nll_after:.4f} after" in summary
    assert "final fit (student/, ships)" in folder.report.read_text()
    console = Console(record=True, width=250)
    replay.compare(folder.root, folder.root, console)
    assert f"dev F1 {final.dev_f1:.4f}, test F1 {final.test_f1:.4f}" in console.export_text()


def result_cfg(folder: RunFolder):
    return load_config(folder.config)


@pytest.mark.parametrize(("final_dev", "round_dev", "rule", "expected"), [
    (0.70, 0.65, "better_on_dev", True), (0.65, 0.65, "better_on_dev", True),  # ties: the final fit
    (0.35, 0.55, "better_on_dev", False), (0.35, 0.55, "final_fit", True), (0.35, None, "better_on_dev", True)])
def test_the_final_fit_ships_unless_the_best_round_scored_higher_on_dev(
        final_dev: float, round_dev: float | None, rule: str, expected: bool) -> None:
    assert graph_final_fit.ships(rule, final_dev, round_dev) is expected


def test_when_the_best_round_scores_higher_on_dev_it_ships(tmp_path: Path, tiny_model_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # A final fit on a tiny pool that scores below the best round on dev: forced here, measured on
    # SST-2 at 3,000 tokens (docs/benchmarks/results.md).
    monkeypatch.setattr(graph_final_fit, "ships", lambda rule, final_dev, round_dev: False)
    folder = run(tmp_path, tiny_model_dir).run
    result = result_of(folder)
    final = result.final_fit
    assert final is not None and not final.shipped and final.test_f1 is not None
    cfg = result_cfg(folder)
    # student/ is the best round's (uncalibrated) student, the final fit's is kept beside it, each scored.
    shipped = load_student(folder.student, cfg.task, cfg.student)
    fitted = load_student(folder.final_fit_student, cfg.task, cfg.student)
    assert shipped.temperature is None or shipped.temperature == 1.0
    assert fitted.temperature == pytest.approx(final.temperature)
    assert (folder.student / "config.json").read_text() == (folder.best_round_student / "config.json").read_text()
    data_test = load_task_data(cfg).test
    assert shipped.evaluate(data_test).f1 == pytest.approx(result.test_f1) == pytest.approx(result.shipped_test_f1)
    assert fitted.evaluate(data_test).f1 == pytest.approx(final.test_f1)
    summary = folder.summary.read_text()
    assert f"| best (round {result.best_round}) · ships | {result.best_f1:.4f} |" in summary
    assert "it is in `student/` (and `best_round_student/`), the final fit's in `final_fit_student/`" in summary
    page = folder.report.read_text()
    assert "best round (student/, ships: higher on dev than the final fit)" in page
    assert "final fit (final_fit_student/)" in page


def test_runs_recorded_before_the_choice_resume_with_the_final_fit_shipping(tmp_path: Path,
                                                                           tiny_model_dir: Path) -> None:
    folder = run(tmp_path, tiny_model_dir).run
    assert resume_config(folder.root)[0].final_fit.ship == "better_on_dev"
    # The trace header of an older run: its config has a [final_fit] section without `ship`.
    lines = folder.trace.read_text().splitlines()
    header = json.loads(lines[0])
    del header["config"]["final_fit"]["ship"]
    folder.trace.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    assert resume_config(folder.root)[0].final_fit.ship == "final_fit"


def test_final_fit_off_keeps_the_best_rounds_student(tmp_path: Path, tiny_model_dir: Path) -> None:
    done = run(tmp_path, tiny_model_dir, "loop.final_fit=false")
    nodes = [r.node for r in read_trace(done.run.trace) if isinstance(r, NodeTurn)]
    assert "final_fit" not in nodes
    assert result_of(done.run).final_fit is None
    assert not done.run.best_round_student.exists() and not done.run.final_fit.exists()
    assert "final fit" not in done.run.summary.read_text()


class Killed(Exception):
    pass


def dies(*args: object, **kwargs: object) -> None:
    raise Killed


@pytest.mark.parametrize("when", ["during the fit", "after student/ was replaced"])
def test_a_run_killed_in_its_final_fit_resumes_to_the_same_end(tmp_path: Path, tiny_model_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    whole = result_of(run(tmp_path / "whole", tiny_model_dir).run)

    real_fit = student_final_fit.final_fit

    def dies_in_the_fit(*args, **kwargs):
        def on_step(done: int, total: int) -> None:
            if done == 2:
                raise Killed
        return real_fit(*args, **{**kwargs, "on_step": on_step})

    if when == "during the fit":
        monkeypatch.setattr(student_final_fit, "final_fit", dies_in_the_fit)
    else:  # final_fit.json is written after the student is saved: die there
        monkeypatch.setattr(graph_final_fit, "write_atomic", dies)
    cfg = load_config(write_config(tmp_path / "killed", tiny_model_dir, method="evokd", max_rounds=1),
                      ["final_fit.epochs=3", "final_fit.patience=2"])
    folder = RunFolder.create(cfg.runs_dir, cfg.name)
    with pytest.raises(Killed):
        execute(cfg, run=folder, chat_model=ScriptedChatModel(script=SentimentTeacher()))
    assert not folder.result.exists() and folder.best_round_student.is_dir()
    assert folder.student.is_dir() == (when != "during the fit")
    monkeypatch.undo()

    chat = ScriptedChatModel(script=SentimentTeacher())
    resumed = execute(cfg, run=folder, resume=True, chat_model=chat)
    assert chat.requests == []  # only the final fit and finish were left to do
    assert resumed.state["stop_reason"] == "max_rounds"
    again = result_of(folder)
    assert again.final_fit is not None and whole.final_fit is not None
    for key in ("train_size", "dev_f1", "test_f1", "best_epoch", "epochs_run", "temperature", "dev_ece_after"):
        assert getattr(again.final_fit, key) == getattr(whole.final_fit, key), key
    assert (again.best_f1, again.test_f1) == (whole.best_f1, whole.test_f1)  # the best round's student is intact
    turns = [r.node for r in read_trace(folder.trace) if isinstance(r, NodeTurn) and r.error is None]
    assert turns.count("final_fit") == 1 and turns[-1] == "finish"


def test_replay_reproduces_the_final_fit(tmp_path: Path, tiny_model_dir: Path) -> None:
    original = run(tmp_path, tiny_model_dir).run
    rerun, diffs = replay.rerun(original.root, out=tmp_path / "rerun")
    assert [d.name for d in diffs] == ["round 0", "round 1", "final fit"]
    assert all(d.same for d in diffs), diffs
    assert diffs[-1].original == result_of(original).final_fit.dev_f1  # type: ignore[union-attr]
    assert result_of(rerun.run).final_fit.test_f1 == result_of(original).final_fit.test_f1  # type: ignore[union-attr]


def test_refit_runs_reproduces_a_runs_own_final_fit(tmp_path: Path, tiny_model_dir: Path) -> None:
    # benchmarks/refit_runs.py measures a setting against the run's own final fit: a refit that
    # changes nothing must give the same student, or its differences are noise.
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("evokd_refit_runs", ROOT / "benchmarks" / "refit_runs.py")
    refit_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refit_runs)  # type: ignore[union-attr]
    folder = run(tmp_path, tiny_model_dir).run
    row = refit_runs.refit(folder.root, ["final_fit.weigh_by_teacher=false"])
    assert row["pool"] == result_of(folder).final_fit.train_size  # type: ignore[union-attr]
    assert row["after"]["dev_f1"] == row["before"]["dev_f1"]
    assert row["after"]["test_f1"] == pytest.approx(row["before"]["test_f1"])
