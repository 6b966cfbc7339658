"""Where a benchmark's runs execute: `--executor ray` sends each (method, seed, budget) to a Ray
cluster as one task (`pip install "evokd[ray]"`); the default, local processes, is harness.py's.

A task runs exactly what a `--jobs` worker process runs (`harness._one_run_quiet`: load the config,
train, return the row), so the rows, the JSON, the table and `--resume` are the same whatever
executes them. Ray does the scheduling, the retries of a lost node and the resources: no scheduler
is written here.

What every node of the cluster needs (Ray ships neither):
- evokd installed in the same Python environment as the driver's;
- the config, its data files and the runs folder at the same paths as on the driver (a shared file
  system, e.g. NFS): each task reads its config and writes its run folder there;
- the teacher at an address it reaches: `--base-url` (e.g. vLLM on a GPU node). The embedded teacher
  listens on 127.0.0.1 of the driver, so it serves a cluster of this one machine only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from evokd.bench.registry import BenchError, Settings
from evokd.core.extras import require

LOOPBACK = ("//127.", "//localhost", "//[::1]")


def require_ray() -> Any:
    return require("ray", "evokd bench --executor ray", "ray")


def run_on_ray(todo: list[tuple[int, str, str, list[str]]], address: str | None, work: Callable[..., dict[str, Any]],
               config: Path, teacher: list[str], settings: Settings,
               chat_model_factory: Callable[[str], Any] | None, console: Console,
               finished: Callable[[int, str, str, dict[str, Any]], None], cpus_per_run: float = 1.0) -> None:
    """Each run of `todo` as a Ray task calling `work` (harness._one_run_quiet) on the cluster at
    `address` ("auto": the one `ray start` made on this machine; None: Ray's own choice, which starts
    a local one when none is running); `finished` gets each row as it comes back."""
    ray = require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        except Exception as exc:  # a wrong address, a cluster of another Ray version
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BenchError(f"cannot reach a Ray cluster at {address or '(local)'}: {first}") from exc
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        url = next((t.split("=", 1)[1] for t in teacher if t.startswith("llm.base_url=")), "")
        if len(nodes) > 1 and any(host in url for host in LOOPBACK):
            raise BenchError(f"the teacher at {url.strip(chr(34))} is on this machine's loopback, which the other "
                             f"{len(nodes) - 1} node(s) of the Ray cluster cannot reach: give --base-url an "
                             "address every node reaches (e.g. a vLLM server)")
        # One CPU per run by default: Ray then runs as many at once as the cluster has cores, and
        # sets each task's OMP_NUM_THREADS to match, so runs do not fight over cores.
        task = ray.remote(num_cpus=cpus_per_run, max_retries=1)(work)
        pending = {task.remote(config, [*overrides, *teacher], method, settings, chat_model_factory): (i, method, label)
                   for i, method, label, overrides in todo}
        cpus = ray.cluster_resources().get("CPU", 0)
        console.print(f"{len(todo)} runs as Ray tasks on {len(nodes)} node(s), {cpus:.0f} CPUs", highlight=False)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i, method, label = pending.pop(ref)
                    try:
                        row = ray.get(ref)
                    except Exception as exc:  # the task's worker or node died, twice
                        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                        row = {"error": f"{type(exc).__name__}: {first}"}
                    finished(i, method, label, row)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()
