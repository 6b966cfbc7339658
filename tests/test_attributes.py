"""Attributes each Generator request draws (task.attributes, AttrPrompt's idea), and how alike a run's
accepted texts read (the benchmark's similarity). Scripted teacher, tiny student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SentimentTeacher, write_config
from test_bench import BenchTeacher

from evokd.agents.attributes import GENERIC_ATTRIBUTES, draw
from evokd.agents.scripted import ScriptedChatModel
from evokd.bench.harness import mean_similarity
from evokd.config import ConfigError, load_config
from evokd.core.records import LLMCall
from evokd.core.trace import read_trace
from evokd.graph.runner import execute

ATTRIBUTES = {"length": ["a few words", "one sentence", "two sentences"], "voice": ["casual", "formal"]}


def test_draw_is_one_value_of_each_seeded_by_round_and_label() -> None:
    style = draw(ATTRIBUTES, seed=13, round=1, label="positive")
    assert len(style) == 2 and style[0].split(": ")[1] in ATTRIBUTES["length"]
    assert style[1].split(": ")[1] in ATTRIBUTES["voice"]
    assert draw(ATTRIBUTES, seed=13, round=1, label="positive") == style
    drawn = {tuple(draw(ATTRIBUTES, seed=13, round=r, label=lab)) for r in range(1, 9) for lab in ("a", "b")}
    assert len(drawn) > 1  # requests differ
    assert draw({}, seed=13, round=1, label="positive") == []


def test_attributes_are_checked_and_reach_the_prompts(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_config(tmp_path, tiny_model_dir, method="static", max_rounds=2)
    with pytest.raises(ConfigError, match="without values"):
        load_config(path, ['task.attributes={length = []}'])
    cfg = load_config(path, [f"task.attributes={GENERIC_ATTRIBUTES}"])
    result = execute(cfg, chat_model=ScriptedChatModel(script=BenchTeacher()))
    prompts = [c.messages[-1]["content"] for c in read_trace(result.run.trace)
               if isinstance(c, LLMCall) and c.node == "static_gen"]
    traits = [p.split("Give every one these traits (")[1].split(")")[0] for p in prompts]
    assert len(traits) == 4 and all(t.startswith("length: ") and "; register: " in t for t in traits)
    assert "Vary topics, length and wording." not in prompts[0]
    # Without attributes the prompt is as before.
    plain = execute(load_config(write_config(tmp_path / "plain", tiny_model_dir, method="evokd", max_rounds=1)),
                    chat_model=ScriptedChatModel(script=SentimentTeacher()))
    generator = [c.messages[-1]["content"] for c in read_trace(plain.run.trace)
                 if isinstance(c, LLMCall) and c.node == "generator"]
    assert generator and all("Vary topics, length and wording." in p and "traits" not in p for p in generator)


def test_mean_similarity(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir))
    assert mean_similarity(cfg, ["one text"]) is None
    assert mean_similarity(cfg, ["the same words", "the same words"]) == pytest.approx(1.0, abs=1e-5)
    varied = mean_similarity(cfg, ["the same words", "a wholly different review of a film", "zebra"])
    assert varied is not None and varied < 0.999
    assert json.dumps(varied)
