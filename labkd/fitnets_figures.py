"""Figures and tables of lesson 03 (FitNets, :mod:`labkd.fitnets`): hint maps, the three
methods' accuracies and curves, the models at a glance. Re-exported by :mod:`labkd.fitnets`.

>>> fitnets.hint_figure(snapshot)                 # hint vs regressed maps, before/after stage 1
>>> fitnets.curves_figure(rows)                   # every epoch counted, stage 1 included
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor, nn

from labkd import stats
from labkd.models import num_parameters

#: One colour per method, shared by every figure and panel of the lesson.
COLOURS = {"scratch": "#7f7f7f", "KD": "#1f77b4", "hints + KD": "#2ca02c", "teacher": "#d62728"}


def _model(model):
    """The module of a :class:`labkd.experiments.Trained` (or the module itself)."""
    return getattr(model, "model", model)


def busiest_channels(hint: Tensor, k: int = 4) -> list[int]:
    """The ``k`` channels of a hint (C, H, W) whose maps vary the most (the most informative to show)."""
    if hint.ndim != 3:
        raise ValueError(f"hint must have shape (C, H, W), got {tuple(hint.shape)}")
    return hint.flatten(1).std(1).argsort(descending=True)[:k].tolist()


# --------------------------------------------------------------------------------------------
# Figures


def hint_figure(snapshot, image: int = 0, channels: Sequence[int] | None = None) -> go.Figure:
    """Rows: channels of the teacher's hint; columns: the hint, the regressor's output before
    stage 1, and after. One test image; shared colour range per row."""
    channels = list(channels) if channels is not None else busiest_channels(snapshot.hint[image])
    titles = ["teacher hint", "regressed, before stage 1", "regressed, after stage 1"]
    fig = make_subplots(rows=len(channels), cols=3, column_titles=titles,
                        row_titles=[f"ch {c}" for c in channels], horizontal_spacing=0.03, vertical_spacing=0.03)
    for r, c in enumerate(channels, start=1):
        maps = [snapshot.hint[image, c], snapshot.before[image, c], snapshot.after[image, c]]
        lo, hi = float(min(m.min() for m in maps)), float(max(m.max() for m in maps))
        for col, m in enumerate(maps, start=1):
            fig.add_trace(go.Heatmap(z=m.flip(0).numpy(), zmin=lo, zmax=hi, colorscale="Viridis",
                                     showscale=False, hovertemplate="%{z:.2f}<extra></extra>"), row=r, col=col)
    fig.update_xaxes(visible=False).update_yaxes(visible=False)
    fig.update_layout(height=150 * len(channels) + 100, width=620, margin=dict(l=10, r=40, t=90, b=10),
                      title=dict(text=f"hint loss {snapshot.loss_before:.3f} → {snapshot.loss_after:.3f} "
                                      f"(MSE, {snapshot.loss_images} test images)", font_size=14, x=0.02, y=0.98))
    return fig


def comparison_figure(rows: Sequence[dict], teacher_accuracy: float | None = None) -> go.Figure:
    """Test accuracy of each method: one dot per seed and the mean ± std; the teacher as a line."""
    fig = go.Figure()
    for method in dict.fromkeys(r["method"] for r in rows):
        acc = [100 * r["accuracy"] for r in rows if r["method"] == method]
        mean, std = stats.mean_std(acc)
        colour = COLOURS.get(method)
        fig.add_trace(go.Scatter(x=[method] * len(acc), y=acc, mode="markers", name=f"{method} (seeds)",
                                 marker=dict(size=8, opacity=0.5, color=colour), showlegend=False))
        fig.add_trace(go.Scatter(x=[method], y=[mean], mode="markers", name=method,
                                 marker=dict(size=18, symbol="line-ew-open", line_width=3, color=colour),
                                 error_y=dict(type="data", array=[std], visible=True, color=colour)))
    if teacher_accuracy is not None:
        fig.add_hline(y=100 * teacher_accuracy, line_dash="dot", line_color=COLOURS["teacher"],
                      annotation_text="teacher")
    fig.update_layout(yaxis_title="test accuracy %", height=380, showlegend=False,
                      title="Same student, same initial weights, three ways of training")
    return fig


def curves_figure(rows: Sequence[dict], title: str = "Test accuracy during training (mean ± std over seeds)") -> go.Figure:
    """Test accuracy after each epoch, mean ± std over seeds. The x-axis counts every epoch of
    training, so hints + KD starts after its stage-1 epochs (in which the head is not trained)
    and every method ends at the same epoch (the same budget). Epochs that were not evaluated
    (``TrainConfig.eval_every``: NaN in the curve) are left out."""
    fig = go.Figure()
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        offset, n = mine[0]["offset"], min(len(r["curve"]) for r in mine)
        epochs = [e for e in range(n) if not any(math.isnan(r["curve"][e]) for r in mine)]
        spread = [stats.mean_std([100 * r["curve"][e] for r in mine]) for e in epochs]
        fig.add_trace(go.Scatter(x=[offset + e + 1 for e in epochs], y=[m for m, _ in spread], name=method,
                                 mode="lines+markers", line_color=COLOURS.get(method),
                                 error_y=dict(type="data", array=[s for _, s in spread])))
        if offset:
            fig.add_vrect(x0=0.5, x1=offset + 0.5, fillcolor="#2ca02c", opacity=0.08, line_width=0,
                          annotation_text="stage 1 (hints)", annotation_position="top left")
    fig.update_xaxes(dtick=1)
    fig.update_layout(xaxis_title="epochs of training (stage 1 included)", yaxis_title="test accuracy %",
                      height=380, title=title)
    return fig


def model_table(teacher: nn.Module, student: nn.Module,
                regressor: nn.Module | None = None, student_name: str = "student",
                **more_students: nn.Module) -> list[dict]:
    """Rows describing teacher, student, any ``more_students`` (by name) and the stage-1
    regressor: layers, channels, batch norm, parameters."""
    rows = []
    for name, model in (("teacher", teacher), (student_name, student), *more_students.items()):
        model = _model(model)
        channels = model.spec.get("channels", ())
        shown = f"{len(channels)} x {channels[0]}" if channels and len(set(channels)) == 1 else str(tuple(channels))
        rows.append({"model": name, "conv layers": len(model.feature_names), "channels": shown,
                     "batch norm": "yes" if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) else "no",
                     "params": num_parameters(model)})
    if regressor is not None:
        rows.append({"model": "regressor (stage 1 only)", "conv layers": 1, "channels": "",
                     "params": num_parameters(regressor)})
    return rows
