"""A soak test: a 40-round run of the default loop on the scripted teacher, killed with SIGKILL at 5
random points and resumed each time, against the same run left alone.

    pytest -m slow tests/test_soak.py -rP        # prints the `measured:` lines docs/reliability.md quotes

Every process is `evokd run` (then `evokd run --resume`), through a launcher that only records the
process's resident memory (VmRSS) when each round ends. The teacher is tests/fake_teacher.py
`--stateless`: its reply depends on the request alone, as from a seeded server, so a request that
was in flight when the process was killed and is asked again gets the same reply.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import write_config
from test_faults import first_run_folder, start_fake

from evokd.core.records import LLMCall, NodeTurn, RunHeader
from evokd.core.trace import read_trace

pytestmark = pytest.mark.slow
ROUNDS = 40
KILLS = 5

LAUNCHER = """
import json, sys
from evokd import view

rss_log = sys.argv[1]
shown = view.LiveView.on_round_end

def rss_mb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:"))

def on_round_end(self, metrics):
    shown(self, metrics)
    with open(rss_log, "a") as fh:
        fh.write(json.dumps({"round": metrics.round, "rss_mb": rss_mb()}) + "\\n")

view.LiveView.on_round_end = on_round_end
from evokd.cli import app
sys.argv = ["evokd", *sys.argv[2:]]
app()
"""


def launch(launcher: Path, rss_log: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, str(launcher), str(rss_log), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


def lines(path: Path) -> int:
    """Records in a trace (one a line), counted without parsing: the poll must not slow the run."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for_records(path: Path, k: int, proc: subprocess.Popen, timeout: float = 900) -> None:
    deadline = time.time() + timeout
    while lines(path) < k:
        if proc.poll() is not None or time.time() > deadline:
            raise AssertionError(f"{path}: the run ended or stalled before record {k} ({lines(path)} records)")
        time.sleep(0.02)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def outcome(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("seconds", "usage_at_end")}


