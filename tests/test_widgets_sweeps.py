"""SweepPanel: controls redraw the curves and heatmap in place; the train button adds a cell."""

from __future__ import annotations


import numpy as np
import pytest

from labkd import TrainConfig, load_data, sweeps, train_model
from labkd.sweeps import SweepResult, SweepRow
from labkd.widgets.sweeps import MEAN, SweepPanel


def row(student, t, a, seed, acc, scale=True, epochs=3):
    history = [{"epoch": e, "loss": 1.0, "train_acc": acc, "val_acc": acc - 0.01 - 0.05 * (epochs - e),
                "test_acc": acc - 0.05 * (epochs - e), "seconds": float(e)} for e in range(1, epochs + 1)]
    return SweepRow(student, t, 0.0 if t is None else a, seed, scale, history, 1000, 2.0, True, "k")


def make_result(ablation: bool = True) -> SweepResult:
    rows = []
    for student, shift in (("800-800", 0.0), ("30-30", -0.05)):
        for seed in (0, 1, 2):
            rows.append(row(student, None, 0.0, seed, 0.90 + shift + 0.001 * seed))
            for t in (1, 4, 20):
                for a in (0.5, 0.9):
                    rows.append(row(student, t, a, seed, 0.92 + shift + 0.002 * t + 0.01 * a + 0.001 * seed))
    if ablation:
        rows += [row("800-800", t, 0.9, seed, 0.91 - 0.001 * t, scale=False) for t in (1, 4, 20) for seed in (0, 1, 2)]
    return SweepResult(rows, {"800-800": {"arch": "mlp", "hidden": (16,)}, "30-30": {"arch": "mlp", "hidden": (4,)}})


def test_panel_starts_on_the_first_cell_with_curves_and_heatmap():
    panel = SweepPanel(make_result())
    assert panel.temperature.value == 1 and panel.alpha.value == 0.5 and panel.seed.value == MEAN
    distilled_test, baseline_test = panel.figure.data[1], panel.figure.data[3]
    assert list(distilled_test.x) == [1, 2, 3]
    assert distilled_test.y[-1] == pytest.approx(100 * (0.92 + 0.002 + 0.005 + 0.001))
    assert baseline_test.y[-1] == pytest.approx(100 * 0.901)
    z = np.asarray(panel.heatmap.data[0].z)
    assert z.shape == (2, 3)
    assert list(panel.heatmap.data[1].x) == ["1"] and list(panel.heatmap.data[1].y) == ["0.5"]
    assert "labels only" in panel.status.value and "points" in panel.status.value


def test_changing_a_control_redraws_in_place_quickly():
    panel = SweepPanel(make_result())
    figure, before = panel.figure, panel.figure.data[1].y[-1]
    times = []
    for t in (4.0, 20.0, 1.0, 20.0):
        panel.temperature.value = t
        times.append(panel.last_update_ms)
    assert panel.figure is figure
    after = panel.figure.data[1].y[-1]
    assert after == pytest.approx(100 * (0.92 + 0.04 + 0.005 + 0.001)) and after != before
    assert list(panel.heatmap.data[1].x) == ["20"]
    print(f"SweepPanel update: median {np.median(times):.1f} ms, max {max(times):.1f} ms")
    assert np.median(times) < 500  # generous sanity bound; the target is well under 50 ms


def test_one_seed_and_the_baseline_of_that_seed():
    panel = SweepPanel(make_result())
    panel.seed.value = 2
    assert panel.figure.data[1].y[-1] == pytest.approx(100 * (0.92 + 0.002 + 0.005 + 0.002))
    assert panel.figure.data[3].y[-1] == pytest.approx(100 * 0.902)
    assert "seed 2" in panel.figure.layout.title.text


