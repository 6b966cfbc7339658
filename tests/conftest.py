"""Shared fixtures: a tiny student model and demo configs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from teachers import SentimentTeacher  # noqa: F401  (re-exported for the tests)
from tiny_student import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def default_sigint() -> None:
    """`preexec_fn` of a child process a test interrupts with SIGINT: SIGINT back to its default
    action before the child's program starts. A process started with SIGINT ignored (`nohup`, a
    script's `cmd &`, some CI runners) passes "ignore" on to its children, and Python installs its
    KeyboardInterrupt handler only over the default, so the test's Ctrl-C would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer (tests/tiny_student.py)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


def write_config(tmp_path: Path, model_dir: Path, **loop: object) -> Path:
    """A classification config on the sentiment demo data with a tiny student; loop overrides."""
    demo = ROOT / "examples" / "sentiment" / "data"
    # The tests written for the paper's loop run it by name; tests of the default loop pass method="evokd".
    loop_items = {"method": "evokd-paper", "n_hard": 2, "n_easy": 2, "review_size": 4, "max_rounds": 2, "patience": 5,
                  **loop}
    lines = [
        'name = "test"',
        f"runs_dir = {json.dumps(str(tmp_path / 'runs'))}",
        "[task]",
        'labels = ["negative", "positive"]',
        "[data]",
        f"seed = {json.dumps(str(demo / 'seed.csv'))}",
        f"dev = {json.dumps(str(demo / 'dev.csv'))}",
        f"test = {json.dumps(str(demo / 'test.csv'))}",
        "[student]",
        f"model = {json.dumps(str(model_dir))}",
        "epochs_per_round = 1",
        "seed_epochs = 2",
        "max_length = 32",
        "batch_size = 8",
        "[llm]",
        'base_url = "http://scripted.invalid/v1"',
        "backoff_seconds = 0",
        "[loop]",
        *[f"{k} = {json.dumps(v)}" for k, v in loop_items.items()],
    ]
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
