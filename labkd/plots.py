"""Plotly figures the lessons share. Each returns a ``go.Figure`` (or fills a ``FigureWidget``).

A lesson's own static figures live in ``labkd/<lesson>_figures.py`` (e.g. :mod:`labkd.sweeps_figures`);
:mod:`labkd.widgets` holds the interactive panels only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from labkd.data import Data


def image_grid(images: Tensor, titles: Sequence[str], columns: int = 8, height_per_row: int = 110) -> go.Figure:
    """A grid of greyscale images (N, 1, H, W) with a title each."""
    n = len(images)
    rows = max(1, -(-n // columns))
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=list(titles),
                        horizontal_spacing=0.01, vertical_spacing=0.06)
    for i in range(n):
        fig.add_trace(go.Heatmap(z=images[i, 0].flip(0).cpu().numpy(), colorscale="gray_r", showscale=False,
                                 hoverinfo="skip"), row=i // columns + 1, col=i % columns + 1)
    fig.update_xaxes(visible=False).update_yaxes(visible=False, scaleanchor=None)
    fig.update_layout(height=rows * height_per_row + 40, margin=dict(l=10, r=10, t=30, b=10))
    fig.update_annotations(font_size=11)
    return fig


def sample_grid(data: Data, per_class: int = 1, seed: int = 0) -> go.Figure:
    """One row of examples per class (the first ``per_class`` of each) from the test split."""
    images, titles = [], []
    for c in range(data.num_classes):
        idx = (data.test.y == c).nonzero().flatten()[:per_class]
        images += [data.test.x[i].cpu() for i in idx]
        titles += [data.class_names[c]] * len(idx)
    import torch

    return image_grid(torch.stack(images), titles, columns=min(10, len(images)))


def learning_curves(histories: Mapping[str, Sequence[Mapping[str, float]]], metric: str = "test_acc",
                    title: str | None = None) -> go.Figure:
    """One line per run: ``metric`` against epoch, from ``fit`` histories."""
    fig = go.Figure()
    for name, history in histories.items():
        fig.add_trace(go.Scatter(x=[r["epoch"] for r in history], y=[r[metric] for r in history],
                                 mode="lines+markers", name=name))
    fig.update_layout(title=title or metric, xaxis_title="epoch", yaxis_title=metric, height=380)
    return fig


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of values that may hold a diverged
    run's NaN (it propagates); :func:`labkd.stats.mean_std` is the checked version for claims."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def lines_with_error_bars(x: Sequence, series: Mapping[str, Sequence[Sequence[float]]], x_title: str,
                          y_title: str, log_x: bool = False, title: str = "") -> go.Figure:
    """``series[name][i]`` holds the per-seed values at ``x[i]``; plots mean ± std."""
    fig = go.Figure()
    for name, per_x in series.items():
        stats = [mean_std(v) for v in per_x]
        fig.add_trace(go.Scatter(x=list(x), y=[m for m, _ in stats], name=name, mode="lines+markers",
                                 error_y=dict(type="data", array=[s for _, s in stats], visible=True)))
    fig.update_layout(xaxis_title=x_title, yaxis_title=y_title, title=title, height=400)
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def heatmap(z: np.ndarray | Tensor, x: Sequence, y: Sequence, title: str = "", colorscale: str = "Blues",
            text_format: str = ".2f", x_title: str = "", y_title: str = "") -> go.Figure:
    """An annotated heatmap (rows ``y``, columns ``x``)."""
    z = z.cpu().numpy() if isinstance(z, Tensor) else np.asarray(z)
    fig = go.Figure(go.Heatmap(z=z, x=[str(v) for v in x], y=[str(v) for v in y], colorscale=colorscale,
                               texttemplate=f"%{{z:{text_format}}}"))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=420)
    fig.update_yaxes(autorange="reversed")
    return fig


def comparison_table(rows: Sequence[Mapping[str, object]]) -> go.Figure:
    """A plotly table from a list of dicts with the same keys (for "What we found")."""
    if not rows:
        raise ValueError("rows is empty: nothing to tabulate")
    columns = list(rows[0].keys())
    cells = [[_fmt(r.get(c)) for r in rows] for c in columns]
    fig = go.Figure(go.Table(header=dict(values=columns, align="left"), cells=dict(values=cells, align="left")))
    fig.update_layout(height=60 + 30 * len(rows), margin=dict(l=5, r=5, t=5, b=5))
    return fig


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def findings_table(findings: Sequence[Mapping[str, object]], widths: Sequence[float] = (1.0, 2.0, 3.0)) -> go.Figure:
    """A "What we found" table of sentences (e.g. claim / paper / this run), text wrapped, the
    height estimated from the wrapped lines. ``widths``: relative column widths (then 2 each)."""
    if not findings:
        raise ValueError("findings is empty: nothing to tabulate")
    columns = list(findings[0])
    rel = [*widths, *[2.0] * len(columns)][: len(columns)]
    cells = [[str(f.get(c, "")) for f in findings] for c in columns]
    fig = go.Figure(go.Table(columnwidth=rel, header=dict(values=[f"<b>{c}</b>" for c in columns], align="left"),
                             cells=dict(values=cells, align="left", height=24)))
    chars = [max(10, int(150 * w / sum(rel))) for w in rel]  # about 150 characters across the table

    def wrapped(text: str, width: int) -> int:
        return sum(max(1, -(-len(part) // width)) for part in text.split("<br>"))

    lines = sum(max(wrapped(col[i], w) for col, w in zip(cells, chars, strict=True)) for i in range(len(findings)))
    fig.update_layout(height=50 + 17 * lines + 10 * len(findings), margin=dict(l=5, r=5, t=5, b=5))
    return fig
