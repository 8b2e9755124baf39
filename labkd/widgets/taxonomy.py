"""Panel of lesson 11: what each kind of knowledge looks like, teacher beside student.

>>> snapshot = taxonomy_figures.relation_snapshot(teacher, {"KD": kd, "AT": at, "RKD": rkd}, data)
>>> TaxonomyPanel(snapshot)          # recompute only: swaps precomputed arrays

For one fixed batch of test images (a few per class, grouped by class) and the student chosen
by the method buttons, the figure shows, for the image chosen by the slider,

- top: the image, the teacher's attention map and the student's (feature-based knowledge);
- bottom: both models' soft targets at T = 4 (response-based) and the teacher's and student's
  normalised distance matrices over the whole batch (relation-based), the chosen image's row
  marked.
"""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from labkd import feature_losses
from labkd.taxonomy import COLOURS
from labkd.taxonomy_figures import RelationSnapshot
from labkd.widgets import Panel, figure_widget


class TaxonomyPanel(Panel):
    """Choose a student (method) and an image of the batch; every view is precomputed."""

    def __init__(self, snapshot: RelationSnapshot, method: str | None = None) -> None:
        if not isinstance(snapshot, RelationSnapshot) or not snapshot.methods:
            raise ValueError("snapshot must be a RelationSnapshot with at least one student "
                             "(from labkd.taxonomy_figures.relation_snapshot)")
        if method is not None and method not in snapshot.methods:
            raise ValueError(f"method={method!r} is not in the snapshot; expected one of {snapshot.methods}")
        self.snapshot = snapshot
        self.last_update_ms = 0.0
        n = len(snapshot.images)
        self.method = W.ToggleButtons(options=snapshot.methods, value=method or snapshot.methods[0],
                                      description="student")
        self.image = W.IntSlider(value=0, min=0, max=n - 1, description="image", continuous_update=True)
        self.info = W.HTML()
        self.figure = figure_widget(self._figure())
        self.method.observe(self.on_change, names="value")
        self.image.observe(self.on_change, names="value")
        self.widget = W.VBox([self.method, self.image, self.info, self.figure])
        self.timed(self.update)

    def _figure(self) -> go.Figure:
        s = self.snapshot
        titles = ["image", "teacher attention", "student attention",
                  f"soft targets (T = {s.temperature:g})", "teacher: distances", "student: distances"]
        fig = make_subplots(rows=2, cols=3, subplot_titles=titles, horizontal_spacing=0.06, vertical_spacing=0.12)
        hover = "%{z:.3f}<extra></extra>"
        fig.add_trace(go.Heatmap(z=[[0.0]], colorscale="gray_r", showscale=False, hoverinfo="skip"), row=1, col=1)
        for col in (2, 3):
            fig.add_trace(go.Heatmap(z=[[0.0]], colorscale="Viridis", showscale=False, hovertemplate=hover),
                          row=1, col=col)
        names = s.class_names
        fig.add_trace(go.Bar(x=names, y=[0.0] * len(names), name="teacher", marker_color=COLOURS["teacher"]),
                      row=2, col=1)
        fig.add_trace(go.Bar(x=names, y=[0.0] * len(names), name="student", marker_color=COLOURS["KD"]),
                      row=2, col=1)
        hi = float(max(d.max() for d in s.distances.values()))
        for col in (2, 3):
            fig.add_trace(go.Heatmap(z=[[0.0]], colorscale="Blues", reversescale=True, zmin=0, zmax=hi,
                                     showscale=col == 3, hovertemplate="images %{y}, %{x}: %{z:.2f}<extra></extra>",
                                     colorbar=dict(len=0.4, y=0.2)), row=2, col=col)
        for col in (2, 3):  # a box around the chosen image's row of the distance matrix
            fig.add_trace(go.Scatter(x=[], y=[], mode="lines", line=dict(color="#d62728", width=2),
                                     hoverinfo="skip", showlegend=False), row=2, col=col)
        for col in (1, 2, 3):
            fig.update_xaxes(visible=False, row=1, col=col)
            fig.update_yaxes(visible=False, autorange="reversed", scaleanchor=f"x{col}", row=1, col=col)
        for col in (2, 3):
            fig.update_xaxes(visible=False, row=2, col=col)
            fig.update_yaxes(visible=False, autorange="reversed", row=2, col=col)
        fig.update_yaxes(range=[0, 1], title_text="probability", row=2, col=1)
        fig.update_layout(height=620, barmode="group", margin=dict(l=40, r=20, t=70, b=20),
                          legend=dict(orientation="h", y=0.41, x=0.0, bgcolor="rgba(255,255,255,0.7)"))
        return fig

    def update(self) -> None:
        """Redraw for ``self.method.value`` and ``self.image.value`` (no model is run)."""
        s, m, i = self.snapshot, self.method.value, self.image.value
        att_t, att_s = s.attention["teacher"][i], s.attention[m][i]
        lo, hi = 0.0, float(max(att_t.max(), att_s.max()))
        d_t, d_s = s.distances["teacher"], s.distances[m]
        n = len(d_t)
        box = dict(x=[-0.5, n - 0.5, n - 0.5, -0.5, -0.5], y=[i - 0.5, i - 0.5, i + 0.5, i + 0.5, i - 0.5])
        kl = float(torch.sum(s.probs["teacher"][i] * (s.probs["teacher"][i].clamp_min(1e-12).log()
                                                       - s.probs[m][i].clamp_min(1e-12).log())))
        att = float((att_s - att_t).pow(2).sum())
        row = float(torch.nn.functional.smooth_l1_loss(d_s[i], d_t[i]))
        with self.figure.batch_update():
            data = self.figure.data
            data[0].z = s.images[i, 0].numpy()
            data[1].z, data[1].zmin, data[1].zmax = att_t.numpy(), lo, hi
            data[2].z, data[2].zmin, data[2].zmax = att_s.numpy(), lo, hi
            data[3].y = s.probs["teacher"][i].numpy()
            data[4].y, data[4].name = s.probs[m][i].numpy(), f"student ({m})"
            data[4].marker.color = COLOURS.get(m, "#1f77b4")
            data[5].z, data[6].z = d_t.numpy(), d_s.numpy()
            data[7].update(**box)
            data[8].update(**box)
            self.figure.layout.title = (f"{html.escape(m)} student, image {i} (label "
                                        f"{html.escape(s.class_names[int(s.labels[i])])})")
        scores = s.scores.get(m, {})
        batch = ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
        self.info.value = (f"This image: KL of soft targets <b>{kl:.4f}</b> · attention distance <b>{att:.4f}</b> · "
                           f"distance-row error (Huber) <b>{row:.4f}</b>. Whole batch of {n} images: {batch}. "
                           f"Lower is closer to the teacher.")


