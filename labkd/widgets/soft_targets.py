"""Panels of lesson 01 (soft targets): one image's soft target, and the class-by-class matrix.

>>> logits = metrics.predict_logits(teacher.model, data.test.x)      # once
>>> SoftTargetPanel(logits, data.test, data.class_names, examples=menu)   # slider for T, picker
>>> DarkKnowledgePanel(logits, data.test.y, data.class_names)             # the soft-target matrix

Both precompute everything from the logits, so moving a slider is a softmax over ten numbers
(one image) or one (C, N) x (N, C) product (the matrix): a few milliseconds. The controls carry
stable CSS classes (``labkd-temperature-slider``, ``labkd-entropy``, ``labkd-probability-plot``,
``labkd-matrix-*``) for the browser tests.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from labkd.checks import restore_if_not_finite, slider_temperature
from labkd.data import Split
from labkd.losses import check_logits, check_targets, check_temperature
from labkd.widgets import Panel, figure_widget

#: Temperature range of the sliders (log scale).
T_MIN, T_MAX = 0.5, 20.0
#: Smallest probability drawn on a log axis; smaller ones are drawn at this floor.
LOG_FLOOR = 1e-30

COLOUR_LABEL = "#2ca02c"
COLOUR_OTHER = "#1f77b4"
COLOUR_REFERENCE = "#555555"


def _softmax(z: np.ndarray, temperature: float) -> np.ndarray:
    """Stable softmax of z / T over the last axis (float64)."""
    a = z / temperature
    a = a - a.max(axis=-1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=-1, keepdims=True)


def _temperature_slider(value: float, css_class: str, description: str = "temperature T") -> widgets.FloatLogSlider:
    slider = widgets.FloatLogSlider(
        value=slider_temperature(value, T_MIN, T_MAX), base=10, min=math.log10(T_MIN), max=math.log10(T_MAX), step=0.01,
        description=description, readout_format=".2f", continuous_update=True,
        style={"description_width": "initial"}, layout=widgets.Layout(width="420px"),
    )
    slider.add_class(css_class)
    return slider


def entropy_text(probs: np.ndarray, class_names: Sequence[str], label: int | None = None, threshold: float = 0.01) -> str:
    """One line describing a distribution, e.g. ``entropy 0.41 nats (0.59 bits) · top class 7 (93.1%)``."""
    p = np.asarray(probs, dtype=np.float64)
    nats = float(-(p * np.log(np.clip(p, 1e-300, None))).sum())
    top = int(p.argmax())
    parts = [f"entropy {nats:.2f} nats ({nats / math.log(2):.2f} bits)",
             f"top class {class_names[top]} ({p[top]:.1%})",
             f"{int((p > threshold).sum())} of {len(p)} classes above {threshold:.0%}"]
    if label is not None and label != top:
        parts.append(f"label {class_names[label]} ({p[label]:.1%})")
    return " · ".join(parts)


class SoftTargetPanel(Panel):
    """One test image and the teacher's probabilities for it at temperature T.

    Controls: a log-scale temperature slider (0.5 to 20), an image picker (a drop-down over
    ``examples`` — ``[(label, index), ...]`` — or a slider over every image when ``examples``
    is None) and a log-axis check box. The figure shows the image, the soft target at T as bars
    (the labelled class in green) and the ordinary T = 1 softmax as grey markers; a line of
    text gives its entropy and top class.

    Args:
        logits: (N, C) teacher logits on ``split`` (computed once).
        split: the images and labels the logits belong to.
        class_names: C names for the axis.
        show_temperature: False hides the slider (a plain prediction browser, T = 1).
    """

    def __init__(self, logits: Tensor, split: Split, class_names: Sequence[str],
                 examples: Sequence[tuple[str, int]] | None = None, temperature: float = 1.0,
                 show_temperature: bool = True, title: str = "Soft target of one image") -> None:
        check_logits(logits, "logits")
        check_targets(split.y, logits)
        if len(split) != logits.shape[0]:
            raise ValueError(f"split has {len(split)} images but logits has {logits.shape[0]} rows")
        if len(class_names) != logits.shape[1]:
            raise ValueError(f"class_names has {len(class_names)} names; the logits have {logits.shape[1]} classes")
        check_temperature(temperature)
        self.logits = logits.detach().double().cpu().numpy()
        self.images = split.x.detach().float().cpu().numpy()[:, 0]  # (N, H, W)
        self.labels = split.y.detach().cpu().numpy()
        self.class_names = [str(c) for c in class_names]
        self.title = title
        self.show_temperature = show_temperature

        self.temperature = _temperature_slider(temperature if show_temperature else 1.0, "labkd-temperature-slider")
        if not show_temperature:
            self.temperature.layout.display = "none"
        if examples is not None:
            options = [(str(label), int(i)) for label, i in examples]
            if not options:
                raise ValueError("examples is empty; give [(label, index), ...] or None for a slider over all images")
            for label, i in options:
                if not 0 <= i < len(self.labels):
                    raise ValueError(f"example {label!r} has index {i}, outside 0..{len(self.labels) - 1}")
            self.picker = widgets.Dropdown(options=options, value=options[0][1], description="image",
                                           layout=widgets.Layout(width="520px"))
        else:
            self.picker = widgets.IntSlider(value=0, min=0, max=len(self.labels) - 1, description="test image",
                                            continuous_update=True, style={"description_width": "initial"},
                                            layout=widgets.Layout(width="420px"))
        self.picker.add_class("labkd-image-picker")
        self.log_scale = widgets.Checkbox(value=False, description="log scale", indent=False,
                                          layout=widgets.Layout(width="110px"))
        self.log_scale.add_class("labkd-log-scale")
        self.readout = widgets.HTML()
        self.readout.add_class("labkd-entropy")

        self.figure = figure_widget(self._empty_figure())
        self.figure.add_class("labkd-probability-plot")
        self._shown_image: int | None = None
        self.update()

        for control in (self.temperature, self.picker, self.log_scale):
            control.observe(self.on_change, names="value")
        controls = widgets.HBox([self.temperature, self.picker, self.log_scale],
                                layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        self.widget = widgets.VBox([controls, self.readout, self.figure])
        self.widget.add_class("labkd-soft-target-panel")

    # -- figure ------------------------------------------------------------------------------

    def _empty_figure(self) -> go.Figure:
        c = len(self.class_names)
        fig = make_subplots(rows=1, cols=2, column_widths=[0.27, 0.73], horizontal_spacing=0.08,
                            subplot_titles=("image", "probabilities"))
        fig.add_trace(go.Heatmap(z=self.images[0], colorscale="gray_r", showscale=False, hoverinfo="skip"), 1, 1)
        fig.add_trace(go.Bar(x=self.class_names, y=np.zeros(c), name="soft target at T", textposition="outside",
                             cliponaxis=False, hovertemplate="class %{x}: %{customdata:.4%}<extra>T</extra>",
                             customdata=np.zeros(c)), 1, 2)
        fig.add_trace(go.Scatter(x=self.class_names, y=np.zeros(c), mode="markers", name="T = 1 (ordinary softmax)",
                                 marker=dict(symbol="line-ew", size=28, color=COLOUR_REFERENCE,
                                             line=dict(width=3, color=COLOUR_REFERENCE)),
                                 hovertemplate="class %{x}: %{customdata:.4%}<extra>T = 1</extra>",
                                 customdata=np.zeros(c)), 1, 2)
        fig.add_trace(go.Scatter(x=[self.class_names[0], self.class_names[-1]], y=[1 / c, 1 / c], mode="lines",
                                 name=f"uniform (1/{c})", line=dict(dash="dot", color="#d62728", width=1),
                                 hoverinfo="skip"), 1, 2)
        fig.update_xaxes(visible=False, row=1, col=1)
        fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", row=1, col=1)
        fig.update_xaxes(title_text="class", type="category", row=1, col=2)
        fig.update_layout(height=400, width=900, margin=dict(l=20, r=20, t=80, b=50), bargap=0.25,
                          legend=dict(orientation="h", yanchor="bottom", y=1.08, xanchor="right", x=1),
                          title=dict(text=self.title, x=0.01, y=0.98))
        return fig

    # -- callbacks ---------------------------------------------------------------------------

    @property
    def index(self) -> int:
        return int(self.picker.value)

    def set_temperature(self, temperature: float) -> None:
        """Move the slider (the figure follows); ``ValueError`` outside the slider's 0.5 to 20."""
        self.temperature.value = slider_temperature(temperature, T_MIN, T_MAX)

    def select(self, index: int) -> None:
        """Show test image ``index`` (with a drop-down, it must be one of the examples)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {index!r}")
        if isinstance(self.picker, widgets.Dropdown):
            choices = [i for _, i in self.picker.options]
            if int(index) not in choices:
                raise ValueError(f"index={index} is not one of the examples; choose one of {choices}")
        elif not 0 <= int(index) <= self.picker.max:
            raise ValueError(f"index must be in 0..{self.picker.max}, got {index}")
        self.picker.value = int(index)

    def on_change(self, change: dict | None = None) -> None:
        if not restore_if_not_finite(self, change):
            super().on_change(change)

    def probabilities(self, temperature: float | None = None) -> np.ndarray:
        """The current image's soft target, shape (C,)."""
        t = self.temperature.value if temperature is None else check_temperature(temperature)
        return _softmax(self.logits[self.index], t)

    def update(self) -> None:
        """Redraw: a softmax over C numbers plus a few trace updates."""
        i, t = self.index, float(self.temperature.value)
        p, p1 = self.probabilities(t), self.probabilities(1.0)
        label = int(self.labels[i])
        log = bool(self.log_scale.value)
        floor = LOG_FLOOR if log else 0.0
        colours = [COLOUR_LABEL if c == label else COLOUR_OTHER for c in range(len(p))]
        text = [f"{v:.1%}" if v >= 0.001 else ("<0.1%" if not log else f"{v:.0e}") for v in p]
        with self.figure.batch_update():
            if self._shown_image != i:
                self.figure.data[0].z = self.images[i]
                self._shown_image = i
            bars, reference = self.figure.data[1], self.figure.data[2]
            bars.y, bars.customdata, bars.marker.color, bars.text = np.maximum(p, floor), p, colours, text
            reference.y, reference.customdata = np.maximum(p1, floor), p1
            reference.visible = abs(t - 1.0) > 1e-9
            if log:
                low = math.log10(max(float(min(p.min(), p1.min())), LOG_FLOOR))
                self.figure.layout.yaxis2.update(type="log", range=[low - 0.3, 0.6], dtick=1 if low > -12 else 3,
                                                 exponentformat="power",
                                                 title_text="probability (log scale)")
            else:
                self.figure.layout.yaxis2.update(type="linear", range=[0, 1.15], dtick=0.2, exponentformat="B",
                                                 title_text="probability")
            self.figure.layout.annotations[0].text = f"test image #{i} · label {self.class_names[label]}"
            self.figure.layout.annotations[1].text = (f"soft target at T = {t:.2f}" if self.show_temperature
                                                      else "predicted probabilities")
        prefix = f"<b>T = {t:.2f}</b> · " if self.show_temperature else ""
        self.readout.value = (f'<div style="font-size:15px;padding:2px 4px">{prefix}'
                              f"{html.escape(entropy_text(p, self.class_names, label))}</div>")


