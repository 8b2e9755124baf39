"""Figures and panel of lesson 05 (early-stopped teachers).

>>> early_stopping_figure(teacher_rows, student_rows)   # student, teacher accuracy, entropy, ECE per schedule
>>> eskd_figure(eskd_rows)                              # stopping distillation early in the student

>>> panel = EarlyStoppingPanel.from_teachers({5: t5, 15: t15, 40: t40}, data, teacher_rows, student_rows)

For each teacher schedule the panel shows a few transfer-set images' soft targets at the
distillation temperature (bar charts) and highlights, on the student-accuracy curve, the student
distilled from that teacher. Every teacher's logits on those images are computed once, so moving
the slider is a softmax over a few dozen numbers and a handful of trace updates.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from labkd import metrics
from labkd.data import Data
from labkd.experiments import Trained
from labkd.losses import check_temperature
from labkd.early_stopping import (
    KD_THROUGHOUT, TEMPERATURE, pick_examples, schedule_curves, soft_targets,
)
from labkd.teacher_studies import BASELINE, COLOURS, summarize
from labkd.widgets import Panel, cycle_values, figure_widget

COLOUR_LABEL = "#2ca02c"
COLOUR_OTHER = "#1f77b4"


def _softmax(z: np.ndarray, temperature: float) -> np.ndarray:
    a = z / temperature
    a = a - a.max(axis=-1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=-1, keepdims=True)


class EarlyStoppingPanel(Panel):
    """Soft targets of a few images under each teacher (one per schedule length), and the student it made.

    Args:
        logits: (E, K, C) the logits of the teachers of ``epochs`` on K images.
        epochs: the E teachers' schedule lengths (increasing).
        images: (K, H, W) or (K, 1, H, W) the images; ``labels`` (K,) their classes.
        class_names: C names.
        student: ``(epochs, mean accuracies, stds)`` of the distilled students (any epochs).
        teacher: per-epoch teacher numbers to print, ``{epochs: {"train_acc": .., "test_acc": .., "entropy_bits": .., "ece": ..}}``.
        baseline: the labels-only student's mean accuracy, drawn as a dashed line.
        temperature: the distillation temperature the bars use.
    """

    def __init__(self, logits: np.ndarray | Tensor, epochs: Sequence[int], images: np.ndarray | Tensor,
                 labels: Sequence[int], class_names: Sequence[str], student: tuple[Sequence, Sequence, Sequence],
                 teacher: Mapping[int, Mapping[str, float]] | None = None, baseline: float | None = None,
                 temperature: float = TEMPERATURE) -> None:
        z = np.asarray(logits.detach().cpu() if isinstance(logits, Tensor) else logits, dtype=np.float64)
        epochs = [int(e) for e in epochs]
        if z.ndim != 3 or z.shape[0] != len(epochs):
            raise ValueError(f"logits must have shape (len(epochs)={len(epochs)}, K, C), got {z.shape}")
        if not epochs or sorted(set(epochs)) != epochs:
            raise ValueError(f"epochs must be increasing and non-empty, got {epochs}")
        imgs = np.asarray(images.detach().cpu() if isinstance(images, Tensor) else images, dtype=np.float64)
        if imgs.ndim == 4:
            imgs = imgs[:, 0]
        k, c = z.shape[1], z.shape[2]
        if imgs.shape[0] != k or len(labels) != k:
            raise ValueError(f"images ({imgs.shape[0]}) and labels ({len(labels)}) must match the {k} images of logits")
        if len(class_names) != c:
            raise ValueError(f"class_names has {len(class_names)} names; the logits have {c} classes")
        s_epochs, s_mean, s_std = (list(v) for v in student)
        if not (len(s_epochs) == len(s_mean) == len(s_std)):
            raise ValueError("student must be (epochs, means, stds) of equal lengths")
        self.temperature = check_temperature(temperature)
        self.logits, self.epochs, self.images = z, epochs, imgs
        self.labels = [int(v) for v in labels]
        self.class_names = [str(v) for v in class_names]
        self.student_curve = dict(zip(s_epochs, zip(s_mean, s_std, strict=True), strict=True))
        self.teacher = {int(e): dict(v) for e, v in (teacher or {}).items()}
        self._probs = _softmax(z, self.temperature)  # (E, K, C): the slider only indexes it
        self._probs1 = _softmax(z, 1.0)

        self.slider = widgets.SelectionSlider(options=epochs, value=epochs[-1], description="teacher schedule (epochs)",
                                              continuous_update=True, style={"description_width": "initial"},
                                              layout=widgets.Layout(width="520px"))
        self.slider.add_class("labkd-teacher-epoch")
        self.readout = widgets.HTML()
        self.readout.add_class("labkd-checkpoint-readout")
        self.figure = figure_widget(self._empty_figure(s_epochs, s_mean, s_std, baseline))
        self.figure.add_class("labkd-early-stopping-plot")
        self.update()
        self.slider.observe(self.on_change, names="value")
        self.widget = widgets.VBox([self.slider, self.readout, self.figure])
        self.widget.add_class("labkd-early-stopping-panel")

    @classmethod
    def from_teachers(cls, teachers: Mapping[int, Trained], data: Data, teacher_rows: Sequence[Mapping],
                      student_rows: Sequence[Mapping], temperature: float = TEMPERATURE, n_images: int = 4,
                      seed: int | None = None) -> EarlyStoppingPanel:
        """Build the panel from lesson 05's results: ``teachers`` ``{schedule length: teacher}`` of
        one seed, the :func:`~labkd.early_stopping.teacher_rows` and the student rows of
        :func:`~labkd.early_stopping.distil_from_schedules`. The images are from the transfer set
        (what the student is taught on), half of them those the full teacher is least sure of."""
        curves = schedule_curves(teacher_rows, student_rows)
        lengths = sorted(teachers)
        if not lengths:
            raise ValueError("teachers is empty")
        final = metrics.predict_logits(teachers[lengths[-1]].model, data.train.x)
        chosen = pick_examples(final, data.train.y, n_images)
        x = data.train.x[chosen]
        logits = soft_targets(teachers, x)
        teacher_seed = seed if seed is not None else teachers[lengths[-1]].model.spec.get("seed")
        own = [r for r in teacher_rows if r["seed"] == teacher_seed] or list(teacher_rows)
        per_length = {r["teacher_epochs"]: {k: r[k] for k in ("train_acc", "test_acc", "entropy_bits", "ece")} for r in own}
        base = curves["baseline"][0] if curves["baseline"] is not None else None
        return cls(logits, lengths, x, data.train.y[chosen].tolist(), data.class_names, curves["student"][:3],
                   teacher=per_length, baseline=base, temperature=temperature)

    # -- figure ------------------------------------------------------------------------------

    def _empty_figure(self, s_epochs, s_mean, s_std, baseline) -> go.Figure:
        k = len(self.labels)
        specs = [[{}] * k, [{}] * k, [{"colspan": k}] + [None] * (k - 1)]
        fig = make_subplots(rows=3, cols=k, specs=specs, row_heights=[0.22, 0.33, 0.45], vertical_spacing=0.09,
                            horizontal_spacing=0.04,
                            subplot_titles=[f"label {self.class_names[y]}" for y in self.labels] + [""] * k
                            + ["student validation accuracy (development seeds) against the teacher's schedule"])
        for i in range(k):
            fig.add_trace(go.Heatmap(z=self.images[i], colorscale="gray_r", showscale=False, hoverinfo="skip"),
                          row=1, col=i + 1)
            fig.update_xaxes(visible=False, row=1, col=i + 1)
            fig.update_yaxes(visible=False, autorange="reversed", row=1, col=i + 1)
        for i in range(k):
            fig.add_trace(go.Bar(x=self.class_names, y=np.zeros(len(self.class_names)), showlegend=False,
                                 hovertemplate="class %{x}: %{y:.3f}<extra></extra>"), row=2, col=i + 1)
            fig.update_yaxes(range=[0, 1], row=2, col=i + 1, showticklabels=i == 0,
                             title_text=f"soft target, T={self.temperature:g}" if i == 0 else None)
            fig.update_xaxes(type="category", tickfont=dict(size=9), row=2, col=i + 1)
        fig.add_trace(go.Scatter(x=s_epochs, y=s_mean, mode="lines+markers", name="distilled student (mean ± std)",
                                 marker_color=COLOURS["student"], error_y=dict(type="data", array=s_std, visible=True),
                                 hovertemplate="%{x}-epoch teacher: %{y:.2%}<extra></extra>"), row=3, col=1)
        if baseline is not None:
            fig.add_trace(go.Scatter(x=[min(s_epochs), max(s_epochs)], y=[baseline] * 2, mode="lines",
                                     name="labels only", line=dict(color=COLOURS["baseline"], dash="dash"),
                                     hovertemplate="labels only: %{y:.2%}<extra></extra>"), row=3, col=1)
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="this teacher",
                                 marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(width=3, color=COLOURS["eskd"])),
                                 hoverinfo="skip"), row=3, col=1)
        fig.update_yaxes(tickformat=".1%", row=3, col=1)
        fig.update_xaxes(title_text="teacher schedule (epochs)", row=3, col=1)
        fig.update_layout(height=640, margin=dict(l=50, r=20, t=40, b=40), bargap=0.15,
                          legend=dict(orientation="h", y=-0.12))
        return fig

    # -- callbacks ---------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return int(self.slider.value)

    def select(self, epoch: int) -> None:
        """Show the teacher of the ``epoch``-epoch schedule (one of ``epochs``)."""
        if int(epoch) not in self.epochs:
            raise ValueError(f"epoch={epoch!r} is not one of the teachers' schedules; choose one of {self.epochs}")
        self.slider.value = int(epoch)

    def probabilities(self, epoch: int | None = None) -> np.ndarray:
        """Soft targets (K, C) at the distillation temperature of the ``epoch``-epoch teacher (default: the slider's)."""
        e = self.epoch if epoch is None else int(epoch)
        return self._probs[self.epochs.index(e)]

    def update(self) -> None:
        """Index the precomputed soft targets and move the highlight: no forward pass."""
        e = self.epoch
        i = self.epochs.index(e)
        p = self._probs[i]
        k = len(self.labels)
        with self.figure.batch_update():
            for j in range(k):
                bars = self.figure.data[k + j]
                bars.y = p[j]
                bars.marker.color = [COLOUR_LABEL if c == self.labels[j] else COLOUR_OTHER for c in range(p.shape[1])]
            marker = self.figure.data[-1]
            if e in self.student_curve:
                marker.x, marker.y = [e], [self.student_curve[e][0]]
            else:
                marker.x, marker.y = [], []
        self.readout.value = self._readout(e, i)

    def _readout(self, e: int, i: int) -> str:
        parts = [f"<b>teacher trained for {e} epochs</b>"]
        t = self.teacher.get(e)
        if t:
            parts.append(f"transfer-set accuracy {t['train_acc']:.2%} · test accuracy {t['test_acc']:.2%} · soft-target "
                         f"entropy on the transfer set at T={self.temperature:g}: {t['entropy_bits']:.2f} bits · ECE {t['ece']:.3f}")
        confident = self._probs1[i].max(1)
        parts.append("confidence at T=1 on these images: " + ", ".join(f"{v:.1%}" for v in confident))
        if e in self.student_curve:
            m, s = self.student_curve[e]
            parts.append(f"student distilled from it: <b>{m:.2%}</b>" + (f" ± {s * 100:.2f}" if s else ""))
        return html.escape(" | ").join(parts)


# --------------------------------------------------------------------------------------------
# Figures


def early_stopping_figure(teacher_rows: Sequence[Mapping], student_rows: Sequence[Mapping],
                          temperature: float = TEMPERATURE, metric: str = "val_acc") -> go.Figure:
    """Four panels against the teacher's schedule length (epochs): the student distilled from that
    teacher (``metric``, mean ± std over seeds; the labels-only student dashed), the teacher's
    accuracy on its transfer set and on the test set, the entropy of its soft targets on the
    transfer set at T (bits), and its calibration error on the test set."""
    c = schedule_curves(teacher_rows, student_rows, metric)
    what = {"val_acc": "validation", "test_acc": "test"}.get(metric, metric)
    fig = make_subplots(rows=2, cols=2, shared_xaxes=True, vertical_spacing=0.12, horizontal_spacing=0.1,
                        subplot_titles=(f"student distilled from it ({what} accuracy)",
                                        "teacher accuracy: transfer set (dotted), test",
                                        f"teacher soft-target entropy on the transfer set, T={temperature:g} (bits)",
                                        "teacher calibration error (ECE, test)"))
    panels = [("student", 1, 1, COLOURS["student"], "student", "solid"),
              ("teacher_train_acc", 1, 2, COLOURS["teacher"], "teacher, transfer set", "dot"),
              ("teacher_test_acc", 1, 2, COLOURS["teacher"], "teacher, test", "solid"),
              ("teacher_entropy_bits", 2, 1, COLOURS["assistant"], "entropy", "solid"),
              ("teacher_ece", 2, 2, COLOURS["eskd"], "ECE", "solid")]
    for key, r, col, colour, name, dash in panels:
        x, y, e = c[key]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, marker_color=colour, line=dict(dash=dash),
                                 error_y=dict(type="data", array=e, visible=True)), row=r, col=col)
    if c["baseline"] is not None and c["student"][0]:
        x = c["student"][0]
        fig.add_trace(go.Scatter(x=[min(x), max(x)], y=[c["baseline"][0]] * 2, mode="lines", name="labels only",
                                 line=dict(color=COLOURS["baseline"], dash="dash")), row=1, col=1)
    fig.update_yaxes(tickformat=".1%", row=1)
    fig.update_xaxes(title_text="teacher schedule (epochs)", row=2)
    fig.update_layout(height=600, margin=dict(l=60, r=20, t=50, b=50))
    return fig


