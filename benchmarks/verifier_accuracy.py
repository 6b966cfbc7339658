"""How well does the Verifier label, and at what cost? Gold texts labelled by the teacher, by way of asking.

    python benchmarks/verifier_accuracy.py [--data sst2,imdb,demo] [--ways probs-batched,probs-single,json]
        [--n 200] [--batch 8] [--base-url URL [--structured MODE]] [--data-dir ../shared/data] [--resume]

Ways: "json" (the JSON Verifier: an object keyed "1".."n" per batch), "json-single" (the same, one
text a call), "probs-batched" and "probs-single" (loop.verifier = "probabilities": a label in a word,
its probability read from the token log-probabilities; batched with a single re-ask for a line the
reply lacks). Data: SST-2 and IMDB test sentences (IMDB: reviews of at most 1,200 characters, the
Verifier's inputs being short) from --data-dir, the demo's dev and test texts. For each: accuracy,
"unsure" (no label, or "none"), Brier score and expected calibration error (10 bins; the JSON
Verifier's answers count as probability 1), counted tokens and seconds per text. Prints a table and
writes docs/benchmarks/verifier_accuracy.json; --resume keeps the rows already measured there.
Without --base-url it starts (or reuses) the embedded teacher.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evokd.agents.client import TeacherClient, make_chat_model, resolve_mode
from evokd.agents.prompts import PromptSet
from evokd.agents.verifier import annotate_batch
from evokd.agents.verifier_probs import read_labels
from evokd.config import TaskConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "verifier_accuracy.json"
LABELS = ["negative", "positive"]
DESCRIPTIONS = {"sst2": "the sentiment of movie review sentences", "imdb": "the sentiment of movie reviews"}
WAYS = ("probs-batched", "probs-single", "json", "json-single")


def gold(name: str, data_dir: Path, n: int) -> tuple[TaskConfig, list[tuple[str, str]]]:
    """(task, [(text, label)]): n texts drawn with a fixed seed."""
    if name == "demo":
        demo = load_config(ROOT / "examples" / "sentiment" / "config.toml")
        items = []
        for part in ("dev", "test"):
            with open(ROOT / "examples" / "sentiment" / "data" / f"{part}.csv", encoding="utf-8") as f:
                items += [(row["text"], row["label"]) for row in csv.DictReader(f)]
        task = demo.task
    else:
        if name == "sst2":
            with open(data_dir / "sst2" / "test.tsv", encoding="utf-8") as f:
                items = [(r["sentence"].strip(), LABELS[int(r["label"])]) for r in csv.DictReader(f, delimiter="\t")]
        else:
            with open(data_dir / "imdb" / "test.csv", encoding="utf-8") as f:
                items = [(" ".join(r["text"].replace("<br />", " ").split()), LABELS[int(r["label"])])
                         for r in csv.DictReader(f) if len(r["text"]) <= 1200]
        task = TaskConfig(labels=LABELS, description=DESCRIPTIONS[name])
    random.Random(0).shuffle(items)
    return task, items[:n]


def ask(way: str, teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, texts: list[str],
        batch: int) -> tuple[list[dict[str, float] | None], int]:
    """Each text's label distribution (the JSON Verifier's label as probability 1; None: unsure) and
    the tokens counted."""
    size = 1 if way.endswith("single") else batch
    if way.startswith("probs"):
        read = read_labels(teacher, prompts, task, texts, round=0, batch_size=size)
        return read.distributions, sum(c.tokens_in + c.tokens_out for c in read.calls)
    out: list[dict[str, float] | None] = []
    tokens = 0
    for start in range(0, len(texts), size):
        chunk = texts[start:start + size]
        values, answer = annotate_batch(teacher, prompts, task, chunk, round=0, temperature=0.0)
        tokens += sum(c.tokens_in + c.tokens_out for c in answer.calls)
        for value in values or [None] * len(chunk):
            out.append({label: float(label == value) for label in task.labels} if value in task.labels else None)
    return out, tokens


def scores(distributions: list[dict[str, float] | None], labels: list[str]) -> dict[str, float]:
    """Accuracy (an unsure answer counts wrong), the unsure rate, and on the sure answers the Brier
    score (two-class form: squared error of p(gold)) and the expected calibration error."""
    sure = [(d, gold) for d, gold in zip(distributions, labels, strict=True) if d is not None]
    right = [max(d, key=lambda k: d[k]) == g for d, g in sure]
    confidence = [max(d.values()) for d, _ in sure]
    brier = sum((1 - d[g]) ** 2 for d, g in sure) / max(len(sure), 1)
    ece = 0.0
    for b in range(10):
        members = [i for i, c in enumerate(confidence) if b / 10 < c <= (b + 1) / 10 or (b == 0 and c == 0)]
        if members:
            gap = sum(confidence[i] - right[i] for i in members) / len(members)
            ece += len(members) / len(sure) * abs(gap)
    return {"accuracy": sum(right) / len(labels), "unsure": 1 - len(sure) / len(labels), "brier": brier,
            "ece": ece}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sst2,imdb,demo")
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--structured", default=None,
                        help="llm.structured for the JSON ways (default: the embedded teacher's, json_object_schema)")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in the JSON")
    args = parser.parse_args()
    cfg = load_config(ROOT / "examples" / "sentiment" / "config.toml")
    rows: dict[str, Any] = json.loads(OUT.read_text())["rows"] if args.resume and OUT.exists() else {}
    prompts = PromptSet("classification")
    if args.base_url:
        endpoint: Any = nullcontext(args.base_url)
    else:
        from evokd.teacher import local_teacher

        endpoint = local_teacher(cfg.teacher, ROOT / "runs")
    with endpoint as info:
        url = info if isinstance(info, str) else info.base_url
        mode = args.structured or resolve_mode(cfg.llm, True)
        teacher = TeacherClient(make_chat_model(cfg.llm, url), cfg.llm, mode=mode, base_url=url)
        for data in args.data.split(","):
            task, items = gold(data, args.data_dir, args.n)
            for way in args.ways.split(","):
                key = f"{data}/{way}"
                if key in rows:
                    continue
                started = time.time()
                distributions, tokens = ask(way, teacher, prompts, task, [t for t, _ in items], args.batch)
                rows[key] = {"data": data, "way": way, "n": len(items), "batch": args.batch,
                             **scores(distributions, [g for _, g in items]), "tokens_per_text": tokens / len(items),
                             "seconds_per_text": (time.time() - started) / len(items)}
                OUT.parent.mkdir(parents=True, exist_ok=True)
                record = {"teacher": cfg.teacher.model_dump(mode="json"), "rows": rows}
                OUT.write_text(json.dumps(record, indent=1) + "\n")
                Console().print(f"{key}: {rows[key]['accuracy']:.3f} right, "
                                f"{rows[key]['tokens_per_text']:.1f} tokens a text")
    table = Table(title="the Verifier's labels on gold texts")
    for col in ("data", "way", "n", "accuracy", "unsure", "Brier", "ECE", "tokens/text", "s/text"):
        table.add_column(col, justify="right")
    for r in rows.values():
        table.add_row(r["data"], r["way"], str(r["n"]), f"{r['accuracy']:.3f}", f"{r['unsure']:.3f}",
                      f"{r['brier']:.3f}", f"{r['ece']:.3f}", f"{r['tokens_per_text']:.1f}",
                      f"{r['seconds_per_text']:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
