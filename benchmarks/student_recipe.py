"""Which recipe should the final fit use? Fresh students fitted on gold data, and on small noisy
pools that stand in for generated ones, scored on dev and test under each recipe (issue 25).

    python benchmarks/student_recipe.py --cells sst2/64n,sst2/256n --recipes base,lr5e-5 --seeds 2 --resume
    python benchmarks/student_recipe.py --table [--cells ...] [--recipes ...]   # the table only, no fit

A cell is a task and a training set: `sst2/full` (1,000 gold texts; IMDB 500, CoNLL04 all 922,
CoNLL-2003 1,000), `sst2/256`, `sst2/64`, and the same with 15 % of the labels flipped at random
(`sst2/256n`: another label for a text, another type for an entity), as a generated pool's are.
Seed index i draws the training set with seed 100 + i and the noise with 200 + i and fits the student
with seed 42 + i, the same for every recipe, so recipes are compared on the same data.

    task       train (pool)               dev                                 test
    sst2       sst2/train.tsv             1,000 of sst2/dev.tsv               all 872 of sst2/test.tsv
    sst2s      as sst2, whole sentences only (no parse-tree phrases): 6,207 train, 678 dev
    imdb       imdb/train.csv minus dev   1,000 other rows of train.csv       2,000 of imdb/test.csv
    conll04    conll04_train.json (922)   all 231 of conll04_dev.json         all 288 of conll04_test.json
    conll2003  conll2003/train.txt        1,000 of valid.txt                  1,000 of test.txt

(from /work/shared/data, or --data DIR; max_length as bench/configs/*.toml: 128, IMDB 256.)

A recipe is a `[final_fit]` setting (RECIPES). Each fit runs as `final_fit` would (epochs, or more
to last min_steps steps; dev scored after every epoch, or about `epochs` times) and stops after
MAX_PATIENCE dev scores without a gain; the stop any smaller patience would have made is read off
the same dev curve (exactly: training up to it is the same), so one fit gives every patience in
PATIENCES. For each stopping point the best dev epoch's weights are put back
and scored on test, and a temperature is fitted on dev (student/calibration.py): dev and test ECE
before and after. `last` is the last epoch run (no dev-chosen stop, when the fit ran every epoch).
`setfit` is SetFit 1.2 (contrastive pairs on the sentence encoder, then a logistic-regression head;
classification only, `pip install setfit==1.2.0`).

Adds each fit to docs/benchmarks/student_recipe.json as it ends (`--resume`: to an existing file, whose fits
are kept and not run again; several processes may add to one file)
and prints the table: per cell and recipe, mean dev and test F1 over the seeds, at the chosen patience.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import evokd  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported: threads that spin are slow here)
from evokd.bench.derived import whole_sentences
from evokd.config import FinalFitConfig, StudentConfig, TaskConfig, load_config
from evokd.core.files import write_atomic
from evokd.core.records import Sample
from evokd.student.calibration import expected_calibration_error, fit_temperature
from evokd.student.data import cap, read_samples
from evokd.student.final_fit import BestOnDev, schedule
from evokd.student.metrics import classification_report
from evokd.student.model import Student, build_student

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside a checkout (a worktree in ../wt/NAME: two levels up), as evokd bench finds it.
DATA = next((d for d in (ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data") if d.is_dir()),
            ROOT.parent / "shared" / "data")
OUT = ROOT / "docs" / "benchmarks" / "student_recipe.json"
NOISE = 0.15
MAX_PATIENCE = 5
PATIENCES = (2, 3, 5)


@dataclass(frozen=True)
class TaskSpec:
    config: str  # bench/configs/NAME: labels, columns, max_length
    pool: str  # training texts are drawn from this file
    dev: str | None  # None: dev_size other rows of the pool
    test: str
    full: int  # the `full` training set's size
    dev_size: int | None = None
    test_size: int | None = None
    whole_sentences: bool = False  # SST-2: keep the rows that are whole sentences, not parse-tree phrases


TASKS = {
    "sst2": TaskSpec("sst2.toml", "sst2/train.tsv", "sst2/dev.tsv", "sst2/test.tsv", 1000, dev_size=1000),
    # SST-2 as the test file is: whole sentences (6,207 of train.tsv's rows, 678 of dev.tsv's).
    "sst2s": TaskSpec("sst2.toml", "sst2/train.tsv", "sst2/dev.tsv", "sst2/test.tsv", 1000, dev_size=1000,
                      whole_sentences=True),
    "imdb": TaskSpec("imdb.toml", "imdb/train.csv", None, "imdb/test.csv", 500, dev_size=1000, test_size=2000),
    "conll04": TaskSpec("conll04.toml", "conll04/conll04_train.json", "conll04/conll04_dev.json",
                        "conll04/conll04_test.json", 922),
    "conll2003": TaskSpec("conll2003.toml", "conll2003/train.txt", "conll2003/valid.txt", "conll2003/test.txt",
                          1000, dev_size=1000, test_size=1000),
}

BASE = {"epochs": 10, "min_steps": 0, "learning_rate": 1e-4, "lr_schedule": "linear", "batch_size": 16,
        "label_smoothing": 0.0}
# Each recipe changes one thing of BASE (a few change two); `loop` is the per-round student's
# schedule (constant 1e-4, batch 8) with a dev-chosen stop; `old-full` is the `full` baseline as it
# was (2 epochs, no stop: read its `last`).
RECIPES: dict[str, dict[str, Any]] = {
    "base": {},
    "lr5e-5": {"learning_rate": 5e-5},
    "lr2e-4": {"learning_rate": 2e-4},
    "constant": {"lr_schedule": "constant"},
    "bs8": {"batch_size": 8},
    "bs32": {"batch_size": 32},
    "ls0.1": {"label_smoothing": 0.1},
    "ep20": {"epochs": 20},
    "lr5e-5-ep20": {"learning_rate": 5e-5, "epochs": 20},
    "ms300": {"min_steps": 300},
    "ms300-ls0.1": {"min_steps": 300, "label_smoothing": 0.1},
    "loop": {"lr_schedule": "constant", "batch_size": 8},
    "old-full": {"lr_schedule": "constant", "batch_size": 8, "epochs": 2},
    "setfit": {},
}
SETFIT_STEPS = 200  # contrastive steps (16 pairs each): 20 iterations for 64 texts, fewer for more


def recipe_config(name: str) -> FinalFitConfig:
    return FinalFitConfig(**{**BASE, **RECIPES[name], "patience": MAX_PATIENCE})


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclass
class TaskData:
    task: TaskConfig
    student: StudentConfig
    pool: list[Sample]
    dev: list[Sample]
    test: list[Sample]


@functools.cache
def task_data(name: str, data_dir: Path) -> TaskData:
    spec = TASKS[name]
    cfg = load_config(ROOT / "bench" / "configs" / spec.config,
                      [f'data.seed="{data_dir / spec.pool}"', f'data.dev="{data_dir / spec.pool}"'])
    pool = read_samples(data_dir / spec.pool, cfg.task)
    dev_rows = read_samples(data_dir / spec.dev, cfg.task) if spec.dev else []
    if spec.whole_sentences:
        whole = whole_sentences([s.text for s in pool + dev_rows])
        pool, dev_rows = [s for s in pool if s.text in whole], [s for s in dev_rows if s.text in whole]
    if spec.dev is None:  # IMDB: dev is held out of the training pool
        order = list(range(len(pool)))
        random.Random(13).shuffle(order)
        held = set(order[: spec.dev_size])
        dev = [pool[i] for i in sorted(held)]
        pool = [s for i, s in enumerate(pool) if i not in held]
    else:
        dev = cap(dev_rows, spec.dev_size, 13)
    test = cap(read_samples(data_dir / spec.test, cfg.task), spec.test_size, 13)
    return TaskData(cfg.task, cfg.student, pool, dev, test)


def parse_cell(cell: str) -> tuple[str, str, bool]:
    task, _, size = cell.partition("/")
    noisy = size.endswith("n")
    size = size.removesuffix("n")
    if task not in TASKS or not (size == "full" or size.isdigit()):
        raise SystemExit(f"unknown cell {cell!r}: TASK/SIZE[n] with TASK in {', '.join(TASKS)}, SIZE full or a number")
    return task, size, noisy


def flip(samples: list[Sample], task: TaskConfig, seed: int) -> list[Sample]:
    """A copy with NOISE of the labels changed at random: a text's label, or an entity's type."""
    rng = random.Random(seed)
    out = []
    for sample in samples:
        if task.type == "classification":
            if rng.random() < NOISE:
                sample = sample.model_copy(update={"label": rng.choice([x for x in task.labels if x != sample.label])})
        else:
            tags = list(sample.tags or [])
            for i, tag in enumerate(tags):
                if tag.startswith("B-") and rng.random() < NOISE:
                    new = rng.choice([t for t in task.labels if t != tag[2:]])
                    tags[i] = f"B-{new}"
                    for j in range(i + 1, len(tags)):
                        if tags[j] != f"I-{tag[2:]}":
                            break
                        tags[j] = f"I-{new}"
            sample = sample.model_copy(update={"tags": tags})
        out.append(sample)
    return out


def training_set(cell: str, seed_index: int, data_dir: Path) -> tuple[TaskData, list[Sample]]:
    task, size, noisy = parse_cell(cell)
    data = task_data(task, data_dir)
    n = TASKS[task].full if size == "full" else int(size)
    train = cap(data.pool, n, 100 + seed_index)
    return data, flip(train, data.task, 200 + seed_index) if noisy else train


# ---------------------------------------------------------------------------------------------
# One fit
# ---------------------------------------------------------------------------------------------


class Curve(BestOnDev):
    """BestOnDev, also keeping the elapsed seconds at each dev score and the weights of every new
    best (any smaller patience may stop at one of them); it stops the fit at MAX_PATIENCE."""

    def __init__(self, student: Student, dev: list[Sample], epochs: int, every: int, started: float) -> None:
        super().__init__(student, dev, epochs=epochs, every=every, patience=MAX_PATIENCE)
        self.started = started
        self.seconds: list[float] = []
        self.kept: dict[int, Any] = {}  # epoch -> weights

    def __call__(self, epoch: int) -> bool:
        stop = super().__call__(epoch)
        if self.scored_at and self.scored_at[-1] == epoch:
            self.seconds.append(time.perf_counter() - self.started)
            if self.best_epoch == epoch:
                self.kept[epoch] = self.best_weights
        return stop


def pick(curve: list[float], patience: int) -> tuple[int, int]:
    """(index of the kept score, index of the score the fit stops after) under a patience counted in
    dev scores, read off a dev curve (0-based), as BestOnDev would stop."""
    best = 0
    for i, f1 in enumerate(curve):
        if f1 > curve[best]:
            best = i
        if i - best >= patience:
            return best, i
    return best, len(curve) - 1


def scored(student: Student, data: TaskData) -> dict[str, Any]:
    """Test F1 of the current weights; dev-fitted temperature; dev and test ECE before and after it."""
    dev_logits, dev_gold = student.calibration_logits(data.dev)
    test_logits, test_gold = student.calibration_logits(data.test)
    if data.task.type == "classification":  # the logits give the labels: no second pass over test
        labels = student.label_names  # type: ignore[attr-defined]
        predicted = [labels[i] for i in test_logits.argmax(-1).tolist()]
        test_f1 = classification_report([str(s.label) for s in data.test], predicted, data.task.labels).f1
    else:
        test_f1 = student.evaluate(data.test).f1
    t = fit_temperature(dev_logits, dev_gold)
    return {"test_f1": test_f1, "temperature": t,
            "dev_ece_before": expected_calibration_error(dev_logits.softmax(-1), dev_gold),
            "dev_ece_after": expected_calibration_error((dev_logits / t).softmax(-1), dev_gold),
            "test_ece_before": expected_calibration_error(test_logits.softmax(-1), test_gold),
            "test_ece_after": expected_calibration_error((test_logits / t).softmax(-1), test_gold)}


def effective(recipe: str, train_size: int) -> tuple[Any, ...]:
    """What a fit does with a recipe on a training set of this size: two recipes that agree here (as
    `ms300` and `base` on 1,000 texts, which pass 300 steps anyway) are one fit, run once."""
    if recipe == "setfit":
        return ("setfit",)
    r = recipe_config(recipe)
    return (schedule(r, train_size), r.learning_rate, r.lr_schedule, r.warmup_ratio, r.batch_size,
            r.label_smoothing)


def fit_once(cell: str, recipe: str, seed_index: int, data_dir: Path,
             fits: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    if recipe == "setfit":
        return fit_setfit(cell, seed_index, data_dir)
    size = len(training_set(cell, seed_index, data_dir)[1])
    for other in fits or []:
        if ((other["cell"], other["seed"]) == (cell, seed_index) and other["recipe"] in RECIPES
                and effective(other["recipe"], size) == effective(recipe, size)):
            return {**other, "recipe": recipe, "same_as": other.get("same_as", other["recipe"])}
    data, train = training_set(cell, seed_index, data_dir)
    r = recipe_config(recipe)
    seed = 42 + seed_index
    started = time.perf_counter()
    student = build_student(data.task, data.student.model_copy(update={
        "learning_rate": r.learning_rate, "lr_schedule": r.lr_schedule, "warmup_ratio": r.warmup_ratio,
        "batch_size": r.batch_size, "seed": seed}))
    epochs, every = schedule(r, len(train))
    curve = Curve(student, data.dev, epochs, every, started)
    fitted = student.fit(train, epochs=epochs, seed=seed, on_epoch=curve, label_smoothing=r.label_smoothing)
    fit_seconds = time.perf_counter() - started
    last = len(curve.curve) - 1
    at: dict[int, dict[str, Any]] = {last: scored(student, data)}  # the weights in hand are the last score's
    picks = {f"p{p}": pick(curve.curve, p) for p in PATIENCES}
    for kept, _ in picks.values():
        if kept not in at:
            student.restore(curve.kept[curve.scored_at[kept]])
            at[kept] = scored(student, data)

    def point(kept: int, stop: int) -> dict[str, Any]:
        return {"epoch": curve.scored_at[kept], "stop": curve.scored_at[stop], "dev_f1": curve.curve[kept],
                "seconds": curve.seconds[stop], **at[kept]}

    return {"cell": cell, "recipe": recipe, "seed": seed_index, "train_size": len(train), "max_epochs": epochs,
            "epochs_run": fitted.epochs, "steps": fitted.steps, "dev_curve": curve.curve, "scored_at": curve.scored_at,
            "epoch_seconds": curve.seconds, "fit_seconds": fit_seconds, "last": point(last, last),
            **{name: point(kept, stop) for name, (kept, stop) in picks.items()}}


def fit_setfit(cell: str, seed_index: int, data_dir: Path) -> dict[str, Any]:
    """SetFit's own recipe (contrastive fine-tuning of the encoder, then a logistic-regression head)."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from evokd.student.loading import quiet_transformers, resolve_model_path

    data, train = training_set(cell, seed_index, data_dir)
    if data.task.type != "classification":
        raise SystemExit(f"{cell}: SetFit is for classification")
    labels = data.task.labels
    started = time.perf_counter()
    with quiet_transformers():
        model = SetFitModel.from_pretrained(resolve_model_path(data.student.model))
    model.model_body.max_seq_length = data.student.max_length
    args = TrainingArguments(batch_size=16, num_epochs=1, max_steps=SETFIT_STEPS, report_to="none",
                             save_strategy="no", eval_strategy="no", seed=42 + seed_index, show_progress_bar=False)
    rows = Dataset.from_dict({"text": [s.text for s in train], "label": [labels.index(str(s.label)) for s in train]})
    Trainer(model=model, args=args, train_dataset=rows).train()
    fit_seconds = time.perf_counter() - started

    def f1(samples: list[Sample]) -> tuple[float, float]:
        import torch

        probs = torch.as_tensor(model.predict_proba([s.text for s in samples])).float()
        gold = torch.tensor([labels.index(str(s.label)) for s in samples])
        predicted = [labels[i] for i in probs.argmax(-1).tolist()]
        report = classification_report([str(s.label) for s in samples], predicted, labels)
        return report.f1, expected_calibration_error(probs, gold)

    dev_f1, dev_ece = f1(data.dev)
    test_f1, test_ece = f1(data.test)
    seconds = time.perf_counter() - started
    point = {"epoch": 1, "stop": 1, "dev_f1": dev_f1, "seconds": seconds, "test_f1": test_f1,
             "dev_ece_before": dev_ece, "test_ece_before": test_ece}
    return {"cell": cell, "recipe": "setfit", "seed": seed_index, "train_size": len(train), "max_epochs": 1,
            "epochs_run": 1, "steps": SETFIT_STEPS, "dev_curve": [dev_f1], "epoch_seconds": [seconds],
            "fit_seconds": fit_seconds, "last": point, **{f"p{p}": point for p in PATIENCES}}


