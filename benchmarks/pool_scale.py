"""Seconds and peak memory of one round's selection from a pool of 10,000 and 100,000 texts.

    python benchmarks/pool_scale.py [--sizes 10000,100000] [--rounds 3] [--n 16] [--shortlist 2000]
                                    [--sst2 ../shared/data/sst2/train.tsv]

The pools are SST-2's training sentences (60,614); beyond that, copies with two neighbouring words
swapped (seeded), so a 100,000-text pool has no exact repeats for the index to drop. Each size
starts from an empty cache: the scan and the first encoding by the frozen MiniLM encoder are
timed on their own; then, for each strategy, `--rounds` selections of `--n` texts with the real
student (all-MiniLM-L6-v2, fine-tuned on 8 gold SST-2 dev texts per label) rescoring the
shortlist. Picks are labelled with their gold SST-2 label (no teacher: this measures selection,
not labelling) and join the labelled set the proxy is fitted on. Peak memory is the process's
resident set (VmRSS, sampled every 10 ms) during the step. Prints a table and writes
docs/benchmarks/pool_scale.json. Target: a round's selection under 60 s on 2 cores after the first
encoding, memory bounded (not growing with the pool beyond its float16 vectors).
"""

from __future__ import annotations

import os

# The machine's cores are shared: torch's OpenMP threads spin while they wait for each other, and
# with the cores busy that made two threads 4-7x slower than one here (500 texts embedded in 29 s
# against 5 s with passive waiting). Set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from evokd.config import StudentConfig, TaskConfig
from evokd.core.records import Sample
from evokd.student.data import read_classification
from evokd.student.loading import resolve_model_path
from evokd.student.model import build_student
from evokd.student.pool import model_key, open_pool
from evokd.student.query import select, student_uncertainty

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "pool_scale.json"
SST2 = ROOT.parent / "shared" / "data" / "sst2"
TASK = TaskConfig(labels=["negative", "positive"], text_column="sentence", label_column="label",
                  label_map={"0": "negative", "1": "positive"})


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Wall seconds and the peak resident set (MB) of the block, sampled every 10 ms."""
    out = {"rss_before_mb": rss_mb()}
    peak = [out["rss_before_mb"]]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - started
        stop.set()
        sampler.join()
        out["peak_rss_mb"] = max(peak[0], rss_mb())


def write_pool(path: Path, size: int, sentences: list[tuple[str, str]]) -> dict[str, str]:
    """`size` texts, one a line; beyond the real sentences, seeded word-swapped copies. Returns
    each text's gold label."""
    rng = random.Random(13)
    gold: dict[str, str] = {}
    with path.open("w", encoding="utf-8") as out:
        for i in range(size):
            text, label = sentences[i % len(sentences)]
            if i >= len(sentences):
                words = text.split()
                if len(words) >= 2:
                    j = rng.randrange(len(words) - 1)
                    words[j], words[j + 1] = words[j + 1], words[j]
                text = " ".join([*words, "indeed"] if len(words) < 3 else words)
            text = " ".join(text.split())
            gold[text] = label
            out.write(text + "\n")
    return gold


