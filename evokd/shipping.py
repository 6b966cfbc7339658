"""What `evokd predict` and `evokd export` do; cli.py only declares their options.

The `--onnx` path of predict imports neither torch nor transformers: only the export's metadata,
the `tokenizers` library, numpy and onnxruntime.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from evokd.student.predict_io import Inputs, items_from_args, output_format, read_inputs, render, write_atomic
from evokd.student.predictor import Predictor, Result

PROGRESS_FROM = 256  # texts; fewer finish before a progress bar would be worth drawing


class PredictError(Exception):
    """A predict invocation that cannot go ahead (no input, no student, conflicting options)."""


def _run_folder(path: Path | None) -> Path | None:
    return path if path is not None and (path / "config.toml").is_file() else None


def predict_command(
    target: Path | None,
    texts: list[str],
    *,
    input_file: Path | None,
    output: Path | None,
    fmt: str | None,
    input_format: str,
    text_column: str | None,
    onnx: Path | None,
    skip_bad: bool,
    batch_size: int,
    err: Console,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> None:
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    texts = list(texts)
    if onnx is None and target is not None and not _run_folder(target):
        from evokd.student.onnx_predict import is_export

        if is_export(target):  # `evokd predict EXPORT_DIR ...` works like --onnx EXPORT_DIR
            onnx, target = target, None
    if onnx is not None and target is not None and not _run_folder(target):
        texts.insert(0, str(target))  # with --onnx a run folder is optional: this was a text
        target = None
    if onnx is None and target is None:
        raise PredictError("give a run folder (or an export directory with --onnx DIR)")
    fmt = output_format(output, fmt)

    if onnx is not None:
        from evokd.student.onnx_predict import load_exported

        predictor, meta = load_exported(onnx)
        task_type, default_column = meta["task_type"], meta.get("text_column", "text")
        run_cfg = None
    else:
        from evokd.config import load_config

        assert target is not None
        if not _run_folder(target):
            raise PredictError(f"{target}: not a run folder (no config.toml) nor an evokd export")
        run_cfg = load_config(target / "config.toml")
        task_type, default_column = run_cfg.task.type, run_cfg.task.text_column
        predictor = None
    column = text_column or default_column

    if texts and input_file is not None:
        raise PredictError("give texts as arguments or --input FILE, not both")
    if texts:
        inputs = items_from_args(texts, task_type)
    elif input_file is not None:
        inputs = read_inputs(input_file, task_type=task_type, text_column=column, input_format=input_format,
                             skip_bad=skip_bad, stdin=stdin)
    elif not stdin.isatty():
        inputs = read_inputs(None, task_type=task_type, text_column=column, input_format=input_format,
                             skip_bad=skip_bad, stdin=stdin)
    else:
        raise PredictError("no texts: give them as arguments, with --input FILE, or on standard input")

    if not inputs.items:
        err.print("[yellow]no texts to label[/]", highlight=False)
    if predictor is None:
        assert run_cfg is not None and target is not None
        student_dir = target / "student"
        if not student_dir.exists():
            raise PredictError(f"{student_dir}: no student saved yet")
        from evokd.student.model import load_student
        from evokd.student.torch_predict import torch_predictor

        predictor = torch_predictor(load_student(student_dir, run_cfg.task, run_cfg.student), student_dir)

    results = _predict_with_progress(predictor, inputs, batch_size, err)
    text = render(results, fmt)
    if output is not None:
        write_atomic(output, text)
    else:
        stdout.write(text)
        stdout.flush()
    _report(inputs, results, output, err)


def _predict_with_progress(predictor: Predictor, inputs: Inputs, batch_size: int, err: Console) -> list[Result]:
    items = inputs.items
    if len(items) < PROGRESS_FROM:
        return predictor.predict(items, batch_size=batch_size)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task("predict", total=len(items))
        return predictor.predict(items, batch_size=batch_size,
                                 on_batch=lambda n: progress.advance(task, n))


def _report(inputs: Inputs, results: list[Result], output: Path | None, err: Console) -> None:
    truncated = sum(r.truncated for r in results)
    if output is not None:
        err.print(f"{len(results)} predictions -> {output}", highlight=False, soft_wrap=True)
    if truncated:
        err.print(f"[yellow]{truncated} text(s) were longer than the student reads and were truncated "
                  "(\"truncated\": true)[/]", highlight=False, soft_wrap=True)
    if inputs.skipped:
        err.print(f"[yellow]skipped {len(inputs.skipped)} malformed line(s)[/], first: {inputs.skipped[0]}",
                  highlight=False, soft_wrap=True)


def export_onnx(run_dir: Path, out_dir: Path, quantize: str | None = None,
                say: Callable[[str], None] = lambda _: None) -> Any:
    """Export RUN's best student to DIR after its self-check on the run's dev data (as the loop
    evaluated it: same file, cap and seed)."""
    from evokd.core.extras import require
    from evokd.graph.prepare import load_task_data
    from evokd.graph.runner import resume_config

    # Before anything is read: without these, torch.onnx's own error is a 30-line traceback.
    require("onnx", "evokd export --format onnx", "onnx")
    require("onnxruntime", "evokd export --format onnx (its self-check)", "onnx")
    from evokd.student.export import export_student

    cfg, run = resume_config(run_dir)
    say("reading the run's dev data")
    dev = load_task_data(cfg).dev
    return export_student(run.student, cfg, dev, out_dir, quantize, say=say, source=str(Path(run_dir).resolve()))


def export_command(run_dir: Path, out_dir: Path, fmt: str, quantize: str | None, console: Console) -> None:
    if fmt != "onnx":
        raise PredictError(f"--format {fmt}: only onnx is supported")

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
