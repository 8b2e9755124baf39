"""Lesson 12's static figure (:mod:`labkd.compression`): accuracy against model size and against
latency, every variant coloured by method. The panels of :mod:`labkd.widgets.compression` fill the
same traces in place (:func:`add_traces`, :func:`fill_traces`).

>>> tradeoff_figure(rows)                       # every variant; stored bytes on a log axis
>>> tradeoff_figure(rows, method="prune", strength=0.9)   # those variants circled, arrows from their parents
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkd.compression import select
from labkd.compression_methods import SIZE_MEASURES

COLOURS = {"teacher": "#7f7f7f", "float32": "#1f77b4", "int8": "#ff7f0e", "kbit": "#bcbd22", "prune": "#2ca02c",
           "distil": "#d62728", "distil+int8": "#9467bd", "distil+prune": "#8c564b"}
SYMBOLS = {"MLP": "circle", "CNN": "square", "ResNet": "diamond", "student": "circle", "teacher": "star"}


def method_of(row: Mapping) -> str:
    return "teacher" if row["family"] == "teacher" else row["method"]


def check_rows(rows: Sequence[Mapping]) -> list[Mapping]:
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: run labkd.compression.compression_study first")
    needed = {"model", "family", "method", "strength", "label", "parent", "test_acc", "stored_bytes", "dense_bytes",
              "nonzero", "latency_ms"}
    missing = needed - set(rows[0])
    if missing:
        raise ValueError(f"rows lack the column(s) {sorted(missing)}; use compression_study rows")
    return rows


def check_size(size: str) -> str:
    if size not in SIZE_MEASURES:
        raise ValueError(f"size={size!r} is unknown; expected one of {list(SIZE_MEASURES)}")
    return size


def add_traces(fig: go.Figure, rows: Sequence[Mapping]) -> list[str]:
    """Background traces (one per method and panel), then arrows and highlight (left, right).
    Returns the methods in trace order."""
    groups = list(dict.fromkeys(method_of(r) for r in rows))
    hover = "%{text}<br>%{y:.2%}<extra></extra>"
    for m in groups:
        for col in (1, 2):
            fig.add_trace(go.Scatter(mode="markers", name=m, legendgroup=m, showlegend=col == 1, hovertemplate=hover,
                                     marker=dict(color=COLOURS.get(m, "#333"), size=8, opacity=0.45,
                                                 line=dict(width=0))), row=1, col=col)
    for col in (1, 2):
        fig.add_trace(go.Scatter(mode="lines", name="compressed from", showlegend=col == 1, hoverinfo="skip",
                                 line=dict(color="#444", width=1.5, dash="dot")), row=1, col=col)
    for col in (1, 2):
        fig.add_trace(go.Scatter(mode="markers", name="selected", showlegend=col == 1, hovertemplate=hover,
                                 marker=dict(size=15, color="rgba(0,0,0,0)", line=dict(color="black", width=2.5))),
                      row=1, col=col)
    fig.update_xaxes(type="log", row=1, col=1)
    fig.update_xaxes(type="log", title_text="CPU latency per batch, ms (log)", row=1, col=2)
    fig.update_yaxes(tickformat=".1%", title_text="test accuracy", row=1, col=1)
    fig.update_layout(height=470, margin=dict(l=60, r=20, t=40, b=60), legend=dict(orientation="h", y=-0.2))
    return groups


def fill_traces(fig: go.Figure, rows: Sequence[Mapping], groups: Sequence[str], size: str,
          chosen: Sequence[Mapping], background: str = "all") -> None:
    """Put the rows into the traces of ``fig`` in place (one batch update for a FigureWidget).
    ``background``: "all" draws every variant, "size" only moves them along the size axis,
    "none" leaves them (a slider move only changes the highlight)."""
    by_label = {r["label"]: r for r in rows}
    n = len(groups)

    def xs(rs, key):
        return [r[key] for r in rs]

    if background in ("all", "size"):
        for i, m in enumerate(groups):
            mine = [r for r in rows if method_of(r) == m]
            fig.data[2 * i].x = xs(mine, size)
            if background == "size":
                continue
            for col, key in ((0, size), (1, "latency_ms")):
                trace = fig.data[2 * i + col]
                trace.x, trace.y, trace.text = xs(mine, key), xs(mine, "test_acc"), xs(mine, "label")
                trace.marker.symbol = [SYMBOLS.get(r["family"], "circle") for r in mine]
    for col, key in ((0, size), (1, "latency_ms")):
        seg_x, seg_y = [], []
        for r in chosen:
            parent = by_label.get(r["parent"]) if r["parent"] else None
            if parent is not None and parent[key] is not None and r[key] is not None:
                seg_x += [parent[key], r[key], None]
                seg_y += [parent["test_acc"], r["test_acc"], None]
        fig.data[2 * n + col].x, fig.data[2 * n + col].y = seg_x, seg_y
        hi = fig.data[2 * n + 2 + col]
        hi.x, hi.y, hi.text = xs(chosen, key), xs(chosen, "test_acc"), xs(chosen, "label")
    fig.layout.xaxis.title.text = f"{SIZE_MEASURES[size]} (log)"


def tradeoff_figure(rows: Sequence[Mapping], size: str = "stored_bytes", method: str | None = None,
                    strength: object = None) -> go.Figure:
    """Accuracy against model size (left; ``size`` is a key of :data:`SIZE_MEASURES`) and
    against CPU latency per batch (right), every variant coloured by method, marker shape by
    family. With ``method`` (and ``strength``) those variants are circled, with a dotted line
    from the model each was compressed from."""
    rows = check_rows(rows)
    size = check_size(size)
    fig = go.Figure(make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                                  subplot_titles=("accuracy vs size", "accuracy vs latency")))
    groups = add_traces(fig, rows)
    chosen = [] if method is None else select(rows, method, strength)
    fill_traces(fig, rows, groups, size, chosen)
    return fig
