"""The Verifier that reads label probabilities from token log-probabilities (loop.verifier =
"probabilities"): the reading itself, the default loop with it, an endpoint without
log-probabilities, and a rerun that reads the recorded probabilities. Scripted teacher, tiny student."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from conftest import SentimentTeacher, write_config
from teachers import numbered_texts

from evokd.agents.client import TeacherClient
from evokd.agents.prompts import PromptSet
from evokd.agents.scripted import ScriptedChatModel, TokenReply
from evokd.agents.verifier_probs import distinguishable, label_distribution, numbered_positions, read_labels
from evokd.config import LLMConfig, TaskConfig, load_config
from evokd.core.records import LLMCall
from evokd.core.trace import read_trace
from evokd.graph import replay
from evokd.graph.runner import execute

LABELS = ["negative", "positive"]
TASK = TaskConfig(labels=LABELS, description="the sentiment of reviews")


def lp(p: float) -> float:
    return math.log(p)


def test_label_distribution_renormalises_over_the_labels() -> None:
    top = [(" positive", lp(0.6)), ("Positive", lp(0.1)), (" negative", lp(0.2)), (" The", lp(0.1))]
    dist = label_distribution(top, LABELS)
    assert dist == pytest.approx({"positive": 0.7 / 0.9, "negative": 0.2 / 0.9})
    # A token that begins two labels says neither; too little mass on labels: no label named.
    assert label_distribution([("p", lp(0.9))], ["pos", "pro"]) is None
    assert label_distribution([(" The", lp(0.8)), (" positive", lp(0.2))], LABELS) is None
    assert distinguishable(LABELS) and not distinguishable(["good", "good enough"])


def test_numbered_positions_finds_each_answer() -> None:
    tokens = ["1", ":", " positive", "\n", "2", ":", " neg", "ative", "\n", "3", ".", " ", "positive"]
    assert numbered_positions(tokens) == {1: 2, 2: 6, 3: 12}
    assert numbered_positions(["positive", "\n", "negative"]) == {}


def teacher_of(script, **model: object) -> tuple[TeacherClient, list[LLMCall]]:
    seen: list[LLMCall] = []
    cfg = LLMConfig(base_url="http://scripted.invalid/v1", backoff_seconds=0)
    client = TeacherClient(ScriptedChatModel(script=script, **model), cfg, mode="json_schema", on_call=seen.append)
    return client, seen


def test_read_labels_batches_and_asks_a_text_alone_when_its_line_is_missing() -> None:
    def script(messages, schema=None):
        assert schema == "logprobs"
        texts = numbered_texts(messages)
        if not texts:  # asked alone
            return TokenReply([{" negative": 0.7, " positive": 0.3}])
        # The batch's reply skips text 2.
        return TokenReply([{"1": 1.0}, {":": 1.0}, {" positive": 0.8, " negative": 0.2}, {"\n": 1.0},
                           {"3": 1.0}, {":": 1.0}, {" negative": 0.95, " positive": 0.05}])

    teacher, seen = teacher_of(script)
    prompts = PromptSet("classification")
    read = read_labels(teacher, prompts, TASK, ["Great fun.", "Hmm, well.", "Awful."], round=1, batch_size=3)
    assert [round(d["positive"], 2) for d in read.distributions if d] == [0.8, 0.3, 0.05]
    assert read.asked == [True, True, True]
    assert [len(numbered_texts([type("M", (), {"content": c.messages[-1]["content"]})])) for c in seen] == [3, 0]
    # Every call is recorded with the tokens it was read from.
    assert all(c.logprobs and c.schema_name == "logprobs" for c in seen)


def test_read_labels_stops_when_the_budget_is_spent() -> None:
    teacher, _ = teacher_of(SentimentTeacher())
    teacher.budget.max_tokens = 1  # spent by the first call
    read = read_labels(teacher, PromptSet("classification"), TASK, ["Great.", "Awful.", "Loved it."], round=1,
                       batch_size=2)
    assert read.asked == [True, True, False]


def probability_config(tmp_path: Path, tiny_model_dir: Path, **loop: object):
    return load_config(write_config(tmp_path, tiny_model_dir, method="evokd", max_rounds=2, n_hard=2, n_easy=2,
                                    dedup_cosine=1.0, verifier="probabilities", **loop))


def samples_of(run) -> list[dict]:
    return [json.loads(line) for line in run.samples.read_text().splitlines()]


def test_default_loop_keeps_texts_by_the_probability_of_their_label(tmp_path: Path, tiny_model_dir: Path) -> None:
    teacher = SentimentTeacher()
    result = execute(probability_config(tmp_path / "a", tiny_model_dir), chat_model=ScriptedChatModel(script=teacher))
    hard = [s for s in samples_of(result.run) if s["intent"] == "hard"]
    assert hard and all(s["teacher_p"] is not None for s in hard)
    kept = [s for s in hard if s["accepted"]]
    # The keyword Verifier is 0.9 sure of its label: a text it labels as written is kept with p 0.9,
    # one it labels otherwise ("A great waste of evening") is rejected with p 0.1 and the reason.
    assert kept and all(s["teacher_p"] == pytest.approx(0.9) for s in kept)
    rejected = [s for s in hard if not s["accepted"]]
    assert rejected and all(s["teacher_p"] == pytest.approx(0.1) and "p=0.10" in s["reason"] for s in rejected)
    calls = [r for r in read_trace(result.run.trace) if isinstance(r, LLMCall) and r.node == "verifier"]
    assert calls and all(c.schema_name == "logprobs" for c in calls)

    # Above the threshold only: at 0.95 the same 0.9-sure labels keep nothing.
    strict = execute(probability_config(tmp_path / "b", tiny_model_dir, verifier_threshold=0.95),
                     chat_model=ScriptedChatModel(script=SentimentTeacher()))
    assert not [s for s in samples_of(strict.run) if s["intent"] == "hard" and s["accepted"]]


def test_an_endpoint_without_logprobs_falls_back_to_the_json_verifier(tmp_path: Path, tiny_model_dir: Path,
                                                                      caplog) -> None:
    caplog.set_level(logging.WARNING)
    result = execute(probability_config(tmp_path, tiny_model_dir),
                     chat_model=ScriptedChatModel(script=SentimentTeacher(), gives_logprobs=False))
    calls = [r for r in read_trace(result.run.trace) if isinstance(r, LLMCall) and r.node == "verifier"]
    # One request learns the endpoint has none (recorded with the reason); then JSON, every round.
    assert [c.schema_name for c in calls].count("logprobs") == 1
    assert calls[0].error and "log-probabilities" in calls[0].error
    assert {c.round for c in calls if c.schema_name == "VerifierReply"} == {1, 2}
    assert "answers in JSON instead" in caplog.text
    hard = [s for s in samples_of(result.run) if s["intent"] == "hard"]
    assert any(s["accepted"] for s in hard) and all(s["teacher_p"] is None for s in hard)


def test_rerun_reads_the_recorded_probabilities(tmp_path: Path, tiny_model_dir: Path) -> None:
    original = execute(probability_config(tmp_path / "a", tiny_model_dir),
                       chat_model=ScriptedChatModel(script=SentimentTeacher())).run
    result, diffs = replay.rerun(original.root, out=tmp_path / "rerun")
    assert diffs and all(d.same for d in diffs), diffs
    assert samples_of(result.run) == samples_of(original)
