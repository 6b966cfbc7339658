"""The `evokd` command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Evolving knowledge distillation: teach a small student with a teacher LLM.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
teacher_app = typer.Typer(help="The embedded local teacher (llama.cpp server).", no_args_is_help=True)
prompts_app = typer.Typer(help="Agent prompt templates.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")
app.add_typer(prompts_app, name="prompts")

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    from rich.markup import escape

    # Escaped: a message quoting `evokd[hf]` or a list of labels is text, not console markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _known_errors() -> tuple[type[Exception], ...]:
    from evokd.agents.llm import StructuredOutputError, TeacherUnreachable
    from evokd.agents.prompts import PromptError
    from evokd.agents.recording import ReplayDivergence
    from evokd.config import ConfigError
    from evokd.graph.runner import RunError
    from evokd.student.data import DataError
    from evokd.teacher import TeacherError

    return (ConfigError, DataError, PromptError, RunError, TeacherError, TeacherUnreachable,
            StructuredOutputError, ReplayDivergence, FileNotFoundError)


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False)])


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
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the EvoKD loop until its budget or a plateau; the best student lands in RUN/student/."""
    from evokd.config import dump_config, load_config
    from evokd.core.runfolder import RunFolder
    from evokd.core.trace import write_atomic
    from evokd.graph.prepare import prepare
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
        metric = "dev macro-F1" if cfg.task.type == "classification" else "dev F1"
        with LiveView(console, metric=metric) as view:
            result = execute(cfg, run=run_folder, prepared=prepared, resume=resume is not None, events=view.events(),
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
    teacher = cfg.llm.base_url or f"embedded {cfg.teacher.weights} (not started)"
    console.print(f"teacher: {cfg.llm.model} at {teacher}", highlight=False)
    for line in estimate(cfg, data, prepared.prompts).lines():
        console.print(line, highlight=False, soft_wrap=True)
    console.print("dry run: nothing written", highlight=False)


def _quote(value: str) -> str:
    import json

    return json.dumps(value)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (its best student is used)")],
    texts: Annotated[list[str], typer.Argument(help="texts to label")],
) -> None:
    """Label texts with a run's best student."""
    from evokd.graph.runner import resume_config
    from evokd.student.model import load_student

    try:
        cfg, run = resume_config(run_dir)
    except _known_errors() as exc:
        fail(str(exc))
    if not run.student.exists():
        fail(f"{run.student}: no student saved yet")
    from evokd.student.data import Sample, tokenize

    student = load_student(run.student, cfg.task, cfg.student)
    if cfg.task.type == "ner":
        samples = [Sample(text=t, tokens=tokenize(t)) for t in texts]
    else:
        samples = [Sample(text=t) for t in texts]
    for sample, pred in zip(samples, student.predict(samples), strict=True):
        if pred.label is not None:
            conf = f" ({pred.probs[pred.label]:.2f})" if pred.probs else ""
            console.print(f"[bold]{pred.label}[/]{conf}\t{sample.text}", highlight=False)
        else:
            tagged = " ".join(f"{tok}/{tag}" if tag != "O" else tok
                              for tok, tag in zip(sample.tokens or [], pred.tags or [], strict=True))
            console.print(tagged, highlight=False)


