r"""Panel of lesson 06 (Hinton et al.'s MNIST experiments): when does distillation become logit matching?

>>> z, v = hinton.fixed_logits(teacher, "hinton_student", data)      # (N, C) student, teacher
>>> panel = GradientPanel(z, v, data.class_names)
>>> panel                                 # temperature slider, example slider, "zero-mean" box

For one example the left figure draws, class by class, the gradient of the soft-target loss
:math:`T^2\,\mathrm{KL}` with respect to the student's logits, :math:`T(q - p)`, beside the
gradient of logit matching, :math:`(z - v)/C`. The right figure is the cosine between the two
against T, for this example and for the whole batch, with a marker at the slider's T. Moving a
control only recomputes softmaxes of a few hundred numbers (well under a millisecond), so the
figure follows the slider.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from labkd.checks import restore_if_not_finite, slider_temperature
from labkd.losses import check_pair, check_temperature
from labkd.widgets import Panel, cycle_values, figure_widget

T_MIN, T_MAX = 0.5, 200.0
#: Temperatures of the cosine curves (log-spaced over the slider's range).
CURVE_TEMPERATURES = np.geomspace(T_MIN, T_MAX, 80)


def _softmax(a: np.ndarray) -> np.ndarray:
    a = a - a.max(axis=-1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=-1, keepdims=True)


def gradients(z: np.ndarray, v: np.ndarray, temperature: float | np.ndarray,
              centre: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(soft-target gradient T(q - p), logit-matching gradient (z - v)/C) for logits of shape (..., C);
    ``temperature`` may be an array that broadcasts against them. ``centre`` zero-means each row
    first (it changes only the logit-matching gradient)."""
    if centre:
        z = z - z.mean(axis=-1, keepdims=True)
        v = v - v.mean(axis=-1, keepdims=True)
    kd = temperature * (_softmax(z / temperature) - _softmax(v / temperature))
    return kd, (z - v) / z.shape[-1]


def cosine_curve(z: np.ndarray, v: np.ndarray, temperatures: np.ndarray, centre: bool = False) -> np.ndarray:
    """Cosine between the two gradients (flattened over the batch) at each temperature. z, v (..., C)."""
    t = np.asarray(temperatures, dtype=np.float64).reshape(-1, *([1] * np.ndim(z)))  # (K, 1, ...)
    kd, lm = gradients(z[None], v[None], t, centre)  # (K, ..., C), (1, ..., C): all temperatures at once
    kd, lm = kd.reshape(len(t), -1), lm.reshape(-1)
    return kd @ lm / np.maximum(np.linalg.norm(kd, axis=1) * np.linalg.norm(lm), 1e-300)


