"""loop.method = "pool" end to end with the scripted teacher: picks, labels, trains; resumes,
replays and forks like the other methods."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from conftest import ROOT, SentimentTeacher, write_config

from evokd.agents.client import TeacherUnreachable
from evokd.agents.recording import Recording
from evokd.agents.scripted import ScriptedChatModel
from evokd.config import ConfigError, TaskConfig, load_config
from evokd.core.records import Decision, LLMCall, NodeTurn, RunHeader
from evokd.core.runfolder import RunFolder
from evokd.core.text import normalise
from evokd.core.trace import read_trace
from evokd.graph import replay
from evokd.graph.prepare import prepare
from evokd.graph.runner import execute
from evokd.student.data import DataError, read_classification

DEMO_POOL = ROOT / "examples" / "sentiment" / "data" / "unlabeled.txt"
SENTIMENT = TaskConfig(labels=["negative", "positive"])


@pytest.fixture(autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    # One cache for the module's runs: the pool is encoded once, as on a user's machine.
    root = tmp_path_factory.getbasetemp() / "pool-cache"
    monkeypatch.setenv("EVOKD_CACHE_DIR", str(root))
    return root


def pool_config(tmp_path: Path, model: Path, query: str = "uncertainty", pool: Path = DEMO_POOL,
                overrides: list[str] | None = None, **loop: object):
    """The test config on the demo data, as a pool run: 6 texts a round, Verifier batches of 4."""
    path = write_config(tmp_path, model, method="pool", pool_query=query, pool_per_round=6,
                        pool_shortlist=40, verifier_batch_size=4, **{"max_rounds": 2, **loop})
    text = path.read_text().replace("[student]", f"unlabeled = {json.dumps(str(pool))}\n[student]")
    path.write_text(text)
    return load_config(path, overrides)


def samples_of(run: RunFolder) -> list[dict]:
    return [json.loads(x) for x in run.samples.read_text().splitlines()]


def test_a_pool_run_labels_the_picked_texts_and_trains_on_them(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = pool_config(tmp_path, tiny_model_dir)
    teacher = SentimentTeacher()
    result = execute(cfg, chat_model=ScriptedChatModel(script=teacher))
    run, state = result.run, result.state
    assert state["stop_reason"] == "max_rounds" and len(state["history"]) == 3
    picked = [s for s in samples_of(run) if s["intent"] == "pool"]
    assert [sum(s["round"] == r for s in picked) for r in (1, 2)] == [6, 6]
    pool_lines = DEMO_POOL.read_text().splitlines()
    for sample in picked:
        file, line = sample["origin"].rsplit(":", 1)
        assert Path(file) == DEMO_POOL and pool_lines[int(line) - 1] == sample["text"]
        assert sample["accepted"] and sample["label"] in ("negative", "positive")
        assert sample["predicted"] is not None  # the student's guess before training on it
    assert len({s["row"] for s in picked}) == 12  # nothing asked twice
    # The Verifier saw exactly the picked texts, and each round's were trained on.
    asked = [t for prompt in teacher.seen_verifier_prompts for t in prompt.splitlines() if t[:1].isdigit()]
    assert sorted(a.split(". ", 1)[1] for a in asked) == sorted(s["text"] for s in picked)
    assert all(h["accepted"] == 6 and h["train_size"] > 6 for h in state["history"][1:])
    turns = [r for r in read_trace(run.trace) if isinstance(r, NodeTurn)]
    assert [t.node for t in turns if t.round == 1] == ["pick", "verifier", "trainer", "decide"]
    first_pick = next(t for t in turns if t.node == "pick")
    seen = first_pick.output["pick"]
    assert seen["shortlisted"] == 40 and "260 texts to pick from" in seen["pool"]
    assert first_pick.output["asked"] == "6 items"
    assert (run.root / "report.html").is_file() and "pool" in run.summary.read_text()


def test_a_pool_labelled_with_probabilities_keeps_the_sure_labels(tmp_path: Path, tiny_model_dir: Path) -> None:
    teacher = SentimentTeacher()
    cfg = pool_config(tmp_path / "a", tiny_model_dir, max_rounds=1)  # loop.verifier unset: the pool's own way
    picked = [s for s in samples_of(execute(cfg, chat_model=ScriptedChatModel(script=teacher)).run)
              if s["intent"] == "pool"]
    # The scripted Verifier is 0.9 sure of each keyword label: kept, with that probability.
    assert len(picked) == 6 and all(s["accepted"] and s["teacher_p"] == pytest.approx(0.9) for s in picked)
    assert all(s["label"] in ("negative", "positive") for s in picked)
    cfg = pool_config(tmp_path / "json", tiny_model_dir, max_rounds=1, verifier="json")
    run = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher())).run
    picked = [s for s in samples_of(run) if s["intent"] == "pool"]
    assert len(picked) == 6 and all(s["teacher_p"] is None for s in picked)
    asked = [r for r in read_trace(run.trace) if isinstance(r, LLMCall) and r.node == "verifier"]
    assert asked and all(r.prompt_file.endswith("/verifier.user.j2") for r in asked)
    unsure = SentimentTeacher()
    unsure.label_p = 0.55
    cfg = pool_config(tmp_path / "b", tiny_model_dir, max_rounds=1, verifier="probabilities",
                      verifier_threshold=0.6)
    picked = [s for s in samples_of(execute(cfg, chat_model=ScriptedChatModel(script=unsure)).run)
              if s["intent"] == "pool"]
    assert picked and not any(s["accepted"] for s in picked)
    assert all("the Verifier is unsure" in s["reason"] for s in picked)


def test_uncertainty_picks_what_the_student_doubts_and_random_does_not_look(tmp_path: Path,
                                                                            tiny_model_dir: Path) -> None:
    by_query = {}
    for query in ("uncertainty", "random", "diverse"):
        cfg = pool_config(tmp_path / query, tiny_model_dir, query=query, max_rounds=1)
        result = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher()))
        by_query[query] = [s for s in samples_of(result.run) if s["intent"] == "pool"]
        pick = next(r for r in read_trace(result.run.trace) if isinstance(r, NodeTurn) and r.node == "pick")
        assert (pick.output["pick"]["shortlisted"] == 0) == (query == "random")
    rows = {q: {s["row"] for s in picked} for q, picked in by_query.items()}
    assert rows["uncertainty"] != rows["random"] and len(rows["diverse"]) == 6


def test_texts_in_dev_or_test_are_never_picked(tmp_path: Path, tiny_model_dir: Path) -> None:
    dev_texts = [s.text for s in read_classification(ROOT / "examples/sentiment/data/dev.csv", SENTIMENT)][:10]
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join([*dev_texts, *[t.upper() for t in dev_texts], "A brand new review of a film."]) + "\n")
    # The JSON Verifier: its way out ("none") is what the last text gets.
    cfg = pool_config(tmp_path, tiny_model_dir, pool=pool, max_rounds=3, verifier="json")
    prepared = prepare(cfg)
    assert prepared.method_data.usable.rows.tolist() == [20]
    assert prepared.method_data.usable.in_eval == 20
    undecided = SentimentTeacher()
    undecided.label_fn = lambda texts: ["None"] * len(texts)  # the way out, in any case
    result = execute(cfg, prepared=prepared, chat_model=ScriptedChatModel(script=undecided))
    picked = [s for s in samples_of(result.run) if s["intent"] == "pool"]
    assert [s["text"] for s in picked] == ["A brand new review of a film."]
    assert not picked[0]["accepted"] and "fits none of the labels" in picked[0]["reason"]
    assert not {normalise(t) for t in dev_texts} & {normalise(s["text"]) for s in picked}
    assert result.state["stop_reason"] == "pool_exhausted"
    decision = [r for r in read_trace(result.run.trace) if isinstance(r, Decision)][-1]
    assert decision.stop_reason == "pool_exhausted"


def test_a_bad_pool_file_fails_before_the_run_starts(tmp_path: Path, tiny_model_dir: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "fine"}\n{"text": broken}\n')
    cfg = pool_config(tmp_path, tiny_model_dir, pool=pool)
    with pytest.raises(DataError, match=rf"^{pool}:2: invalid JSON"):
        prepare(cfg)
    assert not (tmp_path / "runs").exists()
    path = write_config(tmp_path / "no-pool", tiny_model_dir, method="pool")
    with pytest.raises(ConfigError, match=r"needs data\.unlabeled"):
        prepare(load_config(path))


class DiesAtSecondPick(SentimentTeacher):
    """Goes away while the Verifier labels round 2's picks."""

    def __call__(self, messages: list, schema: str | None = None):
        self.labels = getattr(self, "labels", 0) + 1
        if self.labels > 2:  # pool_per_round 6 in batches of 4: two calls a round
            return openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1"))
        return super().__call__(messages, schema)


