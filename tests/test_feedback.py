"""Real errors (S3's idea) in the default loop: feedback texts the student never trains on, whose
mistakes the Analyst reads and the Generator varies (data.feedback, data.feedback_share), and the
loop without its Analyst (loop.analyst = false). Scripted teacher, tiny student."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import SentimentTeacher, write_config

from evokd.agents.client import TeacherClient
from evokd.agents.prompts import PromptSet
from evokd.agents.scripted import ScriptedChatModel
from evokd.config import ConfigError, load_config
from evokd.core.records import LLMCall, Prediction, Sample
from evokd.core.samples import normalise
from evokd.core.trace import read_trace
from evokd.graph.methods.evokd import analyst, real_errors
from evokd.graph.prepare import load_task_data, prepare
from evokd.graph.runner import execute
from evokd.student.data import DataError


class Reader:
    """A student that says "negative" of every text, 0.8 sure."""

    def predict(self, samples: list[Sample]) -> list[Prediction]:
        return [Prediction(label="negative", probs={"negative": 0.8, "positive": 0.2}) for _ in samples]


FEEDBACK = [Sample(text="Not bad at all, honestly.", label="positive"),
            Sample(text="Dreadful pacing throughout.", label="negative"),
            Sample(text="A warm, funny film.", label="positive")]


def test_real_errors_are_the_feedback_texts_the_student_gets_wrong_hardest_first() -> None:
    errors = real_errors(Reader(), FEEDBACK, cap=5)
    # Both positive texts are wrong (loss 0.8); the negative one is right and sure (loss 0.2).
    assert [e["text"] for e in errors] == ["Not bad at all, honestly.", "A warm, funny film."]
    assert all(e["label"] == "positive" and e["predicted"] == "negative" and e["confidence"] == 0.2 for e in errors)
    assert len(real_errors(Reader(), FEEDBACK, cap=1)) == 1


def test_the_analyst_reads_real_errors_and_can_be_left_out(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, method="evokd"))
    asked: list[str] = []

    def script(messages, schema=None):
        asked.append(str(messages[-1].content))
        return json.dumps({"weaknesses": ["praise with a negation"]})

    def runtime(cfg):
        teacher = TeacherClient(ScriptedChatModel(script=script), cfg.llm, mode="json_schema")
        return SimpleNamespace(context=SimpleNamespace(
            cfg=cfg, teacher=teacher, prompts=PromptSet("classification"), data=SimpleNamespace(feedback=FEEDBACK),
            holder=SimpleNamespace(at=lambda checkpoint: Reader())))

    # Round 1: the generated batch is only the seed set, but the feedback texts have mistakes to read.
    update = analyst({"round": 1, "latest": [], "history": [], "student_dir": "ckpt"}, runtime(cfg))
    assert update["diagnosis"] == ["praise with a negation"]
    assert [e["text"] for e in update["real_errors"]] == ["Not bad at all, honestly.", "A warm, funny film."]
    prompt = asked[-1]
    assert "On 3 labelled texts it has never trained on, it got these wrong:" in prompt
    assert '"Not bad at all, honestly." (true label: positive, model said: negative)' in prompt
    assert "Dreadful pacing" not in prompt

    quiet = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"analyst": False})})
    update = analyst({"round": 1, "latest": [], "history": [], "student_dir": "ckpt"}, runtime(quiet))
    assert "diagnosis" not in update and "calls" not in update and len(update["real_errors"]) == 2
    assert len(asked) == 1


def test_feedback_share_sets_part_of_dev_apart(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_config(tmp_path, tiny_model_dir, method="evokd")
    whole = load_task_data(load_config(path))
    data = load_task_data(load_config(path, ["data.feedback_share=0.25"]))
    assert len(data.feedback) == round(len(whole.dev) * 0.25) and len(data.dev) + len(data.feedback) == len(whole.dev)
    assert not {s.text for s in data.dev} & {s.text for s in data.feedback}
    # A generated text equal to a feedback text is rejected as a dev text is.
    assert all(normalise(s.text) in data.eval_keys for s in data.feedback)
    # Seeded: the same split each time.
    assert [s.text for s in load_task_data(load_config(path, ["data.feedback_share=0.25"])).feedback] == \
        [s.text for s in data.feedback]


def test_feedback_settings_are_checked(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_config(tmp_path, tiny_model_dir, method="evokd")
    feedback = tmp_path / "feedback.csv"
    feedback.write_text("text,label\nNot bad at all.,positive\n")
    with pytest.raises(ConfigError, match="set one"):
        load_config(path, [f"data.feedback={json.dumps(str(feedback))}", "data.feedback_share=0.2"])
    with pytest.raises(ConfigError, match=re.escape('data.feedback_share is read by loop.method = "evokd" only')):
        prepare(load_config(path, ['loop.method="static"', "data.feedback_share=0.2"]))
    assert [s.text for s in prepare(load_config(path, [f"data.feedback={json.dumps(str(feedback))}"])).data.feedback] \
        == ["Not bad at all."]
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(DataError):
        prepare(load_config(path, [f"data.feedback={json.dumps(str(empty))}"]))
    with pytest.raises(DataError, match="both need some"):
        prepare(load_config(path, ["data.feedback_share=0.001"]))


def test_a_run_with_feedback_varies_its_real_mistakes(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, method="evokd", max_rounds=2, dedup_cosine=1.0),
                      ["data.feedback_share=0.25"])
    feedback = {s.text for s in load_task_data(cfg).feedback}
    result = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher()))
    calls = [r for r in read_trace(result.run.trace) if isinstance(r, LLMCall)]
    # Round 1 already has real mistakes to read: an Analyst call (the default loop has none without them).
    assert [c.round for c in calls if c.node == "analyst"][:1] == [1]
    shown = [line[3:-1] for c in calls if c.node == "generator"
             for line in c.messages[-1]["content"].splitlines() if line.startswith('- "') and line.endswith('"')]
    # The untrained tiny student is unsure of nearly every text: the Generator is shown feedback texts only.
    assert shown and set(shown) <= feedback
    # The feedback texts scored nothing: dev shrank by them.
    dev = json.loads((result.run.root / "rounds" / "round_000" / "dev_predictions.json").read_text())
    assert len(dev["gold"]) == 48 - len(feedback)
