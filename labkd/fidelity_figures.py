"""Lesson 09's static figure (:mod:`labkd.fidelity`): test accuracy and a fidelity measure per
student epoch, one line per condition. The panels are in :mod:`labkd.widgets.fidelity`.

>>> fidelity_curves_figure(study)                  # test accuracy and agreement per epoch
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkd.fidelity import FIDELITY_METRICS, FidelityStudy


def palette(n: int) -> list[str]:
    """``n`` colours, one per condition (the figure and the panel colour conditions alike)."""
    base = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
    return [base[i % len(base)] for i in range(n)]


def fidelity_curves_figure(study: FidelityStudy, metric: str = "test_agreement") -> go.Figure:
    """Two panels over epochs, one line per condition (mean over seeds): test accuracy on the
    left, ``metric`` (one of :data:`labkd.fidelity.FIDELITY_METRICS`) on the right."""
    if metric not in FIDELITY_METRICS:
        raise ValueError(f"metric={metric!r} is unknown; expected one of {FIDELITY_METRICS}")
    curves = study.curves()
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test accuracy", metric.replace("_", " ")))
    epochs = np.arange(1, study.epochs + 1)
    for colour, (cond, c) in zip(palette(len(curves)), curves.items(), strict=True):
        dash = "dot" if "labels only" in cond else ("dash" if "jitter 0" not in cond else None)
        for col, key in ((1, "test_acc"), (2, metric)):
            fig.add_trace(go.Scatter(x=epochs, y=c[key], mode="lines+markers", name=cond, legendgroup=cond,
                                     showlegend=col == 1, line=dict(color=colour, dash=dash)), row=1, col=col)
    fig.update_xaxes(title_text="student epoch")
    fig.update_yaxes(tickformat=".1%", row=1, col=1)
    if "agreement" in metric:
        fig.update_yaxes(tickformat=".1%", row=1, col=2)
    fig.update_layout(height=420, margin=dict(l=60, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.2))
    return fig
