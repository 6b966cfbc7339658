"""Invalid config or data: `evokd run` exits 1 with one error line naming the file (and the line and
field where there is one), and writes nothing: no runs directory, no run folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, write_config
from typer.testing import CliRunner

from evokd.cli import app

DEMO = ROOT / "examples" / "sentiment" / "data"


def cli(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["run", *args], env={"COLUMNS": "80"})
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return result.exit_code, lines


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def config_with(tmp_path: Path, replace: dict[str, str | None] | None = None, extra: str = "") -> Path:
    """The test config with some lines replaced (by the start of the line) or dropped (None)."""
    path = write_config(tmp_path, tmp_path / "no-model-needed")
    lines = path.read_text().splitlines()
    for start, new in (replace or {}).items():
        (index,) = [i for i, line in enumerate(lines) if line.startswith(start)]
        if new is None:
            del lines[index]
        else:
            lines[index] = new
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def line_of(path: Path, start: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if line.startswith(start))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# Each case: (make the input from tmp_path) -> (CLI args, the exact error line expected).
Case = Callable[[Path], tuple[list[str], str]]


def missing_config(tmp: Path):
    return [str(tmp / "nope.toml")], f"error: {tmp / 'nope.toml'}: config file not found"


def bad_toml(tmp: Path):
    path = write(tmp / "bad.toml", 'name = "x"\n[task\nlabels = 1\n')
    return [str(path)], (f"error: {path}: invalid TOML: Expected ']' at the end of a table declaration "
                         "(at line 2, column 6)")


def not_utf8(tmp: Path):
    path = tmp / "latin1.toml"
    path.write_bytes('name = "café"\n'.encode("latin-1"))
    return [str(path)], f"error: {path}: not UTF-8 text (byte 11: invalid continuation byte)"


def unknown_key(tmp: Path):
    path = config_with(tmp, {"max_rounds": "max_roundz = 2"})
    return [str(path)], f"error: {path}:{line_of(path, 'max_roundz')}: loop.max_roundz: Extra inputs are not permitted"


def wrong_type(tmp: Path):
    path = config_with(tmp, {"max_rounds": 'max_rounds = "x"'})
    return [str(path)], (f"error: {path}:{line_of(path, 'max_rounds')}: loop.max_rounds: Input should be a valid "
                         "integer, unable to parse string as an integer")


def out_of_range(tmp: Path):
    path = config_with(tmp, {"backoff_seconds": "backoff_seconds = -1"})
    return [str(path)], (f"error: {path}:{line_of(path, 'backoff_seconds')}: llm.backoff_seconds: Input should be "
                         "greater than or equal to 0")


def too_few_labels(tmp: Path):
    path = config_with(tmp, {"labels": 'labels = ["positive"]'})
    return [str(path)], (f"error: {path}:{line_of(path, 'labels')}: task.labels: List should have at least 2 items "
                         "after validation, not 1")


def no_dev_in_config(tmp: Path):
    path = config_with(tmp, {"dev = ": None})
    return [str(path)], (f"error: {path}:{line_of(path, '[data]')}: data: Value error, data.dev is required: "
                         "evokd never evaluates on training data")


def set_without_value(tmp: Path):
    return [str(config_with(tmp)), "--set", "loop.max_rounds"], \
        "error: --set 'loop.max_rounds': expected section.key=value"


def set_wrong_type(tmp: Path):
    path = config_with(tmp)
    return [str(path), "--set", "loop.max_rounds=abc"], (
        f"error: {path}: loop.max_rounds (--set loop.max_rounds=abc): Input should be a valid integer, "
        "unable to parse string as an integer")


def set_unknown_key(tmp: Path):
    path = config_with(tmp)
    return [str(path), "--set", "llm.retries=3"], \
        f"error: {path}: llm.retries (--set llm.retries=3): Extra inputs are not permitted"


def set_into_a_value(tmp: Path):
    return [str(config_with(tmp)), "--set", "loop.max_rounds.x=1"], \
        "error: --set loop.max_rounds.x: max_rounds is not a section"


def label_outside_the_set(tmp: Path):
    seed = write(tmp / "seed.csv", "text,label\ngood,positive\nbad,negative\nmeh,neutral\n")
    path = config_with(tmp, {"seed = ": f'seed = "{seed}"'})
    return [str(path)], f"error: {seed}:4: label 'neutral' is not one of ['negative', 'positive']"


def missing_column(tmp: Path):
    dev = write(tmp / "dev.csv", "body,label\ngood,positive\n")
    path = config_with(tmp, {"dev = ": f'dev = "{dev}"'})
    return [str(path)], f"error: {dev}:1: no column 'text' (columns: body, label)"


def missing_value_in_row(tmp: Path):
    dev = write(tmp / "dev.jsonl", '{"text": "fine", "label": "positive"}\n{"text": "awful"}\n')
    path = config_with(tmp, {"dev = ": f'dev = "{dev}"'})
    return [str(path)], f"error: {dev}:2: missing column 'label'"


def broken_jsonl(tmp: Path):
    dev = write(tmp / "dev.jsonl", '{"text": "fine", "label": "positive"}\n{"text": "awful", \n')
    path = config_with(tmp, {"dev = ": f'dev = "{dev}"'})
    return [str(path)], f"error: {dev}:2: invalid JSON: Expecting property name enclosed in double quotes"


def missing_dev_file(tmp: Path):
    path = config_with(tmp, {"dev = ": 'dev = "missing-dev.csv"'})
    return [str(path)], f"error: {tmp / 'missing-dev.csv'}: file not found"


def missing_dev_file_by_set(tmp: Path):
    path = config_with(tmp)
    missing = Path("does-not-exist.csv").resolve()
    return [str(path), "--set", "data.dev=does-not-exist.csv"], f"error: {missing}: file not found"


def resume_not_a_run(tmp: Path):
    (tmp / "somewhere").mkdir()
    return ["--resume", str(tmp / "somewhere")], f"error: {tmp / 'somewhere'}: not a run folder (no config.toml)"


CASES: dict[str, Case] = {f.__name__: f for f in (
    missing_config, bad_toml, not_utf8, unknown_key, wrong_type, out_of_range, too_few_labels, no_dev_in_config,
    set_without_value, set_wrong_type, set_unknown_key, set_into_a_value, label_outside_the_set, missing_column,
    missing_value_in_row, broken_jsonl, missing_dev_file, missing_dev_file_by_set, resume_not_a_run)}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, case: str) -> None:
    args, expected = CASES[case](tmp_path)
    before = files_under(tmp_path)
    code, lines = cli(*args)
    assert code == 1
    assert lines == [expected]
    assert not (tmp_path / "runs").exists()  # the configs' runs_dir
    assert files_under(tmp_path) == before


def test_error_line_from_a_real_process(tmp_path: Path) -> None:
    """The same through the installed entry point: exit status 1, the one line on stderr, no traceback."""
    path = config_with(tmp_path, {"max_rounds": 'max_rounds = "x"'})
    result = subprocess.run([sys.executable, "-m", "evokd", "run", str(path)], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "60"}, timeout=120)
    assert result.returncode == 1
    assert result.stdout == ""
    # Long as it is, the line is not wrapped at the terminal width.
    assert result.stderr.splitlines() == [f"error: {path}:{line_of(path, 'max_rounds')}: loop.max_rounds: Input "
                                          "should be a valid integer, unable to parse string as an integer"]
    assert not (tmp_path / "runs").exists()


def test_demo_config_is_valid() -> None:
    """The checks above are not over-eager: the shipped example passes them."""
    from evokd.config import load_config
    from evokd.graph.prepare import load_task_data

    cfg = load_config(ROOT / "examples" / "sentiment" / "config.toml")
    assert load_task_data(cfg).dev