def eskd_figure(rows: Sequence[Mapping], metric: str = "val_acc") -> go.Figure:
    """Student ``metric`` against the epoch after which distillation stops (mean ± std over seeds,
    one dot per seed), with KD throughout and labels only as horizontal lines."""
    if not rows:
        raise ValueError("rows is empty: run labkd.early_stopping.eskd_runs first")
    eskd = sorted((s for s in summarize(rows, ["stop_epoch"], metric) if s["stop_epoch"] is not None),
                  key=lambda s: s["stop_epoch"])
    if not eskd:
        raise ValueError("rows hold no ESKD runs (stop_epoch set)")
    x = [s["stop_epoch"] for s in eskd]
    fig = go.Figure(go.Scatter(x=x, y=[s["mean"] for s in eskd], mode="lines+markers", name="ESKD: KD, then labels",
                               marker_color=COLOURS["eskd"],
                               error_y=dict(type="data", array=[s["std"] for s in eskd], visible=True)))
    for arm, colour in ((KD_THROUGHOUT, COLOURS["student"]), (BASELINE, COLOURS["baseline"])):
        mine = [r for r in rows if r.get("arm") == arm]
        if mine:
            m = summarize(mine, ["arm"], metric)[0]["mean"]
            fig.add_trace(go.Scatter(x=[min(x), max(x)], y=[m, m], mode="lines", name=f"{arm}: {m:.2%}",
                                     line=dict(color=colour, dash="dash")))
    what = {"val_acc": "validation", "test_acc": "test"}.get(metric, metric)
    fig.update_yaxes(tickformat=".1%", title_text=f"student {what} accuracy")
    fig.update_xaxes(title_text="student epoch after which distillation stops")
    fig.update_layout(title=f"Student {rows[0]['student']}: stopping distillation early (mean ± std over seeds)",
                      height=420)
    return fig


def benchmark_cases() -> dict:
    """The schedule slider for ``labkd bench``: 30 teacher schedules, four MNIST-sized images."""
    gen = np.random.default_rng(0)
    epochs = list(range(1, 31))
    logits = gen.normal(size=(len(epochs), 4, 10)) * np.arange(1, 31)[:, None, None] / 5
    student = (epochs, list(0.95 + gen.normal(0, 0.002, 30)), [0.002] * 30)
    teacher = {e: {"train_acc": 0.99, "test_acc": 0.97, "entropy_bits": 1.0, "ece": 0.01} for e in epochs}
    panel = EarlyStoppingPanel(logits, epochs, gen.random((4, 28, 28)), [0, 1, 2, 3], [str(i) for i in range(10)],
                               student, teacher=teacher, baseline=0.94)
    return {"teacher_epoch": cycle_values(panel.slider, epochs)}
