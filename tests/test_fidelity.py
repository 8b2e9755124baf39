"""labkd.fidelity: per-epoch fidelity measurements, the study grid, summaries and decoupled pairs.
Real (tiny) training on the 8x8 digits, 2-3 epochs."""

from __future__ import annotations

import pytest
import torch

from labkd import load_data, metrics
from labkd import fidelity as fd


@pytest.fixture(scope="module")
def data():
    return load_data("digits", val_size=200)


@pytest.fixture(scope="module")
def teachers(data):
    recipe = fd.RECIPES("teacher", fast=True).replace(epochs=3, batch_size=32, jitter=0)
    return fd.train_teachers(data, [0, 1], recipe, hidden=(32, 32), progress=False)


@pytest.fixture(scope="module")
def config():
    return fd.RECIPES("student", fast=True).replace(batch_size=32)


@pytest.fixture(scope="module")
def study(data, teachers, config):
    return fd.fidelity_study(data, teachers, {"16-16": (16, 16), "8-8": (8, 8)}, [0, 1], config, progress=False)


def test_teachers_never_share_the_students_seed(teachers, study):
    for seed, teacher in teachers.items():
        assert teacher.model.spec["seed"] == seed + fd.TEACHER_SEED_OFFSET
        assert teacher.final("test_acc") > 0.5
        students = [r for r in study.runs if r.seed == seed]
        assert students and all(r.model.spec["seed"] == seed for r in students)
    assert fd.RECIPES("teacher", True).seed == fd.TEACHER_SEED_OFFSET  # train_teachers adds the lesson seed


def test_history_measures_fidelity_every_epoch(data, teachers, config, study):
    run = study.runs[0]
    assert len(run.history) == config.epochs
    for h in run.history:
        for m in fd.FIDELITY_METRICS:
            assert m in h
        assert 0 <= h["train_agreement"] <= 1 and 0 <= h["test_agreement"] <= 1
        assert h["train_kl"] >= 0 and h["test_kl"] >= 0
    # the last epoch's numbers are the trained model's
    t_logits = metrics.predict_logits(teachers[run.seed].model, data.test.x)
    s_logits = metrics.predict_logits(run.model, data.test.x)
    assert run.final("test_agreement") == pytest.approx(metrics.agreement(s_logits, t_logits))
    assert run.final("test_kl") == pytest.approx(metrics.mean_kl(t_logits, s_logits), rel=1e-4)
    assert run.final("test_acc") == pytest.approx(metrics.accuracy(s_logits, data.test.y))


def test_runs_are_cached_and_start_alike(data, teachers, config, study):
    again = fd.distil_with_fidelity(data, teachers[0], (16, 16), config.replace(seed=0, jitter=0), progress=False)
    first = next(r for r in study.runs if r.condition == again.condition and r.seed == 0)
    assert again.cached and again.history == first.history
    assert all("identical" in line for line in fd.same_start(study))
    kinds = {(r.method, r.jitter) for r in study.runs}
    assert kinds == {("distilled", 0), ("distilled", 1), (fd.LABELS_ONLY, 0)}
    assert len(study.runs) == 2 * 2 * 3


def test_distillation_copies_the_teacher_better_than_labels(study):
    """Trained on the teacher's soft targets, a student follows it more closely (lower KL) than the
    same network trained on labels: the property the lesson measures."""
    final = {(r["condition"], r["seed"]): r for r in study.final()}
    for seed in study.seeds:
        assert final[("64-16-16-10 · distilled · jitter 0", seed)]["train_kl"] < \
            final[("64-16-16-10 · labels only · jitter 0", seed)]["train_kl"]


def test_summary_and_curves(study):
    lines = fd.summary_rows(study.final(), study.teacher_rows)
    assert lines[0]["condition"].startswith("teacher") and len(lines) == 1 + len(study.conditions)
    assert "±" in lines[1]["test accuracy"]  # two seeds
    curves = study.curves()
    assert set(curves) == set(study.conditions)
    c = curves[study.conditions[0]]
    assert c["test_acc"].shape == (study.epochs,)
    values = [r["test_agreement"] for r in study.final() if r["condition"] == study.conditions[0]]
    assert c["test_agreement"][-1] == pytest.approx(sum(values) / len(values))
    with pytest.raises(ValueError, match="empty"):
        fd.summary_rows([])


def test_decoupled_pairs_find_the_disagreement():
    rows = [{"condition": "A", "test_acc": a, "test_agreement": g, "train_agreement": g, "train_kl": 0.1, "test_kl": k}
            for a, g, k in ((0.95, 0.90, 0.2), (0.951, 0.901, 0.21), (0.949, 0.899, 0.19))]
    rows += [{"condition": "B", "test_acc": a, "test_agreement": g, "train_agreement": g, "train_kl": 0.1, "test_kl": k}
             for a, g, k in ((0.90, 0.97, 0.05), (0.901, 0.971, 0.06), (0.899, 0.969, 0.04))]
    (pair,) = fd.decoupled_pairs(rows)
    assert pair["better_acc"] == "A" and pair["more_faithful"] == "B" and pair["significant"]
    (pair_kl,) = fd.decoupled_pairs(rows, "test_kl")
    assert pair_kl["more_faithful"] == "B", "lower KL is more faithful"
    assert "exceed" in fd.decoupling_sentences(rows)[0]
    aligned = [dict(r, test_agreement=r["test_acc"]) for r in rows]
    assert fd.decoupled_pairs(aligned) == []
    assert "same way" in fd.decoupling_sentences(aligned)[0]
    one_seed = [rows[0], rows[3]]
    assert "no claim" in fd.decoupling_sentences(one_seed)[0]
    with pytest.raises(ValueError, match="metric"):
        fd.decoupled_pairs(rows, "accuracy")


def test_bad_arguments_fail_before_training(data, teachers, config):
    with pytest.raises(ValueError, match="distillation recipe"):
        fd.distil_with_fidelity(data, teachers[0], (8,), config.replace(loss="cross_entropy"))
    with pytest.raises(TypeError, match="Trained"):
        fd.distil_with_fidelity(data, teachers[0].model, (8,), config)
    with pytest.raises(ValueError, match="jitters"):
        fd.fidelity_study(data, teachers, {"s": (8,)}, [-1], config)
    with pytest.raises(ValueError, match="students is empty"):
        fd.fidelity_study(data, teachers, {}, [0], config)
    with pytest.raises(ValueError, match="n_fidelity"):
        fd.fidelity_sample(data, 0)
    assert torch.equal(fd.fidelity_sample(data, None), torch.arange(len(data.train)))
    assert len(fd.fidelity_sample(data, 100)) == 100
    with pytest.raises(ValueError, match="temperature"):
        fd.RECIPES("student", True, temperature=0)


def test_reading_mentions_this_runs_numbers(study):
    text = fd.reading(study)
    best = max((r for r in study.final() if r["method"] == "distilled"), key=lambda r: r["test_agreement"])
    assert "agrees with its teacher" in text and "2 seeds" in text
    assert best["condition"].split(" · ")[0] in text
