"""`evokd predict`: texts from arguments, files and standard input; CSV and JSONL out; NER spans;
malformed lines; truncation. A tiny trained student, no teacher."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from shipping_fixtures import classifier_run, ner_run
from typer.testing import CliRunner

from evokd.cli import app
from evokd.student.data import DataError
from evokd.student.predict_io import read_inputs
from evokd.student.predictor import Item, Predictor, load_tokenizer

LABELS = {"negative", "positive"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return classifier_run(tmp_path_factory.mktemp("predict-cls"), tiny_model_dir)


@pytest.fixture(scope="module")
def ner(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return ner_run(tmp_path_factory.mktemp("predict-ner"), tiny_model_dir)


def invoke(*args: str, stdin: str | None = None):
    result = CliRunner().invoke(app, list(args), input=stdin, catch_exceptions=False)
    return result


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_arguments_to_jsonl_on_stdout(run: Path) -> None:
    result = invoke("predict", str(run), "What a wonderful film.", "Dull and far too long.")
    assert result.exit_code == 0, result.output
    rows = jsonl(result.stdout)
    assert [r["text"] for r in rows] == ["What a wonderful film.", "Dull and far too long."]
    assert all(r["label"] in LABELS and 0.5 <= r["score"] <= 1 and r["truncated"] is False for r in rows)


def test_file_csv_in_jsonl_out_matches_the_student(run: Path, tmp_path: Path) -> None:
    from evokd.config import load_config
    from evokd.student.data import read_samples
    from evokd.student.model import load_student

    cfg = load_config(run / "config.toml")
    assert cfg.data.dev is not None
    out = tmp_path / "out" / "pred.jsonl"
    result = invoke("predict", str(run), "--input", str(cfg.data.dev), "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "predictions ->" in result.stderr
    rows = jsonl(out.read_text())
    dev = read_samples(cfg.data.dev, cfg.task)
    assert [r["text"] for r in rows] == [s.text for s in dev]
    # The same labels as the loop's own prediction code.
    student = load_student(run / "student", cfg.task, cfg.student)
    assert [r["label"] for r in rows] == [p.label for p in student.predict(dev)]
    assert not list(out.parent.glob(".*tmp"))


def test_stdin_lines_to_csv(run: Path) -> None:
    result = invoke("predict", str(run), "--format", "csv", stdin="A joy to watch.\n\nI want my money back.\n")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["text"] for r in rows] == ["A joy to watch.", "I want my money back."]
    assert set(rows[0]) == {"text", "label", "score", "truncated"}
    assert all(r["label"] in LABELS and r["truncated"] == "False" for r in rows)


def test_jsonl_and_tsv_inputs_with_a_text_column(run: Path, tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text('{"review": "Great fun."}\n{"review": "Awful."}\n')
    result = invoke("predict", str(run), "--input", str(data), "--text-column", "review", "-o", str(tmp_path / "o.csv"))
    assert result.exit_code == 0, result.output
    assert [r["text"] for r in csv.DictReader((tmp_path / "o.csv").open())] == ["Great fun.", "Awful."]
    tsv = tmp_path / "in.tsv"
    tsv.write_text('sentence\tlabel\n"quoted" start, unquoted\t1\n')  # GLUE-style: no quoting in TSV
    result = invoke("predict", str(run), "-i", str(tsv), "--text-column", "sentence")
    assert result.exit_code == 0, result.output
    assert jsonl(result.stdout)[0]["text"] == '"quoted" start, unquoted'


def test_truncated_texts_are_flagged(run: Path) -> None:
    long = " ".join(["wonderful"] * 100)  # the tiny student reads 32 tokens
    result = invoke("predict", str(run), long, "short and sweet")
    rows = jsonl(result.stdout)
    assert [r["truncated"] for r in rows] == [True, False]
    assert "1 text(s) were longer" in result.stderr


def test_bad_line_is_one_error_naming_file_and_line(run: Path, tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text('{"text": "Fine."}\n{"text": "broken\n{"text": "Lovely."}\n["a list"]\n')
    out = tmp_path / "out.jsonl"
    out.write_text("earlier output\n")
    result = invoke("predict", str(run), "--input", str(data), "--output", str(out))
    assert result.exit_code == 1
    assert f"{data}:2: invalid JSON" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert out.read_text() == "earlier output\n"  # nothing half-written, nothing replaced
    result = invoke("predict", str(run), "--input", str(data), "--output", str(out), "--skip-bad")
    assert result.exit_code == 0, result.output
    assert [r["text"] for r in jsonl(out.read_text())] == ["Fine.", "Lovely."]
    assert "skipped 2 malformed line(s)" in result.stderr and f"{data}:2" in result.stderr


def test_bad_csv_rows(tmp_path: Path) -> None:
    data = tmp_path / "in.csv"
    data.write_text("text,label\nfine,1\n,1\ntoo,many,fields\nok,0\n")
    with pytest.raises(DataError, match=rf"{data}:3: empty text"):
        read_inputs(data, task_type="classification")
    inputs = read_inputs(data, task_type="classification", skip_bad=True)
    assert [i.text for i in inputs.items] == ["fine", "ok"]
    assert [s.split(": ")[0] for s in inputs.skipped] == [f"{data}:3", f"{data}:4"]
    with pytest.raises(DataError, match="no column 'review'"):
        read_inputs(data, task_type="classification", text_column="review")


def test_no_input_and_missing_file(run: Path, tmp_path: Path) -> None:
    result = invoke("predict", str(run), "--input", str(tmp_path / "nope.csv"))
    assert result.exit_code == 1 and "file not found" in result.stderr
    result = invoke("predict", str(tmp_path))
    assert result.exit_code == 1


def test_ner_sentences_give_entities_with_character_spans(ner: Path) -> None:
    from evokd.config import load_config
    from evokd.student.data import read_samples

    cfg = load_config(ner / "config.toml")
    assert cfg.data.dev is not None
    texts = [s.text for s in read_samples(cfg.data.dev, cfg.task)][:20]
    result = invoke("predict", str(ner), stdin="\n".join(texts) + "\n")
    assert result.exit_code == 0, result.output
    rows = jsonl(result.stdout)
    assert len(rows) == 20
    found = [e for row in rows for e in row["entities"]]
    assert found, "the trained tagger finds some entities on its own training sentences"
    for row in rows:
        for entity in row["entities"]:
            assert row["text"][entity["start"]:entity["end"]] == entity["text"]
            assert entity["type"] in {"PER", "ORG", "LOC", "MISC"} and 0 < entity["score"] <= 1


def test_ner_conll_input_and_csv_out(ner: Path, tmp_path: Path) -> None:
    conll = tmp_path / "in.txt"
    conll.write_text("-DOCSTART- -X- O O\n\nAngela NNP B-NP B-PER\nMerkel NNP I-NP I-PER\nvisited VBD O O\n"
                     "Paris NNP B-NP B-LOC\n. . O O\n\nHello UH O O\n")
    result = invoke("predict", str(ner), "-i", str(conll), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["text"] for r in rows] == ["Angela Merkel visited Paris .", "Hello"]
    for row in rows:
        for entity in json.loads(row["entities"]):
            assert row["text"][entity["start"]:entity["end"]] == entity["text"]


class FakeTagger:
    """Logits that tag chosen sub-token positions, to check entity decoding exactly."""

    input_names = ("input_ids", "attention_mask")

    def __init__(self, labels: list[str], plan: dict[int, str]) -> None:
        self.labels, self.plan = labels, plan

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        batch, width = feeds["input_ids"].shape
        logits = np.zeros((batch, width, len(self.labels)), dtype=np.float32)
        logits[:, :, 0] = 5.0
        for position, tag in self.plan.items():
            logits[:, position, :] = 0.0
            logits[:, position, self.labels.index(tag)] = 5.0
        return logits


def test_entity_decoding_spans_and_scores(tiny_model_dir: Path) -> None:
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    tokenizer = load_tokenizer(tiny_model_dir, 64)
    item = Item.from_text("Angela Merkel flew to New York.")
    encoding = tokenizer.encode(item.tokens, is_pretokenized=True)
    first = {}
    for position, word in enumerate(encoding.word_ids):
        if word is not None:
            first.setdefault(word, position)
    # Words: Angela Merkel flew to New York . -> PER PER O O LOC(I- without B-, repaired) LOC O
    plan = {first[0]: "B-PER", first[1]: "I-PER", first[4]: "I-LOC", first[5]: "I-LOC"}
    [result] = Predictor(tokenizer, FakeTagger(labels, plan), "ner", labels).predict([item])
    spans = [(e.type, e.start, e.end, e.text) for e in result.entities or []]
    assert spans == [("PER", 0, 13, "Angela Merkel"), ("LOC", 22, 30, "New York")]
    assert all(0.9 < e.score <= 1 for e in result.entities or [])
    assert result.tags == ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O"]