# ---------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def table(fits: list[dict[str, Any]], cells: list[str], recipes: list[str], at: str) -> str:
    """Per recipe: mean dev / test F1 over seeds in each cell, the mean over the cells every recipe
    shown has, and mean seconds per fit (to the stop)."""
    def cell_of(recipe: str, cell: str, key: str) -> list[float]:
        point = "last" if recipe == "old-full" else at  # the old baseline had no dev-chosen stop
        return [f[point][key] for f in fits if f["recipe"] == recipe and f["cell"] == cell]

    shared = [c for c in cells if all(cell_of(r, c, "dev_f1") for r in recipes)]
    lines = [f"stopping point: {at} ({'last epoch run' if at == 'last' else 'patience ' + at[1:]}); "
             f"dev / test F1, mean over seeds (n = seeds); mean columns over "
             + (f"{len(shared)} cells: {', '.join(shared)}" if shared else "no cell: none is in every row"), "",
             "| recipe | " + " | ".join(cells) + " | mean dev | mean test | s/fit |",
             "|---|" + "---|" * (len(cells) + 3)]
    rows = []
    for recipe in recipes:
        cols = []
        for cell in cells:
            dev, test = cell_of(recipe, cell, "dev_f1"), cell_of(recipe, cell, "test_f1")
            cols.append(f"{mean(dev):.3f} / {mean(test):.3f} ({len(dev)})" if dev else "–")
        dev_mean = mean([mean(cell_of(recipe, c, "dev_f1")) for c in shared])
        test_mean = mean([mean(cell_of(recipe, c, "test_f1")) for c in shared])
        secs = mean([mean(cell_of(recipe, c, "seconds")) for c in shared])
        # No cell every recipe shown has (--recipes lists one never fitted here): no mean to give.
        means = [f"{dev_mean:.3f}", f"{test_mean:.3f}", f"{secs:.0f}"] if shared else ["–"] * 3
        rows.append((dev_mean, f"| {recipe} | " + " | ".join(cols + means) + " |"))
    lines += [line for _, line in sorted(rows, key=lambda r: -r[0] if r[0] == r[0] else 0)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def save(path: Path, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Add a fit to the JSON file as it is now on disk (another process may have added fits since
    this one read it) and return every fit in it."""
    fits = json.loads(path.read_text())["fits"] if path.is_file() else []
    key = (row["cell"], row["recipe"], row["seed"])
    fits = [f for f in fits if (f["cell"], f["recipe"], f["seed"]) != key] + [row]
    head = {"protocol": {"noise": NOISE, "max_patience": MAX_PATIENCE, "patiences": list(PATIENCES), "base": BASE,
                         "recipes": RECIPES, "tasks": {k: vars(v) for k, v in TASKS.items()},
                         "setfit_steps": SETFIT_STEPS}}
    write_atomic(path, json.dumps({**head, "fits": fits}, indent=1) + "\n")
    return fits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="sst2/64n,sst2/256n,conll04/256n")
    parser.add_argument("--recipes", default=",".join(r for r in RECIPES if r != "setfit"))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, default=OUT)
    parser.add_argument("--resume", action="store_true", help="add to --json, keeping its fits")
    parser.add_argument("--table", action="store_true", help="print the table of --json; fit nothing")
    parser.add_argument("--at", default="p3", help="the stopping point the table shows: p2, p3, p5 or last")
    args = parser.parse_args(argv)
    cells = [c for c in args.cells.split(",") if c]
    recipes = [r for r in args.recipes.split(",") if r]
    for cell in cells:
        parse_cell(cell)
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; one of {', '.join(RECIPES)}")
    if not (args.resume or args.table) and args.json.is_file():
        raise SystemExit(f"{args.json} exists: --resume adds to it (its fits are kept), or remove it to start over")
    earlier = json.loads(args.json.read_text()) if args.json.is_file() else {}
    fits: list[dict[str, Any]] = earlier.get("fits", [])
    if not args.table:
        done = {(f["cell"], f["recipe"], f["seed"]) for f in fits}
        todo = [(c, r, s) for s in range(args.seeds) for c in cells for r in recipes if (c, r, s) not in done
                and not (r == "setfit" and TASKS[parse_cell(c)[0]].config.startswith("conll"))]
        print(f"{len(todo)} fits to run ({len(done)} kept)", flush=True)
        for n, (cell, recipe, seed) in enumerate(todo, start=1):
            row = fit_once(cell, recipe, seed, args.data, fits)
            fits = save(args.json, row)
            p3 = row["p3"]
            print(f"[{n}/{len(todo)}] {cell} {recipe} seed {seed}: dev {p3['dev_f1']:.3f} test {p3['test_f1']:.3f} "
                  f"(epoch {p3['epoch']} of {row['epochs_run']} run; last: dev {row['last']['dev_f1']:.3f} "
                  f"test {row['last']['test_f1']:.3f}) {row['fit_seconds']:.0f} s", flush=True)
    shown = [c for c in cells if any(f["cell"] == c for f in fits)]
    print(table(fits, shown, [r for r in recipes if any(f["recipe"] == r for f in fits)], args.at))
    return 0


if __name__ == "__main__":
    sys.exit(main())
