"""Datasets through Hugging Face `datasets` (`pip install "evokd[hf]"`): a hub name, a folder
written by `save_to_disk`, or local CSV/JSON/Parquet files through the same `load_dataset` builders.

`datasets` downloads once and caches in ~/.cache/huggingface/datasets (HF_DATASETS_OFFLINE=1 uses
only the cache); the rows become the same `Sample`s the file readers return.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evokd.config import HubConfig, TaskConfig
from evokd.core.extras import require
from evokd.core.records import Sample
from evokd.student.data import DataError, _classification_sample, _ner_record
from evokd.student.pool import Entry, PoolSource


def load_splits(hub: HubConfig) -> Any:
    """The DatasetDict (or the dataset folder) that `hub` names."""
    datasets = require("datasets", "data.hf (Hugging Face datasets)", "hf")
    where = f"data.hf {hub.path!r}"
    try:
        if Path(hub.path).is_dir() and not hub.data_files:
            loaded = datasets.load_from_disk(hub.path)
        else:
            loaded = datasets.load_dataset(hub.path, hub.name, revision=hub.revision,
                                           data_files=dict(hub.data_files) or None)
    except Exception as exc:  # datasets raises many types (connection, missing config, bad files)
        raise DataError(f"{where}: cannot load: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                        ) from exc
    if isinstance(loaded, datasets.Dataset):  # a single split saved to disk
        loaded = datasets.DatasetDict({hub.seed_split: loaded})
    return loaded


def _names(feature: Any) -> list[str] | None:
    """ClassLabel names of a feature, or of a sequence's items."""
    inner = getattr(feature, "feature", None)
    if inner is not None and hasattr(inner, "names"):
        return list(inner.names)
    if isinstance(feature, list) and feature and hasattr(feature[0], "names"):
        return list(feature[0].names)
    return list(feature.names) if hasattr(feature, "names") else None


def read_split(splits: Any, split: str, hub: HubConfig, task: TaskConfig) -> list[Sample]:
    """One split's rows as Samples; errors name the dataset, split and row."""
    if split not in splits:
        raise DataError(f"data.hf {hub.path!r}: no split {split!r} (it has {', '.join(splits)})")
    ds = splits[split]
    where = f"{hub.path}[{split}]"
    if task.type == "ner":
        spans = hub.tags_column not in ds.column_names and hub.entities_column in ds.column_names
        for column in (hub.tokens_column, hub.entities_column if spans else hub.tags_column):
            if column not in ds.column_names:
                raise DataError(f"{where}: no column {column!r} (it has {', '.join(ds.column_names)})")
        names = None if spans else _names(ds.features[hub.tags_column])
        out = []
        for i, row in enumerate(ds):
            if not row[hub.tokens_column]:
                continue  # an empty sentence (document separators in some copies)
            record: dict[str, Any] = {"tokens": list(row[hub.tokens_column])}
            if spans:
                record["entities"] = [dict(e) for e in row[hub.entities_column]]
            else:
                record["tags"] = [names[t] if names and isinstance(t, int) else str(t) for t in row[hub.tags_column]]
            out.append(_ner_record(record, task, f"{where} row {i}"))
        return out
    names = _names(ds.features[task.label_column]) if task.label_column in ds.column_names else None
    out = []
    for i, row in enumerate(ds):
        raw = row.get(task.label_column)
        if names and isinstance(raw, int) and str(raw) not in task.label_map and 0 <= raw < len(names):
            raw = names[raw]  # a ClassLabel id: by its number through label_map, else by its name
        out.append(_classification_sample({**row, task.label_column: raw}, task, f"{where} row {i}"))
    return out


def read_hub(hub: HubConfig, task: TaskConfig) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(seed pool, dev, test) from the configured splits; test is empty when no test split is set."""
    splits = load_splits(hub)
    seed = read_split(splits, hub.seed_split, hub, task)
    dev = read_split(splits, hub.dev_split, hub, task)
    test = read_split(splits, hub.test_split, hub, task) if hub.test_split else []
    return seed, dev, test


def hub_pool_source(hub: HubConfig, task: TaskConfig) -> PoolSource:
    """The split `hub.unlabeled_split` as a pool: its texts (NER: its token lists) streamed row by
    row from the dataset's memory-mapped Arrow files, labels never read."""
    assert hub.unlabeled_split
    splits = load_splits(hub)
    split = hub.unlabeled_split
    if split not in splits:
        raise DataError(f"data.hf {hub.path!r}: no split {split!r} (it has {', '.join(splits)})")
    ds = splits[split]
    where = f"{hub.path}[{split}]"
    column = hub.tokens_column if task.type == "ner" else task.text_column
    if column not in ds.column_names:
        raise DataError(f"{where}: no column {column!r} (it has {', '.join(ds.column_names)})")
    # The fingerprint names the dataset's content as `datasets` cached it (private, but stable
    # across its versions); the cache files' names and sizes stand in where there is none.
    fingerprint = getattr(ds, "_fingerprint", None) or ";".join(
        f"{f['filename']}:{Path(f['filename']).stat().st_size}" for f in ds.cache_files)

    def rows() -> Iterator[tuple[int, Entry]]:
        for i, value in enumerate(ds.select_columns([column])):
            text = value[column]
            if task.type == "ner":
                if text:  # an empty sentence (document separators in some copies)
                    yield i, [str(t) for t in text]
            elif isinstance(text, str) and text.strip():
                yield i, text.strip()

    return PoolSource(name=where, identity={"dataset": str(fingerprint), "split": split}, rows=rows, unit="row")
