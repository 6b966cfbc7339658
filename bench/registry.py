"""What a benchmark is: the named datasets and their configs, the profiles, the methods as config
overrides, and the overrides every run of a benchmark shares (loaded by harness.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evokd.bench.derived import sst2_sentences
from evokd.config import load_config
from evokd.graph.method import Method
from evokd.graph.methods import METHODS as REGISTERED

CONFIGS = Path(__file__).resolve().with_name("configs")  # the shipped benchmark configs
ROOT = Path(__file__).resolve().parents[1]
# A checkout (editable install): results go to docs/benchmarks/ as before and this project's
# machines keep the datasets in ../shared/data/ beside it. Installed: the working directory.
CHECKOUT = (ROOT / "pyproject.toml").is_file() and (ROOT / "docs").is_dir()
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "docs" / "benchmarks" if CHECKOUT else Path("benchmarks")
RUNS = ROOT / "runs" / "bench" if CHECKOUT else Path("runs") / "bench"

def rows(methods: Mapping[str, Method]) -> dict[str, list[str] | None]:
    """The benchmark's rows, each as config overrides (None: no graph run, trained directly with no
    teacher): `no-aug`, each method's own rows (graph/methods/: evokd-paper declares its ablations),
    and `full`."""
    return {"no-aug": None,
            **{row.name: [f"loop.method={json.dumps(method.name)}", *row.overrides]
               for method in methods.values() for row in method.bench},
            "full": None}


METHODS = rows(REGISTERED)
MAIN = ["no-aug", *(row.name for method in REGISTERED.values() for row in method.bench if not row.ablation), "full"]
ABLATIONS = [row.name for method in REGISTERED.values() for row in method.bench if row.ablation]
# The task types each row runs on (its method's); no-aug and full run on any.
TASKS = {row.name: method.tasks for method in REGISTERED.values() for row in method.bench}
PAPER = METHODS["evokd-paper"]  # the paper's loop and Analyst


class BenchError(Exception):
    """A benchmark cannot run as asked; the message is one line for the user."""


@dataclass(frozen=True)
class Settings:
    """One dataset under one profile."""

    max_tokens: int  # teacher tokens (in + out) per generating run
    dev_limit: int | None  # None: keep the example config's value
    test_limit: int | None
    full_samples: int  # gold training samples for the `full` baseline
    full_epochs: int
    max_rounds: int  # a cap high enough for the token budget to be what stops a run
    # Final fits of each run's pool (or gold set), each with its own student seed; a run's score is
    # their mean test F1 (the first is the run's own, the student it ships). run_benchmark sets it.
    fit_seeds: int = 1


@dataclass(frozen=True)
class Profile:
    seeds: int  # default number of seeds
    methods: list[str]  # default methods
    fit_seeds: int = 3  # default final fits per run (Settings.fit_seeds)


PROFILES = {
    # Scored on the whole test file (SST-2 872, CoNLL04 288; IMDB 2,000, CoNLL-2003 1,000) and a dev set
    # of 231 to 1,000 texts, so that a 0.02 difference is not lost in the test set's own noise (issue 25).
    # It was about 20 minutes per dataset on 2 CPU cores with 200-300 texts; the larger sets and each
    # run's final fit add evaluation time (no teacher tokens); `--jobs` runs seeds side by side.
    "quick": Profile(seeds=1, methods=MAIN),
    "full": Profile(seeds=3, methods=[*MAIN, *ABLATIONS]),
}


@dataclass(frozen=True)
class Dataset:
    config: Path  # the config the runs start from
    data_dir: Path | None  # default; run_benchmark(data_dir=...) / --data overrides it; None: the config's data
    files: dict[str, str]  # data.seed / data.dev / data.test (/ data.unlabeled) file names in a data dir
    profiles: dict[str, Settings] = field(default_factory=dict)
    # derive(data dir, folder): writes the files above into the folder from the data dir's own and
    # returns it (bench/derived.py); the runs read the derived files.
    derive: Callable[[Path, Path], Path] | None = None


def _shared(name: str) -> Path | None:
    """../shared/data/NAME beside a checkout, where this project's machines keep the datasets."""
    where = SHARED / name
    return where if CHECKOUT and where.is_dir() else None


