"""The default loop (loop.method = "evokd", docs/method.md): what its Analyst, Generator and Verifier
are sent, what they keep and reject, and NER's static and augment baselines. Scripted teacher, tiny
student."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from conftest import SentimentTeacher, write_config
from teachers import NerTeacher
from test_ner_graph import ner_config

from evokd.agents.client import TeacherClient
from evokd.agents.prompts import PromptSet
from evokd.agents.scripted import ScriptedChatModel
from evokd.config import load_config
from evokd.core.records import LLMCall
from evokd.core.trace import read_trace
from evokd.graph.estimate import estimate
from evokd.graph.methods.evokd import (
    analyst,
    hardest,
    is_broad,
    labels_affordable,
    labels_of_round,
    near_duplicates,
    rounds_to_fit,
)
from evokd.graph.prepare import prepare
from evokd.graph.runner import execute


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def calls_of(run) -> list[LLMCall]:
    return [r for r in read_trace(run.trace) if isinstance(r, LLMCall)]


def test_default_loop_end_to_end(tmp_path: Path, tiny_model_dir: Path) -> None:
    # The tiny random student's embeddings say little, so the near-duplicate check is off here
    # (tested on its own below).
    cfg = load_config(write_config(tmp_path, tiny_model_dir, method="evokd", max_rounds=2, n_hard=2, n_easy=2,
                                   dedup_cosine=1.0))
    assert cfg.loop.method == "evokd" and cfg.loop.verify == "hard" and not cfg.loop.hard_from_errors
    result = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher()))
    calls = calls_of(result.run)
    generator = [c for c in calls if c.node == "generator"]
    # One fresh, short call per label and round: a system and a user message, no Analyst conversation.
    assert [(c.round, c.schema_name) for c in generator] == [(1, "TargetedReply")] * 2 + [(2, "TargetedReply")] * 2
    assert all([m["role"] for m in c.messages] == ["system", "user"] for c in generator)
    assert ['"tricky_negative"' in c.messages[-1]["content"] for c in generator[:2]] == [True, False]
    assert ['"tricky_positive"' in c.messages[-1]["content"] for c in generator[:2]] == [False, True]
    # Round 1 probes the seed set the student was fitted on: nothing to analyse, no Analyst call.
    assert not [c for c in calls if c.node == "analyst" and c.round == 1]

    samples = read_jsonl(result.run.samples)
    generated = [s for s in samples if s["intent"] != "seed"]
    # The Verifier labels only the hard texts, blind: it is never told what a text was written for.
    verifier = [c for c in calls if c.node == "verifier"]
    hard_texts = {s["text"] for s in generated if s["intent"] == "hard"}
    asked = {line.split(". ", 1)[1] for c in verifier for line in c.messages[-1]["content"].splitlines()
             if line[:1].isdigit() and ". " in line}
    assert asked == hard_texts
    assert not any("tricky" in c.messages[-1]["content"] or "meant" in c.messages[-1]["content"] for c in verifier)
    # "A great waste of evening" was written as negative; the keyword Verifier says positive.
    rejected = [s for s in generated if not s["accepted"]]
    assert {s["text"].split(" evening")[0] for s in rejected} == {"A great waste of"}
    assert all(s["reason"] == "the Verifier says 'positive', the Generator meant 'negative'" for s in rejected)
    # Every sample carries the label it was written for; both labels are asked for and kept each round.
    for round in (1, 2):
        kept = [s["label"] for s in generated if s["round"] == round and s["accepted"]]
        assert kept.count("positive") == 4 and kept.count("negative") == 3
    # The trainer records how sure the student was of each accepted sample before training on it.
    assert all(0.0 <= s["confidence"] <= 1.0 for s in generated if s["accepted"])


def test_hard_texts_only_where_the_student_erred(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, method="evokd", max_rounds=2, n_hard=2, n_easy=2,
                                   dedup_cosine=1.0, hard_from_errors=True))
    result = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher()))
    calls = calls_of(result.run)
    generator = [c for c in calls if c.node == "generator"]
    # Round 1 probes the seed set: no generated text was wrong yet, so each label is asked for
    # n_hard + n_easy plain texts and nothing goes to the Verifier.
    first = [c.messages[-1]["content"] for c in generator if c.round == 1]
    assert len(first) == 2 and not any("tricky_" in m for m in first)
    assert all("4 plain, typical" in m for m in first)
    assert not [c for c in calls if c.node == "verifier" and c.round == 1]
    # The untrained tiny student is unsure of every round-1 text (loss >= 0.25): round 2 varies them.
    second = [c.messages[-1]["content"] for c in generator if c.round == 2]
    assert all("tricky_" in m and "wrong or nearly wrong" in m for m in second)
    assert [c for c in calls if c.node == "verifier" and c.round == 2]
    samples = [s for s in read_jsonl(result.run.samples) if s["intent"] != "seed"]
    assert {s["intent"] for s in samples if s["round"] == 1} == {"easy"}
    assert {s["intent"] for s in samples if s["round"] == 2} == {"hard", "easy"}


def runtime_for(cfg, script) -> SimpleNamespace:
    teacher = TeacherClient(ScriptedChatModel(script=script), cfg.llm, mode="json_schema")
    return SimpleNamespace(context=SimpleNamespace(cfg=cfg, teacher=teacher, prompts=PromptSet("classification"),
                                                   data=SimpleNamespace(feedback=[])))


def test_analyst_reads_mistakes_before_and_scores_after_training(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, method="evokd", analyst_every=2))
    asked: list[str] = []

    def script(messages, schema=None):
        asked.append(str(messages[-1].content))
        return json.dumps({"weaknesses": ["double negation", "  ", "irony", "long texts", "a fourth"]})

    runtime = runtime_for(cfg, script)
    wrong = {"text": "Not bad at all, honestly.", "label": "positive", "predicted": "negative", "intent": "hard"}
    right = {"text": "A lovely film.", "label": "positive", "predicted": "positive", "intent": "easy"}
    history = [{"dev": {"f1": 0.5, "per_class": {"negative": {"f1": 0.7}, "positive": {"f1": 0.3}},
                        "confused_pairs": [{"gold": "positive", "predicted": "negative", "count": 9}]}}]
    update = analyst({"round": 2, "latest": [wrong, right], "history": history}, runtime)
    assert update["diagnosis"] == ["double negation", "irony", "long texts"] and update["analysed_round"] == 2
    prompt = asked[-1]
    assert "Before its latest training step it was shown 2 new texts" in prompt
    assert '"Not bad at all, honestly."' in prompt and "A lovely film" not in prompt
    assert "After training on them, on held-out data its F1 per label is negative 0.70, positive 0.30" in prompt
    # The next round reuses the diagnosis (every 2 rounds); a batch without mistakes asks nothing.
    assert analyst({"round": 3, "latest": [wrong], "analysed_round": 2, "history": history}, runtime) == {}
    assert analyst({"round": 4, "latest": [right], "analysed_round": 2, "history": history}, runtime) == {}
    assert len(asked) == 1
    assert analyst({"round": 4, "latest": [wrong], "analysed_round": 2, "history": history}, runtime)["diagnosis"]
    assert len(asked) == 2


def test_generator_is_shown_the_students_hardest_texts_of_its_label() -> None:
    latest = [
        {"text": "a", "label": "positive", "predicted": "negative", "confidence": 0.1, "intent": "hard"},
        {"text": "b", "label": "positive", "predicted": "positive", "confidence": 0.6, "intent": "easy"},
        {"text": "c", "label": "positive", "predicted": "positive", "confidence": 0.95, "intent": "easy"},
        {"text": "d", "label": "negative", "predicted": "positive", "confidence": 0.2, "intent": "hard"},
        {"text": "e", "label": "positive", "predicted": "negative", "confidence": 0.0, "intent": "seed"},
    ]
    assert [s["text"] for s in hardest(latest, "positive", 2, ner=False)] == ["a", "b"]
    assert [s["text"] for s in hardest(latest, "positive", 5, ner=False)] == ["a", "b"]  # c: loss 0.05
    assert [s["text"] for s in hardest(latest, "negative", 2, ner=False)] == ["d"]


class FixedEncoder:
    """Sentence vectors chosen by the test: texts starting with the same word are near-duplicates."""

    def embed(self, texts: list[str]) -> torch.Tensor:
        axes = {"cat": [1.0, 0.0, 0.0], "dog": [0.0, 1.0, 0.0], "cow": [0.0, 0.0, 1.0]}
        rows = [torch.tensor(axes[t.split()[0]]) + 0.01 * i for i, t in enumerate(texts)]
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def test_near_duplicates_by_sentence_embeddings() -> None:
    kept = ["cat on a mat"]
    texts = ["cat sat on the mat", "dog in the fog", "dog in a bog", "cow now"]
    assert near_duplicates(texts, kept, FixedEncoder(), 0.92) == ["cat on a mat", None, "dog in the fog", None]
    assert near_duplicates(texts, kept, FixedEncoder(), 1.0) == [None] * 4


def test_student_embeddings_are_unit_vectors(tmp_path: Path, tiny_model_dir: Path) -> None:
    from evokd.student.model import build_student

    cfg = load_config(write_config(tmp_path, tiny_model_dir))
    vectors = build_student(cfg.task, cfg.student).embed(["the same text", "another one here", "the same text"])
    assert vectors.shape[0] == 3 and torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert float(vectors[0] @ vectors[2]) > 0.9999


def test_near_duplicate_rejected_in_a_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    # With a threshold every pair of the tiny student's vectors passes, only the first text is new.
    cfg = load_config(write_config(tmp_path, tiny_model_dir, method="evokd", max_rounds=1, n_hard=2, n_easy=2,
                                   dedup_cosine=0.0001))
    result = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher()))
    generated = [s for s in read_jsonl(result.run.samples) if s["intent"] != "seed"]
    reasons = [s["reason"] or "" for s in generated]
    assert sum(r.startswith("near-duplicate (cosine >= 0.0001)") for r in reasons) == len(generated)


def test_ner_default_loop(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(ner_config(tmp_path, tiny_model_dir), ['loop.method="evokd"', "loop.max_rounds=1",
                                                             "loop.dedup_cosine=1.0"])
    result = execute(cfg, chat_model=ScriptedChatModel(script=NerTeacher()))
    generated = [s for s in read_jsonl(result.run.samples) if s["intent"] != "seed"]
    by_reason = {s["reason"] for s in generated if not s["accepted"]}
    # "Tom Reed" listed as ORG: the Verifier (gazetteer) tags it PER, so that sentence is rejected;
    # asked for a type the sentences do not contain, they are rejected too.
    assert "the Verifier does not tag 'Tom Reed' as ORG" in by_reason
    assert {"no PER entity in the sentence", "no LOC entity in the sentence"} & by_reason
    accepted = [s for s in generated if s["accepted"]]
    assert accepted and all(len(s["tokens"]) == len(s["tags"]) for s in accepted)
    assert any("B-ORG" in s["tags"] and "B-LOC" in s["tags"] for s in accepted)


def test_labels_per_round_takes_the_types_in_turn(tmp_path: Path, tiny_model_dir: Path) -> None:
    assert labels_of_round(["A", "B", "C"], 1, 2) == ["A", "B"]
    assert labels_of_round(["A", "B", "C"], 2, 2) == ["C", "A"]
    assert labels_of_round(["A", "B", "C"], 5, 0) == labels_of_round(["A", "B", "C"], 5, 3) == ["A", "B", "C"]
    cfg = load_config(ner_config(tmp_path, tiny_model_dir), ['loop.method="evokd"', "loop.max_rounds=3",
                                                             "loop.dedup_cosine=1.0", "loop.labels_per_round=2"])
    result = execute(cfg, chat_model=ScriptedChatModel(script=NerTeacher()))
    asked = {}
    for call in calls_of(result.run):
        if call.node == "generator":
            asked.setdefault(call.round, []).append(
                next(t for t in cfg.task.labels if f"tricky_{t}" in call.messages[-1]["content"]))
    # Two Generator calls a round instead of four, every type asked for in turn.
    assert asked == {1: ["PER", "ORG"], 2: ["LOC", "MISC"], 3: ["PER", "ORG"]}


def test_broad_first_then_aimed(tmp_path: Path, tiny_model_dir: Path) -> None:
    """loop.broad_share: the rounds before that share of the budget is spent write plain texts per
    label (no Analyst, no hard texts, no Verifier); the rest are the default's aimed rounds."""
    assert not is_broad({"round": 1}, load_config(write_config(tmp_path, tiny_model_dir)).loop)
    cfg = load_config(write_config(tmp_path, tiny_model_dir, method="evokd", max_rounds=4, n_hard=2, n_easy=2,
                                   dedup_cosine=1.0, broad_share=0.5))
    result = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher()))
    calls = calls_of(result.run)
    broad = {r for r in range(1, 5) if is_broad({"round": r}, cfg.loop)}
    assert broad == {1, 2}  # without a token budget: the first half of loop.max_rounds
    for call in calls:
        if call.round in broad:
            assert call.node == "generator" and "tricky_" not in call.messages[-1]["content"], call.messages
    generated = [s for s in read_jsonl(result.run.samples) if s["intent"] != "seed"]
    assert {s["intent"] for s in generated if s["round"] in broad} == {"easy"}
    assert {s["label"] for s in generated if s["round"] == 1} == {"negative", "positive"}
    assert all("Write 4 new" in c.messages[-1]["content"] for c in calls if c.round == 1)  # n_hard + n_easy
    assert {c.node for c in calls if c.round not in broad} >= {"generator", "verifier"}
    assert any("tricky_" in c.messages[-1]["content"] for c in calls if c.round == 3)
    # With a token budget the share is of tokens: broad while the rounds before spent less than it.
    budget = cfg.loop.model_copy(update={"max_tokens": 1000})
    assert is_broad({"round": 3, "history": [{"tokens_in": 300, "tokens_out": 199}]}, budget)
    assert not is_broad({"round": 2, "history": [{"tokens_in": 300, "tokens_out": 200}]}, budget)


