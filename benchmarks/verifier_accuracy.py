"""How well does the Verifier label? Gold dev texts labelled by the teacher, by reply format.

    python benchmarks/verifier_accuracy.py [CONFIG] [--base-url URL] [--n 32] [--batch 8]

Formats: "numbered" (evokd's: an object keyed "1".."n"), "list" (a plain list of labels in
order) and "single" (numbered, one text per call). Prints a table and writes
docs/benchmarks/verifier_accuracy.json. Without --base-url it starts the embedded teacher.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from pathlib import Path

from pydantic import BaseModel, Field, create_model
from rich.console import Console
from rich.table import Table

from evokd.agents.client import TeacherClient, make_chat_model, resolve_mode
from evokd.agents.prompts import PromptSet
from evokd.agents.verifier import reply_schema
from evokd.config import load_config
from evokd.graph.prepare import load_task_data

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "verifier_accuracy.json"


def list_schema(labels: list[str], n: int) -> type[BaseModel]:
    """A plain list of labels in text order (the format evokd moved away from)."""
    extra = {"items": {"type": "string", "enum": [*labels, "none"]}, "minItems": n, "maxItems": n}
    return create_model("ListReply", labels=(list[str], Field(json_schema_extra=extra)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(ROOT / "examples" / "sentiment" / "config.toml"))
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    cfg = load_config(Path(args.config))
    task = cfg.task
    gold = load_task_data(cfg).dev[: args.n]
    prompts = PromptSet(task.type, cfg.prompts_dir)
    if args.base_url:
        endpoint = nullcontext(args.base_url)
        embedded = False
    else:
        from evokd.teacher import local_teacher

        endpoint = local_teacher(cfg.teacher, ROOT / "runs")
        embedded = True
    results = {}
    with endpoint as info:
        url = info if isinstance(info, str) else info.base_url
        teacher = TeacherClient(make_chat_model(cfg.llm, url), cfg.llm, mode=resolve_mode(cfg.llm, embedded),
                                base_url=url)
        for name, size in (("numbered", args.batch), ("list", args.batch), ("single", 1)):
            started, right, none, tokens = time.time(), 0, 0, 0
            for start in range(0, len(gold), size):
                batch = gold[start:start + size]
                messages, _ = prompts.messages("verifier", task_description=task.description, labels=task.labels,
                                               label_descriptions=task.label_descriptions,
                                               texts=[s.text for s in batch])
                if name == "list":
                    messages[-1]["content"] = messages[-1]["content"].rsplit("\n", 1)[0] + \
                        '\nReply as JSON with one label per text, in order: {"labels": ["...", ...]}'
                    schema = list_schema(task.labels, len(batch))
                else:
                    schema = reply_schema(task.type, task.labels, len(batch))
                reply, _, calls = teacher.ask(messages, schema, round=0, node="bench", temperature=0.0)
                labels = reply.labels if name == "list" else [getattr(reply, f"t{i}") for i in range(1, len(batch) + 1)]
                right += sum(label == s.label for label, s in zip(labels, batch, strict=False))
                none += sum(label == "none" for label in labels)
                tokens += sum(c.tokens_in + c.tokens_out for c in calls)
            results[name] = {"correct": right, "n": len(gold), "none": none, "tokens": tokens,
                             "seconds": time.time() - started}
    table = Table(title=f"verifier accuracy on {len(gold)} gold dev texts ({cfg.name})")
    for col in ("format", "correct", "'none'", "tokens", "seconds"):
        table.add_column(col, justify="right")
    for name, r in results.items():
        table.add_row(name, f"{r['correct']}/{r['n']}", str(r["none"]), str(r["tokens"]), f"{r['seconds']:.1f}")
    Console().print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"config": args.config, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
