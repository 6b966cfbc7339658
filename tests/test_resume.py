"""An interrupted run resumes where it stopped: no finished round lost or redone, no reply paid twice."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from conftest import SentimentTeacher, write_config

from evokd.agents.client import TeacherUnreachable
from evokd.agents.scripted import ScriptedChatModel
from evokd.config import load_config
from evokd.core.records import LLMCall, NodeTurn, RunHeader
from evokd.core.runfolder import RunFolder
from evokd.core.trace import read_trace
from evokd.graph.runner import execute


class DiesInRound(SentimentTeacher):
    """Becomes unreachable at the given round's given agent."""

    def __init__(self, round: int, schema: str) -> None:
        super().__init__()
        self.die_round, self.die_schema, self.dead = round, schema, False

    def __call__(self, messages: list, schema: str | None = None):
        upcoming = self.round + (1 if schema == "AnalystReply" else 0)
        if self.dead or (upcoming == self.die_round and schema == self.die_schema):
            self.dead = True
            return openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1"))
        return super().__call__(messages, schema)


def trainer_rounds(run: RunFolder) -> list[int]:
    return [r.round for r in read_trace(run.trace) if isinstance(r, NodeTurn) and r.node == "trainer"
            and r.error is None]


@pytest.mark.parametrize("schema", ["AnalystReply", "VerifierReply"])
def test_resume_after_teacher_dies(tmp_path: Path, tiny_model_dir: Path, schema: str) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=3), ["llm.max_retries=2"])
    run = RunFolder.create(cfg.runs_dir, cfg.name)
    dying = DiesInRound(round=2, schema=schema)
    with pytest.raises(TeacherUnreachable, match="teacher unreachable at scripted"):
        execute(cfg, run=run, chat_model=ScriptedChatModel(script=dying))
    assert trainer_rounds(run) == [1]
    # What the resume needs: round 1's checkpoint (its starting point) and the best student so far.
    assert run.checkpoint_rounds() == [1] and (run.student / "config.json").is_file()
    metrics_before = run.metrics.read_text()

    # The teacher is back: a fresh one that knows where the run was.
    teacher = SentimentTeacher()
    teacher.round = 1
    chat = ScriptedChatModel(script=teacher)
    result = execute(cfg, run=run, resume=True, chat_model=chat)
    assert result.state["stop_reason"] == "max_rounds"
    assert trainer_rounds(run) == [1, 2, 3]  # round 1 was not redone
    assert run.checkpoint_rounds() == []  # finished: student/ is the one copy
    metrics = [json.loads(x) for x in run.metrics.read_text().splitlines()]
    assert [m["round"] for m in metrics] == [0, 1, 2, 3]
    assert run.metrics.read_text().startswith(metrics_before)
    samples = [json.loads(x) for x in run.samples.read_text().splitlines()]
    assert sorted({s["round"] for s in samples}) == [0, 1, 2, 3]
    assert len({(s["round"], s["text"]) for s in samples}) == len(samples)  # nothing duplicated
    # LangGraph resumes at the node that failed: the nodes before it in round 2 are not run again.
    trace = [r for r in read_trace(run.trace) if isinstance(r, LLMCall | RunHeader)]
    resumed_at = max(i for i, r in enumerate(trace) if isinstance(r, RunHeader))
    assert trace[resumed_at + 1].schema_name == schema


def test_resume_of_finished_run_is_a_no_op(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=1))
    first = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher()))
    chat = ScriptedChatModel(script=SentimentTeacher())
    again = execute(cfg, run=first.run, resume=True, chat_model=chat)
    assert chat.requests == []
    assert again.state["history"] == first.state["history"]


class DiesAtSecondLabel(SentimentTeacher):
    """Labels one text, then goes away (the verifier labels one text per call here)."""

    def __init__(self) -> None:
        super().__init__()
        self.labelled = 0

    def __call__(self, messages: list, schema: str | None = None):
        if schema == "VerifierReply":
            self.labelled += 1
            if self.labelled > 1:
                return openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1"))
        return super().__call__(messages, schema)


def test_calls_paid_before_a_crash_count_once(tmp_path: Path, tiny_model_dir: Path) -> None:
    from evokd.core.records import LLMCall

    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=1),
                      ["llm.max_retries=0", "loop.verifier_batch_size=1"])
    run = RunFolder.create(cfg.runs_dir, cfg.name)
    with pytest.raises(TeacherUnreachable):
        execute(cfg, run=run, chat_model=ScriptedChatModel(script=DiesAtSecondLabel()))
    teacher = SentimentTeacher()
    teacher.round = 1
    chat = ScriptedChatModel(script=teacher)
    result = execute(cfg, run=run, resume=True, chat_model=chat)
    calls = [r for r in read_trace(run.trace) if isinstance(r, LLMCall)]
    served = [c for c in calls if c.from_record]
    assert len(served) == 1 and served[0].node == "verifier" and served[0].paid_before_resume
    assert len(chat.requests) == 3  # the other three texts; the first label was not asked again
    paid = [c for c in calls if not c.from_record]
    usage = result.state["usage"]
    assert usage["tokens_in"] + usage["tokens_out"] == sum(c.tokens_in + c.tokens_out for c in paid)
