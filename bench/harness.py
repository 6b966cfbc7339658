"""Benchmarks against the paper's baselines and ablations, with one teacher, student, seed set and
teacher-token budget for every method.

    evokd bench sst2|CONFIG.toml [--methods evokd,static] [--seeds N] [--profile quick|full] [--base-url URL]
                     [--out DIR] [--data DIR] [--set k=v] [--jobs N] [--budgets 3000,6000,12000] [--resume]

A benchmark is a config `evokd run` accepts: a file, or the name of one shipped in
evokd/bench/configs/ (sst2, imdb, conll2003, conll04: public datasets through Hugging Face
`datasets`; sentiment: the quick-start demo). `--data DIR` reads a named benchmark's files from DIR
instead (`DATASETS` says which); in a checkout with ../shared/data/NAME beside it, that is the default.
`sst2-sentences` is SST-2 without its parse-tree phrases (derived.py), from files only.

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
`-per-class.png` (per-class F1 of each method) to docs/benchmarks/ (in a checkout; else
./benchmarks/) after every run (a stopped benchmark keeps what it finished; `--resume` runs only
the rest); the run folders go to runs/bench/<dataset>-<profile>/. `--jobs N` runs N of them at
once, each in its own process and run folder, against the one teacher (the embedded one queues
their requests: llama-cpp-python's server has no parallel slots).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from evokd import __version__
from evokd.bench import costs, sweep, tables
from evokd.bench.registry import (
    ABLATIONS,
    CHECKOUT,
    CONFIGS,
    CUSTOM,
    DATASETS,
    MAIN,
    METHODS,
    OUT,
    PAPER,
    PROFILES,
    ROOT,
    RUNS,
    SHARED,
    TASKS,
    BenchError,
    Benchmark,
    Dataset,
    Profile,
    Settings,
    _q,
    base_overrides,
    resolve,
    resolve_methods,
    seed_overrides,
)
from evokd.bench.tables import EVOKD, plot, plot_per_class, print_table, render_markdown, summarise
from evokd.config import load_config
from evokd.core.files import read_jsonl, write_atomic
from evokd.core.records import Sample
from evokd.core.text import normalise
from evokd.graph.context import TaskData
from evokd.graph.final_fit import ships, weighed
from evokd.graph.prepare import gold_pool, load_task_data, method_of
from evokd.graph.runner import execute
from evokd.student.data import cap
from evokd.teacher import local_teacher

# The registry's names stay reachable here (evokd.bench.harness.METHODS, ...), as before the split.
__all__ = [
    "ABLATIONS", "CHECKOUT", "CONFIGS", "CUSTOM", "DATASETS", "EVOKD", "MAIN",
    "METHODS", "OUT", "PAPER", "PROFILES", "ROOT", "RUNS", "SHARED", "TASKS", "BenchError", "Benchmark", "Dataset",
    "Profile", "Settings", "_q", "base_overrides", "plot", "plot_per_class", "print_table", "render_markdown",
    "resolve", "resolve_methods", "seed_overrides", "summarise",
]

@contextlib.contextmanager
def teacher_for(cfg: Any, base_url: str | None, log_dir: Path, needed: bool, say: Callable[[str], None],
                jobs: int = 1) -> Iterator[list[str]]:
    """The overrides that point every run at one teacher: a given URL, the config's, or the
    embedded teacher started (or reused) once for the whole benchmark. Not `needed` (scripted chat
    models, or no run left that asks a teacher, as when a finished benchmark is resumed): none.

    llama-cpp-python's server (0.3.36) has no parallel slots: it answers one request at a time and
    queues the rest, so with `jobs` > 1 the runs overlap one run's student training with another's
    teacher calls. A server with slots (vLLM, llama.cpp's `llama-server -np N`) serves them at once."""
    if not needed:
        yield []
        return
    url = base_url or cfg.llm.base_url
    if url:
        yield [f"llm.base_url={_q(url)}"]
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    if jobs > 1:
        say(f"{jobs} jobs share the embedded teacher, which answers one request at a time")
    with local_teacher(cfg.teacher, log_dir, on_status=say) as info:
        # llama_cpp.server takes a schema through json_object (it rejects json_schema).
        structured = [] if cfg.llm.structured != "auto" else ['llm.structured="json_object_schema"']
        yield [f"llm.base_url={_q(info.base_url)}", *structured]


def train_direct(cfg: Any, method: str, settings: Settings) -> dict[str, Any]:
    """A student on gold data only. `no-aug`: the seed set. `full`: up to `full_samples` gold training
    samples, never a dev or test text. With loop.final_fit (the default) it is a final fit
    (`[final_fit]`: a fresh student, its stopping point chosen on dev, calibrated on dev;
    student/final_fit.py), as every method's pool gets; without, the earlier protocol's fixed epochs
    (no-aug: seed_epochs, as round 0 trains; full: full_epochs)."""
    # torch, transformers: only for the runs without a teacher
    from evokd.student.final_fit import final_fit
    from evokd.student.model import build_student

    data = load_task_data(cfg)
    train = direct_train_set(cfg, data, method, settings)
    epochs = cfg.student.seed_epochs if method == "no-aug" else settings.full_epochs
    started = time.time()
    report = None
    if cfg.loop.final_fit:
        student, report = final_fit(cfg.task, cfg.student, cfg.final_fit, train, data.dev, seed=cfg.student.seed)
        dev = report.dev_f1
    else:
        student = build_student(cfg.task, cfg.student)
        student.fit(train, epochs=epochs, seed=cfg.student.seed)
        dev = student.evaluate(data.dev).f1
    test = student.evaluate(data.test) if data.test else None
    row = {"dev_f1": dev, "seed_f1": dev, "test_f1": test.f1 if test else None, "tokens": 0, "rounds": None,
           "train_size": len(train), "curve": [[0, dev]],
           "per_class": per_class_f1((test or student.evaluate(data.dev)).model_dump(mode="json")),
           "final_fit": report.model_dump(mode="json") if report is not None else None,
           "stop_reason": None, "run_dir": None, "seconds": time.time() - started}
    return more_fits(cfg, row, train, settings.fit_seeds, data)


def direct_train_set(cfg: Any, data: TaskData, method: str, settings: Settings) -> list[Sample]:
    """What `train_direct` trains on: the seed set (no-aug), or up to `full_samples` gold samples."""
    if method == "no-aug":
        return data.seed
    pool = [s for s in gold_pool(cfg) if normalise(s.text) not in data.eval_keys]
    return cap(pool, settings.full_samples, cfg.sampling.seed)


def run_pool(row: dict[str, Any], by_teacher: bool) -> list[Sample]:
    """What a graph run's final fit trained on: the seed set and every accepted sample."""
    return [weighed(s, by_teacher) for s in read_jsonl(Path(row["run_dir"]) / "samples.jsonl") if s["accepted"]]


def lacks_fits(row: dict[str, Any], n: int) -> bool:
    """Whether a row is a final-fit run with test data and fewer than `n` final fits."""
    return ("error" not in row and row.get("final_fit") is not None and row.get("test_f1") is not None
            and len(row.get("fits") or [row["test_f1"]]) < n)


def more_fits(cfg: Any, row: dict[str, Any], train: list[Sample], n: int, data: TaskData | None = None
              ) -> dict[str, Any]:
    """The row with its run's training set fitted until there are `n` final fits, each with its own
    student seed (student.seed + 1000 k; the first is the run's own, the student it ships), and their
    mean test F1 as the run's `test_f1` (`fits`: each one's; `shipped_test_f1`: the first's). A graph
    run's fit that scores below its best round on dev counts the best round's test F1, as the run
    would ship it (final_fit.ship). Only for a final-fit run with test data: the student's seed then
    counts as little in a comparison as the teacher's draw allows. `data`: the run's task data, when
    the caller has it loaded."""
    if not lacks_fits(row, n):
        return row
    from evokd.student.final_fit import final_fit  # torch, transformers: a run has loaded them

    fits = list(row.get("fits") or [row["test_f1"]])
    data = data if data is not None else load_task_data(cfg)
    started = time.time()
    round_test = row.get("best_round_test_f1")  # None for no-aug and full: no rounds to fall back on
    round_dev = row["dev_f1"] if round_test is not None else None
    for k in range(len(fits), n):
        student, report = final_fit(cfg.task, cfg.student, cfg.final_fit, train, data.dev,
                                    seed=cfg.student.seed + 1000 * k)
        fits.append(student.evaluate(data.test).f1 if ships(cfg.final_fit.ship, report.dev_f1, round_dev)
                    else round_test)
    return {**row, "fits": fits, "shipped_test_f1": row.get("shipped_test_f1", fits[0]),
            "test_f1": sum(fits) / len(fits), "fit_seconds": row.get("fit_seconds", 0.0) + time.time() - started}


def per_class_f1(report: dict[str, Any]) -> dict[str, float]:
    """Label (or entity type) -> F1 from an EvalReport dict."""
    return {label: score["f1"] for label, score in report["per_class"].items()}


def run_graph(cfg: Any, chat_model: Any = None) -> dict[str, Any]:
    started = time.time()
    result = execute(cfg, chat_model=chat_model)
    state = result.state
    history = state.get("history", [])
    usage = state.get("usage", {})
    test, final_test, final = state.get("test"), state.get("final_test"), state.get("final_fit")
    final_ships = final is not None and final.get("shipped", True)
    shipped_test = final_test if final_ships else test
    return {
        "dev_f1": state.get("best_f1"), "seed_f1": history[0]["f1"] if history else None,
        # The run's score is its shipped student's: the final fit's, unless the best round's scored
        # higher on dev (final_fit.ship).
        "test_f1": (shipped_test or {}).get("f1"),
        "shipped": None if not final else "final fit" if final_ships else "best round",
        "best_round_test_f1": test["f1"] if test else None, "final_fit": final,
        "final_fit_test_f1": final_test["f1"] if final_test else None,
        "tokens": int(usage.get("tokens_in", 0) + usage.get("tokens_out", 0)),
        "rounds": len(history) - 1, "best_round": state.get("best_round"),
        "accepted": sum(h["accepted"] for h in history[1:]), "rejected": sum(h["rejected"] for h in history[1:]),
        "curve": [[h["tokens_in"] + h["tokens_out"], h["f1"]] for h in history],
        # Cumulative [tokens in, tokens out, teacher seconds, dev F1] per round (costs.py).
        "spend": costs.spend_of(history),
        # Test scores of the shipped student when there is test data, else the best round's dev scores.
        "per_class": per_class_f1(shipped_test or history[state.get("best_round", 0)]["dev"]),
        "stop_reason": state.get("stop_reason"), "run_dir": str(result.run.root), "seconds": time.time() - started,
        "similarity": mean_similarity(cfg, [s["text"] for s in state.get("samples", [])
                                            if s["accepted"] and s["intent"] != "seed"]),
    }


def mean_similarity(cfg: Any, texts: list[str]) -> float | None:
    """Mean pairwise cosine of the texts' sentence vectors (the student's pretrained encoder): how
    alike a run's accepted texts read; lower is more varied. None for fewer than two texts."""
    if len(texts) < 2:
        return None
    from evokd.student.model import build_student  # torch, transformers: a graph run has loaded them

    vectors = build_student(cfg.task, cfg.student).embed(texts)
    cosines = vectors @ vectors.T
    return float((cosines.sum() - cosines.diagonal().sum()) / (len(texts) * (len(texts) - 1)))


def one_run(config: Path, overrides: list[str], method: str, settings: Settings,
            chat_model_factory: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """One (method, seed) run: its row, or {"error"} (one failed run must not lose the others)."""
    try:
        cfg = load_config(config, overrides)
        if METHODS[method] is None:
            return train_direct(cfg, method, settings)
        model = chat_model_factory(method) if chat_model_factory is not None else None
        row = run_graph(cfg, model)
        if row.get("final_fit") is None:
            return row
        return more_fits(cfg, row, run_pool(row, cfg.final_fit.weigh_by_teacher), settings.fit_seeds)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def refit(config: Path, overrides: list[str], method: str, settings: Settings, row: dict[str, Any]
          ) -> dict[str, Any]:
    """A kept run's row (--resume) with the final fits it lacks (`more_fits`); unchanged if it cannot
    (its run folder gone), with a note."""
    try:
        cfg = load_config(config, overrides)
        data = load_task_data(cfg)
        train = (direct_train_set(cfg, data, method, settings) if METHODS[method] is None
                 else run_pool(row, cfg.final_fit.weigh_by_teacher))
        return more_fits(cfg, row, train, settings.fit_seeds, data)
    except (OSError, ValueError) as exc:
        return {**row, "fits_error": f"{type(exc).__name__}: {exc}"}


def _one_run_quiet(config: Path, overrides: list[str], method: str, settings: Settings,
                   chat_model_factory: Callable[[str], Any] | None) -> dict[str, Any]:
    """one_run in a worker process, its logging at warnings only (the parent prints the rows)."""
    logging.basicConfig(level=logging.WARNING)
    return one_run(config, overrides, method, settings, chat_model_factory)


def run_parallel(todo: list[tuple[int, str, str, list[str]]], jobs: int, config: Path, teacher: list[str],
                 settings: Settings, chat_model_factory: Callable[[str], Any] | None, console: Console,
                 finished: Callable[[int, str, str, dict[str, Any]], None]) -> None:
    """Up to `jobs` runs at once, each in a fresh process (spawned: no state shared with this one, so
    a run's result is what it would be alone), against the one teacher in `teacher`."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, max_tasks_per_child=1) as pool:
        pending = {}
        for i, method, label, run_overrides in todo:
            future = pool.submit(_one_run_quiet, config, [*run_overrides, *teacher], method, settings,
                                 chat_model_factory)
            pending[future] = (i, method, label)
        console.print(f"{len(todo)} runs, {jobs} at a time", highlight=False)
        try:
            while pending:
                ready, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in ready:
                    i, method, label = pending.pop(future)
                    try:
                        row = future.result()
                    except Exception as exc:  # the worker process died
                        row = {"error": f"{type(exc).__name__}: {exc}"}
                    finished(i, method, label, row)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def run_benchmark(
    dataset: str | Path,
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
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    fit_seeds: int | None = None,
) -> dict[str, Any]:
    """Run every (method, seed), write the JSON, markdown and plot, and return the result.

    `chat_model_factory(method)` replaces the teacher with a chat model per run (tests);
    `overrides` are `--set` items applied to every run after the profile's; `resume` keeps the
    finished runs of an earlier benchmark with the same settings and runs only the rest; `jobs`
    runs that many at once, each in its own process (a `chat_model_factory` must then be a
    module-level function, so a spawned process can import it); `executor="ray"` runs each as a
    task on the Ray cluster at `address` instead (executors.py); [tracking] logs every run to MLflow
    under one parent run."""
    console = console or Console()
    if profile not in PROFILES:
        raise BenchError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
    if jobs < 1:
        raise BenchError("--jobs must be at least 1")
    if executor not in ("local", "ray"):
        raise BenchError(f"--executor {executor}: local or ray")
    if executor == "ray":
        from evokd.bench.executors import require_ray

        require_ray()  # before any run: a missing extra is one line, not a failure after the first runs
    bench = resolve(dataset, data_dir)
    dataset, spec = bench.name, bench.spec
    n_fits = fit_seeds if fit_seeds is not None else PROFILES[profile].fit_seeds
    if n_fits < 1:
        raise BenchError("--fit-seeds must be at least 1")
    settings = replace(spec.profiles[profile], fit_seeds=n_fits)
    out_dir = Path(out_dir) if out_dir is not None else OUT
    runs_dir = (Path(runs_dir) if runs_dir is not None else RUNS) / f"{dataset}-{profile}"
    shared = [*base_overrides(bench, profile, data_dir, runs_dir), *(overrides or [])]
    base = load_config(spec.config, shared)
    if base.data.uses_hub and base.data.hf is not None and importlib.util.find_spec("datasets") is None:
        raise BenchError(f"{spec.config.name} reads {base.data.hf.path} through Hugging Face datasets: "
                         'pip install "evokd[hf]", or give its files with --data DIR')
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
        "metric": base.task.metric,
        "has_test": base.data.test is not None, "evokd_version": __version__,
        "teacher": f"{teacher_desc} (model {base.llm.model})", "student": base.student.model,
        "settings": {"max_tokens": base.loop.max_tokens, "max_rounds": base.loop.max_rounds,
                     "dev_limit": base.data.dev_limit, "test_limit": base.data.test_limit,
                     "full_samples": settings.full_samples, "full_epochs": settings.full_epochs,
                     "k_per_class": base.sampling.k_per_class, "overrides": overrides or []},
        "seeds": seed_values, "fit_seeds": n_fits, "methods": chosen, "skipped": skipped, "plot": f"{stem}.png",
        "per_class_plot": f"{stem}-per-class.png", "cost_plot": f"{stem}-cost.png",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    done, set_aside, earlier_minutes = (finished_runs(out_dir / f"{stem}.json", head) if resume
                                        else ({}, [], 0.0))
    for kept in done.values():  # runs benchmarked before spend was recorded: read their folders once
        kept.setdefault("spend", costs.spend(kept))
    runs: list[dict[str, Any]] = []
    total = len(chosen) * n_seeds
    started = time.time()
    if done:
        console.print(f"resuming: {len(done)} of {total} runs already in {out_dir / stem}.json", highlight=False)
    if set_aside:
        console.print(f"{len(set_aside)} earlier runs of other methods or seeds are kept in {stem}.json, "
                      "outside this benchmark's tables", highlight=False)
    tracker, parent = tracked_benchmark(base, stem, head, out_dir / f"{stem}.json" if resume else None)

    def write(final: bool) -> dict[str, Any]:
        """The result so far, on disk after every run, so a stopped benchmark keeps what it finished,
        including the runs it kept from an earlier one but has not reached yet."""
        reached = {(r["method"], r["seed"]) for r in runs}
        so_far = [*runs, *(r for key, r in done.items() if key not in reached)]
        summary, comparisons = summarise(so_far, chosen)
        costs.annotate(summary, comparisons, so_far, tables.stats)
        result = {**head, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "minutes": earlier_minutes + (time.time() - started) / 60, "complete": final,
                  "summary": summary, "comparisons": comparisons, "runs": so_far, "set_aside": set_aside}
        write_atomic(out_dir / f"{stem}.json", json.dumps(result, indent=1) + "\n")
        plot(result, out_dir / f"{stem}.png", {m for m, extra in METHODS.items() if extra is None})
        plot_per_class(result, out_dir / f"{stem}-per-class.png")
        costs.plot_costs(result, out_dir / f"{stem}-cost.png", {m for m, extra in METHODS.items() if extra is None})
        write_atomic(out_dir / f"{stem}.md", render_markdown(result))
        return result

    todo: list[tuple[int, str, str, list[str]]] = []  # (seed, method, label, overrides) of each run to do
    for i in range(n_seeds):
        for method in chosen:
            label = f"[{i * len(chosen) + chosen.index(method) + 1}/{total}] {dataset} {method} seed {i}"
            if (method, i) in done:
                kept = done[(method, i)]
                if lacks_fits(kept, n_fits):
                    console.print(f"{label}: kept from the earlier run; fitting its pool {n_fits} times ...",
                                  highlight=False)
                    kept = refit(spec.config, [*shared, *(METHODS[method] or []), *seed_overrides(base, i)],
                                 method, settings, kept)
                runs.append(kept)
                console.print(f"{label}: kept from the earlier run", highlight=False)
            else:
                run_overrides = [*shared, *(METHODS[method] or []), *seed_overrides(base, i),
                                 f"name={_q(f'{dataset}-{method}-s{i}')}"]
                cfg = load_config(spec.config, run_overrides)  # a bad override fails here, before any run
                if METHODS[method] is not None:
                    method_of(cfg)  # ... and so does a config the method refuses
                todo.append((i, method, label, run_overrides))
    order = {(m, i): n for n, (i, m) in enumerate((i, m) for i in range(n_seeds) for m in chosen)}

    def finished(i: int, method: str, label: str, row: dict[str, Any]) -> None:
        if "error" in row:
            console.print(f"{label}: [red]failed[/] {row['error']}", highlight=False)
        else:
            console.print(f"{label}: dev F1 {row['dev_f1']:.4f}, "
                          f"test F1 {row['test_f1'] if row['test_f1'] is None else round(row['test_f1'], 4)}, "
                          f"{row['tokens']} tokens, {row['seconds']:.0f} s", highlight=False)
        runs.append({"method": method, "seed": i, **seed_values[i], **row})
        if tracker is not None:
            tracker.log_row(method, i, row)
        runs.sort(key=lambda r: order[(r["method"], r["seed"])])  # the order of a one-by-one benchmark
        write(final=False)

    # no-aug and full train on gold data: a benchmark left with only those starts no teacher.
    needed = chat_model_factory is None and any(METHODS[method] is not None for _, method, _, _ in todo)
    with teacher_for(base, base_url, runs_dir, needed, console.print, jobs=min(jobs, len(todo)) or 1) as teacher, \
            _ending(tracker, out_dir / stem) as ended:
        teacher = [*teacher, *parent]
        if executor == "ray":
            from evokd.bench.executors import run_on_ray

            run_on_ray(todo, address, _one_run_quiet, spec.config, teacher, settings, chat_model_factory, console,
                       finished)
        elif jobs == 1:
            for i, method, label, run_overrides in todo:
                console.print(f"{label} ...", highlight=False)
                finished(i, method, label, one_run(spec.config, [*run_overrides, *teacher], method, settings,
                                                   chat_model_factory))
        else:
            run_parallel(todo, jobs, spec.config, teacher, settings, chat_model_factory, console, finished)
        result = write(final=True)
        ended.append(result)
    print_table(result, console)
    console.print(f"wrote {out_dir / stem}.json, .md, .png", highlight=False)
    return result


def run_budgets(dataset: str, budgets: list[int], methods: list[str] | None = None, seeds: int | None = None,
                profile: str = "quick", out_dir: Path | None = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The benchmark at several token budgets, and test F1 against budget per method (sweep.py)."""
    if profile not in PROFILES:
        raise BenchError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
    if not budgets or min(budgets) < 1:
        raise BenchError("--budgets needs one or more positive token counts, e.g. 3000,6000,12000")
    bench = resolve(dataset, kwargs.get("data_dir"))
    return sweep.run_budgets(run_benchmark, tables.write_budgets, bench.spec.profiles[profile], dataset, budgets,
                             methods, seeds, profile, Path(out_dir) if out_dir is not None else OUT, *args,
                             name=bench.name, **kwargs)


def tracked_benchmark(base: Any, stem: str, head: dict[str, Any], earlier: Path | None) -> tuple[Any, list[str]]:
    """With [tracking]: the benchmark's MLflow parent run (reopened on --resume) and the override that
    makes each run its child; else (None, [])."""
    if not base.tracking.mlflow_uri:
        return None, []
    from evokd.tracking import MlflowBenchmark

    earlier_id = None
    if earlier is not None and earlier.exists():
        with contextlib.suppress(OSError, ValueError):
            earlier_id = json.loads(earlier.read_text(encoding="utf-8")).get("mlflow_parent_run_id")
    tracker = MlflowBenchmark(base.tracking, stem)
    run_id = tracker.start({k: v for k, v in head.items() if k in ("dataset", "profile", "task", "teacher", "student",
                                                                    "settings", "methods", "seeds")}, earlier_id)
    if run_id is None:
        return None, []
    head["mlflow_parent_run_id"] = run_id
    return tracker, [f"tracking.parent_run_id={_q(run_id)}"]


@contextlib.contextmanager
def _ending(tracker: Any, stem: Path) -> Iterator[list[dict[str, Any]]]:
    """Ends the MLflow parent run however the benchmark ends: FINISHED with the final result (which
    the block appends), else KILLED (a resume reopens it)."""
    ended: list[dict[str, Any]] = []
    try:
        yield ended
    finally:
        if tracker is not None:
            final = ended[-1] if ended else {}
            files = [Path(f"{stem}{end}") for end in (".json", ".md", ".png", "-per-class.png", "-cost.png")]
            tracker.end(final.get("summary", {}), files if ended else [], complete=bool(ended))


def finished_runs(path: Path, head: dict[str, Any]
                  ) -> tuple[dict[tuple[str, int], dict[str, Any]], list[dict[str, Any]], float]:
    """The successful runs of an earlier, stopped benchmark with the same settings (--resume), the
    runs of methods or seeds this one does not ask for (set aside: written back untouched, so a
    resume with fewer methods or seeds loses nothing a later one can use), and the minutes the
    earlier one had spent (0 when none of its runs is kept)."""
    if not path.exists():
        return {}, [], 0.0
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
    kept: dict[tuple[str, int], dict[str, Any]] = {}
    set_aside: list[dict[str, Any]] = []
    for r in [*earlier.get("runs", []), *earlier.get("set_aside", [])]:
        if r.get("error") is not None:
            continue
        if r["method"] in head["methods"] and r["seed"] in seeds:
            if seeds[r["seed"]] == {"sampling": r.get("sampling"), "student": r.get("student")}:
                kept[(r["method"], r["seed"])] = r
        else:
            set_aside.append(r)
    return kept, set_aside, earlier["minutes"] if kept else 0.0
