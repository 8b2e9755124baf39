"""labkd.sweeps: grids of distillation runs, their summaries and figures.

Training tests use the bundled 8x8 digits and one or two epochs; the summary tests use
hand-made rows whose answers are known.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from labkd import TrainConfig, sweeps, sweeps_figures, sweeps_findings, train_model
from labkd.train import TrainingDivergedError
from labkd.models import build_model
from labkd.sweeps import SweepResult, SweepRow

STUDENTS = {"wide": {"arch": "mlp", "hidden": (32,)}, "narrow": {"arch": "mlp", "hidden": (6,)}}


@pytest.fixture(scope="module")
def teacher(digits):
    return train_model("mlp", digits, TrainConfig(epochs=3, seed=0), progress=False, hidden=(64,))


@pytest.fixture(scope="module")
def base():
    return TrainConfig(epochs=1, seed=0)


@pytest.fixture(scope="module")
def grid(digits, teacher, base):
    return sweeps.run_grid(digits, teacher, STUDENTS, (1, 4), (0.5, 1.0), 2, base, progress=False)


def row(student="s", t=4.0, a=0.9, seed=0, acc=0.9, val=None, scale=True, epochs=2, n_test=1000):
    """A hand-made row whose final test accuracy is ``acc`` (epoch 1 is 0.1 lower)."""
    val = acc if val is None else val
    history = [{"epoch": e, "loss": 1.0, "train_acc": acc, "val_acc": val - 0.1 * (epochs - e),
                "test_acc": acc - 0.1 * (epochs - e), "seconds": float(e)} for e in range(1, epochs + 1)]
    return SweepRow(student, t, 0.0 if t is None else a, seed, scale, history, n_test, 1.0, True, f"k{student}{t}{a}{seed}")


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(temperatures=()), ValueError, "temperatures is empty"),
    (dict(temperatures=(1, 0)), ValueError, "temperatures has 0"),
    (dict(temperatures=(-2,)), ValueError, "> 0"),
    (dict(temperatures=("hot",)), TypeError, "temperatures"),
    (dict(alphas=()), ValueError, "alphas is empty"),
    (dict(alphas=(0.5, 1.5)), ValueError, "alphas has 1.5"),
    (dict(alphas=(-0.1,)), ValueError, "[0, 1]"),
    (dict(seeds=0), ValueError, "seeds must be >= 1"),
    (dict(seeds=[]), ValueError, "seeds is empty"),
    (dict(seeds=1.5), TypeError, "seeds"),
    (dict(students={}), ValueError, "students"),
    (dict(students={"x": {"hidden": (3,)}}), ValueError, "'arch'"),
    (dict(base_config={"epochs": 1}), TypeError, "base_config"),
])
def test_run_grid_rejects_bad_inputs_before_training(digits, teacher, base, tmp_path, monkeypatch, kwargs, error, words):
    monkeypatch.setenv("LABKD_CACHE", str(tmp_path))
    arguments = dict(students=STUDENTS, temperatures=(1, 4), alphas=(0.9,), seeds=1, base_config=base)
    arguments.update(kwargs)
    with pytest.raises(error, match=None) as info:
        sweeps.run_grid(digits, teacher, progress=False, **arguments)
    assert words in str(info.value)
    assert not list(tmp_path.iterdir()), "nothing may be trained before the inputs are checked"


def test_run_grid_rejects_a_teacher_that_is_not_a_model(digits, base):
    with pytest.raises(TypeError, match="teacher"):
        sweeps.run_grid(digits, "teacher.pt", STUDENTS, (1,), (0.9,), 1, base, progress=False)


# --- running a grid -----------------------------------------------------------------------------------


def test_grid_has_one_row_per_cell_and_seed_plus_baselines(grid):
    # 2 students x 2 seeds x (1 baseline + 2 temperatures x 2 alphas)
    assert len(grid) == 2 * 2 * (1 + 2 * 2)
    assert grid.students == ["wide", "narrow"]
    assert grid.temperatures == [1.0, 4.0] and grid.alphas == [0.5, 1.0] and grid.seeds == [0, 1]
    baselines = grid.select(baseline=True)
    assert len(baselines) == 4 and all(r.temperature is None and r.alpha == 0 for r in baselines)
    assert all(len(r.history) == 1 for r in grid)
    assert set(grid.specs) == set(STUDENTS)


def test_every_run_of_a_student_and_seed_starts_from_the_same_weights(grid, digits):
    table = sweeps.same_start(grid)
    assert len(table) == 4
    assert all(t["distinct initial weights"] == 1 and t["runs"] == 5 for t in table)
    assert len({t["fingerprint"] for t in table}) == 4, "different seeds or students must start differently"
    wide0 = [r for r in grid.select(student="wide", seed=0)][0]
    assert wide0.init == sweeps.initial_fingerprint("mlp", digits, 0, hidden=(32,))


def test_second_run_comes_from_the_cache_with_the_same_numbers(grid, digits, teacher, base):
    again = sweeps.run_grid(digits, teacher, STUDENTS, (1, 4), (0.5, 1.0), 2, base, progress=False)
    assert again.trained_now == 0
    assert [r.history for r in again] == [r.history for r in grid]
    assert again.training_seconds == pytest.approx(grid.training_seconds)


def test_alpha_zero_is_the_baseline_trained_once_per_seed(digits, teacher, base):
    result = sweeps.run_grid(digits, teacher, {"wide": STUDENTS["wide"]}, (1, 4), (0.0, 1.0), 1, base,
                             baseline=False, progress=False)
    assert len(result.select(baseline=True)) == 1
    assert len(result.select(baseline=False)) == 2


def test_without_t2_is_identical_at_t1_and_different_at_high_t(digits, teacher, base):
    spec = {"wide": STUDENTS["wide"]}
    with_t2 = sweeps.run_grid(digits, teacher, spec, (1, 20), (1.0,), 1, base, baseline=False, progress=False)
    without = sweeps.run_grid(digits, teacher, spec, (1, 20), (1.0,), 1, base.replace(scale_by_t2=False),
                              baseline=False, progress=False)
    both = with_t2.merge(without)
    assert len(both) == 4
    at = lambda t, s: both.select(temperature=t, scale_by_t2=s)[0].history  # noqa: E731
    assert [r["val_acc"] for r in at(1, True)] == pytest.approx([r["val_acc"] for r in at(1, False)])
    assert at(20, True)[-1]["loss"] != pytest.approx(at(20, False)[-1]["loss"])
    # The default selection leaves the ablation out; None takes both.
    assert len(both.select(temperature=20)) == 1 and len(both.select(temperature=20, scale_by_t2=None)) == 2


def test_on_cell_reports_progress(digits, teacher, base):
    calls = []
    sweeps.run_grid(digits, teacher, {"wide": STUDENTS["wide"]}, (4,), (0.9,), 1, base, progress=False,
                    on_cell=lambda done, total, r: calls.append((done, total, r.baseline)))
    assert calls == [(1, 2, True), (2, 2, False)]


# --- summaries -------------------------------------------------------------------------------------


def synthetic(accs: dict[float, list[float]], student="s", alpha=0.9, baseline=(0.8, 0.82, 0.81)) -> SweepResult:
    rows = [row(student, t, alpha, seed, acc) for t, values in accs.items() for seed, acc in enumerate(values)]
    rows += [row(student, None, 0.0, seed, acc) for seed, acc in enumerate(baseline)]
    return SweepResult(rows, {student: {"arch": "mlp"}})


def test_mean_std_and_values():
    result = synthetic({1: [0.90, 0.92, 0.94], 4: [0.95, 0.95, 0.96]})
    mean, std, n = result.mean_std("test_acc", student="s", temperature=1, alpha=0.9)
    assert (mean, n) == (pytest.approx(0.92), 3)
    assert std == pytest.approx(np.std([0.90, 0.92, 0.94], ddof=1))
    assert result.values("test_acc", epoch=1, temperature=4) == pytest.approx([0.85, 0.85, 0.86])
    assert result.baseline_mean_std("s")[0] == pytest.approx(0.81)
    errors = result.mean_std("test_errors", temperature=1)[0]
    assert errors == pytest.approx(80.0)
    with pytest.raises(ValueError, match="no rows match"):
        result.mean_std(temperature=8)
    with pytest.raises(ValueError, match="unknown criteria"):
        result.select(temp=1)
    with pytest.raises(ValueError, match="metric"):
        result.values("accuracy", temperature=1)


def test_table_lists_the_baseline_first_with_mean_and_std():
    table = synthetic({1: [0.90, 0.92, 0.94], 4: [0.95, 0.95, 0.96]}).table("test_acc")
    assert [r["T"] for r in table] == ["—", "1", "4"]
    assert table[0]["alpha"] == "0 (labels only)"
    assert table[1]["mean test_acc (%)"] == pytest.approx(92.0) and table[1]["seeds"] == 3


def test_best_temperature_chooses_on_validation_and_reports_spread():
    accs = {1: [0.90, 0.91, 0.92], 3: [0.96, 0.95, 0.97], 8: [0.955, 0.95, 0.96], 20: [0.93, 0.93, 0.94]}
    choice = sweeps_findings.best_temperature(synthetic(accs), "s")
    assert choice.temperature == 3
    assert choice.close == [3, 8]
    assert choice.per_seed_best == {0: 3, 1: 3, 2: 3}
    spread, std = choice.spread_above(8)
    assert spread == pytest.approx(np.mean([0.955, 0.95, 0.96]) - np.mean([0.93, 0.93, 0.94]))
    assert "best T = 3" in choice.describe()
    with pytest.raises(ValueError, match="student"):
        sweeps_findings.best_temperature(synthetic(accs), "nobody")


def test_best_temperature_uses_validation_not_test():
    rows = [row("s", 2, 0.9, 0, acc=0.99, val=0.90), row("s", 4, 0.9, 0, acc=0.90, val=0.95)]
    assert sweeps_findings.best_temperature(SweepResult(rows), "s").temperature == 4
    assert sweeps_findings.best_temperature(SweepResult(rows), "s", metric="test_acc").temperature == 2


def test_remark_check_reproduces_and_refutes_on_known_numbers():
    small_prefers = {1: [0.90, 0.905, 0.91], 3: [0.95, 0.951, 0.949], 8: [0.92, 0.921, 0.919], 20: [0.91, 0.91, 0.912]}
    large_flat = {1: [0.96, 0.961, 0.962], 3: [0.97, 0.97, 0.971], 8: [0.975, 0.976, 0.974], 20: [0.975, 0.974, 0.976]}
    result = synthetic(small_prefers, "30-30").merge(synthetic(large_flat, "800-800"))
    check = sweeps_findings.check_temperature_remark(result, 0.9)
    assert check.small_prefers_range is True and check.large_insensitive is True
    assert "reproduces" in str(check)

    small_flat = {t: [0.95, 0.951, 0.949] for t in (1, 3, 8, 20)}
    large_sloped = {1: [0.96] * 3, 8: [0.97, 0.9701, 0.9699], 20: [0.98, 0.9801, 0.9799]}
    check = sweeps_findings.check_temperature_remark(synthetic(small_flat, "30-30").merge(synthetic(large_sloped, "800-800")), 0.9)
    assert check.small_prefers_range is False and check.large_insensitive is False
    assert "does not reproduce" in str(check)


def test_remark_check_claims_nothing_from_one_seed_or_a_missing_range():
    one_seed = {1: [0.90], 4: [0.95], 8: [0.94], 20: [0.93]}
    result = synthetic(one_seed, "30-30", baseline=(0.8,)).merge(synthetic(one_seed, "800-800", baseline=(0.8,)))
    check = sweeps_findings.check_temperature_remark(result, 0.9)
    assert check.small_prefers_range is None and check.large_insensitive is None
    assert str(check).count("no conclusion") == 2
    low_only = synthetic({1: [0.9, 0.91], 2: [0.92, 0.93]}, "30-30").merge(synthetic({1: [0.9, 0.91]}, "800-800"))
    check = sweeps_findings.check_temperature_remark(low_only, 0.9)
    assert check.small_prefers_range is None and "cannot test" in str(check)


def test_gain_over_baseline_and_findings():
    result = synthetic({20: [0.95, 0.951, 0.949]}, "800-800")
    text = sweeps_findings.gain_over_baseline(result, "800-800", 20, 0.9)
    assert "+14.00 points" in text and "larger than two standard errors" in text
    one = synthetic({20: [0.95]}, "800-800", baseline=(0.8,))
    assert "no conclusion" in sweeps_findings.gain_over_baseline(one, "800-800", 20, 0.9)
    rows = sweeps_findings.findings(result, alpha=0.9, temperature=20)
    assert rows[0]["run"] == "800-800, labels only" and rows[0]["paper: test errors"] == 146
    assert rows[1]["paper: test errors"] == 74 and rows[1]["test errors"] == "50 ± 1"
    assert sweeps_findings.best_cell(result, "800-800") == (20, 0.9)


def test_stronger_baseline_is_chosen_on_validation_and_used_in_comparisons():
    slow = synthetic({20: [0.95, 0.951, 0.949]}, "800-800", baseline=(0.90, 0.90, 0.90))
    fast = SweepResult([row("800-800", None, 0.0, seed, acc=0.80, val=0.99) for seed in range(3)])
    label, chosen = sweeps_findings.stronger_baseline({"lr 0.02": slow, "lr 0.05": fast}, "800-800")
    assert label == "lr 0.05" and chosen is fast  # higher validation accuracy, although worse on test
    text = sweeps_findings.gain_over_baseline(slow, "800-800", 20, 0.9, baseline=fast, baseline_label="labels only (lr 0.05)")
    assert "labels only (lr 0.05) 80.00" in text and "+15.00 points" in text
    with pytest.raises(ValueError, match="labels-only"):
        sweeps_findings.stronger_baseline({"x": SweepResult([row("800-800", 4, 0.9, 0)])}, "800-800")
    rows = sweeps_findings.findings(slow, extra_baselines={"lr 0.05": fast})
    assert [r["run"] for r in rows[:2]] == ["800-800, labels only", "800-800, labels only, lr 0.05"]
    assert rows[1]["test accuracy (%)"] == "80.00 ± 0.00"


def test_describe_runs_reports_first_and_last_epoch():
    result = synthetic({20: [0.95, 0.95, 0.95]}, "800-800")
    lines = sweeps_findings.describe_learning_rates({"lr a": result, "lr b": SweepResult([])}, 20, 0.9)
    assert lines[0].startswith("800-800 labels only, lr a") and "after epoch 1 71.00 ± 1.00%" in lines[0]
    assert lines[1].endswith("not run")
    assert "at the end 95.00 ± 0.00%" in lines[2]
    ablation = sweeps_findings.describe_t2_ablation(result, "800-800", 20, 0.9)
    assert len(ablation) == 3 and ablation[2].endswith("not run")


# --- figures ---------------------------------------------------------------------------------------


def test_accuracy_vs_temperature_figure_plots_means_per_alpha(grid):
    fig = sweeps_figures.accuracy_vs_temperature_figure(grid, "wide")
    lines = [t for t in fig.data if t.name and t.name.startswith("α")]
    assert [t.name for t in lines] == ["α = 0.5", "α = 1"]
    expected = [100 * grid.mean_std(student="wide", temperature=t, alpha=0.5)[0] for t in (1, 4)]
    assert list(lines[0].y) == pytest.approx(expected)
    assert any("labels only" in (t.name or "") for t in fig.data)
    with pytest.raises(ValueError, match="student"):
        sweeps_figures.accuracy_vs_temperature_figure(grid, "nobody")


def test_heatmap_holds_mean_accuracy_per_alpha_and_temperature(grid):
    fig = sweeps_figures.alpha_temperature_heatmap(grid, "narrow")
    z = np.asarray(fig.data[0].z)
    assert z.shape == (2, 2)
    assert z[1, 0] == pytest.approx(100 * grid.mean_std(student="narrow", temperature=1, alpha=1.0)[0])
    assert "labels only" in fig.layout.title.text


def test_preference_and_learning_curve_figures(grid):
    fig = sweeps_figures.temperature_preference_figure(grid, alpha=1.0)
    stars = [t for t in fig.data if t.name and t.name.startswith("best T")]
    assert len(stars) == 2
    best = sweeps_findings.best_temperature(grid, "wide", 1.0).temperature
    assert list(stars[0].x) == [best]
    curves = sweeps_figures.learning_curves_figure(grid, "wide", {"T=4": dict(temperature=4, alpha=1.0)})
    assert [t.name for t in curves.data] == ["labels only", "T=4"]
    assert len(curves.data[1].y) == 1


# --- gradient sizes --------------------------------------------------------------------------------


def test_soft_gradient_shrinks_like_one_over_t_squared_without_the_factor(digits, teacher):
    student = build_model("mlp", digits.input_shape, digits.num_classes, seed=3, hidden=(16,))
    temps = (1, 10, 20, 40)
    norms = sweeps.soft_gradient_norms(student, teacher, digits.train.x[:200], temps)
    without, with_t2 = norms["without T²"], norms["with T²"]
    assert without[0] == pytest.approx(with_t2[0])
    assert without[2] / without[1] == pytest.approx(0.25, rel=0.1)   # T 10 -> 20
    assert without[3] / without[2] == pytest.approx(0.25, rel=0.05)  # T 20 -> 40
    assert with_t2[3] / with_t2[2] == pytest.approx(1.0, rel=0.05)
    custom = sweeps.soft_gradient_norms(student, teacher, digits.train.x[:200], temps,
                                        loss=lambda s, t, T: 2 * sweeps.losses.soft_target_loss(s, t, T))
    assert custom["with T²"] == pytest.approx([2 * v for v in with_t2])
    assert math.isfinite(sweeps_figures.gradient_norms_figure(norms, temps).data[0].y[0])


def test_a_diverged_run_is_kept_as_a_nan_row_and_never_chosen(digits, teacher, base, monkeypatch):
    real = sweeps.train_model

    def diverging(arch, data, config, **kwargs):  # what fit raises when the logits blow up (tests/test_faults.py)
        if config.loss == "distillation" and config.temperature == 4:
            raise TrainingDivergedError("training diverged at epoch 1, step 3 of 8: student_logits has values "
                                        "up to 1.6e+06, beyond ±1e+06")
        return real(arch, data, config, **kwargs)

    monkeypatch.setattr(sweeps, "train_model", diverging)
    spec = {"wide": STUDENTS["wide"]}
    both = sweeps.run_grid(digits, teacher, spec, (1, 4), (1.0,), 2, base, progress=False)
    wild = SweepResult(both.select(temperature=4, alpha=1.0))
    assert len(wild) == 2 and all(r.diverged and not r.cached and not r.history for r in wild)
    assert math.isnan(wild.rows[0].metric("test_acc"))
    assert math.isnan(both.mean_std(temperature=4, alpha=1.0)[0])
    assert "diverged in all 2 runs (training stopped)" in sweeps_findings.describe_runs([("wild", both, {"temperature": 4})])[0]
    assert sweeps_findings.best_temperature(both, "wide", 1.0).temperature == 1
    assert sweeps_findings.best_cell(both, "wide") == (1, 1.0)
    with pytest.raises(ValueError, match="did not diverge"):
        sweeps.mean_curve(both, temperature=4)


def test_other_errors_are_not_taken_for_divergence(digits, teacher, base, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("guided_layer='x' is not a layer of this model")

    monkeypatch.setattr(sweeps, "train_model", broken)
    with pytest.raises(ValueError, match="guided_layer"):
        sweeps.run_grid(digits, teacher, {"wide": STUDENTS["wide"]}, (1,), (1.0,), 1, base, progress=False)


def test_remark_temperatures_are_chosen_on_validation():
    # validation prefers T=3 inside and T=8 outside; test accuracy would prefer T=20 (it must not be used)
    rows = [row("30-30", t, 0.9, s, acc=test, val=val) for s in (0, 1)
            for t, val, test in ((1, 0.90, 0.90), (3, 0.95, 0.90), (8, 0.93, 0.90), (20, 0.92, 0.99))]
    result = SweepResult(rows)
    assert sweeps_findings.remark_temperatures(result, "30-30", 0.9) == (3, 8)
    with pytest.raises(ValueError, match="inside and outside"):
        sweeps_findings.remark_temperatures(SweepResult([row("30-30", 3, 0.9, 0)]), "30-30", 0.9)


def test_remark_claim_confirms_on_fresh_paired_seeds(digits, teacher, base):
    dev = sweeps.run_grid(digits, teacher, {"narrow": STUDENTS["narrow"]}, (1, 3), (0.9,), [0, 1], base, progress=False)
    claim, confirm = sweeps_findings.remark_claim(digits, teacher, dev, "narrow", 0.9, [100, 101], base, lesson="test",
                                         progress=False)
    assert confirm.seeds == [100, 101] and set(confirm.temperatures_of("narrow", 0.9)) == {1, 3}
    assert claim.seeds == (100, 101) or list(claim.seeds) == [100, 101]
    assert not claim.shown and "(test)" in claim.claim
    for s in (100, 101):  # paired: both arms of a seed start from the same weights
        assert len({r.init for r in confirm.select(student="narrow", seed=s)}) == 1
    with pytest.raises(ValueError, match="fresh seeds"):
        sweeps_findings.remark_claim(digits, teacher, dev, "narrow", 0.9, [1, 2], base, lesson="test", progress=False)
