"""Reading finished runs: walk a trace, re-execute it offline, compare two runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from evokd.agents.recording import Recording
from evokd.agents.scripted import ScriptedChatModel
from evokd.core.records import Decision, LLMCall, NodeTurn, RunHeader
from evokd.core.runfolder import RunFolder
from evokd.core.trace import read_trace
from evokd.graph.runner import RunError, RunResult, execute, resume_config


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def records(run_dir: Path, round: int | None = None, node: str | None = None) -> list[Any]:
    trace = Path(run_dir) / "trace.jsonl"
    if not trace.exists():
        raise RunError(f"{run_dir}: no trace.jsonl (not a run folder?)")
    out = []
    for record in read_trace(trace):
        if round is not None and getattr(record, "round", round) != round:
            continue
        if node is not None and getattr(record, "node", node) != node and not isinstance(record, RunHeader):
            continue
        out.append(record)
    return out


def _fold(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render(run_dir: Path, console: Console, round: int | None = None, node: str | None = None,
           full: bool = False) -> None:
    """The run as a tree: round -> node turn -> LLM calls (prompt and reply folded) and decisions."""
    metrics = {m["round"]: m for m in read_metrics(run_dir)}
    tree = Tree(f"[bold]{Path(run_dir).name}[/]")
    rounds: dict[int, Tree] = {}
    pending_calls: list[LLMCall] = []
    fold = (lambda t: t) if full else _fold
    for record in records(run_dir, round, node):
        if isinstance(record, RunHeader):
            tree.add(f"run: evokd {record.evokd_version}, teacher {record.teacher_model} at "
                     f"{record.teacher_url}, config {record.config_hash}"
                     + (" [yellow](resumed)[/]" if record.resumed else "")
                     + (f", forked from {record.parent}" if record.parent else ""))
            continue
        branch = rounds.get(record.round)
        if branch is None:
            m = metrics.get(record.round)
            label = f"[bold]round {record.round}[/]" + (f"  dev F1 {m['f1']:.4f}" if m else "")
            branch = rounds[record.round] = tree.add(label)
        if isinstance(record, LLMCall):
            pending_calls.append(record)
        elif isinstance(record, NodeTurn):
            status = f"[red]{record.error}[/]" if record.error else ""
            turn = branch.add(f"[cyan]{record.node}[/] {record.seconds:.1f}s {status}")
            for call in pending_calls:
                note = " (recorded)" if call.from_record else ""
                err = f" [red]{call.error}[/]" if call.error else ""
                c = turn.add(f"LLM {call.schema_name}: {call.tokens_in}+{call.tokens_out} tokens, "
                             f"{call.latency_s:.1f}s, {call.prompt_file}{note}{err}")
                c.add(f"[dim]prompt:[/] {fold(call.messages[-1]['content'])}")
                c.add(f"[dim]reply:[/] {fold(call.reply or '')}")
            pending_calls = []
            for key in ("analysis", "stop_reason"):
                if record.output.get(key):
                    turn.add(f"{key}: {fold(str(record.output[key]))}")
            for sample in record.output.get("batch", []) if isinstance(record.output.get("batch"), list) else []:
                verdict = "[green]accepted[/]" if sample["accepted"] else f"[red]{sample['reason']}[/]"
                turn.add(f"{sample['intent']}: {fold(sample['text'], 90)} -> {sample.get('label')} {verdict}")
        elif isinstance(record, Decision):
            branch.add(f"decision: {record.next}" + (f" ({record.stop_reason})" if record.stop_reason else ""))
    console.print(tree)


class RoundDiff(BaseModel):
    round: int
    original: float | None
    rerun: float | None

    @property
    def same(self) -> bool:
        return self.original == self.rerun


def rerun(run_dir: Path, out: Path | None = None, allow_divergence: bool = False,
          console: Console | None = None) -> tuple[RunResult, list[RoundDiff]]:
    """Re-execute a run with its recorded replies (no LLM server) and compare every round's dev F1."""
    cfg, _ = resume_config(run_dir)
    recording = Recording.from_run(run_dir, mode="lenient" if allow_divergence else "strict")
    if out is not None:
        out.mkdir(parents=True, exist_ok=False)
        run = RunFolder(out)
    else:
        run = RunFolder.create(cfg.runs_dir, f"{cfg.name}-rerun")
    (run.root / "config.toml").write_text((Path(run_dir) / "config.toml").read_text())
    offline = ScriptedChatModel(script=lambda messages: RuntimeError("replay asked the live teacher"))
    result = execute(cfg, run=run, recording=recording, parent=str(Path(run_dir).resolve()),
                     chat_model=offline, base_url="replay")
    before = {m["round"]: m["f1"] for m in read_metrics(run_dir)}
    after = {m["round"]: m["f1"] for m in read_metrics(run.root)}
    diffs = [RoundDiff(round=r, original=before.get(r), rerun=after.get(r)) for r in sorted(before | after)]
    return result, diffs


def prompt_digests(run_dir: Path) -> dict[str, str]:
    for record in read_trace(Path(run_dir) / "trace.jsonl"):
        if isinstance(record, RunHeader):
            return record.prompts
    return {}


def compare(run_a: Path, run_b: Path, console: Console) -> None:
    """Per-round dev F1 and tokens side by side, and the prompt files that differ."""
    a, b = read_metrics(run_a), read_metrics(run_b)
    table = Table(title=f"{Path(run_a).name}  vs  {Path(run_b).name}")
    for col in ("round", "F1 A", "F1 B", "B - A", "tokens A", "tokens B"):
        table.add_column(col, justify="right")
    by_a, by_b = {m["round"]: m for m in a}, {m["round"]: m for m in b}
    for r in sorted(by_a | by_b):
        ma, mb = by_a.get(r), by_b.get(r)
        fa = f"{ma['f1']:.4f}" if ma else "-"
        fb = f"{mb['f1']:.4f}" if mb else "-"
        delta = f"{mb['f1'] - ma['f1']:+.4f}" if ma and mb else ""
        ta = str(ma["tokens_in"] + ma["tokens_out"]) if ma else "-"
        tb = str(mb["tokens_in"] + mb["tokens_out"]) if mb else "-"
        table.add_row(str(r), fa, fb, delta, ta, tb)
    console.print(table)
    pa, pb = prompt_digests(run_a), prompt_digests(run_b)
    changed = sorted(name for name in pa.keys() | pb.keys() if pa.get(name) != pb.get(name))
    console.print("prompt files that differ: " + (", ".join(changed) if changed else "none"))
