"""Replay a run offline, fork it with a changed prompt, compare runs, and walk the trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SentimentTeacher, write_config
from rich.console import Console

from evokd.agents.recording import Recording, ReplayDivergence
from evokd.agents.scripted import ScriptedChatModel
from evokd.config import load_config
from evokd.core.records import LLMCall, RunResult
from evokd.core.trace import read_trace
from evokd.graph import replay
from evokd.graph.runner import execute


@pytest.fixture
def original(tmp_path: Path, tiny_model_dir: Path):
    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=2))
    return execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher())).run


def test_rerun_reproduces_every_round(original, tmp_path: Path) -> None:
    result, diffs = replay.rerun(original.root, out=tmp_path / "rerun")
    assert [d.round for d in diffs] == [0, 1, 2, None]
    assert all(d.same for d in diffs), diffs
    calls = [r for r in read_trace(result.run.trace) if isinstance(r, LLMCall)]
    assert calls and all(c.from_record for c in calls)  # no live teacher was asked
    # The rerun counts what the run spent, so a token budget would stop it where it stopped the run.
    original_usage = json.loads((original.root / "result.json").read_text())
    assert result.state["usage"]["tokens_in"] == original_usage["tokens_in"] > 0
    assert result.state["usage"]["tokens_out"] == original_usage["tokens_out"]


def test_rerun_of_a_run_stopped_by_its_token_budget(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=6, max_tokens=900))
    run = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher())).run
    assert json.loads(run.result.read_text())["stop_reason"] == "max_tokens"
    result, diffs = replay.rerun(run.root, out=tmp_path / "rerun")
    assert len(diffs) < 7 and all(d.same for d in diffs), diffs
    assert result.state["stop_reason"] == "max_tokens"


def test_rerun_stops_at_a_changed_request(original, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "generator.user.j2").write_text(
        "Write {{ n_hard }} hard and {{ n_easy }} easy texts. Based on your summary, reply as JSON.")
    config = original.config.read_text() + f'prompts_dir = "{prompts}"\n'
    # prompts_dir is a top-level key: it must come before the first [section].
    lines = config.splitlines()
    lines.insert(0, lines.pop())
    original.config.write_text("\n".join(lines) + "\n")
    with pytest.raises(ReplayDivergence, match="round 1, generator") as info:
        replay.rerun(original.root, out=tmp_path / "rerun")
    assert "-" in str(info.value) and "+" in str(info.value)  # a diff is shown


def test_fork_shares_rounds_before_n_and_differs_after(original, tmp_path: Path, tiny_model_dir: Path) -> None:
    prompts = tmp_path / "fork-prompts"
    prompts.mkdir()
    packaged = Path(__file__).parents[1] / "prompts" / "classification" / "analyst.user.j2"
    (prompts / "analyst.user.j2").write_text(packaged.read_text() + "\nFocus on sarcasm.")

    class SarcasmTeacher(SentimentTeacher):
        def generator_reply(self, messages: list) -> str:
            if "sarcasm" in str(messages[1].content):  # the fork's changed Analyst prompt
                return json.dumps({"hard": ["Oh great, another superb delay.", "Wonderful, it broke again."],
                                   "easy": ["Truly a great delight.", "Awful, dull and slow."]})
            return super().generator_reply(messages)

    teacher = SarcasmTeacher()
    teacher.round = 1  # the fork's live part starts at round 2
    cfg = load_config(write_config(tmp_path / "fork", tiny_model_dir, max_rounds=2),
                      [f'prompts_dir="{prompts}"'])
    fork = execute(cfg, chat_model=ScriptedChatModel(script=teacher),
                   recording=Recording.from_run(original.root, mode="fork", until_round=2),
                   parent=str(original.root)).run
    a, b = replay.read_metrics(original.root), replay.read_metrics(fork.root)
    assert [m["f1"] for m in a[:2]] == [m["f1"] for m in b[:2]]
    samples_a = [json.loads(x) for x in original.samples.read_text().splitlines()]
    samples_b = [json.loads(x) for x in fork.samples.read_text().splitlines()]
    texts = lambda samples, r: [s["text"] for s in samples if s["round"] == r]  # noqa: E731
    assert texts(samples_a, 1) == texts(samples_b, 1)
    assert texts(samples_a, 2) != texts(samples_b, 2)
    # The fork ends with a final fit of its own, on its own pool.
    final = RunResult.model_validate_json(fork.result.read_text()).final_fit
    assert final is not None and final.train_size == sum(1 for s in samples_b if s["accepted"])
    console = Console(record=True, width=120)
    replay.compare(original.root, fork.root, console)
    out = console.export_text()
    assert "prompt files that differ: classification/analyst.user.j2" in out
    assert "round" in out and "F1 A" in out


def test_render_and_filters(original) -> None:
    console = Console(record=True, width=140)
    replay.render(original.root, console, round=1, node="verifier")
    out = console.export_text()
    assert "round 1" in out and "verifier" in out and "accepted" in out
    assert "analyst" not in out and "round 2" not in out
    as_records = replay.records(original.root, round=2)
    assert {getattr(r, "round", 2) for r in as_records} == {2}
