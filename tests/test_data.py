"""Readers, tag schemes, tokenisation and sampling in evokd.student.data."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evokd.config import TaskConfig
from evokd.student.data import (
    DataError,
    Sample,
    cap,
    entity_types,
    normalise_bio,
    read_classification,
    read_ner,
    read_samples,
    sample_k_shot,
    token_offsets,
    tokenize,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not available")

SENTIMENT = TaskConfig(labels=["negative", "positive"], label_map={"0": "negative", "1": "positive"})
NER = TaskConfig(type="ner", labels=["PER", "ORG", "LOC", "MISC"])


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error_of(call, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError) as info:
        call(*args)
    return str(info.value)


# --- classification readers --------------------------------------------------------------------


def test_csv_with_label_map_and_extra_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", 'id,text,label\n1,"great, really",1\n2,  dull  ,0\n')
    samples = read_classification(path, SENTIMENT)
    assert samples == [Sample(text="great, really", label="positive"), Sample(text="dull", label="negative")]


def test_labels_used_verbatim_without_a_map(tmp_path: Path) -> None:
    task = TaskConfig(labels=["negative", "positive"])
    path = write(tmp_path / "a.csv", "text,label\nfine,positive\n")
    assert read_classification(path, task) == [Sample(text="fine", label="positive")]


def test_tsv_by_extension_is_unquoted(tmp_path: Path) -> None:
    # GLUE TSVs are unquoted: a leading quote is part of the sentence.
    path = write(tmp_path / "a.tsv", 'sentence\tlabel\n"quoted" start \t1\n')
    task = SENTIMENT.model_copy(update={"text_column": "sentence"})
    assert read_classification(path, task) == [Sample(text='"quoted" start', label="positive")]


def test_tab_sniffed_from_header(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "text\tlabel\na, b and c\t0\n")
    assert read_classification(path, SENTIMENT) == [Sample(text="a, b and c", label="negative")]


def test_jsonl_and_json_list(tmp_path: Path) -> None:
    lines = [{"text": "nice", "label": 1}, {"text": "meh", "label": "0", "other": True}]
    jsonl = write(tmp_path / "a.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n\n")
    json_list = write(tmp_path / "a.json", json.dumps(lines))
    expected = [Sample(text="nice", label="positive"), Sample(text="meh", label="negative")]
    assert read_classification(jsonl, SENTIMENT) == expected
    assert read_samples(json_list, SENTIMENT) == expected


def test_unknown_label_names_file_and_line(tmp_path: Path) -> None:
    task = TaskConfig(labels=["negative", "positive"])
    path = write(tmp_path / "dev.csv", "text,label\nok,positive\n\nmeh,neutral\n")
    message = error_of(read_classification, path, task)
    assert message == f"{path}:4: label 'neutral' is not one of ['negative', 'positive']"


def test_line_numbers_count_multiline_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "dev.csv", 'text,label\n"two\nlines",1\nbad,7\n')
    assert error_of(read_classification, path, SENTIMENT).startswith(f"{path}:4: label '7'")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.csv", "body,label\nx,1\n", ":1: no column 'text' (columns: body, label)"),
        ("a.csv", "text,label\nx\n", ":2: missing column 'label'"),
        ("a.csv", "text,label\n  ,1\n", ":2: empty text in column 'text'"),
        ("a.csv", "", ":1: empty file"),
        ("a.jsonl", '{"text": "x", "label": 1}\n{"text": "y"\n', ":2: invalid JSON"),
        ("a.jsonl", '{"label": 1}\n', ":1: missing column 'text'"),
        ("a.jsonl", "[1, 2]\n", ":1: expected a JSON object"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = write(tmp_path / name, content)
    assert error_of(read_classification, path, SENTIMENT).startswith(f"{path}{expected}")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    assert error_of(read_samples, path, SENTIMENT) == f"{path}: file not found"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Zoë B-PER\n".encode("latin-1"))
    assert error_of(read_ner, path, NER).startswith(f"{path}: not UTF-8 text")


@needs_shared
def test_real_sst2_dev() -> None:
    task = SENTIMENT.model_copy(update={"text_column": "sentence"})
    samples = read_classification(SHARED / "sst2" / "dev.tsv", task)
    assert len(samples) == 6735
    assert samples[0] == Sample(text="the expressive power of the camera", label="positive")
    assert sum(s.label == "negative" for s in samples) == 2994


@needs_shared
def test_real_imdb_test() -> None:
    samples = read_classification(SHARED / "imdb" / "test.csv", SENTIMENT)
    assert len(samples) == 25000
    assert samples[0].text.startswith("I went and saw this movie last night")
    assert {s.label for s in samples} == {"negative", "positive"}


# --- NER readers ---------------------------------------------------------------------------------


def test_conll_text_with_docstart_and_bioes(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.conll",
        "-DOCSTART- -X- O O\n\nJohn NNP S-PER\nSmith NNP B-PER\nJr NNP E-PER\n\n\nin IN O\nU.S. NNP S-LOC\n",
    )
    samples = read_ner(path, NER)
    assert samples == [
        Sample(text="John Smith Jr", tokens=["John", "Smith", "Jr"], tags=["B-PER", "B-PER", "I-PER"]),
        Sample(text="in U.S.", tokens=["in", "U.S."], tags=["O", "B-LOC"]),
    ]


def test_conll_iob1_tags(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "EU I-ORG\nrejects O\nGerman I-MISC\ncall O\nBonn I-LOC\nBerlin B-LOC\n")
    assert read_ner(path, NER)[0].tags == ["B-ORG", "O", "B-MISC", "O", "B-LOC", "B-LOC"]


def test_conll_errors_name_file_and_line(tmp_path: Path) -> None:
    bad_type = write(tmp_path / "a.txt", "x O\n\nParis B-GPE\n")
    assert error_of(read_ner, bad_type, NER) == (
        f"{bad_type}:3: entity type 'GPE' is not one of ['PER', 'ORG', 'LOC', 'MISC']"
    )
    bad_tag = write(tmp_path / "b.txt", "x O\ny X-PER\n")
    assert error_of(read_ner, bad_tag, NER).startswith(f"{bad_tag}:2: tag 'X-PER'")
    one_column = write(tmp_path / "c.txt", "x O\nlonely\n")
    assert error_of(read_ner, one_column, NER).startswith(f"{one_column}:2: expected 'token ... tag'")


def test_label_map_renames_entity_types(tmp_path: Path) -> None:
    task = NER.model_copy(update={"label_map": {"Peop": "PER"}})
    path = write(tmp_path / "a.json", json.dumps([{"tokens": ["Ann", "Lee"], "tags": ["B-Peop", "L-Peop"]}]))
    assert read_ner(path, task)[0].tags == ["B-PER", "I-PER"]


def test_json_token_spans(tmp_path: Path) -> None:
    record = {"tokens": ["Ann", "met", "Bo"], "entities": [{"type": "PER", "start": 0, "end": 1},
                                                           {"type": "PER", "start": 2, "end": 3}]}
    path = write(tmp_path / "a.json", json.dumps([record]))
    assert read_ner(path, NER)[0].tags == ["B-PER", "O", "B-PER"]


def test_json_errors_name_the_sentence(tmp_path: Path) -> None:
    records = [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["Oslo"], "tags": ["U-GPE"]}]
    path = write(tmp_path / "a.json", json.dumps(records))
    assert error_of(read_ner, path, NER) == f"{path}: sentence 1: entity type 'GPE' is not one of " + str(NER.labels)
    short = write(tmp_path / "b.json", json.dumps([{"tokens": ["a", "b"], "tags": ["O"]}]))
    assert "'tags' must be a list as long as 'tokens'" in error_of(read_ner, short, NER)


def test_jsonl_character_spans(tmp_path: Path) -> None:
    text = "Obama's visit to São Paulo, Brazil."
    entities = [
        {"start": 0, "end": 5, "type": "PER"},
        {"start": 16, "end": 26, "type": "LOC"},  # " São Paulo": a stray space is trimmed
        {"start": 28, "end": 34, "type": "LOC"},
    ]
    path = write(tmp_path / "gen.jsonl", json.dumps({"text": text, "entities": entities}) + "\n")
    [sample] = read_ner(path, NER)
    assert sample.tokens == ["Obama", "'s", "visit", "to", "São", "Paulo", ",", "Brazil", "."]
    assert sample.tags == ["B-PER", "O", "O", "O", "B-LOC", "I-LOC", "O", "B-LOC", "O"]
    assert sample.text == " ".join(sample.tokens)


@pytest.mark.parametrize(
    ("entities", "expected"),
    [
        ([{"start": 0, "end": 3, "type": "PER"}], "entity 'Oba' at [0, 3) does not align"),
        ([{"start": 0, "end": 5, "type": "PER"}, {"start": 0, "end": 13, "type": "PER"}], "overlaps"),
        ([{"start": 0, "end": 5}], "each entity needs 'start', 'end' and 'type'"),
        ([{"start": 0, "end": 5, "type": "GPE"}], "entity type 'GPE' is not one of"),
    ],
)
def test_jsonl_span_errors(tmp_path: Path, entities: list[dict[str, object]], expected: str) -> None:
    lines = [json.dumps({"text": "fine", "entities": []}), json.dumps({"text": "Obama visited", "entities": entities})]
    path = write(tmp_path / "gen.jsonl", "\n".join(lines))
    message = error_of(read_ner, path, NER)
    assert message.startswith(f"{path}:2: ")
    assert expected in message


@needs_shared
def test_real_conll2003_valid() -> None:
    samples = read_samples(SHARED / "conll2003" / "valid.txt", NER)
    assert len(samples) == 3250
    assert samples[0].tokens is not None and samples[0].tokens[:3] == ["CRICKET", "-", "LEICESTERSHIRE"]
    assert samples[0].tags is not None and samples[0].tags[:3] == ["O", "O", "B-ORG"]
    assert samples[2].tags is not None and samples[2].tags[:5] == ["B-MISC", "I-MISC", "O", "B-PER", "I-PER"]
    assert all(s.text == " ".join(s.tokens or []) for s in samples)


@needs_shared
def test_real_conll04_json() -> None:
    types = json.loads((SHARED / "conll04" / "conll04_types.json").read_text())["entities"]
    task = TaskConfig(type="ner", labels=sorted(types))
    samples = read_ner(SHARED / "conll04" / "conll04_dev.json", task)
    assert len(samples) == 231
    assert samples[0].tags == ["B-Peop", "I-Peop", "I-Peop", "O", "O", "O", "B-Peop", "I-Peop"] + ["O"] * 5
    # Every sentence is valid BIO: no I- follows anything but its own type.
    for sample in samples:
        tags = sample.tags or []
        assert normalise_bio(tags) == tags


# --- tag schemes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "bio"),
    [
        (["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC"], ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]),
        (["I-PER", "I-ORG"], ["B-PER", "B-ORG"]),
        (["B-PER", "E-PER", "S-LOC", "S-LOC", "B-ORG", "I-ORG", "E-ORG"],
         ["B-PER", "I-PER", "B-LOC", "B-LOC", "B-ORG", "I-ORG", "I-ORG"]),
        (["U-Peop", "B-Loc", "I-Loc", "L-Loc", "U-Loc", "O"], ["B-Peop", "B-Loc", "I-Loc", "I-Loc", "B-Loc", "O"]),
        # After an entity closes (E-, L-, S-, U-), a continuation tag starts a new one.
        (["U-PER", "I-PER", "L-PER"], ["B-PER", "B-PER", "I-PER"]),
        (["B-A-B", "I-A-B"], ["B-A-B", "I-A-B"]),
        ([], []),
    ],
)
def test_normalise_bio(tags: list[str], bio: list[str]) -> None:
    assert normalise_bio(tags) == bio
    assert normalise_bio(bio) == bio


@pytest.mark.parametrize("tag", ["PER", "X-PER", "B-", "o", ""])
def test_normalise_bio_rejects_malformed_tags(tag: str) -> None:
    with pytest.raises(ValueError, match="is not 'O'"):
        normalise_bio(["O", tag])


# --- tokenisation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("The U.S. economy grew 3.5% in 1996.", ["The", "U.S.", "economy", "grew", "3.5", "%", "in", "1996", "."]),
        ("I don't know, O'Brien's all-rounder!", ["I", "don't", "know", ",", "O'Brien", "'s", "all-rounder", "!"]),
        ("Wait... (really?) \"yes\"", ["Wait", "...", "(", "really", "?", ")", '"', "yes", '"']),
        ("1,000.50 $ on 1996-08-30, e.g. COVID-19", ["1,000.50", "$", "on", "1996-08-30", ",", "e.g.", "COVID-19"]),
        ("the Smiths' house", ["the", "Smiths", "'", "house"]),
        ("Zoë in São Paulo — naïve", ["Zoë", "in", "São", "Paulo", "—", "naïve"]),
        ("cafe\u0301 au lait", ["cafe\u0301", "au", "lait"]),  # decomposed accent stays in its word
        ("हिन्दी भाषा", ["हिन्दी", "भाषा"]),
        ("我爱北京。", ["我爱北京", "。"]),
        ("ok ☕️ fine", ["ok", "☕️", "fine"]),  # the emoji keeps its variation selector
        ("  \t\n ", []),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_token_offsets_point_at_the_tokens() -> None:
    text = "  Mr. Müller's  café, in\tNew-York."
    offsets = token_offsets(text)
    assert [text[start:end] for start, end in offsets] == tokenize(text)
    assert offsets[:3] == [(2, 4), (4, 5), (6, 12)]


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=60))
def test_tokens_cover_every_non_space_character(text: str) -> None:
    offsets = token_offsets(text)
    tokens = tokenize(text)
    assert [text[start:end] for start, end in offsets] == tokens
    assert all(start < end for start, end in offsets)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(offsets))
    assert not any(re.search(r"\s", token) for token in tokens)
    assert "".join(tokens) == re.sub(r"\s", "", text)


# --- sampling ------------------------------------------------------------------------------------


def labelled(n_per_label: dict[str, int]) -> list[Sample]:
    return [Sample(text=f"{label} {i}", label=label) for label, n in n_per_label.items() for i in range(n)]


def test_k_shot_classification() -> None:
    samples = labelled({"negative": 10, "positive": 3})
    shots = sample_k_shot(samples, SENTIMENT, k=4, seed=1)
    assert [s.label for s in shots].count("negative") == 4
    assert [s.label for s in shots].count("positive") == 3  # fewer available: all of them
    assert shots == sample_k_shot(samples, SENTIMENT, k=4, seed=1)
    assert [samples.index(s) for s in shots] == sorted(samples.index(s) for s in shots)
    draws = {tuple(s.text for s in sample_k_shot(samples, SENTIMENT, k=4, seed=seed)) for seed in range(5)}
    assert len(draws) > 1
    assert sample_k_shot(samples, SENTIMENT, k=0, seed=1) == samples


def ner_sample(*tags: str) -> Sample:
    tokens = [f"w{i}" for i in range(len(tags))]
    return Sample(text=" ".join(tokens), tokens=tokens, tags=list(tags))


def test_k_shot_ner_covers_each_type_without_duplicates() -> None:
    samples = [
        ner_sample("B-PER", "O", "B-LOC"), ner_sample("B-PER"), ner_sample("B-ORG", "I-ORG"), ner_sample("O"),
        ner_sample("B-LOC"), ner_sample("B-ORG"), ner_sample("B-MISC", "B-PER"), ner_sample("O", "B-LOC"),
    ]
    for seed in range(10):
        shots = sample_k_shot(samples, NER, k=2, seed=seed)
        assert shots == sample_k_shot(samples, NER, k=2, seed=seed)
        assert len({id(s) for s in shots}) == len(shots)
        for entity_type in NER.labels:
            available = sum(entity_type in entity_types(s) for s in samples)
            assert sum(entity_type in entity_types(s) for s in shots) >= min(2, available)
        assert all(entity_types(s) for s in shots)  # sentences without entities are never picked


def test_cap() -> None:
    samples = labelled({"negative": 20})
    assert cap(samples, None, seed=3) == samples
    assert cap(samples, 50, seed=3) == samples
    capped = cap(samples, 5, seed=3)
    assert len(capped) == 5
    assert capped == cap(samples, 5, seed=3)
    assert [samples.index(s) for s in capped] == sorted(samples.index(s) for s in capped)
