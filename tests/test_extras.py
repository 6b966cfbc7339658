"""Each optional feature, its extra not installed: one line naming the install command, exit 1, no
traceback. A missing package is simulated the way Python sees one: `sys.modules[name] = None` makes
`import name` raise ImportError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, write_config
from typer.testing import CliRunner

from evokd.cli import app
from evokd.core.extras import MissingExtra, require


def one_line_error(result, extra: str) -> str:
    """The command's whole output: exactly one `error:` line that names `pip install "evokd[extra]"`."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # typer.Exit, not a crash
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert lines[0].endswith(f'pip install "evokd[{extra}]"'), lines[0]
    return lines[0]


def without(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})


def test_require_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "onnx")
    with pytest.raises(MissingExtra) as caught:
        require("onnx", "evokd export --format onnx", "onnx")
    assert str(caught.value) == ('evokd export --format onnx needs onnx, which is not installed: '
                                 'pip install "evokd[onnx]"')
    assert require("json", "anything", "none") is json


def test_export_without_onnx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    without(monkeypatch, "onnx")
    line = one_line_error(invoke("export", str(tmp_path / "run"), str(tmp_path / "out"), "--format", "onnx"), "onnx")
    assert "evokd export --format onnx needs onnx" in line
    assert not (tmp_path / "out").exists()


def test_export_without_onnxruntime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    without(monkeypatch, "onnxruntime")
    assert "needs onnxruntime" in one_line_error(invoke("export", str(tmp_path), str(tmp_path / "out")), "onnx")


def test_predict_onnx_without_onnxruntime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from evokd.student.model import resolve_model_path

    export = tmp_path / "export"  # what `evokd export` writes, minus a real model (never loaded)
    AutoTokenizer.from_pretrained(resolve_model_path("default")).save_pretrained(export)
    (export / "model.onnx").write_bytes(b"not read")
    (export / "evokd-export.json").write_text(json.dumps({"task_type": "classification", "labels": ["a", "b"],
                                                          "max_length": 32}))
    without(monkeypatch, "onnxruntime")
    line = one_line_error(invoke("predict", "--onnx", str(export), "a fine film"), "onnx")
    assert "(evokd predict --onnx) needs onnxruntime" in line


def test_hub_data_without_datasets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path) -> None:
    config = write_config(tmp_path, tiny_model_dir)
    text = config.read_text()
    start = text.index("[data]")
    end = text.index("[student]")
    config.write_text(text[:start] + '[data.hf]\npath = "stanfordnlp/sst2"\n' + text[end:])
    without(monkeypatch, "datasets")
    line = one_line_error(invoke("run", str(config), "--dry-run"), "hf")
    assert line.startswith("error: data.hf (Hugging Face datasets) needs datasets")
    assert not (tmp_path / "runs").exists()


def test_mlflow_tracking_without_mlflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path) -> None:
    config = write_config(tmp_path, tiny_model_dir)
    without(monkeypatch, "mlflow")
    result = invoke("run", str(config), "--set", 'tracking.mlflow_uri="http://127.0.0.1:5000"')
    assert "tracking.mlflow_uri (MLflow tracking) needs mlflow" in one_line_error(result, "mlflow")
    assert not (tmp_path / "runs").exists()  # checked before the run folder exists


def test_ray_executor_without_ray(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path) -> None:
    config = write_config(tmp_path, tiny_model_dir)
    without(monkeypatch, "ray")
    result = invoke("bench", str(config), "--executor", "ray", "--out", str(tmp_path / "out"))
    assert "evokd bench --executor ray needs ray" in one_line_error(result, "ray")
    assert not (tmp_path / "out").exists()


def test_a_real_process_prints_the_line_and_no_traceback(tmp_path: Path) -> None:
    """The same in a fresh interpreter where `onnx` cannot be imported (as on a `.[local]` install):
    stderr is the one line, stdout is empty."""
    script = "import sys; sys.modules['onnx'] = None; from evokd.cli import app; sys.argv[0] = 'evokd'; app()"
    proc = subprocess.run([sys.executable, "-c", script, "export", str(ROOT / "runs" / "none"), str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"})
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        'error: evokd export --format onnx needs onnx, which is not installed: pip install "evokd[onnx]"']
