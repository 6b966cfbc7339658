"""Reading finished runs: walk a trace, re-execute it offline, compare two runs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from evokd.agents.recording import Recording
from evokd.agents.scripted import ScriptedChatModel
from evokd.core.bio import describe_entities
from evokd.core.files import read_jsonl
from evokd.core.records import Decision, LLMCall, NodeTurn, RunHeader, RunResult
from evokd.core.runfolder import RunFolder, describe_teacher
from evokd.core.trace import read_trace
from evokd.graph.runner import Executed, RunError, execute, resume_config


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(Path(run_dir) / "metrics.jsonl", missing_ok=True)


def records(run_dir: Path, round: int | None = None, node: str | None = None) -> list[Any]:
    """The trace's records, of one round and one node if asked; a round or node the run does not
    have is a RunError naming those it has."""
    trace = Path(run_dir) / "trace.jsonl"
    if not trace.exists():
        raise RunError(f"{run_dir}: no trace.jsonl (not a run folder?)")
    everything = list(read_trace(trace))
    rounds = sorted({r.round for r in everything if hasattr(r, "round")})
    nodes = sorted({r.node for r in everything if isinstance(r, NodeTurn | LLMCall)})
    if round is not None and round not in rounds:
        have = f"rounds {rounds[0]}-{rounds[-1]}" if rounds else "no rounds yet"
        raise RunError(f"{run_dir}: no round {round} in this run (it has {have})")
    if node is not None and node not in nodes:
        raise RunError(f"{run_dir}: no node {node!r} in this run (it has {', '.join(nodes) or 'none yet'})")
    out = []
    for record in everything:
        if round is not None and getattr(record, "round", round) != round:
            continue
        if node is not None and getattr(record, "node", node) != node and not isinstance(record, RunHeader):
            continue
        out.append(record)
    return out


def _fold(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _count(value: Any) -> int:
    """A list in a node's traced output, or its "N items" summary."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, str) and value.endswith(" items"):
        return int(value.split()[0])
    return 0


