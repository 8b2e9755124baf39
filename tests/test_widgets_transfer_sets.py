"""The bias-shift panel of lesson 07, headless: the slider recounts the errors and refills the
figure in place; switching the transfer set redraws everything; bad shifts are refused."""

from __future__ import annotations

import pytest
import torch

from labkd import transfer_sets as tr
from labkd.widgets import transfer_sets as bias_shift
from labkd.widgets.transfer_sets import BiasShiftPanel

SANITY_MS = 500  # a generous bound: the target is well under 50 ms on a quiet machine


def _study(name, classes, push, seed=0, n=3000):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (2 * n,), generator=gen)
    logits = torch.randn(2 * n, 10, generator=gen) + 3 * torch.nn.functional.one_hot(y, 10)
    logits[:, classes] += push
    missing = classes if push < 0 else [c for c in range(10) if c not in classes]
    return tr.ShiftStudy(name, classes, missing, logits[:n], y[:n], logits[n:], y[n:], [str(i) for i in range(10)])


@pytest.fixture
def panel():
    return BiasShiftPanel([_study("no 3s", [3], -4.0), _study("only 7s and 8s", [7, 8], 5.0, seed=1)])


def test_starts_at_the_shift_chosen_on_validation(panel):
    study = panel.study
    assert panel.shift == pytest.approx(study.shift) and study.shift > 0
    assert list(panel.figure.data[1].y) == study.errors_per_class(study.shift).tolist()
    assert list(panel.figure.data[0].y) == study.errors_per_class(0.0).tolist()
    assert f"<b>{study.errors(study.shift)}</b> test errors" in panel.readout.value


def test_slider_updates_bars_markers_and_readout(panel):
    study = panel.study
    times = []
    for value in (0.0, 1.5, -2.0, 6.0, 3.0):
        panel.slider.value = value
        times.append(panel.last_update_ms)
        assert list(panel.figure.data[1].y) == study.errors_per_class(value).tolist()
        assert list(panel.figure.data[4].x) == [value, value]
        assert panel.figure.data[4].y[1] == max(study.errors(value), 0.5)
        assert f"shift <b>{value:+.1f}</b>" in panel.readout.value
    print(f"\nbias-shift slider: median {sorted(times)[2]:.1f} ms")
    assert sorted(times)[2] < SANITY_MS
    before = list(panel.figure.data[0].y)
    panel.set_shift(0.0)
    assert list(panel.figure.data[1].y) == before, "with no shift both bar series agree"
    assert "(no shift:" in panel.readout.value and "of 3 " not in panel.readout.value


def test_switching_study_redraws_everything(panel):
    first_curve = list(panel.figure.data[2].y)
    panel.select("only 7s and 8s")
    study = panel.study
    assert study.name == "only 7s and 8s" and study.shift < 0, "the 7s and 8s were pushed up, so lower them"
    assert panel.shift == pytest.approx(study.shift)
    assert list(panel.figure.data[2].y) != first_curve
    assert list(panel.figure.data[1].y) == study.errors_per_class(study.shift).tolist()
    assert panel.figure.data[0].x[0] == "0 (missing)" and panel.figure.data[0].x[7] == "7"
    assert panel.figure.layout.shapes[0].x0 == pytest.approx(study.shift)
    panel.set_shift(1.0)
    panel.reset()
    assert panel.shift == pytest.approx(study.shift)
    with pytest.raises(ValueError, match="no study named"):
        panel.select("no 5s")


def test_bad_shifts_and_studies_are_refused(panel):
    with pytest.raises(ValueError, match="shift must be a finite number"):
        panel.set_shift(float("nan"))
    with pytest.raises(ValueError, match="outside the slider's range"):
        panel.set_shift(1000.0)
    with pytest.raises(ValueError, match="ShiftStudy"):
        BiasShiftPanel([])
    with pytest.raises(ValueError, match="different names"):
        BiasShiftPanel([_study("a", [3], -4.0), _study("a", [3], -4.0)])
    with pytest.raises(ValueError, match="shift must be a finite number"):
        BiasShiftPanel(_study("a", [3], -4.0), shift=float("inf"))


def test_single_study_hides_the_picker():
    panel = BiasShiftPanel(_study("no 3s", [3], -4.0), shift=2.0)
    assert panel.picker.layout.display == "none" and panel.shift == 2.0


def test_benchmark_cases():
    cases = bias_shift.benchmark_cases()
    assert set(cases) == {"shift", "study"}
    for fn in cases.values():
        fn()
        fn()
