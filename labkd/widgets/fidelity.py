"""Panels of lesson 09 (fidelity): how closely does the student follow its teacher, epoch by
epoch, and is the most faithful student the most accurate one?

>>> FidelityPanel(study)                           # epoch slider, condition and measure pickers
>>> DisagreementPanel.from_study(study, teachers, data)   # one test image: who is right, and why

The panel reads the per-epoch means that :meth:`labkd.fidelity.FidelityStudy.curves` computed once;
moving the slider only copies a few numbers into the figure (no training, a few milliseconds).
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from labkd.fidelity import FidelityStudy
from labkd.fidelity_figures import palette
from labkd.widgets import Panel, figure_widget

MEASURES = {"test agreement": "test_agreement", "train agreement": "train_agreement",
            "test KL(teacher ‖ student)": "test_kl", "train KL(teacher ‖ student)": "train_kl"}
LINES = (("test_acc", "test accuracy", "#d62728"), ("test_agreement", "test agreement", "#1f77b4"),
         ("train_agreement", "train agreement", "#2ca02c"))


class FidelityPanel(Panel):
    """Pick a student epoch, a condition and a fidelity measure.

    Left: the chosen condition's test accuracy, test agreement and train agreement per epoch
    (mean over seeds) with the chosen epoch marked. Right: every condition at that epoch,
    test accuracy against the chosen fidelity measure, the chosen condition ringed — when the
    points do not line up from bottom-left to top-right, fidelity and generalization disagree.
    Callbacks: :meth:`update` (also via :meth:`on_change`), :meth:`select`.
    """

    def __init__(self, study: FidelityStudy) -> None:
        if not isinstance(study, FidelityStudy) or not study.runs:
            raise ValueError("study must be a non-empty FidelityStudy (from labkd.fidelity.fidelity_study)")
        self.study = study
        self.curves = study.curves()
        self.conditions = list(self.curves)
        self.last_update_ms = 0.0
        style = {"description_width": "initial"}
        n = study.epochs
        self.epoch = widgets.IntSlider(value=n, min=1, max=n, step=1, description="student epoch", style=style,
                                       continuous_update=True, layout=widgets.Layout(width="420px"))
        self.condition = widgets.Dropdown(options=self.conditions, value=self.conditions[0], description="condition",
                                          style=style, layout=widgets.Layout(width="460px"))
        self.measure = widgets.ToggleButtons(options=list(MEASURES), value="test agreement", description="fidelity",
                                             style=style)
        self.status = widgets.HTML()
        fig = make_subplots(rows=1, cols=2, subplot_titles=("one condition, epoch by epoch", "all conditions at this epoch"),
                            horizontal_spacing=0.12)
        epochs = np.arange(1, n + 1)
        for key, name, colour in LINES:
            fig.add_trace(go.Scatter(x=epochs, y=np.zeros(n), mode="lines+markers", name=name,
                                     line=dict(color=colour)), row=1, col=1)
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="chosen epoch", showlegend=False,
                                 marker=dict(size=14, symbol="circle-open", color="black", line=dict(width=2))),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="conditions", showlegend=False, text=self.conditions,
                                 marker=dict(size=11, color=palette(len(self.conditions))),
                                 hovertemplate="%{text}<br>fidelity %{x:.4f}<br>test acc %{y:.2%}<extra></extra>"),
                      row=1, col=2)
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="chosen condition", showlegend=False, hoverinfo="skip",
                                 marker=dict(size=22, symbol="circle-open", color="black", line=dict(width=2))),
                      row=1, col=2)
        fig.update_xaxes(title_text="student epoch", row=1, col=1)
        fig.update_yaxes(tickformat=".1%", row=1, col=1)
        fig.update_yaxes(title_text="test accuracy", tickformat=".1%", row=1, col=2)
        fig.update_layout(height=430, margin=dict(l=60, r=20, t=40, b=50), legend=dict(orientation="h", y=-0.2))
        self.figure = figure_widget(fig)
        self.figure.add_class("labkd-fidelity-plot")
        for control in (self.epoch, self.condition, self.measure):
            control.observe(self.on_change, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.epoch, self.condition]), self.measure, self.status, self.figure])
        self.widget.add_class("labkd-fidelity-panel")
        self.timed(self.update)

    def select(self, epoch: int | None = None, condition: str | None = None, measure: str | None = None) -> None:
        """Set any of the controls (the figure follows through the observers)."""
        if condition is not None and condition not in self.conditions:
            raise ValueError(f"condition={condition!r} is not in the study; choose one of {self.conditions}")
        if measure is not None and measure not in MEASURES:
            raise ValueError(f"measure={measure!r} is unknown; choose one of {list(MEASURES)}")
        if epoch is not None and not 1 <= int(epoch) <= self.study.epochs:
            raise ValueError(f"epoch must be in 1..{self.study.epochs}, got {epoch!r}")
        if condition is not None:
            self.condition.value = condition
        if measure is not None:
            self.measure.value = measure
        if epoch is not None:
            self.epoch.value = int(epoch)

    def update(self) -> None:
        """Copy the chosen epoch's numbers into the figure's traces (no training)."""
        e = self.epoch.value - 1
        cond = self.condition.value
        key = MEASURES[self.measure.value]
        c = self.curves[cond]
        xs = [float(self.curves[k][key][e]) for k in self.conditions]
        ys = [float(self.curves[k]["test_acc"][e]) for k in self.conditions]
        i = self.conditions.index(cond)
        with self.figure.batch_update():
            for trace, (metric, _, _) in zip(self.figure.data[:3], LINES, strict=True):
                trace.y = c[metric]
            self.figure.data[3].x = [e + 1] * 3
            self.figure.data[3].y = [float(c[m][e]) for m, _, _ in LINES]
            self.figure.data[4].x, self.figure.data[4].y = xs, ys
            self.figure.data[5].x, self.figure.data[5].y = [xs[i]], [ys[i]]
            self.figure.layout.xaxis2.title.text = self.measure.value + (" (lower: more faithful)" if "KL" in self.measure.value else "")
            self.figure.layout.xaxis2.tickformat = ".1%" if "agreement" in key else ".3f"
        n = len(self.study.seeds)
        self.status.value = (
            f"<b>{html.escape(cond)}</b>, epoch {e + 1}: test accuracy <b>{c['test_acc'][e]:.2%}</b> · "
            f"test agreement {c['test_agreement'][e]:.2%} · train agreement {c['train_agreement'][e]:.2%} · "
            f"KL(t‖s) test {c['test_kl'][e]:.4f}, train {c['train_kl'][e]:.4f} "
            f"<i>(mean over {n} seed{'s' if n > 1 else ''})</i>")


class DisagreementPanel(Panel):
    """Pick a student (condition and seed), a kind of test image (who is right) and an image of
    that kind: see the image, the teacher's and the student's probabilities side by side, and why
    they disagree — how unsure the teacher was on that image, and how far the student's
    distribution is from the teacher's (KL in bits) compared with all test images.

    The figure above it averages over images; this panel asks about one image at a time, and
    about where in the teacher's confidence the disagreements sit (right plot: disagreement rate
    per bin of the teacher's top probability, the chosen image marked).
    Callbacks: :meth:`update`, :meth:`select`. Build with :meth:`from_study`.
    """

    BINS = np.array([0.0, 0.5, 0.7, 0.9, 0.99, 0.999, 1.0 + 1e-9])

    def __init__(self, images, labels, teacher_logits: dict, student_logits: dict,
                 class_names: list[str] | None = None) -> None:
        from labkd.fidelity import KINDS, image_kinds

        if not student_logits:
            raise ValueError("student_logits is empty: give {(condition, seed): (N, C) logits}")
        missing = sorted({seed for _, seed in student_logits} - set(teacher_logits))
        if missing:
            raise ValueError(f"teacher_logits has no teacher for seed(s) {missing}")
        n = len(labels)
        if images.shape[0] != n:
            raise ValueError(f"images has {images.shape[0]} rows but labels {n}")
        self.images, self.labels = images, labels
        self.class_names = class_names or [str(c) for c in range(next(iter(student_logits.values())).shape[1])]
        self.kinds = KINDS
        self.teacher_logits, self.student_logits = teacher_logits, student_logits
        self.info = {key: image_kinds(teacher_logits[key[1]], z, labels) for key, z in student_logits.items()}
        self.last_update_ms = 0.0
        self.conditions = list(dict.fromkeys(c for c, _ in student_logits))
        self.seeds = sorted({s for _, s in student_logits})
        style = {"description_width": "initial"}
        self.condition = widgets.Dropdown(options=self.conditions, value=self.conditions[0], description="student",
                                          style=style, layout=widgets.Layout(width="440px"))
        self.seed = widgets.Dropdown(options=self.seeds, value=self.seeds[0], description="seed", style=style,
                                     layout=widgets.Layout(width="140px"))
        self.kind = widgets.Dropdown(options=list(KINDS), value=KINDS[1], description="images where",
                                     style=style, layout=widgets.Layout(width="440px"))
        self.index = widgets.IntSlider(value=0, min=0, max=0, description="image (most different first)",
                                       style=style, continuous_update=True, layout=widgets.Layout(width="520px"))
        self.status = widgets.HTML()
        fig = make_subplots(rows=1, cols=3, column_widths=[0.22, 0.43, 0.35], horizontal_spacing=0.07,
                            subplot_titles=("test image", "probabilities (T = 1)", "disagreement vs teacher confidence"))
        side = int(round(images[0].numel() ** 0.5))
        fig.add_trace(go.Heatmap(z=np.zeros((side, side)), colorscale="gray_r", showscale=False, hoverinfo="skip"),
                      row=1, col=1)
        names = self.class_names
        fig.add_trace(go.Bar(x=names, y=np.zeros(len(names)), name="teacher p", marker_color="#7f7f7f"), row=1, col=2)
        fig.add_trace(go.Bar(x=names, y=np.zeros(len(names)), name="student q", marker_color="#1f77b4"), row=1, col=2)
        labels_bins = [f"{a:g}–{b:.3g}" for a, b in zip(self.BINS[:-1], np.minimum(self.BINS[1:], 1.0), strict=True)]
        fig.add_trace(go.Bar(x=labels_bins, y=np.zeros(len(labels_bins)), name="disagreement rate",
                             marker_color="#d62728", showlegend=False,
                             hovertemplate="teacher's top probability %{x}<br>%{y:.1%} disagree<extra></extra>"),
                      row=1, col=3)
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="this image", showlegend=False,
                                 marker=dict(size=14, symbol="triangle-down", color="black")), row=1, col=3)
        fig.update_yaxes(autorange="reversed", showticklabels=False, row=1, col=1)
        fig.update_xaxes(showticklabels=False, row=1, col=1)
        fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=2)
        fig.update_yaxes(tickformat=".0%", row=1, col=3)
        fig.update_xaxes(title_text="teacher's top probability", row=1, col=3)
        fig.update_layout(height=380, barmode="group", margin=dict(l=40, r=20, t=40, b=60),
                          legend=dict(orientation="h", y=-0.25))
        self.figure = figure_widget(fig)
        self.figure.add_class("labkd-disagreement-plot")
        self._muted = False
        for control in (self.condition, self.seed, self.kind):
            control.observe(self._on_choice, names="value")
        self.index.observe(self.on_change, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.condition, self.seed]), self.kind, self.index,
                                    self.status, self.figure])
        self.widget.add_class("labkd-disagreement-panel")
        self._on_choice()

    @classmethod
    def from_study(cls, study: FidelityStudy, teachers: dict, data) -> DisagreementPanel:
        """The panel for lesson 09: every student of ``study`` on ``data.test``."""
        from labkd.fidelity import test_logits

        teacher_out, student_out = test_logits(study, teachers, data)
        return cls(data.test.x, data.test.y, teacher_out, student_out, data.class_names)

    # -- state ---------------------------------------------------------------------------------

    def key(self) -> tuple[str, int]:
        return (self.condition.value, self.seed.value)

    def chosen_images(self) -> np.ndarray:
        """Test-image indices of the chosen kind for the chosen student, most different first
        (largest KL(p ‖ q))."""
        info = self.info[self.key()]
        rows = np.flatnonzero(info["kind"] == self.kinds.index(self.kind.value))
        return rows[np.argsort(-info["kl_bits"][rows], kind="stable")]

    def image(self) -> int | None:
        rows = self.chosen_images()
        return int(rows[self.index.value]) if len(rows) else None

    # -- callbacks -----------------------------------------------------------------------------

    def _on_choice(self, change: dict | None = None) -> None:
        """Condition, seed or kind changed: reset the image slider to this kind's images, redraw."""
        rows = self.chosen_images()
        self._muted = True
        self.index.max = max(len(rows) - 1, 0)
        self.index.value = 0
        self.index.disabled = len(rows) == 0
        self._muted = False
        self.timed(self.update)

    def on_change(self, change: dict | None = None) -> None:
        if not self._muted:
            self.timed(self.update)

    def select(self, condition: str | None = None, seed: int | None = None, kind: str | None = None,
               index: int | None = None) -> None:
        """Set any of the controls, as a student would (the figure follows)."""
        if condition is not None and condition not in self.conditions:
            raise ValueError(f"condition={condition!r} is unknown; choose one of {self.conditions}")
        if seed is not None and seed not in self.seeds:
            raise ValueError(f"seed={seed!r} is unknown; choose one of {self.seeds}")
        if kind is not None and kind not in self.kinds:
            raise ValueError(f"kind={kind!r} is unknown; choose one of {list(self.kinds)}")
        if condition is not None:
            self.condition.value = condition
        if seed is not None:
            self.seed.value = seed
        if kind is not None:
            self.kind.value = kind
        if index is not None:
            if not 0 <= int(index) <= self.index.max:
                raise ValueError(f"index must be in 0..{self.index.max} for this kind, got {index!r}")
            self.index.value = int(index)

    def update(self) -> None:
        """Redraw the image, both distributions and the confidence bins in place (no model runs)."""
        info = self.info[self.key()]
        disagree = info["teacher_pred"] != info["student_pred"]
        bins = np.digitize(info["teacher_conf"], self.BINS) - 1
        rates = [float(disagree[bins == b].mean()) if (bins == b).any() else 0.0 for b in range(len(self.BINS) - 1)]
        i = self.image()
        counts = np.bincount(info["kind"], minlength=len(self.kinds))
        share = ", ".join(f"{k} {c:,}" for k, c in zip(self.kinds, counts, strict=True))
        with self.figure.batch_update():
            self.figure.data[3].y = rates
            if i is None:
                self.figure.data[0].z = np.zeros_like(self.figure.data[0].z)
                self.figure.data[1].y = self.figure.data[2].y = np.zeros(len(self.class_names))
                self.figure.data[4].x, self.figure.data[4].y = [], []
            else:
                side = int(round(self.images[i].numel() ** 0.5))
                self.figure.data[0].z = self.images[i].reshape(side, side).cpu().numpy()
                p = torch.softmax(self.teacher_logits[self.seed.value][i].float(), 0).numpy()
                q = torch.softmax(self.student_logits[self.key()][i].float(), 0).numpy()
                self.figure.data[1].y, self.figure.data[2].y = p, q
                b = int(bins[i])
                self.figure.data[4].x, self.figure.data[4].y = [self.figure.data[3].x[b]], [rates[b] + 0.02]
        if i is None:
            self.status.value = f"<i>no test image of this kind for this student</i> ({html.escape(share)})"
            return
        names = self.class_names
        kl = info["kl_bits"]
        rank = float((kl < kl[i]).mean())
        self.status.value = (
            f"test image #{i}: label <b>{html.escape(names[int(self.labels[i])])}</b> · teacher says "
            f"<b>{html.escape(names[int(info['teacher_pred'][i])])}</b> ({info['teacher_conf'][i]:.0%} sure, "
            f"margin {info['teacher_margin'][i]:.2f} over its second choice) · student says "
            f"<b>{html.escape(names[int(info['student_pred'][i])])}</b> · KL(p ‖ q) = {kl[i]:.3f} bits, more than "
            f"{rank:.1%} of test images. <br>Of the {len(kl):,} test images: {html.escape(share)}; the two disagree on "
            f"{disagree.mean():.2%} of all images, {rates[int(bins[i])]:.1%} of those where the teacher was as sure as here.")