def test_resume_continues_at_the_verifier_with_the_same_picks(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = pool_config(tmp_path, tiny_model_dir, overrides=["llm.max_retries=0"])
    run = RunFolder.create(cfg.runs_dir, cfg.name)
    with pytest.raises(TeacherUnreachable):
        execute(cfg, run=run, chat_model=ScriptedChatModel(script=DiesAtSecondPick()))
    picks = [r for r in read_trace(run.trace) if isinstance(r, NodeTurn) and r.node == "pick"]
    assert [p.round for p in picks] == [1, 2]
    chat = ScriptedChatModel(script=SentimentTeacher())
    result = execute(cfg, run=run, resume=True, chat_model=chat)
    assert result.state["stop_reason"] == "max_rounds"
    turns = [r for r in read_trace(run.trace) if isinstance(r, NodeTurn | RunHeader)]
    resumed_at = max(i for i, r in enumerate(turns) if isinstance(r, RunHeader))
    # Round 2's pick was finished before the crash: the resume labels its texts, it does not pick again.
    assert [t.node for t in turns[resumed_at + 1:]][:2] == ["verifier", "trainer"]
    picked = [s for s in samples_of(run) if s["intent"] == "pool"]
    assert len(picked) == 12 and len({s["row"] for s in picked}) == 12
    assert len(chat.requests) == 2  # round 2's two batches; round 1 was not redone


def test_rerun_reproduces_a_pool_run_and_a_fork_goes_live_after_round_1(tmp_path: Path,
                                                                        tiny_model_dir: Path) -> None:
    cfg = pool_config(tmp_path, tiny_model_dir)
    original = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher())).run
    result, diffs = replay.rerun(original.root, out=tmp_path / "rerun")
    # The last row is the final fit (round None).
    assert [d.round for d in diffs] == [0, 1, 2, None] and all(d.same for d in diffs), diffs
    calls = [r for r in read_trace(result.run.trace) if isinstance(r, LLMCall)]
    assert calls and all(c.from_record for c in calls)
    assert [s.get("row") for s in samples_of(result.run)] == [s.get("row") for s in samples_of(original)]

    contrary = SentimentTeacher()
    contrary.label_fn = lambda texts: ["negative"] * len(texts)
    fork_cfg = pool_config(tmp_path / "fork", tiny_model_dir)
    fork = execute(fork_cfg, chat_model=ScriptedChatModel(script=contrary),
                   recording=Recording.from_run(original.root, mode="fork", until_round=2),
                   parent=str(original.root)).run
    a, b = samples_of(original), samples_of(fork)
    assert [s for s in a if s["round"] <= 1] == [s for s in b if s["round"] <= 1]
    assert {s["label"] for s in b if s["round"] == 2} == {"negative"}


