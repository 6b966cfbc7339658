"""Output tokens/s through evokd's teacher client versus a direct request to the same server.

    python benchmarks/teacher_speed.py [--weights qwen2.5-coder-1.5b] [--base-url URL] [--reps 3]

Without --base-url it starts the embedded teacher. Prints a table and writes
docs/benchmarks/teacher_speed.json. Target: evokd delivers >= 90 % of the direct rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from evokd.agents.client import TeacherClient, make_chat_model
from evokd.config import LLMConfig, TeacherConfig

PROMPT = ("Write twelve short, varied restaurant reviews, half positive and half negative, one per line. "
          "Reply as JSON: {\"reviews\": [\"...\"]}")
OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "teacher_speed.json"


class Reviews(BaseModel):
    # Lenient on purpose: this measures speed, and a small model may nest its reviews as objects.
    reviews: list[Any] = []


def direct(base_url: str, model: str, max_tokens: int) -> tuple[int, float]:
    started = time.perf_counter()
    response = httpx.post(f"{base_url}/chat/completions", timeout=600, json={
        "model": model, "messages": [{"role": "user", "content": PROMPT}], "temperature": 0.0,
        "max_tokens": max_tokens, "seed": 1})
    response.raise_for_status()
    return response.json()["usage"]["completion_tokens"], time.perf_counter() - started


def through_evokd(teacher: TeacherClient) -> tuple[int, float]:
    started = time.perf_counter()
    _, _, calls = teacher.ask([{"role": "user", "content": PROMPT}], Reviews, round=0, node="bench")
    return sum(c.tokens_out for c in calls), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="qwen2.5-coder-1.5b")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--model", default="local-teacher")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()

    if args.base_url:
        endpoint = nullcontext(args.base_url)
    else:
        from evokd.teacher import local_teacher

        logs = Path(tempfile.mkdtemp(prefix="evokd-bench-"))
        endpoint = _url(local_teacher(TeacherConfig(weights=args.weights), logs))
    with endpoint as base_url:
        cfg = LLMConfig(base_url=base_url, model=args.model, temperature=0.0, max_tokens=args.max_tokens,
                        schema_retries=0)
        # "none": the same unconstrained request as the direct one; only the client path differs.
        teacher = TeacherClient(make_chat_model(cfg, base_url).bind(seed=1), cfg, mode="none", base_url=base_url)
        direct(base_url, args.model, 8)  # warm the server's prompt cache equally for both
        rows = {"direct": [], "evokd": []}
        for _ in range(args.reps):
            rows["direct"].append(direct(base_url, args.model, args.max_tokens))
            try:
                rows["evokd"].append(through_evokd(teacher))
            except Exception:
                rows["evokd"].append((0, 1.0))
    rates = {k: [n / s for n, s in v if n] for k, v in rows.items()}
    result = {k: {"tokens_per_s_mean": statistics.mean(r), "tokens_per_s": r} for k, r in rates.items()}
    result["ratio"] = result["evokd"]["tokens_per_s_mean"] / result["direct"]["tokens_per_s_mean"]
    result["weights"] = args.weights if not args.base_url else args.base_url
    table = Table(title="teacher output speed")
    for col in ("path", "tokens/s (mean)", "runs"):
        table.add_column(col)
    for k in ("direct", "evokd"):
        table.add_row(k, f"{result[k]['tokens_per_s_mean']:.1f}", ", ".join(f"{r:.1f}" for r in rates[k]))
    Console().print(table)
    Console().print(f"evokd / direct = {result['ratio']:.1%} (target >= 90 %)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")


class _url:
    """Adapts local_teacher's context (which yields TeacherInfo) to yield its base URL."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def __enter__(self) -> str:
        return self.ctx.__enter__().base_url

    def __exit__(self, *exc) -> None:
        self.ctx.__exit__(*exc)


if __name__ == "__main__":
    main()
