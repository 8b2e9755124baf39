"""Lesson 13's library, labkd.where_next: the course's methods, the literature table, recorded
results, retention, and the size and speed of the course's pairs. Nothing trains."""

from __future__ import annotations

import json

import pytest

from labkd import feature_losses, objectives, taxonomy, where_next
from labkd.data import load_data


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", val_size=100).subset(n_train=64, n_val=32, n_test=32)


def test_course_methods_list_every_registered_objective_and_feature_loss():
    names = [r["loss"] for r in where_next.course_methods()]
    assert names == [*objectives.OBJECTIVES, *feature_losses.FEATURE_LOSSES]
    assert "crd" in names and all(r["lessons"] for r in where_next.course_methods())
    for row in where_next.course_methods():
        assert row["in fit"].startswith("TrainConfig(loss=")
    for row in where_next.LITERATURE:
        assert row["url"].startswith("https://arxiv.org/abs/") and row["in labkd"]


def test_recorded_results_and_retention(tmp_path):
    assert where_next.recorded_results(tmp_path / "missing") == {}
    (tmp_path / "03_fitnets_hints.results.json").write_text(json.dumps(
        {"teacher_accuracy": 0.98, "kd_test_error_pct": 2.5, "notebook_seconds": 30}))
    (tmp_path / "11_kd_taxonomy.results.json").write_text(json.dumps(
        {"teacher_accuracy": 0.99, "rkd_test_accuracy_pct": 97.02, "closest_in_kl": "KD"}))
    (tmp_path / "12_broken.results.json").write_text("{not json")
    found = where_next.recorded_results(tmp_path)
    assert sorted(found) == ["03_fitnets_hints", "11_kd_taxonomy"]
    kept = {(r["notebook"], r["student"]): r["retained %"] for r in where_next.retention(found)}
    assert kept == {("03_fitnets_hints", "kd"): pytest.approx(99.5, abs=0.05),
                    ("11_kd_taxonomy", "rkd"): pytest.approx(98.0, abs=0.05)}
    assert {r["result"] for r in where_next.results_table(found)} == {"teacher_accuracy", "kd_test_error_pct",
                                                                     "rkd_test_accuracy_pct"}


def test_speed_table(digits):
    pairs = {"tiny": (taxonomy.build_teacher(digits), taxonomy.build_student(digits))}
    (row,) = where_next.speed_table(pairs, repeats=1)
    assert row["student params"] < row["teacher params"] and row["student / teacher params"] < 1
    assert row["speed-up x"] > 0
    with pytest.raises(ValueError, match="repeats"):
        where_next.latency_ms(pairs["tiny"][0], digits.input_shape, repeats=0)
    pairs = where_next.course_pairs(digits)
    assert list(pairs)[-1].endswith("(lesson 03)")  # lesson 13 reads the last pair
    lesson11 = next(p for name, p in pairs.items() if name.endswith("(lesson 11)"))
    assert [m.spec for m in lesson11] == [taxonomy.build_teacher(digits).spec, taxonomy.build_student(digits).spec]
