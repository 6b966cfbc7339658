"""The final fit (student/final_fit.py) on the tiny student: the loss's weights, soft targets and
label smoothing, calibration (student/calibration.py), the dev-chosen stop, and a temperature that
stays with the saved student through save/load, transformers.pipeline and the ONNX export."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import write_config
from pydantic import ValidationError

from evokd.config import ConfigError, FinalFitConfig, StudentConfig, TaskConfig, load_config
from evokd.core.records import Sample
from evokd.graph.final_fit import weighed
from evokd.student.calibration import expected_calibration_error, fit_temperature, nll
from evokd.student.final_fit import NER_MIN_STEPS, final_fit, for_task, schedule
from evokd.student.model import ClassifierStudent, TaggerStudent, build_student, load_student, training_loss

SENTIMENT = TaskConfig(labels=["negative", "positive"])
NER = TaskConfig(type="ner", labels=["PER", "LOC"])
WORDS = {"positive": ["good", "great"], "negative": ["bad", "awful"]}
# 16 texts a 2-layer, 32-wide BERT learns by heart in a few epochs.
TEXTS = [Sample(text=template.format(word), label=label)
         for template in ["the movie was {}", "a {} film", "{} acting", "the plot is {}"]
         for label, words in WORDS.items() for word in words]


def flipped(samples: list[Sample]) -> list[Sample]:
    return [s.model_copy(update={"label": "positive" if s.label == "negative" else "negative"}) for s in samples]


def tiny(model_dir: Path, **update: object) -> StudentConfig:
    return StudentConfig(model=str(model_dir), max_length=16, batch_size=8, seed=0, **update)


# ---------------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------------

LOGITS = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5]])
GOLD = torch.tensor([0, 1, 1])


def test_plain_loss_is_the_models_own_and_weights_are_a_weighted_mean() -> None:
    per_row = F.cross_entropy(LOGITS, GOLD, reduction="none")
    assert torch.equal(training_loss(LOGITS, GOLD, None), F.cross_entropy(LOGITS, GOLD))
    assert training_loss(LOGITS, GOLD, torch.ones(3)) == pytest.approx(float(per_row.mean()))
    # Weights are relative: 3:1:0 is 0.75 of the first row's loss plus 0.25 of the second's ...
    expected = (3 * per_row[0] + per_row[1]) / 4
    assert training_loss(LOGITS, GOLD, torch.tensor([3.0, 1.0, 0.0])) == pytest.approx(float(expected))
    # ... and the same as 6:2:0; a weight of 0 leaves its row out.
    assert training_loss(LOGITS, GOLD, torch.tensor([6.0, 2.0, 0.0])) == pytest.approx(float(expected))
    assert training_loss(LOGITS, GOLD, torch.zeros(3)) == 0


def test_soft_targets_and_label_smoothing() -> None:
    one_hot = F.one_hot(GOLD, 2).float()
    assert training_loss(LOGITS, one_hot, None) == pytest.approx(float(F.cross_entropy(LOGITS, GOLD)))
    half = torch.full((3, 2), 0.5)
    log_p = LOGITS.log_softmax(-1)
    assert training_loss(LOGITS, half, None) == pytest.approx(float(-(log_p.mean(-1)).mean()))
    # Smoothing e: (1 - e) of the gold class's loss plus e of the mean over every class.
    e = 0.2
    expected = ((1 - e) * -log_p[torch.arange(3), GOLD] + e * -log_p.mean(-1)).mean()
    assert training_loss(LOGITS, GOLD, None, smoothing=e) == pytest.approx(float(expected))


def test_ner_loss_skips_unlabelled_pieces_and_weighs_words_by_their_sentence() -> None:
    gold = torch.tensor([0, -100, 1])
    assert training_loss(LOGITS, gold, None) == pytest.approx(float(F.cross_entropy(LOGITS, gold)))
    per_row = F.cross_entropy(LOGITS, gold, reduction="none")
    weighted = training_loss(LOGITS, gold, torch.tensor([1.0, 5.0, 3.0]))
    assert weighted == pytest.approx(float((per_row[0] + 3 * per_row[2]) / 4))


def test_the_students_loss_reads_sample_weights_and_soft_labels(tiny_model_dir: Path) -> None:
    student = build_student(SENTIMENT, tiny(tiny_model_dir))
    assert isinstance(student, ClassifierStudent)
    a, b = Sample(text="a good film", label="positive"), Sample(text="bad acting", label="negative")

    def loss(*batch: Sample) -> float:
        encoding = student._encode(list(batch), train=True)
        labels = encoding.pop("labels")
        with torch.no_grad():
            return float(student._loss(list(batch), student.model(**encoding).logits, labels, 0.0))

    alone = loss(a)
    assert loss(a, b.model_copy(update={"weight": 0.0})) == pytest.approx(alone, abs=1e-5)
    assert loss(a, b) != pytest.approx(alone, abs=1e-5)
    # A soft label that is sure is the hard label; an even one is the mean of both labels' losses.
    assert loss(a.model_copy(update={"soft_label": {"positive": 1.0}})) == pytest.approx(alone, abs=1e-6)
    even = loss(a.model_copy(update={"soft_label": {"positive": 0.5, "negative": 0.5}}))
    assert even == pytest.approx((alone + loss(a.model_copy(update={"label": "negative"}))) / 2, abs=1e-5)


def test_bad_weights_and_soft_labels_are_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ValidationError, match="summing to 1"):
        Sample(text="x", label="positive", soft_label={"positive": 0.3})
    with pytest.raises(ValidationError):
        Sample(text="x", label="positive", weight=-1)
    student = build_student(SENTIMENT, tiny(tiny_model_dir))
    with pytest.raises(ValueError, match="soft_label names"):
        student.fit([Sample(text="x", label="positive", soft_label={"neutral": 1.0})], epochs=1, seed=0)
    tagger = build_student(NER, tiny(tiny_model_dir))
    with pytest.raises(ValueError, match="hard tags"):
        tagger.fit([Sample(text="Ann", tokens=["Ann"], tags=["B-PER"], soft_label={"PER": 1.0})], epochs=1, seed=0)


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------


def test_ece_on_a_known_case() -> None:
    probs = torch.tensor([[0.95, 0.05], [0.15, 0.85], [0.25, 0.75], [0.35, 0.65]])
    gold = torch.tensor([0, 0, 1, 1])  # right at 0.95, wrong at 0.85, right at 0.75 and 0.65
    # Ten bins: one prediction in each of four bins, |accuracy - confidence| averaged over the four.
    assert expected_calibration_error(probs, gold, bins=10) == pytest.approx((0.05 + 0.85 + 0.25 + 0.35) / 4)
    # Two bins: all four in (0.5, 1], accuracy 0.75 against mean confidence 0.8.
    assert expected_calibration_error(probs, gold, bins=2) == pytest.approx(0.05)
    assert expected_calibration_error(probs[:0], gold[:0]) == 0.0


def overconfident(n: int = 2000, accuracy: float = 0.7, scale: float = 8.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits that are right 70 % of the time and say so with p ~ 0.9997."""
    generator = torch.Generator().manual_seed(0)
    gold = torch.randint(0, 3, (n,), generator=generator)
    wrong = (gold + torch.randint(1, 3, (n,), generator=generator)) % 3
    predicted = torch.where(torch.rand(n, generator=generator) < accuracy, gold, wrong)
    logits = scale * F.one_hot(predicted, 3).float() + 0.5 * torch.randn(n, 3, generator=generator)
    return logits, gold


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model() -> None:
    logits, gold = overconfident()
    before = expected_calibration_error(logits.softmax(-1), gold)
    t = fit_temperature(logits, gold)
    after = expected_calibration_error((logits / t).softmax(-1), gold)
    assert before > 0.25 and t > 2 and after < 0.05
    assert nll(logits, gold, t) < nll(logits, gold)


