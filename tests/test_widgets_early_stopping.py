"""Panels and figures of lesson 05 (labkd.widgets.early_stopping), driven headless: set a control,
check the figure changed.

Recompute times are printed (``pytest -s``) and only checked against a generous sanity bound.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from labkd import early_stopping as es
from labkd import load_data
from labkd import teacher_studies as ts
from labkd.train import TrainConfig
from labkd.widgets.early_stopping import EarlyStoppingPanel, early_stopping_figure, eskd_figure

SANITY_MS = 1000  # far above the 50 ms target: only catches a callback that trains or loops badly
TEACHER = TrainConfig(epochs=2, batch_size=32, lr=0.05, eval_every=2)


@pytest.fixture(scope="module")
def data():
    return load_data("digits", val_size=200)


@pytest.fixture(scope="module")
def kd():
    return TrainConfig(epochs=2, batch_size=32, optimizer="adam", lr=0.003, loss="distillation", eval_every=2)


def _synthetic_panel(epochs=(1, 2, 5), k=3, c=10):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(len(epochs), k, c, generator=gen) * torch.tensor(epochs, dtype=torch.float)[:, None, None]
    images = torch.rand(k, 1, 8, 8, generator=gen)
    student = (list(epochs), [0.90, 0.93, 0.92], [0.01, 0.0, 0.02])
    teacher = {e: {"train_acc": 0.95, "test_acc": 0.9 + e / 100, "entropy_bits": 2.0 / e, "ece": 0.01 * e}
               for e in epochs}
    panel = EarlyStoppingPanel(logits, epochs, images, [0, 1, 2], [str(i) for i in range(c)], student,
                               teacher=teacher, baseline=0.88, temperature=4.0)
    return panel, logits


def test_early_stopping_panel_slider_moves_bars_and_highlight():
    panel, logits = _synthetic_panel()
    k = 3
    assert panel.epoch == 5 and list(panel.figure.data[-1].x) == [5]
    panel.select(2)
    print(f"\nearly-stopping panel redraw: {panel.last_update_ms:.1f} ms")
    assert panel.last_update_ms < SANITY_MS
    expected = torch.softmax(logits[1] / 4.0, dim=1).numpy()
    for j in range(k):
        assert np.allclose(panel.figure.data[k + j].y, expected[j])
        colours = panel.figure.data[k + j].marker.color
        assert colours[j] != colours[(j + 1) % 10], "the labelled class is coloured differently"
    assert list(panel.figure.data[-1].x) == [2] and list(panel.figure.data[-1].y) == [0.93]
    assert "2 epochs" in panel.readout.value and "93.00%" in panel.readout.value and "bits" in panel.readout.value
    assert np.allclose(panel.probabilities(1), torch.softmax(logits[0] / 4.0, 1).numpy())
    with pytest.raises(ValueError, match="not one of"):
        panel.select(3)


def test_early_stopping_panel_validates():
    images = torch.zeros(2, 8, 8)
    with pytest.raises(ValueError, match="shape"):
        EarlyStoppingPanel(torch.zeros(3, 2, 10), [1, 2], images, [0, 1], list("0123456789"), ([1], [0.9], [0]))
    with pytest.raises(ValueError, match="class_names"):
        EarlyStoppingPanel(torch.zeros(2, 2, 10), [1, 2], images, [0, 1], list("012"), ([1], [0.9], [0]))
    with pytest.raises(ValueError, match="increasing"):
        EarlyStoppingPanel(torch.zeros(2, 2, 10), [2, 1], images, [0, 1], list("0123456789"), ([1], [0.9], [0]))
    with pytest.raises(ValueError, match="temperature"):
        EarlyStoppingPanel(torch.zeros(2, 2, 10), [1, 2], images, [0, 1], list("0123456789"), ([1], [0.9], [0]),
                           temperature=-1)


def test_early_stopping_panel_from_teachers(data, kd):
    teachers = es.train_schedule_teachers(data, (32, 32), [1, 2], [0], TEACHER, progress=False)
    rows = es.teacher_rows(teachers, data)
    students = es.distil_from_schedules(data, teachers, (8, 8), kd, [0], progress=False)
    panel = EarlyStoppingPanel.from_teachers({e: teachers[(e, 0)] for e in (1, 2)}, data, rows, students, n_images=2)
    assert panel.epochs == [1, 2] and len(panel.labels) == 2
    first = np.array(panel.figure.data[2].y)
    panel.select(1)
    assert not np.allclose(panel.figure.data[2].y, first), "a different teacher, different soft targets"
    assert "ECE" in panel.readout.value

    fig = early_stopping_figure(rows, students)
    assert isinstance(fig, go.Figure) and len(fig.data) == 6  # five curves + the labels-only line
    assert list(fig.data[0].x) == [1, 2] and "bits" in fig.layout.annotations[2].text


def test_eskd_figure():
    rows = [{"student": "s", "stop_epoch": k, "arm": arm, "seed": s, "val_acc": 0.9 + (k or 0) / 100}
            for k, arm in ((None, es.KD_THROUGHOUT), (None, ts.BASELINE), (2, "ESKD k=2"), (5, "ESKD k=5"))
            for s in (0, 1)]
    fig = eskd_figure(rows)
    assert len(fig.data) == 3 and list(fig.data[0].x) == [2, 5]
    assert list(fig.data[0].y) == pytest.approx([0.92, 0.95])
    with pytest.raises(ValueError, match="no ESKD"):
        eskd_figure([r for r in rows if r["stop_epoch"] is None])
    with pytest.raises(ValueError, match="empty"):
        eskd_figure([])
