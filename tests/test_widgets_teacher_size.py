"""Panels and figures of lesson 04 (labkd.widgets.teacher_size), driven headless: set a control,
check the figure changed.

Recompute times are printed (``pytest -s``) and only checked against a generous sanity bound.
"""

from __future__ import annotations

import pytest

from labkd import load_data
from labkd import teacher_size as tsz
from labkd import teacher_studies as ts
from labkd.train import TrainConfig
from labkd.widgets.teacher_size import (
    TeacherSizePanel, assistant_figure, mimicry_figure, size_curves, teacher_size_figure,
)

SANITY_MS = 1000  # far above the 50 ms target: only catches a callback that trains or loops badly



@pytest.fixture(scope="module")
def data():
    return load_data("digits", val_size=200)


TEACHER = TrainConfig(epochs=2, batch_size=32, lr=0.05, eval_every=2)


@pytest.fixture(scope="module")
def kd():
    return TrainConfig(epochs=2, batch_size=32, optimizer="adam", lr=0.003, loss="distillation", eval_every=2)


@pytest.fixture(scope="module")
def family(data):
    return tsz.train_teacher_family(data, [(16, 16), (64, 64)], [0], TEACHER, progress=False)


@pytest.fixture(scope="module")
def grid(data, family, kd):
    return tsz.distil_grid(data, family, [(8, 8)], kd, progress=False)


# -- lesson 04 -----------------------------------------------------------------------------


def test_teacher_size_figure(family, grid):
    fig = teacher_size_figure(family.rows, grid, "64-8-8-10")
    assert len(fig.data) == 7 and fig.layout.xaxis2.type == "log"
    teacher, student, best = fig.data[0], fig.data[4], fig.data[5]
    assert list(teacher.x) == sorted(r["params"] for r in family.rows)
    assert len(student.y) == 2 and best.y[0] == max(student.y)
    assert fig.data[3].y[0] == pytest.approx(next(r["val_acc"] for r in grid if r["teacher"] == ts.BASELINE))
    assert "validation" in fig.layout.annotations[1].text


def test_mimicry_figure(family, grid):
    fig = mimicry_figure(tsz.mimicry(grid, family))
    assert len(fig.data) == 2 and len(fig.data[0].x) == 2 and fig.layout.xaxis.type == "log"
    assert "bits" in fig.layout.annotations[0].text
    with pytest.raises(ValueError, match="empty"):
        mimicry_figure([])


def test_size_curves_without_runs(family):
    curves = size_curves(family.rows, [], "64-99-99-10")
    assert curves["student_x"] == [] and curves["best"] is None and curves["baseline"] is None
    assert len(curves["teacher_x"]) == 2


def test_teacher_size_panel_switches_and_trains(data, family, grid, kd):
    panel = TeacherSizePanel(data, family, grid, kd, student_widths=[8, 12])
    assert panel.width == 8 and panel.missing_runs() == 0 and panel.train_button.disabled
    before = list(panel.figure.data[4].y)
    assert len(before) == 2 and "Best teacher" in panel.status.value

    panel.select(12)  # not trained yet: the teachers stay, the student curve empties, Train is offered
    print(f"\nteacher-size panel redraw: {panel.last_update_ms:.1f} ms")
    assert panel.last_update_ms < SANITY_MS
    assert len(panel.figure.data[4].y or ()) == 0 and len(panel.figure.data[0].y) == 2
    assert "not trained yet" in panel.figure.data[6].text[0]
    assert not panel.train_button.disabled and panel.missing_runs() == 3
    assert "not trained yet" in panel.status.value

    panel.train()
    assert panel.missing_runs() == 0 and panel.train_button.disabled
    assert panel.progress.value == panel.progress.max == 3
    assert len(panel.figure.data[4].y) == 2 and "64-12-12-10" in panel.figure.layout.annotations[1].text
    assert len(panel.figure.data[6].text or ()) == 0
    assert any("64-12-12-10" in label and "not trained" not in label for label, _ in panel.picker.options)

    panel.select(8)
    assert list(panel.figure.data[4].y) == before
    with pytest.raises(ValueError, match="not offered"):
        panel.select(99)


def test_teacher_size_panel_validates(data, family, grid, kd):
    with pytest.raises(ValueError, match="student_widths"):
        TeacherSizePanel(data, family, grid, kd, student_widths=[])
    with pytest.raises(ValueError, match="loss='distillation'"):
        TeacherSizePanel(data, family, grid, kd.replace(loss="cross_entropy"), student_widths=[8])


def test_assistant_figure():
    rows = [{"route": route, "test_acc": v, "student": "s"}
            for route, vs in (("direct", (0.92, 0.93)), ("via TA x", (0.94, 0.95))) for v in vs]
    fig = assistant_figure(rows)
    bars = fig.data[0]
    assert list(bars.x) == ["direct", "via TA x"]
    assert list(bars.y) == pytest.approx([0.925, 0.945])
    assert len(fig.data[1].y) == 4 and bars.marker.color[0] != bars.marker.color[1]
