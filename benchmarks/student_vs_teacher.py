"""The distilled student against the teacher it learned from: quality, speed, memory and size.

    python benchmarks/student_vs_teacher.py --sst2-run RUN --conll-run RUN [--base-url URL]
        [--teacher-b1 48] [--conll-n 300] [--keep-teacher] [--skip-teacher]

Either run may be left out: a dataset not measured keeps its entry in the JSON from earlier.

Texts: SST-2 dev (GLUE's, 872 labelled sentences: ../shared/data/sst2/test.tsv) and a seeded
sample of CoNLL-2003 test sentences (../shared/data/conll2003/test.txt). Systems:

- `pytorch`: the run's best student (RUN/student) through `evokd predict`'s code path;
- `onnx-fp32` and `onnx-int8`: the same student after `evokd export` (with its self-check), run by
  onnxruntime without torch;
- `teacher`: the embedded teacher (or --base-url) labelling the same texts through the Verifier's
  prompt and reply schema, batched as the run's `loop.verifier_batch_size`; for NER its entities
  are aligned to the words as the Verifier's are (a sentence the Verifier would reject counts as
  finding no entity).

Each student system runs in its own process, so its peak resident memory (VmHWM: Python,
libraries and model) is its own; the teacher's is the llama.cpp server's VmHWM. Batch 1: every
text alone (the teacher: the first --teacher-b1 texts, one per call). Batched: 32 texts per call
for the students, the run's Verifier batch for the teacher; ms per text is a batch's time divided
by its size. F1: macro-F1 (SST-2), seqeval micro-F1 (CoNLL-2003), as the loop scores them. Writes
docs/benchmarks/student_vs_teacher.json (after each system, so a stopped run keeps what it
measured) and .md, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from evokd.core.records import metric_name

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "docs" / "benchmarks" / "student_vs_teacher.json"
STUDENTS = ("pytorch", "onnx-fp32", "onnx-int8")
BATCH = 32
DATASETS = {"sst2": SHARED / "sst2" / "test.tsv", "conll2003": SHARED / "conll2003" / "test.txt"}


def eval_samples(dataset: str, cfg: Any, limit: int | None) -> list[Any]:
    """The dataset's texts, or a seeded sample of `limit` of them (input order kept)."""
    from evokd.student.data import cap, read_samples

    return cap(read_samples(DATASETS[dataset], cfg.task), limit, 13)


def items_of(samples: list[Any], task_type: str) -> list[Any]:
    from evokd.student.predictor import Item

    if task_type == "ner":
        return [Item.from_tokens(s.tokens or []) for s in samples]
    return [Item(text=s.text) for s in samples]


def score(task: Any, samples: list[Any], predicted: list[Any]) -> dict[str, float]:
    from evokd.student.metrics import classification_report, ner_report

    if task.type == "ner":
        report = ner_report([s.tags or [] for s in samples], predicted, task.labels)
    else:
        report = classification_report([str(s.label) for s in samples], [p or "" for p in predicted], task.labels)
    return {"f1": report.f1, "accuracy": report.accuracy}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timing(per_text_ms: list[float], texts: int, seconds: float) -> dict[str, float]:
    return {"texts": texts, "texts_per_s": texts / seconds if seconds else 0.0,
            "p50_ms": pct(per_text_ms, 0.50), "p95_ms": pct(per_text_ms, 0.95)}


def dir_bytes(path: Path, skip: tuple[str, ...] = ("README.md",)) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and p.name not in skip)


# ------------------------------------------------------------------------------------------ students


def worker(system: str, dataset: str, run_dir: Path, export_dir: Path | None, limit: int | None) -> dict[str, Any]:
    """One student system on one dataset, in this (fresh) process."""
    from evokd.config import load_config

    cfg = load_config(run_dir / "config.toml")
    samples = eval_samples(dataset, cfg, limit)
    items = items_of(samples, cfg.task.type)
    started = time.perf_counter()
    if system == "pytorch":
        from evokd.student.model import load_student
        from evokd.student.torch_predict import torch_predictor

        predictor = torch_predictor(load_student(run_dir / "student", cfg.task, cfg.student), run_dir / "student")
        size = dir_bytes(run_dir / "student")
    else:
        from evokd.student.onnx_predict import load_exported

        assert export_dir is not None
        predictor, _ = load_exported(export_dir)
        size = dir_bytes(export_dir)
    load_seconds = time.perf_counter() - started
    predictor.predict(items[:BATCH], batch_size=BATCH)  # warm-up
    one: list[float] = []
    t0 = time.perf_counter()
    for item in items:
        t = time.perf_counter()
        predictor.predict([item], batch_size=1)
        one.append((time.perf_counter() - t) * 1000)
    b1_seconds = time.perf_counter() - t0
    batched: list[float] = []
    last = [time.perf_counter()]

    def lap(n: int) -> None:
        now = time.perf_counter()
        batched.extend([(now - last[0]) * 1000 / n])
        last[0] = now

    t0 = time.perf_counter()
    last[0] = t0
    results = predictor.predict(items, batch_size=BATCH, on_batch=lap)
    batch_seconds = time.perf_counter() - t0
    predicted = [r.tags for r in results] if cfg.task.type == "ner" else [r.label for r in results]
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report its parent's peak.
    peak_mb = _vm_hwm_mb(os.getpid()) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**score(cfg.task, samples, predicted), "n": len(samples),
            "batch1": timing(one, len(items), b1_seconds), "batched": {**timing(batched, len(items), batch_seconds),
                                                                        "batch_size": BATCH},
            "peak_rss_mb": peak_mb, "size_mb": size / 1e6, "load_s": load_seconds,
            "torch_imported": "torch" in sys.modules}


