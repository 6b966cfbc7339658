"""Fault injection in real processes: kill -9 and Ctrl-C of `evokd run`, a teacher that dies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import default_sigint, write_config

from evokd.core.records import NodeTurn
from evokd.core.trace import read_trace

pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fake(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(TESTS / "fake_teacher.py"), str(port), *args], cwd=TESTS)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def fake_teacher() -> Iterator[str]:
    proc, url = start_fake("--delay", "0.2")
    yield url
    proc.kill()
    proc.wait()


def evokd(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "evokd", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, preexec_fn=default_sigint)


def outcome(metrics: dict) -> dict:
    """A round's metrics without its wall-clock timings."""
    return {k: v for k, v in metrics.items() if k not in ("seconds", "usage_at_end")}


def run_dir(runs: Path) -> Path:
    (only,) = list(runs.iterdir())
    return only


def assert_no_round_trained_twice(trained: list[int], trained_before_kill: list[int]) -> None:
    """Only the trainer turn that ended just before the kill may appear twice: LangGraph had not
    committed its checkpoint yet, so that round never finished and is redone (with the same
    outcome, which the callers check on metrics.jsonl)."""
    repeated = {r for r in trained if trained.count(r) > 1}
    assert all(trained.count(r) == 2 for r in repeated), trained
    assert repeated <= set(trained_before_kill[-1:]), (trained, trained_before_kill)


def first_run_folder(runs: Path, timeout: float = 60) -> Path:
    """The run folder a just-started `evokd run` creates under `runs`, once it exists."""
    deadline = time.time() + timeout
    while not (runs.exists() and any(runs.iterdir())) and time.time() < deadline:
        time.sleep(0.02)  # fine-grained: some kill points come early in a run
    return run_dir(runs)


def wait_for(path: Path, predicate, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            try:
                if predicate(list(read_trace(path))):
                    return
            except Exception:
                pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting on {path}")


def turns(records: list, node: str) -> list[int]:
    return [r.round for r in records if isinstance(r, NodeTurn) and r.node == node and r.error is None]


KILL_POINTS = {
    "during round 1": lambda records: turns(records, "analyst") == [1],
    "right after a trainer turn": lambda records: turns(records, "trainer") == [1],
    "during round 2 verifier": lambda records: turns(records, "generator") == [1, 2],
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_then_resume(tmp_path: Path, tiny_model_dir: Path, fake_teacher: str, point: str) -> None:
    config = write_config(tmp_path, tiny_model_dir, max_rounds=3)
    proc = evokd("run", str(config), "--base-url", fake_teacher)
    folder = first_run_folder(tmp_path / "runs")
    wait_for(folder / "trace.jsonl", KILL_POINTS[point])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()] \
        if (folder / "metrics.jsonl").exists() else []
    trained_before = turns(list(read_trace(folder / "trace.jsonl")), "trainer")

    t0 = time.time()
    resumed = evokd("run", "--resume", str(folder))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    print(f"measured: kill -9 {point}: resume to the end {time.time() - t0:.1f} s")
    metrics = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == [0, 1, 2, 3]
    # Finished rounds kept as they were. A node killed after writing its files but before LangGraph
    # committed its checkpoint is redone: same results, other wall-clock seconds.
    assert [outcome(m) for m in metrics[: len(before)]] == [outcome(m) for m in before]
    records = list(read_trace(folder / "trace.jsonl"))  # readable, torn line or not
    assert sorted(set(turns(records, "trainer"))) == [1, 2, 3]
    assert_no_round_trained_twice(turns(records, "trainer"), trained_before)
    assert (folder / "summary.md").exists() and (folder / "student" / "config.json").exists()


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path: Path, tiny_model_dir: Path, fake_teacher: str) -> None:
    config = write_config(tmp_path, tiny_model_dir, max_rounds=2)
    proc = evokd("run", str(config), "--base-url", fake_teacher)
    folder = first_run_folder(tmp_path / "runs")
    wait_for(folder / "trace.jsonl", lambda r: turns(r, "generator") == [1])
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    print(f"measured: Ctrl-C to exit 130: {time.time() - t0:.1f} s")
    assert "evokd run --resume" in out
    resumed = evokd("run", "--resume", str(folder))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    metrics = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == [0, 1, 2]


def test_teacher_dies_mid_run_then_resume(tmp_path: Path, tiny_model_dir: Path) -> None:
    # Three chat requests succeed (round 1's analyst, generator, verifier), then HTTP 503 forever.
    dying, url = start_fake("--fail-after", "3")
    try:
        config = write_config(tmp_path, tiny_model_dir, max_rounds=2)
        started = time.time()
        proc = evokd("run", str(config), "--base-url", url, "--set", "llm.max_retries=2",
                     "--set", "llm.backoff_seconds=0.1")
        out, _ = proc.communicate(timeout=300)
    finally:
        dying.kill()
        dying.wait()
    assert proc.returncode == 1
    assert f"teacher unreachable at {url}" in out
    assert "evokd run --resume" in out
    assert time.time() - started < 120
    folder = run_dir(tmp_path / "runs")
    (failed,) = [r for r in read_trace(folder / "trace.jsonl") if isinstance(r, NodeTurn) and r.error]
    print(f"measured: teacher dies: {failed.node} failed after 2 retries (backoff 0.1 s, 0.2 s), "
          f"{failed.seconds:.2f} s from its first request to the error; whole run {time.time() - started:.1f} s")
    metrics = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == [0, 1]
    back, url2 = start_fake()
    try:
        t0 = time.time()
        resumed = evokd("run", "--resume", str(folder), "--base-url", url2)
        out, _ = resumed.communicate(timeout=300)
    finally:
        back.kill()
        back.wait()
    assert resumed.returncode == 0, out
    print(f"measured: teacher back: resume to the end {time.time() - t0:.1f} s")
    metrics = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == [0, 1, 2]
