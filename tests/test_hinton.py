"""labkd.hinton: the loops and measurements of lesson 06 (Hinton et al.'s MNIST experiments).

Real training on the bundled 8x8 digits (one epoch, small batches), so the file runs in seconds;
the cache is the session's temporary folder (see conftest).
"""

from __future__ import annotations

import math

import pytest
import torch

from labkd import hinton, load_data, losses, sweeps, sweeps_findings, train_model
from labkd.train import TrainConfig


@pytest.fixture(scope="module")
def data():
    return load_data("digits", val_size=200)


@pytest.fixture(scope="module")
def teacher(data):
    return train_model("mlp", data, TrainConfig(epochs=3, batch_size=32, lr=0.05), hidden=(64, 64), progress=False)


@pytest.fixture(scope="module")
def base():
    return hinton.RECIPES("student", True, epochs=1, warmup_epochs=0, batch_size=64)


@pytest.fixture(scope="module")
def grid(data, teacher, base):
    return hinton.reproduce_table(data, teacher, seeds=[0, 1], base_config=base, progress=False)


# -- recipes and the gap ------------------------------------------------------------------


def test_student_recipes():
    full, fast = hinton.RECIPES("student", False), hinton.RECIPES("student", True)
    assert fast.epochs < full.epochs and fast.warmup_epochs < fast.epochs
    assert (fast.lr, fast.batch_size) == (full.lr, full.batch_size), "fast mode only shortens the schedule"
    assert full.loss == "cross_entropy" and full.jitter == 0 and full.max_norm is None, "the paper's student is unregularised"
    assert hinton.RECIPES("student", False, seed=3, epochs=7).replace(seed=0) == hinton.RECIPES("student", False, epochs=7)
    with pytest.raises(ValueError, match="epochs"):
        hinton.RECIPES("student", False, epochs=0)
    with pytest.raises(TypeError):
        hinton.RECIPES("student", False, epoch=3)
    small = hinton.RECIPES("small_student", False)
    assert small.warmup_epochs == 0 and small.lr < full.lr
    assert hinton.RECIPES("small_student", True).epochs < small.epochs
    with pytest.raises(ValueError, match="not a recipe"):
        hinton.RECIPES("teacher", False)


def test_paper_teacher_recipe():
    from labkd import zoo

    full = zoo.RECIPES("paper_teacher", False)
    assert full.max_norm is not None and full.jitter == 2 and full.warmup_epochs > 0
    assert full != zoo.RECIPES("teacher", False), "lesson 06's teacher must not replace the shared standard one"
    fast = zoo.RECIPES("paper_teacher", True, seed=4)
    assert fast.epochs < full.epochs and fast.seed == 4 and fast.max_norm == full.max_norm


def test_lesson06_teacher_is_its_own_cache_entry(data):
    from labkd import models, zoo
    from labkd.experiments import model_key

    recipe = zoo.RECIPES("lesson06_teacher", False)
    assert recipe.jitter > 0 and zoo.RECIPES("lesson06_teacher", True).epochs < recipe.epochs
    assert zoo.LESSON06_TEACHER_MODEL and set(zoo.LESSON06_TEACHER_MODEL) <= set(models.PRESETS["hinton_teacher"])
    standard = model_key("hinton_teacher", data, zoo.RECIPES("teacher", False))
    assert model_key("hinton_teacher", data, recipe, **zoo.LESSON06_TEACHER_MODEL) != standard, \
        "lesson 06's teacher must not share (or replace) the standard teacher's cache entry"
    assert zoo.RECIPES["teacher"] == TrainConfig(epochs=100, batch_size=128, lr=0.05, jitter=2), \
        "the standard teacher's recipe (lessons 01, 02, 07-12) is unchanged"


def test_teacher_words():
    from labkd import zoo

    words = hinton.teacher_words()
    dropout = zoo.LESSON06_TEACHER_MODEL["dropout"]
    assert f"{dropout * 100:g} % on the hidden units" in words and f"±{zoo.RECIPES['lesson06_teacher'].jitter} px" in words
    assert ("no max-norm" in words) == (zoo.RECIPES["lesson06_teacher"].max_norm is None)
    with pytest.raises(TypeError, match="fast"):
        hinton.teacher_words("yes")