def run_worker(system: str, dataset: str, run_dir: Path, export_dir: Path | None,
               limit: int | None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", system, "--dataset", dataset, "--run", str(run_dir)]
    if limit is not None:
        command += ["--limit", str(limit)]
    if export_dir is not None:
        command += ["--export-dir", str(export_dir)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{system} on {dataset} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def export(run_dir: Path, quantize: str | None, say: Any) -> tuple[Path, dict[str, Any]]:
    from dataclasses import asdict

    from evokd.export import export_onnx

    target = run_dir / ("export-onnx-int8" if quantize else "export-onnx")
    report = export_onnx(run_dir, target, quantize)
    say(f"  exported {target} ({report.model_bytes / 1e6:.1f} MB), self-check agreement "
        f"{report.check.agreement:.2%} of {report.check.compared} dev {report.check.unit}")
    return target, asdict(report.check)


# ------------------------------------------------------------------------------------------ teacher


def teacher_tags(tokens: list[str], entities: list[Any] | None, types: list[str]) -> tuple[list[str], bool]:
    """Word tags on the gold words from the teacher's entities, aligned as the Verifier aligns them;
    (all "O", False) when the Verifier would reject the sentence."""
    from evokd.agents.alignment import align
    from evokd.student.data import normalise_bio, token_offsets

    text = " ".join(tokens)
    if entities is None:
        return ["O"] * len(tokens), False
    aligned = align(text, entities, types)
    if aligned.reason is not None:
        return ["O"] * len(tokens), False
    # The Verifier's words never cross a space, so each gold word holds one or more of them.
    pieces = token_offsets(text)
    tags, position, k = [], 0, 0
    for token in tokens:
        end = position + len(token)
        while k < len(pieces) and pieces[k][0] < position:
            k += 1
        tags.append(aligned.tags[k] if k < len(pieces) and pieces[k][0] < end else "O")
        position = end + 1
    return normalise_bio(tags), True


def run_teacher(dataset: str, run_dir: Path, base_url: str | None, b1: int, limit: int | None,
                say: Any) -> dict[str, Any]:
    from evokd.agents.client import StructuredOutputError, TeacherClient, make_chat_model, resolve_mode
    from evokd.agents.prompts import PromptSet
    from evokd.agents.verifier import check_label, reply_schema
    from evokd.config import load_config

    cfg = load_config(run_dir / "config.toml")
    task = cfg.task
    samples = eval_samples(dataset, cfg, limit)
    prompts = PromptSet(task.type, cfg.prompts_dir)
    size = cfg.loop.verifier_batch_size
    if base_url:
        endpoint: Any = nullcontext(base_url)
    else:
        from evokd.teacher import local_teacher

        endpoint = local_teacher(cfg.teacher, ROOT / "runs", on_status=say)
    with endpoint as info:
        url = info if isinstance(info, str) else info.base_url
        teacher = TeacherClient(make_chat_model(cfg.llm, url), cfg.llm, mode=resolve_mode(cfg.llm, base_url is None),
                          base_url=url)

        def label(batch: list[Any]) -> tuple[list[Any], int, bool]:
            messages, template = prompts.messages(
                "verifier", task_description=task.description, labels=task.labels,
                label_descriptions=task.label_descriptions, texts=[" ".join(s.text.split()) for s in batch])
            try:
                reply, _, calls = teacher.ask(messages, reply_schema(task.type, task.labels, len(batch)), round=0,
                                              node="verifier", prompt_file=template.name,
                                              temperature=cfg.llm.verifier_temperature)
            except StructuredOutputError as exc:
                return [None] * len(batch), sum(c.tokens_in + c.tokens_out for c in exc.calls), False
            values = [getattr(reply, f"t{i}") for i in range(1, len(batch) + 1)]
            return values, sum(c.tokens_in + c.tokens_out for c in calls), True

        def decode(batch: list[Any], values: list[Any]) -> tuple[list[Any], int]:
            out, rejected = [], 0
            for sample, value in zip(batch, values, strict=True):
                if task.type == "ner":
                    from evokd.agents.alignment import Entity

                    entities = None if value is None else [Entity(**e.model_dump()) for e in value]
                    tags, ok = teacher_tags(sample.tokens or [], entities, task.labels)
                    out.append(tags)
                else:
                    checked, reason = check_label(value, task.labels)
                    out.append(checked if reason is None else "")
                    ok = reason is None
                rejected += not ok
            return out, rejected

        say(f"  teacher, {len(samples)} texts in batches of {size}")
        predicted: list[Any] = []
        per_text: list[float] = []
        tokens = rejected = failed = 0
        t0 = time.perf_counter()
        for start in range(0, len(samples), size):
            batch = samples[start:start + size]
            t = time.perf_counter()
            values, used, ok = label(batch)
            per_text.append((time.perf_counter() - t) * 1000 / len(batch))
            out, bad = decode(batch, values)
            predicted += out
            tokens, rejected, failed = tokens + used, rejected + bad, failed + (not ok)
            if (start // size) % 10 == 0:
                say(f"    {start + len(batch)}/{len(samples)} ({time.perf_counter() - t0:.0f} s)")
        batch_seconds = time.perf_counter() - t0
        say(f"  teacher, the first {b1} texts one per call")
        one: list[float] = []
        t0 = time.perf_counter()
        for sample in samples[:b1]:
            t = time.perf_counter()
            label([sample])
            one.append((time.perf_counter() - t) * 1000)
        b1_seconds = time.perf_counter() - t0
        gguf = Path(info.gguf) if not isinstance(info, str) else None
        peak = _vm_hwm_mb(info.pid) if not isinstance(info, str) else None  # before the server stops
    return {**score(task, samples, predicted), "n": len(samples),
            "batch1": timing(one, len(one), b1_seconds),
            "batched": {**timing(per_text, len(samples), batch_seconds), "batch_size": size},
            "peak_rss_mb": peak, "size_mb": gguf.stat().st_size / 1e6 if gguf else None,
            "tokens": tokens, "rejected": rejected, "failed_batches": failed,
            "weights": base_url or cfg.teacher.weights}


def _vm_hwm_mb(pid: int | None) -> float | None:
    """Peak resident memory of the teacher server process (Linux /proc), when it runs here."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# ------------------------------------------------------------------------------------------ report


def headline(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dataset, entry in result["datasets"].items():
        systems = entry["systems"]
        teacher = systems.get("teacher")
        if not teacher:
            continue
        for name in STUDENTS:
            s = systems.get(name)
            if not s:
                continue
            out.setdefault(dataset, {})[name] = {
                "speedup_batched": s["batched"]["texts_per_s"] / teacher["batched"]["texts_per_s"],
                "speedup_batch1": teacher["batch1"]["p50_ms"] / s["batch1"]["p50_ms"],
                "f1_fraction": s["f1"] / teacher["f1"] if teacher["f1"] else None,
                "memory_fraction": s["peak_rss_mb"] / teacher["peak_rss_mb"] if teacher.get("peak_rss_mb") else None,
                "size_fraction": s["size_mb"] / teacher["size_mb"] if teacher.get("size_mb") else None,
            }
    return out


def render_markdown(result: dict[str, Any]) -> str:
    lines = []
    for dataset, entry in result["datasets"].items():
        metric = metric_name("ner" if dataset == "conll2003" else "classification")
        lines += [f"**{dataset}** ({entry['n']} texts; student from `{Path(entry['run']).name}`, "
                  f"dev F1 {entry.get('run_dev_f1', float('nan')):.3f})", "",
                  f"| system | {metric} | texts/s batched | p50 / p95 ms per text, batch 1 | "
                  "p50 / p95 ms per text, batched | peak memory MB | size on disk MB |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name in (*STUDENTS, "teacher"):
            s = entry["systems"].get(name)
            if not s:
                continue
            b1, bb = s["batch1"], s["batched"]
            extra = f" (batch 1 on {b1['texts']})" if b1["texts"] != s["n"] else ""
            mem = f"{s['peak_rss_mb']:,.0f}" if s.get("peak_rss_mb") else "–"
            size = f"{s['size_mb']:,.1f}" if s.get("size_mb") else "–"
            lines.append(f"| {name} (batch {bb['batch_size']}){extra} | {s['f1']:.3f} | {bb['texts_per_s']:,.1f} | "
                         f"{b1['p50_ms']:,.1f} / {b1['p95_ms']:,.1f} | {bb['p50_ms']:,.1f} / {bb['p95_ms']:,.1f} | "
                         f"{mem} | {size} |")
        checks = entry.get("export_checks", {})
        if checks:
            lines += ["", "Export self-check (agreement with the PyTorch student on the run's dev set): " + ", ".join(
                f"{k} {v['agreement']:.2%} of {v['compared']} {v['unit']}" for k, v in checks.items())]
        lines.append("")
    for dataset, ratios in result.get("headline", {}).items():
        for name, r in ratios.items():
            lines.append(f"- {dataset}, {name}: {r['speedup_batched']:,.0f}× the teacher's texts/s batched "
                         f"({r['speedup_batch1']:,.0f}× faster per text at batch 1), "
                         f"{r['f1_fraction']:.0%} of its F1" if r["f1_fraction"] is not None else "")
    return "\n".join(lines) + "\n"


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for dataset, entry in result["datasets"].items():
        table = Table(title=f"{dataset}: student vs teacher ({entry['n']} texts)")
        for column in ("system", "F1", "texts/s batched", "p50/p95 ms b1", "p50/p95 ms batched", "peak MB", "MB"):
            table.add_column(column, justify="right")
        for name in (*STUDENTS, "teacher"):
            s = entry["systems"].get(name)
            if s:
                table.add_row(name, f"{s['f1']:.3f}", f"{s['batched']['texts_per_s']:,.1f}",
                              f"{s['batch1']['p50_ms']:,.1f}/{s['batch1']['p95_ms']:,.1f}",
                              f"{s['batched']['p50_ms']:,.1f}/{s['batched']['p95_ms']:,.1f}",
                              f"{s['peak_rss_mb']:,.0f}" if s.get("peak_rss_mb") else "–",
                              f"{s['size_mb']:,.1f}" if s.get("size_mb") else "–")
        console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sst2-run", type=Path)
    parser.add_argument("--conll-run", type=Path)
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--teacher-b1", type=int, default=48, help="texts the teacher labels one per call")
    parser.add_argument("--conll-n", type=int, default=300)
    parser.add_argument("--sst2-n", type=int, default=None, help="a seeded sample of the 872 SST-2 sentences")
    parser.add_argument("--skip-teacher", action="store_true")
    parser.add_argument("--keep-teacher", action="store_true", help="reuse the teacher rows of an earlier JSON")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--worker", choices=STUDENTS)
    parser.add_argument("--dataset", choices=tuple(DATASETS))
    parser.add_argument("--run", type=Path)
    parser.add_argument("--export-dir", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.dataset, args.run, args.export_dir, args.limit)))
        return

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    # Datasets not measured in this invocation keep their earlier entries, so each can be rerun alone.
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    result: dict[str, Any] = {"machine": f"{os.cpu_count()} CPU cores, shared with other jobs",
                              "datasets": dict(earlier.get("datasets", {}))}

    def write() -> None:
        result["headline"] = headline(result)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(render_markdown(result))

    for dataset, run_dir in (("sst2", args.sst2_run), ("conll2003", args.conll_run)):
        if run_dir is None:
            continue
        run_dir = run_dir.resolve()
        say(f"{dataset}: {run_dir}")
        from evokd.config import load_config
        from evokd.core.files import read_jsonl

        cfg = load_config(run_dir / "config.toml")
        metrics = read_jsonl(run_dir / "metrics.jsonl")
        best_dev = max((m.get("dev", {}).get("f1", m.get("dev_f1", 0.0)) or 0.0 for m in metrics), default=None)
        limit = args.conll_n if dataset == "conll2003" else args.sst2_n
        n = len(eval_samples(dataset, cfg, limit))
        entry: dict[str, Any] = {"command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                 "run": str(run_dir), "n": n, "run_dev_f1": best_dev, "systems": {},
                                 "export_checks": {}}
        result["datasets"][dataset] = entry
        exports = {}
        for quantize in (None, "int8"):
            name = "onnx-int8" if quantize else "onnx-fp32"
            exports[name], entry["export_checks"][name] = export(run_dir, quantize, say)
        for system in STUDENTS:
            say(f"  {system}")
            entry["systems"][system] = run_worker(system, dataset, run_dir, exports.get(system), limit)
            write()
        old = earlier.get("datasets", {}).get(dataset, {}).get("systems", {}).get("teacher")
        if args.keep_teacher and old:
            entry["systems"]["teacher"] = old
        elif not args.skip_teacher:
            entry["systems"]["teacher"] = run_teacher(dataset, run_dir, args.base_url, args.teacher_b1, limit, say)
        entry["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write()
    print_table(result)
    print(render_markdown(result))


if __name__ == "__main__":
    main()
