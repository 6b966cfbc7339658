"""The benchmark baselines (static, augment) and the ablation switches, as further wirings of the
same graph: scripted teacher, tiny student."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import SentimentTeacher, write_config
from teachers import GAZETTEER, NerTeacher, ScriptedTeacher
from test_ner_graph import ner_config
from typer.testing import CliRunner

from evokd.agents.scripted import ScriptedChatModel
from evokd.cli import app
from evokd.config import ConfigError, load_config
from evokd.core.records import LLMCall, NodeTurn
from evokd.core.trace import read_trace
from evokd.graph.prepare import method_of
from evokd.graph.replay import rerun
from evokd.graph.runner import execute

DEV_TEXT = "The soundtrack alone is worth the ticket price."  # a line of the demo's dev.csv
LONG = "word " * 120


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def nodes_of(run) -> list[NodeTurn]:
    return [r for r in read_trace(run.trace) if isinstance(r, NodeTurn)]


def calls_of(run) -> list[LLMCall]:
    return [r for r in read_trace(run.trace) if isinstance(r, LLMCall)]


class StaticTeacher(ScriptedTeacher):
    """Per label: a fresh text, a text equal to a dev text, then (later rounds) a repeat."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    def texts_reply(self, messages: list) -> str:
        last = str(messages[-1].content)
        label = re.search(r'whose label is "(\w+)"', last).group(1)
        n = int(re.search(r"Write (\d+) new", last).group(1))
        self.asked.append((label, n))
        k = sum(1 for lab, _ in self.asked if lab == label)
        texts = [f"A {label} text number {k}.", DEV_TEXT if k == 1 else f"A {label} text number {k - 1}.", LONG]
        return json.dumps({"texts": texts})


def test_static_writes_per_label_without_feedback(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=2, n_hard=2, n_easy=2),
                      ['loop.method="static"'])
    teacher = StaticTeacher()
    result = execute(cfg, chat_model=ScriptedChatModel(script=teacher))
    run, state = result.run, result.state
    # Each round: one request per label, for (2 + 2) / 2 labels = 2 texts each; nothing else.
    assert teacher.asked == [("negative", 2), ("positive", 2)] * 2
    calls = calls_of(run)
    assert {c.node for c in calls} == {"static_gen"}
    assert {c.prompt_file for c in calls} == {"classification/static.user.j2"}
    # No student feedback: no request shows a sample or a score.
    assert not any("incorrect" in m["content"] or "F1" in m["content"] for c in calls for m in c.messages)
    assert [(t.node, t.round) for t in nodes_of(run)][:5] == [("seed", 0), ("decide", 0), ("static_gen", 1),
                                                             ("trainer", 1), ("decide", 1)]
    generated = [s for s in read_jsonl(run.samples) if s["intent"] != "seed"]
    assert {s["method"] for s in generated} == {"static"}
    # The label asked for is the label; only the first n texts of a reply are taken.
    for s in generated:
        assert s["label"] in s["text"] or s["text"] == DEV_TEXT
    assert all(LONG.strip() not in s["text"] for s in generated)
    reasons = {s["text"]: s["reason"] for s in generated}
    assert reasons[DEV_TEXT] == "equal to a dev/test text"
    assert reasons["A negative text number 2."] is None
    round2 = [s for s in generated if s["round"] == 2]
    assert sorted(s["reason"] or "" for s in round2) == ["", "", "duplicate of an earlier sample",
                                                        "duplicate of an earlier sample"]
    # Continued training on the new batch + the seed set + a review sample of earlier ones.
    accepted = [sum(1 for s in generated if s["accepted"] and s["round"] == r) for r in (1, 2)]
    assert accepted == [2, 2]
    assert [h["train_size"] for h in state["history"][1:]] == [2 + 2, 2 + 2 + 2]
    assert state["test"] is not None and run.report.exists()
    # Replay re-executes the new wiring offline, round for round.
    _, diffs = rerun(run.root, tmp_path / "rerun")
    assert [d.round for d in diffs] == [0, 1, 2, None] and all(d.same for d in diffs)


