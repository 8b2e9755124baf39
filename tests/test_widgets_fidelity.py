"""Panels and figures of lessons 09-10, driven headless: set a control, check the figure changed.

Built from synthetic results shaped like the real ones (no training); recompute times are
printed (``pytest -s``) and only checked against a generous sanity bound."""

from __future__ import annotations

import numpy as np
import pytest

from labkd.widgets import fidelity as wf
from labkd.widgets import online as wo

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
    fig = wf.fidelity_curves_figure(study)
    assert len(fig.data) == 2 * len(study.conditions)
    assert np.allclose(fig.data[1].y, study.curves()[study.conditions[0]]["test_agreement"])
    with pytest.raises(ValueError, match="metric"):
        wf.fidelity_curves_figure(study, "accuracy")


def test_born_again_panel_generation_slider():
    ban = wo._synthetic_ban(generations=3, seeds=2, n=500)
    panel = wo.BornAgainPanel(ban)
    assert len(panel.figure.data[1].y) == 3
    panel.generation.value = 1
    assert panel.figure.data[0].marker.color[1] == "#ff7f0e"
    assert panel.figure.data[0].marker.color[3] == "#1f77b4"
    # the ensemble of generation 1 alone is generation 1
    acc1 = np.mean([r["test_acc"] for r in ban.rows if r["generation"] == 1])
    assert panel.figure.data[1].y[0] == pytest.approx(acc1)
    assert "generation 1" in panel.status.value
    panel.select(0)
    assert len(panel.figure.data[1].y) == 0 and "ensemble" not in panel.status.value
    print(f"born-again generation slider: {panel.last_update_ms:.1f} ms")
    assert panel.last_update_ms < SANITY_MS
    with pytest.raises(ValueError, match="generation"):
        panel.select(7)


def test_mutual_panel_checkboxes_hide_and_show():
    rows = wo._synthetic_rows(n_models=2, repeats=2, epochs=4)
    rows = [dict(r, history=[dict(h, test_acc=h["test_acc"] + r["repeat"] / 100) for h in r["history"]]) for r in rows]
    panel = wo.MutualPanel(rows)
    assert all(t.visible is True for t in panel.figure.data)
    panel.boxes[panel.labels[0]].value = False
    assert panel.figure.data[0].visible is False
    y0 = list(panel.figure.data[1].y)
    panel.select(repeat=1, shown=[panel.labels[1]])
    assert list(panel.figure.data[1].y) != y0
    assert [t.visible for t in panel.figure.data] == [False, True, False, False]
    print(f"mutual checkbox: {panel.last_update_ms:.1f} ms")
    with pytest.raises(ValueError, match="unknown students"):
        panel.select(shown=["teacher"])
    fig = wo.mutual_figure(rows)
    assert len(fig.data) == 2 and len(fig.data[0].y) == 4


def test_benchmark_hooks_run():
    for module in (wf, wo):
        cases = module.benchmark_cases()
        assert cases
        for call in cases.values():
            call()
