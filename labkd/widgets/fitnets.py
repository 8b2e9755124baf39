"""Panels of lesson 03 (FitNets): browse hint maps; pick the hint and guided layers and train.

>>> browser = HintBrowser(snapshot)              # recompute only: < 50 ms per move
>>> pairs = HintPairPanel(data, teacher, config, rows)   # "Train" runs both stages, cached
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import ipywidgets as W
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import nn

from labkd import fitnets, losses
from labkd.data import Data
from labkd.experiments import Trained
from labkd.models import build_model, num_parameters
from labkd.train import TrainConfig
from labkd.widgets import Panel, cycle_values, figure_widget


class HintBrowser(Panel):
    """Pick a test image and a hint channel; see the teacher's map beside the regressor's output
    before and after stage 1. Everything is precomputed in ``snapshot``: moving a slider only
    swaps arrays in the figure."""

    def __init__(self, snapshot: fitnets.HintSnapshot) -> None:
        self.snapshot = snapshot
        n, channels = snapshot.hint.shape[:2]
        self.image = W.IntSlider(value=0, min=0, max=n - 1, description="test image", continuous_update=True)
        first = fitnets.busiest_channels(snapshot.hint[0], 1)[0]
        self.channel = W.IntSlider(value=first, min=0, max=channels - 1, description="channel",
                                   continuous_update=True)
        titles = ["input", f"teacher hint ({snapshot.hint_layer})", "regressed, before", "regressed, after"]
        fig = make_subplots(rows=1, cols=4, subplot_titles=titles, horizontal_spacing=0.03)
        for col in range(1, 5):
            fig.add_trace(go.Heatmap(z=[[0.0]], colorscale="gray_r" if col == 1 else "Viridis", showscale=col == 4,
                                     hovertemplate="%{z:.2f}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(visible=False).update_yaxes(visible=False)
        fig.update_layout(height=300, margin=dict(l=10, r=10, t=80, b=10))
        self.figure = figure_widget(fig)
        self.info = W.HTML()
        self.image.observe(lambda _: self.timed(self.update), names="value")
        self.channel.observe(lambda _: self.timed(self.update), names="value")
        self.widget = W.VBox([W.HBox([self.image, self.channel]), self.info, self.figure])
        self.timed(self.update)

    def update(self) -> None:
        """Show channel ``self.channel.value`` of test image ``self.image.value``."""
        s, i, c = self.snapshot, self.image.value, self.channel.value
        maps = [s.hint[i, c], s.before[i, c], s.after[i, c]]
        lo, hi = float(min(m.min() for m in maps)), float(max(m.max() for m in maps))
        mse = [float((m - s.hint[i, c]).pow(2).mean()) for m in maps[1:]]
        with self.figure.batch_update():
            self.figure.data[0].z = s.images[i, 0].flip(0).numpy()
            for trace, m in zip(self.figure.data[1:], maps):
                trace.z = m.flip(0).numpy()
                trace.zmin, trace.zmax = lo, hi
            self.figure.layout.title = (f"channel {c}, image {i}: squared error of this map "
                                        f"{mse[0]:.3f} before → {mse[1]:.3f} after stage 1")
        self.info.value = (f"Guided layer <b>{html.escape(s.guided_layer)}</b> (student) → regressor → "
                           f"hint <b>{html.escape(s.hint_layer)}</b> (teacher). Hint loss on {s.loss_images} test "
                           f"images: {s.loss_before:.3f} before, {s.loss_after:.3f} after stage 1.")


def regressor_summary(student: nn.Module, teacher: nn.Module, guided_layer: str, hint_layer: str) -> tuple[str, int]:
    """A sentence describing the regressor ``make_hint_regressor`` builds for this pair, and its size."""
    s_shape, t_shape = student.feature_shape(guided_layer), teacher.feature_shape(hint_layer)
    regressor = losses.make_hint_regressor(s_shape, t_shape)
    conv = [m for m in regressor.modules() if isinstance(m, nn.Conv2d)]
    kernel = "x".join(str(k) for k in conv[0].kernel_size) if conv else "linear"
    upsample = "upsample, then " if any(isinstance(m, nn.Upsample) for m in regressor.modules()) else ""
    n = num_parameters(regressor)
    return (f"student {guided_layer} {tuple(s_shape)} → teacher {hint_layer} {tuple(t_shape)}: "
            f"{upsample}{kernel} convolution, {n:,} parameters", n)


class HintPairPanel(Panel):
    """Choose the student's guided layer, the teacher's hint layer and the stage-1 epochs; "Train"
    runs both FitNets stages (cached) and adds a bar beside the scratch and KD students.

    ``rows`` are :func:`labkd.fitnets.compare_methods` rows; the bars show seed ``config.seed``.
    ``config.epochs`` is every arm's total budget: stage 1 takes the chosen epochs out of it.
    ``student_options`` build the student (e.g. :func:`labkd.fitnets.thin_student`); ``guided_layer``
    is the layer the rows used; ``stage1_lr`` stage 1's learning rate (default ``config.lr``).
    """

    def __init__(self, data: Data, teacher: Trained | nn.Module, config: TrainConfig, rows: Sequence[dict],
                 stage1_epochs: int = 1, max_stage1_epochs: int = 5, student_arch: str = fitnets.STUDENT,
                 progress: bool | None = None, student_options: dict | None = None,
                 guided_layer: str = fitnets.GUIDED_LAYER, hint_layer: str = fitnets.HINT_LAYER,
                 stage1_lr: float | None = None) -> None:
        if config.epochs < 2:
            raise ValueError(f"config.epochs={config.epochs} leaves no room for stage 1 and stage 2; give at least 2")
        self.data, self.teacher, self.config, self.student_arch = data, teacher, config, student_arch
        self.student_options = dict(student_options or {})
        self.stage1_lr = stage1_lr
        self.progress_bars = progress
        teacher_model = teacher.model if isinstance(teacher, Trained) else teacher
        self._teacher_model = teacher_model
        self._student = build_model(student_arch, data.input_shape, data.num_classes, seed=config.seed,
                                    **self.student_options)
        guided_names, hint_names = self._student.feature_names, teacher_model.feature_names
        guided = guided_layer if guided_layer in guided_names else guided_names[0]
        hint = hint_layer if hint_layer in hint_names else hint_names[0]
        self._default = f"{guided}←{hint}, {stage1_epochs} ep"
        self.guided = W.Dropdown(options=guided_names, value=guided, description="guided (student)")
        self.hint = W.Dropdown(options=hint_names, value=hint, description="hint (teacher)")
        top = config.epochs - 1
        self.epochs = W.IntSlider(value=min(stage1_epochs, top), min=1, max=min(top, max(stage1_epochs, max_stage1_epochs)),
                                  description="stage-1 epochs")
        self.button = W.Button(description="Train", button_style="primary", icon="play")
        self.bar = W.IntProgress(value=0, min=0, max=2, description="stages")
        self.status = W.HTML()
        self.output = W.Output()
        self.student_params = num_parameters(self._student)

        names, values = [], []
        for method in ("scratch", "KD", "hints + KD"):
            for r in rows:
                if r["method"] == method and r["seed"] == config.seed:
                    label = method if method != "hints + KD" else self._default
                    names.append(label)
                    values.append(100 * r["accuracy"])
        self.runs: dict[str, float] = dict(zip(names, values))
        fig = go.Figure(go.Bar(x=names, y=values, text=[f"{v:.2f}" for v in values], textposition="outside",
                               cliponaxis=False, marker_color=self._colours(len(names))))
        fig.update_layout(height=380, yaxis_title="test accuracy %",
                          xaxis_title="hints + KD: guided←hint, stage-1 epochs",
                          title=f"Student trained different ways (seed {config.seed})", margin=dict(t=70))
        self.figure = figure_widget(fig)
        self._rescale()

        self.guided.observe(lambda _: self.timed(self.describe), names="value")
        self.hint.observe(lambda _: self.timed(self.describe), names="value")
        self.button.on_click(lambda _: self.train())
        self.widget = W.VBox([W.HBox([self.guided, self.hint, self.epochs]), self.status,
                              W.HBox([self.button, self.bar]), self.output, self.figure])
        self.describe()

    def describe(self) -> None:
        """Say what regressor the chosen pair needs (no training)."""
        text, n = regressor_summary(self._student, self._teacher_model, self.guided.value, self.hint.value)
        warning = ""
        if n > self.student_params:
            warning = (f'<br><span style="color:#c62828">The regressor has more parameters than the whole student '
                       f'({self.student_params:,}): stage 1 will be slow and the hint easy to over-fit. FitNets picks '
                       f'layers whose maps have the same size, so that a small 1x1 convolution suffices.</span>')
        self.status.value = html.escape(text) + warning

    def train(self) -> fitnets.FitNetResult | None:
        """Run (or load) both stages for the chosen layers and add the result to the figure.

        Returns the result, or None if training failed (the error is shown in the status line)."""
        guided, hint, epochs = self.guided.value, self.hint.value, self.epochs.value
        self.button.disabled = True
        self.bar.value = 0
        self.status.value = f"Training: stage 1 ({html.escape(guided)} ← {html.escape(hint)}, {epochs} epochs)…"
        try:
            with self.output:
                self.output.clear_output()
                result = fitnets.train_fitnet(self.data, self.teacher, self.student_arch, hint, guided, self.config,
                                              stage1_epochs=epochs, progress=self.progress_bars,
                                              on_stage=self._stage_done, stage1_lr=self.stage1_lr,
                                              **self.student_options)
        except Exception as error:  # a button callback must not fail silently: say what went wrong
            self.status.value = (f'<span style="color:#c62828">Training {html.escape(guided)} ← {html.escape(hint)} '
                                 f'failed: {html.escape(type(error).__name__)}: {html.escape(str(error))}</span>')
            return None
        finally:
            self.button.disabled = False
        label = f"{guided}←{hint}, {epochs} ep"
        self.runs[label] = 100 * result.final("test_acc")
        with self.figure.batch_update():
            bar = self.figure.data[0]
            bar.x = list(self.runs)
            bar.y = list(self.runs.values())
            bar.text = [f"{v:.2f}" for v in self.runs.values()]
            bar.marker.color = self._colours(len(self.runs))
            self._rescale()
        loss = result.stage1.history[-1]["loss"]
        self.status.value = (f"Done: {html.escape(label)} → test accuracy {self.runs[label]:.2f}% "
                             f"(stage-1 hint loss {loss:.3f}; {result.seconds:.0f} s of training"
                             f"{', from the cache' if result.stage1.cached and result.stage2.cached else ''}).")
        return result

    def _stage_done(self, stage: str, trained: Trained) -> None:
        self.bar.value = 1 if stage == "stage1" else 2
        if stage == "stage1":
            self.status.value = "Training: stage 2 (distillation of the whole student)…"

    @staticmethod
    def _colours(n: int) -> list[str]:
        c = fitnets.COLOURS
        return [c["scratch"], c["KD"]][:n] + [c["hints + KD"]] * max(0, n - 2)

    def _rescale(self) -> None:
        values = list(self.runs.values())
        if values:
            lo, hi = min(values), max(values)
            self.figure.layout.yaxis.range = [max(0.0, lo - max(2.0, hi - lo)), min(100.0, hi + 1.5)]


def benchmark_cases() -> dict:
    """The hint browser's sliders for ``labkd bench``: 16 images, a 64-channel 7x7 hint (lesson 03's sizes)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    maps = [torch.randn(16, 64, 7, 7, generator=gen) for _ in range(3)]
    snapshot = fitnets.HintSnapshot(torch.rand(16, 1, 28, 28, generator=gen), *maps, loss_before=1.0,
                                    loss_after=0.5, loss_images=1000, hint_layer="conv2", guided_layer="conv3")
    panel = HintBrowser(snapshot)
    return {"image": cycle_values(panel.image, range(16)), "channel": cycle_values(panel.channel, range(64))}
