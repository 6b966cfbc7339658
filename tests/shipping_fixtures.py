"""Tiny trained students in run folders, for the predict and export tests (no teacher involved)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT, write_config

NER_DEMO = ROOT / "examples" / "ner_demo" / "data"


def classifier_run(root: Path, model_dir: Path) -> Path:
    """A run folder (config.toml + student/) whose student is the tiny BERT trained on the demo data."""
    config = write_config(root / "cfg", model_dir)
    return trained_run(config, root)


def ner_run(root: Path, model_dir: Path) -> Path:
    lines = [
        'name = "ner-test"',
        f"runs_dir = {json.dumps(str(root / 'runs'))}",
        "[task]", 'type = "ner"', 'labels = ["PER", "ORG", "LOC", "MISC"]',
        "[data]",
        f"seed = {json.dumps(str(NER_DEMO / 'seed.jsonl'))}",
        f"dev = {json.dumps(str(NER_DEMO / 'dev.jsonl'))}",
        "[student]", f"model = {json.dumps(str(model_dir))}", "max_length = 32", "batch_size = 8",
        "learning_rate = 1e-3",
        "[llm]", 'base_url = "http://scripted.invalid/v1"',
    ]
    (root / "cfg").mkdir(parents=True)
    config = root / "cfg" / "config.toml"
    config.write_text("\n".join(lines) + "\n")
    return trained_run(config, root)


def trained_run(config: Path, root: Path) -> Path:
    """root/run: a run folder holding `config` and a student trained on its seed and dev files."""
    from evokd.config import dump_config, load_config
    from evokd.student.data import read_samples
    from evokd.student.model import build_student

    cfg = load_config(config)
    run = root / "run"
    run.mkdir(parents=True)
    (run / "config.toml").write_text(dump_config(cfg))
    student = build_student(cfg.task, cfg.student)
    assert cfg.data.seed is not None and cfg.data.dev is not None
    train = read_samples(cfg.data.seed, cfg.task) + read_samples(cfg.data.dev, cfg.task)
    student.fit(train, epochs=15, seed=0)
    student.save(run / "student")
    return run
