"""The `evokd` command line.

Each command imports what it runs when it runs: `evokd --help` and `evokd predict --onnx` must not
load torch, transformers or LangGraph, which every other command needs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from evokd.cli.common import _known_errors, _out, _setup_logging, console, err, fail
from evokd.cli.tools import prompts_app, teacher_app


def _flags_as_flags() -> None:
    """typer's help gives on/off flags a `<bool>` type column, as if they took a value; a flag's
    row shows its names only. (typer has no setting for it: this wraps its one display hook.)"""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "evokd_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) and self.metavar is None:
            return None
        return shown(self, ctx)

    display_type_rich.evokd_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_as_flags()

app = typer.Typer(help="Evolving knowledge distillation: teach a small student with a teacher LLM.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(teacher_app, name="teacher")
app.add_typer(prompts_app, name="prompts")

@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="TOML config (not needed with --resume)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override: section.key=value")] = None,
    resume: Annotated[Path | None, typer.Option(help="continue an interrupted run folder")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (else the embedded teacher)")] = None,
    model: Annotated[str | None, typer.Option(help="teacher model name at --base-url")] = None,
    prompts: Annotated[Path | None, typer.Option(help="directory overriding any of the agent prompts")] = None,
    from_run: Annotated[Path | None, typer.Option("--from", help="fork: replay this run's teacher turns...")] = None,
    from_round: Annotated[int | None, typer.Option(help="...before this round, then continue live")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check everything, write nothing, print what the run "
                                          "will ask: rounds, calls, tokens, money, minutes")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log each step (INFO) to stderr")] = False,
) -> None:
    """Run the EvoKD loop until its budget or a plateau; the best student lands in RUN/student/.

    Examples: evokd run examples/sentiment/config.toml --set loop.max_rounds=3 ·
    evokd run --resume runs/2026-11-27T18-00-00Z-sentiment-demo
    """
    from evokd.config import dump_config, load_config
    from evokd.core.files import write_atomic
    from evokd.core.runfolder import RunFolder
    from evokd.graph.build import node_texts
    from evokd.graph.prepare import method_of, prepare
    from evokd.graph.runner import RunError, execute, resume_config
    from evokd.view import LiveView

    _setup_logging(verbose)
    overrides = list(set_ or [])
    if base_url:
        overrides.append(f"llm.base_url={_quote(base_url)}")
    if model:
        overrides.append(f"llm.model={_quote(model)}")
    if prompts:
        overrides.append(f"prompts_dir={_quote(str(prompts.resolve()))}")
    run_folder = None
    recording = None
    prepared = None  # a resume prepares in execute
    try:
        if (from_run is None) != (from_round is None):
            raise RunError("--from RUN_DIR and --from-round N go together")
        if from_run is not None:
            from evokd.agents.recording import Recording

            recording = Recording.from_run(from_run, mode="fork", until_round=from_round)
        if dry_run:
            if config is None or resume is not None or from_run is not None:
                raise RunError("--dry-run takes a CONFIG file (not --resume or --from)")
            _dry_run(load_config(config, overrides))
            return
        if resume is not None:
            cfg, run_folder = resume_config(resume, overrides)
        elif config is None:
            raise RunError("give a CONFIG file, or --resume RUN_DIR")
        else:
            cfg = load_config(config, overrides)
            # Everything checkable is checked before the run folder exists: a bad input writes nothing.
            prepared = prepare(cfg)
            run_folder = RunFolder.create(cfg.runs_dir, cfg.name)
            write_atomic(run_folder.config, dump_config(cfg))
        console.print(f"run folder: [bold]{run_folder.root}[/]")
        method = prepared.method if prepared is not None else method_of(cfg)
        with LiveView(console, metric=f"dev {cfg.task.metric}", doing=node_texts(method, cfg.loop)) as view:
            result = execute(cfg, run=run_folder, prepared=prepared, resume=resume is not None, callbacks=[view],
                             on_status=view.say, recording=recording,
                             parent=str(from_run.resolve()) if from_run else None)
    except _known_errors() as exc:
        hint = f"; finished rounds are saved: evokd run --resume {run_folder.root}" \
            if run_folder is not None and run_folder.checkpoints_db.exists() else ""
        fail(f"{exc}{hint}")
    except KeyboardInterrupt:
        where = f": evokd run --resume {run_folder.root}" if run_folder is not None else ""
        fail(f"interrupted; finished rounds are saved{where}", code=130)
    if result.run.summary.exists():
        from rich.markdown import Markdown

        console.print(Markdown(result.run.summary.read_text(encoding="utf-8")))
    console.print(f"[bold green]done[/]: {result.run.root}")


def _dry_run(cfg) -> None:
    """The pre-flight of a run and its estimate; nothing is written, no teacher is started."""
    from evokd.graph.estimate import estimate
    from evokd.graph.prepare import prepare

    prepared = prepare(cfg)
    data = prepared.data
    where = f"data.hf {cfg.data.hf.path!r}" if cfg.data.uses_hub and cfg.data.hf else str(cfg.data.seed)
    console.print(f"config ok: {cfg.task.type}, {len(cfg.task.labels)} labels; {len(data.seed)} seed, "
                  f"{len(data.dev)} dev, {len(data.test)} test samples ({where}); prompts ok", highlight=False)
    # What the method loaded for itself says what it holds (the pool method: its texts, what was dropped).
    if (describe := getattr(prepared.method_data, "describe", None)) is not None:
        console.print(describe(), highlight=False)
    teacher = cfg.llm.base_url or f"embedded {cfg.teacher.weights} (not started)"
    console.print(f"teacher: {cfg.llm.model} at {teacher}", highlight=False)
    for line in estimate(cfg, data, prepared.prompts, prepared.method,
                                 method_data=prepared.method_data).lines():
        console.print(line, highlight=False, soft_wrap=True)
    console.print("dry run: nothing written", highlight=False)


def _quote(value: str) -> str:
    import json

    return json.dumps(value)


@app.command()
def predict(
    run_dir: Annotated[Path | None, typer.Argument(help="a run folder (its best student), or an export directory")]
    = None,
    texts: Annotated[list[str] | None, typer.Argument(help="texts to label (else --input FILE or standard input)")]
    = None,
    input_file: Annotated[Path | None, typer.Option("--input", "-i", help="CSV, TSV, JSONL, text (one per line) "
                                                    "or, for NER, CoNLL file; '-' for standard input")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="CSV or JSONL file (default: standard output)")]
    = None,
    format_: Annotated[str | None, typer.Option("--format", help="jsonl or csv (default: --output's extension, "
                                                "else jsonl)")] = None,
    input_format: Annotated[str, typer.Option(help="auto, lines, csv, tsv, jsonl or conll")] = "auto",
    text_column: Annotated[str | None, typer.Option(help="column or field with the text (default: the run's "
                                                    "task.text_column, else 'text')")] = None,
    onnx: Annotated[Path | None, typer.Option(help="an `evokd export` directory: run it with onnxruntime, no torch")]
    = None,
    skip_bad: Annotated[bool, typer.Option(help="leave malformed lines out (and count them) instead of stopping")]
    = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
) -> None:
    """Label texts (or tag entities) with a run's best student or an ONNX export; CSV or JSONL out.

    Example: evokd predict runs/2026-11-27T18-00-00Z-sentiment-demo "The soup was cold."
    """
    from evokd.config import ConfigError
    from evokd.core.extras import MissingExtra
    from evokd.predict import PredictError, predict_command
    from evokd.student.data import DataError
    from evokd.student.onnx_predict import ExportError

    try:  # the --onnx path imports no torch, so neither does this list of errors (unlike _known_errors)
        predict_command(run_dir, texts or [], input_file=input_file, output=output, fmt=format_,
                        input_format=input_format, text_column=text_column, onnx=onnx, skip_bad=skip_bad,
                        batch_size=batch_size, err=err)
    except (ConfigError, DataError, FileNotFoundError, PredictError, ExportError, MissingExtra, ValueError) as exc:
        fail(str(exc))


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (its best student is exported)")],
    out_dir: Annotated[Path, typer.Argument(help="directory to write (replaces an earlier export there)")],
    format_: Annotated[str, typer.Option("--format", help="onnx")] = "onnx",
    quantize: Annotated[str | None, typer.Option(help="int8: dynamic int8 weights (smaller, faster on CPU)")] = None,
) -> None:
    """Export a run's best student to ONNX, checked against the PyTorch student on the run's dev data.

    Example: evokd export runs/2026-11-27T18-00-00Z-sentiment-demo student-onnx --quantize int8
    """
    from evokd.export import export_command
    from evokd.student.onnx_predict import ExportError

    try:
        export_command(run_dir, out_dir, format_, quantize, console)
    except _known_errors(ExportError) as exc:
        fail(str(exc))


@app.command()
def replay(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    round: Annotated[int | None, typer.Option("--round", help="only this round")] = None,
    node: Annotated[str | None, typer.Option(help="only this node (analyst, generator, verifier, ...)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="trace records as JSON lines")] = False,
    full: Annotated[bool, typer.Option("--full", help="do not fold prompts and replies")] = False,
    rerun: Annotated[bool, typer.Option("--rerun", help="re-execute the run offline from its recorded replies")]
    = False,
    out: Annotated[Path | None, typer.Option(help="run folder for --rerun")] = None,
    allow_divergence: Annotated[bool, typer.Option("--allow-divergence",
                                                   help="--rerun: serve changed requests by position")] = False,
) -> None:
    """Walk a run's trace, or re-execute it without an LLM and check every round's dev F1.

    Examples: evokd replay RUN_DIR --round 2 --node verifier · evokd replay RUN_DIR --rerun
    """
    from evokd.graph import replay as rp

    try:
        if rerun:
            with console.status("re-executing the run from its recorded replies"):
                result, diffs = rp.rerun(run_dir, out, allow_divergence)
            different = [d for d in diffs if not d.same]
            for d in diffs:
                mark = "[green]same[/]" if d.same else "[red]DIFFERENT[/]"
                console.print(f"{d.name}: original {d.original}  rerun {d.rerun}  {mark}")
            console.print(f"rerun folder: {result.run.root}")
            if different:
                fail(f"{', '.join(d.name for d in different)} differ(s) from the original")
            console.print("[bold green]every round's dev metrics (and the final fit's) match the original[/]")
            return
        if as_json:
            for record in rp.records(run_dir, round, node):
                print(record.model_dump_json())
            return
        rp.render(run_dir, _out(), round, node, full)
    except _known_errors() as exc:
        fail(str(exc))


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run folder")]) -> None:
    """Write RUN_DIR/report.html: summary, dev F1 with its interval, analyses, every sample, plots.

    Example: evokd report runs/2026-11-27T18-00-00Z-sentiment-demo
    """
    from evokd.report import ReportError, write_report

    try:
        path = write_report(run_dir)
    except _known_errors(ReportError) as exc:
        fail(str(exc))
    console.print(str(path), highlight=False, soft_wrap=True)


@app.command()
def compare(run_a: Annotated[Path, typer.Argument(help="a run folder (A)")],
            run_b: Annotated[Path, typer.Argument(help="another run folder (B)")]) -> None:
    """Two runs side by side: outcome (best round, test F1, stop reason), spend, per-round dev F1 and
    tokens, and the config values and prompt files that differ.

    Example: evokd compare runs/RUN_A runs/RUN_B
    """
    from evokd.graph.replay import compare as compare_runs

    try:
        compare_runs(run_a, run_b, _out())
    except _known_errors() as exc:
        fail(str(exc))


@app.command()
def bench(
    dataset: Annotated[str, typer.Argument(help="a config file (CONFIG.toml), or a shipped benchmark: sst2, "
                                           "sst2-sentences, imdb, conll2003, conll04, sentiment (the demo)")],
    methods: Annotated[str | None, typer.Option(help="comma-separated, e.g. evokd,static (default: the profile's)")]
    = None,
    seeds: Annotated[int | None, typer.Option(help="seeds per method (default: quick 1, full 3)")] = None,
    profile: Annotated[str, typer.Option(help="quick or full")] = "quick",
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (else the embedded teacher)")]
    = None,
    out: Annotated[Path | None, typer.Option(help="where the JSON, markdown and plot go (docs/benchmarks/ in a "
                                             "checkout, else ./benchmarks/)")] = None,
    data: Annotated[Path | None, typer.Option(help="a shipped benchmark's data directory (instead of the hub)")]
    = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override for every run: section.key=value")]
    = None,
    jobs: Annotated[int, typer.Option(help="runs at once, each its own process and run folder, one teacher")] = 1,
    executor: Annotated[str, typer.Option(help="local (processes on this machine, --jobs) or ray (each run a Ray "
                                          "task; pip install \"evokd[ray]\")")] = "local",
    address: Annotated[str | None, typer.Option(help="--executor ray: the cluster (auto: the one `ray start` made "
                                                "here; HEAD_IP:6379; default: a Ray of this machine)")] = None,
    resume: Annotated[bool, typer.Option("--resume",
                                         help="keep the finished runs of a stopped benchmark with the same settings")]
    = False,
    budgets: Annotated[str | None, typer.Option(help="a sweep: comma-separated token budgets, e.g. 3000,6000,12000")]
    = None,
    fit_seeds: Annotated[int | None, typer.Option(help="final fits of each run's pool, each with its own student "
                                                  "seed; a run's score is their mean test F1 (default: 3)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log each step (INFO) to stderr")] = False,
) -> None:
    """Every method (baselines, EvoKD, ablations) on one task with one teacher-token budget, or a sweep.

    Examples: evokd bench sst2 --methods no-aug,static,evokd --seeds 1 ·
    evokd bench sst2 --seeds 5 --executor ray --address auto --base-url http://gpu-node:8000/v1
    """
    from evokd.bench import harness, sweep

    _setup_logging(verbose)
    chosen = methods.split(",") if methods else None
    if address is not None and executor != "ray":
        fail("--address goes with --executor ray")
    common: dict[str, Any] = {"data_dir": data, "overrides": list(set_ or []), "console": console, "resume": resume,
                              "jobs": jobs, "executor": executor, "address": address, "fit_seeds": fit_seeds}
    try:
        sweep_budgets = sweep.parse_budgets(budgets) if budgets else None
    except ValueError as exc:
        fail(str(exc))
    try:
        if sweep_budgets:
            harness.run_budgets(dataset, sweep_budgets, chosen, seeds, profile, out, base_url, **common)
        else:
            harness.run_benchmark(dataset, chosen, seeds, profile, out, base_url, **common)
    except _known_errors(harness.BenchError) as exc:
        fail(str(exc))


def main() -> None:  # pragma: no cover
    sys.exit(app())
