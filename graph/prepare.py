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
    PromptError with a one-line message (MissingExtra when [tracking] needs mlflow and it is absent)."""
    if cfg.tracking.mlflow_uri:
        from evokd.tracking import require_mlflow

        require_mlflow()
    data = load_task_data(cfg)
    prompts = PromptSet(cfg.task.type, cfg.prompts_dir, method=cfg.loop.method,
                        separate_verifier=cfg.loop.separate_verifier)
    return Prepared(cfg=cfg, data=data, prompts=prompts)


def gold_pool(cfg: RunConfig) -> list[Sample]:
    """Every gold sample the seed set is drawn from (the `full` baseline trains on them)."""
    if cfg.data.uses_hub:
        assert cfg.data.hf is not None
        from evokd.student.hub import read_hub

        return read_hub(cfg.data.hf, cfg.task)[0]
    assert cfg.data.seed is not None
    return read_samples(cfg.data.seed, cfg.task)


def load_task_data(cfg: RunConfig) -> TaskData:
    if cfg.data.uses_hub:
        assert cfg.data.hf is not None
        from evokd.student.hub import read_hub

        pool, dev_rows, test_rows = read_hub(cfg.data.hf, cfg.task)
        where = f"data.hf {cfg.data.hf.path!r}"
    else:
        assert cfg.data.seed is not None and cfg.data.dev is not None  # the config validator ensures it
        pool = read_samples(cfg.data.seed, cfg.task)
        dev_rows = read_samples(cfg.data.dev, cfg.task)
        test_rows = read_samples(cfg.data.test, cfg.task) if cfg.data.test else []
        where = str(cfg.data.seed)
    seed = sample_k_shot(pool, cfg.task, cfg.sampling.k_per_class, cfg.sampling.seed)
    dev = cap(dev_rows, cfg.data.dev_limit, cfg.sampling.seed)
    test = cap(test_rows, cfg.data.test_limit, cfg.sampling.seed)
    if not seed:
        raise DataError(f"{where}: no seed samples")
    if not dev:
        raise DataError(f"{cfg.data.dev or where}: no dev samples (evokd never evaluates on training data)")
    return TaskData(seed=seed, dev=dev, test=test)
