"""Runs logged to MLflow (`[tracking] mlflow_uri`, `pip install "evokd[mlflow]"`).

`MlflowLogger` is an observer of one run, in the shape of HF Trainer's callbacks: `on_run_start`,
`on_round_end(metrics)` after every round (the RoundMetrics dict of metrics.jsonl), `on_run_end(result)`
with result.json's RunResult (None: the run stopped before its end and can be resumed). It logs:

- params: the resolved config, flattened (`loop.max_rounds`, `llm.model`, ...), but not [tracking];
- step metrics, step = round: dev_f1, tokens, tokens_in, tokens_out and cost (cumulative), seconds
  (the round's own) and its llm / train / eval split, accepted, rejected, train_loss;
- at the end: test_f1, best_dev_f1, seed_dev_f1, rounds, best_round, and the artifacts report.html,
  summary.md, result.json, config.toml and student/ (the best student; `tracking.log_student`).

`MlflowBenchmark` is the parent run of a benchmark: every run of it is logged as its child.

The tracker is a mirror: the run folder stays the record. Every MLflow call is guarded: a failure is a
warning and the run goes on; after three failures in a row the logger stops trying for that run.
MlflowClient is used rather than mlflow's fluent API: it keeps no process-wide active run, so two
runs in one process (threads, a benchmark) cannot log into each other.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import evokd
from evokd.config import RunConfig, TrackingConfig
from evokd.core.extras import require
from evokd.core.files import write_atomic
from evokd.core.records import RunResult
from evokd.core.runfolder import RunFolder

log = logging.getLogger("evokd.tracking")

STATE_FILE = "tracking.json"  # in the run folder: the MLflow run a resume continues
MAX_FAILURES = 3
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
ARTIFACTS = ("report.html", "summary.md", "result.json", "final_fit.json", "config.toml")


def require_mlflow() -> Any:
    return require("mlflow", "tracking.mlflow_uri (MLflow tracking)", "mlflow")


def _client(uri: str) -> Any:
    # MLflow retries an HTTP request 7 times over about four minutes by default; a tracker that is
    # down must not stall a run that long between rounds (the user's own settings win).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    require_mlflow()
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def flat_params(config: dict[str, Any]) -> dict[str, str]:
    """{"loop": {"max_rounds": 4}} -> {"loop.max_rounds": "4"}: one param per key of a section;
    lists and tables inside a section (labels, label_map, data.hf) as JSON."""
    out: dict[str, str] = {}

    def put(name: str, value: Any) -> None:
        if value is not None:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            out[name] = text[:MAX_PARAM_CHARS]

    for key, value in config.items():
        if isinstance(value, dict):
            for inner, item in value.items():
                put(f"{key}.{inner}", item)
        else:
            put(key, value)
    return out


def metric_name(name: str) -> str:
    """MLflow's metric names take letters, digits, _ - . / and spaces: evokd-paper+metrics -> evokd-paper_metrics."""
    return re.sub(r"[^\w\-. /]", "_", name)


def round_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The step metrics of one metrics.jsonl row."""
    seconds = metrics.get("seconds", {})
    values = {
        "dev_f1": metrics["f1"],
        "tokens": metrics["tokens_in"] + metrics["tokens_out"],
        "tokens_in": metrics["tokens_in"], "tokens_out": metrics["tokens_out"], "cost": metrics["cost"],
        "seconds": seconds.get("total"), "seconds_llm": seconds.get("llm"), "seconds_train": seconds.get("train"),
        "seconds_eval": seconds.get("eval"), "accepted": metrics["accepted"], "rejected": metrics["rejected"],
        "train_loss": metrics.get("train_loss"),
    }
    return {k: float(v) for k, v in values.items() if v is not None}


def final_metrics(result: RunResult) -> dict[str, float]:
    values = {"test_f1": result.test_f1, "best_dev_f1": result.best_f1, "seed_dev_f1": result.seed_f1,
              "rounds": result.rounds, "best_round": result.best_round,
              "tokens_total": result.tokens_in + result.tokens_out, "cost_total": result.cost,
              # What student/ scores: the final fit's test F1, or the best round's when that shipped.
              "shipped_test_f1": result.shipped_test_f1}
    if (final := result.final_fit) is not None:
        values |= {"final_fit_dev_f1": final.dev_f1, "final_fit_test_f1": final.test_f1,
                   "final_fit_dev_ece": final.dev_ece_after}
    return {k: float(v) for k, v in values.items() if v is not None}


class _Guarded:
    """Calls to MLflow that warn instead of raising, and give up after MAX_FAILURES in a row."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0
        self.off = False

    def call(self, action: str, fn: Callable[[], Any]) -> Any:
        if self.off:
            return None
        try:
            value = fn()
        except Exception as exc:
            self.failures += 1
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            log.warning("MLflow: could not %s for %s (%s: %s); the run goes on", action, self.what,
                        type(exc).__name__, first[:300])
            if self.failures >= MAX_FAILURES:
                self.off = True
                log.warning("MLflow: %d failures in a row; no more logging for %s", self.failures, self.what)
            return None
        self.failures = 0
        return value

    def stop(self) -> None:
        self.off = True