def test_forty_rounds_killed_five_times(tmp_path: Path, tiny_model_dir: Path) -> None:
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    # No near-duplicate check: the tiny random student's embeddings find every sentence alike.
    loop = {"method": "evokd", "max_rounds": ROUNDS, "patience": ROUNDS, "n_hard": 2, "n_easy": 2, "review_size": 4,
            "dedup_cosine": 1.0}
    served: dict[str, Path] = {}
    folders: dict[str, Path] = {}
    seconds: dict[str, float] = {}

    # The run left alone: the reference for samples, metrics and memory.
    served["alone"] = tmp_path / "served-alone.log"
    fake, url = start_fake("--stateless", "--delay", "0.05", "--log", str(served["alone"]))
    try:
        config = write_config(tmp_path / "alone", tiny_model_dir, **loop)
        started = time.time()
        proc = launch(launcher, tmp_path / "rss-alone.jsonl", "run", str(config), "--base-url", url)
        _, err = proc.communicate(timeout=1800)
        seconds["alone"] = time.time() - started
        assert proc.returncode == 0, err[-3000:]
    finally:
        fake.kill()
        fake.wait()
    folders["alone"] = first_run_folder(tmp_path / "alone" / "runs")
    records = lines(folders["alone"] / "trace.jsonl")

    # The same run, killed at 5 points drawn at random (seeded), one in each fifth of its trace
    # records so that the kills spread over the 40 rounds; each kill is followed by `evokd run
    # --resume`, and the last resume runs to the end.
    rng = random.Random(20261203)
    fifths = [3 + (records - 6) * n // KILLS for n in range(KILLS + 1)]
    points = [rng.randrange(fifths[n], fifths[n + 1]) for n in range(KILLS)]
    served["killed"] = tmp_path / "served-killed.log"
    fake, url = start_fake("--stateless", "--delay", "0.05", "--log", str(served["killed"]))
    kills = []
    try:
        config = write_config(tmp_path / "killed", tiny_model_dir, **loop)
        started = time.time()
        rss_log = tmp_path / "rss-killed.jsonl"
        proc = launch(launcher, rss_log, "run", str(config), "--base-url", url)
        folder = first_run_folder(tmp_path / "killed" / "runs")
        for point in points:
            wait_for_records(folder / "trace.jsonl", point, proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            done = rows(folder / "metrics.jsonl")[-1]["round"] if (folder / "metrics.jsonl").exists() else None
            kills.append((point, done))
            proc = launch(launcher, rss_log, "run", "--resume", str(folder))
        _, err = proc.communicate(timeout=1800)
        seconds["killed"] = time.time() - started
        assert proc.returncode == 0, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        fake.kill()
        fake.wait()
    folders["killed"] = folder

    # Every round exactly once in metrics.jsonl, with the outcome of the run left alone.
    alone, killed = rows(folders["alone"] / "metrics.jsonl"), rows(folder / "metrics.jsonl")
    assert [m["round"] for m in killed] == list(range(ROUNDS + 1))
    assert sum(m["accepted"] for m in alone[ROUNDS // 2:]) > 0  # new samples up to the end: a real soak
    assert [outcome(m) for m in killed] == [outcome(m) for m in alone]
    # The same samples, in the same order, with the same verdicts and predictions.
    assert rows(folder / "samples.jsonl") == rows(folders["alone"] / "samples.jsonl")
    assert json.loads((folder / "result.json").read_text())["test_f1"] == json.loads(
        (folders["alone"] / "result.json").read_text())["test_f1"]
    # No recorded teacher call paid twice: the calls paid, each (round, request), are those of the run
    # left alone, as many times each (the same request may come again in a later round). The teacher
    # itself answered at most one request more per kill: one in flight when the process died, whose
    # reply nobody recorded and which the resume asked again.
    trace = list(read_trace(folder / "trace.jsonl"))

    def paid_calls(records: list) -> Counter:
        return Counter((c.round, c.request_key) for c in records if isinstance(c, LLMCall) and not c.from_record)

    paid, paid_alone = paid_calls(trace), paid_calls(list(read_trace(folders["alone"] / "trace.jsonl")))
    assert paid == paid_alone
    served_from_trace = sum(isinstance(c, LLMCall) and c.from_record for c in trace)
    asked = {name: Counter(path.read_text().split()) for name, path in served.items()}
    extra = asked["killed"] - asked["alone"]
    assert not asked["alone"] - asked["killed"] and extra.total() <= KILLS, extra
    assert sum(isinstance(r, RunHeader) and r.resumed for r in trace) == KILLS
    redone = [r.round for r in trace if isinstance(r, NodeTurn) and r.node == "trainer"]
    # Resident memory of the run left alone: round 40 within 10 % of round 5.
    rss = {r["round"]: r["rss_mb"] for r in rows(tmp_path / "rss-alone.jsonl")}
    growth = rss[ROUNDS] / rss[5] - 1
    accepted = sum(m["accepted"] for m in killed)
    print(f"measured: soak: {ROUNDS} rounds, {accepted} samples accepted; run left alone {seconds['alone']:.0f} s, "
          f"{paid_alone.total()} paid calls, {records} trace records; killed at trace records {points} (last round "
          f"finished before each kill: {[d for _, d in kills]}), {KILLS} resumes, {seconds['killed']:.0f} s in all; "
          f"{paid.total()} paid calls, none twice; {served_from_trace} served from the trace on resume; the teacher "
          f"answered {extra.total()} request(s) more than for the run left alone (in flight at a kill); "
          f"{len(redone) - ROUNDS} trainer turn(s) redone; "
          f"RSS round 1 {rss[1]:.0f} MB, round 5 {rss[5]:.0f} MB, round 20 {rss[20]:.0f} MB, round 40 "
          f"{rss[ROUNDS]:.0f} MB ({growth:+.1%})")
    assert abs(growth) <= 0.10, rss