def test_labels_affordable() -> None:
    assert labels_affordable(6, budget=6000, rounds=4, per_label=900) == 1
    assert labels_affordable(4, budget=6000, rounds=4, per_label=700) == 2
    assert labels_affordable(2, budget=6000, rounds=4, per_label=600) == 2  # never more than there are
    assert labels_affordable(6, budget=100, rounds=4, per_label=900) == 1  # never fewer than one
    assert labels_affordable(3, budget=100, rounds=1, per_label=0) == 3


def test_ner_rounds_are_sized_to_fit_the_budget(tmp_path: Path, tiny_model_dir: Path) -> None:
    """NER's default (loop.rounds_to_fit = 4): a budget that buys one round writing for all four
    types buys at least four rounds writing for one type each, taken in turn, as --dry-run says."""
    cfg = load_config(ner_config(tmp_path, tiny_model_dir), ['loop.method="evokd"', "loop.labels_per_round=1"])
    prepared = prepare(cfg)
    one = estimate(cfg, prepared.data, prepared.prompts, prepared.method, speed=False)
    budget = (one.round_in + one.round_out) * 6  # by the estimate: six one-type rounds, or two of all four
    cfg = load_config(ner_config(tmp_path, tiny_model_dir),
                      ['loop.method="evokd"', "loop.dedup_cosine=1.0", "loop.max_rounds=6", "loop.patience=8",
                       f"loop.max_tokens={budget}"])
    planned = estimate(cfg, prepared.data, prepared.prompts, prepared.method, speed=False)
    assert [c.calls for c in planned.calls if c.node == "generator"] == [1] and planned.rounds >= 4
    unsized = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"rounds_to_fit": 0})})
    assert estimate(unsized, prepared.data, prepared.prompts, prepared.method, speed=False).rounds == 2
    result = execute(cfg, chat_model=ScriptedChatModel(script=NerTeacher()))
    asked: dict[int, list[str]] = {}
    for call in calls_of(result.run):
        if call.node == "generator":
            asked.setdefault(call.round, []).append(
                next(t for t in cfg.task.labels if f"tricky_{t}" in call.messages[-1]["content"]))
    assert len(asked) >= 4 and all(len(set(types)) == 1 for types in asked.values()), asked
    assert [asked[r][0] for r in sorted(asked)][:4] == cfg.task.labels  # in turn: every type comes round
    usage = result.state["usage"]
    assert usage["tokens_in"] + usage["tokens_out"] <= budget
    # Classification writes for every label each round unless asked (rounds_to_fit = None: off).
    (tmp_path / "cls").mkdir()
    assert rounds_to_fit(load_config(write_config(tmp_path / "cls", tiny_model_dir))) == 0
    # Never sized for more rounds than loop.max_rounds lets run: the budget would be left unspent.
    assert rounds_to_fit(cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"max_rounds": 2})})) == 2


