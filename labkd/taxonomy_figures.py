"""Lesson 11's figures and the data of its interactive panel (no training here).

:func:`attention_figure` (a model's attention maps), :func:`selection_figure` (the settings
tried on validation), :func:`comparison_figure` (test accuracy, agreement and paired gains per
method), :func:`match_figure` (distance to the teacher per kind of knowledge) and
:func:`relation_snapshot`, the precomputed views :class:`labkd.widgets.taxonomy.TaxonomyPanel` shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor, nn

from labkd import feature_losses, stats
from labkd.data import Data
from labkd.experiments import Trained
from labkd.taxonomy import (COLOURS, GUIDED_LAYER, HINT_LAYER, PROBE_TEMPERATURE, PROBES, Selection, by_seed,
                            model_of, probe, setting_label)
from labkd.threads import fixed_threads



def attention_figure(model: nn.Module | Trained, x: Tensor, layers: Sequence[str] | None = None,
                     attention_map: Callable[[Tensor], Tensor] = feature_losses.attention_map) -> go.Figure:
    """Images ``x`` (B, 1, H, W) in the first column and ``model``'s attention maps at ``layers``
    (default: every block) beside them, computed with ``attention_map`` ((N, C, h, w) -> (N, h·w))."""
    model = model_of(model)
    layers = list(layers) if layers is not None else model.feature_names
    mode = model.training
    model.eval()
    with torch.no_grad(), fixed_threads():
        _, feats = model.forward_features(x.to(next(model.parameters()).device))
    model.train(mode)
    fig = make_subplots(rows=len(x), cols=len(layers) + 1, column_titles=["image", *layers],
                        horizontal_spacing=0.02, vertical_spacing=0.02)
    for r in range(len(x)):
        fig.add_trace(go.Heatmap(z=x[r, 0].cpu().numpy(), colorscale="gray_r", showscale=False, hoverinfo="skip"),
                      row=r + 1, col=1)
        for c, layer in enumerate(layers, start=2):
            f = feats[layer][r:r + 1].cpu()
            q = attention_map(f).reshape(f.shape[2:])
            fig.add_trace(go.Heatmap(z=q.numpy(), colorscale="Viridis", showscale=False,
                                     hovertemplate="%{z:.3f}<extra></extra>"), row=r + 1, col=c)
    fig.update_xaxes(visible=False).update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(height=110 * len(x) + 60, width=110 * (len(layers) + 1) + 80, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def selection_figure(selection: Selection) -> go.Figure:
    """Validation accuracy of every setting tried (mean ± std over the development seeds), one
    panel per method; the chosen setting is drawn solid."""
    methods = list(dict.fromkeys(r["method"] for r in selection.rows))
    fig = make_subplots(rows=1, cols=len(methods), subplot_titles=methods, shared_yaxes=True,
                        column_widths=[max(1, len({r['setting'] for r in selection.rows if r['method'] == m}))
                                       for m in methods])
    for col, method in enumerate(methods, start=1):
        labels = list(dict.fromkeys(r["setting"] for r in selection.rows if r["method"] == method))
        mean_std = [stats.mean_std([r["val_acc"] for r in selection.rows
                                    if r["method"] == method and r["setting"] == label]) for label in labels]
        chosen = setting_label(selection.settings[method])
        fig.add_trace(go.Bar(x=labels, y=[100 * m for m, _ in mean_std], name=method, showlegend=False,
                             marker=dict(color=COLOURS.get(method, "#1f77b4"),
                                         opacity=[1.0 if label == chosen else 0.35 for label in labels]),
                             error_y=dict(type="data", array=[100 * s for _, s in mean_std])), row=1, col=col)
    low = min(r["val_acc"] for r in selection.rows)
    fig.update_yaxes(range=[100 * low - 2, None], row=1, col=1, title_text="validation accuracy %")
    fig.update_layout(height=380, title=f"Settings tried on the validation split (development seeds "
                                        f"{list(selection.seeds)}); solid = chosen")
    return fig


def comparison_figure(rows: Sequence[Mapping], teacher_accuracy: float | None = None) -> go.Figure:
    """Test accuracy and agreement with the teacher per method: a dot per seed, mean ± std; and
    the per-seed difference to the labels-only student of the same seed (paired)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig = make_subplots(rows=1, cols=3, subplot_titles=["test accuracy %", "top-1 agreement with the teacher %",
                                                        "paired gain over labels only (points)"])
    base = by_seed(rows, "labels only")
    for col, key in ((1, "accuracy"), (2, "agreement"), (3, "gain")):
        for method in methods:
            if key == "gain":
                if not base or method == "labels only":
                    continue
                mine = by_seed(rows, method)
                values = [100 * (mine[s] - base[s]) for s in mine if s in base]
            else:
                values = [100 * r[key] for r in rows if r["method"] == method]
            if not values:
                continue
            mean, std = stats.mean_std(values)
            colour = COLOURS.get(method)
            fig.add_trace(go.Scatter(x=[method] * len(values), y=values, mode="markers", showlegend=False,
                                     marker=dict(size=7, opacity=0.5, color=colour)), row=1, col=col)
            fig.add_trace(go.Scatter(x=[method], y=[mean], mode="markers", showlegend=False, name=method,
                                     marker=dict(size=18, symbol="line-ew-open", line_width=3, color=colour),
                                     error_y=dict(type="data", array=[std], color=colour)), row=1, col=col)
    if teacher_accuracy is not None:
        fig.add_hline(y=100 * teacher_accuracy, line_dash="dot", line_color=COLOURS["teacher"],
                      annotation_text="teacher", row=1, col=1)
    if base:
        fig.add_hline(y=0, line_color="#999", row=1, col=3)
    fig.update_layout(height=400, title="Same student, same start, four kinds of supervision (fresh seeds)")
    return fig


