"""Lesson 07's static figures (:mod:`labkd.transfer_sets`): errors against the bias shift (whose
traces the slider panel :class:`labkd.widgets.transfer_sets.BiasShiftPanel` fills in place) and
the learning curves of the small-data runs.

>>> shift_figure(study)                 # errors against the shift, the chosen one marked
>>> curves_figure(rows)                 # test accuracy and loss per epoch, hard vs soft targets
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkd.transfer_sets import COLOURS, ShiftStudy, check_shift


def shift_traces(fig: go.Figure) -> None:
    """Add the traces :func:`fill_shift_figure` updates, in a fixed order: per-class test errors
    without and with the shift (left), val and test errors against the shift, and the current
    shift's two markers (right)."""
    fig.add_trace(go.Bar(name="no shift", marker_color=COLOURS["before"],
                         hovertemplate="class %{x}: %{y} errors without the shift<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(name="with the shift", marker_color=COLOURS["after"],
                         hovertemplate="class %{x}: %{y} errors with the shift<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(name="validation errors", mode="lines", line=dict(color="#2ca02c"),
                             hovertemplate="shift %{x:+.1f}: %{y} val errors<extra></extra>"), row=1, col=2)
    fig.add_trace(go.Scatter(name="test errors", mode="lines", line=dict(color="#1f77b4", dash="dot"),
                             hovertemplate="shift %{x:+.1f}: %{y} test errors<extra></extra>"), row=1, col=2)
    fig.add_trace(go.Scatter(name="current shift", mode="markers", showlegend=False,
                             marker=dict(size=11, color=["#2ca02c", "#1f77b4"], line=dict(color="black", width=1)),
                             hoverinfo="skip"), row=1, col=2)
    fig.update_xaxes(title_text="true class", type="category", row=1, col=1)
    fig.update_yaxes(title_text="test errors", row=1, col=1)
    fig.update_xaxes(title_text="shift added to the classes' logits", row=1, col=2)
    fig.update_yaxes(title_text="errors", type="log", row=1, col=2)
    fig.update_layout(barmode="group", height=420, margin=dict(l=60, r=20, t=50, b=50),
                      legend=dict(orientation="h", y=-0.2))


def fill_shift_figure(fig: go.Figure, study: ShiftStudy, shift: float, curves: bool = True) -> None:
    """Put ``study`` at ``shift`` into the traces of :func:`shift_traces` (in one batch update).
    ``curves=False`` leaves the study-wide traces (no-shift bars, error curves) as they are."""
    shift = check_shift(shift)
    after = study.errors_per_class(shift).tolist()
    val_now, test_now = study.errors(shift, "val"), study.errors(shift, "test")
    with fig.batch_update():
        if curves:
            names = [f"{n} (missing)" if i in study.missing else n for i, n in enumerate(study.class_names)]
            fig.data[0].x = names
            fig.data[0].y = study.errors_per_class(0.0).tolist()
            fig.data[1].x = names
            grid = study.shifts.tolist()
            fig.data[2].x, fig.data[2].y = grid, [max(v, 0.5) for v in study.val_errors.tolist()]
            fig.data[3].x, fig.data[3].y = grid, [max(v, 0.5) for v in study.test_errors.tolist()]
            fig.layout.shapes = [dict(type="line", xref="x2", yref="paper", x0=study.shift, x1=study.shift, y0=0, y1=1,
                                      line=dict(color="#2ca02c", dash="dash", width=1))]
            colours = [COLOURS["missing"] if i in study.missing else COLOURS["after"] for i in range(len(names))]
            fig.data[1].marker.color = colours
            fig.layout.annotations[0].text = f"{study.name}: test errors per class"
            fig.layout.annotations[1].text = f"errors against the shift (dashed: chosen on val, {study.shift:+.1f})"
        fig.data[1].y = after
        fig.data[1].name = f"with shift {shift:+.1f}"
        fig.data[4].x, fig.data[4].y = [shift, shift], [max(val_now, 0.5), max(test_now, 0.5)]


def shift_figure(study: ShiftStudy, shift: float | None = None) -> go.Figure:
    """Per-class test errors without and with ``shift`` (default: the one chosen on val), and
    validation/test errors against the shift."""
    fig = go.Figure(make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], subplot_titles=("per class", "against the shift")))
    shift_traces(fig)
    fill_shift_figure(fig, study, study.shift if shift is None else shift)
    return fig




def curves_figure(rows: Sequence[Mapping]) -> go.Figure:
    """Learning curves per epoch, mean over seeds with a ± std band, one colour per arm:
    training accuracy (left), test accuracy (middle; open circles mark the early-stopping
    epochs, chosen on validation accuracy) and test loss, the cross-entropy with the labels
    (right; it climbs when a model becomes over-confident, even if its accuracy holds)."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "training accuracy (during each epoch)", "test accuracy", "test loss (cross-entropy)"))
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        colour = COLOURS.get(arm, "#555")
        label = f"{arm} ({mine[0]['n_train']:,} images)"
        for col, key in ((1, "curve_train"), (2, "curve_test"), (3, "curve_test_loss")):
            curves = np.array([r[key] for r in mine], dtype=float)
            epochs = list(range(1, curves.shape[1] + 1))
            mean = curves.mean(0)
            if len(mine) > 1:
                std = curves.std(0, ddof=1)
                fig.add_trace(go.Scatter(x=epochs + epochs[::-1], y=list(mean + std) + list((mean - std)[::-1]),
                                         fill="toself", fillcolor=_rgba(colour, 0.15), line=dict(width=0),
                                         hoverinfo="skip", showlegend=False), row=1, col=col)
            value = "%{y:.3f}" if col == 3 else "%{y:.2%}"
            fig.add_trace(go.Scatter(x=epochs, y=mean.tolist(), mode="lines", name=label, legendgroup=arm,
                                     showlegend=col == 1, line=dict(color=colour),
                                     hovertemplate=f"{arm}<br>epoch %{{x}}: {value}<extra></extra>"), row=1, col=col)
        fig.add_trace(go.Scatter(x=[r["stop_epoch"] for r in mine], y=[r["stopped_test_acc"] for r in mine],
                                 mode="markers", legendgroup=arm, showlegend=False,
                                 marker=dict(color=colour, size=9, symbol="circle-open", line=dict(width=2)),
                                 hovertemplate="early stop at epoch %{x}: test %{y:.2%}<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(tickformat=".0%", row=1, col=1)
    fig.update_yaxes(tickformat=".1%", row=1, col=2)
    fig.update_layout(height=430, margin=dict(l=60, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.22))
    return fig


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
