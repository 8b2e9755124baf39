"""Lesson 07's library: transfer sets without some classes, bias shifts chosen on validation,
and the small-data runs (hard vs soft targets) — on the 8x8 digits, 1-2 epochs."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import pytest
import torch

from labkd import TrainConfig, load_data, train_model
from labkd import transfer_sets as tr
from labkd import transfer_sets_figures as trg
from labkd import transfer_sets_findings as trf


@pytest.fixture(scope="module")
def data():
    return load_data("digits")


@pytest.fixture(scope="module")
def teacher(data):
    return train_model("mlp", data, TrainConfig(epochs=3, batch_size=32, lr=0.05), hidden=(64,), use_cache=False,
                       progress=False)


def _brute_force(logits, targets, classes, shifts, only=None):
    out = []
    for b in shifts.tolist():
        z = logits.clone()
        z[:, classes] += b
        wrong = z.argmax(1) != targets
        if only is not None:
            wrong &= torch.isin(targets, torch.tensor(only))
        out.append(int(wrong.sum()))
    return torch.tensor(out)


# -- checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_shift_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="shift must be a finite number"):
        tr.check_shift(bad)
    with pytest.raises(ValueError, match="shifts contains NaN"):
        tr.errors_by_shift(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), [1], [0.0, bad])


def test_shift_type_errors():
    with pytest.raises(TypeError, match="shift must be a number"):
        tr.check_shift(True)
    with pytest.raises(TypeError, match="shift must be a number"):
        tr.check_shift("3.5")
    assert tr.check_shift(torch.tensor(2.5)) == 2.5


def test_transfer_without_validates(data):
    with pytest.raises(ValueError, match="drops every class"):
        tr.transfer_without(data, drop_classes=list(range(10)))
    with pytest.raises(ValueError, match="exactly one"):
        tr.transfer_without(data)
    with pytest.raises(ValueError, match="exactly one"):
        tr.transfer_without(data, drop_classes=[3], keep_classes=[7])
    with pytest.raises(ValueError, match="keep_classes is empty"):
        tr.transfer_without(data, keep_classes=[])
    with pytest.raises(ValueError, match="drop_classes has 10"):
        tr.transfer_without(data, drop_classes=[10])
    with pytest.raises(TypeError, match=r"such as \[3\]"):
        tr.transfer_without(data, drop_classes=3)


def test_transfer_without_filters_the_training_split_only(data):
    no3 = tr.transfer_without(data, drop_classes=[3])
    assert int((no3.train.y == 3).sum()) == 0 and len(no3.train) == len(data.train) - int((data.train.y == 3).sum())
    assert torch.equal(no3.test.y, data.test.y) and torch.equal(no3.val.y, data.val.y)
    assert tr.missing_classes(no3) == [3]
    only = tr.transfer_without(data, keep_classes=[7, 8])
    assert set(only.train.y.tolist()) == {7, 8}
    assert tr.missing_classes(only) == [0, 1, 2, 3, 4, 5, 6, 9]


# -- bias shifts ------------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [[2], [0, 4], [0, 1, 2, 3, 4]])
def test_errors_by_shift_matches_a_loop(classes):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 5, generator=gen) * 2
    targets = torch.randint(0, 5, (300,), generator=gen)
    shifts = tr.shift_grid(6.0, 0.25)
    assert torch.equal(tr.errors_by_shift(logits, targets, classes, shifts), _brute_force(logits, targets, classes, shifts))
    only = [classes[0]]
    assert torch.equal(tr.errors_by_shift(logits, targets, classes, shifts, only=only),
                       _brute_force(logits, targets, classes, shifts, only=only))


def test_errors_by_shift_breaks_ties_like_argmax():
    logits = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
    targets = torch.tensor([2, 1])
    shifts = torch.tensor([-1.0, 0.0, 1.0])
    assert torch.equal(tr.errors_by_shift(logits, targets, [2], shifts), _brute_force(logits, targets, [2], shifts))


def test_choose_shift_recovers_a_planted_bias_and_prefers_small_shifts():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2000, 10, generator=gen) * 2
    planted = logits.clone()
    planted[:, 3] += 3.5
    targets = planted.argmax(1)
    chosen = tr.choose_shift(logits, targets, [3], tr.shift_grid(10.0, 0.1))
    assert abs(chosen - 3.5) < 0.35
    # every shift is equally good when no image changes class: the smallest one wins
    flat = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    assert tr.choose_shift(flat, torch.tensor([0, 1]), [1], torch.tensor([-2.0, -1.0, 0.5, 2.0])) == 0.5


def test_shift_grid():
    grid = tr.shift_grid(1.0, 0.5)
    assert grid.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="must be > 0"):
        tr.shift_grid(0.0)
    with pytest.raises(ValueError, match="max_shift must be a finite"):
        tr.shift_grid(float("nan"))


def _planted_study(seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (1000,), generator=gen)
    logits = torch.randn(1000, 10, generator=gen) + 3 * torch.nn.functional.one_hot(y, 10)
    logits[:, 3] -= 4.0
    return tr.ShiftStudy("no 3s", [3], [3], logits[:500], y[:500], logits[500:], y[500:], [str(i) for i in range(10)])


def test_shift_study_numbers_are_consistent():
    study = _planted_study()
    m = study.summary()
    assert study.shift > 0, "the 3s' logits were pushed down, so the chosen shift raises them"
    assert m["test_errors_shifted"] < m["test_errors"] and m["errors_on_missing_shifted"] < m["errors_on_missing"]
    assert m["val_errors_shifted"] == int(study.val_errors.min())
    assert int(study.errors_per_class(study.shift).sum()) == m["test_errors_shifted"]
    assert m["errors_on_missing"] == int(study.errors_per_class(0.0)[3])
    i = int(torch.argmin((study.shifts - study.shift).abs()))
    assert int(study.test_errors[i]) == study.errors(study.shift)
    assert m["oracle_test_errors"] <= m["test_errors_shifted"]
    with pytest.raises(ValueError, match="split must be"):
        study.errors(0.0, "train")


def test_shift_study_validates():
    study = _planted_study()
    with pytest.raises(ValueError, match="classes"):
        tr.ShiftStudy("x", [12], [3], study.val_logits, study.val_y, study.test_logits, study.test_y, study.class_names)
    with pytest.raises(ValueError, match="10 classes"):
        tr.ShiftStudy("x", [3], [3], study.val_logits, study.val_y, study.test_logits, study.test_y, ["a", "b"])


def test_shift_figure_and_table():
    study = _planted_study()
    fig = trg.shift_figure(study)
    assert isinstance(fig, go.Figure) and len(fig.data) == 5
    assert list(fig.data[1].y) == study.errors_per_class(study.shift).tolist()
    assert fig.data[0].x[3] == "3 (missing)"
    rows = trf.shift_table([study], reference_errors=12)
    assert rows[0]["paper"].startswith("206 errors") and rows[-1]["test errors before"] == "12"
    text = trf.shift_readings([study], fast=True)[0]
    assert f"{study.shift:+.1f}" in text and "Fast mode" in text


def test_missing_class_study_trains_without_the_class(data, teacher):
    config = tr.RECIPES("distil", fast=True, epochs=1, batch_size=64)
    student, study = tr.missing_class_study(data, teacher, config, "no 3s", drop_classes=[3], arch="mlp",
                                            progress=False)
    assert student.history and study.missing == [3] and study.classes == [3]
    assert study.transfer_counts[3] == 0 and study.transfer_counts.sum() < len(data.train)
    assert math.isfinite(study.shift) and study.errors(study.shift, "val") == int(study.val_errors.min())
    with pytest.raises(ValueError, match="loss='distillation'"):
        tr.distil_student(data, teacher, config.replace(loss="cross_entropy"))


# -- soft targets as a regularizer --------------------------------------------------------------


def test_small_transfer(data):
    small = tr.small_transfer(data, 0.1, seed=0)
    assert len(small.train) == math.ceil(0.1 * len(data.train)) and len(small.test) == len(data.test)
    assert not torch.equal(small.train.y, tr.small_transfer(data, 0.1, seed=1).train.y)
    for bad in (0, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="fraction"):
            tr.small_transfer(data, bad)


def test_small_data_runs(data, teacher):
    configs = {arm: tr.RECIPES(arm, fast=True) for arm in (tr.HARD, tr.SOFT, tr.FULL)}
    assert configs[tr.SOFT].loss == "soft_target" and configs[tr.HARD].loss == "cross_entropy"
    assert configs[tr.FULL].epochs == 2 and configs[tr.HARD].schedule == "constant"
    configs = {k: c.replace(batch_size=32) for k, c in configs.items()}
    rows = tr.small_data_runs(data, teacher, 0.1, [0, 1], configs, arch="mlp", progress=False)
    assert [r["arm"] for r in rows] == [tr.HARD, tr.SOFT, tr.HARD, tr.SOFT, tr.FULL]
    for r in rows:
        assert len(r["curve_test"]) == r["epochs"] and len(r["curve_test_loss"]) == r["epochs"]
        assert 1 <= r["stop_epoch"] <= r["epochs"] and r["gap"] == pytest.approx(r["stopped_test_acc"] - r["test_acc"])
        assert math.isfinite(r["test_loss"]) and r["best_test_loss"] <= r["test_loss"]
    assert rows[-1]["n_train"] == len(data.train) and rows[0]["n_train"] < len(data.train)
    assert all("(identical)" in line for line in tr.same_start(rows))

    summary = trf.overfitting_summary(rows)
    assert [s["arm"] for s in summary] == [tr.HARD, tr.SOFT, tr.FULL] and summary[0]["seeds"] == 2
    verdicts = trf.regularizer_verdicts(rows)
    assert verdicts[0].startswith(tr.HARD) and "standard error" in verdicts[0]
    assert any("Final epoch" in v for v in verdicts)
    fig = trg.curves_figure(rows)
    assert isinstance(fig, go.Figure) and len(fig.data) >= 9
    table = trf.regularizer_table(rows)
    assert table[1]["paper (speech, 3% / 100%): train / test frame acc"] == "65.4% / 57.0%"

    again = tr.small_data_runs(data, teacher, 0.1, [0], configs, arch="mlp", reference=False, progress=False)
    assert all(r["cached"] for r in again) and again[0]["curve_test"] == rows[0]["curve_test"]


def test_small_data_runs_validates(data, teacher):
    configs = {arm: tr.RECIPES(arm, fast=True, epochs=1) for arm in (tr.HARD, tr.SOFT, tr.FULL)}
    with pytest.raises(ValueError, match="seeds is empty"):
        tr.small_data_runs(data, teacher, 0.1, [], configs)
    with pytest.raises(ValueError, match="no recipe"):
        tr.small_data_runs(data, teacher, 0.1, [0], {tr.HARD: configs[tr.HARD]})
    with pytest.raises(ValueError, match="fraction"):
        tr.small_data_runs(data, teacher, 0.0, [0], configs)
    with pytest.raises(ValueError, match="no rows for arm"):
        trf.arm_values([], tr.HARD, "gap")


def test_record_comparison_puts_each_measurement_beside_the_papers(monkeypatch) -> None:
    from labkd import results

    monkeypatch.setattr(results, "_recorded", {})
    monkeypatch.delenv(results.RESULTS_ENV, raising=False)
    numbers = {"no3_test_errors": 418, "no3_test_errors_on_missing": 309, "no3_test_errors_shifted": 202,
               "no3_test_errors_on_missing_shifted": 62, "no3_shift": 2.1, "only78_test_error_rate": 0.626,
               "only78_test_error_rate_shifted": 0.306, "only78_shift": -6.1, "small_seeds": [0, 1],
               "small_hard_train_acc": 1.0, "small_hard_test_acc": 0.911}
    rows = trf.record_comparison(numbers, all_classes_errors=128, seeds=[0])
    assert [r["paper"] for r in rows[:2]] == [74, "206 (133)"]
    assert rows[1]["labkd"] == "418 (309)" and "shift +2.1" in rows[2]["labkd"]
    assert rows[3]["labkd"] == "62.6% → 30.6% (shift -6.1)"
    assert rows[-1]["labkd"] == "100.0% / 91.1%" and rows[-1]["seeds"] == [0, 1]   # arms without runs are left out
    assert len(rows) == 5 and len(results.recorded()[results.COMPARISONS]) == 5