def test_all_training_images(data):
    full = hinton.all_training_images(data)
    assert len(full.train) == len(data.train) + len(data.val)
    assert torch.equal(full.train.x[len(data.train):], data.val.x) and torch.equal(full.test.y, data.test.y)
    assert full.spec["all_training"] and full.fingerprint() != data.fingerprint()
    with pytest.raises(ValueError, match="already holds all training images"):
        hinton.all_training_images(full)
    with pytest.raises(TypeError, match="data must be a labkd.Data"):
        hinton.all_training_images(data.train)


def test_validation_runs_are_tabulated():
    rows = hinton.validation_table()
    assert len(rows) == len(hinton.VALIDATION_RUNS)
    assert all(isinstance(r["seed"], int) and r["seed"] >= 0 for r in rows)  # the development seed of each run
    assert {r["model"] for r in rows if r["decided"]} >= {"teacher", "800-800 distilled, T = 20"}


def test_gap_closed():
    assert hinton.gap_closed(146, 74, 67) == pytest.approx(72 / 79)
    assert hinton.gap_closed(150, 100, 100) == 1.0 and hinton.gap_closed(150, 150, 100) == 0.0
    assert hinton.gap_closed(120, 130, 80) < 0
    assert math.isnan(hinton.gap_closed(100, 90, 120)), "no gap when the teacher is worse"
    assert math.isnan(hinton.gap_closed(100, 90, 100))
    with pytest.raises(ValueError, match="teacher_errors"):
        hinton.gap_closed(100, 90, -1)
    with pytest.raises(ValueError, match="baseline_errors"):
        hinton.gap_closed(True, 90, 10)


def test_bad_arguments_fail_before_training(data, teacher, base):
    with pytest.raises(TypeError, match="teacher must be a labkd Trained"):
        hinton.reproduce_table(data, teacher.model, [0], base)
    with pytest.raises(TypeError, match="data must be a labkd.Data"):
        hinton.reproduce_table(data.train, teacher, [0], base)
    with pytest.raises(TypeError, match="base_config"):
        hinton.small_student_sweep(data, teacher, [1, 4], [0], {"epochs": 1})
    with pytest.raises(ValueError, match="alpha must be > 0"):
        hinton.reproduce_table(data, teacher, [0], base, alpha=0.0)
    with pytest.raises(ValueError, match="temperature"):
        hinton.reproduce_table(data, teacher, [0], base, temperature=-1)
    with pytest.raises(ValueError, match="empty"):
        hinton.matching_study(data, teacher, [], [0], base)
    with pytest.raises(TypeError, match="list of numbers"):
        hinton.matching_study(data, teacher, 4, [0], base)
    with pytest.raises(ValueError, match="one student"):
        hinton.matching_study(data, teacher, [4], [0], base, student=hinton.SMALL_STUDENTS)


# -- 1. the table ---------------------------------------------------------------------------


def test_table_grid_is_fair_and_complete(grid, teacher, data):
    assert grid.students == ["800-800"] and grid.seeds == [0, 1]
    assert grid.temperatures == [hinton.TEMPERATURE] and grid.alphas == [hinton.ALPHA]
    assert len(grid.select(baseline=True)) == 2 and len(grid.select(baseline=False)) == 2
    assert all(r["distinct initial weights"] == 1 and r["runs"] == 2 for r in sweeps.same_start(grid))
    assert all(r.seconds > 0 for r in grid)
    rows = hinton.table_rows(grid, teacher, data)
    assert [r["paper: test errors of 10,000"] for r in rows] == [67, 146, 74]
    column = f"this run: test errors of {len(data.test):,}"
    assert rows[0][column] == str(hinton.test_errors(teacher, data))
    assert "±" in rows[1][column] and rows[1]["runs"] == 2
    errors = grid.values("test_errors", baseline=True)
    assert f"range {min(errors):.0f}–{max(errors):.0f}" in rows[1][column]


@pytest.fixture(scope="module")
def shifted(data, teacher, base):
    return hinton.shifted_students(data, teacher, [0, 1], base, jitter=1, progress=False)