def run_size(size: int, args: argparse.Namespace, sentences: list[tuple[str, str]], seed_set: list[Sample],
             console: Console) -> dict[str, Any]:
    cfg = StudentConfig(max_length=128)
    work = Path(tempfile.mkdtemp(prefix=f"pool-scale-{size}-"))
    os.environ["EVOKD_CACHE_DIR"] = str(work / "cache")
    gold = write_pool(work / "pool.txt", size, sentences)
    task = TaskConfig(labels=TASK.labels)
    result: dict[str, Any] = {"size": size, "real_sentences": min(size, len(sentences)),
                              "perturbed_copies": max(0, size - len(sentences))}

    with measured() as scan:
        index = open_pool(work / "pool.txt", task)
        usable = index.usable([])
    result["scan"] = {**scan, "rows": len(index), "usable": len(usable.rows), "dropped": usable.describe()}

    encoder = build_student(task, cfg)
    key = model_key(resolve_model_path(cfg.model), cfg.max_length)
    with Progress("encoding", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console) as bar:
        job = bar.add_task("encode", total=len(index))
        with measured() as encode:
            vectors = index.embeddings(key, lambda texts: encoder.embed(texts).numpy(),
                                       progress=lambda done, total: bar.update(job, completed=done))
    result["first_encoding"] = {**encode, "texts_per_second": len(index) / encode["seconds"],
                                "vectors_mb": vectors.nbytes / 2**20}
    with measured() as again:
        index.embeddings(key, lambda texts: encoder.embed(texts).numpy())
    result["cached_open"] = again

    student = build_student(task, cfg)
    student.fit(seed_set, epochs=10, seed=42)
    seed_x = encoder.embed([s.text for s in seed_set]).numpy()
    seed_y = np.array([TASK.labels.index(str(s.label)) for s in seed_set])

    def rescore(rows: np.ndarray) -> np.ndarray:
        return student_uncertainty(student.predict(index.samples(rows)))

    result["rounds"] = []
    for strategy in ("random", "uncertainty", "diverse"):
        picked: list[int] = []
        for round in range(1, args.rounds + 1):
            taken = set(picked)
            candidates = np.array([r for r in usable.rows.tolist() if r not in taken], dtype=np.int64)
            train_x = np.concatenate([seed_x, np.asarray(vectors[picked], dtype=np.float32)]) if picked else seed_x
            labels = [TASK.labels.index(gold[str(e)]) for e in index.entries(picked)]
            train_y = np.concatenate([seed_y, np.array(labels, dtype=int)])
            timings: dict[str, float] = {}

            def timed(rows: np.ndarray, timings: dict[str, float] = timings) -> np.ndarray:
                started = time.perf_counter()
                scores = rescore(rows)
                timings["rescore_seconds"] = time.perf_counter() - started
                return scores

            with measured() as step:
                chosen = select(strategy, candidates=candidates, n=args.n, seed=round, vectors=vectors,
                                train_x=train_x, train_y=train_y, rescore=timed, shortlist_size=args.shortlist)
            picked += chosen.rows.tolist()
            row = {"strategy": strategy, "round": round, **step, **timings, "shortlisted": chosen.shortlisted,
                   "labelled": len(train_y)}
            result["rounds"].append(row)
            console.print(f"{size:>7,} {strategy:<12} round {round}: {step['seconds']:.1f} s, "
                          f"peak {step['peak_rss_mb']:.0f} MB")
    index.close()
    shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--shortlist", type=int, default=2000)
    parser.add_argument("--sst2", type=Path, default=SST2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    console = Console()
    sentences = [(s.text, str(s.label)) for s in read_classification(args.sst2 / "train.tsv", TASK)]
    dev = read_classification(args.sst2 / "dev.tsv", TASK)
    seed_set = [s for label in TASK.labels for s in [d for d in dev if d.label == label][:8]]
    sizes = [int(x) for x in args.sizes.split(",")]
    results = [run_size(size, args, sentences, seed_set, console) for size in sizes]

    table = Table(title="pool selection per round (after the first encoding)")
    for column in ("pool", "step", "mean s", "max s", "student s", "peak RSS MB", "+ MB"):
        table.add_column(column, justify="right")
    for result in results:
        size = f"{result['size']:,}"
        for step in ("scan", "first_encoding", "cached_open"):
            m = result[step]
            rate = f"{m['texts_per_second']:.0f} texts/s" if "texts_per_second" in m else ""
            table.add_row(size, step.replace("_", " "), f"{m['seconds']:.2f}", "", rate,
                          f"{m['peak_rss_mb']:.0f}", f"{m['peak_rss_mb'] - m['rss_before_mb']:.0f}")
        for strategy in ("random", "uncertainty", "diverse"):
            rows = [r for r in result["rounds"] if r["strategy"] == strategy]
            table.add_row(size, f"{strategy} x{len(rows)}", f"{np.mean([r['seconds'] for r in rows]):.1f}",
                          f"{max(r['seconds'] for r in rows):.1f}",
                          f"{np.mean([r.get('rescore_seconds', 0.0) for r in rows]):.1f}",
                          f"{max(r['peak_rss_mb'] for r in rows):.0f}",
                          f"{max(r['peak_rss_mb'] - r['rss_before_mb'] for r in rows):.0f}")
    console.print(table)
    worst = max(r["seconds"] for result in results for r in result["rounds"])
    console.print(f"slowest round's selection: {worst:.1f} s (target < 60 s)")
    summary = {
        "command": "python " + " ".join(sys.argv),
        "pool": "SST-2 train sentences; beyond 60,614, seeded copies with two neighbouring words swapped",
        "student": "all-MiniLM-L6-v2, max_length 128, fine-tuned on 8 SST-2 dev texts per label",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                    "load_average_at_end": os.getloadavg(), "python": platform.python_version()},
        "slowest_round_seconds": worst,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
