"""The HTML report, on small hand-written run folders (no LLM, no student)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from evokd.core.records import RoundMetrics, RunResult, SampleRecord
from evokd.report import reason_group, rejection_reasons, write_report
from evokd.student.metrics import classification_report, ner_report

IMAGE = '<img src="data:image/png;base64,'
LABELS = ["negative", "positive"]
TYPES = ["PER", "LOC"]
SCRIPT = "<script>alert('x')</script> great film"


def round_metrics(round: int, dev: dict[str, Any], best_round: int, accepted: int = 2,
                  rejected: int = 0) -> dict[str, Any]:
    return RoundMetrics(
        round=round, f1=dev["f1"], dev=dev, accepted=accepted, rejected=rejected, train_size=4,
        tokens_in=300 * round, tokens_out=40 * round, cost=0.0,
        seconds={"llm": 2.0 * bool(round), "train": 1.0, "eval": 0.5, "other": 0.1, "total": 3.6},
        best_round=best_round,
    ).model_dump(mode="json")


def write_run(root: Path, metrics: list[dict[str, Any]], samples: list[SampleRecord],
              result: RunResult | None = None) -> Path:
    root.mkdir()
    (root / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    (root / "samples.jsonl").write_text("".join(s.model_dump_json() + "\n" for s in samples))
    if result is not None:
        (root / "result.json").write_text(result.model_dump_json())
    return root


def classification_dev(correct: int) -> dict[str, Any]:
    gold = ["negative", "positive"] * 3
    pred = gold[:correct] + ["positive"] * (len(gold) - correct)
    return classification_report(gold, pred, LABELS).model_dump(mode="json")


def text_sample(round: int, text: str, intent: str, label: str | None, accepted: bool = True,
                reason: str | None = None, predicted: str | None = None) -> SampleRecord:
    return SampleRecord(round=round, text=text, intent=intent, label=label, accepted=accepted, reason=reason,
                        predicted=predicted)


SEEDS = [text_sample(0, "Awful service.", "seed", "negative"), text_sample(0, "Lovely.", "seed", "positive")]

RESULT = RunResult(
    run_id="demo", task_name="sentiment", task_type="classification", labels=LABELS, method="evokd",
    teacher_model="local-teacher", teacher_url="http://127.0.0.1:1/v1", student_model="default",
    stop_reason="max_rounds", rounds=2, seed_f1=0.3333, best_round=1, best_f1=0.8, test_f1=0.7123,
    accepted=3, rejected=4, tokens_in=600, tokens_out=80, cost=0.0, seconds={"total": 10.8},
)


@pytest.fixture
def classification_run(tmp_path: Path) -> Path:
    metrics = [round_metrics(0, classification_dev(2), 0), round_metrics(1, classification_dev(5), 1, 2, 3),
               round_metrics(2, classification_dev(4), 1, 1, 1)]
    samples = [
        *SEEDS,
        text_sample(1, SCRIPT, "hard", "positive", predicted="negative"),
        text_sample(1, "Not bad at all.", "easy", "positive", predicted="positive"),
        text_sample(1, "So-so.", "hard", "mixed", False, "label 'mixed' not in the label set"),
        text_sample(1, "Meh.", "easy", "none", False, "label 'none' not in the label set"),
        text_sample(1, "Hmm.", "easy", None, False, "no label returned"),
        text_sample(2, "Dull plot.", "hard", "negative", predicted="negative"),
        text_sample(2, "Whatever.", "hard", None, False, "verifier reply invalid: expected 4 labels"),
    ]
    return write_run(tmp_path / "demo", metrics, samples, RESULT)


def test_classification_report(classification_run: Path) -> None:
    path = write_report(classification_run)
    assert path == classification_run / "report.html"
    page = path.read_text(encoding="utf-8")
    # dev F1, cost, per-class F1, verdicts, confusion matrices
    assert page.count(IMAGE) == 5
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; great film" in page
    for group, count in [("label ... not in the label set", 2), ("no label returned", 1),
                         ("verifier reply invalid", 1)]:
        assert re.search(rf"<td>{re.escape(group)}</td><td[^>]*>{count}</td>", page), group
    assert "http://" not in page and "https://" not in page
    assert "max_rounds" in page and "0.7123" in page and "sentiment" in page
    assert "&#10007; wrong" in page and "&#10003; correct" in page


def test_ner_report(tmp_path: Path) -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-LOC", "O", "O"]]
    seed_pred = [["B-PER", "O", "O", "O"], ["O", "B-PER", "O", "B-LOC"]]
    metrics = [round_metrics(0, ner_report(gold, seed_pred, TYPES).model_dump(mode="json"), 0),
               round_metrics(1, ner_report(gold, gold, TYPES).model_dump(mode="json"), 1, 1, 1)]
    tokens = ["Ada", "Lovelace", "visited", "London"]
    samples = [
        SampleRecord(round=0, text=" ".join(tokens), intent="seed", tokens=tokens,
                     tags=["B-PER", "I-PER", "O", "B-LOC"], accepted=True),
        SampleRecord(round=1, text="Alan <b>Turing</b> in Paris", intent="hard",
                     tokens=["Alan", "<b>Turing</b>", "in", "Paris"], tags=["B-PER", "I-PER", "O", "B-LOC"],
                     accepted=True, predicted=["B-LOC", "O", "O", "B-LOC"]),
        SampleRecord(round=1, text="Bob ran", intent="easy", accepted=False,
                     reason="entity 'Rob' not found in the text"),
    ]
    page = write_report(write_run(tmp_path / "ner", metrics, samples)).read_text(encoding="utf-8")
    # dev F1, cost, per-type F1 per round, verdicts, per-type F1 with the error breakdown
    assert page.count(IMAGE) == 5
    assert "Alan &lt;b&gt;Turing&lt;/b&gt; (PER), Paris (LOC)" in page
    assert "Alan (LOC), Paris (LOC)" in page and "&#10007; wrong" in page
    assert re.search(r"<td>entity \.\.\. not found in the text</td><td[^>]*>1</td>", page)
    # No result.json: an unfinished run still renders.
    assert "not scored" in page and "no result.json" in page


def test_round_zero_only_renders(tmp_path: Path) -> None:
    run = write_run(tmp_path / "fresh", [round_metrics(0, classification_dev(3), 0)], SEEDS)
    page = write_report(run).read_text(encoding="utf-8")
    assert page.count(IMAGE) == 5
    assert "No sample was rejected" in page and "No generated samples yet" in page


@pytest.mark.parametrize("missing", ["metrics.jsonl", "samples.jsonl"])
def test_missing_file_is_named(classification_run: Path, missing: str) -> None:
    (classification_run / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        write_report(classification_run)


@pytest.mark.parametrize(("reason", "group"), [
    ("label 'mixed' not in the label set", "label ... not in the label set"),
    ('label "don\'t" not in the label set', "label ... not in the label set"),
    ("entity 'A' overlaps 'B'", "entity ... overlaps ..."),
    ("verifier reply invalid: 3 validation errors", "verifier reply invalid"),
    ("text longer than 400 characters", "text longer than 400 characters"),
])
def test_reason_group(reason: str, group: str) -> None:
    assert reason_group(reason) == group


def test_rejection_reasons_sorted_by_count() -> None:
    samples = [text_sample(1, "t", "hard", None, False, r)
               for r in ["no label returned", "label 'a' not in the label set", "label 'b' not in the label set"]]
    samples[1] = text_sample(1, "first text with label a", "hard", None, False, "label 'a' not in the label set")
    # The example is a rejected text (the first of its group), not the reason again.
    assert [(g.reason, g.count, g.example) for g in rejection_reasons(samples)] == [
        ("label ... not in the label set", 2, "first text with label a"),
        ("no label returned", 1, "t"),
    ]


def test_cli_prints_the_report_path(classification_run: Path) -> None:
    from typer.testing import CliRunner

    from evokd.cli import app

    result = CliRunner().invoke(app, ["report", str(classification_run)])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output and (classification_run / "report.html").is_file()
    missing = CliRunner().invoke(app, ["report", str(classification_run / "nope")])
    assert missing.exit_code == 1


def test_every_sample_with_its_verdict(classification_run: Path) -> None:
    page = write_report(classification_run).read_text(encoding="utf-8")
    # Every accepted and every rejected text, a rejected one beside its full reason.
    for text in ["Not bad at all.", "Dull plot.", "So-so.", "Meh.", "Hmm.", "Whatever."]:
        assert f">{text}</td>" in page, text
    assert re.search(r">So-so\.</td>\s*<td class=\"reason\">label &#39;mixed&#39; not in the label set</td>", page)
    assert "Accepted samples (3)" in page and "Rejected samples (4)" in page
    assert 'data-filter="rejected-table"' in page


def test_summary_and_intervals(classification_run: Path) -> None:
    result = RESULT.model_copy(update={"teacher": "qwen2.5-coder-1.5b (embedded llama.cpp teacher)",
                                       "budget": {"max_rounds": 2, "max_tokens": 6000}})
    (classification_run / "result.json").write_text(result.model_dump_json())
    page = write_report(classification_run).read_text(encoding="utf-8")
    assert "qwen2.5-coder-1.5b (embedded llama.cpp teacher)" in page
    assert "max_rounds 2, max_tokens 6000" in page and "680 teacher tokens" in page
    # No stored dev predictions: the normal approximation, said so.
    assert "approximate 95% interval" in page

    from evokd.core.records import DevPredictions

    for r, correct in [(0, 2), (1, 5), (2, 4)]:
        gold = [0, 1] * 3
        pred = gold[:correct] + [1] * (6 - correct)
        folder = classification_run / "rounds" / f"round_{r:03d}"
        folder.mkdir(parents=True)
        (folder / "dev_predictions.json").write_text(
            DevPredictions(task="classification", labels=LABELS, gold=gold, predicted=pred).model_dump_json())
    page = write_report(classification_run).read_text(encoding="utf-8")
    assert "95% bootstrap interval: 1000 resamples of the 6 dev texts" in page


def test_bootstrap_interval() -> None:
    from evokd.core.records import DevPredictions
    from evokd.report.run import bootstrap_f1

    perfect = DevPredictions(task="classification", labels=LABELS, gold=[0, 1] * 20, predicted=[0, 1] * 20)
    assert bootstrap_f1(perfect) == bootstrap_f1(perfect) and bootstrap_f1(perfect).low == 1.0
    half = DevPredictions(task="classification", labels=LABELS, gold=[0, 1] * 50, predicted=[0, 0, 1, 1] * 25)
    interval = bootstrap_f1(half)
    assert interval.low < 0.5 < interval.high and interval.high - interval.low < 0.3
    ner = DevPredictions(task="ner", labels=TYPES, entity_counts=[(1, 1, 1), (0, 1, 1)] * 30)
    interval = bootstrap_f1(ner)
    assert interval.low < 0.5 < interval.high


def test_analysis_from_the_trace(classification_run: Path) -> None:
    from evokd.core.records import NodeTurn

    turns = [NodeTurn(round=1, node="analyst", started_at=0, ended_at=1, seconds=1,
                      output={"analysis": "weak on <negation>"}),
             NodeTurn(round=2, node="analyst", started_at=0, ended_at=1, seconds=1,
                      output={"analysis": "still weak on sarcasm"})]
    (classification_run / "trace.jsonl").write_text("".join(t.model_dump_json() + "\n" for t in turns))
    page = write_report(classification_run).read_text(encoding="utf-8")
    assert "weak on &lt;negation&gt;" in page and "still weak on sarcasm" in page
