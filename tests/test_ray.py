"""`evokd bench --executor ray` on a local Ray head this module starts (`ray start --head`), with the
scripted teacher: the same rows, JSON and --resume as one run at a time."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_config
from rich.console import Console
from test_bench import comparable as comparable_fresh
from test_bench import scripted_teacher

from evokd.bench import harness

pytest.importorskip("ray", reason='the Ray tests need ray: pip install "evokd[ray]"')

pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A one-node Ray cluster, as `ray start --head` makes one: its own processes, 2 CPUs. Its
    workers import the tests' modules (the scripted teacher) through PYTHONPATH, as a cluster's
    workers import evokd from their environment. Stopped by SIGTERM to the `ray start --block`
    process, which stops the processes it started (no `ray stop`, which stops every Ray here)."""
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)}
    ray = Path(sys.executable).with_name("ray")
    log = (temp / "head.log").open("w")
    started = time.time()
    proc = subprocess.Popen(
        [str(ray), "start", "--head", "--port", str(port), "--num-cpus", "2", "--temp-dir", str(temp),
         "--include-dashboard=false", "--object-store-memory", str(100 * 1024 * 1024), "--disable-usage-stats",
         "--block"], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        while "Ray runtime started" not in (temp / "head.log").read_text():
            if proc.poll() is not None or time.time() - started > 180:
                raise RuntimeError(f"ray start failed: {(temp / 'head.log').read_text()[-2000:]}")
            time.sleep(0.5)
        print(f"measured: ray head up in {time.time() - started:.1f} s")
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this fixture started, nothing else
            proc.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def comparable(rows: list[dict]) -> list[dict]:
    """test_bench's comparable rows; a kept no-aug row has "spend": None where a fresh one has none.
    The final fit's dev NLL is rounded: a Ray task runs torch on one thread (Ray sets
    OMP_NUM_THREADS=1), which sums in another order, and the NLL differs in its ninth decimal."""
    def rounded(fit: dict) -> dict:
        return {k: round(v, 6) if k.startswith("dev_nll") and isinstance(v, float) else v for k, v in fit.items()}

    return comparable_fresh([{k: rounded(v) if k == "final_fit" and v else v for k, v in r.items()
                              if not (k == "spend" and v is None)} for r in rows])


def bench(config: Path, tmp_path: Path, name: str, methods: list[str], **kwargs: object) -> dict:
    return harness.run_benchmark(
        config, methods, seeds=2, out_dir=tmp_path / f"out-{name}", runs_dir=tmp_path / f"runs-{name}",
        overrides=["loop.max_rounds=1", "loop.max_tokens=2000"], chat_model_factory=scripted_teacher,
        console=Console(file=(tmp_path / f"console-{name}.txt").open("a"), width=200), **kwargs)


def test_ray_executor_gives_the_rows_json_and_resume_of_one_at_a_time(
        tmp_path: Path, tiny_model_dir: Path, ray_head: str) -> None:
    config = write_config(tmp_path / "task", tiny_model_dir, max_rounds=1)
    methods = ["no-aug", "static", "evokd"]
    one = bench(config, tmp_path, "local", methods, jobs=1)
    # First only two methods on Ray, then all three with --resume: the two are kept, evokd runs.
    bench(config, tmp_path, "ray", methods[:2], executor="ray", address=ray_head)
    started = time.time()
    on_ray = bench(config, tmp_path, "ray", methods, executor="ray", address=ray_head, resume=True)
    print(f"measured: 2 evokd runs as Ray tasks (resume) {time.time() - started:.1f} s")
    console = (tmp_path / "console-ray.txt").read_text()
    assert console.count("kept from the earlier run") == 4 and "2 runs as Ray tasks on 1 node(s), 2 CPUs" in console
    assert not any(r.get("error") for r in on_ray["runs"])
    assert [(r["method"], r["seed"]) for r in on_ray["runs"]] == [(r["method"], r["seed"]) for r in one["runs"]]
    assert comparable(on_ray["runs"]) == comparable(one["runs"])
    # The table: every method's scores and tokens as one at a time gave them.
    for method in methods:
        for key in ("f1", "test_f1", "dev_f1", "seed_f1", "tokens", "rounds"):
            assert on_ray["summary"][method][key] == one["summary"][method][key], (method, key)
    written = json.loads((tmp_path / "out-ray" / "task-quick.json").read_text())
    assert written["complete"] and comparable(written["runs"]) == comparable(one["runs"])
    # Each graph run wrote its own folder where the driver asked (a cluster shares the file system).
    folders = [Path(r["run_dir"]) for r in on_ray["runs"] if r["run_dir"]]
    assert len(set(folders)) == 4 and all((f / "summary.md").is_file() for f in folders)


def test_address_without_the_ray_executor_is_refused() -> None:
    from typer.testing import CliRunner

    from evokd.cli import app

    result = CliRunner().invoke(app, ["bench", "sentiment", "--address", "auto"], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "error: --address goes with --executor ray" in result.output