def _experiment_id(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # created meanwhile by another run of the same benchmark
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _now_ms() -> int:
    return int(time.time() * 1000)


class MlflowLogger:
    """Logs one run to MLflow (see the module's docstring); every method is safe to call."""

    def __init__(self, settings: TrackingConfig) -> None:
        assert settings.mlflow_uri
        self.settings = settings
        self.client: Any = None
        self.run_id: str | None = None
        self.run: RunFolder | None = None
        self.guard = _Guarded("this run")

    def on_run_start(self, cfg: RunConfig, run: RunFolder, resumed: bool = False) -> None:
        self.run = run
        self.guard.what = f"run {run.root.name}"
        self.client = self.guard.call("connect to " + str(self.settings.mlflow_uri),
                                      lambda: _client(str(self.settings.mlflow_uri)))
        earlier = self._earlier_run_id(run) if resumed and self.client is not None else None
        if earlier is not None and self.guard.call("reopen its MLflow run", lambda: self._reopen(earlier)):
            self.run_id = earlier
        elif self.client is not None:
            self.run_id = self.guard.call("create its MLflow run", lambda: self._create(cfg, run))
        if self.run_id is None:
            self.guard.stop()  # nothing to log into: the run goes on untracked
            return
        state = {"mlflow_uri": self.settings.mlflow_uri, "mlflow_run_id": self.run_id}
        self.guard.call("note the MLflow run in the run folder",
                        lambda: write_atomic(run.root / STATE_FILE, json.dumps(state, indent=1) + "\n"))
        params = {k: v for k, v in flat_params(cfg.model_dump(mode="json")).items() if not k.startswith("tracking.")}
        self.guard.call("log the config as params", lambda: self._log_params(params))

    def on_round_end(self, metrics: dict[str, Any]) -> None:
        if self.run_id is not None:
            self.guard.call(f"log round {metrics.get('round')}", lambda: self._log_round(metrics))

    def on_run_end(self, result: RunResult | None) -> None:
        """`result` None: the run stopped early (error, Ctrl-C); its MLflow run is marked KILLED and a
        resume continues it."""
        if self.run_id is None or self.run is None:
            return
        run_id, folder = self.run_id, self.run.root
        self.run_id = None  # once: a second call does nothing
        if result is None:
            self.guard.call("mark the MLflow run stopped", lambda: self.client.set_terminated(run_id, "KILLED"))
            return
        self.guard.call("log the final metrics", lambda: self._log_final(run_id, result))
        for name in ARTIFACTS:
            if (folder / name).is_file():
                self.guard.call(f"log {name}", functools.partial(self.client.log_artifact, run_id, str(folder / name)))
        if self.settings.log_student and (folder / "student").is_dir():
            self.guard.call("log the student",
                            lambda: self.client.log_artifacts(run_id, str(folder / "student"), "student"))
        self.guard.call("finish the MLflow run", lambda: self.client.set_terminated(run_id, "FINISHED"))

    # ---------------------------------------------------------------------------------------------

    def _log_round(self, metrics: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        stamp, step = _now_ms(), int(metrics["round"])
        batch = [Metric(k, v, stamp, step) for k, v in round_metrics(metrics).items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def _log_final(self, run_id: str, result: RunResult) -> None:
        from mlflow.entities import Metric, RunTag

        stamp = _now_ms()
        self.client.log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in final_metrics(result).items()],
                              tags=[RunTag("evokd.stop_reason", str(result.stop_reason))])

    def _earlier_run_id(self, run: RunFolder) -> str | None:
        try:
            state = json.loads((run.root / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state.get("mlflow_run_id") if state.get("mlflow_uri") == self.settings.mlflow_uri else None

    def _reopen(self, run_id: str) -> bool:
        self.client.update_run(run_id, status="RUNNING")
        return True

    def _create(self, cfg: RunConfig, run: RunFolder) -> str:
        experiment = _experiment_id(self.client, self.settings.experiment)
        tags = {"evokd.method": cfg.loop.method, "evokd.task": f"{cfg.task.name} ({cfg.task.type})",
                "evokd.run_folder": str(run.root.resolve()), "evokd.version": evokd.__version__,
                "evokd.teacher_model": cfg.llm.model, "mlflow.source.name": "evokd"}
        if self.settings.parent_run_id:
            tags["mlflow.parentRunId"] = self.settings.parent_run_id
        return self.client.create_run(experiment, run_name=run.root.name, tags=tags).info.run_id

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        assert self.run_id is not None
        logged = self.client.get_run(self.run_id).data.params
        # A resume may differ in what it overrides (another --base-url): MLflow refuses to change a
        # param, so only the new keys are logged.
        items = [Param(k, v) for k, v in params.items() if k not in logged]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=items[start:start + 100])


def observers_for(cfg: RunConfig) -> list[MlflowLogger]:
    """The run's observers from its [tracking] section (none when nothing is configured)."""
    return [MlflowLogger(cfg.tracking)] if cfg.tracking.mlflow_uri else []


class MlflowBenchmark:
    """A benchmark's own MLflow run, the parent of all its runs: its settings as params, and at the
    end each method's mean test and dev F1, the JSON, markdown table and plots as artifacts."""

    def __init__(self, settings: TrackingConfig, name: str) -> None:
        assert settings.mlflow_uri
        self.settings = settings
        self.guard = _Guarded(f"benchmark {name}")
        self.name = name
        self.client: Any = None
        self.run_id: str | None = None

    def start(self, params: dict[str, Any], earlier_id: str | None = None) -> str | None:
        """The parent run's id (an earlier one reopened on --resume), or None when MLflow failed."""
        self.client = self.guard.call("connect to " + str(self.settings.mlflow_uri),
                                      lambda: _client(str(self.settings.mlflow_uri)))
        if self.client is None:
            return None
        if earlier_id and self.guard.call("reopen its MLflow run",
                                          lambda: self.client.update_run(earlier_id, status="RUNNING") or True):
            self.run_id = earlier_id
            return self.run_id

        def create() -> str:
            from mlflow.entities import Param

            experiment = _experiment_id(self.client, self.settings.experiment)
            run_id = self.client.create_run(experiment, run_name=self.name, tags={
                "evokd.benchmark": self.name, "evokd.version": evokd.__version__,
                "mlflow.source.name": "evokd bench"}).info.run_id
            flat = [Param(k, v) for k, v in flat_params(params).items()]
            for start in range(0, len(flat), 100):
                self.client.log_batch(run_id, params=flat[start:start + 100])
            return run_id

        self.run_id = self.guard.call("create its MLflow run", create)
        return self.run_id

    def log_row(self, method: str, seed: int, row: dict[str, Any]) -> None:
        """A child run for a benchmark run that is no graph run (no-aug, full: the student trained
        directly), so that every row of the table is in MLflow; graph runs log themselves."""
        if self.run_id is None or row.get("error") or row.get("run_dir"):
            return
        from mlflow.entities import Metric, Param

        def log() -> None:
            experiment = _experiment_id(self.client, self.settings.experiment)
            child = self.client.create_run(experiment, run_name=f"{self.name}-{method}-s{seed}", tags={
                "mlflow.parentRunId": self.run_id, "evokd.method": method, "mlflow.source.name": "evokd bench"}
                                           ).info.run_id
            stamp = _now_ms()
            values = {k: row.get(k) for k in ("dev_f1", "test_f1", "train_size", "seconds")}
            self.client.log_batch(child, params=[Param("method", method), Param("seed", str(seed))],
                                  metrics=[Metric(k, float(v), stamp, 0) for k, v in values.items() if v is not None])
            self.client.set_terminated(child, "FINISHED")

        self.guard.call(f"log {method} seed {seed}", log)

    def end(self, summary: dict[str, Any], files: Iterable[Path], complete: bool) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        run_id, stamp = self.run_id, _now_ms()
        metrics = []
        for method, row in summary.items():
            for key in ("test_f1", "dev_f1", "tokens"):
                stat = row.get(key)
                if isinstance(stat, dict) and stat.get("mean") is not None:
                    metrics.append(Metric(metric_name(f"{method}.{key}"), float(stat["mean"]), stamp, 0))
        self.guard.call("log the summary", lambda: self.client.log_batch(run_id, metrics=metrics))
        for path in files:
            if path.is_file():
                self.guard.call(f"log {path.name}", functools.partial(self.client.log_artifact, run_id, str(path)))
        self.guard.call("finish the MLflow run",
                        lambda: self.client.set_terminated(run_id, "FINISHED" if complete else "KILLED"))
        self.run_id = None
