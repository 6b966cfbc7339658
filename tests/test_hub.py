"""[data.hf]: datasets through Hugging Face `datasets`, tested on local files through the same
`load_dataset` / `load_from_disk` path a hub name takes (these machines cannot reach the hub)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT

from evokd.config import load_config
from evokd.graph.prepare import load_task_data
from evokd.student.data import DataError, read_samples

datasets = pytest.importorskip("datasets")
DEMO = ROOT / "examples" / "sentiment" / "data"
NER_DEMO = ROOT / "examples" / "ner_demo" / "data"


def config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "task.toml"
    path.write_text(body)
    return path


def test_classification_through_load_dataset_json(tmp_path: Path) -> None:
    # The demo's rows as JSON lines read by `load_dataset("json", data_files=...)`; labels as ids.
    task = load_config(ROOT / "examples/sentiment/config.toml").task
    for split, name in (("train", "seed"), ("validation", "dev"), ("test", "test")):
        with (tmp_path / f"{split}.jsonl").open("w") as out:
            for row in read_samples(DEMO / f"{name}.csv", task):
                out.write(json.dumps({"review": row.text, "stars": 0 if row.label == "negative" else 1}) + "\n")
    cfg = load_config(config(tmp_path, """
[task]
labels = ["negative", "positive"]
text_column = "review"
label_column = "stars"
label_map = { "0" = "negative", "1" = "positive" }
[data.hf]
path = "json"
data_files = { train = "train.jsonl", validation = "validation.jsonl", test = "test.jsonl" }
[sampling]
k_per_class = 0
"""))
    assert cfg.data.uses_hub and Path(cfg.data.hf.data_files["train"]).is_absolute()
    data = load_task_data(cfg)
    files = load_config(ROOT / "examples/sentiment/config.toml", ["sampling.k_per_class=0"])
    want = load_task_data(files)
    assert data.seed == want.seed and data.dev == want.dev and data.test == want.test


def test_classlabel_names_and_files_taking_precedence(tmp_path: Path) -> None:
    """A saved DatasetDict with a ClassLabel column (names, no label_map), as `save_to_disk` writes
    it; `--set data.seed=...` files win over [data.hf]."""
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    rows = {"text": ["I hated it.", "Loved it!", "Dull.", "Great fun."], "label": [0, 1, 0, 1]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=features),
                          "validation": datasets.Dataset.from_dict(rows, features=features)}
                         ).save_to_disk(str(tmp_path / "saved"))
    body = """
[task]
labels = ["negative", "positive"]
[data.hf]
path = "./saved"
test_split = ""
"""
    data = load_task_data(load_config(config(tmp_path, body)))
    assert [s.label for s in data.dev] == ["negative", "positive", "negative", "positive"] and data.test == []
    files = load_config(config(tmp_path, body), [f'data.seed="{DEMO / "seed.csv"}"', f'data.dev="{DEMO / "dev.csv"}"'])
    assert not files.data.uses_hub and len(load_task_data(files).dev) == 48
    with pytest.raises(DataError, match="no split 'nosuch'"):
        load_task_data(load_config(config(tmp_path, body + 'dev_split = "nosuch"\n')))


def test_ner_tags_as_classlabel_ids_and_entity_spans(tmp_path: Path) -> None:
    """NER from `tokens` + ClassLabel `ner_tags` (the eriktks/conll2003 layout) and from `tokens` +
    token-span `entities` (the DFKI-SLT/conll04 layout); both equal the file reader's samples."""
    ner = load_config(ROOT / "examples" / "ner_demo" / "config.toml")
    splits = {split: read_samples(NER_DEMO / f"{name}.jsonl", ner.task)
              for split, name in (("train", "seed"), ("validation", "dev"), ("test", "test"))}
    tag_names = ["O", *[f"{p}-{t}" for t in ner.task.labels for p in "BI"]]
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=tag_names))})
    datasets.DatasetDict({split: datasets.Dataset.from_dict(
        {"tokens": [s.tokens for s in samples], "ner_tags": [[tag_names.index(t) for t in s.tags] for s in samples]},
        features=features) for split, samples in splits.items()}).save_to_disk(str(tmp_path / "conll"))
    head = """
[task]
type = "ner"
labels = ["PER", "ORG", "LOC", "MISC"]
[sampling]
k_per_class = 0
"""
    data = load_task_data(load_config(config(tmp_path, head + '[data.hf]\npath = "./conll"\n')))
    assert data.seed == splits["train"] and data.dev == splits["validation"] and data.test == splits["test"]

    from evokd.core.bio import entities

    for split, samples in splits.items():
        with (tmp_path / f"{split}.json").open("w") as out:
            for s in samples:
                spans = [{"start": start, "end": end, "type": kind} for kind, start, end in entities(s.tags)]
                out.write(json.dumps({"tokens": s.tokens, "entities": spans}) + "\n")
    spans = load_task_data(load_config(config(tmp_path, head + """[data.hf]
path = "json"
data_files = { train = "train.json", validation = "validation.json", test = "test.json" }
""")))
    assert spans.seed == splits["train"] and spans.dev == splits["validation"]


def test_shipped_benchmark_configs_name_hub_datasets() -> None:
    from evokd.bench.harness import CONFIGS

    hub = {p.stem: load_config(p).data.hf.path for p in CONFIGS.glob("*.toml") if load_config(p).data.uses_hub}
    assert hub == {"sst2": "stanfordnlp/sst2", "imdb": "stanfordnlp/imdb", "conll2003": "eriktks/conll2003",
                   "conll04": "DFKI-SLT/conll04"}
    # No config in the repository reads outside it.
    for path in [*ROOT.glob("examples/**/*.toml"), *CONFIGS.glob("*.toml")]:
        assert "shared" not in path.read_text(), path