def read_samples(run_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(Path(run_dir) / "samples.jsonl", missing_ok=True)


def verdict(sample: dict[str, Any], fold: Any) -> str:
    """One generated sample as a line: its intent, text, and what the Verifier made of it."""
    given: str | None
    if sample.get("tokens") is not None:
        given = describe_entities(sample["tokens"], sample.get("tags"), none="no entities")
    else:
        given = sample.get("label")
    head = f"{sample['intent']}: \"{fold(sample['text'])}\""
    if sample["accepted"]:
        return f"{head} [green]accepted as {escape(str(given))}[/]"
    label = f" (labelled {escape(str(given))})" if given else ""
    return f"{head} [red]rejected{label}: {escape(sample.get('reason') or 'no reason recorded')}[/]"


def turn_line(record: NodeTurn, metrics: dict[int, dict[str, Any]], samples: list[dict[str, Any]],
              fold: Any) -> str:
    """What a node did, in one line, for the nodes whose output is not a batch or a text."""
    out, m = record.output, metrics.get(record.round)
    if record.node == "seed":
        seeds = [s for s in samples if s.get("intent") == "seed"]
        shown = ", ".join(f"\"{fold(s['text'])}\" ({s.get('label') or 'entities'})" for s in seeds[:8])
        more = f", and {len(seeds) - 8} more" if len(seeds) > 8 else ""
        return f"picked {len(seeds)} gold seed examples: {escape(shown)}{more}"
    if record.node == "probe":
        return (f"student right on {_count(out.get('correct'))}, wrong on {_count(out.get('incorrect'))} "
                "of the samples shown to the teacher")
    if record.node == "trainer" and m is not None:
        loss = f", loss {m['train_loss']:.4f}" if m.get("train_loss") is not None else ""
        trained = f"trained on {m['train_size']} samples{loss}" if m["train_size"] else "nothing accepted, not trained"
        return f"{trained}; dev F1 {m['f1']:.4f} (best so far: round {m['best_round']})"
    return ""


def render(run_dir: Path, console: Console, round: int | None = None, node: str | None = None,
           full: bool = False) -> None:
    """The run as a tree: round -> node turn -> LLM calls (prompt and reply folded) and decisions."""
    metrics = {m["round"]: m for m in read_metrics(run_dir)}
    samples = read_samples(run_dir)
    tree = Tree(f"[bold]{escape(Path(run_dir).name)}[/]")
    rounds: dict[int, Tree] = {}
    pending_calls: list[LLMCall] = []
    fold = (lambda t, width=160: " ".join(t.split())) if full else _fold
    for record in records(run_dir, round, node):
        if isinstance(record, RunHeader):
            tree.add(f"run: evokd {record.evokd_version}, teacher {escape(describe_teacher(record.config))}, "
                     f"config {record.config_hash}"
                     + (" [yellow](resumed)[/]" if record.resumed else "")
                     + (f", forked from {escape(record.parent)}" if record.parent else ""))
            continue
        branch = rounds.get(record.round)
        if branch is None:
            m = metrics.get(record.round)
            label = f"[bold]round {record.round}[/]" + (f"  dev F1 {m['f1']:.4f}" if m else "")
            branch = rounds[record.round] = tree.add(label)
        if isinstance(record, LLMCall):
            pending_calls.append(record)
        elif isinstance(record, NodeTurn):
            status = f" [red]{escape(record.error)}[/]" if record.error else ""
            line = "" if record.error else turn_line(record, metrics, samples, lambda t: fold(t, 90))
            turn = branch.add(f"[cyan]{record.node}[/] {record.seconds:.1f}s{status}" + (f": {line}" if line else ""))
            for call in pending_calls:
                note = " (recorded)" if call.from_record else ""
                err = f" [red]{escape(call.error)}[/]" if call.error else ""
                c = turn.add(f"LLM {call.schema_name}: {call.tokens_in}+{call.tokens_out} tokens, "
                             f"{call.latency_s:.1f}s, {call.prompt_file}{note}{err}")
                c.add(f"[dim]prompt:[/] {escape(fold(call.messages[-1]['content']))}")
                c.add(f"[dim]reply:[/] {escape(fold(call.reply or ''))}")
            pending_calls = []
            for key in ("analysis", "stop_reason"):
                if record.output.get(key):
                    turn.add(f"{key}: {escape(fold(str(record.output[key])))}")
            for sample in record.output.get("batch", []) if isinstance(record.output.get("batch"), list) else []:
                turn.add(verdict(sample, lambda t: fold(t, 90)))
        elif isinstance(record, Decision):
            branch.add(f"decision: {record.next}" + (f" ({record.stop_reason})" if record.stop_reason else ""))
    console.print(tree)


class RoundDiff(BaseModel):
    round: int | None  # None: the final fit
    original: float | None
    rerun: float | None

    @property
    def same(self) -> bool:
        return self.original == self.rerun

    @property
    def name(self) -> str:
        return "final fit" if self.round is None else f"round {self.round}"


def rerun(run_dir: Path, out: Path | None = None, allow_divergence: bool = False,
          console: Console | None = None) -> tuple[Executed, list[RoundDiff]]:
    """Re-execute a run with its recorded replies (no LLM server) and compare every round's dev F1,
    and the final fit's when either run has one."""
    cfg, _ = resume_config(run_dir)
    # A rerun checks the recorded run; it is not a new experiment to track.
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"mlflow_uri": None})})
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
    final_before, final_after = final_fit_f1(Path(run_dir)), final_fit_f1(run.root)
    if final_before is not None or final_after is not None:
        diffs.append(RoundDiff(round=None, original=final_before, rerun=final_after))
    return result, diffs


def read_result(run_dir: Path) -> RunResult | None:
    path = Path(run_dir) / "result.json"
    return RunResult.model_validate_json(path.read_text()) if path.is_file() else None


def final_fit_f1(run_dir: Path) -> float | None:
    """The final fit's dev F1, from result.json (None: no final fit, or the run did not finish)."""
    result = read_result(run_dir)
    return result.final_fit.dev_f1 if result is not None and result.final_fit is not None else None


def prompt_digests(run_dir: Path) -> dict[str, str]:
    if not (Path(run_dir) / "trace.jsonl").is_file():
        return {}
    for record in read_trace(Path(run_dir) / "trace.jsonl"):
        if isinstance(record, RunHeader):
            return record.prompts
    return {}


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value and prefix == "":
            out.update(_flatten(value, f"{key}."))
        else:
            out[prefix + key] = value
    return out


