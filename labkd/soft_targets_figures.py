"""Lesson 01's static figures (:mod:`labkd.soft_targets`): what a soft target says at each
temperature, and the teacher's least certain images. The panels are in :mod:`labkd.widgets.soft_targets`.

>>> information_figure(logits, data.test.y)
>>> informative_examples_figure(data.test.x, logits, data.test.y, most_informative_examples(logits, k=18), data.class_names)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from labkd.losses import check_logits, check_targets
from labkd.plots import image_grid
from labkd.soft_targets import (
    check_temperatures, effective_classes, entropy_by_temperature, top_classes, within_class_information,
)


def information_figure(logits: Tensor, targets: Tensor, temperatures: Sequence[float] | None = None,
                       threshold: float = 0.01, title: str = "What a soft target says, by temperature") -> go.Figure:
    """Three curves against temperature (log axis): mean entropy (bits), mean number of classes
    above ``threshold``, and :func:`within_class_information` (bits); the one-hot label and the
    uniform distribution are marked where they apply."""
    check_logits(logits, "logits")
    check_targets(targets, logits)
    default = torch.logspace(math.log10(0.5), math.log10(20), 21).tolist()
    temps = check_temperatures(temperatures if temperatures is not None else default)
    c = logits.shape[1]
    curves = (
        (entropy_by_temperature(logits, temps, "bits").tolist(), "bits", (0.0, math.log2(c))),
        ([float(effective_classes(logits, t, threshold).float().mean()) for t in temps], "classes", (1.0, float(c))),
        ([within_class_information(logits, targets, t) for t in temps], "bits", (0.0, None)),
    )
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08, subplot_titles=(
        "spread: mean entropy", f"classes above {threshold:.0%}", "image-specific: KL to class mean"))
    for col, (values, unit, (label_value, uniform_value)) in enumerate(curves, start=1):
        fig.add_trace(go.Scatter(x=temps, y=values, mode="lines+markers", line_color="#1f77b4",
                                 hovertemplate=f"T = %{{x:.2f}}<br>%{{y:.3f}} {unit}<extra></extra>"), 1, col)
        fig.add_hline(y=label_value, line_dash="dot", line_color="#d62728", row=1, col=col,
                      annotation_text="one-hot label", annotation_position="top left")
        if uniform_value is not None:
            fig.add_hline(y=uniform_value, line_dash="dash", line_color="grey", row=1, col=col,
                          annotation_text="uniform", annotation_position="bottom right")
        fig.update_yaxes(title_text=unit, row=1, col=col)
    ticks = [t for t in (0.5, 1, 2, 4, 8, 20, 50, 100) if min(temps) <= t <= max(temps)]
    fig.update_xaxes(type="log", title_text="temperature T", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    fig.update_layout(title=title, height=380, showlegend=False, margin=dict(t=80, l=50, r=20))
    return fig


def informative_examples_figure(images: Tensor, logits: Tensor, targets: Tensor, indices: Tensor,
                                class_names: Sequence[str], temperature: float = 1.0, columns: int = 6) -> go.Figure:
    """The images at ``indices`` with their label and the teacher's two most likely classes."""
    check_logits(logits, "logits")
    y = check_targets(targets, logits)
    if images.shape[0] != logits.shape[0]:
        raise ValueError(f"images has {images.shape[0]} rows but logits has {logits.shape[0]}")
    idx = torch.as_tensor(indices, dtype=torch.long).cpu()
    probs, classes = top_classes(logits[idx.to(logits.device)], 2, temperature)
    titles = [f"label {class_names[int(y[i])]}: {class_names[int(classes[r, 0])]} {float(probs[r, 0]):.0%}, "
              f"{class_names[int(classes[r, 1])]} {float(probs[r, 1]):.0%}" for r, i in enumerate(idx)]
    fig = image_grid(images[idx.to(images.device)].cpu(), titles, columns=columns, height_per_row=150)
    fig.update_layout(title=f"The teacher's least certain test images (top two classes at T = {temperature:g})",
                      margin=dict(t=70))
    return fig
