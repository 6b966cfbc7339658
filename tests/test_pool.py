"""The unlabelled pool: its streamed readers, the on-disk index, dev/test overlap and the cache."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import numpy as np
import pytest

from evokd.config import TaskConfig
from evokd.student.data import DataError, iter_unlabeled
from evokd.student.pool import open_pool, trim_cache

SENTIMENT = TaskConfig(labels=["negative", "positive"])
NER = TaskConfig(type="ner", labels=["PER", "ORG", "LOC", "MISC"])


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, task: TaskConfig = SENTIMENT) -> str:
    with pytest.raises(DataError) as info:
        list(iter_unlabeled(path, task))
    return str(info.value)


# --- readers ----------------------------------------------------------------------------------


def test_each_format_streams_its_texts_with_their_lines(tmp_path: Path) -> None:
    txt = write(tmp_path / "pool.txt", "\ufeffFirst text.\n\n  Second one  \n")
    assert list(iter_unlabeled(txt, SENTIMENT)) == [(1, "First text."), (3, "Second one")]
    csv = write(tmp_path / "pool.csv", 'id,text,label\n1,"a, quoted\ntext",0\n2,plain,1\n,,\n3,last,\n')
    assert list(iter_unlabeled(csv, SENTIMENT)) == [(2, "a, quoted\ntext"), (4, "plain"), (6, "last")]
    tsv = write(tmp_path / "pool.tsv", 'sentence\tlabel\n"quoted start\t1\n')
    task = TaskConfig(labels=["negative", "positive"], text_column="sentence")
    assert list(iter_unlabeled(tsv, task)) == [(2, '"quoted start')]
    jsonl = write(tmp_path / "pool.jsonl", '{"text": "one"}\n\n{"text": "two", "label": "x"}\n')
    assert list(iter_unlabeled(jsonl, SENTIMENT)) == [(1, "one"), (3, "two")]


def test_ner_pools_give_word_tokens(tmp_path: Path) -> None:
    conll = write(tmp_path / "train.txt", "-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\n")
    assert list(iter_unlabeled(conll, NER)) == [(3, ["EU", "rejects"]), (6, ["Peter"])]
    tokens_only = write(tmp_path / "tokens.conll", "EU\nrejects\n\nPeter\nBlackburn\n")
    assert [t for _, t in iter_unlabeled(tokens_only, NER)] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    sentences = write(tmp_path / "sentences.txt", "Peter Blackburn went to Paris.\nThe EU said so.\n")
    assert list(iter_unlabeled(sentences, NER)) == [
        (1, ["Peter", "Blackburn", "went", "to", "Paris", "."]), (2, ["The", "EU", "said", "so", "."])]
    jsonl = write(tmp_path / "pool.jsonl", '{"tokens": ["A", "B"]}\n{"text": "U.S. talks"}\n')
    assert [t for _, t in iter_unlabeled(jsonl, NER)] == [["A", "B"], ["U.S.", "talks"]]


def test_a_malformed_pool_file_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    bad_json = write(tmp_path / "p.jsonl", '{"text": "ok"}\n{"text": "ok"}\n{"text": oops}\n')
    assert error_of(bad_json) == f"{bad_json}:3: invalid JSON: Expecting value"
    not_object = write(tmp_path / "q.jsonl", '{"text": "ok"}\n["a list"]\n')
    assert error_of(not_object) == f"{not_object}:2: expected a JSON object"
    assert error_of(write(tmp_path / "r.jsonl", '{"body": "ok"}\n')).endswith("r.jsonl:1: missing column 'text'")
    no_column = write(tmp_path / "p.csv", "body,label\nfine,1\n")
    assert error_of(no_column) == f"{no_column}:1: no column 'text' (columns: body, label)"
    empty = write(tmp_path / "e.csv", "text,label\nfine,1\n  ,1\n")
    assert error_of(empty) == f"{empty}:3: empty text in column 'text'"
    bytes_ = write(tmp_path / "p.txt", b"fine\n\xff\xfe broken\n")
    assert error_of(bytes_).startswith(f"{bytes_}:2: not UTF-8 text")
    conll = write(tmp_path / "p.conll", "EU NNP B-ORG\nrejects VBZ O\n\nPeter B-PER\n")
    assert error_of(conll, NER) == (f"{conll}:4: expected 3 fields (token ... tag) as on line 1, got 2: "
                                    "'Peter B-PER'")
    assert "use JSONL" in error_of(write(tmp_path / "p.json", "[]"))
    assert error_of(tmp_path / "missing.txt") == f"{tmp_path / 'missing.txt'}: file not found"


# --- the index --------------------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EVOKD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "pools"


def test_texts_in_dev_or_test_and_repeats_are_dropped(tmp_path: Path, cache: Path) -> None:
    pool = write(tmp_path / "pool.txt", "A fine film.\nIn the DEV set!\ntotally new\na fine film\n???\nin test\n")
    index = open_pool(pool, SENTIMENT)
    usable = index.usable(["in the dev set", "In test."])
    assert usable.rows.tolist() == [0, 2]
    assert (usable.in_eval, usable.repeated, usable.empty) == (2, 1, 1)
    assert index.entries(usable.rows) == ["A fine film.", "totally new"]
    assert index.where(5) == f"{pool.resolve()}:6"
    assert "dropped 2 that occur in dev or test" in usable.describe()
    index.close()


def test_rows_are_read_back_by_seeking(tmp_path: Path, cache: Path) -> None:
    lines = [f"text number {i} é" for i in range(1000)]
    index = open_pool(write(tmp_path / "pool.txt", "\n".join(lines) + "\n"), SENTIMENT)
    assert index.entries([999, 0, 500, 0]) == [lines[999], lines[0], lines[500], lines[0]]
    assert [len(batch) for _, batch in index.chunks(990, 4)] == [4, 4, 2]
    index.close()


class CountingEncoder:
    """Embeds a text as (length, vowels, 1), recording every batch it is given."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.batches: list[int] = []
        self.fail_after = fail_after

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.fail_after is not None and len(self.batches) == self.fail_after:
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-encoding
        self.batches.append(len(texts))
        return np.array([[len(t), sum(c in "aeiou" for c in t), 1.0] for t in texts])


