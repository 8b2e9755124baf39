"""Lesson 08's static figure of the specialists (:mod:`labkd.specialists`): the covariance of the
generalist's predictions, classes ordered cluster by cluster. The slider panel
:class:`labkd.widgets.specialists.ClusterPanel` redraws it from :func:`heatmap_values`.

>>> covariance_heatmap(prediction_covariance(val_probs), groups, data.class_names)
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from torch import Tensor

from labkd.specialists_combine import cluster_order


def heatmap_values(cov: Tensor, groups: Sequence[Sequence[int]], class_names: Sequence[str]) -> dict:
    """What :func:`covariance_heatmap` draws (the panel redraws from these): ``z`` without the
    diagonal, class ``names`` in cluster order and the cluster boxes as one line."""
    order = cluster_order(groups)
    z: list[list[float | None]] = cov[order][:, order].tolist()
    for i in range(len(z)):  # each class's own variance dwarfs the rest and is not what k-means uses
        z[i][i] = None  # None, not NaN: a FigureWidget's messages must be valid JSON
    names = [class_names[c] for c in order]
    box_x: list[float | None] = []
    box_y: list[float | None] = []
    start = 0
    for g in groups:  # a box around each cluster's diagonal block, as one line trace (cheaper than shapes)
        a, b = start - 0.5, start + len(g) - 0.5
        box_x += [a, b, b, a, a, None]
        box_y += [a, a, b, b, a, None]
        start += len(g)
    return {"z": z, "names": names, "box_x": box_x, "box_y": box_y}


def covariance_heatmap(cov: Tensor, groups: Sequence[Sequence[int]], class_names: Sequence[str]) -> go.Figure:
    """Heatmap of a (C, C) prediction covariance without its diagonal (left blank), classes
    ordered by cluster, a box around each cluster."""
    v = heatmap_values(cov, groups, class_names)
    fig = go.Figure(go.Heatmap(z=v["z"], x=list(range(len(v["names"]))), y=list(range(len(v["names"]))),
                               colorscale="RdBu", zmid=0, colorbar=dict(title="covariance")))
    fig.add_trace(go.Scatter(x=v["box_x"], y=v["box_y"], mode="lines", line=dict(color="black", width=2),
                             hoverinfo="skip", showlegend=False, name="clusters"))
    fig.update_layout(height=480, width=560, margin=dict(l=110, r=10, t=50, b=110),
                      title=f"Covariance of the generalist's predictions (off-diagonal), {len(groups)} clusters")
    _axis_labels(fig, v["names"])
    return fig


def _axis_labels(fig: go.Figure, names: Sequence[str]) -> None:
    ticks = dict(tickmode="array", tickvals=list(range(len(names))), ticktext=list(names))
    fig.update_xaxes(**ticks, tickangle=-45)
    fig.update_yaxes(**ticks, autorange="reversed")