def test_scaling_toggle_switches_to_the_ablation_and_hides_without_it():
    panel = SweepPanel(make_result())
    panel.select(temperature=20, alpha=0.9)
    panel.scale.value = False
    assert [v for _, v in panel.alpha.options] == [0.9]
    assert panel.figure.data[1].y[-1] == pytest.approx(100 * (0.91 - 0.02))
    assert "no T²" in panel.figure.layout.title.text
    panel.student.value = "30-30"   # no ablation for the small student
    assert panel.scale.value is True and panel.scale.layout.display == "none"
    plain = SweepPanel(make_result(ablation=False))
    assert plain.scale.layout.display == "none"


def test_heatmap_click_selects_the_cell():
    panel = SweepPanel(make_result())

    class Points:
        xs, ys = ["4"], ["0.9"]

    panel.on_heatmap_click(panel.heatmap.data[0], Points())
    assert (panel.temperature.value, panel.alpha.value) == (4, 0.9)
    assert list(panel.heatmap.data[1].x) == ["4"] and list(panel.heatmap.data[1].y) == ["0.9"]
    panel.on_heatmap_click(panel.heatmap.data[0], type("Empty", (), {"xs": []})())  # a click outside: no change
    assert panel.temperature.value == 4


def test_select_rejects_a_cell_not_in_the_grid_and_status_says_so_for_gaps():
    panel = SweepPanel(make_result())
    with pytest.raises(ValueError, match="not in the grid"):
        panel.select(temperature=3)
    result = make_result()
    result.rows = [r for r in result.rows if not (r.temperature == 4 and r.alpha == 0.5)]
    panel = SweepPanel(result)
    panel.select(temperature=4, alpha=0.5)
    assert "not in the grid" in panel.status.value
    assert len(panel.figure.data[0].y) == 0


def test_constructor_checks_its_arguments():
    with pytest.raises(ValueError, match="non-empty SweepResult"):
        SweepPanel(SweepResult([]))
    with pytest.raises(ValueError, match="student"):
        SweepPanel(make_result(), student="nobody")
    with pytest.raises(ValueError, match="together"):
        SweepPanel(make_result(), data=object())
    with pytest.raises(RuntimeError, match="cannot train"):
        SweepPanel(make_result()).train_cell(2.0, 0.9)


def test_train_button_adds_a_cell_through_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKD_CACHE", str(tmp_path))
    data = load_data("digits", val_size=200)
    teacher = train_model("mlp", data, TrainConfig(epochs=2), progress=False, hidden=(32,))
    base = TrainConfig(epochs=1)
    students = {"small": {"arch": "mlp", "hidden": (8,)}}
    result = sweeps.run_grid(data, teacher, students, (1, 4), (0.9,), 1, base, progress=False)
    panel = SweepPanel(result, data=data, teacher=teacher, base_config=base)
    assert hasattr(panel, "train_button")
    panel.new_temperature.value, panel.new_alpha.value = 2.5, 0.9
    new = panel.train_cell()
    assert new.trained_now == 1  # the baseline came from the cache
    assert [v for _, v in panel.temperature.options] == [1.0, 2.5, 4.0]
    assert (panel.temperature.value, panel.alpha.value) == (2.5, 0.9)
    assert panel.progress.value == panel.progress.max == 2
    assert len(panel.figure.data[0].y) == 1 and "done" in panel.train_status.value
    with pytest.raises(ValueError, match="alpha"):
        panel.train_cell(2.0, 1.5)


def test_benchmark_cases_run_for_labkd_bench():
    from labkd.widgets import sweeps as sweep

    cases = sweep.benchmark_cases()
    assert set(cases) == {"temperature", "student", "t2_scaling"}
    for fn in cases.values():
        fn()
        fn()


def test_diverged_runs_are_named_in_the_status():
    result = make_result()
    for r in result.rows:
        if r.student == "800-800" and r.temperature == 20 and r.alpha == 0.9 and r.scale_by_t2:
            r.history = [] if r.seed > 0 else r.history
    panel = SweepPanel(result)
    panel.select(temperature=20, alpha=0.9)
    assert "2 more diverged" in panel.status.value
    assert len(panel.figure.data[1].y) == 3  # the curve of the seed that trained
    panel.seed.value = 1
    assert "diverged" in panel.status.value and len(panel.figure.data[1].y) == 0
