"""MLflow tracking against a real MLflow server this module starts (sqlite backend, artifacts
served by the server), with the scripted teacher and the tiny student."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SentimentTeacher, write_config
from rich.console import Console

from evokd.agents.scripted import ScriptedChatModel
from evokd.config import ConfigError, load_config
from evokd.core.records import RunResult
from evokd.graph.runner import execute

pytest.importorskip("mlflow", reason='the MLflow tests need mlflow: pip install "evokd[mlflow]"')
pytest.importorskip("sqlalchemy", reason="the MLflow server needs the full mlflow package, not mlflow-skinny")
from mlflow import MlflowClient

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on a free local port, in its own process group (stopped by its id)."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    started = time.time()
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() - started > 180:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        print(f"measured: mlflow server up in {time.time() - started:.1f} s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker, nothing else
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def tracked_config(tmp_path: Path, tiny_model_dir: Path, url: str, experiment: str, **loop: object):
    config = write_config(tmp_path, tiny_model_dir, **loop)
    # --set, as a user would: the URI and the experiment from the command line.
    return load_config(config, [f'tracking.mlflow_uri="{url}"', f'tracking.experiment="{experiment}"'])


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_a_run_is_logged_with_params_step_metrics_final_f1_and_artifacts(
        tmp_path: Path, tiny_model_dir: Path, mlflow_server: str) -> None:
    cfg = tracked_config(tmp_path, tiny_model_dir, mlflow_server, "one-run", max_rounds=2)
    result = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher()))
    folder = result.run.root
    state = json.loads((folder / "tracking.json").read_text())
    assert state["mlflow_uri"] == mlflow_server
    client = MlflowClient(mlflow_server)
    run = client.get_run(state["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == folder.name
    assert client.get_experiment(run.info.experiment_id).name == "one-run"
    # Params: the resolved config, flattened; [tracking] is not a parameter of the run.
    params = run.data.params
    assert params["loop.max_rounds"] == "2" and params["loop.method"] == "evokd-paper"
    assert params["student.model"] == str(tiny_model_dir) and json.loads(params["task.labels"]) == ["negative",
                                                                                                  "positive"]
    assert not any(k.startswith("tracking.") for k in params)
    assert run.data.tags["evokd.run_folder"] == str(folder.resolve())
    # Step metrics: one point per round, the values of metrics.jsonl.
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert history(client, run.info.run_id, "dev_f1") == [(r["round"], pytest.approx(r["f1"])) for r in rows]
    assert history(client, run.info.run_id, "tokens") == [(r["round"], r["tokens_in"] + r["tokens_out"]) for r in rows]
    assert [s for s, _ in history(client, run.info.run_id, "cost")] == [0, 1, 2]
    assert history(client, run.info.run_id, "seconds") == [
        (r["round"], pytest.approx(r["seconds"]["total"])) for r in rows]
    assert rows[-1]["tokens_in"] > 0
    # The outcome: test F1 of the best round, as result.json says.
    outcome = RunResult.model_validate_json((folder / "result.json").read_text())
    assert outcome.test_f1 is not None
    assert run.data.metrics["test_f1"] == pytest.approx(outcome.test_f1)
    assert run.data.metrics["best_dev_f1"] == pytest.approx(outcome.best_f1)
    assert outcome.shipped_test_f1 is not None
    assert run.data.metrics["shipped_test_f1"] == pytest.approx(outcome.shipped_test_f1)
    # Artifacts, uploaded through the server, byte for byte.
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "summary.md", "result.json", "config.toml", "student"} <= names
    students = {a.path for a in client.list_artifacts(run.info.run_id, "student")}
    assert "student/config.json" in students and any(p.endswith(".safetensors") for p in students)
    local = Path(client.download_artifacts(run.info.run_id, "summary.md", str(tmp_path / "down")))
    assert local.read_text() == (folder / "summary.md").read_text()


class DiesInRoundTwo(SentimentTeacher):
    def __init__(self, die: bool) -> None:
        super().__init__()
        self.die = die

    def analyst_reply(self, messages: list) -> str:
        if self.die and self.round == 1:
            raise RuntimeError("the teacher fell over")
        return super().analyst_reply(messages)


def test_a_resumed_run_continues_its_mlflow_run(tmp_path: Path, tiny_model_dir: Path, mlflow_server: str) -> None:
    from evokd.core.runfolder import RunFolder

    cfg = tracked_config(tmp_path, tiny_model_dir, mlflow_server, "resume", max_rounds=2)
    run = RunFolder.create(cfg.runs_dir, cfg.name)
    with pytest.raises(RuntimeError, match="fell over"):
        execute(cfg, run=run, chat_model=ScriptedChatModel(script=DiesInRoundTwo(die=True)))
    run_id = json.loads((run.root / "tracking.json").read_text())["mlflow_run_id"]
    client = MlflowClient(mlflow_server)
    assert client.get_run(run_id).info.status == "KILLED"  # stopped, not finished
    assert [s for s, _ in history(client, run_id, "dev_f1")] == [0, 1]

    execute(cfg, run=run, resume=True, chat_model=ScriptedChatModel(script=DiesInRoundTwo(die=False)))
    assert json.loads((run.root / "tracking.json").read_text())["mlflow_run_id"] == run_id
    again = client.get_run(run_id)
    assert again.info.status == "FINISHED" and "test_f1" in again.data.metrics
    assert [s for s, _ in history(client, run_id, "dev_f1")] == [0, 1, 2]
    runs = client.search_runs([again.info.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]  # one MLflow run for the one evokd run


def test_tracking_failures_warn_and_never_stop_a_run(tmp_path: Path, tiny_model_dir: Path,
                                                     caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # evokd's 2 retries take seconds each
    cfg = tracked_config(tmp_path, tiny_model_dir, closed, "nowhere", max_rounds=1)
    with caplog.at_level(logging.WARNING, logger="evokd.tracking"):
        result = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher()))
    assert (result.run.root / "summary.md").exists() and result.state["stop_reason"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "could not create its MLflow run" in warnings[0], warnings
    assert "the run goes on" in warnings[0]
    assert not (result.run.root / "tracking.json").exists()


def test_a_failure_mid_run_is_a_warning(tmp_path: Path, tiny_model_dir: Path, mlflow_server: str,
                                        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """One round's logging fails (as a dropped connection would): the run goes on, and the rounds
    after it are logged."""
    from evokd import tracking

    real = tracking.round_metrics

    def breaks_round_one(metrics: dict) -> dict:
        if metrics["round"] == 1:
            raise OSError("connection reset by peer")
        return real(metrics)

    monkeypatch.setattr(tracking, "round_metrics", breaks_round_one)
    cfg = tracked_config(tmp_path, tiny_model_dir, mlflow_server, "mid-run", max_rounds=2)
    with caplog.at_level(logging.WARNING, logger="evokd.tracking"):
        result = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher()))
    run_id = json.loads((result.run.root / "tracking.json").read_text())["mlflow_run_id"]
    client = MlflowClient(mlflow_server)
    assert [s for s, _ in history(client, run_id, "dev_f1")] == [0, 2]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert any("could not log round 1" in r.getMessage() and "the run goes on" in r.getMessage()
               for r in caplog.records)


def test_a_password_in_the_uri_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = write_config(tmp_path, tiny_model_dir)
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_PASSWORD"):
        load_config(config, ['tracking.mlflow_uri="https://me:secret@mlflow.example"'])


def bench_teacher(method: str) -> ScriptedChatModel:
    return ScriptedChatModel(script=SentimentTeacher())


def test_a_benchmark_logs_its_runs_under_one_parent(tmp_path: Path, tiny_model_dir: Path, mlflow_server: str) -> None:
    from evokd.bench import harness

    config = write_config(tmp_path / "task", tiny_model_dir, max_rounds=1)
    overrides = ["loop.max_rounds=1", "loop.max_tokens=2000", f'tracking.mlflow_uri="{mlflow_server}"',
                 'tracking.experiment="bench"', "tracking.log_student=false"]
    result = harness.run_benchmark(
        config, ["no-aug", "evokd-paper"], seeds=2, out_dir=tmp_path / "out", runs_dir=tmp_path / "runs",
        overrides=overrides, chat_model_factory=bench_teacher,
        console=Console(file=(tmp_path / "console.txt").open("w"), width=200))
    parent_id = result["mlflow_parent_run_id"]
    client = MlflowClient(mlflow_server)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.params["settings.max_tokens"] == "2000"
    mean = result["summary"]["evokd-paper"]["dev_f1"]["mean"]
    assert parent.data.metrics["evokd-paper.dev_f1"] == pytest.approx(mean)
    assert {"task-quick.json", "task-quick.md", "task-quick.png"} <= {
        a.path for a in client.list_artifacts(parent_id)}
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    # Every row of the table: the two graph runs log themselves, the two no-aug rows are logged for them.
    assert sorted(c.data.tags.get("evokd.method") for c in children) == ["evokd-paper", "evokd-paper", "no-aug",
                                                                          "no-aug"]
    graph_runs = {c.info.run_name: c for c in children if c.data.tags["evokd.method"] == "evokd-paper"}
    by_folder = {Path(r["run_dir"]).name: r for r in result["runs"] if r["run_dir"]}
    assert set(graph_runs) == set(by_folder)
    for name, child in graph_runs.items():
        assert child.data.metrics["test_f1"] == pytest.approx(by_folder[name]["test_f1"])
        assert "student" not in {a.path for a in client.list_artifacts(child.info.run_id)}  # log_student = false
    # The benchmark's own settings did not take the parent's id: --resume still matches them.
    assert not any("parent_run_id" in o for o in result["settings"]["overrides"])
