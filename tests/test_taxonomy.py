"""Lesson 11 and 13's library: the ``feature_kd`` objective of ``fit`` and labkd.taxonomy.

Everything runs on the 8x8 digits with the lesson's CNNs (their last layers give 2x2 maps there),
one epoch, so the file stays fast.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from labkd import feature_losses, fitnets, taxonomy
from labkd.data import load_data
from labkd.train import TrainConfig, fit

FAST = fitnets.plan(fast=True)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", val_size=100).subset(n_train=320, n_val=64, n_test=128)


@pytest.fixture(scope="module")
def teacher(digits):
    return fitnets.train_teacher(digits, FAST, progress=False)


def feature_config(**changes) -> TrainConfig:
    base = dict(epochs=1, batch_size=32, lr=0.05, loss="feature_kd", alpha=0.0, feature_loss="attention",
                hint_layer="conv3", guided_layer="conv6")
    return TrainConfig(**{**base, **changes})


def student(data, seed: int = 0):
    return fitnets.build_student(data.input_shape, data.num_classes, seed=seed)


# --- TrainConfig(loss="feature_kd") ----------------------------------------------------------


@pytest.mark.parametrize("changes, word", [
    ({"feature_loss": "crd"}, "feature_loss='crd'"),
    ({"feature_loss": None}, "feature_loss=None"),
    ({"feature_weight": -1.0}, "feature_weight"),
    ({"feature_weight": float("nan")}, "feature_weight"),
    ({"hint_layer": None}, "hint_layer"),
    ({"guided_layer": None}, "guided_layer"),
    ({"loss": "distillation"}, "only used with loss='feature_kd'"),
])
def test_config_rejects_bad_feature_settings(changes, word):
    with pytest.raises(ValueError, match=word.replace("(", r"\(").replace("[", r"\[")):
        feature_config(**changes)


def test_feature_kd_trains_and_logs_the_feature_term(digits, teacher):
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    model = student(digits)
    result = fit(model, digits, feature_config(feature_weight=1.0), teacher=teacher.model, progress=False)
    row = result.history[-1]
    assert math.isfinite(row["loss"]) and 0 <= row["feature_loss"] <= 2 and 0 <= row["train_acc"] <= 1
    assert all(torch.equal(before[k], v) for k, v in teacher.model.state_dict().items()), "the teacher changed"
    assert not teacher.model.training


def test_the_feature_term_pulls_the_student_towards_the_teacher(digits, teacher):
    x = digits.test.x[:100]
    far = fit(student(digits), digits, feature_config(feature_weight=0.0, epochs=2), teacher=teacher.model,
              progress=False)
    near = fit(student(digits), digits, feature_config(feature_weight=5.0, epochs=2), teacher=teacher.model,
               progress=False)
    d_far = taxonomy.probe(far.model, teacher, x)["attention"]
    d_near = taxonomy.probe(near.model, teacher, x)["attention"]
    assert d_near < d_far, (d_near, d_far)


def test_feature_kd_with_beta_zero_is_distillation(digits, teacher):
    kd = fit(student(digits), digits, TrainConfig(epochs=1, batch_size=32, loss="distillation"), teacher=teacher.model,
             progress=False)
    fkd = fit(student(digits), digits, feature_config(alpha=0.9, feature_weight=0.0), teacher=teacher.model,
              progress=False)
    assert fkd.history[0]["loss"] == pytest.approx(kd.history[0]["loss"], rel=1e-4)
    assert fkd.history[0]["test_acc"] == pytest.approx(kd.history[0]["test_acc"], abs=0.02)


def test_layers_are_checked_before_training(digits, teacher):
    with pytest.raises(ValueError, match="guided_layer"):  # 4x4 student maps against 2x2 teacher maps
        fit(student(digits), digits, feature_config(guided_layer="conv3"), teacher=teacher.model, progress=False)
    with pytest.raises(ValueError, match="hint_layer='conv9'"):
        fit(student(digits), digits, feature_config(hint_layer="conv9"), teacher=teacher.model, progress=False)
    with pytest.raises(ValueError, match="needs the teacher model"):
        fit(student(digits), digits, feature_config(), teacher_logits=torch.zeros(len(digits.train), 10),
            progress=False)


# --- labkd.taxonomy ----------------------------------------------------------------------------


def test_methods_change_only_the_loss():
    base = fitnets.student_config(FAST)
    for name, method in taxonomy.METHODS.items():
        cfg = method.config(base)
        assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.seed) == (base.lr, base.epochs, base.batch_size, base.seed)
    assert taxonomy.METHODS["RKD"].config(base, beta=3.0).feature_weight == 3.0
    with pytest.raises(ValueError, match="beta only applies"):
        taxonomy.METHODS["KD"].config(base, beta=3.0)
    with pytest.raises(ValueError, match="methods"):
        taxonomy.check_methods(["KD", "FitNets"])
    assert [r["method"] for r in taxonomy.methods_table()] == list(taxonomy.METHODS_DEFAULT)


def test_probe_is_zero_for_the_teacher_itself(digits, teacher):
    x = digits.test.x[:50]
    same = taxonomy.probe(teacher, teacher, x, hint_layer="conv3", guided_layer="conv3")
    assert all(abs(v) < 1e-5 for v in same.values()), same
    other = taxonomy.probe(student(digits), teacher, x)
    assert all(v > 0 for v in other.values())
    with pytest.raises(ValueError, match="at least 2 images"):
        taxonomy.probe(teacher, teacher, x[:1])


@pytest.fixture(scope="module")
def rows(digits, teacher):
    return taxonomy.compare(digits, teacher, ["labels only", "RKD"], [0], fitnets.student_config(FAST), n_probe=64,
                            progress=False)


def test_compare_rows_and_summaries(rows):
    assert [r["method"] for r in rows] == ["labels only", "RKD"]
    assert rows[0]["start_norm"] == rows[1]["start_norm"]  # the same initial weights
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["agreement"] <= 1 and len(r["curve"]) == FAST.epochs
        assert set(taxonomy.PROBES) <= set(r)
    table = taxonomy.summarize(rows)
    assert table[1]["family"] == "relation" and "±" not in table[1]["test accuracy %"]
    assert "agreement with teacher %" in table[0]
    assert taxonomy.PROBES["kl"] not in taxonomy.summarize(rows, probes=False)[0]
    assert "One seed only" in taxonomy.verdict(rows, "RKD", "labels only")
    results = taxonomy.key_results(rows)
    assert results["rkd_test_accuracy_pct"] == round(100 * rows[1]["accuracy"], 2)
    assert results["closest_in_relation"] in ("labels only", "RKD")
    assert taxonomy.best_method(rows) in ("labels only", "RKD")
    assert len(taxonomy.comparison_figure(rows, 0.9).data) == 8
    assert len(taxonomy.match_figure(rows).data[0].z) == 2


def test_verdict_with_seeds_compares_against_the_spread():
    rows = [{"method": m, "accuracy": a} for m, a in
            [("A", 0.90), ("A", 0.91), ("A", 0.92), ("B", 0.80), ("B", 0.81), ("B", 0.79)]]
    assert "Larger than twice the seed spread" in taxonomy.verdict(rows, "A", "B")
    rows += [{"method": "C", "accuracy": a} for a in (0.905, 0.915, 0.91)]
    assert "Within twice the seed spread" in taxonomy.verdict(rows, "A", "C")
    with pytest.raises(ValueError, match="'D'"):
        taxonomy.verdict(rows, "A", "D")


def test_relation_snapshot_and_attention_figure(digits, teacher):
    snap = taxonomy.relation_snapshot(teacher, {"KD": student(digits)}, digits, per_class=1)
    assert snap.labels.tolist() == list(range(10)) and snap.methods == ["KD"]
    assert snap.distances["teacher"].shape == (10, 10)
    fig = taxonomy.attention_figure(teacher, digits.test.x[:2])
    assert len(fig.data) == 2 * (1 + len(teacher.model.feature_names))
    with pytest.raises(ValueError, match="students is empty"):
        taxonomy.relation_snapshot(teacher, {}, digits)


# --- lesson 13 ---------------------------------------------------------------------------------


def test_course_methods_list_every_registered_loss():
    from labkd import losses

    names = [r["loss"] for r in taxonomy.course_methods()]
    assert names == [*losses.LOSSES, *feature_losses.FEATURE_LOSSES]
    for row in taxonomy.course_methods():
        assert row["in fit"].startswith("TrainConfig(loss=")
    for row in taxonomy.LITERATURE:
        assert row["url"].startswith("https://arxiv.org/abs/") and row["in labkd"]


def test_recorded_results_and_retention(tmp_path):
    assert taxonomy.recorded_results(tmp_path / "missing") == {}
    (tmp_path / "03_fitnets_hints.results.json").write_text(json.dumps(
        {"teacher_accuracy": 0.98, "kd_test_error_pct": 2.5, "notebook_seconds": 30}))
    (tmp_path / "11_kd_taxonomy.results.json").write_text(json.dumps(
        {"teacher_accuracy": 0.99, "rkd_test_accuracy_pct": 97.02, "closest_in_kl": "KD"}))
    (tmp_path / "12_broken.results.json").write_text("{not json")
    found = taxonomy.recorded_results(tmp_path)
    assert sorted(found) == ["03_fitnets_hints", "11_kd_taxonomy"]
    kept = {(r["notebook"], r["student"]): r["retained %"] for r in taxonomy.retention(found)}
    assert kept == {("03_fitnets_hints", "kd"): pytest.approx(99.5, abs=0.05),
                    ("11_kd_taxonomy", "rkd"): pytest.approx(98.0, abs=0.05)}
    assert {r["result"] for r in taxonomy.results_table(found)} == {"teacher_accuracy", "kd_test_error_pct",
                                                                     "rkd_test_accuracy_pct"}


def test_speed_table(digits):
    pairs = {"tiny": (fitnets.build_teacher(digits.input_shape), fitnets.build_student(digits.input_shape))}
    (row,) = taxonomy.speed_table(pairs, repeats=1)
    assert row["student params"] < row["teacher params"] and row["student / teacher params"] < 1
    assert row["speed-up x"] > 0
    with pytest.raises(ValueError, match="repeats"):
        taxonomy.latency_ms(pairs["tiny"][0], digits.input_shape, repeats=0)
