"""End to end, as a user runs it: `evokd run` with the real embedded teacher and the real student.

The small teacher (Qwen2.5-Coder-0.5B, `evokd[local-small]`) keeps these to about a minute each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from evokd.core.records import LLMCall, RunHeader, metric_name
from evokd.core.trace import read_trace
from evokd.teacher import WEIGHTS, TeacherServer, assemble_weights

pytestmark = pytest.mark.integration
SMALL = "qwen2.5-coder-0.5b"


def evokd(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "evokd", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def one_round(config: Path, runs: Path, *extra: str) -> Path:
    result = evokd("run", str(config), "--set", f'runs_dir="{runs}"', "--set", f'teacher.weights="{SMALL}"',
                   "--set", "loop.max_rounds=1", *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = list(runs.iterdir())
    return run


def check_run(run: Path, paper: bool = False) -> list[LLMCall]:
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == [0, 1]
    assert 0.0 <= metrics[1]["f1"] <= 1.0
    calls = [r for r in read_trace(run / "trace.jsonl") if isinstance(r, LLMCall)]
    # The default loop has nothing to analyse in round 1 (the seed set the student was fitted on);
    # the paper's Analyst reads it all the same.
    assert {c.node for c in calls} >= ({"analyst", "generator", "verifier"} if paper else {"generator", "verifier"})
    assert any(c.parsed is not None and c.tokens_out > 0 for c in calls if c.node == "verifier")
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert any(s["round"] == 1 for s in samples), "the teacher generated nothing"
    summary = (run / "summary.md").read_text()
    metric = metric_name(json.loads((run / "result.json").read_text())["task_type"])
    assert "seed (round 0)" in summary and f"| student | dev {metric} | test {metric} |" in summary
    assert (run / "student" / "config.json").exists() and (run / "report.html").exists()
    return calls


def test_classification_round_with_embedded_teacher(tmp_path: Path) -> None:
    run = one_round(ROOT / "examples" / "sentiment" / "config.toml", tmp_path / "runs",
                    "--set", "loop.n_hard=2", "--set", "loop.n_easy=2")
    check_run(run)
    # The teacher evokd started for the run is gone with it.
    assert (run / "teacher-server.log").exists()
    header = next(r for r in read_trace(run / "trace.jsonl") if isinstance(r, RunHeader))
    port = header.teacher_url.rsplit(":", 1)[1].split("/")[0]
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"--port {port}" not in listing
    # The student answers through `evokd predict` and loads with a plain transformers pipeline.
    predicted = evokd("predict", str(run), "What a wonderful, heartwarming film.")
    assert predicted.returncode == 0 and ("positive" in predicted.stdout or "negative" in predicted.stdout)
    from transformers import pipeline

    out = pipeline("text-classification", model=str(run / "student"))("A dull, lifeless mess.")
    assert out[0]["label"] in ("negative", "positive")


def test_ner_round_with_embedded_teacher(tmp_path: Path) -> None:
    # The Verifier annotates every sentence that passes the span rules ("all"), not only the hard
    # ones: the 0.5B teacher's hard sentences can all fail those rules, and then no Verifier is asked.
    run = one_round(ROOT / "examples" / "ner_demo" / "config.toml", tmp_path / "runs",
                    "--set", "loop.n_hard=2", "--set", "loop.n_easy=2", "--set", "student.seed_epochs=5",
                    "--set", 'loop.verify="all"')
    calls = check_run(run)
    dev = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["dev"]
    assert dev["task"] == "ner" and set(dev["errors"]) == {"missed", "spurious", "wrong_type", "wrong_boundary"}
    assert any("entities" in (c.messages[-1]["content"]) for c in calls if c.node == "verifier")


def test_base_url_of_a_server_started_by_hand(tmp_path: Path) -> None:
    gguf = assemble_weights(WEIGHTS[SMALL])
    with TeacherServer(gguf, tmp_path / "logs", model_alias="hand-started") as server:
        # The paper's loop here, so that both loops meet the real teacher.
        run = one_round(ROOT / "examples" / "sentiment" / "config.toml", tmp_path / "runs",
                        "--base-url", server.base_url, "--model", "hand-started",
                        "--set", 'llm.structured="json_object_schema"', "--set", 'loop.method="evokd-paper"',
                        "--set", "loop.n_hard=2", "--set", "loop.n_easy=2")
        header = next(r for r in read_trace(run / "trace.jsonl") if isinstance(r, RunHeader))
        assert header.teacher_url == server.base_url
        assert not (run / "teacher-server.log").exists()  # evokd started no teacher of its own
    check_run(run, paper=True)


def test_pool_round_reads_the_real_teachers_probabilities(tmp_path: Path) -> None:
    # The pool's Verifier reads each text's label probabilities from llama.cpp's log-probabilities.
    run = one_round(ROOT / "examples" / "sentiment" / "config.toml", tmp_path / "runs",
                    "--set", 'loop.method="pool"', "--set", "loop.pool_per_round=8")
    calls = [r for r in read_trace(run / "trace.jsonl") if isinstance(r, LLMCall)]
    assert calls and {c.node for c in calls} == {"verifier"}
    assert all("verifier_probs" in (c.prompt_file or "") for c in calls)
    picked = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    picked = [s for s in picked if s["intent"] == "pool"]
    assert len(picked) == 8 and any(s["accepted"] for s in picked)
    assert all(0.5 <= s["teacher_p"] <= 1.0 for s in picked if s["accepted"])
    assert "| student | dev macro-F1 | test macro-F1 |" in (run / "summary.md").read_text()
