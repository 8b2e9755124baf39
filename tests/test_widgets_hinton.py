"""The gradient panel of lesson 06, driven headless: controls change the figure in place, the bars
are the library's gradients, and a redraw takes well under 50 ms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labkd import hinton
from labkd.widgets.hinton import CURVE_TEMPERATURES, GradientPanel, benchmark_cases, cosine_curve


@pytest.fixture
def logits():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (40,), generator=gen)
    teacher = torch.randn(40, 10, generator=gen) * 2 + 9 * torch.nn.functional.one_hot(labels, 10) + 1.5
    student = torch.randn(40, 10, generator=gen) * 0.5
    return student, teacher, labels


@pytest.fixture
def panel(logits):
    student, teacher, labels = logits
    return GradientPanel(student, teacher, [str(i) for i in range(10)], labels, temperature=2.0)


def test_bars_are_the_library_gradients(panel, logits):
    student, teacher, _ = logits
    for t, index in ((2.0, 0), (37.0, 5)):
        panel.temperature.value = t
        panel.select(index)
        t = panel.temperature.value  # the slider rounds to its step
        kd = hinton.soft_target_gradient(student[index:index + 1].double(), teacher[index:index + 1].double(), t)[0]
        lm = hinton.logit_matching_gradient(student[index:index + 1].double(), teacher[index:index + 1].double())[0]
        assert np.allclose(panel.figure.data[0].y, kd.numpy())
        assert np.allclose(panel.figure.data[1].y, lm.numpy())
        assert panel.figure.data[4].x == (t,)


def test_temperature_moves_the_bars_and_the_marker(panel):
    before = np.array(panel.figure.data[0].y)
    lm_before = np.array(panel.figure.data[1].y)
    panel.temperature.value = 50.0
    assert not np.allclose(panel.figure.data[0].y, before)
    assert np.allclose(panel.figure.data[1].y, lm_before), "logit matching has no temperature"
    assert panel.figure.data[4].x[0] == pytest.approx(50.0, rel=0.03)
    assert "T = 50" in panel.readout.value or "T = 49" in panel.readout.value
    print(f"temperature redraw: {panel.last_update_ms:.2f} ms")
    assert panel.last_update_ms < 1000  # generous: a sanity bound, not a benchmark


def test_zero_mean_changes_only_logit_matching(panel):
    panel.temperature.value = 100.0
    kd, lm, batch = (np.array(panel.figure.data[i].y) for i in (0, 1, 3))
    cosine = panel.state()["batch_cosine"]
    panel.centre.value = True
    assert np.allclose(panel.figure.data[0].y, kd), "a shift of the logits does not change the soft-target gradient"
    assert not np.allclose(panel.figure.data[1].y, lm)
    assert not np.allclose(panel.figure.data[3].y, batch)
    assert panel.state()["batch_cosine"] > cosine, "zero-meaning brings the two gradients together at high T"
    assert panel.state()["batch_cosine"] > 0.95
    assert "zero-meaned" in panel.readout.value


def test_cosine_curves_match_the_library(panel, logits):
    student, teacher, _ = logits
    temps = CURVE_TEMPERATURES[::20]
    for centre in (False, True):
        ours = cosine_curve(student.double().numpy(), teacher.double().numpy(), temps, centre)
        theirs = hinton.gradient_agreement(student, teacher, temps.tolist(), centre=centre)["cosine"]
        assert np.allclose(ours, theirs, atol=1e-9)
    panel.select(3)
    curve = np.array(panel.figure.data[2].y)
    assert np.allclose(curve, cosine_curve(student[3].double().numpy(), teacher[3].double().numpy(), CURVE_TEMPERATURES))


def test_bad_arguments(logits):
    student, teacher, labels = logits
    with pytest.raises(ValueError, match="class_names"):
        GradientPanel(student, teacher, ["a", "b"])
    with pytest.raises(ValueError, match="same shape"):
        GradientPanel(student[:3], teacher, [str(i) for i in range(10)])
    with pytest.raises(ValueError, match="labels"):
        GradientPanel(student, teacher, [str(i) for i in range(10)], labels[:3])
    with pytest.raises(ValueError, match="temperature"):
        GradientPanel(student, teacher, [str(i) for i in range(10)], temperature=0)
    panel = GradientPanel(student, teacher, [str(i) for i in range(10)])
    with pytest.raises(ValueError, match="0..39"):
        panel.select(40)


def test_benchmark_cases_move_the_panel():
    cases = benchmark_cases()
    assert set(cases) == {"temperature", "example", "zero_mean"}
    for step in cases.values():
        step()
        step()
