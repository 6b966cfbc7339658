"""The same graph on an NER task: scripted teacher, tiny tagger."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT
from teachers import NerTeacher

from evokd.agents.scripted import ScriptedChatModel
from evokd.config import load_config
from evokd.core.records import LLMCall
from evokd.core.trace import read_trace
from evokd.graph.runner import execute


def ner_config(tmp_path: Path, model_dir: Path) -> Path:
    demo = ROOT / "examples" / "ner_demo" / "data"
    path = tmp_path / "ner.toml"
    path.write_text("\n".join([
        'name = "ner-test"', f"runs_dir = {json.dumps(str(tmp_path / 'runs'))}",
        "[task]", 'type = "ner"', 'description = "news sentences"', 'labels = ["PER", "ORG", "LOC", "MISC"]',
        "[data]", f"seed = {json.dumps(str(demo / 'seed.jsonl'))}", f"dev = {json.dumps(str(demo / 'dev.jsonl'))}",
        f"test = {json.dumps(str(demo / 'test.jsonl'))}",
        "[student]", f"model = {json.dumps(str(model_dir))}", "epochs_per_round = 1", "seed_epochs = 2",
        "max_length = 48",
        "[llm]", 'base_url = "http://scripted.invalid/v1"',
        "[loop]", 'method = "evokd-paper"', "n_hard = 2", "n_easy = 1", "max_rounds = 2", "patience = 5",
    ]) + "\n")
    return path


def test_ner_two_rounds(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(ner_config(tmp_path, tiny_model_dir))
    result = execute(cfg, chat_model=ScriptedChatModel(script=NerTeacher()))
    state, run = result.state, result.run
    assert state["stop_reason"] == "max_rounds"
    assert [h["accepted"] for h in state["history"][1:]] == [2, 2]
    samples = [json.loads(x) for x in run.samples.read_text().splitlines()]
    round1 = {s["text"]: s for s in samples if s["round"] == 1}
    bank = round1["Nordic Bank opened in Oslo on day 1 ."]
    assert bank["accepted"] and bank["tags"][:5] == ["B-ORG", "I-ORG", "O", "O", "B-LOC"]
    assert isinstance(bank["predicted"], list) and len(bank["predicted"]) == len(bank["tokens"])
    ghost = round1["Maria Lopez and Ghost Corp met 1 times ."]
    assert not ghost["accepted"] and ghost["reason"] == "entity 'Ghost Corporation' not found in the text"
    dev = state["history"][-1]["dev"]
    assert dev["task"] == "ner" and set(dev["per_class"]) == {"PER", "ORG", "LOC", "MISC"}
    assert set(dev["errors"]) == {"missed", "spurious", "wrong_type", "wrong_boundary"}
    # The Analyst saw gold and predicted entities of the probed sentences.
    analyst = [r for r in read_trace(run.trace) if isinstance(r, LLMCall) and r.node == "analyst"]
    prompt = analyst[1].messages[-1]["content"]
    assert "Nordic Bank (ORG), Oslo (LOC)" in prompt
    assert "Errors: missed" in prompt
    assert state["test"]["task"] == "ner"
