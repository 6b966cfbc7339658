"""`evokd teacher ...` (the embedded teacher server) and `evokd prompts ...` (the agents' templates)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evokd.cli.common import _known_errors, _out, console, fail

teacher_app = typer.Typer(help="The embedded local teacher (llama.cpp server).", no_args_is_help=True)
prompts_app = typer.Typer(help="Agent prompt templates.", no_args_is_help=True)


@teacher_app.command("start")
def teacher_start(
    weights: Annotated[str, typer.Option(help="qwen2.5-coder-1.5b or qwen2.5-coder-0.5b")] = "qwen2.5-coder-1.5b",
    gguf: Annotated[Path | None, typer.Option(help="a GGUF file instead of the packaged weights")] = None,
) -> None:
    """Start a shared teacher server that later runs reuse.

    Example: evokd teacher start --weights qwen2.5-coder-0.5b
    """
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
    """Is a shared teacher running? (exit status 1 if not)

    Example: evokd teacher status
    """
    from evokd.teacher import find_running

    info = find_running()
    if info is None:
        console.print("no teacher running")
        raise typer.Exit(1)
    console.print(f"running: {info.base_url} ({info.weights}, pid {info.pid}, log {info.log_path})")


@teacher_app.command("stop")
def teacher_stop() -> None:
    """Stop the shared teacher.

    Example: evokd teacher stop
    """
    from evokd.teacher import stop_background

    console.print("stopped" if stop_background() else "no teacher running")


@prompts_app.command("list")
def prompts_list(task: Annotated[str, typer.Option(help="classification or ner")] = "classification",
                 prompts: Annotated[Path | None, typer.Option(help="override directory")] = None) -> None:
    """List the prompt templates a run would use, and where each comes from.

    Example: evokd prompts list --task ner --prompts my-prompts/
    """
    from evokd.agents.prompts import PromptSet

    try:
        ps = PromptSet(task, prompts)
    except _known_errors() as exc:
        fail(str(exc))
    out = _out()
    for key, template in ps.templates.items():
        out.print(f"{key:<24} {template.sha256[:12]}  {template.source}", highlight=False)


@prompts_app.command("show")
def prompts_show(agent: Annotated[str, typer.Argument(help="an agent: analyst, generator, verifier, llm2llm, ...")],
                 task: Annotated[str, typer.Option(help="classification or ner")] = "classification",
                 prompts: Annotated[Path | None, typer.Option(help="override directory")] = None) -> None:
    """Print an agent's templates (system and user parts).

    Example: evokd prompts show verifier --task ner
    """
    from evokd.agents.prompts import PromptSet

    try:
        ps = PromptSet(task, prompts)
    except _known_errors() as exc:
        fail(str(exc))
    found = {k: t for k, t in ps.templates.items() if k.split(".")[0] == agent}
    if not found:
        agents = ", ".join(dict.fromkeys(k.split(".")[0] for k in ps.templates))
        fail(f"no template for {agent!r} ({task}); the templates are for: {agents}")
    for key, template in found.items():
        console.rule(f"{key}  ({template.source})")
        console.print(template.text, markup=False, highlight=False)


@prompts_app.command("export")
def prompts_export(directory: Annotated[Path, typer.Argument(help="where to write the templates")]) -> None:
    """Copy all packaged templates to DIR, to edit and pass back with --prompts DIR.

    Example: evokd prompts export my-prompts/
    """
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
