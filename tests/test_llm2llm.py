"""The LLM2LLM baseline: a different wiring of the same graph parts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import write_config
from teachers import ScriptedTeacher

from evokd.agents.llm2llm import near_duplicate, rouge_l
from evokd.agents.scripted import ScriptedChatModel
from evokd.config import ConfigError, load_config
from evokd.core.records import LLMCall, NodeTurn, RunHeader
from evokd.core.trace import read_trace
from evokd.graph.prepare import method_of
from evokd.graph.runner import execute

FRESH = ["quiet lakeside cabin with creaky floors", "bustling market stall selling spicy noodles",
         "vintage camera that jams every third roll", "weekend train journey through misty hills",
         "podcast episode about forgotten inventors", "hand-knitted scarf in mustard yellow"]


class Llm2llmTeacher(ScriptedTeacher):
    """Writes a near-copy and a fresh example for every wrong seed example it is shown."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def augmenter_reply(self, messages: list) -> str:
        last = str(messages[-1].content)
        text = re.search(r'Text: "(.*)"', last).group(1)
        label = re.search(r"Label: (\w+)", last).group(1)
        self.shown.append(text)
        fresh = f"Another {label} {FRESH[len(self.shown) % len(FRESH)]}"
        return json.dumps({"examples": [{"text": text.replace(".", "!") + " Really.", "label": label},
                                        {"text": fresh, "label": label}]})


def test_rouge_l() -> None:
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge_l("a b c d", "e f g h") == 0.0
    # LCS "a c d" of 4 and 3 tokens: P = 3/4, R = 1 -> F = 6/7.
    assert rouge_l("a b c d", "a c d") == pytest.approx(6 / 7)
    assert near_duplicate("The plot was thin, really.", ["the plot was thin"], 0.7) == "the plot was thin"
    assert near_duplicate("Completely different words here", ["the plot was thin"], 0.7) is None


def test_two_rounds(tmp_path: Path, tiny_model_dir: Path) -> None:
    # A student that cannot learn (lr ~ 0) gets the same seed examples wrong every round.
    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=2),
                      ["loop.method=\"llm2llm\"", "loop.llm2llm_per_example=2", "sampling.k_per_class=3",
                       "student.learning_rate=1e-12"])
    teacher = Llm2llmTeacher()
    result = execute(cfg, chat_model=ScriptedChatModel(script=teacher))
    run, state = result.run, result.state
    records = list(read_trace(run.trace))
    probes = [r for r in records if isinstance(r, NodeTurn) and r.node == "probe"]
    wrong = [[s["text"] for s in p.output["incorrect"]] for p in probes]
    right = [[s["text"] for s in p.output["correct"]] for p in probes]
    assert len(wrong[0]) + len(right[0]) == 6 and wrong[0], "the probe looks at the 6 seed examples"
    # Only the wrong seed examples went to the teacher, once per round.
    assert teacher.shown == wrong[0] + wrong[1]
    assert not set(teacher.shown) & set(right[0] + right[1])
    samples = [json.loads(x) for x in run.samples.read_text().splitlines()]
    generated = [s for s in samples if s["intent"] != "seed"]
    assert {s["method"] for s in samples} == {"llm2llm"}
    near = [s for s in generated if s["reason"] and s["reason"].startswith("near-duplicate")]
    assert len(near) == len(wrong[0]) + len(wrong[1])  # every near-copy of a seed example is filtered
    assert all(s["accepted"] for s in generated if s["text"].startswith("Another"))
    # Training sets: round r retrains from scratch on the seed set plus everything accepted so far.
    accepted = [sum(1 for s in generated if s["accepted"] and s["round"] <= r) for r in (1, 2)]
    sizes = [h["train_size"] for h in state["history"][1:]]
    assert sizes == [6 + accepted[0], 6 + accepted[1]]
    assert {h["method"] for h in state["history"]} == {"llm2llm"}
    header = next(r for r in records if isinstance(r, RunHeader))
    assert header.method == "llm2llm"
    assert {r.method for r in records if isinstance(r, NodeTurn)} == {"llm2llm"}
    assert [r.node for r in records if isinstance(r, NodeTurn)][:5] == ["seed", "decide", "probe", "augmenter",
                                                                       "trainer"]
    calls = [r for r in records if isinstance(r, LLMCall)]
    assert {c.prompt_file for c in calls} == {"classification/llm2llm.user.j2"}


def test_llm2llm_is_classification_only(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = tmp_path / "ner.toml"
    config.write_text('[task]\ntype = "ner"\nlabels = ["PER", "LOC"]\n[data]\nseed = "s.jsonl"\ndev = "d.jsonl"\n'
                      '[loop]\nmethod = "llm2llm"\n')
    # The pre-flight (the method's own rules) names the line that set the method.
    with pytest.raises(ConfigError) as info:
        method_of(load_config(config))
    assert str(info.value) == f'{config}:8: loop.method: loop.method = "llm2llm" supports task.type = ' \
                              '"classification" only'