def test_fit_temperature_finds_the_temperature_that_was_applied() -> None:
    # Labels drawn from softmax(z) are calibrated for z; logits 3z are then best read at T = 3.
    generator = torch.Generator().manual_seed(1)
    z = 2 * torch.randn(20000, 4, generator=generator)
    gold = torch.multinomial(z.softmax(-1), 1, generator=generator).squeeze(1)
    assert fit_temperature(3 * z, gold) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(z[:0], gold[:0]) == 1.0


# ---------------------------------------------------------------------------------------------
# The temperature travels with the student
# ---------------------------------------------------------------------------------------------


def test_temperature_survives_save_load_pipeline_and_onnx(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the export needs the onnx extra")
    from transformers import pipeline

    from evokd.student.export import export_student
    from evokd.student.onnx_predict import load_exported
    from evokd.student.predictor import Item

    cfg = load_config(write_config(tmp_path / "cfg", tiny_model_dir))
    student = build_student(cfg.task, cfg.student)
    student.fit(TEXTS, epochs=3, seed=0)
    before, _ = student.calibration_logits(TEXTS)
    student.apply_temperature(0.25)
    after, _ = student.calibration_logits(TEXTS)
    assert torch.allclose(after, before / 0.25, atol=1e-4)
    assert [p.label for p in student.predict(TEXTS)] == [cfg.task.labels[i] for i in before.argmax(-1).tolist()]
    calibrated = [max((p.probs or {}).values()) for p in student.predict(TEXTS)]

    student.save(tmp_path / "student")
    reloaded = load_student(tmp_path / "student", cfg.task, cfg.student)
    assert reloaded.temperature == 0.25
    assert [max((p.probs or {}).values()) for p in reloaded.predict(TEXTS)] == pytest.approx(calibrated, abs=1e-5)
    classify = pipeline("text-classification", model=str(tmp_path / "student"))
    assert [r["score"] for r in classify([s.text for s in TEXTS])] == pytest.approx(calibrated, abs=1e-5)

    export_student(tmp_path / "student", cfg, TEXTS, tmp_path / "onnx")
    predictor, _ = load_exported(tmp_path / "onnx")
    onnx_scores = [r.score for r in predictor.predict([Item(text=s.text) for s in TEXTS])]
    assert onnx_scores == pytest.approx(calibrated, abs=1e-4)
    uncalibrated = before.softmax(-1).max(-1).values.tolist()
    assert max(abs(a - b) for a, b in zip(onnx_scores, uncalibrated, strict=True)) > 0.01


def test_a_taggers_temperature_scales_its_word_logits(tiny_model_dir: Path) -> None:
    tagger = build_student(NER, tiny(tiny_model_dir))
    assert isinstance(tagger, TaggerStudent)
    sentence = Sample(text="Ann lives in Rome", tokens=["Ann", "lives", "in", "Rome"],
                      tags=["B-PER", "O", "O", "B-LOC"])
    logits, gold = tagger.calibration_logits([sentence])
    assert logits.shape == (4, 5) and gold.tolist() == [tagger.label_ids[t] for t in sentence.tags or []]
    tagger.apply_temperature(2.0)
    assert torch.allclose(tagger.calibration_logits([sentence])[0], logits / 2, atol=1e-5)
    assert tagger.temperature == 2.0


# ---------------------------------------------------------------------------------------------
# The final fit
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def knows_the_task(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny student that labels TEXTS right, saved as a base model to fit from."""
    student = build_student(SENTIMENT, tiny(tiny_model_dir, learning_rate=3e-3))
    student.fit(TEXTS, epochs=10, seed=0)
    assert student.evaluate(TEXTS).f1 == 1.0
    out = tmp_path_factory.mktemp("knows-the-task")
    student.save(out)
    return out


def test_the_dev_chosen_stop_restores_the_best_epoch(knows_the_task: Path) -> None:
    # Trained on contradicting labels, the student gets worse on dev epoch by epoch: the fit must
    # stop and hand back its first epoch's weights, not its last.
    recipe = FinalFitConfig(epochs=8, learning_rate=3e-3, lr_schedule="constant", batch_size=8, patience=3,
                            calibrate=False)
    steps: list[tuple[int, int]] = []
    student, report = final_fit(SENTIMENT, tiny(knows_the_task), recipe, flipped(TEXTS), TEXTS, seed=0,
                                on_step=lambda done, total: steps.append((done, total)))
    assert report.best_epoch == 1 and report.epochs_run == 4 < recipe.epochs
    assert report.dev_curve[0] == 1.0 and report.dev_curve[-1] < 0.5
    assert student.evaluate(TEXTS).f1 == report.dev_f1 == 1.0
    assert steps[-1] == (8, 16) and report.steps == 8  # 2 steps an epoch; the schedule spans 8 epochs
    assert report.temperature == 1.0 and student.temperature == 1.0


def test_final_fit_calibrates_on_dev_and_is_reproducible(knows_the_task: Path, tmp_path: Path) -> None:
    recipe = FinalFitConfig(epochs=2, learning_rate=1e-3, batch_size=8, patience=1)
    train, dev = TEXTS[::2], TEXTS[1::2]
    student, report = final_fit(SENTIMENT, tiny(knows_the_task), recipe, train, dev, seed=5)
    assert report.train_size == 8 and 1 <= report.best_epoch <= report.epochs_run <= 2
    assert report.dev_curve[report.best_epoch - 1] == max(report.dev_curve) == report.dev_f1
    assert report.temperature != 1.0 and student.temperature == pytest.approx(report.temperature)
    assert report.dev_nll_after <= report.dev_nll_before
    logits, gold = student.calibration_logits(dev)
    assert expected_calibration_error(logits.softmax(-1), gold) == pytest.approx(report.dev_ece_after, abs=1e-6)
    # The recipe recorded is the one used, its task-dependent default filled in.
    assert math.isfinite(report.dev_ece_before) and report.recipe == recipe.model_copy(update={"min_steps": 0})
    again, _ = final_fit(SENTIMENT, tiny(knows_the_task), recipe, train, dev, seed=5)
    assert again.predict(dev) == student.predict(dev)
    with pytest.raises(ValueError, match="no dev samples"):
        final_fit(SENTIMENT, tiny(knows_the_task), recipe, train, [], seed=5)


def test_a_small_set_gets_more_epochs_and_fewer_dev_scores(knows_the_task: Path) -> None:
    recipe = FinalFitConfig(epochs=2, min_steps=20, learning_rate=1e-3, batch_size=8, patience=5, calibrate=False)
    assert schedule(recipe, 16) == (10, 5)  # 2 steps an epoch: 10 epochs, dev scored after 5 and 10
    assert schedule(recipe, 1000) == (2, 1)  # 125 steps an epoch already pass min_steps
    assert schedule(recipe.model_copy(update={"epochs": 3}), 16) == (10, 4)  # scored after 4, 8 and the last, 10
    _, report = final_fit(SENTIMENT, tiny(knows_the_task), recipe, TEXTS, TEXTS, seed=0)
    assert (report.scored_at, report.steps, report.max_epochs) == ([5, 10], 20, 10)


def test_final_fit_config_section(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_config(tmp_path, tiny_model_dir)
    assert load_config(path).final_fit == FinalFitConfig()
    cfg = load_config(path, ["final_fit.patience=5", 'final_fit.lr_schedule="constant"'])
    assert (cfg.final_fit.patience, cfg.final_fit.lr_schedule) == (5, "constant")
    with pytest.raises(ConfigError, match=r"final_fit\.epoch"):
        load_config(path, ["final_fit.epoch=3"])
    with pytest.raises(ConfigError, match=r"final_fit\.label_smoothing"):
        load_config(path, ["final_fit.label_smoothing=1.5"])


def test_the_pool_can_weigh_each_sample_by_the_verifiers_probability() -> None:
    asked = {"text": "A fine film.", "label": "positive", "teacher_p": 0.75, "accepted": True}
    seed = {"text": "Dull.", "label": "negative", "accepted": True}
    assert weighed(asked, by_teacher=True).weight == 0.75
    assert weighed(seed, by_teacher=True).weight == 1.0
    assert weighed(asked, by_teacher=False).weight == 1.0


def test_min_steps_defaults_by_task() -> None:
    """min_steps None: a tagger gets 300 steps at least (a few sentences tag nothing for their first
    steps), a classifier none; a value given is kept."""
    ner = SENTIMENT.model_copy(update={"type": "ner"})
    assert for_task(FinalFitConfig(), ner).min_steps == NER_MIN_STEPS == 300
    assert for_task(FinalFitConfig(), SENTIMENT).min_steps == 0
    assert for_task(FinalFitConfig(min_steps=7), ner).min_steps == 7
    assert schedule(for_task(FinalFitConfig(), ner), 13) == (300, 30)  # 1 step an epoch, dev scored 10 times
