"""Benchmarks against the paper's baselines and ablations, with one teacher, student, seed set and
teacher-token budget for every method.

    evokd bench sst2 [--methods evokd,static] [--seeds N] [--profile quick|full] [--base-url URL] [--out DIR]
                     [--resume]

Methods (`METHODS`): `no-aug` (the seed set only: the student of round 0), `static` (ZeroGen-style,
label-conditioned texts, no feedback), `augment` (AugGPT-style paraphrases of the seed set), `evokd`
(the default loop, docs/method.md), `evokd-paper` (the paper's loop and Analyst: right and wrong
samples only), `evokd-paper+metrics` (the paper's loop with our Analyst, also shown per-class F1 and
confused pairs), `llm2llm`, `full` (a student trained on gold training data: the upper bound), and
the paper's ablations of its loop: `evokd-paper-no-easy`, `evokd-paper-no-correct`,
`evokd-paper-no-review`, `evokd-paper-no-verifier`. llm2llm is classification only.

Every generating run gets the same `loop.max_tokens`, no plateau stop, and enough rounds to spend
it; seed i runs with `sampling.seed + i` and `student.seed + i` for every method. One teacher
serves all runs: `--base-url`, else the config's `llm.base_url`, else the embedded teacher started
once here. Writes `<dataset>-<profile>.json`, `.md`, `.png` (dev F1 against teacher tokens) and
`-per-class.png` (per-class F1 of each method) to
docs/benchmarks/ after every run (a stopped benchmark keeps what it finished; `--resume` runs only
the rest); the run folders go to runs/bench/<dataset>-<profile>/.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console


def _sibling(name: str) -> Any:
    """benchmarks/<name>.py: benchmarks are scripts, not a package, and this module is itself loaded
    by path (evokd bench, the tests), so its siblings are loaded the same way."""
    module_name = f"evokd_bench_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


tables = _sibling("tables")
costs = _sibling("costs")
sweep = _sibling("sweep")
EVOKD, summarise, plot, plot_per_class = tables.EVOKD, tables.summarise, tables.plot, tables.plot_per_class
render_markdown, print_table = tables.render_markdown, tables.print_table

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "docs" / "benchmarks"
RUNS = ROOT / "runs" / "bench"

# Config overrides per method; None: no graph run (trained directly, no teacher).
# evokd-paper is the paper's loop with the paper's Analyst (samples only); evokd-paper+metrics adds
# our per-label scores to it; evokd is the default loop (docs/method.md).
PAPER = ['loop.method="evokd-paper"', "loop.analyst_sees_metrics=false"]
METHODS: dict[str, list[str] | None] = {
    "no-aug": None,
    "static": ['loop.method="static"'],
    "augment": ['loop.method="augment"'],
    "evokd": ['loop.method="evokd"'],
    "evokd-paper": [*PAPER],
    "evokd-paper+metrics": ['loop.method="evokd-paper"', "loop.analyst_sees_metrics=true"],
    "llm2llm": ['loop.method="llm2llm"'],
    "full": None,
    "evokd-paper-no-easy": [*PAPER, "loop.n_easy=0"],
    "evokd-paper-no-correct": [*PAPER, "loop.analyst_sees_correct=false"],
    "evokd-paper-no-review": [*PAPER, "loop.review_size=0"],
    "evokd-paper-no-verifier": [*PAPER, "loop.separate_verifier=false"],
}
MAIN = ["no-aug", "static", "augment", "evokd", "evokd-paper", "evokd-paper+metrics", "llm2llm", "full"]
ABLATIONS = ["evokd-paper-no-easy", "evokd-paper-no-correct", "evokd-paper-no-review", "evokd-paper-no-verifier"]
CLASSIFICATION_ONLY = {"llm2llm"}


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


@dataclass(frozen=True)
class Profile:
    seeds: int  # default number of seeds
    methods: list[str]  # default methods


PROFILES = {
    # About 20 minutes per dataset on 2 CPU cores with the embedded 1.5B teacher (5 generating runs).
    "quick": Profile(seeds=1, methods=MAIN),
    "full": Profile(seeds=3, methods=[*MAIN, *ABLATIONS]),
}


@dataclass(frozen=True)
class Dataset:
    config: Path  # the example config the runs start from
    data_dir: Path  # default; run_benchmark(data_dir=...) / --data overrides it
    files: dict[str, str]  # data.seed / data.dev / data.test file names in data_dir
    profiles: dict[str, Settings] = field(default_factory=dict)


DATASETS: dict[str, Dataset] = {
    "sst2": Dataset(ROOT / "examples" / "sst2.toml", SHARED / "sst2",
                    {"seed": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"},
                    {"quick": Settings(6000, 200, 300, 1000, 2, 20),
                     "full": Settings(40000, 1000, 872, 10000, 3, 60)}),
    "imdb": Dataset(ROOT / "examples" / "imdb.toml", SHARED / "imdb",
                    {"seed": "train.csv", "dev": "train.csv", "test": "test.csv"},
                    {"quick": Settings(6000, 100, 200, 500, 2, 20),  # long reviews: smaller to fit ~20 min
                     "full": Settings(40000, 1000, 2000, 5000, 3, 60)}),
    "conll2003": Dataset(ROOT / "examples" / "conll2003.toml", SHARED / "conll2003",
                         {"seed": "train.txt", "dev": "valid.txt", "test": "test.txt"},
                         {"quick": Settings(6000, 200, 300, 1000, 3, 20),
                          "full": Settings(40000, 1000, 1000, 14041, 3, 60)}),
    "conll04": Dataset(ROOT / "examples" / "conll04.toml", SHARED / "conll04",
                       {"seed": "conll04_train.json", "dev": "conll04_dev.json", "test": "conll04_test.json"},
                       {"quick": Settings(6000, 200, 288, 922, 5, 20),
                        "full": Settings(40000, 231, 288, 922, 10, 60)}),
    # The quick-start demo data: a minute-long look at the harness, and its tests.
    "sentiment": Dataset(ROOT / "examples" / "sentiment" / "config.toml", ROOT / "examples" / "sentiment" / "data",
                         {"seed": "seed.csv", "dev": "dev.csv", "test": "test.csv"},
                         {"quick": Settings(3000, None, None, 6, 10, 10),
                          "full": Settings(10000, None, None, 6, 10, 30)}),
}


def _q(value: object) -> str:
    return json.dumps(str(value))


def base_overrides(dataset: str, profile: str, data_dir: Path | None, runs_dir: Path) -> list[str]:
    """What every run of a dataset under a profile shares: data, limits, budget, rounds."""
    spec = DATASETS[dataset]
    s = spec.profiles[profile]
    where = Path(data_dir) if data_dir is not None else spec.data_dir
    out = [f"data.{key}={_q((where / name).resolve())}" for key, name in spec.files.items()]
    out += [f"data.dev_limit={s.dev_limit}"] if s.dev_limit is not None else []
    out += [f"data.test_limit={s.test_limit}"] if s.test_limit is not None else []
    # Equal budgets: the token budget stops a run, not a plateau (patience = the round cap).
    out += [f"loop.max_tokens={s.max_tokens}", f"loop.max_rounds={s.max_rounds}", f"loop.patience={s.max_rounds}",
            f"runs_dir={_q(runs_dir.resolve())}"]
    return out


def seed_overrides(cfg: Any, index: int) -> list[str]:
    return [f"sampling.seed={cfg.sampling.seed + index}", f"student.seed={cfg.student.seed + index}"]


@contextlib.contextmanager
def teacher_for(cfg: Any, base_url: str | None, log_dir: Path, scripted: bool, say: Callable[[str], None]
                ) -> Iterator[list[str]]:
    """The overrides that point every run at one teacher: a given URL, the config's, or the
    embedded teacher started (or reused) once for the whole benchmark."""
    if scripted:
        yield []
        return
    url = base_url or cfg.llm.base_url
    if url:
        yield [f"llm.base_url={_q(url)}"]
        return
    from evokd.teacher import local_teacher

    log_dir.mkdir(parents=True, exist_ok=True)
    with local_teacher(cfg.teacher, log_dir, on_status=say) as info:
        # llama_cpp.server takes a schema through json_object (it rejects json_schema).
        structured = [] if cfg.llm.structured != "auto" else ['llm.structured="json_object_schema"']
        yield [f"llm.base_url={_q(info.base_url)}", *structured]


def train_direct(cfg: Any, method: str, settings: Settings) -> dict[str, Any]:
    """`no-aug`: the seed-round student (the seed set, seed_epochs), exactly what round 0 trains.
    `full`: up to `full_samples` gold training samples, never a dev or test text."""
    from evokd.graph.prepare import load_task_data
    from evokd.student.data import cap, read_samples
    from evokd.student.model import build_student

    data = load_task_data(cfg)
    if method == "no-aug":
        train, epochs = data.seed, cfg.student.seed_epochs
    else:
        from evokd.core.text import normalise

        assert cfg.data.seed is not None
        pool = [s for s in read_samples(cfg.data.seed, cfg.task) if normalise(s.text) not in data.eval_keys]
        train, epochs = cap(pool, settings.full_samples, cfg.sampling.seed), settings.full_epochs
    started = time.time()
    student = build_student(cfg.task, cfg.student)
    student.fit(train, epochs=epochs, seed=cfg.student.seed)
    dev = student.evaluate(data.dev)
    test = student.evaluate(data.test) if data.test else None
    return {"dev_f1": dev.f1, "seed_f1": dev.f1, "test_f1": test.f1 if test else None, "tokens": 0, "rounds": None,
            "train_size": len(train), "curve": [[0, dev.f1]],
            "per_class": per_class_f1((test or dev).model_dump(mode="json")),
            "stop_reason": None, "run_dir": None, "seconds": time.time() - started}


def per_class_f1(report: dict[str, Any]) -> dict[str, float]:
    """Label (or entity type) -> F1 from an EvalReport dict."""
    return {label: score["f1"] for label, score in report["per_class"].items()}


def run_graph(cfg: Any, chat_model: Any = None) -> dict[str, Any]:
    from evokd.graph.runner import execute

    started = time.time()
    result = execute(cfg, chat_model=chat_model)
    state = result.state
    history = state.get("history", [])
    usage = state.get("usage", {})
    test = state.get("test")
    return {
        "dev_f1": state.get("best_f1"), "seed_f1": history[0]["f1"] if history else None,
        "test_f1": test["f1"] if test else None,
        "tokens": int(usage.get("tokens_in", 0) + usage.get("tokens_out", 0)),
        "rounds": len(history) - 1, "best_round": state.get("best_round"),
        "accepted": sum(h["accepted"] for h in history[1:]), "rejected": sum(h["rejected"] for h in history[1:]),
        "curve": [[h["tokens_in"] + h["tokens_out"], h["f1"]] for h in history],
        # Cumulative [tokens in, tokens out, teacher seconds, dev F1] per round (costs.py).
        "spend": costs.spend_of(history),
        # Test scores of the best round when there is test data, else its dev scores.
        "per_class": per_class_f1(test or history[state.get("best_round", 0)]["dev"]),
        "stop_reason": state.get("stop_reason"), "run_dir": str(result.run.root), "seconds": time.time() - started,
    }


def resolve_methods(methods: list[str] | None, profile: str, task_type: str) -> tuple[list[str], dict[str, str]]:
    chosen = list(methods or PROFILES[profile].methods)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise BenchError(f"unknown method(s) {', '.join(unknown)}; one of {', '.join(METHODS)}")
    skipped = {m: "classification only" for m in chosen if m in CLASSIFICATION_ONLY and task_type != "classification"}
    return [m for m in chosen if m not in skipped], skipped


def run_benchmark(
    dataset: str,
    methods: list[str] | None = None,
    seeds: int | None = None,
    profile: str = "quick",
    out_dir: Path | None = None,
    base_url: str | None = None,
    *,
    data_dir: Path | None = None,
    runs_dir: Path | None = None,
    overrides: list[str] | None = None,
    chat_model_factory: Callable[[str], Any] | None = None,
    console: Console | None = None,
    resume: bool = False,
    stem: str | None = None,
) -> dict[str, Any]:
    """Run every (method, seed), write the JSON, markdown and plot, and return the result.

    `chat_model_factory(method)` replaces the teacher with a chat model per run (tests);
    `overrides` are `--set` items applied to every run after the profile's; `resume` keeps the
    finished runs of an earlier benchmark with the same settings and runs only the rest."""
    from evokd import __version__
    from evokd.config import load_config
    from evokd.core.trace import write_atomic

    console = console or Console()
    if dataset not in DATASETS:
        raise BenchError(f"unknown dataset {dataset!r}; one of {', '.join(DATASETS)}")
    if profile not in PROFILES:
        raise BenchError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
    spec, settings = DATASETS[dataset], DATASETS[dataset].profiles[profile]
    out_dir = Path(out_dir) if out_dir is not None else OUT
    runs_dir = (Path(runs_dir) if runs_dir is not None else RUNS) / f"{dataset}-{profile}"
    shared = [*base_overrides(dataset, profile, data_dir, runs_dir), *(overrides or [])]
    base = load_config(spec.config, shared)
    chosen, skipped = resolve_methods(methods, profile, base.task.type)
    n_seeds = seeds if seeds is not None else PROFILES[profile].seeds
    if n_seeds < 1:
        raise BenchError("--seeds must be at least 1")
    seed_values = [{"sampling": base.sampling.seed + i, "student": base.student.seed + i} for i in range(n_seeds)]
    stem = stem or f"{dataset}-{profile}"
    if chat_model_factory is not None:
        teacher_desc = "scripted"
    else:
        teacher_desc = base_url or base.llm.base_url or f"embedded {base.teacher.weights}"
    head: dict[str, Any] = {
        "dataset": dataset, "profile": profile, "task": base.task.type,
        "metric": "macro-F1" if base.task.type == "classification" else "micro-F1 (seqeval)",
        "has_test": base.data.test is not None, "evokd_version": __version__,
        "teacher": f"{teacher_desc} (model {base.llm.model})", "student": base.student.model,
        "settings": {"max_tokens": base.loop.max_tokens, "max_rounds": base.loop.max_rounds,
                     "dev_limit": base.data.dev_limit, "test_limit": base.data.test_limit,
                     "full_samples": settings.full_samples, "full_epochs": settings.full_epochs,
                     "k_per_class": base.sampling.k_per_class, "overrides": overrides or []},
        "seeds": seed_values, "methods": chosen, "skipped": skipped, "plot": f"{stem}.png",
        "per_class_plot": f"{stem}-per-class.png", "cost_plot": f"{stem}-cost.png",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    done, earlier_minutes = finished_runs(out_dir / f"{stem}.json", head) if resume else ({}, 0.0)
    runs: list[dict[str, Any]] = []
    total = len(chosen) * n_seeds
    started = time.time()
    if done:
        console.print(f"resuming: {len(done)} of {total} runs already in {out_dir / stem}.json", highlight=False)

    def write(final: bool) -> dict[str, Any]:
        """The result so far, on disk after every run, so a stopped benchmark keeps what it finished,
        including the runs it kept from an earlier one but has not reached yet."""
        reached = {(r["method"], r["seed"]) for r in runs}
        so_far = [*runs, *(r for key, r in done.items() if key not in reached)]
        summary, comparisons = summarise(so_far, chosen)
        costs.annotate(summary, comparisons, so_far, tables.stats)
        result = {**head, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "minutes": earlier_minutes + (time.time() - started) / 60, "complete": final,
                  "summary": summary, "comparisons": comparisons, "runs": so_far}
        write_atomic(out_dir / f"{stem}.json", json.dumps(result, indent=1) + "\n")
        plot(result, out_dir / f"{stem}.png", {m for m, extra in METHODS.items() if extra is None})
        plot_per_class(result, out_dir / f"{stem}-per-class.png")
        costs.plot_costs(result, out_dir / f"{stem}-cost.png", {m for m, extra in METHODS.items() if extra is None})
        write_atomic(out_dir / f"{stem}.md", render_markdown(result))
        return result

    with teacher_for(base, base_url, runs_dir, chat_model_factory is not None, console.print) as teacher:
        for i in range(n_seeds):
            for method in chosen:
                label = f"[{len(runs) + 1}/{total}] {dataset} {method} seed {i}"
                if (method, i) in done:
                    runs.append(done[(method, i)])
                    console.print(f"{label}: kept from the earlier run", highlight=False)
                    continue
                extra = METHODS[method] or []
                cfg = load_config(spec.config, [*shared, *extra, *seed_overrides(base, i), *teacher,
                                                f"name={_q(f'{dataset}-{method}-s{i}')}"])
                console.print(f"{label} ...", highlight=False)
                try:
                    if METHODS[method] is None:
                        row = train_direct(cfg, method, settings)
                    else:
                        model = chat_model_factory(method) if chat_model_factory is not None else None
                        row = run_graph(cfg, model)
                except Exception as exc:  # one failed run must not lose the others
                    row = {"error": f"{type(exc).__name__}: {exc}"}
                    console.print(f"{label}: [red]failed[/] {row['error']}", highlight=False)
                else:
                    console.print(f"{label}: dev F1 {row['dev_f1']:.4f}, "
                                  f"test F1 {row['test_f1'] if row['test_f1'] is None else round(row['test_f1'], 4)}, "
                                  f"{row['tokens']} tokens, {row['seconds']:.0f} s", highlight=False)
                runs.append({"method": method, "seed": i, **seed_values[i], **row})
                write(final=False)
    result = write(final=True)
    print_table(result, console)
    console.print(f"wrote {out_dir / stem}.json, .md, .png", highlight=False)
    return result


def run_budgets(dataset: str, budgets: list[int], methods: list[str] | None = None, seeds: int | None = None,
                profile: str = "quick", out_dir: Path | None = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The benchmark at several token budgets, and test F1 against budget per method (sweep.py)."""
    if dataset not in DATASETS or profile not in PROFILES:
        raise BenchError(f"unknown dataset or profile: {dataset!r}, {profile!r}")
    if not budgets or min(budgets) < 1:
        raise BenchError("--budgets needs one or more positive token counts, e.g. 3000,6000,12000")
    return sweep.run_budgets(run_benchmark, tables.write_budgets, DATASETS[dataset].profiles[profile], dataset,
                             budgets, methods, seeds, profile, Path(out_dir) if out_dir is not None else OUT,
                             *args, **kwargs)


def finished_runs(path: Path, head: dict[str, Any]) -> tuple[dict[tuple[str, int], dict[str, Any]], float]:
    """The successful runs of an earlier, stopped benchmark with the same settings (--resume),
    and the minutes it had spent (0 when none of its runs is kept)."""
    if not path.exists():
        return {}, 0.0
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot resume from {path}: {exc}") from exc
    # The teacher is not compared: the embedded one listens on a new port each time.
    for key in ("dataset", "profile", "student", "settings"):
        if earlier.get(key) != head[key]:
            raise BenchError(f"cannot resume from {path}: its {key} differs from this benchmark's "
                             "(drop --resume to start over, or pass --out elsewhere)")
    seeds = {i: s for i, s in enumerate(head["seeds"])}
    kept = {(r["method"], r["seed"]): r for r in earlier.get("runs", [])
            if r.get("error") is None and r["method"] in head["methods"] and seeds.get(r["seed"]) == {
                "sampling": r.get("sampling"), "student": r.get("student")}}
    return kept, earlier["minutes"] if kept else 0.0