def test_dry_run_estimates_the_verifier_on_the_pool_texts(tmp_path: Path, tiny_model_dir: Path) -> None:
    from evokd.graph.estimate import estimate

    cfg = pool_config(tmp_path, tiny_model_dir)
    prepared = prepare(cfg)
    est = estimate(cfg, prepared.data, prepared.prompts, prepared.method, speed=False,
                   method_data=prepared.method_data)
    preview = prepared.method_data.preview(cfg.sampling.seed)
    assert len(preview) == 32 and all(p.text in DEMO_POOL.read_text() for p in preview)
    # The Verifier's prompt holds the pool's texts, longer than the seed set's: more tokens in.
    seeded = estimate(cfg, prepared.data, prepared.prompts, prepared.method, speed=False)
    assert est.calls[0].tokens_in != seeded.calls[0].tokens_in
    assert [(c.node, c.calls) for c in est.calls] == [("verifier", 2)]  # 6 texts in batches of 4
    assert "pool" in est.lines()[0] and est.rounds == 2
    assert "260 texts to pick from" in prepared.method_data.describe()


def test_a_small_budget_picks_fewer_texts_a_round_so_that_it_pays_for_several(tmp_path: Path,
                                                                               tiny_model_dir: Path) -> None:
    from evokd.graph.estimate import asks_for, estimate
    from evokd.graph.methods.pool import picks_a_round, verifier_calls

    cfg = pool_config(tmp_path, tiny_model_dir, max_tokens=600, rounds_to_fit=4, max_rounds=3)
    prepared = prepare(cfg)
    asks = asks_for(cfg, prepared.data, prepared.prompts, method_data=prepared.method_data)
    n = picks_a_round(asks)

    def cost(k: int) -> float:
        one = asks_for(cfg, prepared.data, prepared.prompts, method_data=prepared.method_data)
        verifier_calls(one, k)
        return one.round_tokens()

    assert 1 <= n < 6  # 6 a round would not let 600 tokens pay for 4 rounds ...
    assert 4 * cost(n) <= 600 < 4 * cost(n + 1)  # ... and n is the most that does
    est = estimate(cfg, prepared.data, prepared.prompts, prepared.method, speed=False,
                   method_data=prepared.method_data)
    assert any(f"picks: {n} a round of loop.pool_per_round = 6" in line for line in est.lines())
    # The run picks as --dry-run said; rounds_to_fit = 0 turns the sizing off.
    result = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher()))
    picked = [s for s in samples_of(result.run) if s["intent"] == "pool"]
    rounds = sorted({s["round"] for s in picked})
    assert rounds and all(sum(s["round"] == r for s in picked) == n for r in rounds)
    # Sized for at most loop.max_rounds rounds: with 2 of them, 600 tokens pay for more a round.
    two = pool_config(tmp_path, tiny_model_dir, max_tokens=600, rounds_to_fit=4, max_rounds=2)
    assert picks_a_round(asks_for(two, prepared.data, prepared.prompts, method_data=prepared.method_data)) == 6
    off = pool_config(tmp_path, tiny_model_dir, max_tokens=600, rounds_to_fit=0)
    assert picks_a_round(asks_for(off, prepared.data, prepared.prompts, method_data=prepared.method_data)) == 6