def test_shifted_students_share_the_start_and_join_the_table(grid, shifted, teacher, data, base):
    assert shifted.seeds == [0, 1] and not shifted.select(baseline=True) and len(shifted) == 2
    assert {r.init for r in shifted} == {r.init for r in grid}, "same seeds, same initial weights as the table"
    assert {r.key for r in shifted}.isdisjoint(r.key for r in grid), "the shifted runs are runs of their own"
    rows = hinton.table_rows(grid, teacher, data, shifted=shifted)
    assert len(rows) == 4 and "shifted" in rows[3]["model"] and rows[3]["runs"] == 2
    check = hinton.check_target(grid, teacher, data, shifted=shifted)
    kd = sum(shifted.values("test_errors")) / 2
    plain = sum(grid.values("test_errors", baseline=False)) / 2
    assert check.transfer == "shifted" and check.distilled_errors == kd and check.no_translation_errors == plain
    assert any("no translations" in line for line in check.lines)
    assert hinton.check_target(grid, teacher, data).transfer == "no translations"
    fig = hinton.curves_figure(grid, teacher, data, shifted=shifted)
    assert any("shifted" in (t.name or "") for t in fig.data)
    with pytest.raises(ValueError, match="table's seeds"):
        hinton.table_rows(grid, teacher, data, shifted=hinton.shifted_students(data, teacher, [0], base, jitter=1,
                                                                               progress=False))
    with pytest.raises(ValueError, match="table's seeds"):
        hinton.check_target(grid, teacher, data, shifted=grid)
    with pytest.raises(ValueError, match="jitter must be a positive"):
        hinton.shifted_students(data, teacher, [0], base, jitter=0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        hinton.shifted_students(data, teacher, [0], base, alpha=0.0)


def test_check_target_follows_the_numbers(grid, teacher, data):
    check = hinton.check_target(grid, teacher, data)
    base = sum(grid.values("test_errors", baseline=True)) / 2
    kd = sum(grid.values("test_errors", baseline=False)) / 2
    t = hinton.test_errors(teacher, data)
    assert check.teacher_errors == t and check.baseline_errors == base and check.distilled_errors == kd
    expected = hinton.gap_closed(base, kd, t)
    assert (math.isnan(check.fraction) and math.isnan(expected)) or check.fraction == pytest.approx(expected)
    per_10k = 10_000 / len(data.test)
    assert check.teacher_ok == (t * per_10k <= hinton.MAX_TEACHER_ERRORS)
    assert check.distilled_ok == (kd * per_10k <= hinton.MAX_DISTILLED_ERRORS)
    low, high = hinton.LABELS_ONLY_RANGE
    assert check.baseline_ok == (low <= base * per_10k <= high)
    assert check.reached == (check.teacher_ok and check.baseline_ok and check.distilled_ok and check.fraction_ok)
    assert ("All targets reached" in str(check)) == check.reached
    if not check.reached:
        assert "Targets not reached" in str(check)
    diffs = [b - k for b, k in zip(grid.values("test_errors", baseline=True), grid.values("test_errors", baseline=False))]
    assert check.delta == pytest.approx(sum(diffs) / 2) and check.se >= 0
    strict = hinton.check_target(grid, teacher, data, max_teacher_errors=0, min_fraction=2.0)
    assert not strict.reached and "teacher is weaker" in str(strict)
    fast = hinton.check_target(grid, teacher, data, fast=True)
    assert not fast.reached and "Fast mode" in str(fast)
    with pytest.raises(ValueError, match="labels_only_range"):
        hinton.check_target(grid, teacher, data, labels_only_range=(160, 130))
    with pytest.raises(ValueError, match="max_distilled_errors"):
        hinton.check_target(grid, teacher, data, max_distilled_errors=-1)
    with pytest.raises(ValueError, match="min_fraction"):
        hinton.check_target(grid, teacher, data, min_fraction="most")


def test_seconds_and_curves(grid, teacher, data):
    seconds = hinton.training_seconds(grid, teacher)
    assert seconds["total"] == pytest.approx(seconds["teacher"] + seconds["students"])
    assert seconds["students"] == pytest.approx(sum(r.seconds for r in grid))
    fig = hinton.curves_figure(grid, teacher, data)
    names = [t.name for t in fig.data]
    assert names[0].startswith("teacher") and sum("mean of 2" in n for n in names) == 2
    assert len(fig.data) == 1 + 2 * (2 + 1)  # teacher, and per student: two seeds + the mean
    first = grid.select(baseline=True)[0]
    seed_trace = next(t for t in fig.data if t.name == "student, labels only, seed 0")
    assert seed_trace.y[-1] == pytest.approx((1 - first.history[-1]["test_acc"]) * len(data.test))


# -- 2. small students ----------------------------------------------------------------------


def test_small_student_sweep(data, teacher, base):
    result = hinton.small_student_sweep(data, teacher, [2.5, 8], [0], base, progress=False)
    assert result.students == ["300-300", "30-30"] and result.temperatures == [2.5, 8]
    assert len(result) == 2 * 3
    remark = sweeps_findings.check_temperature_remark(result, hinton.ALPHA, small="30-30", large="300-300")
    assert remark.small_prefers_range is None and "one seed" in str(remark)


# -- 3. logit matching against soft targets -----------------------------------------------


def test_gradients_match_autograd():
    gen = torch.Generator().manual_seed(0)
    z, v = torch.randn(5, 7, generator=gen, dtype=torch.float64) * 3, torch.randn(5, 7, generator=gen, dtype=torch.float64) * 5
    for t in (0.5, 1.0, 20.0):
        zz = z.clone().requires_grad_(True)
        losses.soft_target_loss(zz, v, t).backward()
        assert torch.allclose(hinton.soft_target_gradient(z, v, t), zz.grad * len(z))
    zz = z.clone().requires_grad_(True)
    losses.logit_matching_loss(zz, v).backward()
    assert torch.allclose(hinton.logit_matching_gradient(z, v), zz.grad * len(z))


def test_high_temperature_limit():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(64, 10, generator=gen) * 2
    v = torch.randn(64, 10, generator=gen) * 4 + 3.0  # the teacher's logits have a non-zero mean
    temps = [1, 10, 100, 10_000]
    centred = hinton.gradient_agreement(z, v, temps, centre=True)
    raw = hinton.gradient_agreement(z, v, temps)
    assert centred["cosine"][-1] == pytest.approx(1.0, abs=1e-6)
    assert centred["norm_ratio"][-1] == pytest.approx(1.0, abs=1e-4)
    assert centred["cosine"][0] < centred["cosine"][-1]
    assert raw["cosine"][-1] < 0.99, "without zero-meaning, the means keep the two gradients apart"
    # the limit of the soft-target gradient is the *zero-meaned* difference (z - v) / C
    d = (z - v).double()
    limit = torch.nn.functional.cosine_similarity((d - d.mean(1, keepdim=True)).flatten(), d.flatten(), dim=0)
    assert raw["cosine"][-1] == pytest.approx(float(limit), abs=1e-5)
    # the soft-target gradient ignores a shift of every logit of an example
    shifted = z + torch.arange(64.0)[:, None]
    assert torch.allclose(hinton.soft_target_gradient(shifted, v, 3.0), hinton.soft_target_gradient(z, v, 3.0), atol=1e-6)


def test_logit_correlation():
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(50, 10, generator=gen)
    assert hinton.logit_correlation(a, a) == pytest.approx(1.0)
    assert hinton.logit_correlation(a, 3 * a + torch.randn(50, 1, generator=gen)) == pytest.approx(1.0)
    assert abs(hinton.logit_correlation(a, torch.randn(50, 10, generator=gen))) < 0.2
    with pytest.raises(ValueError, match="same shape"):
        hinton.logit_correlation(a, a[:3])


def test_matching_study(data, teacher, base):
    result = hinton.matching_study(data, teacher, [20, 1], [0], base, progress=False)
    assert result.temperatures == [1.0, 20.0] and result.seeds == [0] and result.student == "300-300"
    assert set(result.models) == {(hinton.LOGIT_MATCHING, None, 0), (hinton.SOFT_TARGETS, 1.0, 0),
                                  (hinton.SOFT_TARGETS, 20.0, 0)}
    first = [p for p in result.models.values()]
    assert len({m.key for m in first}) == 3
    assert len(result.rows) == 2
    for r in result.rows:
        assert 0 <= r["agreement"] <= 1 and -1 <= r["logit_correlation"] <= 1 and 0 <= r["teacher_agreement"] <= 1
        assert 0 <= r["test_errors"] <= len(data.test)
    assert result.training_seconds > 0 and result.n_test == len(data.test)
    means = result.mean_by_temperature("agreement")
    assert list(means) == ["1", "20"] and means["20"] == result.rows[1]["agreement"]
    with pytest.raises(KeyError, match="agreement"):
        result.mean_by_temperature("nope")
    summary = result.summary()
    assert len(summary) == 3 and summary[-1]["T"] == "—"
    again = hinton.matching_study(data, teacher, [1], [0], base, progress=False)
    assert again.trained_now == 0, "the second call loads every student from the cache"
    lines = hinton.matching_findings(result)
    assert len(lines) == 3 and "T = 20" in lines[1]
    z, v = hinton.fixed_logits(teacher, "mlp", data, n=32, hidden=(300, 300))
    assert z.shape == v.shape == (32, 10)
    temps = [1, 10, 100]
    fig = hinton.matching_figure(result, {"as they are": hinton.gradient_agreement(z, v, temps)["cosine"],
                                          "zero-meaned": hinton.gradient_agreement(z, v, temps, centre=True)["cosine"]}, temps)
    assert len(fig.layout.annotations) == 3 and len(fig.data) == 6
    assert hinton.matching_figure(result).layout.annotations.__len__() == 2


def test_matching_study_in_two_processes_gives_the_rows_of_one(data, teacher, base, tmp_path, monkeypatch):
    one = hinton.matching_study(data, teacher, [20, 1], [0], base, progress=False)
    monkeypatch.setenv("LABKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LABKD_WORKERS", "2")
    two = hinton.matching_study(data, teacher, [20, 1], [0], base, progress=False)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 3  # trained by the workers under the same keys
    assert two.trained_now == 0 and two.rows == one.rows
    assert {k: m.key for k, m in two.models.items()} == {k: m.key for k, m in one.models.items()}


def test_matching_claim_judges_paired_seeds():
    seeds = [100, 101, 102, 103, 104]

    def result(corr_lo, corr_hi):
        rows = [{"temperature": t, "seed": s, "test_errors": 100, "lm_test_errors": 90, "agreement": 0.9,
                 "logit_correlation": (corr_lo if t == 1 else corr_hi)[i], "teacher_agreement": 0.9}
                for t in (1.0, 100.0) for i, s in enumerate(seeds)]
        return hinton.MatchingResult("s", {}, rows, [1.0, 100.0], seeds, 1000)

    clear = hinton.matching_claim(result([0.70, 0.72, 0.71, 0.69, 0.73], [0.99, 0.995, 0.99, 0.985, 0.99]))
    assert clear.shown and clear.delta > 0 and clear.seeds == seeds
    noisy = hinton.matching_claim(result([0.5, 0.99, 0.7, 0.9, 0.6], [0.9, 0.6, 0.8, 0.7, 0.75]))
    assert not noisy.shown and "NOT SHOWN" in noisy.verdict
    lines = hinton.matching_findings(result([0.70, 0.72, 0.71, 0.69, 0.73], [0.99, 0.995, 0.99, 0.985, 0.99]))
    assert lines[-1] == clear.verdict and "T = 100" in lines[1]
    with pytest.raises(TypeError, match="MatchingResult"):
        hinton.matching_claim([])
    with pytest.raises(ValueError, match="temperature=4"):
        result([0.7] * 5, [0.9] * 5).per_seed("agreement", 4)


def test_compare_with_paper_records_rows(grid, teacher, data, base):
    from labkd import results

    target = hinton.check_target(grid, teacher, data)
    sweep = hinton.small_student_sweep(data, teacher, [2.5, 8], [0], base, progress=False)
    remark = sweeps_findings.check_temperature_remark(sweep, hinton.ALPHA, small="30-30", large="300-300")
    rows = hinton.compare_with_paper(grid, teacher, data, target, sweep, remark)
    assert [r["paper"] for r in rows[:3]] == [67, 146, 74] and rows[3]["paper"] == "0.91"
    assert rows[0]["labkd"] == f"{target.teacher_errors} of {len(data.test):,}"
    assert rows[1]["seeds"] == [0, 1] and rows[1]["seconds"] > 0
    assert len(rows) == 4 + 2 + 2 and rows[-1]["labkd"] == "untested (one seed)"
    recorded = {r["what"] for r in results.recorded()[results.COMPARISONS]}
    assert {r["what"] for r in rows} <= recorded


def test_missed_gap_target_is_explained(grid, teacher, data):
    check = hinton.check_target(grid, teacher, data, max_teacher_errors=10_000, min_fraction=50.0)
    assert check.teacher_ok and not check.fraction_ok and not check.reached
    text = str(check)
    assert "Targets not reached" in text and "NOT reached" in text
    if not math.isnan(check.fraction):
        assert "more errors than the teacher" in text and "epoch" in text
    else:
        assert "no gap to close" in text
