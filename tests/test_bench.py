"""The benchmark harness, end to end on the sentiment demo data: scripted teacher, tiny student."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from conftest import ROOT, SentimentTeacher, write_config
from rich.console import Console

from evokd.agents.scripted import ScriptedChatModel
from evokd.bench import harness, tables


class BenchTeacher(SentimentTeacher):
    """Answers every method's prompts: static, LLM2LLM, and the EvoKD agents."""

    def __init__(self) -> None:
        super().__init__()
        self.methods_seen: set[str] = set()

    def __call__(self, messages: list, schema: str | None = None) -> str | Exception:
        self.methods_seen.add({"TextsReply": "static", "AugmenterReply": "llm2llm"}.get(schema or "", "evokd"))
        return super().__call__(messages, schema)

    def texts_reply(self, messages: list) -> str:
        label = re.search(r'whose label is "(\w+)"', str(messages[-1].content)).group(1)
        return json.dumps({"texts": [f"Plainly {label} review one.", f"Plainly {label} review two."]})

    def augmenter_reply(self, messages: list) -> str:
        label = re.search(r"Label: (\w+)", str(messages[-1].content)).group(1)
        return json.dumps({"examples": [{"text": f"A fresh {label} example about trains.", "label": label}]})


def test_smoke(tmp_path: Path, tiny_model_dir: Path) -> None:
    teacher = BenchTeacher()
    methods = ["no-aug", "static", "evokd", "llm2llm", "full"]
    out = tmp_path / "out"
    console = Console(file=(tmp_path / "console.txt").open("w"), width=200)
    result = harness.run_benchmark(
        "sentiment", methods, seeds=1, profile="quick", out_dir=out, runs_dir=tmp_path / "runs",
        overrides=[f"student.model={json.dumps(str(tiny_model_dir))}", "student.max_length=32",
                   "student.seed_epochs=2", "student.epochs_per_round=1", "loop.max_rounds=1",
                   "loop.n_hard=2", "loop.n_easy=2", "final_fit.epochs=2"],
        chat_model_factory=lambda method: ScriptedChatModel(script=teacher), console=console)
    console.file.close()
    assert {"static", "evokd"} <= teacher.methods_seen
    runs = {r["method"]: r for r in result["runs"]}
    assert set(runs) == set(methods) and not any(r.get("error") for r in runs.values())
    # Graph runs spent teacher tokens within the one budget; no-aug and full spent none.
    assert runs["static"]["tokens"] > 0 and runs["evokd"]["tokens"] > 0
    assert runs["no-aug"]["tokens"] == runs["full"]["tokens"] == 0
    assert {r["rounds"] for m, r in runs.items() if m in ("static", "evokd", "llm2llm")} == {1}
    # no-aug and full are final fits on gold data: the seed set, and the demo's whole gold file
    # (no dev/test text in it), each stopped at its best dev epoch.
    for method, size in (("no-aug", 2), ("full", 6)):
        fit = runs[method]["final_fit"]
        assert runs[method]["train_size"] == fit["train_size"] == size
        assert runs[method]["dev_f1"] == fit["dev_f1"] == max(fit["dev_curve"])
        assert fit["epochs_run"] <= 2 and fit["temperature"] > 0
    assert all(r["test_f1"] is not None for r in runs.values())
    assert runs["evokd"]["curve"][0] == [0, runs["evokd"]["seed_f1"]]
    # The quick profile fits each run's pool (or gold set) 3 times, each with its own student seed; the
    # run's score is their mean, the shipped student's the first.
    for method in methods:
        fits = runs[method]["fits"]
        assert len(fits) == 3 and runs[method]["shipped_test_f1"] == fits[0]
        assert runs[method]["test_f1"] == pytest.approx(sum(fits) / 3)
    # A graph run ships (and is scored by) its final fit, unless its best round scored higher on dev.
    for method in ("static", "evokd", "llm2llm"):
        row = runs[method]
        final_ships = row["final_fit"]["dev_f1"] >= row["dev_f1"]
        assert row["shipped"] == ("final fit" if final_ships else "best round")
        assert final_ships or row["shipped_test_f1"] == row["best_round_test_f1"]
    # How alike each graph run's accepted texts read: a mean cosine, in the JSON and the markdown.
    assert all(-1 <= runs[m]["similarity"] <= 1 for m in ("static", "evokd"))
    assert "similarity" not in runs["no-aug"]

    stem = out / "sentiment-quick"
    data = json.loads(stem.with_suffix(".json").read_text())
    assert data["methods"] == methods and set(data["summary"]) == set(methods)
    assert data["settings"]["max_tokens"] == 3000
    assert set(data["comparisons"]["evokd"]) == {"minus_static", "minus_static_at_equal_tokens", "over_full",
                                                 "minus_static_at_equal_price", "minus_static_at_equal_seconds",
                                                 "versus_static"}
    # Every method against static, paired by seed (one seed: no interval).
    assert set(data["comparisons"]) == set(methods) - {"static"}
    assert data["comparisons"]["full"]["versus_static"]["n"] == 1
    assert data["comparisons"]["full"]["versus_static"]["low"] is None
    # Each graph run records what it spent per round: tokens in and out, teacher seconds (costs.py).
    spend = runs["evokd"]["spend"]
    assert len(spend) == 2 and spend[0][:3] == [0, 0, 0.0] and spend[-1][0] > 0 and spend[-1][1] > 0
    assert data["summary"]["evokd"]["price"]["mean"] == pytest.approx(spend[-1][0] + 4 * spend[-1][1])
    assert "at equal price" in (out / "sentiment-quick.md").read_text()
    assert (out / "sentiment-quick-cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["comparisons"]["evokd"]["over_full"]["n"] == 1
    markdown = stem.with_suffix(".md").read_text()
    for method in methods:
        assert f"| {method} |" in markdown
    assert "| loop | − static (same budget) |" in markdown and "sentiment-quick.png" in markdown
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "sentiment-quick-per-class.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Per-class test F1 of every run, and their mean per method in the markdown.
    assert all(set(r["per_class"]) == {"negative", "positive"} for r in runs.values())
    assert "| method | negative | positive |" in markdown
    assert "| method | mean pairwise cosine |" in markdown and "| static | " in markdown.split("pairwise cosine |")[-1]
    printed = (tmp_path / "console.txt").read_text()
    assert "evokd − static" in printed and "llm2llm" in printed
    # Every graph run wrote its own run folder under runs_dir.
    assert all(Path(runs[m]["run_dir"]).parent == tmp_path / "runs" / "sentiment-quick"
               for m in ("static", "evokd", "llm2llm"))


def test_summary_maths() -> None:
    def run(method: str, seed: int, f1: float, tokens: int, seed_f1: float = 0.5, curve=None) -> dict:
        return {"method": method, "seed": seed, "dev_f1": f1, "test_f1": f1 - 0.01, "seed_f1": seed_f1,
                "tokens": tokens, "rounds": 2, "curve": curve or [[0, seed_f1], [tokens, f1]]}

    runs = [run("evokd", 0, 0.7, 2000, curve=[[0, 0.5], [1000, 0.7], [2000, 0.6]]), run("evokd", 1, 0.8, 1000),
            run("static", 0, 0.6, 1000), run("static", 1, 0.6, 2000),
            run("full", 0, 0.9, 0), run("full", 1, 0.9, 0)]
    summary, comparisons = harness.summarise(runs, ["evokd", "static", "full"])
    assert summary["evokd"]["dev_f1"]["mean"] == pytest.approx(0.75)
    assert summary["evokd"]["dev_f1"]["std"] == pytest.approx(0.0707107, rel=1e-4)
    # (0.7 - 0.5) / 2000 * 1000 = 0.1 and (0.8 - 0.5) / 1000 * 1000 = 0.3
    assert summary["evokd"]["gain_per_1k_tokens"]["mean"] == pytest.approx(0.2)
    assert summary["full"]["gain_per_1k_tokens"] is None
    c = comparisons["evokd"]
    assert c["minus_static"]["mean"] == pytest.approx((0.1 + 0.2) / 2)  # test F1, paired by seed
    # Seed 0 at 1000 tokens: evokd 0.7, static 0.6; seed 1 at 1000 tokens: evokd 0.8, static 0.5.
    assert c["minus_static_at_equal_tokens"]["mean"] == pytest.approx((0.1 + 0.3) / 2)
    assert c["over_full"]["mean"] == pytest.approx(((0.69 / 0.89) + (0.79 / 0.89)) / 2)
    # Paired with static by seed: +0.1 and +0.2, both won; full: +0.3 twice.
    assert c["versus_static"]["mean"] == pytest.approx(0.15) and c["versus_static"]["won"] == 2
    assert comparisons["full"]["versus_static"]["low"] == pytest.approx(0.3)
    assert comparisons["full"]["versus_static"]["high"] == pytest.approx(0.3)


def test_paired_bootstrap_interval_on_known_cases() -> None:
    # Two seeds, differences 0 and 1: a resample's mean is 0, 0.5 or 1 with chances 1/4, 1/2, 1/4, so
    # the 2.5th and 97.5th percentiles are 0 and 1; a tie is not a win.
    two = tables.paired_difference({0: 0.7, 1: 0.9}, {0: 0.7, 1: -0.1})
    assert two is not None
    assert (two["mean"], two["low"], two["high"], two["won"], two["n"]) == (pytest.approx(0.5), 0.0,
                                                                            pytest.approx(1.0), 1, 2)
    # Only the seeds both ran are paired; one of them gives no interval.
    one = tables.paired_difference({0: 0.8, 5: 0.1}, {0: 0.6})
    assert one == {"mean": pytest.approx(0.2), "low": None, "high": None, "n": 1, "won": 1, "sd": None,
                   "seeds_to_see": None}
    # Ten seeds, +0.02 each but one at -0.01: the interval lies above 0 and holds the mean.
    diffs = [0.02] * 9 + [-0.01]
    ten = tables.paired_difference({s: 0.8 + d for s, d in enumerate(diffs)}, dict.fromkeys(range(10), 0.8))
    assert ten is not None and ten["won"] == 9
    assert ten["mean"] == pytest.approx(0.017)
    assert 0 < ten["low"] < ten["mean"] < ten["high"] <= 0.02 + 1e-9
    assert tables.fmt_paired(ten)[2] == "9 of 10"
    # Seeds to see 0.02: 7.85 σ² / 0.02², rounded up. Here σ = 0.0095, so 2 (the floor); at σ = 0.04,
    # 31.4 -> 32; at σ = 0.025, 12.3 -> 13.
    assert ten["sd"] == pytest.approx(0.009487, abs=1e-6) and ten["seeds_to_see"] == 2
    assert (tables.seeds_to_see(0.04), tables.seeds_to_see(0.025), tables.seeds_to_see(None)) == (32, 13, None)
    assert tables.fmt_paired(ten)[3] == "2 (σ 0.009)"
    assert tables.paired_difference({0: 0.5}, {1: 0.5}) is None


def test_registry_and_methods() -> None:
    for name, spec in harness.DATASETS.items():
        assert spec.config.is_file(), name
        assert set(spec.profiles) == set(harness.PROFILES), name
    methods, skipped = harness.resolve_methods(None, "full", "ner")
    assert {"static", "augment", "evokd", "evokd-paper"} <= set(methods)
    assert skipped == {"llm2llm": "classification only"}
    assert set(harness.ABLATIONS) <= set(methods)
    with pytest.raises(harness.BenchError, match="unknown method"):
        harness.resolve_methods(["evokd", "zerogen"], "quick", "classification")
    # Every method's overrides make a valid config, with the shared budget and the seed's values.
    from evokd.config import load_config

    base = harness.base_overrides("sst2", "quick", Path("/data/sst2"), Path("/tmp/runs"))
    assert 'data.seed="/data/sst2/train.tsv"' in base and "loop.max_tokens=6000" in base
    assert 'data.unlabeled="/data/sst2/train.tsv"' in base  # the pool methods' texts, labels unread
    assert {"pool-random", "pool", "pool+diverse"} <= set(harness.ABLATIONS)  # the full profile's
    for method, extra in harness.METHODS.items():
        cfg = load_config(harness.DATASETS["sentiment"].config, [*base, *(extra or []), "sampling.seed=14"])
        assert cfg.loop.max_tokens == 6000 and cfg.sampling.seed == 14, method


def test_cli_loads_the_harness_and_reports_bad_input() -> None:
    from typer.testing import CliRunner

    from evokd.cli import app

    result = CliRunner().invoke(app, ["bench", "nosuch"], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "unknown dataset 'nosuch'" in result.output, result.output
    result = CliRunner().invoke(app, ["bench", "conll04", "--methods", "evokd,zerogen"], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "unknown method(s) zerogen" in result.output


def test_stopped_benchmark_keeps_its_runs_and_resumes(tmp_path: Path, tiny_model_dir: Path) -> None:
    teacher = BenchTeacher()
    out = tmp_path / "out"
    overrides = [f"student.model={json.dumps(str(tiny_model_dir))}", "student.max_length=32",
                 "student.seed_epochs=2", "student.epochs_per_round=1", "loop.max_rounds=1",
                 "loop.n_hard=2", "loop.n_easy=2"]
    calls: list[str] = []

    def interrupted(method: str) -> ScriptedChatModel:
        calls.append(method)
        if method == "evokd":
            raise KeyboardInterrupt  # the user stops the benchmark during its second run
        return ScriptedChatModel(script=teacher)

    def bench(factory, **kw):
        return harness.run_benchmark("sentiment", ["static", "evokd", "no-aug"], seeds=1, out_dir=out,
                                     runs_dir=tmp_path / "runs", overrides=overrides, chat_model_factory=factory,
                                     console=Console(file=(tmp_path / "console.txt").open("a"), width=200), **kw)

    with pytest.raises(KeyboardInterrupt):
        bench(interrupted)
    partial = json.loads((out / "sentiment-quick.json").read_text())
    assert [r["method"] for r in partial["runs"]] == ["static"] and partial["complete"] is False
    static_tokens = partial["runs"][0]["tokens"]

    # Resumed and stopped again before it reaches the kept run: the kept run stays in the file.
    with pytest.raises(KeyboardInterrupt):
        harness.run_benchmark("sentiment", ["no-aug", "evokd", "static"], seeds=1, out_dir=out,
                              runs_dir=tmp_path / "runs", overrides=overrides, chat_model_factory=interrupted,
                              console=Console(file=(tmp_path / "console.txt").open("a"), width=200), resume=True)
    again = json.loads((out / "sentiment-quick.json").read_text())
    assert [r["method"] for r in again["runs"]] == ["no-aug", "static"]

    calls.clear()
    result = bench(lambda method: calls.append(method) or ScriptedChatModel(script=teacher), resume=True)
    assert calls == ["evokd"]  # static was kept, no-aug needs no teacher
    assert [r["method"] for r in result["runs"]] == ["static", "evokd", "no-aug"] and result["complete"] is True
    assert result["runs"][0]["tokens"] == static_tokens

    # Resumed with more final fits a run: the kept runs get the fits they lack, from their run folders.
    more = bench(lambda method: pytest.fail("no run is redone"), resume=True, fit_seeds=4)
    assert all(len(r["fits"]) == 4 and r["fits"][:3] == k["fits"]
               for r, k in zip(more["runs"], result["runs"], strict=True))
    assert "fitting its pool 4 times" in (tmp_path / "console.txt").read_text()

    # Resumed with fewer methods: the others' runs are set aside in the file, not dropped, and a
    # later resume with every method uses them again.
    fewer = harness.run_benchmark("sentiment", ["static"], seeds=1, out_dir=out, runs_dir=tmp_path / "runs",
                                  overrides=overrides, chat_model_factory=lambda m: pytest.fail("no run is redone"),
                                  console=Console(file=(tmp_path / "console.txt").open("a"), width=200),
                                  resume=True, fit_seeds=4)
    assert [r["method"] for r in fewer["runs"]] == ["static"] and set(fewer["summary"]) == {"static"}
    assert sorted(r["method"] for r in fewer["set_aside"]) == ["evokd", "no-aug"]
    whole = bench(lambda method: pytest.fail("no run is redone"), resume=True, fit_seeds=4)
    assert [r["method"] for r in whole["runs"]] == ["static", "evokd", "no-aug"] and whole["set_aside"] == []

    with pytest.raises(harness.BenchError, match="its settings differ"):
        harness.run_benchmark("sentiment", ["static"], seeds=1, out_dir=out, runs_dir=tmp_path / "runs",
                              overrides=[*overrides, "loop.n_hard=3"], resume=True,
                              chat_model_factory=lambda m: ScriptedChatModel(script=teacher),
                              console=Console(file=(tmp_path / "console.txt").open("a"), width=200))


def test_spending_reads_a_recorded_run() -> None:
    spec = importlib.util.spec_from_file_location("evokd_bench_spending", ROOT / "benchmarks" / "spending.py")
    spending = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(spending)
    run = ROOT / "tests" / "fixtures" / "demo-run"
    got = spending.run_spending(run)
    assert set(got["nodes"]) <= {"analyst", "generator", "verifier"} and got["nodes"]["verifier"] > 0
    # The trace's calls add up to the run's own running total in metrics.jsonl.
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert sum(got["nodes"].values()) == last["tokens_in"] + last["tokens_out"]
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert got["accepted"] == sum(h["accepted"] for h in map(json.loads, (run / "metrics.jsonl").read_text()
                                                             .splitlines()[1:]))
    assert sum(got["reasons"].values()) == got["generated"] - got["accepted"] == sum(
        1 for s in samples if s["intent"] != "seed" and not s["accepted"])
    assert spending.reason_kind("entity 'the city' not found in the text") == "entity not found in the text"


def test_schedule_replay_reproduces_a_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    from evokd.config import load_config
    from evokd.graph.runner import execute

    spec = importlib.util.spec_from_file_location("evokd_schedule_replay", ROOT / "benchmarks" / "schedule_replay.py")
    replay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay)
    cfg = load_config(write_config(tmp_path, tiny_model_dir, max_rounds=2, review_size=2))
    run = execute(cfg, chat_model=ScriptedChatModel(script=SentimentTeacher())).run.root
    curve = [json.loads(line)["f1"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    # The run's own schedule, replayed without a teacher, gives the run's dev curve back.
    same = replay.replay(run, "review")
    assert same["dev_curve"] == [round(f, 4) for f in curve] and same["samples"] > 0
    other = replay.replay(run, "all-1:lr_schedule=linear+learning_rate=1e-5")
    assert other["schedule"] == "all-1:lr_schedule=linear+learning_rate=1e-5" and len(other["dev_curve"]) == len(curve)
    assert replay.max_swing([0.5, 0.7, 0.4, 0.6]) == pytest.approx(0.3)


def test_budget_sweep(tmp_path: Path, tiny_model_dir: Path) -> None:
    # The round cap grows with the budget so that the budget, not the cap, stops a run.
    assert harness.sweep.budget_overrides(20, 6000, 3000) == ["loop.max_tokens=3000"]
    assert harness.sweep.budget_overrides(20, 6000, 12000) == [
        "loop.max_tokens=12000", "loop.max_rounds=40", "loop.patience=40"]
    teacher = BenchTeacher()
    out = tmp_path / "out"
    combined = harness.run_budgets(
        "sentiment", [1500, 3000], ["static", "no-aug"], seeds=1, out_dir=out, runs_dir=tmp_path / "runs",
        overrides=[f"student.model={json.dumps(str(tiny_model_dir))}", "student.max_length=32",
                   "student.seed_epochs=2", "student.epochs_per_round=1", "loop.n_hard=2", "loop.n_easy=2"],
        chat_model_factory=lambda method: ScriptedChatModel(script=teacher),
        console=Console(file=(tmp_path / "console.txt").open("w"), width=200))
    # The profile's own budget (3000 for the demo) keeps its usual file; the other gets its own.
    low = json.loads((out / "sentiment-quick-1500tok.json").read_text())
    assert low["settings"]["max_tokens"] == 1500 and low["summary"]["static"]["tokens"]["mean"] <= 1500 + 200
    assert json.loads((out / "sentiment-quick.json").read_text())["settings"]["max_tokens"] == 3000
    assert combined["budgets"] == [1500, 3000] and set(combined["f1"]) == {"static", "no-aug"}
    assert all(combined["f1"]["static"][b] is not None for b in ("1500", "3000"))
    assert "| static |" in (out / "sentiment-quick-budgets.md").read_text()
    assert (out / "sentiment-quick-budgets.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="budgets"):
        harness.sweep.parse_budgets("3000,lots")


def scripted_teacher(method: str) -> ScriptedChatModel:
    """A fresh scripted teacher per run (module level: a `--jobs` worker process imports it)."""
    return ScriptedChatModel(script=BenchTeacher())


def comparable(rows: list[dict]) -> list[dict]:
    """A benchmark's rows without what differs between two executions (wall time, teacher seconds,
    run folders)."""
    def same(k: str, v: object) -> object:
        if k == "spend":
            return [row[:2] + row[3:] for row in v]  # type: ignore[attr-defined]
        if k == "final_fit":
            return {name: x for name, x in v.items() if name != "seconds"}  # type: ignore[attr-defined]
        return v

    return [{k: same(k, v) for k, v in r.items() if k not in ("seconds", "run_dir", "fit_seconds")} for r in rows]


def test_bench_on_a_config_file_and_jobs_give_the_same_rows(tmp_path: Path, tiny_model_dir: Path) -> None:
    """`evokd bench CONFIG.toml`: any config `evokd run` accepts; `--jobs 2` runs two at a time,
    each in its own process and run folder, with the same rows as one by one."""
    from conftest import write_config

    config = write_config(tmp_path / "task", tiny_model_dir, max_rounds=1)
    config = config.rename(config.with_name("my_task.toml"))
    overrides = ["loop.max_rounds=1", "loop.max_tokens=2000"]
    results = {}
    for jobs in (1, 2):
        results[jobs] = harness.run_benchmark(
            config, ["no-aug", "static", "evokd"], seeds=1, out_dir=tmp_path / f"out{jobs}",
            runs_dir=tmp_path / f"runs{jobs}", overrides=overrides, chat_model_factory=scripted_teacher,
            console=Console(file=(tmp_path / "console.txt").open("a"), width=200), jobs=jobs)
    one, two = results[1], results[2]
    assert one["dataset"] == "my_task" and (tmp_path / "out2" / "my_task-quick.json").is_file()
    assert not any(r.get("error") for r in one["runs"])
    assert [(r["method"], r["seed"]) for r in one["runs"]] == [("no-aug", 0), ("static", 0), ("evokd", 0)]
    assert comparable(two["runs"]) == comparable(one["runs"])
    assert one["settings"]["max_tokens"] == 2000
    # Each graph run has its own run folder.
    folders = [r["run_dir"] for r in two["runs"] if r["run_dir"]]
    assert len(set(folders)) == 2 and all(Path(f).parent == tmp_path / "runs2" / "my_task-quick" for f in folders)


def test_bench_command_takes_a_config_path(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from evokd.cli import app

    result = CliRunner().invoke(app, ["bench", str(tmp_path / "missing.toml")], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "missing.toml" in result.output
    result = CliRunner().invoke(app, ["bench", str(ROOT / "examples/sentiment/config.toml"), "--data", "x"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "--data applies to the named benchmarks" in result.output


def test_pool_methods_in_the_harness(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOKD_CACHE_DIR", str(tmp_path / "cache"))
    teacher = BenchTeacher()
    methods = ["pool-random", "pool", "pool+diverse"]
    out = tmp_path / "out"
    result = harness.run_benchmark(
        "sentiment", methods, seeds=1, profile="quick", out_dir=out, runs_dir=tmp_path / "runs",
        overrides=[f"student.model={json.dumps(str(tiny_model_dir))}", "student.max_length=32",
                   "student.seed_epochs=2", "student.epochs_per_round=1", "loop.max_rounds=1",
                   "loop.pool_per_round=4", "loop.pool_shortlist=20"],
        chat_model_factory=lambda method: ScriptedChatModel(script=teacher),
        console=Console(file=(tmp_path / "console.txt").open("w"), width=200))
    runs = {r["method"]: r for r in result["runs"]}
    assert set(runs) == set(methods) and not any(r.get("error") for r in runs.values())
    assert all(r["tokens"] > 0 and r["rounds"] == 1 for r in runs.values())
    for method in methods:
        samples = [json.loads(x) for x in (Path(runs[method]["run_dir"]) / "samples.jsonl").read_text().splitlines()]
        assert sum(s["intent"] == "pool" for s in samples) == 4, method
    data = json.loads((out / "sentiment-quick.json").read_text())
    assert data["comparisons"]["pool"]["versus_pool_random"]["n"] == 1
    assert "versus_pool_random" not in data["comparisons"]["pool-random"]
    assert "| pool+diverse | " in (out / "sentiment-quick.md").read_text()
    table = (out / "sentiment-quick.md").read_text()
    assert "| method | − pool-random | 95 % interval | seeds won |" in table
    assert re.search(r"^\| pool \| [+-]\d\.\d{4} \| – \| [01] of 1 \| – \|$", table, re.M)  # 1 seed: no σ


class FakeFit:
    """`final_fit` for `more_fits`: a student scoring `test` on test, its report `dev` on dev."""

    def __init__(self, dev: float, test: float) -> None:
        self.dev, self.test = dev, test

    def __call__(self, *args: object, **kwargs: object):
        from types import SimpleNamespace

        student = SimpleNamespace(evaluate=lambda data: SimpleNamespace(f1=self.test))
        return student, SimpleNamespace(dev_f1=self.dev)


@pytest.mark.parametrize(("fit_dev", "ship", "expected"), [
    (0.80, "better_on_dev", 0.9),  # the new fit beats the best round on dev: it counts
    (0.50, "better_on_dev", 0.6),  # it does not: the run would ship its best round, which counts
    (0.50, "final_fit", 0.9)])
def test_more_fits_count_the_student_the_run_would_ship(monkeypatch: pytest.MonkeyPatch, fit_dev: float,
                                                        ship: str, expected: float) -> None:
    from types import SimpleNamespace

    import evokd.student.final_fit as student_final_fit

    monkeypatch.setattr(student_final_fit, "final_fit", FakeFit(fit_dev, 0.9))
    cfg = SimpleNamespace(task=None, student=SimpleNamespace(seed=42), final_fit=SimpleNamespace(ship=ship))
    data = SimpleNamespace(dev=[], test=[])
    graph_row = {"final_fit": {}, "dev_f1": 0.7, "test_f1": 0.75, "best_round_test_f1": 0.6}
    assert harness.more_fits(cfg, graph_row, [], 2, data)["fits"] == [0.75, expected]
    # no-aug and full have no round to fall back on: every fit counts.
    gold_row = {"final_fit": {}, "dev_f1": 0.7, "test_f1": 0.75}
    assert harness.more_fits(cfg, gold_row, [], 2, data)["fits"] == [0.75, 0.9]


def test_ship_rule_applies_the_rule_to_recorded_rows(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("evokd_ship_rule", ROOT / "benchmarks" / "ship_rule.py")
    ship_rule = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship_rule)  # type: ignore[union-attr]

    def row(run: str, final_dev: float, round_dev: float, final_test: float, round_test: float, **extra):
        return {"method": "evokd", "run_dir": run, "final_fit": {"dev_f1": final_dev}, "dev_f1": round_dev,
                "test_f1": final_test, "best_round_test_f1": round_test, **extra}

    runs = [row("a", 0.80, 0.70, 0.75, 0.60),  # the fit wins on dev: its test counts
            row("b", 0.35, 0.55, 0.34, 0.55),  # the round wins on dev: its test counts
            # recorded under the rule: test_f1 is the round's, the fit's is kept apart
            row("c", 0.60, 0.65, 0.50, 0.50, shipped="best round", final_fit_test_f1=0.70)]
    table = tmp_path / "t.json"
    table.write_text(json.dumps({"runs": [*runs, {"method": "full", "final_fit": {"dev_f1": 0.9}, "dev_f1": 0.9,
                                                  "test_f1": 0.9}]}))
    seen: set[str] = set()
    readings = ship_rule.readings(table, seen)
    assert set(readings) == {"evokd"} and ship_rule.readings(table, seen) == {}  # each run counted once
    summary = ship_rule.summarise(readings["evokd"])
    assert summary["final_fit"] == pytest.approx((0.75 + 0.34 + 0.70) / 3)
    assert summary["better_on_dev"] == pytest.approx((0.75 + 0.55 + 0.50) / 3)
    assert summary["oracle"] == pytest.approx((0.75 + 0.55 + 0.70) / 3)
    assert summary["final_fit_shipped"] == 1