def _synthetic_snapshot(n: int = 30, methods: tuple[str, ...] = ("KD", "AT", "RKD"), seed: int = 0) -> RelationSnapshot:
    """A snapshot of random tensors the size of the lesson's (30 images, 7x7 maps), for tests and bench."""
    g = torch.Generator().manual_seed(seed)
    snap = RelationSnapshot(images=torch.rand(n, 1, 28, 28, generator=g), labels=torch.arange(n) % 10,
                            class_names=[str(c) for c in range(10)], temperature=4.0)
    for name in ("teacher", *methods):
        snap.probs[name] = torch.softmax(torch.randn(n, 10, generator=g), dim=1)
        snap.attention[name] = feature_losses.attention_map(torch.randn(n, 4, 7, 7, generator=g)).reshape(n, 7, 7)
        snap.distances[name] = feature_losses.normalized_distances(torch.randn(n, 16, generator=g))
        if name != "teacher":
            snap.scores[name] = {"kl": float(np.random.default_rng(seed).random()), "attention": 0.1, "relation": 0.01}
    return snap


def benchmark_cases() -> dict:
    """Panel callbacks for ``labkd bench``: move the image slider, switch the student."""
    panel = TaxonomyPanel(_synthetic_snapshot())
    n = panel.image.max + 1
    methods = list(panel.method.options)
    state = {"i": 0}

    def next_image() -> None:
        state["i"] += 1
        panel.image.value = state["i"] % n

    def next_method() -> None:
        state["i"] += 1
        panel.method.value = methods[state["i"] % len(methods)]

    return {"image": next_image, "method": next_method}