# --- labkd bench ---------------------------------------------------------------------------------


def _synthetic_study(epochs: int = 20, seeds: int = 3) -> FidelityStudy:
    """A study the size of the lesson's full grid, with made-up histories (no training)."""
    import torch

    from labkd.fidelity import FidelityRun

    rng = np.random.default_rng(0)
    model = torch.nn.Linear(1, 1)
    runs = []
    for student in ("784-300-300-10", "784-30-30-10"):
        for method, jitter in (("distilled", 0), ("distilled", 2), ("labels only", 0)):
            for seed in range(seeds):
                base = 0.9 + 0.07 * (1 - np.exp(-np.arange(1, epochs + 1) / 4))
                history = [{"epoch": e + 1, "test_acc": float(base[e] + rng.normal(0, 0.002)),
                            "train_agreement": float(base[e] + 0.01), "test_agreement": float(base[e] - 0.005),
                            "train_kl": float(0.3 / (e + 1)), "test_kl": float(0.35 / (e + 1))} for e in range(epochs)]
                runs.append(FidelityRun(student, (1,), method, jitter, seed, history, model, "synthetic", 0.0, True))
    return FidelityStudy(runs=runs)


def benchmark_cases() -> dict:
    """Panel callbacks for ``labkd bench``, on a synthetic study the size of the full lesson."""
    panel = FidelityPanel(_synthetic_study())
    state = {"i": 0}

    def next_epoch() -> None:
        state["i"] += 1
        panel.epoch.value = 1 + state["i"] % panel.study.epochs

    def next_condition() -> None:
        state["i"] += 1
        panel.condition.value = panel.conditions[state["i"] % len(panel.conditions)]

    return {"epoch": next_epoch, "condition": next_condition}
