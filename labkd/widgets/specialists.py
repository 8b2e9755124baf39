"""Panels of lesson 08: how many class clusters, and what the specialists change on one image.

- :class:`ClusterPanel`: a slider over the number of clusters K redraws the covariance of the
  generalist's predictions with the classes ordered cluster by cluster (all K precomputed).
- :class:`CombinationPanel`: pick a test image; bars show the generalist's distribution, each
  active specialist's (its classes and its dustbin) and the combined one (all precomputed).

Both only recompute from stored tensors, so a control change costs a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from labkd.specialists import DUSTBIN, SpecialistRun
from labkd.specialists_combine import cluster_classes, prediction_covariance
from labkd.specialists_figures import covariance_heatmap, heatmap_values
from labkd.widgets import Panel, figure_widget

COLOURS = {"generalist": "#7f7f7f", "combined": "#2ca02c"}
SPECIALIST_COLOURS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


class ClusterPanel(Panel):
    """Slider over K (number of clusters): the clustered covariance heatmap and the clusters in words.

    ``probs`` (N, C): the generalist's predicted probabilities (validation set). The clusters of
    every K are computed once in the constructor; the slider only swaps stored arrays."""

    def __init__(self, probs: Tensor, class_names: Sequence[str], k: int = 4, seed: int = 0,
                 k_values: Sequence[int] | None = None) -> None:
        self.class_names = list(class_names)
        c = len(self.class_names)
        if probs.ndim != 2 or probs.shape[1] != c:
            raise ValueError(f"probs must have shape (N, {c}) (one column per class name), got {tuple(probs.shape)}")
        ks = list(k_values) if k_values is not None else list(range(2, c))
        if not ks or any(not 1 <= int(v) <= c for v in ks):
            raise ValueError(f"k_values must be numbers of clusters in 1..{c}, got {ks}")
        if k not in ks:
            raise ValueError(f"k={k} is not among k_values {ks}")
        self.covariance = prediction_covariance(probs)
        self.groups = {int(v): cluster_classes(probs, int(v), seed=seed) for v in ks}
        self.values = {v: heatmap_values(self.covariance, g, self.class_names) for v, g in self.groups.items()}
        self.slider = widgets.SelectionSlider(options=ks, value=k, description="clusters K",
                                              continuous_update=True, layout=widgets.Layout(width="420px"))
        self.text = widgets.HTML()
        self.figure = figure_widget(covariance_heatmap(self.covariance, self.groups[k], self.class_names))
        self.slider.observe(self.on_change, names="value")
        self.widget = widgets.VBox([self.slider, self.figure, self.text])
        self.timed(self.update)

    @property
    def k(self) -> int:
        return int(self.slider.value)

    def update(self) -> None:
        v, groups = self.values[self.k], self.groups[self.k]
        with self.figure.batch_update():
            heat = self.figure.data[0]
            heat.z = v["z"]
            self.figure.data[1].x, self.figure.data[1].y = v["box_x"], v["box_y"]
            self.figure.layout.xaxis.ticktext = v["names"]
            self.figure.layout.yaxis.ticktext = v["names"]
            self.figure.layout.title.text = f"Covariance of the generalist's predictions (off-diagonal), {len(groups)} clusters"
        lines = [f"<b>{i + 1}</b>: {', '.join(self.class_names[c] for c in g)}"
                 + ("" if len(g) > 1 else " <i>(one class: no specialist)</i>") for i, g in enumerate(groups)]
        self.text.value = "<br>".join(lines)


class CombinationPanel(Panel):
    """Pick a test image: its picture, and bars of the generalist's, the active specialists' and the
    combined distributions (the specialists' dustbin in its own column).

    ``choices``: the test indices offered (by default the images the specialists changed first,
    then a few others)."""

    def __init__(self, images: Tensor, labels: Tensor, class_names: Sequence[str], generalist_probs: Tensor,
                 specialist_probs: Sequence[Tensor], groups: Sequence[Sequence[int]], combined_probs: Tensor,
                 active: Tensor, choices: Sequence[int] | None = None) -> None:
        n, c = generalist_probs.shape
        if combined_probs.shape != (n, c) or len(labels) != n or len(images) != n:
            raise ValueError(f"images, labels, generalist_probs and combined_probs must describe the same {n} "
                             f"images and {c} classes")
        if len(specialist_probs) != len(groups) or active.shape != (n, len(groups)):
            raise ValueError("specialist_probs, groups and active must have one entry (column) per specialist")
        self.images = images[:, 0] if images.ndim == 4 else images
        self.labels, self.class_names = labels, list(class_names)
        self.p_g, self.q, self.active = generalist_probs, combined_probs, active
        self.p_m, self.groups = list(specialist_probs), [list(g) for g in groups]
        if choices is None:
            changed = (self.p_g.argmax(1) != self.q.argmax(1)).nonzero().squeeze(1).tolist()
            rest = [i for i in range(n) if i not in set(changed)][: max(0, 30 - len(changed))]
            choices = changed[:60] + rest
        self.choices = [int(i) for i in choices]
        if not self.choices or any(not 0 <= i < n for i in self.choices):
            raise ValueError(f"choices must be test indices in 0..{n - 1}")
        self.picker = widgets.Dropdown(options=[(self._label(i), i) for i in self.choices], value=self.choices[0],
                                       description="test image", layout=widgets.Layout(width="520px"))
        self.figure = figure_widget(self._empty_figure())
        self.status = widgets.HTML()
        self.picker.observe(self.on_change, names="value")
        self.widget = widgets.VBox([self.picker, self.figure, self.status])
        self.timed(self.update)

    @classmethod
    def from_run(cls, run: SpecialistRun, choices: Sequence[int] | None = None) -> CombinationPanel:
        return cls(run.data.test.x, run.data.test.y, run.data.class_names, run.generalist_probs,
                   [s.test_probs for s in run.specialists], [s.classes for s in run.specialists],
                   run.combined_probs, run.active, choices)

    def _label(self, i: int) -> str:
        g, q, y = int(self.p_g[i].argmax()), int(self.q[i].argmax()), int(self.labels[i])
        mark = "fixed" if g != y and q == y else "broken" if g == y and q != y else "changed" if g != q else "same"
        return f"#{i}: {self.class_names[y]} · generalist {self.class_names[g]} → combined {self.class_names[q]} ({mark})"

    def _empty_figure(self) -> go.Figure:
        fig = make_subplots(rows=1, cols=2, column_widths=[0.25, 0.75], horizontal_spacing=0.08)
        fig.add_trace(go.Heatmap(z=np.zeros((2, 2)), colorscale="gray_r", showscale=False), row=1, col=1)
        x = self.class_names + [DUSTBIN]
        fig.add_trace(go.Bar(x=x, y=[0] * len(x), name="generalist", marker_color=COLOURS["generalist"]), row=1, col=2)
        for m, g in enumerate(self.groups):
            name = "specialist: " + ", ".join(self.class_names[c] for c in g)
            fig.add_trace(go.Bar(x=x, y=[0] * len(x), name=name,
                                 marker_color=SPECIALIST_COLOURS[m % len(SPECIALIST_COLOURS)]), row=1, col=2)
        fig.add_trace(go.Bar(x=x, y=[0] * len(x), name="combined q", marker_color=COLOURS["combined"]), row=1, col=2)
        fig.update_yaxes(autorange="reversed", showticklabels=False, row=1, col=1)
        fig.update_xaxes(showticklabels=False, row=1, col=1)
        fig.update_yaxes(title_text="probability", range=[0, 1], row=1, col=2)
        fig.update_xaxes(tickangle=-45, row=1, col=2)
        fig.update_layout(barmode="group", height=400, width=860, margin=dict(l=10, r=10, t=50, b=90),
                          legend=dict(orientation="h", y=-0.45))
        return fig

    def specialist_bars(self, i: int, m: int) -> list[float | None]:
        """Specialist m's probabilities for image i on the class axis (its classes and the dustbin);
        all None when it is not active for image i."""
        out: list[float | None] = [None] * (len(self.class_names) + 1)
        if not bool(self.active[i, m]):
            return out
        p = self.p_m[m][i].tolist()
        for j, c in enumerate(self.groups[m]):
            out[c] = p[j]
        out[-1] = p[-1]
        return out

    def update(self) -> None:
        i = int(self.picker.value)
        with self.figure.batch_update():
            self.figure.data[0].z = self.images[i].numpy()
            self.figure.data[1].y = self.p_g[i].tolist() + [None]
            for m in range(len(self.groups)):
                self.figure.data[2 + m].y = self.specialist_bars(i, m)
            self.figure.data[-1].y = self.q[i].tolist() + [None]
            self.figure.layout.title.text = f"test image #{i}: {self._label(i).split(': ', 1)[1]}"
        n_active = int(self.active[i].sum())
        self.status.value = (f"{n_active} active specialist{'s' * (n_active != 1)}" if n_active else
                             "no active specialist: the generalist's top class has no specialist, so q = p<sub>g</sub>")


# --- labkd bench ---------------------------------------------------------------------------------


def _synthetic(n: int = 200, c: int = 10, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    p_g = torch.softmax(torch.randn(n, c, generator=gen) * 2, 1)
    groups = [[0, 2, 4, 6], [5, 7, 9]]
    p_m = [torch.softmax(torch.randn(n, len(g) + 1, generator=gen) * 2, 1) for g in groups]
    active = torch.rand(n, len(groups), generator=gen) > 0.5
    q = torch.softmax(torch.randn(n, c, generator=gen) * 2, 1)
    images = torch.rand(n, 1, 28, 28, generator=gen)
    labels = torch.randint(c, (n,), generator=gen)
    return images, labels, [f"class {k}" for k in range(c)], p_g, p_m, groups, q, active


def benchmark_cases() -> dict[str, Callable[[], None]]:
    """Callbacks for ``labkd bench``: the K slider and the image picker, on synthetic tensors."""
    images, labels, names, p_g, p_m, groups, q, active = _synthetic()
    clusters = ClusterPanel(p_g, names, k=4)
    combination = CombinationPanel(images, labels, names, p_g, p_m, groups, q, active)
    ks, picks = list(clusters.slider.options), list(combination.choices)
    state = {"k": 0, "i": 0}

    def next_k() -> None:
        state["k"] += 1
        clusters.slider.value = ks[state["k"] % len(ks)]

    def next_image() -> None:
        state["i"] += 1
        combination.picker.value = picks[state["i"] % len(picks)]

    return {"clusters_k": next_k, "test_image": next_image}
