"""More faults in real processes, beyond test_faults.py: a teacher unreachable from the start, kill -9
at seeded random points (with a check that no recorded call is paid twice), and Ctrl-C while the
embedded teacher runs as evokd's child process. Each test prints a `measured:` line
(`pytest -rP` shows them; docs/reliability.md quotes them)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import default_sigint, write_config
from test_faults import (
    assert_no_round_trained_twice,
    evokd,
    first_run_folder,
    free_port,
    outcome,
    run_dir,
    start_fake,
    turns,
    wait_for,
)

from evokd.core.records import LLMCall, NodeTurn, RunHeader
from evokd.core.trace import read_trace

pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent
KEY = "sk-evokd-fault-test-9876543210SECRET"


def env_with_key() -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": KEY}


def rounds_in(folder: Path) -> list[int]:
    return [json.loads(x)["round"] for x in (folder / "metrics.jsonl").read_text().splitlines()]


def assert_no_key(folder: Path) -> None:
    leaked = [p for p in folder.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaked == []


def test_teacher_unreachable_from_the_start_then_resume(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = write_config(tmp_path, tiny_model_dir, max_rounds=1)
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "evokd", "run", str(config), "--base-url", closed,
                           "--set", "llm.max_retries=1", "--set", "llm.backoff_seconds=0.1"],
                          capture_output=True, text=True, env={**env_with_key(), "COLUMNS": "200"}, timeout=300)
    seconds = time.time() - started
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: teacher unreachable at {closed}: ")
    folder = run_dir(tmp_path / "runs")
    assert errors[0].endswith(f"finished rounds are saved: evokd run --resume {folder}")
    # State saved: the seed round (no teacher needed) is finished and checkpointed.
    assert rounds_in(folder) == [0] and (folder / "checkpoints.sqlite").exists()
    failed = [r for r in read_trace(folder / "trace.jsonl") if isinstance(r, NodeTurn) and r.error]
    assert [r.node for r in failed] == ["analyst"] and "TeacherUnreachable" in failed[0].error
    assert_no_key(folder)

    back, url = start_fake()
    try:
        t0 = time.time()
        resumed = evokd("run", "--resume", str(folder), "--base-url", url)
        out, _ = resumed.communicate(timeout=300)
        resume_seconds = time.time() - t0
    finally:
        back.kill()
        back.wait()
    assert resumed.returncode == 0, out
    assert rounds_in(folder) == [0, 1]
    records = list(read_trace(folder / "trace.jsonl"))
    assert turns(records, "seed") == [0]  # the seed round was not trained again
    assert [r.resumed for r in records if isinstance(r, RunHeader)] == [False, True]
    assert_no_key(folder)
    print(f"measured: unreachable at start: 1 retry, analyst gave up {failed[0].seconds:.2f} s after its first "
          f"request; exit 1 after {seconds:.1f} s (process start and seed round included); "
          f"resume to the end {resume_seconds:.1f} s")


def kill_points() -> list[tuple[str, int]]:
    """(name, k): kill evokd once its trace holds k records. A 2-round run writes 25: the header, then
    seed, decision, decide, and per round probe, 3 x (LLM call, agent turn), trainer, decision, decide,
    and finish. k = 1 (the header only) is during seed training; two more points are drawn at random
    (seeded, so a failure can be rerun)."""
    rng = random.Random(20261127)
    return [("during seed training", 1), *((f"after record {k}", k) for k in sorted(rng.sample(range(2, 26), 2)))]


@pytest.mark.parametrize(("point", "k"), kill_points(), ids=[name for name, _ in kill_points()])
def test_kill_9_at_random_points_then_resume(tmp_path: Path, tiny_model_dir: Path, point: str, k: int) -> None:
    fake, url = start_fake("--delay", "0.2")
    try:
        config = write_config(tmp_path, tiny_model_dir, max_rounds=2)
        env = {**env_with_key(), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        proc = subprocess.Popen([sys.executable, "-m", "evokd", "run", str(config), "--base-url", url],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        folder = first_run_folder(tmp_path / "runs")
        wait_for(folder / "trace.jsonl", lambda records: len(records) >= k)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()] \
            if (folder / "metrics.jsonl").exists() else []
        paid_before = [r.request_key for r in read_trace(folder / "trace.jsonl")
                       if isinstance(r, LLMCall) and not r.from_record]
        trained_before = turns(list(read_trace(folder / "trace.jsonl")), "trainer")
        t0 = time.time()
        resumed = subprocess.run([sys.executable, "-m", "evokd", "run", "--resume", str(folder)],
                                 capture_output=True, text=True, env=env, timeout=300)
        resume_seconds = time.time() - t0
    finally:
        fake.kill()
        fake.wait()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    metrics = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == [0, 1, 2]
    # Finished rounds kept as they were. A node killed after writing its files but before LangGraph
    # committed its checkpoint is redone: same results, other wall-clock seconds.
    assert [outcome(m) for m in metrics[: len(before)]] == [outcome(m) for m in before]
    records = list(read_trace(folder / "trace.jsonl"))  # every line readable, a torn one included
    finished = turns(records, "trainer")
    assert sorted(set(finished)) == [1, 2]
    assert_no_round_trained_twice(finished, trained_before)
    calls = [r for r in records if isinstance(r, LLMCall)]
    paid = [c.request_key for c in calls if not c.from_record]
    assert len(paid) == len(set(paid))  # no recorded call paid again
    assert paid[: len(paid_before)] == paid_before
    samples = [json.loads(x) for x in (folder / "samples.jsonl").read_text().splitlines()]
    assert len({(s["round"], s["text"]) for s in samples}) == len(samples)
    assert (folder / "summary.md").exists() and (folder / "student" / "config.json").exists()
    assert_no_key(folder)
    served = sum(c.from_record for c in calls)
    print(f"measured: kill -9 {point} (rounds done: {len(before) - 1 if before else 'none'}): resume to the end "
          f"{resume_seconds:.1f} s, {served} recorded call(s) served from the trace, {len(paid)} paid calls in all")


LAUNCHER = """
import functools, sys
from pathlib import Path
import evokd.teacher as teacher

