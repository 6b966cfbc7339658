"""What `evokd export` does: a run's best student as ONNX, checked against the PyTorch student;
the CLI only declares its options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from evokd.core.extras import require
from evokd.graph.prepare import load_task_data
from evokd.graph.runner import resume_config
from evokd.student.onnx_predict import ExportError


def export_onnx(run_dir: Path, out_dir: Path, quantize: str | None = None,
                say: Callable[[str], None] = lambda _: None) -> Any:
    """Export RUN's best student to DIR after its self-check on the run's dev data (as the loop
    evaluated it: same file, cap and seed)."""
    # Before anything is read: without these, torch.onnx's own error is a 30-line traceback.
    require("onnx", "evokd export --format onnx", "onnx")
    require("onnxruntime", "evokd export --format onnx (its self-check)", "onnx")
    from evokd.student.export import export_student  # torch, transformers: only when exporting

    cfg, run = resume_config(run_dir)
    say("reading the run's dev data")
    dev = load_task_data(cfg).dev
    return export_student(run.student, cfg, dev, out_dir, quantize, say=say, source=str(Path(run_dir).resolve()))


def export_command(run_dir: Path, out_dir: Path, fmt: str, quantize: str | None, console: Console) -> None:
    if fmt != "onnx":
        raise ExportError(f"--format {fmt}: only onnx is supported")

    with console.status("exporting") as status:
        report = export_onnx(run_dir, out_dir, quantize, say=lambda message: status.update(message))
    check = report.check
    console.print(f"self-check on {check.dev_samples} dev samples: {check.agreeing}/{check.compared} {check.unit} "
                  f"agree with the PyTorch student ({check.agreement:.2%}, required {check.required:.0%}); "
                  f"accuracy PyTorch {check.torch_accuracy:.4f}, ONNX {check.onnx_accuracy:.4f}",
                  highlight=False, soft_wrap=True)
    console.print(f"[bold green]exported[/] {report.directory} (model.onnx {report.model_bytes / 1e6:.1f} MB"
                  f"{', int8: ' + report.int8_step if report.int8_step else ''}, {report.seconds:.0f} s); "
                  "see its README.md",
                  highlight=False, soft_wrap=True)