class DarkKnowledgePanel(Panel):
    """The teacher's mean soft target for each true class, at a temperature set by a slider.

    Row i, column j: the mean probability that test images labelled i get for class j. The
    diagonal (the probability of the right class) is left blank so that the colours show the
    small off-diagonal values — the dark knowledge; it is written beside each row instead. A
    line of text lists the most similar pairs of classes at the current T.
    """

    def __init__(self, logits: Tensor, targets: Tensor, class_names: Sequence[str], temperature: float = 4.0,
                 pairs: int = 4, title: str = "The teacher's mean soft target for each label") -> None:
        check_logits(logits, "logits")
        y = check_targets(targets, logits).cpu().numpy()
        c = logits.shape[1]
        if len(class_names) != c:
            raise ValueError(f"class_names has {len(class_names)} names; the logits have {c} classes")
        if isinstance(pairs, bool) or not isinstance(pairs, int) or not 1 <= pairs <= c * (c - 1) // 2:
            raise ValueError(f"pairs must be an integer in 1..{c * (c - 1) // 2}, got {pairs!r}")
        check_temperature(temperature)
        self.logits = logits.detach().double().cpu().numpy()
        counts = np.bincount(y, minlength=c).astype(np.float64)
        one_hot = np.zeros((c, len(y)))
        one_hot[y, np.arange(len(y))] = 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            self._averager = one_hot / counts[:, None]  # (C, N): row i averages class i (NaN if absent)
        self.class_names = [str(n) for n in class_names]
        self.n_pairs = pairs
        self.title = title
        self.matrix = np.zeros((c, c))

        self.temperature = _temperature_slider(temperature, "labkd-matrix-temperature-slider")
        self.readout = widgets.HTML()
        self.readout.add_class("labkd-matrix-pairs")
        self.figure = figure_widget(self._empty_figure())
        self.figure.add_class("labkd-matrix-plot")
        self.update()
        self.temperature.observe(self.on_change, names="value")
        self.widget = widgets.VBox([self.temperature, self.readout, self.figure])
        self.widget.add_class("labkd-dark-knowledge-panel")

    def _empty_figure(self) -> go.Figure:
        c = len(self.class_names)
        fig = go.Figure(go.Heatmap(
            z=np.zeros((c, c)), x=self.class_names, y=self.class_names, colorscale="Blues", zmin=0,
            texttemplate="%{text}", textfont=dict(size=10),
            hovertemplate="label %{y} → class %{x}: mean probability %{z:.4f}<extra></extra>",
            colorbar=dict(title=dict(text="mean<br>probability"))))
        fig.update_xaxes(title_text="class the soft target points to", type="category", side="bottom")
        fig.update_yaxes(title_text="label of the test images", type="category", autorange="reversed")
        fig.update_layout(height=560, width=760, margin=dict(l=20, r=20, t=60, b=50),
                          title=dict(text=self.title, x=0.01))
        return fig

    def set_temperature(self, temperature: float) -> None:
        """Move the slider (the matrix follows); ``ValueError`` outside the slider's 0.5 to 20."""
        self.temperature.value = slider_temperature(temperature, T_MIN, T_MAX)

    def on_change(self, change: dict | None = None) -> None:
        if not restore_if_not_finite(self, change):
            super().on_change(change)

    def compute(self, temperature: float) -> np.ndarray:
        """The (C, C) soft-target matrix at ``temperature`` (as :func:`labkd.soft_targets.soft_target_matrix`)."""
        return self._averager @ _softmax(self.logits, check_temperature(temperature))

    def top_pairs(self) -> list[tuple[int, int, float]]:
        """The current most similar class pairs ``(a, b, score)``, a < b, largest first."""
        m = self.matrix
        score = (m + m.T) / 2
        c = len(m)
        candidates = [(a, b, float(score[a, b])) for a in range(c) for b in range(a + 1, c) if np.isfinite(score[a, b])]
        return sorted(candidates, key=lambda x: -x[2])[: self.n_pairs]

    def update(self) -> None:
        t = float(self.temperature.value)
        self.matrix = self.compute(t)
        shown = self.matrix.copy()
        np.fill_diagonal(shown, np.nan)
        diagonal = np.diag(self.matrix)
        row_labels = [f"{n} ({d:.0%} right)" if np.isfinite(d) else f"{n} (no images)"
                      for n, d in zip(self.class_names, diagonal)]
        top = float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0
        names = self.class_names
        pairs = " · ".join(f"{html.escape(names[a])}↔{html.escape(names[b])} {s:.3f}" for a, b, s in self.top_pairs())
        # JSON has no NaN: blank cells are None (z) and "" (text)
        z = [[None if not np.isfinite(v) else float(v) for v in row] for row in shown]
        text = [["" if v is None else f"{v:.3f}" for v in row] for row in z]
        with self.figure.batch_update():
            heat = self.figure.data[0]
            heat.z, heat.text = z, text
            heat.zmax = top
            self.figure.layout.yaxis.ticktext = row_labels
            self.figure.layout.yaxis.tickvals = self.class_names
            self.figure.layout.title.text = f"{self.title} (T = {t:.2f}, diagonal blank)"
        self.readout.value = (f'<div style="font-size:15px;padding:2px 4px"><b>T = {t:.2f}</b> · most alike: {pairs}'
                              f" · mean probability on the right class {np.nanmean(diagonal):.1%}</div>")


def benchmark_cases() -> dict:
    """Panel callbacks for ``labkd bench``: both panels on synthetic logits of MNIST's test-set size
    (10,000 x 10), moving the temperature slider through its range."""
    import torch

    from labkd.data import Split

    generator = torch.Generator().manual_seed(0)
    n, c = 10_000, 10
    labels = torch.randint(0, c, (n,), generator=generator)
    logits = torch.randn(n, c, generator=generator) * 3 + 8 * torch.nn.functional.one_hot(labels, c)
    split = Split(torch.zeros(n, 1, 28, 28), labels)
    names = [str(i) for i in range(c)]
    image_panel = SoftTargetPanel(logits, split, names)
    matrix_panel = DarkKnowledgePanel(logits, labels, names)
    values = np.geomspace(T_MIN, T_MAX, 25)
    state = {"i": 0}

    def move(panel: Panel) -> None:
        state["i"] += 1
        panel.temperature.value = float(values[state["i"] % len(values)])

    return {"temperature": lambda: move(image_panel), "matrix_temperature": lambda: move(matrix_panel)}