def test_ner_static_and_augment(tmp_path: Path, tiny_model_dir: Path) -> None:
    for method in ("static", "augment"):
        (tmp_path / method).mkdir()
        cfg = load_config(ner_config(tmp_path / method, tiny_model_dir),
                          [f'loop.method="{method}"', "loop.max_rounds=1", "loop.n_hard=4", "loop.n_easy=4"])
        result = execute(cfg, chat_model=ScriptedChatModel(script=NerTeacher()))
        generated = [s for s in read_jsonl(result.run.samples) if s["intent"] != "seed"]
        assert generated and {s["method"] for s in generated} == {method}
        accepted = [s for s in generated if s["accepted"]]
        reasons = {s["reason"] for s in generated if not s["accepted"]}
        assert accepted and all(len(s["tokens"]) == len(s["tags"]) and s["label"] is None for s in accepted)
        if method == "static":
            assert any(s["tags"][:2] == ["B-PER", "I-PER"] for s in accepted)  # "Maria Lopez"
            assert "entity 'Nordic Bank Group' not found in the text" in reasons
            assert "no ORG entity in the sentence" in reasons  # asked for ORG, wrote PER and LOC
        else:
            # A paraphrase keeps its seed sentence's entities; one that lost them is rejected.
            assert any(r and r.startswith("entity ") and r.endswith("not found in the text") for r in reasons)
            assert all(any(t != "O" for t in s["tags"]) for s in accepted)