fake, pidfile = sys.argv[1], sys.argv[2]

def command(settings):
    return [sys.executable, fake, str(settings.port), "--alias", settings.model_alias, "--delay", "0.2",
            "--pidfile", pidfile]

# The embedded teacher, with this fake server in place of llama_cpp.server.
teacher.local_teacher = functools.partial(teacher.local_teacher, command=command)
from evokd.cli import app
sys.argv = ["evokd", *sys.argv[3:]]
app()
"""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_stops_the_embedded_teacher_and_resumes(tmp_path: Path, tiny_model_dir: Path) -> None:
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    pidfile = tmp_path / "teacher.pids"
    gguf = tmp_path / "dummy.gguf"
    gguf.write_bytes(b"GGUF")
    config = write_config(tmp_path, tiny_model_dir, max_rounds=2)
    # No llm.base_url: evokd starts the embedded teacher itself.
    text = config.read_text().replace('base_url = "http://scripted.invalid/v1"\n', "")
    config.write_text(text + f'[teacher]\ngguf = "{gguf}"\nstartup_timeout = 30\n')
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "EVOKD_CACHE_DIR": str(tmp_path / "cache")}

    def launch(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(launcher), str(TESTS / "fake_teacher.py"), str(pidfile), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                preexec_fn=default_sigint)

    proc = launch("run", str(config))
    folder = first_run_folder(tmp_path / "runs")
    wait_for(folder / "trace.jsonl", lambda r: turns(r, "generator") == [1])
    (teacher_pid,) = [int(x) for x in pidfile.read_text().split()]
    assert pid_alive(teacher_pid)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the foreground process
    out, _ = proc.communicate(timeout=60)
    stop_seconds = time.time() - t0
    assert proc.returncode == 130, out
    assert f"interrupted; finished rounds are saved: evokd run --resume {folder}" in out
    assert "Traceback" not in out
    assert not pid_alive(teacher_pid)  # stopped (and reaped) by evokd before it exited
    assert (folder / "teacher-server.log").exists()

    resumed = launch("run", "--resume", str(folder))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert rounds_in(folder) == [0, 1, 2]
    pids = [int(x) for x in pidfile.read_text().split()]
    assert len(pids) == 2 and not any(pid_alive(p) for p in pids)  # the resume's own teacher stopped too
    print(f"measured: Ctrl-C to exit 130 with the teacher child stopped: {stop_seconds:.1f} s")
