"""`evokd export RUN DIR --format onnx`: round-trip agreement on a tiny student, the self-check's
failure path, and `evokd predict --onnx` without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from shipping_fixtures import classifier_run, ner_run
from typer.testing import CliRunner

pytest.importorskip("onnxruntime", reason="the export needs the onnx extra: pip install -e '.[onnx]'")

from evokd.cli import app
from evokd.export import export_onnx
from evokd.student import export as export_module
from evokd.student.onnx_predict import ExportError, load_exported
from evokd.student.predictor import Item

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["What a wonderful, heartwarming film.", "Dull, slow and far too long.", "It was fine I guess."]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return classifier_run(tmp_path_factory.mktemp("export-cls"), tiny_model_dir)


@pytest.fixture(scope="module")
def exported(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "onnx"
    result = CliRunner().invoke(app, ["export", str(run), str(out), "--format", "onnx"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "exported" in result.stdout and "self-check" in result.stdout
    return out


def test_export_writes_a_self_described_directory(exported: Path) -> None:
    names = {p.name for p in exported.iterdir()}
    assert {"model.onnx", "tokenizer.json", "labels.txt", "evokd-export.json", "README.md", "config.json"} <= names
    meta = json.loads((exported / "evokd-export.json").read_text())
    assert meta["labels"] == ["negative", "positive"] and meta["task_type"] == "classification"
    assert meta["check"]["passed"] and meta["check"]["agreement"] >= 0.99 and meta["check"]["dev_samples"] == 48
    assert (exported / "labels.txt").read_text().splitlines() == meta["labels"]
    assert "evokd predict --onnx" in (exported / "README.md").read_text()
    assert not list(exported.parent.glob(".*tmp*"))


def test_round_trip_agrees_with_the_pytorch_student(run: Path, exported: Path) -> None:
    from evokd.config import load_config
    from evokd.student.data import read_samples
    from evokd.student.model import load_student
    from evokd.student.torch_predict import torch_predictor

    cfg = load_config(run / "config.toml")
    assert cfg.data.test is not None
    items = [Item(text=s.text) for s in read_samples(cfg.data.test, cfg.task)]
    onnx, _ = load_exported(exported)
    torch_side = torch_predictor(load_student(run / "student", cfg.task, cfg.student), run / "student")
    ours, theirs = onnx.predict(items), torch_side.predict(items)
    agree = sum(a.label == b.label for a, b in zip(ours, theirs, strict=True))
    assert agree / len(items) >= 0.99
    assert max(abs((a.score or 0) - (b.score or 0)) for a, b in zip(ours, theirs, strict=True)) < 1e-3


def test_int8_export_passes_its_check(run: Path, tmp_path: Path) -> None:
    report = export_onnx(run, tmp_path / "int8", "int8")
    assert report.check.passed and report.check.required == 0.98
    assert json.loads((tmp_path / "int8" / "evokd-export.json").read_text())["quantize"] == "int8"


def test_ner_export_round_trip(tiny_model_dir: Path, tmp_path: Path) -> None:
    ner = ner_run(tmp_path / "ner", tiny_model_dir)
    report = export_onnx(ner, tmp_path / "ner-onnx")
    assert report.check.unit == "word tags" and report.check.passed
    predictor, meta = load_exported(tmp_path / "ner-onnx")
    assert meta["labels"][0] == "O" and meta["entity_types"] == ["PER", "ORG", "LOC", "MISC"]
    [result] = predictor.predict([Item.from_text("Angela Merkel met Emmanuel Macron in Berlin.")])
    assert result.tags is not None and len(result.tags) == 8


def test_failed_self_check_writes_nothing_and_exits_non_zero(run: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(export_module.MIN_AGREEMENT, None, 1.01)  # no export can agree on 101 %
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["export", str(run), str(out)], catch_exceptions=False)
    assert result.exit_code == 1
    assert "self-check failed" in result.stderr and "below the required 101%" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".*"))
    with pytest.raises(ExportError, match="only int8"):
        export_onnx(run, out, "int4")


def test_export_refuses_a_directory_it_did_not_write(run: Path, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an earlier export"):
        export_onnx(run, tmp_path)


def test_predict_with_onnx_imports_no_torch(run: Path, exported: Path, tmp_path: Path) -> None:
    texts = tmp_path / "texts.csv"
    texts.write_text("text\n" + "\n".join(f'"{t}"' for t in TEXTS) + "\n")
    out = tmp_path / "pred.jsonl"
    code = (
        "import sys\n"
        "from evokd.cli import app\n"
        "try:\n"
        f"    app(['predict', '--onnx', {str(exported)!r}, '--input', {str(texts)!r}, '-o', {str(out)!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == TEXTS and all(r["label"] in ("negative", "positive") for r in rows)


def test_predict_accepts_the_export_directory_and_a_run_before_onnx(run: Path, exported: Path) -> None:
    runner = CliRunner()
    direct = runner.invoke(app, ["predict", str(exported), *TEXTS], catch_exceptions=False)
    with_run = runner.invoke(app, ["predict", str(run), "--onnx", str(exported), *TEXTS], catch_exceptions=False)
    torch_side = runner.invoke(app, ["predict", str(run), *TEXTS], catch_exceptions=False)
    assert direct.exit_code == with_run.exit_code == torch_side.exit_code == 0
    labels = [[json.loads(line)["label"] for line in r.stdout.splitlines()] for r in (direct, with_run, torch_side)]
    assert labels[0] == labels[1] == labels[2] and len(labels[0]) == 3


def test_int8_keeps_more_in_fp32_until_the_check_passes(run: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real = export_module.self_check
    calls: list[int] = []

    def strict_first(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:  # pretend full int8 fell short
            result.passed = False
        return result

    monkeypatch.setattr(export_module, "self_check", strict_first)
    report = export_onnx(run, tmp_path / "int8", "int8")
    meta = json.loads((tmp_path / "int8" / "evokd-export.json").read_text())
    assert len(calls) == 2 and report.int8_step == export_module.INT8_STEPS[1][0] == meta["int8"]["step"]
    assert meta["int8"]["fp32_matmuls"] == 2  # the tiny BERT's two attention output projections
    assert not (tmp_path / "int8" / "model.fp32.onnx").exists()