DATASETS: dict[str, Dataset] = {
    "sst2": Dataset(CONFIGS / "sst2.toml", _shared("sst2"),
                    {"seed": "train.tsv", "dev": "dev.tsv", "test": "test.tsv", "unlabeled": "train.tsv"},
                    {"quick": Settings(6000, 1000, 872, 1000, 2, 20),  # the whole test file; dev 1,000 of 6,735
                     "full": Settings(40000, 1000, 872, 10000, 3, 60)}),
    # SST-2 as its test file is: whole sentences, no parse-tree phrases, for seed, dev, `full` and the pool.
    "sst2-sentences": Dataset(CONFIGS / "sst2.toml", _shared("sst2"),
                              {"seed": "train.tsv", "dev": "dev.tsv", "test": "test.tsv", "unlabeled": "train.tsv"},
                              {"quick": Settings(6000, 1000, 872, 1000, 2, 20),  # dev: all 678 sentences
                               "full": Settings(40000, 1000, 872, 6000, 3, 60)},
                              derive=sst2_sentences),
    "imdb": Dataset(CONFIGS / "imdb.toml", _shared("imdb"),
                    {"seed": "train.csv", "dev": "train.csv", "test": "test.csv", "unlabeled": "train.csv"},
                    {"quick": Settings(6000, 500, 2000, 500, 2, 20),  # long reviews: 2,000 of 25,000 test texts
                     "full": Settings(40000, 1000, 2000, 5000, 3, 60)}),
    "conll2003": Dataset(CONFIGS / "conll2003.toml", _shared("conll2003"),
                         {"seed": "train.txt", "dev": "valid.txt", "test": "test.txt", "unlabeled": "train.txt"},
                         {"quick": Settings(6000, 1000, 1000, 1000, 3, 20),
                          "full": Settings(40000, 1000, 1000, 14041, 3, 60)}),
    "conll04": Dataset(CONFIGS / "conll04.toml", _shared("conll04"),
                       {"seed": "conll04_train.json", "dev": "conll04_dev.json", "test": "conll04_test.json"},
                       {"quick": Settings(6000, 231, 288, 922, 5, 20),  # whole dev and test files
                        "full": Settings(40000, 231, 288, 922, 10, 60)}),
    # The quick-start demo data (shipped beside its config): a minute-long look at the harness, and its tests.
    "sentiment": Dataset(CONFIGS / "sentiment.toml", None,
                         {"seed": "seed.csv", "dev": "dev.csv", "test": "test.csv", "unlabeled": "unlabeled.txt"},
                         {"quick": Settings(3000, None, None, 6, 10, 10),
                          "full": Settings(10000, None, None, 6, 10, 30)}),
}
# Any other config: the profile's budget unless the config sets loop.max_tokens (or --set does).
CUSTOM = {"quick": Settings(6000, None, None, 1000, 3, 20), "full": Settings(40000, None, None, 10000, 3, 60)}


@dataclass(frozen=True)
class Benchmark:
    """What `run_benchmark` runs: a named benchmark, or a config file."""

    name: str  # names the outputs (<name>-<profile>.json) and the run folders
    spec: Dataset


def resolve(dataset: str | Path, data_dir: Path | None = None) -> Benchmark:
    """A registered name (its shipped config), else a path to a config file."""
    if isinstance(dataset, str) and dataset in DATASETS:
        return Benchmark(dataset, DATASETS[dataset])
    path = Path(dataset)
    if path.suffix != ".toml" or not path.is_file():
        raise BenchError(f"unknown dataset {str(dataset)!r}: give a config file (.toml) or one of "
                         f"{', '.join(DATASETS)}")
    if data_dir is not None:
        raise BenchError("--data applies to the named benchmarks; for a config file set its [data] paths "
                         "(or --set data.seed=...)")
    cfg = load_config(path)
    name = path.stem if path.stem != "config" else path.resolve().parent.name
    settings = {p: replace(s, max_tokens=cfg.loop.max_tokens or s.max_tokens) for p, s in CUSTOM.items()}
    return Benchmark(name, Dataset(path.resolve(), None, {}, settings))


def _q(value: object) -> str:
    return json.dumps(str(value))


def base_overrides(dataset: str | Benchmark, profile: str, data_dir: Path | None, runs_dir: Path) -> list[str]:
    """What every run of a dataset under a profile shares: data, limits, budget, rounds."""
    spec = (dataset if isinstance(dataset, Benchmark) else resolve(dataset)).spec
    s = spec.profiles[profile]
    where = Path(data_dir) if data_dir is not None else spec.data_dir
    if spec.derive is not None:
        if where is None:
            raise BenchError(f"{spec.config.stem} files are needed to derive this benchmark's data: "
                             f"--data DIR with {' '.join(sorted(set(spec.files.values())))}")
        try:
            where = spec.derive(where, runs_dir / "data")
        except (OSError, ValueError) as e:
            raise BenchError(f"cannot derive this benchmark's data from {where}: {e}") from e
    out = [f"data.{key}={_q((where / name).resolve())}" for key, name in spec.files.items()] if where else []
    out += [f"data.dev_limit={s.dev_limit}"] if s.dev_limit is not None else []
    out += [f"data.test_limit={s.test_limit}"] if s.test_limit is not None else []
    # Equal budgets: the token budget stops a run, not a plateau (patience = the round cap).
    out += [f"loop.max_tokens={s.max_tokens}", f"loop.max_rounds={s.max_rounds}", f"loop.patience={s.max_rounds}",
            f"runs_dir={_q(runs_dir.resolve())}"]
    return out


def seed_overrides(cfg: Any, index: int) -> list[str]:
    return [f"sampling.seed={cfg.sampling.seed + index}", f"student.seed={cfg.student.seed + index}"]


def resolve_methods(methods: list[str] | None, profile: str, task_type: str) -> tuple[list[str], dict[str, str]]:
    chosen = list(methods or PROFILES[profile].methods)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise BenchError(f"unknown method(s) {', '.join(unknown)}; one of {', '.join(METHODS)}")
    skipped = {m: f"{' or '.join(TASKS[m])} only" for m in chosen if task_type not in TASKS.get(m, (task_type,))}
    return [m for m in chosen if m not in skipped], skipped
