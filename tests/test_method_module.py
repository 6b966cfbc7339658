"""Adding a method is one module and one line in the registry: a method defined only here
(tests/round_robin_method.py) runs, resumes its stop rule, and is known to the pre-flight, the
dry-run estimate, the live view and the benchmark without any other file changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import round_robin_method
from conftest import write_config
from teachers import ScriptedTeacher

from evokd.agents.scripted import ScriptedChatModel
from evokd.bench.registry import rows
from evokd.config import ConfigError, load_config
from evokd.core.records import LLMCall, NodeTurn
from evokd.core.trace import read_trace
from evokd.graph.build import node_texts
from evokd.graph.estimate import estimate
from evokd.graph.methods import METHODS
from evokd.graph.prepare import method_of, prepare
from evokd.graph.runner import execute


class LabelTeacher(ScriptedTeacher):
    def texts_reply(self, messages: list) -> str:
        label = "positive" if '"positive"' in str(messages[-1].content) else "negative"
        self.calls = getattr(self, "calls", 0) + 1
        return json.dumps({"texts": [f"A {label} text, take {self.calls}.", f"Another {label} one, {self.calls}."]})


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(METHODS, "round-robin", round_robin_method.METHOD)  # the registry's one line


def test_a_method_is_one_module_and_one_registry_line(registered: None, tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, method="round-robin", max_rounds=9, n_easy=2))
    prepared = prepare(cfg)
    assert prepared.method is round_robin_method.METHOD and dict(prepared.method_data) == {"negative": 0,
                                                                                           "positive": 0}
    est = estimate(cfg, prepared.data, prepared.prompts, prepared.method, speed=False)
    assert [c.node for c in est.calls] == ["label_gen"] and est.rounds == 9
    assert node_texts(prepared.method, cfg.loop)["label_gen"] == "round-robin: writing texts of this round's label"
    assert rows(METHODS)["round-robin"] == ['loop.method="round-robin"', "loop.n_easy=3"]

    result = execute(cfg, prepared=prepared, chat_model=ScriptedChatModel(script=LabelTeacher()))
    # Its own stop rule: every label asked twice, after 4 of the 9 rounds.
    assert result.state["stop_reason"] == "converged" and len(result.state["history"]) == 5
    assert dict(prepared.method_data) == {"negative": 2, "positive": 2}
    records = list(read_trace(result.run.trace))
    turns = [(r.round, r.node) for r in records if isinstance(r, NodeTurn) and r.node in ("label_gen", "trainer")]
    assert turns == [(r, node) for r in (1, 2, 3, 4) for node in ("label_gen", "trainer")]
    calls = [r for r in records if isinstance(r, LLMCall)]
    assert [c.node for c in calls] == ["static_gen"] * 4  # the static agent's call, its usage counted
    assert result.state["usage"]["calls"] == 4
    samples = [json.loads(line) for line in result.run.samples.read_text().splitlines()]
    assert [s["label"] for s in samples if s["intent"] == "easy"] == ["negative"] * 2 + ["positive"] * 2 + \
        ["negative"] * 2 + ["positive"] * 2
    assert {s["method"] for s in samples} == {"round-robin"}
    assert json.loads(result.run.result.read_text())["method"] == "round-robin"


def test_its_config_check_names_the_line(registered: None, tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_config(tmp_path, tiny_model_dir, method="round-robin", n_easy=0, n_hard=2)
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("n_easy"))
    with pytest.raises(ConfigError, match=rf"^{path}:{line}: loop.n_easy: round-robin needs loop.n_easy >= 1$"):
        method_of(load_config(path))


def test_without_its_line_the_method_is_unknown(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown method 'round-robin'"):
        method_of(load_config(write_config(tmp_path, tiny_model_dir, method="round-robin")))