def test_vectors_are_computed_once_in_bounded_batches_and_resume(tmp_path: Path, cache: Path) -> None:
    lines = [f"review {i} " + "a" * (i % 7) + "." for i in range(250)]
    pool = write(tmp_path / "pool.txt", "\n".join(lines) + "\n")
    index = open_pool(pool, SENTIMENT)
    interrupted = CountingEncoder(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        index.embeddings("m1", interrupted, batch=64)
    assert interrupted.batches == [64, 64]
    seen: list[tuple[int, int]] = []
    resumed = CountingEncoder()
    vectors = index.embeddings("m1", resumed, batch=64, progress=lambda done, total: seen.append((done, total)))
    # The two finished batches are not encoded again; no batch exceeds 64 texts.
    assert resumed.batches == [64, 58] and seen == [(128, 250), (192, 250), (250, 250)]
    assert vectors.dtype == np.float16 and vectors.shape == (250, 3)
    assert vectors[:, 0].tolist() == [float(len(t)) for t in lines]
    index.close()

    again = open_pool(pool, SENTIMENT)  # another run: the same folder, nothing scanned or encoded
    assert again.folder == index.folder
    untouched = CountingEncoder()
    assert np.array_equal(again.embeddings("m1", untouched, batch=64), vectors) and not untouched.batches
    other = CountingEncoder()
    again.embeddings("m2", other, batch=100)  # another model: its own vectors
    assert other.batches == [100, 100, 50]
    again.close()


def test_a_changed_file_is_indexed_again(tmp_path: Path, cache: Path) -> None:
    pool = write(tmp_path / "pool.txt", "one\ntwo\n")
    first = open_pool(pool, SENTIMENT)
    write(pool, "one\ntwo\nthree\n")
    second = open_pool(pool, SENTIMENT)
    assert second.folder != first.folder and len(second) == 3
    # The same file read for another task is another index too (NER keeps word lists; one word a
    # line reads as CoNLL).
    assert open_pool(pool, NER).entries([0]) == [["one", "two", "three"]]


def test_the_cache_drops_the_least_recently_used_pools_but_not_one_in_use(tmp_path: Path, cache: Path) -> None:
    indexes = []
    for i in range(4):
        index = open_pool(write(tmp_path / f"p{i}.txt", f"pool {i}\n" * 50), SENTIMENT)
        index.embeddings("m", CountingEncoder(), batch=16)
        indexes.append(index)
        os.utime(index.folder / "meta.json", (1000 + i, 1000 + i))  # p0 is the oldest
    sizes = [sum(f.stat().st_size for f in ix.folder.iterdir()) for ix in indexes]
    for ix in indexes[1:]:
        ix.close()
    # p0 is still open (a run reads it), so p1 and p2 go; p3 is the newest.
    removed = trim_cache(cache, max_bytes=sizes[0] + sizes[3])
    assert removed == [indexes[1].folder, indexes[2].folder]
    assert indexes[0].folder.is_dir() and indexes[3].folder.is_dir()
    indexes[0].close()
    with (indexes[0].folder.parent / f"{indexes[0].folder.name}.lock").open("ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it once closed
    # Opening a pool trims to the configured cap, keeping the one just opened.
    os.environ["EVOKD_POOL_CACHE_MB"] = str(sizes[0] / 2**20 / 2)
    try:
        kept = open_pool(tmp_path / "p0.txt", SENTIMENT)
    finally:
        del os.environ["EVOKD_POOL_CACHE_MB"]
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [kept.folder.name]
    kept.close()


def test_the_demo_pool_reads_and_shares_nothing_with_the_demo_dev_and_test() -> None:
    demo = Path(__file__).resolve().parents[1] / "examples" / "sentiment" / "data"
    from evokd.core.text import normalise
    from evokd.student.data import read_classification

    texts = [t for _, t in iter_unlabeled(demo / "unlabeled.txt", SENTIMENT)]
    assert len(texts) >= 200 and len({normalise(str(t)) for t in texts}) == len(texts)
    held_out = {normalise(s.text) for name in ("dev.csv", "test.csv", "seed.csv")
                for s in read_classification(demo / name, SENTIMENT)}
    assert not held_out & {normalise(str(t)) for t in texts}
    assert json.dumps(texts)  # plain strings


def test_a_hub_split_is_a_pool_too(tmp_path: Path, cache: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from evokd.config import HubConfig
    from evokd.student.hub import hub_pool_source

    rows = {"text": ["Loved it.", "  ", "Hated it.", "Loved it!"], "label": [1, 0, 0, 1]}
    datasets.DatasetDict({"unsupervised": datasets.Dataset.from_dict(rows)}).save_to_disk(tmp_path / "ds")
    hub = HubConfig(path=str(tmp_path / "ds"), unlabeled_split="unsupervised")
    index = open_pool(hub_pool_source(hub, SENTIMENT), SENTIMENT)
    assert index.entries(range(len(index))) == ["Loved it.", "Hated it.", "Loved it!"]
    assert index.where(1) == f"{tmp_path / 'ds'}[unsupervised] row 2"
    assert index.usable([], known=["hated it"]).rows.tolist() == [0]  # a repeat, and a seed text
    assert open_pool(hub_pool_source(hub, SENTIMENT), SENTIMENT).folder == index.folder
    with pytest.raises(DataError, match=r"no split 'train' \(it has unsupervised\)"):
        hub_pool_source(HubConfig(path=str(tmp_path / "ds"), unlabeled_split="train"), SENTIMENT)


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not available")
def test_the_benchmarks_training_files_read_as_pools() -> None:
    """What `evokd bench ... --data` gives the pool methods: every training text, labels unread."""
    sst2 = TaskConfig(labels=["negative", "positive"], text_column="sentence")
    assert sum(1 for _ in iter_unlabeled(SHARED / "sst2" / "train.tsv", sst2)) == 60614
    assert sum(1 for _ in iter_unlabeled(SHARED / "imdb" / "train.csv", SENTIMENT)) == 25000
    sentences = list(iter_unlabeled(SHARED / "conll2003" / "train.txt", NER))
    assert len(sentences) == 14041 and sentences[0] == (1, ["EU", "rejects", "German", "call", "to", "boycott",
                                                            "British", "lamb", "."])