def read_run_config(run_dir: Path) -> dict[str, Any]:
    try:
        return tomllib.loads((Path(run_dir) / "config.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def check_run_folder(run_dir: Path) -> None:
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"{run_dir}: no such folder")
    if not (path / "config.toml").is_file() or not (path / "metrics.jsonl").is_file():
        raise RunError(f"{run_dir}: not a run folder (a run folder has config.toml and metrics.jsonl)")


def outcome(run_dir: Path) -> dict[str, str]:
    """What a run came to, as table cells: from result.json, else (unfinished) from metrics.jsonl."""
    metrics = read_metrics(run_dir)
    result = read_result(run_dir)
    config = read_run_config(run_dir)
    if not metrics:
        return {"rounds": "none finished"}
    last = metrics[-1]
    best = next((m for m in metrics if m["round"] == last["best_round"]), metrics[0])
    minutes = sum(m["seconds"].get("total", 0.0) for m in metrics) / 60
    return {
        "method": result.method if result else last.get("method", "evokd"),
        "teacher": result.teacher if result and result.teacher else describe_teacher(config),
        "seed dev F1": f"{metrics[0]['f1']:.4f}",
        "best round": f"{best['round']} (dev F1 {best['f1']:.4f})",
        "test F1 (best round)": f"{result.test_f1:.4f}" if result and result.test_f1 is not None else "not scored",
        "final fit": final_fit_cell(result),
        "stop reason": (result.stop_reason or "none") + (f" ({result.stop_detail})" if result.stop_detail else "")
        if result else "unfinished (no result.json)",
        "rounds": str(len(metrics) - 1),
        "samples": f"{sum(m['accepted'] for m in metrics[1:])} accepted, {sum(m['rejected'] for m in metrics[1:])} "
                   "rejected",
        "teacher tokens": f"{last['tokens_in'] + last['tokens_out']} "
                          f"({last['tokens_in']} in, {last['tokens_out']} out)",
        "cost": f"{last['cost']:.4f}",
        "time": f"{minutes:.1f} min",
    }


def final_fit_cell(result: RunResult | None) -> str:
    """The final fit in `compare`'s table: dev and test F1, and the dev ECE calibration took it from."""
    final = result.final_fit if result is not None else None
    if final is None:
        return "none"
    test = f", test F1 {final.test_f1:.4f}" if final.test_f1 is not None else ""
    ships = "" if final.shipped else "; not shipped: the best round's scored higher on dev"
    return (f"dev F1 {final.dev_f1:.4f}{test} ({final.train_size} samples, epoch {final.best_epoch}; "
            f"dev ECE {final.dev_ece_before:.3f} -> {final.dev_ece_after:.3f}{ships})")


def compare(run_a: Path, run_b: Path, console: Console) -> None:
    """Outcome, spend and differing config values side by side; per-round dev F1 and tokens; the
    prompt files that differ."""
    for run_dir in (run_a, run_b):
        check_run_folder(run_dir)
    name_a, name_b = Path(run_a).name, Path(run_b).name
    summary = Table(title=f"A = {name_a}   B = {name_b}")
    summary.add_column("")
    summary.add_column("A")
    summary.add_column("B")
    oa, ob = outcome(run_a), outcome(run_b)
    for key in dict.fromkeys([*oa, *ob]):
        summary.add_row(key, escape(oa.get(key, "-")), escape(ob.get(key, "-")))
    console.print(summary)

    a, b = read_metrics(run_a), read_metrics(run_b)
    table = Table(title="per round")
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

    ca, cb = _flatten(read_run_config(run_a)), _flatten(read_run_config(run_b))
    differing = sorted(k for k in ca.keys() | cb.keys() if ca.get(k) != cb.get(k))
    if differing:
        config = Table(title="config values that differ")
        for col in ("key", "A", "B"):
            config.add_column(col)
        for key in differing:
            config.add_row(key, escape(json.dumps(ca.get(key))), escape(json.dumps(cb.get(key))))
        console.print(config)
    else:
        console.print("config values that differ: none")
    pa, pb = prompt_digests(run_a), prompt_digests(run_b)
    changed = sorted(name for name in pa.keys() | pb.keys() if pa.get(name) != pb.get(name))
    console.print("prompt files that differ: " + (", ".join(changed) if changed else "none"))
