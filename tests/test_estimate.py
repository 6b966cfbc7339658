"""`evokd run CONFIG --dry-run`: checks, writes nothing, and estimates what the run will ask."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SentimentTeacher, write_config
from typer.testing import CliRunner

from evokd.agents.scripted import ScriptedChatModel
from evokd.cli import app
from evokd.config import load_config
from evokd.graph.estimate import ReplySizes, estimate, measured_speed
from evokd.graph.prepare import prepare
from evokd.graph.runner import execute


def words(text: str) -> int:
    """The scripted teacher's tokenizer: it counts the words of each message (agents/scripted.py)."""
    return len(text.split())


# The scripted teacher's replies, as the estimate's reply model states a teacher's: an 8-word
# analysis, generated texts about half as long as the demo's seed sentences, a label per text.
SCRIPTED_REPLIES = ReplySizes(analyst=8, per_text_extra=0, text_scale=0.5, per_label=1)


def test_dry_run_writes_nothing_and_prints_the_estimate(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = write_config(tmp_path, tiny_model_dir, max_rounds=3)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, ["run", str(config), "--dry-run", "--set", "loop.max_tokens=2500",
                                      "--set", "loop.price_in_per_1k=0.5", "--set", "loop.price_out_per_1k=1.5"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no runs/ folder either
    out = result.output
    for what in ("config ok", "teacher calls a round", "analyst: 1 x", "verifier:", "rounds:", "teacher tokens",
                 "money: about", "nothing written"):
        assert what in out, out
    # A bad config is reported as for a real run, and still writes nothing.
    bad = CliRunner().invoke(app, ["run", str(config), "--dry-run", "--set", 'data.dev="nosuch.csv"'])
    assert bad.exit_code == 1 and "nosuch.csv" in bad.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("loop", [{}, {"method": "static"}])
def test_estimate_is_within_30_percent_of_a_scripted_run(tmp_path: Path, tiny_model_dir: Path, loop: dict) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=2, **loop))
    prepared = prepare(cfg)
    est = estimate(cfg, prepared.data, prepared.prompts, prepared.method, count=words, replies=SCRIPTED_REPLIES,
                   message_overhead=0)
    result = execute(cfg, prepared=prepared, chat_model=ScriptedChatModel(script=BenchLikeTeacher()))
    usage, history = result.state["usage"], result.state["history"]
    spent = usage["tokens_in"] + usage["tokens_out"]
    assert est.rounds == len(history) - 1 == 2
    assert est.round_calls * est.rounds == usage["calls"]
    assert abs(est.tokens - spent) <= 0.3 * spent, (est.tokens, spent, est.lines())
    # The prompts alone (rendered on the seed data, no reply model involved) are within 30 % too.
    assert abs(est.rounds * est.round_in - usage["tokens_in"]) <= 0.3 * usage["tokens_in"]
    # The next estimate knows the teacher's speed from this run.
    again = estimate(cfg, prepared.data, prepared.prompts, prepared.method)
    assert again.teacher_minutes is not None and result.run.root.name in again.speed_source
    # summary.md puts the estimate beside what was spent.
    summary = result.run.summary.read_text()
    assert "estimated before the run" in summary and f"{int(spent):,}" in summary, summary


def test_budget_limits_the_rounds(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=10))
    prepared = prepare(cfg)
    per_round = estimate(cfg, prepared.data, prepared.prompts, prepared.method)
    per_round = per_round.round_in + per_round.round_out
    capped = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=10, max_tokens=3 * per_round + 1))
    est = estimate(capped, prepared.data, prepared.prompts, prepared.method)
    assert (est.rounds, est.limit) == (3, "max_tokens")
    money = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=10, max_cost=0.01,
                                     price_in_per_1k=1.0, price_out_per_1k=1.0))
    assert estimate(money, prepared.data, prepared.prompts, prepared.method).limit == "max_cost"
    assert measured_speed(cfg) is None  # no earlier run in runs_dir


class BenchLikeTeacher(SentimentTeacher):
    """Also answers the static baseline's calls."""

    def texts_reply(self, messages: list) -> str:
        import json
        import re

        label = re.search(r'whose label is "(\w+)"', str(messages[-1].content)).group(1)
        return json.dumps({"texts": [f"Plainly {label} review one.", f"Plainly {label} review two."]})


def test_estimate_of_the_default_loop(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, method="evokd", max_rounds=5, n_hard=2, n_easy=2,
                                   hard_from_errors=True))
    prepared = prepare(cfg)
    est = estimate(cfg, prepared.data, prepared.prompts, prepared.method, speed=False)
    nodes = {c.node: c for c in est.calls}
    # One Generator call per label; the Verifier labels the 2 x 2 hard texts in one batch from round 2
    # on (round 1 has no wrong texts to vary, so no hard ones): 4 of 5 rounds; the Analyst runs in 2
    # of 5 rounds (none in round 1, then every second round).
    assert (nodes["generator"].calls, nodes["verifier"].calls, nodes["analyst"].calls) == (2, 0.8, 0.4)
    assert est.round_calls == 3.2 and est.tokens == est.rounds * (est.round_in + est.round_out)
    assert "analyst: 0.4 x" in "\n".join(est.lines())
    every_round = estimate(load_config(write_config(tmp_path / "always", tiny_model_dir, method="evokd", max_rounds=5,
                                                    n_hard=2, n_easy=2)),
                           prepared.data, prepared.prompts, prepared.method, speed=False)
    assert {c.node: c.calls for c in every_round.calls}["verifier"] == 1