def match_figure(rows: Sequence[Mapping]) -> go.Figure:
    """Heatmap: for each method (rows) and kind of knowledge (columns), the mean probe distance
    to the teacher divided by the labels-only student's (1 = no closer than labels alone)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    means = {m: {k: float(np.mean([r[k] for r in rows if r["method"] == m])) for k in PROBES} for m in methods}
    base = means.get("labels only")
    z = [[means[m][k] / base[k] if base and base[k] > 0 else means[m][k] for k in PROBES] for m in methods]
    fig = go.Figure(go.Heatmap(z=z, x=list(PROBES.values()), y=methods, colorscale="RdBu", zmid=1.0,
                               texttemplate="%{z:.2f}", reversescale=False,
                               hovertemplate="%{y}, %{x}: %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=120 + 45 * len(methods), title="Distance to the teacher, relative to the labels-only "
                      "student" if base else "Distance to the teacher", margin=dict(l=10, r=10, t=60, b=10))
    return fig


# --------------------------------------------------------------------------------------------
# What the panel shows: one fixed batch, every model's three kinds of "knowledge"


@dataclass
class RelationSnapshot:
    """Precomputed views of one fixed batch of B test images (all on the CPU).

    ``images`` (B, 1, H, W), ``labels`` (B,); per model name ("teacher" and each method):
    ``probs[name]`` soft targets at ``temperature`` (B, C), ``attention[name]`` normalised
    attention maps (B, h, w), ``distances[name]`` RKD-normalised distance matrices (B, B) and
    ``scores[name]`` its :func:`probe` distances to the teacher on this batch.
    """

    images: Tensor
    labels: Tensor
    class_names: list[str]
    temperature: float
    probs: dict[str, Tensor] = field(default_factory=dict)
    attention: dict[str, Tensor] = field(default_factory=dict)
    distances: dict[str, Tensor] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return [n for n in self.probs if n != "teacher"]


def sorted_batch(data: Data, per_class: int = 3) -> Tensor:
    """Indices of ``per_class`` test images of every class, grouped by class (so a distance
    matrix shows blocks when the embedding separates the classes)."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    y = data.test.y.cpu()
    picks = [torch.nonzero(y == c).flatten()[:per_class] for c in range(data.num_classes)]
    return torch.cat(picks)


@torch.no_grad()
def relation_snapshot(teacher: nn.Module | Trained, students: Mapping[str, nn.Module | Trained], data: Data,
                      per_class: int = 3, temperature: float = PROBE_TEMPERATURE,
                      hint_layer: str = HINT_LAYER, guided_layer: str = GUIDED_LAYER) -> RelationSnapshot:
    """Everything :class:`labkd.widgets.taxonomy.TaxonomyPanel` shows, computed once (no training)."""
    if not students:
        raise ValueError("students is empty: give at least one {method: trained student}")
    idx = sorted_batch(data, per_class)
    x = data.test.x[idx].cpu()
    snap = RelationSnapshot(images=x, labels=data.test.y[idx].cpu(), class_names=list(data.class_names),
                            temperature=float(temperature))
    models = {"teacher": (model_of(teacher), hint_layer), **{n: (model_of(s), guided_layer) for n, s in students.items()}}
    for name, (model, layer) in models.items():
        mode = model.training
        model.eval()
        device = next(model.parameters()).device
        with fixed_threads():
            logits, feats = model.forward_features(x.to(device))
        model.train(mode)
        f = feats[layer].cpu()
        snap.probs[name] = torch.softmax(logits.cpu() / temperature, dim=1)
        snap.attention[name] = feature_losses.attention_map(f).reshape(len(x), *f.shape[2:])
        snap.distances[name] = feature_losses.normalized_distances(feature_losses.embed(f))
    for name in snap.methods:
        snap.scores[name] = probe(students[name], teacher, x, hint_layer, guided_layer, temperature)
    return snap
