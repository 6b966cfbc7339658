"""Everything checked before a run folder exists: the config's data and its prompts.

`prepare` is the one pre-flight: the CLI calls it before creating a run folder (so a bad input
writes nothing), and `execute` calls it when it was not done.
"""

from __future__ import annotations

from dataclasses import dataclass

from evokd.agents.prompts import PromptSet
from evokd.config import RunConfig
from evokd.core.records import Sample
from evokd.graph.context import TaskData
from evokd.student.data import DataError, cap, read_samples, sample_k_shot


@dataclass
class Prepared:
    cfg: RunConfig
    data: TaskData
    prompts: PromptSet


def prepare(cfg: RunConfig) -> Prepared:
    """Load the task data and check every prompt template the run will use; raises DataError or
    PromptError with a one-line message."""
    data = load_task_data(cfg)
    prompts = PromptSet(cfg.task.type, cfg.prompts_dir, method=cfg.loop.method,
                        separate_verifier=cfg.loop.separate_verifier)
    return Prepared(cfg=cfg, data=data, prompts=prompts)


def load_task_data(cfg: RunConfig) -> TaskData:
    if cfg.data.hf_dataset:
        return _load_hf(cfg)
    assert cfg.data.seed is not None and cfg.data.dev is not None  # the config validator ensures it
    pool = read_samples(cfg.data.seed, cfg.task)
    seed = sample_k_shot(pool, cfg.task, cfg.sampling.k_per_class, cfg.sampling.seed)
    dev = cap(read_samples(cfg.data.dev, cfg.task), cfg.data.dev_limit, cfg.sampling.seed)
    test = cap(read_samples(cfg.data.test, cfg.task), cfg.data.test_limit, cfg.sampling.seed) \
        if cfg.data.test else []
    if not seed:
        raise DataError(f"{cfg.data.seed}: no seed samples")
    if not dev:
        raise DataError(f"{cfg.data.dev}: no dev samples (evokd never evaluates on training data)")
    return TaskData(seed=seed, dev=dev, test=test)


def _load_hf(cfg: RunConfig) -> TaskData:
    """A Hugging Face dataset (needs a network and `pip install datasets`)."""
    try:
        import datasets
    except ImportError as exc:
        raise DataError("data.hf_dataset needs the `datasets` package: pip install datasets") from exc
    name, _, subset = cfg.data.hf_dataset.partition("/")
    ds = datasets.load_dataset(name, subset or None)
    task = cfg.task
    names = ds["train"].features[task.label_column].names \
        if hasattr(ds["train"].features[task.label_column], "names") else None

    def rows(split: str) -> list[Sample]:
        out = []
        for row in ds[split]:
            raw = row[task.label_column]
            label = names[raw] if names else str(raw)
            out.append(Sample(text=row[task.text_column], label=task.label_map.get(label, label)))
        return out

    dev_split = "validation" if "validation" in ds else "test"
    return TaskData(
        seed=sample_k_shot(rows("train"), task, cfg.sampling.k_per_class, cfg.sampling.seed),
        dev=cap(rows(dev_split), cfg.data.dev_limit, cfg.sampling.seed),
        test=cap(rows("test"), cfg.data.test_limit, cfg.sampling.seed) if "test" in ds else [],
    )
