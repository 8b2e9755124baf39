"""Lesson 08's static figure of the ensembles (:mod:`labkd.ensembles`): test errors of every member,
of the ensemble of the first k members, and of the students distilled from it.

>>> ensemble_figure(group.ensemble, group.rows)
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from labkd.ensembles import COLOURS, DISTILLED, LABELS, Ensemble, size_curve
from labkd.losses import ENSEMBLE_METHODS


def ensemble_figure(ensemble: Ensemble, student_rows: Sequence[dict] = ()) -> go.Figure:
    """Test errors of every member (grey dots), of the ensemble of the first k members (lines, one
    per averaging method) and of the group's students (markers at k = K): the labels-only student
    and each distilled one."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[1] * ensemble.size, y=[r["test_errors"] for r in ensemble.rows], mode="markers",
                             name="members (each seed)", marker=dict(color=COLOURS["member"], size=8),
                             text=[f"seed {r['seed']}" for r in ensemble.rows]))
    curve = size_curve(ensemble)
    for m in ENSEMBLE_METHODS:
        mine = [r for r in curve if r["method"] == m]
        fig.add_trace(go.Scatter(x=[r["size"] for r in mine], y=[r["test_errors"] for r in mine], mode="lines+markers",
                                 name=f"ensemble ({m} mean)", line=dict(color=COLOURS[m])))
    for r in student_rows:
        if r.get("arm") not in (LABELS, DISTILLED):
            continue
        m = r["method"] if r["arm"] == DISTILLED else LABELS
        offset = {"arithmetic": -0.15, "geometric": 0.15}.get(m, 0.0)
        name = (f"distilled ({m}, T={r['temperature']:g})" if r["arm"] == DISTILLED else "labels only") + f", seed {r['seed']}"
        fig.add_trace(go.Scatter(x=[ensemble.size + offset], y=[r["test_errors"]], mode="markers", name=name,
                                 marker=dict(color=COLOURS[m], symbol="star" if r["arm"] == DISTILLED else "diamond",
                                             size=14, line=dict(width=1, color="black"))))
    n_test = len(ensemble.data.test)
    fig.update_layout(xaxis_title="members in the ensemble (k)", yaxis_title=f"test errors (of {n_test:,})",
                      height=420, width=700, margin=dict(l=60, r=10, t=40, b=50),
                      title="Members, their ensemble, and one network distilled from it (one seed group)")
    fig.update_xaxes(dtick=1)
    return fig
