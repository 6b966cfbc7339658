"""llm.concurrency: independent Verifier batches are labelled in parallel, and nothing is lost."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from conftest import SentimentTeacher, write_config

from evokd.agents.scripted import ScriptedChatModel
from evokd.config import load_config
from evokd.core.records import LLMCall
from evokd.core.trace import read_trace
from evokd.graph.runner import execute


class SlowVerifier(SentimentTeacher):
    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()

    def verifier_reply(self, messages: list) -> str:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        time.sleep(0.3)
        try:
            with self.lock:
                return super().verifier_reply(messages)
        finally:
            with self.lock:
                self.in_flight -= 1


def run(tmp_path: Path, model_dir: Path, concurrency: int) -> tuple[SlowVerifier, list[dict], Path]:
    cfg = load_config(write_config(tmp_path, model_dir, max_rounds=1),
                      [f"llm.concurrency={concurrency}", "loop.verifier_batch_size=1"])
    teacher = SlowVerifier()
    result = execute(cfg, chat_model=ScriptedChatModel(script=teacher))
    samples = [json.loads(x) for x in result.run.samples.read_text().splitlines()]
    return teacher, samples, result.run.trace


def test_verifier_batches_run_in_parallel(tmp_path: Path, tiny_model_dir: Path) -> None:
    serial, samples_1, _ = run(tmp_path / "a", tiny_model_dir, 1)
    parallel, samples_4, trace = run(tmp_path / "b", tiny_model_dir, 4)
    assert serial.peak == 1
    assert parallel.peak >= 2
    # Same verdicts either way, and one whole trace record per call.
    verdict = lambda samples: sorted((s["text"], s["label"], s["accepted"]) for s in samples)  # noqa: E731
    assert verdict(samples_1) == verdict(samples_4)
    verifier_calls = [r for r in read_trace(trace) if isinstance(r, LLMCall) and r.node == "verifier"]
    assert len(verifier_calls) == 4
