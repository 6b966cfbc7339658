"""What `evokd predict` does; the CLI only declares its options.

The `--onnx` path imports neither torch nor transformers: only the export's metadata, the
`tokenizers` library, numpy and onnxruntime.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from evokd.config import load_config
from evokd.core.files import write_atomic
from evokd.student.onnx_predict import is_export, load_exported
from evokd.student.predict_io import Inputs, items_from_args, output_format, read_inputs, render
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
    if onnx is None and target is not None and not _run_folder(target) and is_export(target):
        onnx, target = target, None  # `evokd predict EXPORT_DIR ...` works like --onnx EXPORT_DIR
    if onnx is not None and target is not None and not _run_folder(target):
        texts.insert(0, str(target))  # with --onnx a run folder is optional: this was a text
        target = None
    if onnx is None and target is None:
        raise PredictError("give a run folder (or an export directory with --onnx DIR)")
    fmt = output_format(output, fmt)

    if onnx is not None:
        predictor, meta = load_exported(onnx)
        task_type, default_column = meta["task_type"], meta.get("text_column", "text")
        run_cfg = None
    else:
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
        # torch and transformers, for a run folder's student: the --onnx path never loads them.
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