class GradientPanel(Panel):
    """Soft-target gradient against logit-matching gradient, per class, as T changes.

    Args:
        student_logits, teacher_logits: (N, C) logits of the same N examples.
        class_names: C names for the x-axis.
        labels: optional (N,) true classes, shown in the read-out.
        temperature: the slider's first value.

    Callbacks are plain methods: :meth:`update` (redraw at the current controls) and
    :meth:`select` (choose an example); ``last_update_ms`` times the last redraw.
    """

    def __init__(self, student_logits: Tensor, teacher_logits: Tensor, class_names: Sequence[str],
                 labels: Tensor | None = None, temperature: float = 4.0) -> None:
        check_pair(student_logits, teacher_logits)
        n, c = teacher_logits.shape
        if len(class_names) != c:
            raise ValueError(f"class_names has {len(class_names)} names but the logits have {c} classes")
        if labels is not None and tuple(labels.shape) != (n,):
            raise ValueError(f"labels must have shape ({n},), one class per example, got {tuple(labels.shape)}")
        check_temperature(temperature)
        self.z = student_logits.detach().double().cpu().numpy()
        self.v = teacher_logits.detach().double().cpu().numpy()
        self.labels = None if labels is None else labels.cpu().numpy()
        self.class_names = [str(name) for name in class_names]
        self.last_update_ms = 0.0
        # The batch curves do not depend on the example: compute them once.
        self.batch_curves = {centre: cosine_curve(self.z, self.v, CURVE_TEMPERATURES, centre) for centre in (False, True)}
        self._example_curves: dict[tuple[int, bool], np.ndarray] = {}

        style = {"description_width": "initial"}
        self.temperature = widgets.FloatLogSlider(
            value=slider_temperature(temperature, T_MIN, T_MAX), base=10, min=math.log10(T_MIN), max=math.log10(T_MAX),
            step=0.01, description="temperature T", readout_format=".2f", continuous_update=True, style=style,
            layout=widgets.Layout(width="420px"))
        self.temperature.add_class("labkd-gradient-temperature")
        self.example = widgets.IntSlider(value=0, min=0, max=n - 1, description="example", style=style,
                                         continuous_update=True, layout=widgets.Layout(width="300px"))
        self.centre = widgets.Checkbox(value=False, description="zero-mean each example's logits first", style=style,
                                       indent=False)
        self.readout = widgets.HTML()
        self.readout.add_class("labkd-gradient-readout")

        fig = make_subplots(rows=1, cols=2, column_widths=[0.58, 0.42], horizontal_spacing=0.1,
                            subplot_titles=("gradient on each logit (one example)", "cosine between the two gradients"))
        names = self.class_names
        fig.add_trace(go.Bar(x=names, y=[0.0] * c, name="soft targets: ∂(T²·KL)/∂z = T(q − p)", marker_color="#1f77b4"),
                      row=1, col=1)
        fig.add_trace(go.Bar(x=names, y=[0.0] * c, name="logit matching: (z − v)/C", marker_color="#2ca02c"),
                      row=1, col=1)
        t = CURVE_TEMPERATURES.tolist()
        fig.add_trace(go.Scatter(x=t, y=[0.0] * len(t), mode="lines", name="this example", line=dict(color="#ff7f0e")),
                      row=1, col=2)
        fig.add_trace(go.Scatter(x=t, y=[0.0] * len(t), mode="lines", name=f"all {n} examples",
                                 line=dict(color="#7f7f7f", dash="dash")), row=1, col=2)
        fig.add_trace(go.Scatter(x=[temperature], y=[0.0], mode="markers", name="current T", showlegend=False,
                                 marker=dict(size=12, color="#d62728")), row=1, col=2)
        fig.update_xaxes(title_text="class", row=1, col=1)
        fig.update_yaxes(title_text="gradient", row=1, col=1)
        fig.update_xaxes(type="log", title_text="temperature T", row=1, col=2)
        fig.update_yaxes(range=[-1.05, 1.05], title_text="cosine", row=1, col=2)
        fig.update_layout(barmode="group", height=400, margin=dict(l=60, r=20, t=40, b=40),
                          legend=dict(orientation="h", y=-0.2))
        self.figure = figure_widget(fig)
        self.figure.add_class("labkd-gradient-plot")
        self.update()

        self.temperature.observe(self.on_change, names="value")
        self.example.observe(self.on_change, names="value")
        self.centre.observe(self.on_change, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.temperature, self.example, self.centre]), self.readout,
                                    self.figure])

    def select(self, index: int) -> None:
        """Show example ``index`` (0-based)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {index!r}")
        if not 0 <= int(index) < len(self.z):
            raise ValueError(f"index must be in 0..{len(self.z) - 1}, got {index!r}")
        self.example.value = int(index)

    def set_temperature(self, temperature: float) -> None:
        """Move the temperature slider; ``ValueError`` outside its range (0.5 to 200)."""
        self.temperature.value = slider_temperature(temperature, T_MIN, T_MAX)

    def on_change(self, change: dict | None = None) -> None:
        if not restore_if_not_finite(self, change):
            super().on_change(change)

    def example_curve(self, index: int, centre: bool) -> np.ndarray:
        """Cosine against :data:`CURVE_TEMPERATURES` for one example (computed once, then kept)."""
        key = (int(index), bool(centre))
        if key not in self._example_curves:
            self._example_curves[key] = cosine_curve(self.z[index], self.v[index], CURVE_TEMPERATURES, centre)
        return self._example_curves[key]

    def state(self) -> dict[str, float]:
        """The numbers the read-out shows: cosine and norm ratio of the two gradients at the current
        T, for the current example and for the batch."""
        t, i, centre = float(self.temperature.value), int(self.example.value), bool(self.centre.value)
        kd, lm = gradients(self.z[i], self.v[i], t, centre)
        kd_all, lm_all = gradients(self.z, self.v, t, centre)

        def cos(a: np.ndarray, b: np.ndarray) -> float:
            return float(a.ravel() @ b.ravel() / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))

        return {"temperature": t, "cosine": cos(kd, lm), "norm_ratio": float(np.linalg.norm(kd) / max(np.linalg.norm(lm), 1e-300)),
                "batch_cosine": cos(kd_all, lm_all),
                "batch_norm_ratio": float(np.linalg.norm(kd_all) / max(np.linalg.norm(lm_all), 1e-300))}

    def update(self) -> None:
        t, i, centre = float(self.temperature.value), int(self.example.value), bool(self.centre.value)
        kd, lm = gradients(self.z[i], self.v[i], t, centre)
        curve = self.example_curve(i, centre)
        s = self.state()
        teacher_top = int(self.v[i].argmax())
        label = "" if self.labels is None else f" · true class <b>{self.class_names[int(self.labels[i])]}</b>"
        spread = float(self.v[i].max() - self.v[i].min())
        with self.figure.batch_update():
            self.figure.data[0].y = kd.tolist()
            self.figure.data[1].y = lm.tolist()
            self.figure.data[2].y = curve.tolist()
            self.figure.data[3].y = self.batch_curves[centre].tolist()
            self.figure.data[4].x = [t]
            self.figure.data[4].y = [float(np.interp(math.log(t), np.log(CURVE_TEMPERATURES), curve))]
        self.readout.value = (
            f'<div style="font-size:15px;padding:2px 4px"><b>T = {t:.2f}</b> · this example: cosine '
            f'<b>{s["cosine"]:.3f}</b>, size ratio ‖soft‖/‖matching‖ {s["norm_ratio"]:.2f} · all examples: cosine '
            f'{s["batch_cosine"]:.3f}, size ratio {s["batch_norm_ratio"]:.2f}<br>teacher\'s top class '
            f'<b>{self.class_names[teacher_top]}</b>{label} · its logits span {spread:.1f} '
            f'(the limit needs T well above that){" · logits zero-meaned" if centre else ""}</div>')


def benchmark_cases() -> dict:
    """Panel callbacks for ``labkd bench``: 512 examples x 10 classes of synthetic logits, moving the
    temperature slider, the example slider and the zero-mean box."""
    import torch

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (512,), generator=generator)
    teacher = torch.randn(512, 10, generator=generator) * 3 + 10 * torch.nn.functional.one_hot(labels, 10)
    student = torch.randn(512, 10, generator=generator) * 0.3
    panel = GradientPanel(student, teacher, [str(i) for i in range(10)], labels)
    return {"temperature": cycle_values(panel.temperature, np.geomspace(T_MIN, T_MAX, 25).tolist()),
            "example": cycle_values(panel.example, list(range(0, 512, 16))),
            "zero_mean": cycle_values(panel.centre, [False, True])}