class AugmentTeacher(ScriptedTeacher):
    """Returns a paraphrase and a verbatim copy of the seed example it is shown."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str, int]] = []

    def texts_reply(self, messages: list) -> str:
        last = str(messages[-1].content)
        text = re.search(r'Text: "(.*)"', last).group(1)
        label = re.search(r"Label: (\w+)", last).group(1)
        n = int(re.search(r"Rephrase it into (\d+)", last).group(1))
        self.shown.append((text, label, n))
        r = sum(1 for t, _, _ in self.shown if t == text)
        return json.dumps({"texts": [text, f"In other words, take {r}: {text.lower()}"]})


def test_augment_paraphrases_the_seed_set(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=2, n_hard=2, n_easy=2),
                      ['loop.method="augment"'])
    teacher = AugmentTeacher()
    result = execute(cfg, chat_model=ScriptedChatModel(script=teacher))
    run, state = result.run, result.state
    seed = [s for s in read_jsonl(run.samples) if s["intent"] == "seed"]
    # Every round, every seed example, (2 + 2) / 2 seed examples = 2 paraphrases asked each.
    assert teacher.shown == [(s["text"], s["label"], 2) for s in seed] * 2
    assert {c.prompt_file for c in calls_of(run)} == {"classification/augment.user.j2"}
    assert [t.node for t in nodes_of(run)][:5] == ["seed", "decide", "augment_gen", "trainer", "decide"]
    generated = [s for s in read_jsonl(run.samples) if s["intent"] != "seed"]
    labels = {s["text"]: s["label"] for s in seed}
    for s in generated:
        source = next(t for t in labels if t.lower() in s["text"].lower())
        assert s["label"] == labels[source]  # a paraphrase keeps its seed example's label
        assert s["method"] == "augment"
    copies = [s for s in generated if s["text"] in labels]
    assert len(copies) == 4 and all(s["reason"] == "duplicate of an earlier sample" for s in copies)
    assert [h["accepted"] for h in state["history"][1:]] == [2, 2]
    assert [h["train_size"] for h in state["history"][1:]] == [2 + 2, 2 + 2 + 2]


class SelfLabellingTeacher(SentimentTeacher):
    """The Generator writes labelled texts; one has a label outside the set."""

    def labelled_generator_reply(self, messages: list) -> str:
        assert "summary" in str(messages[-2].content), "the Generator speaks in the Analyst's conversation"
        r = self.round
        return json.dumps({
            "hard": [{"text": f"Not a good film {r}.", "label": "negative"},
                     {"text": f"Meh, round {r}.", "label": "neutral"}],
            "easy": [{"text": f"A great delight {r}.", "label": "Positive"},
                     {"text": DEV_TEXT, "label": "positive"}],
        })

    def verifier_reply(self, messages: list) -> str:
        raise AssertionError("no separate Verifier")


def test_without_separate_verifier(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=1), ["loop.separate_verifier=false"])
    result = execute(cfg, chat_model=ScriptedChatModel(script=SelfLabellingTeacher()))
    run = result.run
    assert [c.node for c in calls_of(run)] == ["analyst", "generator"]
    assert calls_of(run)[1].prompt_file == "classification/generator_labelled.user.j2"
    assert [t.node for t in nodes_of(run)] == ["seed", "decide", "probe", "analyst", "generator", "self_check",
                                              "trainer", "decide", "final_fit", "finish"]
    batch = {s["text"]: s for s in read_jsonl(run.samples) if s["intent"] != "seed"}
    assert batch["Not a good film 1."]["accepted"] and batch["Not a good film 1."]["label"] == "negative"
    assert batch["A great delight 1."]["label"] == "positive"  # the Verifier's rules: case forgiven
    assert batch["Meh, round 1."]["reason"] == "label 'neutral' not in the label set"
    assert batch[DEV_TEXT]["reason"] == "equal to a dev/test text"
    assert result.state["history"][1]["accepted"] == 2


class NerSelfLabellingTeacher(NerTeacher):
    def labelled_generator_reply(self, messages: list) -> str:
        def item(text: str) -> dict:
            return {"text": text, "entities": [{"text": k, "type": v} for k, v in GAZETTEER.items() if k in text]}
        return json.dumps({"hard": [item("Nordic Bank opened in Oslo ."),
                                    {"text": "Ghost Corp hired Tom Reed .",
                                     "entities": [{"text": "Ghost Corporation", "type": "ORG"}]}],
                           "easy": [item("Tom Reed won at the Olympics .")]})

    def ner_verifier_reply(self, messages: list) -> str:
        raise AssertionError("no separate Verifier")


def test_without_separate_verifier_ner(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(ner_config(tmp_path, tiny_model_dir), ["loop.max_rounds=1", "loop.separate_verifier=false"])
    result = execute(cfg, chat_model=ScriptedChatModel(script=NerSelfLabellingTeacher()))
    assert calls_of(result.run)[1].prompt_file == "ner/generator_labelled.user.j2"
    batch = {s["text"]: s for s in read_jsonl(result.run.samples) if s["round"] == 1}
    assert batch["Nordic Bank opened in Oslo ."]["tags"] == ["B-ORG", "I-ORG", "O", "O", "B-LOC", "O"]
    assert batch["Tom Reed won at the Olympics ."]["accepted"]
    assert not batch["Ghost Corp hired Tom Reed ."]["accepted"]  # an entity not in the text


def test_analyst_without_correct_samples(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=2, max_shown=6),
                      ["loop.analyst_sees_correct=false", "sampling.k_per_class=3"])
    result = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher()))
    probes = [t for t in nodes_of(result.run) if t.node == "probe"]
    assert [p.output["correct"] for p in probes] == [[], []]
    analyst = [c for c in calls_of(result.run) if c.node == "analyst"]
    assert len(analyst) == 2
    for call in analyst:
        prompt = call.messages[-1]["content"]
        assert "classified correctly" not in prompt and "classified incorrectly" in prompt


def test_analyst_with_correct_samples_is_unchanged(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=1), ["sampling.k_per_class=3"])
    result = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher()))
    probe = next(t for t in nodes_of(result.run) if t.node == "probe")
    prompt = next(c for c in calls_of(result.run) if c.node == "analyst").messages[-1]["content"]
    assert "classified correctly:\n" in prompt
    assert all(f'"{s["text"]}"' in prompt for s in probe.output["correct"])


def test_llm2llm_is_classification_only(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = ner_config(tmp_path, tiny_model_dir)
    with pytest.raises(ConfigError) as info:
        method_of(load_config(path, ['loop.method="llm2llm"']))
    assert str(info.value) == (f'{path}: loop.method (--set loop.method="llm2llm"): loop.method = "llm2llm" '
                               'supports task.type = "classification" only')


def test_separate_verifier_switch_is_for_evokd_paper_only(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_config(tmp_path, tiny_model_dir, method="static", separate_verifier=False)
    with pytest.raises(ConfigError) as info:
        method_of(load_config(path))
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("separate_verifier"))
    assert str(info.value) == (f'{path}:{line}: loop.separate_verifier: loop.separate_verifier = false applies to '
                               'loop.method = "evokd-paper" only')


def test_a_method_name_not_in_the_registry_is_a_one_line_error_before_anything_runs(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_config(tmp_path, tiny_model_dir, method="evkd")
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("method"))
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {path}:{line}: loop.method: unknown method 'evkd'; one of static, "
                                     "augment, evokd, evokd-paper, llm2llm, pool")
    assert not (tmp_path / "runs").exists()