def test_an_ner_pool_of_conll_sentences(tmp_path: Path, tiny_model_dir: Path) -> None:
    from teachers import NerTeacher
    from test_ner_graph import ner_config

    # A CoNLL pool with tags the run must never read: they are all wrong on purpose.
    sentences = [["Maria", "Lopez", "visited", "Oslo", "."], ["Nordic", "Bank", "hired", "Tom", "Reed", "."],
                 ["It", "rained", "all", "day", "."], ["Ghost", "Corp", "met", "Maria", "Lopez", "."],
                 ["The", "Olympics", "start", "soon", "."], ["Nothing", "happened", "here", "."]]
    pool = tmp_path / "pool.conll"
    pool.write_text("\n\n".join("\n".join(f"{t} NNP B-MISC" for t in s) for s in sentences) + "\n")
    path = ner_config(tmp_path, tiny_model_dir)
    # verifier = "probabilities" too: NER answers in JSON whatever it says, and needs no template for it.
    path.write_text(path.read_text().replace('method = "evokd-paper"',
                                             'method = "pool"\npool_per_round = 3\nverifier = "probabilities"')
                    .replace("[student]", f"unlabeled = {json.dumps(str(pool))}\n[student]"))
    result = execute(load_config(path), chat_model=ScriptedChatModel(script=NerTeacher()))
    picked = [s for s in samples_of(result.run) if s["intent"] == "pool"]
    assert len(picked) == 6 and result.state["stop_reason"] in ("max_rounds", "pool_exhausted")
    by_text = {s["text"]: s for s in picked}
    bank = by_text["Nordic Bank hired Tom Reed ."]
    assert bank["accepted"] and bank["tags"] == ["B-ORG", "I-ORG", "O", "B-PER", "I-PER", "O"]
    assert by_text["It rained all day ."]["tags"] == ["O"] * 5  # a sentence without entities is a sample too
    ghost = by_text["Ghost Corp met Maria Lopez ."]
    assert not ghost["accepted"] and "Ghost Corporation" in ghost["reason"]
    assert all(s["origin"].startswith(f"{pool}:") for s in picked)


def test_long_texts_are_cut_at_a_word_for_the_verifier() -> None:
    from evokd.core.records import Sample
    from evokd.graph.methods.pool import shown

    assert shown(Sample(text="short one"), 20).text == "short one"
    assert shown(Sample(text="a long review that goes on and on"), 20).text == "a long review that"
    assert shown(Sample(text="x" * 30), 20).text == "x" * 20
    words = ["Maria", "Lopez", "visited", "Oslo", "today"]
    cut = shown(Sample(text=" ".join(words), tokens=words), 20)
    assert (cut.text, cut.tokens) == ("Maria Lopez visited", ["Maria", "Lopez", "visited"])
