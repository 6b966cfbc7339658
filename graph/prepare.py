"""Everything checked before a run folder exists: the method and its config rules, the data, the
prompts.

`prepare` is the one pre-flight: the CLI calls it before creating a run folder (so a bad input
writes nothing), and `execute` calls it when it was not done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from evokd.agents.prompts import PromptSet
from evokd.config import LoopConfig, RunConfig
from evokd.core.records import Sample
from evokd.graph.context import TaskData
from evokd.graph.method import Method
from evokd.graph.methods import METHODS
from evokd.student.data import DataError, cap, read_samples, sample_k_shot, split_off
from evokd.student.hub import read_hub
from evokd.tracking import require_mlflow


@dataclass
class Prepared:
    cfg: RunConfig
    data: TaskData
    prompts: PromptSet
    method: Method
    method_data: Any = None  # what the method's own `prepare` loaded


def prepare(cfg: RunConfig) -> Prepared:
    """Check the method against the config, load the task data and check every prompt template the
    run will use; raises ConfigError, DataError or PromptError with a one-line message (MissingExtra
    when [tracking] needs mlflow and it is absent)."""
    if cfg.tracking.mlflow_uri:
        require_mlflow()
    method = method_of(cfg)
    data = load_task_data(cfg)
    prompts = PromptSet(cfg.task.type, cfg.prompts_dir, needed=method.prompts(cfg),
                        needed_by=f'loop.method = "{method.name}"')
    method_data = method.prepare(cfg, data) if method.prepare is not None else None
    return Prepared(cfg=cfg, data=data, prompts=prompts, method=method, method_data=method_data)


def method_of(cfg: RunConfig) -> Method:
    """The config's method, once the config passes its rules; else a ConfigError at the line of the
    setting (an unknown name lists the known ones)."""
    method = METHODS.get(cfg.loop.method)
    if method is None:
        raise cfg.error_at("loop.method", f"unknown method {cfg.loop.method!r}; one of {', '.join(METHODS)}")
    if cfg.task.type not in method.tasks:
        supported = " or ".join(f'"{t}"' for t in method.tasks)
        raise cfg.error_at("loop.method", f'loop.method = "{method.name}" supports task.type = {supported} only')
    for other in METHODS.values():
        for key in other.owns if other is not method else ():
            value = getattr(cfg.loop, key)
            if value != LoopConfig.model_fields[key].default:
                raise cfg.error_at(f"loop.{key}", f'loop.{key} = {json.dumps(value)} applies to loop.method = '
                                                  f'"{other.name}" only')
    if method.check is not None and (problem := method.check(cfg)) is not None:
        raise cfg.error_at(*problem)
    if (cfg.data.feedback is not None or cfg.data.feedback_share) and not method.reads_feedback:
        key = "data.feedback" if cfg.data.feedback is not None else "data.feedback_share"
        readers = " or ".join(f'"{m.name}"' for m in METHODS.values() if m.reads_feedback)
        raise cfg.error_at(key, f"{key} is read by loop.method = {readers} only")
    return method


def gold_pool(cfg: RunConfig) -> list[Sample]:
    """Every gold sample the seed set is drawn from (the `full` baseline trains on them)."""
    if cfg.data.uses_hub:
        assert cfg.data.hf is not None
        return read_hub(cfg.data.hf, cfg.task)[0]
    assert cfg.data.seed is not None
    return read_samples(cfg.data.seed, cfg.task)


def load_task_data(cfg: RunConfig) -> TaskData:
    if cfg.data.uses_hub:
        assert cfg.data.hf is not None
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
    feedback: list[Sample] = []
    if cfg.data.feedback is not None:
        feedback = read_samples(cfg.data.feedback, cfg.task)
        if not feedback:
            raise DataError(f"{cfg.data.feedback}: no feedback samples")
    elif cfg.data.feedback_share:
        dev, feedback = split_off(dev, cfg.data.feedback_share, cfg.sampling.seed)
        if not feedback or not dev:
            raise DataError(f"data.feedback_share = {cfg.data.feedback_share} of {len(dev) + len(feedback)} dev "
                            f"samples leaves {len(feedback)} to show and {len(dev)} to score: both need some")
    if not seed:
        raise DataError(f"{where}: no seed samples")
    if not dev:
        raise DataError(f"{cfg.data.dev or where}: no dev samples (evokd never evaluates on training data)")
    return TaskData(seed=seed, dev=dev, test=test, feedback=feedback)
