"""The whole EvoKD graph, driven by a scripted teacher and a tiny real student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SentimentTeacher, write_config

from evokd.agents.scripted import ScriptedChatModel
from evokd.config import load_config
from evokd.core.records import Decision, LLMCall, NodeTurn, RunHeader
from evokd.core.trace import read_trace
from evokd.graph.runner import execute


def run_scripted(
    tmp_path: Path,
    model_dir: Path,
    teacher: SentimentTeacher | None = None,
    overrides: list[str] | None = None,
    **loop: object,
):
    cfg = load_config(write_config(tmp_path, model_dir, **loop), overrides)
    teacher = teacher or SentimentTeacher()
    result = execute(cfg, chat_model=ScriptedChatModel(script=teacher))
    return result, teacher


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_rounds_end_to_end(tmp_path: Path, tiny_model_dir: Path) -> None:
    result, teacher = run_scripted(tmp_path, tiny_model_dir, max_rounds=2)
    state, run = result.state, result.run
    assert state["round"] == 2
    assert state["stop_reason"] == "max_rounds"
    assert [h["round"] for h in state["history"]] == [0, 1, 2]
    # Each round the generator's 4 texts were labelled and accepted.
    assert [h["accepted"] for h in state["history"]] == [2, 4, 4]
    # Run folder artefacts.
    for path in (run.config, run.trace, run.samples, run.metrics, run.summary, run.report,
                 run.student / "config.json"):
        assert path.exists(), path
    metrics = read_jsonl(run.metrics)
    assert [m["round"] for m in metrics] == [0, 1, 2]
    assert all(set(m["seconds"]) >= {"llm", "train", "eval", "other", "total"} for m in metrics)
    samples = read_jsonl(run.samples)
    assert {s["intent"] for s in samples} == {"seed", "hard", "easy"}
    generated = [s for s in samples if s["intent"] != "seed"]
    assert all(s["predicted"] in ("negative", "positive") for s in generated)
    assert {s["label"] for s in generated} == {"negative", "positive"}
    # The verifier never saw the generator's intent.
    assert not any("hard" in p or "incorrectly" in p for p in teacher.seen_verifier_prompts)
    summary = run.summary.read_text()
    assert "seed (round 0)" in summary and "best (round" in summary and "| test macro-F1 |" in summary
    assert state["test"]["n"] == 48


def test_trace_records_every_turn(tmp_path: Path, tiny_model_dir: Path) -> None:
    result, _ = run_scripted(tmp_path, tiny_model_dir, max_rounds=1)
    records = list(read_trace(result.run.trace))
    assert isinstance(records[0], RunHeader)
    nodes = [r.node for r in records if isinstance(r, NodeTurn)]
    assert nodes == [
        "seed",
        "decide",
        "probe",
        "analyst",
        "generator",
        "verifier",
        "trainer",
        "decide",
        "final_fit",
        "finish",
    ]
    calls = [r for r in records if isinstance(r, LLMCall)]
    assert [c.node for c in calls] == ["analyst", "generator", "verifier"]
    assert all(c.tokens_in > 0 and c.tokens_out > 0 and c.parsed is not None for c in calls)
    assert calls[0].prompt_file == "classification/analyst.user.j2" and len(calls[0].prompt_sha256) == 64
    # The generator continues the analyst's conversation; the verifier starts afresh.
    assert calls[1].messages[: len(calls[0].messages)] == calls[0].messages
    assert calls[2].messages[0]["content"] != calls[0].messages[0]["content"]
    decisions = [r for r in records if isinstance(r, Decision)]
    assert [d.next for d in decisions] == ["continue", "stop"]


def test_rejections_have_reasons(tmp_path: Path, tiny_model_dir: Path) -> None:
    teacher = SentimentTeacher()
    dev_text = (Path(__file__).parents[1] / "examples/sentiment/data/dev.csv").read_text().splitlines()[1]
    dev_text = dev_text.rsplit(",", 1)[0].strip('"')
    # The same reply every round: in round 2 the texts accepted in round 1 are duplicates.
    teacher.generator_reply_text = json.dumps({
        "hard": ["A fine movie with a twist.", "", "x" * 1000],
        "easy": [dev_text, "A fine movie with a twist!", "Boring."],
    })
    teacher.label_fn = lambda texts: ["Positive" if "fine" in t else "mixed" for t in texts]
    result, _ = run_scripted(tmp_path, tiny_model_dir, teacher, max_rounds=2, n_hard=3, n_easy=3)
    samples = read_jsonl(result.run.samples)
    first = {s["text"][:30]: s["reason"] for s in samples if s["round"] == 1}
    # The empty text and the near-copy ("twist!") are dropped by the Generator's own cleaning.
    assert len(first) == 4
    assert first["A fine movie with a twist."] is None  # label matched case-insensitively
    assert "not in the label set" in first["Boring."]
    assert first["x" * 30].startswith("text longer than")
    assert first[dev_text[:30]] == "equal to a dev/test text"
    second = {s["text"][:30]: s["reason"] for s in samples if s["round"] == 2}
    assert second["A fine movie with a twist."] == "duplicate of an earlier sample"
    # A rejected text is no duplicate: it is labelled afresh, and rejected again.
    assert "not in the label set" in second["Boring."]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["loop.max_rounds=1"], "max_rounds"),
        (["loop.max_tokens=50"], "max_tokens"),
        (["loop.max_cost=0.0001", "loop.price_in_per_1k=1.0"], "max_cost"),
        (["loop.max_minutes=0.0001"], "max_minutes"),
    ],
)
def test_stop_reasons(tmp_path: Path, tiny_model_dir: Path, overrides: list[str], reason: str) -> None:
    result, _ = run_scripted(
        tmp_path,
        tiny_model_dir,
        overrides=[*overrides, "loop.max_rounds=5"] if reason != "max_rounds" else overrides,
    )
    assert result.state["stop_reason"] == reason
    # The seed round alone exceeds a 6 ms time budget; token and cost budgets are spent by round 1.
    expected_round = {"max_rounds": 1, "max_minutes": 0}.get(reason, 1)
    assert result.state["round"] == expected_round


def test_plateau_stops(tmp_path: Path, tiny_model_dir: Path) -> None:
    # With a learning rate of ~0 the student never improves on its seed round.
    result, _ = run_scripted(
        tmp_path, tiny_model_dir, overrides=["student.learning_rate=1e-12", "loop.patience=2"], max_rounds=6
    )
    assert result.state["stop_reason"] == "plateau"
    assert result.state["round"] == 2
    assert result.state["best_round"] == 0


@pytest.mark.parametrize("forecast", [True, False])
def test_budget_forecast_skips_a_round_it_cannot_pay_for(tmp_path: Path, tiny_model_dir: Path, forecast: bool) -> None:
    # First learn what one round costs with this scripted teacher.
    probe_run, _ = run_scripted(tmp_path / "probe", tiny_model_dir, max_rounds=1)
    per_round = sum(probe_run.state["history"][1][k] for k in ("tokens_in", "tokens_out"))
    # Room for one and a half rounds: round 2 would be cut short half-way.
    budget = per_round * 3 // 2
    result, _ = run_scripted(tmp_path / "run", tiny_model_dir, max_rounds=5,
                             overrides=[f"loop.max_tokens={budget}", f"loop.forecast_budget={str(forecast).lower()}"])
    assert result.state["stop_reason"] == "max_tokens"
    decisions = [r for r in read_trace(result.run.trace) if isinstance(r, Decision)]
    if forecast:
        assert result.state["round"] == 1
        assert "a round costs about" in decisions[-1].detail
        spent = sum(result.state["history"][-1][k] for k in ("tokens_in", "tokens_out"))
        assert spent < budget
    else:
        # Without the forecast round 2 starts and runs into the budget.
        assert result.state["round"] == 2
        assert decisions[-1].detail == ""
