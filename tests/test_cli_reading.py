"""Reading runs from the command line: replay's lines and errors, compare, help, prompts show."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evokd.cli import app

FIXTURE = Path(__file__).parent / "fixtures" / "demo-run"
LONG = "The restaurant was poorly prepared and the food was disappointing."


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_replay_piped_does_not_wrap() -> None:
    result = invoke("replay", str(FIXTURE))
    assert result.exit_code == 0, result.output
    # Not a terminal: one line per tree line, however long (CliRunner's stdout is not a tty).
    assert any(len(line) > 120 for line in result.output.splitlines())
    assert f'hard: "{LONG}" accepted as positive' in result.output


def test_replay_lines_per_node() -> None:
    out = invoke("replay", str(FIXTURE)).output
    assert re.search(r"seed [\d.]+s: picked 2 gold seed examples: \"The battery died after two days and support "
                     r"never replied\.\" \(negative\)", out)
    assert re.search(r"probe [\d.]+s: student right on 2, wrong on 0", out)
    assert re.search(r"trainer [\d.]+s: trained on 5 samples; dev F1 0\.5152 \(best so far: round 0\)", out)
    # Verdicts read as sentences, not "-> None duplicate ...".
    assert '"The weather was miserable and we were sad." rejected: duplicate of an earlier sample' in out
    assert 'rejected (labelled none): label \'none\' not in the label set' in out
    assert "-> None" not in out
    assert "teacher qwen2.5-coder-0.5b (embedded llama.cpp teacher)" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--round", "9"], "no round 9 in this run (it has rounds 0-2)"),
    (["--node", "nosuch"], "no node 'nosuch' in this run (it has analyst, decide, finish, generator, probe, seed, "
                           "trainer, verifier)"),
    (["--json", "--round", "9"], "no round 9 in this run"),
])
def test_replay_unknown_round_or_node(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["replay", str(FIXTURE), *args])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert result.stdout == ""


def test_compare_rejects_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["compare", str(tmp_path), str(FIXTURE)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {tmp_path}: not a run folder (a run folder has config.toml and " \
                                    "metrics.jsonl)"
    assert "Errno" not in result.output and result.stdout == ""


def test_compare_side_by_side(tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(FIXTURE, other)
    config = (other / "config.toml").read_text().replace("max_rounds = 2", "max_rounds = 3")
    (other / "config.toml").write_text(config.replace("n_hard = 3", "n_hard = 4"))
    (other / "result.json").write_text(
        '{"run_id": "other", "task_name": "sentiment", "task_type": "classification", '
        '"labels": ["negative", "positive"], "method": "evokd", "teacher_model": "local-teacher", '
        '"teacher_url": "http://127.0.0.1:1/v1", "student_model": "default", "stop_reason": "max_rounds", '
        '"rounds": 2, "seed_f1": 0.57, "best_round": 0, "best_f1": 0.57, "test_f1": 0.4321, "accepted": 5, '
        '"rejected": 7, "tokens_in": 1676, "tokens_out": 375, "cost": 0.0, "seconds": {}}')
    result = invoke("compare", str(FIXTURE), str(other))
    assert result.exit_code == 0, result.output
    out = result.output
    for row in ["best round", "test F1 (best round)", "stop reason", "teacher tokens", "cost", "time"]:
        assert row in out, row
    assert re.search(r"best round\s*│ 0 \(dev F1 0\.5714\)\s*│ 0 \(dev F1 0\.5714\)", out)
    assert re.search(r"test F1 \(best round\)\s*│ not scored\s*│ 0\.4321", out)
    assert re.search(r"stop reason\s*│ unfinished \(no result\.json\)\s*│ max_rounds", out)
    assert re.search(r"teacher tokens\s*│ 2051 \(1676 in, 375 out\)", out)
    assert re.search(r"loop\.max_rounds\s*│ 2\s*│ 3", out) and re.search(r"loop\.n_hard\s*│ 3\s*│ 4", out)
    assert "loop.n_easy" not in out


@pytest.mark.parametrize("command", [["run"], ["predict"], ["replay"], ["report"], ["compare"], ["bench"],
                                     ["teacher", "start"], ["teacher", "status"], ["teacher", "stop"],
                                     ["prompts", "list"], ["prompts", "show"], ["prompts", "export"]])
def test_help_has_an_example_and_flags_are_flags(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert re.search(r"Examples?: evokd " + re.escape(command[0]), result.output), result.output
    assert "<bool>" not in result.output


def test_verbose_is_described() -> None:
    out = CliRunner().invoke(app, ["run", "--help"], terminal_width=200).output
    assert re.search(r"--verbose\s+-v\s+log each step", out), out
    replay = CliRunner().invoke(app, ["replay", "--help"], terminal_width=200).output
    assert "--full" in replay and "--no-full" not in replay


def test_prompts_show_unknown_lists_every_template() -> None:
    result = CliRunner().invoke(app, ["prompts", "show", "nosuch"])
    assert result.exit_code == 1
    for agent in ["analyst", "generator", "verifier", "llm2llm", "static", "augment", "generator_labelled"]:
        assert agent in result.stderr, agent
