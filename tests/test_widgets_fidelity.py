"""Panels and figures of lesson 09 (lesson 10's: tests/test_widgets_online.py), driven headless: set a control, check the figure changed.

Built from synthetic results shaped like the real ones (no training); recompute times are
printed (``pytest -s``) and only checked against a generous sanity bound."""

from __future__ import annotations

import numpy as np
import pytest

from labkd import fidelity_figures
from labkd.widgets import fidelity as wf

SANITY_MS = 1000  # far above the 50 ms target: only catches a callback that trains or loops badly


@pytest.fixture(scope="module")
def study():
    return wf._synthetic_study(epochs=6, seeds=2)


def test_fidelity_panel_epoch_slider_moves_the_marker(study):
    panel = wf.FidelityPanel(study)
    assert panel.epoch.value == 6
    before = list(panel.figure.data[4].x)
    panel.epoch.value = 2
    cond = panel.condition.value
    assert list(panel.figure.data[3].x) == [2, 2, 2]
    assert panel.figure.data[3].y[0] == pytest.approx(study.curves()[cond]["test_acc"][1])
    assert list(panel.figure.data[4].x) != before
    assert "epoch 2" in panel.status.value
    print(f"fidelity epoch slider: {panel.last_update_ms:.1f} ms")
    assert panel.last_update_ms < SANITY_MS


def test_fidelity_panel_condition_and_measure(study):
    panel = wf.FidelityPanel(study)
    other = panel.conditions[3]
    panel.select(condition=other, measure="test KL(teacher ‖ student)")
    i = panel.conditions.index(other)
    assert panel.figure.data[5].x[0] == pytest.approx(panel.figure.data[4].x[i])
    assert panel.figure.data[4].x[i] == pytest.approx(study.curves()[other]["test_kl"][-1])
    assert "lower" in panel.figure.layout.xaxis2.title.text
    assert other.split(" · ")[0] in panel.status.value
    with pytest.raises(ValueError, match="condition"):
        panel.select(condition="nope")
    with pytest.raises(ValueError, match="epoch"):
        panel.select(epoch=99)
    with pytest.raises(ValueError, match="FidelityStudy"):
        wf.FidelityPanel(wf.FidelityStudy())


def test_fidelity_curves_figure(study):
    fig = fidelity_figures.fidelity_curves_figure(study)
    assert len(fig.data) == 2 * len(study.conditions)
    assert np.allclose(fig.data[1].y, study.curves()[study.conditions[0]]["test_agreement"])
    with pytest.raises(ValueError, match="metric"):
        fidelity_figures.fidelity_curves_figure(study, "accuracy")


def test_benchmark_hooks_run():
    for module in (wf,):
        cases = module.benchmark_cases()
        assert cases
        for call in cases.values():
            call()


# --- lesson 09's second panel: one test image at a time ----------------------------------------


@pytest.fixture(scope="module")
def logits():
    import torch

    g = torch.Generator().manual_seed(0)
    n = 300
    images = torch.randn(n, 1, 28, 28, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    teacher = {s: torch.randn(n, 10, generator=g) * 2 + torch.nn.functional.one_hot(labels, 10) * 4 for s in (0, 1)}
    students = {(c, s): teacher[s] + torch.randn(n, 10, generator=g) * w
                for c, w in (("narrow", 3.0), ("same size", 1.0)) for s in (0, 1)}
    return images, labels, teacher, students


def test_image_kinds_sort_every_image_once(logits):
    from labkd.exercises.fidelity import disagreement_breakdown
    from labkd.fidelity import KINDS, image_kinds

    _, labels, teacher, students = logits
    info = image_kinds(teacher[0], students[("narrow", 0)], labels)
    counts = np.bincount(info["kind"], minlength=len(KINDS))
    assert dict(zip(KINDS, counts.tolist(), strict=True)) == disagreement_breakdown(teacher[0], students[("narrow", 0)], labels)
    assert (info["kl_bits"] >= -1e-6).all() and ((info["teacher_conf"] > 0) & (info["teacher_conf"] <= 1)).all()
    assert np.allclose(image_kinds(teacher[0], teacher[0], labels)["kl_bits"], 0, atol=1e-5)
    with pytest.raises(ValueError, match="labels"):
        image_kinds(teacher[0], teacher[0], labels[:5])


def test_disagreement_panel_steps_through_one_kind_most_different_first(logits):
    images, labels, teacher, students = logits
    panel = wf.DisagreementPanel(images, labels, teacher, students)
    panel.select(condition="narrow", seed=1, kind="only the teacher right")
    rows = panel.chosen_images()
    info = panel.info[("narrow", 1)]
    assert len(rows) == panel.index.max + 1 and (info["kind"][rows] == 1).all()
    assert (np.diff(info["kl_bits"][rows]) <= 1e-9).all(), "most different first"
    first = panel.image()
    assert f"#{first}" in panel.status.value and "teacher says" in panel.status.value
    assert np.allclose(panel.figure.data[1].y, torch_softmax(teacher[1][first]))
    assert np.allclose(panel.figure.data[2].y, torch_softmax(students[("narrow", 1)][first]))
    panel.index.value = 1
    assert panel.image() == rows[1] and f"#{rows[1]}" in panel.status.value
    panel.select(kind="both right")
    assert panel.index.value == 0 and (info["kind"][panel.chosen_images()] == 0).all()
    rates = np.asarray(panel.figure.data[3].y)
    assert ((rates >= 0) & (rates <= 1)).all()
    print(f"disagreement panel: {panel.last_update_ms:.1f} ms")
    assert panel.last_update_ms < SANITY_MS
    with pytest.raises(ValueError, match="kind"):
        panel.select(kind="nope")
    with pytest.raises(ValueError, match="seed"):
        panel.select(seed=9)
    with pytest.raises(ValueError, match="teacher"):
        wf.DisagreementPanel(images, labels, {0: teacher[0]}, students)


def torch_softmax(row):
    import torch

    return torch.softmax(row.float(), 0).numpy()
