"""The derived benchmark datasets: SST-2's sentences without their parse-tree phrases."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from evokd.bench import harness
from evokd.bench.derived import sst2_sentences, whole_sentences

TRAIN = ["a charming and often affecting journey .", "charming", "often affecting", "kids , spirit",
         "the kids , spirit and all , win us over .", "a dull , lifeless film"]
DEV = ["a dull , lifeless film with no charm", "lifeless", "affecting journey"]


def _write(folder: Path, name: str, texts: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.tsv").write_text("sentence\tlabel\n" + "".join(f"{t} \t1\n" for t in texts), encoding="utf-8")


def test_whole_sentences_drops_the_phrases_a_longer_row_holds() -> None:
    kept = whole_sentences([*TRAIN, *DEV])
    assert kept == {"a charming and often affecting journey .", "the kids , spirit and all , win us over .",
                    "a dull , lifeless film with no charm"}
    assert whole_sentences(["good", "goodness"]) == {"good", "goodness"}  # word-aligned, not substrings


def test_sst2_sentences_writes_the_derived_files_and_the_benchmark_reads_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "sst2"
    _write(source, "train", TRAIN)
    _write(source, "dev", DEV)
    _write(source, "test", ["kids , spirit", "a fine film ."])
    out = sst2_sentences(source, tmp_path / "derived")
    train = (out / "train.tsv").read_text(encoding="utf-8").splitlines()
    # A dev sentence's phrase in train ("a dull , lifeless film") goes too: judged across both files.
    assert train == ["sentence\tlabel", "a charming and often affecting journey . \t1",
                     "the kids , spirit and all , win us over . \t1"]
    dev = (out / "dev.tsv").read_text(encoding="utf-8").splitlines()
    assert dev[1:] == ["a dull , lifeless film with no charm \t1"]
    assert (out / "test.tsv").read_text(encoding="utf-8") == (source / "test.tsv").read_text(encoding="utf-8")
    stamp = (out / "train.tsv").stat().st_mtime_ns
    sst2_sentences(source, tmp_path / "derived")
    assert (out / "train.tsv").stat().st_mtime_ns == stamp  # unchanged files are not rewritten

    base = harness.base_overrides("sst2-sentences", "quick", source, tmp_path / "runs")
    derived = (tmp_path / "runs" / "data").resolve()
    assert f'data.seed="{derived / "train.tsv"}"' in base and f'data.dev="{derived / "dev.tsv"}"' in base
    assert f'data.unlabeled="{derived / "train.tsv"}"' in base
    assert (derived / "train.tsv").read_text(encoding="utf-8") == "\n".join(train) + "\n"
    # Without files (a user's machine, no --data) there is no hub route to the sentences: an error,
    # not a silent benchmark on every phrase.
    spec = harness.DATASETS["sst2-sentences"]
    monkeypatch.setitem(harness.DATASETS, "sst2-sentences", replace(spec, data_dir=None))
    with pytest.raises(harness.BenchError, match=r"--data DIR with dev\.tsv test\.tsv train\.tsv"):
        harness.base_overrides("sst2-sentences", "quick", None, tmp_path / "runs")
    with pytest.raises(harness.BenchError, match=r"cannot derive .* No such file"):  # a folder without the files
        harness.base_overrides("sst2-sentences", "quick", tmp_path / "empty", tmp_path / "runs")


def test_a_malformed_row_is_named_not_a_traceback(tmp_path: Path) -> None:
    source = tmp_path / "sst2"
    for name in ("train", "dev", "test"):
        _write(source, name, TRAIN)
    with (source / "dev.tsv").open("a", encoding="utf-8") as f:
        f.write("a row without its label\n")
    with pytest.raises(ValueError, match=r"dev\.tsv, row 8: 1 tab-separated fields, expected 2"):
        sst2_sentences(source, tmp_path / "out")