@app.command()
def replay(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    round: Annotated[int | None, typer.Option("--round", help="only this round")] = None,
    node: Annotated[str | None, typer.Option(help="only this node (analyst, generator, verifier, ...)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="trace records as JSON lines")] = False,
    full: Annotated[bool, typer.Option(help="do not fold prompts and replies")] = False,
    rerun: Annotated[bool, typer.Option(help="re-execute the run offline from its recorded replies")] = False,
    out: Annotated[Path | None, typer.Option(help="run folder for --rerun")] = None,
    allow_divergence: Annotated[bool, typer.Option(help="--rerun: serve changed requests by position")] = False,
) -> None:
    """Walk a run's trace, or re-execute it without an LLM and check every round's dev F1."""
    from evokd.graph import replay as rp

    try:
        if rerun:
            with console.status("re-executing the run from its recorded replies"):
                result, diffs = rp.rerun(run_dir, out, allow_divergence)
            different = [d for d in diffs if not d.same]
            for d in diffs:
                mark = "[green]same[/]" if d.same else "[red]DIFFERENT[/]"
                console.print(f"round {d.round}: original {d.original}  rerun {d.rerun}  {mark}")
            console.print(f"rerun folder: {result.run.root}")
            if different:
                fail(f"{len(different)} round(s) differ from the original")
            console.print("[bold green]every round's dev metrics match the original[/]")
            return
        if as_json:
            for record in rp.records(run_dir, round, node):
                print(record.model_dump_json())
            return
        rp.render(run_dir, console, round, node, full)
    except _known_errors() as exc:
        fail(str(exc))


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run folder")]) -> None:
    """Write RUN_DIR/report.html (plots, rejections, samples)."""
    from evokd.report import ReportError, write_report

    try:
        path = write_report(run_dir)
    except (*_known_errors(), ReportError) as exc:
        fail(str(exc))
    console.print(str(path), highlight=False, soft_wrap=True)


@app.command()
def compare(run_a: Annotated[Path, typer.Argument()], run_b: Annotated[Path, typer.Argument()]) -> None:
    """Per-round dev F1 and tokens of two runs side by side, and which prompt files differ."""
    from evokd.graph.replay import compare as compare_runs

    try:
        compare_runs(run_a, run_b, console)
    except _known_errors() as exc:
        fail(str(exc))


@app.command()
def bench(
    dataset: Annotated[str, typer.Argument(help="a config file (CONFIG.toml), or a shipped benchmark: sst2, imdb, "
                                           "conll2003, conll04, sentiment (the demo)")],
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
    resume: Annotated[bool, typer.Option(help="keep the finished runs of a stopped benchmark with the same settings")]
    = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Every method (baselines, EvoKD, ablations) on one task with one teacher-token budget."""
    from evokd.bench import harness

    _setup_logging(verbose)
    try:
        harness.run_benchmark(dataset, methods.split(",") if methods else None, seeds, profile, out, base_url,
                              data_dir=data, overrides=list(set_ or []), console=console, resume=resume, jobs=jobs)
    except (*_known_errors(), harness.BenchError) as exc:
        fail(str(exc))


@teacher_app.command("start")
def teacher_start(
    weights: Annotated[str, typer.Option(help="qwen2.5-coder-1.5b or qwen2.5-coder-0.5b")] = "qwen2.5-coder-1.5b",
    gguf: Annotated[Path | None, typer.Option(help="a GGUF file instead of the packaged weights")] = None,
) -> None:
    """Start a shared teacher server that later runs reuse."""
    from evokd.config import TeacherConfig
    from evokd.teacher import find_running, start_background

    try:
        running = find_running()
        if running is not None:
            console.print(f"already running: {running.base_url} ({running.weights}, pid {running.pid})")
            return
        with console.status("starting the teacher (first start assembles the weights)"):
            info = start_background(TeacherConfig(weights=weights, gguf=gguf))
    except _known_errors() as exc:
        fail(str(exc))
    console.print(f"teacher up: {info.base_url} ({info.weights}, pid {info.pid}, log {info.log_path})")


@teacher_app.command("status")
def teacher_status() -> None:
    """Is a shared teacher running?"""
    from evokd.teacher import find_running

    info = find_running()
    if info is None:
        console.print("no teacher running")
        raise typer.Exit(1)
    console.print(f"running: {info.base_url} ({info.weights}, pid {info.pid}, log {info.log_path})")


@teacher_app.command("stop")
def teacher_stop() -> None:
    """Stop the shared teacher."""
    from evokd.teacher import stop_background

    console.print("stopped" if stop_background() else "no teacher running")


@prompts_app.command("list")
def prompts_list(task: Annotated[str, typer.Option(help="classification or ner")] = "classification",
                 prompts: Annotated[Path | None, typer.Option(help="override directory")] = None) -> None:
    """List the prompt templates a run would use, and where each comes from."""
    from evokd.agents.prompts import PromptSet

    try:
        ps = PromptSet(task, prompts)
    except _known_errors() as exc:
        fail(str(exc))
    for key, template in ps.templates.items():
        console.print(f"{key:<18} {template.sha256[:12]}  {template.source}", highlight=False)


@prompts_app.command("show")
def prompts_show(agent: Annotated[str, typer.Argument(help="analyst, generator or verifier")],
                 task: Annotated[str, typer.Option()] = "classification",
                 prompts: Annotated[Path | None, typer.Option()] = None) -> None:
    """Print an agent's templates."""
    from evokd.agents.prompts import PromptSet

    try:
        ps = PromptSet(task, prompts)
    except _known_errors() as exc:
        fail(str(exc))
    found = {k: t for k, t in ps.templates.items() if k.split(".")[0] == agent}
    if not found:
        fail(f"unknown agent {agent!r}; one of analyst, generator, verifier")
    for key, template in found.items():
        console.rule(f"{key}  ({template.source})")
        console.print(template.text, markup=False, highlight=False)


@prompts_app.command("export")
def prompts_export(directory: Annotated[Path, typer.Argument(help="where to write the templates")]) -> None:
    """Copy all packaged templates to DIR, to edit and pass back with --prompts DIR."""
    import shutil

    from evokd.agents.prompts import packaged_dir

    src = packaged_dir()
    for path in sorted(src.glob("*/*.j2")):
        target = directory / path.parent.name / path.name
        if target.exists():
            fail(f"{target} exists; export into an empty directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        console.print(str(target))


def main() -> None:  # pragma: no cover
    sys.exit(app())
