"""Panel of lesson 02 (temperature sweep): pick a grid cell, see how it learned.

>>> panel = SweepPanel(result)                                  # recompute only
>>> panel = SweepPanel(result, data=transfer, teacher=teacher,  # plus "train this cell"
...                    base_config=base)

Controls choose the student, the temperature T, alpha, the T² setting (when the result holds
the ablation) and a seed (or the mean over seeds); clicking a heatmap cell picks its T and
alpha. The left figure is the mean test accuracy of every (alpha, T) cell; the right one the
chosen cell's validation and test accuracy per epoch beside the labels-only student's. Moving a
control only re-reads the stored histories (a few milliseconds). The optional training row
runs one more cell through :func:`labkd.sweeps.run_grid` (cached, with a progress bar).
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from labkd import losses
from labkd.data import Data
from labkd.experiments import Trained
from labkd.sweeps import SweepResult, mean_curve, run_grid
from labkd.train import TrainConfig
from labkd.widgets import Panel, figure_widget

COLOUR_VAL = "#1f77b4"
COLOUR_TEST = "#d62728"
MEAN = "mean"  # the seed control's "mean over seeds" option


def _fmt(t: float) -> str:
    return f"{t:g}"


class SweepPanel(Panel):
    """Learning curves of one cell of a :class:`~labkd.sweeps.SweepResult` beside the baseline.

    Args:
        result: the grid (from :func:`labkd.sweeps.run_grid`, possibly merged with the T² ablation).
        student: the student shown first (default: the first in the result).
        data, teacher, base_config: give all three to enable "train this cell" for a
            (T, alpha) not in the grid; the new rows join ``self.result``.

    Callbacks are plain methods: :meth:`update` (redraw), :meth:`select` (pick a cell),
    :meth:`on_heatmap_click` (plotly click) and :meth:`train_cell` (the button).
    """

    def __init__(self, result: SweepResult, student: str | None = None, data: Data | None = None,
                 teacher: Trained | None = None, base_config: TrainConfig | None = None) -> None:
        if not isinstance(result, SweepResult) or not result.rows:
            raise ValueError("result must be a non-empty SweepResult (from labkd.sweeps.run_grid)")
        if not result.alphas:
            raise ValueError("result has no distilled runs (only the labels-only baseline); run a grid with alphas > 0")
        if student is not None and student not in result.students:
            raise ValueError(f"student={student!r} is not in the result; expected one of {result.students}")
        trainable = (data, teacher, base_config)
        if any(v is not None for v in trainable) and not all(v is not None for v in trainable):
            raise ValueError("give data, teacher and base_config together to enable training, or none of them")
        self.result = result
        self.data, self.teacher, self.base_config = data, teacher, base_config
        self._busy = False
        self.last_update_ms = 0.0

        style = {"description_width": "initial"}
        self.student = widgets.ToggleButtons(options=result.students, value=student or result.students[0],
                                             description="student", style=style)
        self.temperature = widgets.ToggleButtons(description="T", style=style)
        self.alpha = widgets.ToggleButtons(description="α", style=style)
        self.scale = widgets.ToggleButtons(options=[("with T²", True), ("without T²", False)], value=True,
                                           description="scaling", style=style)
        self.seed = widgets.Dropdown(description="seed", style=style, layout=widgets.Layout(width="220px"))
        self.status = widgets.HTML()
        self.heatmap = figure_widget(self._heatmap_figure())
        self.figure = figure_widget(self._curves_figure())
        self.heatmap.data[0].on_click(self.on_heatmap_click)
        self._refresh_options()
        for control in (self.student, self.temperature, self.alpha, self.scale, self.seed):
            control.observe(self._on_change, names="value")

        rows = [self.student, self.scale, self.temperature, self.alpha, self.seed]
        if data is not None:
            self.new_temperature = widgets.BoundedFloatText(value=2.5, min=losses.TEMPERATURE_RANGE[0],
                                                            max=losses.TEMPERATURE_RANGE[1], step=0.5,
                                                            description="new cell: T", style=style,
                                                            layout=widgets.Layout(width="180px"))
            self.new_alpha = widgets.BoundedFloatText(value=0.9, min=0.0, max=1.0, step=0.05, description="α",
                                                      style=style, layout=widgets.Layout(width="120px"))
            self.train_button = widgets.Button(description="train this cell", icon="play", button_style="warning")
            self.train_button.on_click(lambda _b: self.train_cell())
            self.progress = widgets.IntProgress(value=0, min=0, max=1, description="", layout=widgets.Layout(width="160px"))
            self.train_status = widgets.HTML()
            rows.append(widgets.HBox([self.new_temperature, self.new_alpha, self.train_button, self.progress,
                                      self.train_status]))
        self.widget = widgets.VBox([*rows, self.status, widgets.HBox([self.heatmap, self.figure])])
        self.timed(self.update)

    # --- options -------------------------------------------------------------------------------

    def _refresh_options(self) -> None:
        """Options of T, alpha and seed for the chosen student and T² setting (keeps values when possible)."""
        self._busy = True
        try:
            name = self.student.value
            has_ablation = bool(self.result.temperatures_of(name, None, False))
            self.scale.layout.display = None if has_ablation else "none"
            if not has_ablation and self.scale.value is False:
                self.scale.value = True
            scaled = self.scale.value
            temps = self.result.temperatures_of(name, None, scaled)
            alphas = self.result.alphas_of(name, scaled)
            _set_options(self.temperature, [(_fmt(t), t) for t in temps])
            _set_options(self.alpha, [(_fmt(a), a) for a in alphas])
            seeds = sorted({r.seed for r in self.result.select(student=name, scale_by_t2=None)})
            _set_options(self.seed, [("mean over seeds", MEAN)] + [(f"seed {s}", s) for s in seeds])
        finally:
            self._busy = False

    def _on_change(self, change) -> None:
        if self._busy:
            return
        if change["owner"] in (self.student, self.scale):
            self._refresh_options()
            self.timed(self.update, heatmap=True)
        else:
            self.timed(self.update, heatmap=False)

    # --- callbacks -----------------------------------------------------------------------------

    def select(self, temperature: float | None = None, alpha: float | None = None, seed: int | str | None = None,
               student: str | None = None, scale_by_t2: bool | None = None) -> None:
        """Choose a cell (any argument left None keeps its control) and redraw once."""
        if student is not None and student not in self.result.students:
            raise ValueError(f"student={student!r} is not in the result; expected one of {self.result.students}")
        if scale_by_t2 is not None and not isinstance(scale_by_t2, bool):
            raise TypeError(f"scale_by_t2 must be True or False, got {scale_by_t2!r}")
        self._busy = True
        try:
            if student is not None:
                self.student.value = student
            if scale_by_t2 is not None:
                self.scale.value = scale_by_t2
        finally:
            self._busy = False
        if student is not None or scale_by_t2 is not None:
            self._refresh_options()
        self._busy = True
        try:
            if temperature is not None:
                self.temperature.value = _closest(self.temperature, float(temperature), "temperature")
            if alpha is not None:
                self.alpha.value = _closest(self.alpha, float(alpha), "alpha")
            if seed is not None:
                seeds = [v for _, v in self.seed.options]
                if seed not in seeds or isinstance(seed, bool):
                    raise ValueError(f"seed={seed!r} is not in the result; choose one of {seeds}")
                self.seed.value = seed
        finally:
            self._busy = False
        self.timed(self.update)

    def on_heatmap_click(self, trace, points, state=None) -> None:
        """plotly's click callback on the heatmap: pick the clicked (T, alpha)."""
        if not getattr(points, "xs", None):
            return
        self.select(temperature=float(points.xs[0]), alpha=float(points.ys[0]))

    def update(self, heatmap: bool = True) -> None:
        """Redraw the curves (and the heatmap) for the current controls. Recompute only."""
        name, t, a, scaled, seed = (self.student.value, self.temperature.value, self.alpha.value, self.scale.value,
                                    self.seed.value)
        cell = dict(student=name, temperature=t, alpha=a, scale_by_t2=scaled)
        base = dict(student=name, baseline=True)
        if seed != MEAN:
            cell["seed"] = base["seed"] = seed
        cell_rows = self.result.select(**cell) if t is not None and a is not None else []
        have_cell = any(not r.diverged for r in cell_rows)
        have_base = any(not r.diverged for r in self.result.select(**base))
        curves = []
        for criteria, present in ((cell, have_cell), (base, have_base)):
            for metric in ("val_acc", "test_acc"):
                if present:
                    epochs, mean, std = mean_curve(self.result, metric, **criteria)
                    curves.append((epochs, [m * 100 for m in mean], [s * 100 for s in std]))
                else:
                    curves.append(([], [], []))
        with self.figure.batch_update():
            for trace, (x, y, e) in zip(self.figure.data, curves):
                trace.x, trace.y = x, y
                trace.error_y.array = e
            label = "seed " + str(seed) if seed != MEAN else "mean ± std over seeds"
            cell_name = (f"T = {_fmt(t)}, α = {_fmt(a)}" + ("" if scaled else ", no T²")) if t is not None else "?"
            self.figure.layout.title.text = f"{name}: {cell_name} ({label})"
        if heatmap:
            self._update_heatmap()
        with self.heatmap.batch_update():
            marker = self.heatmap.data[1]
            marker.x = [_fmt(t)] if t is not None else []
            marker.y = [_fmt(a)] if a is not None else []
        self.status.value = self._status_text(cell, base, cell_rows, have_base)

    def _status_text(self, cell: dict, base: dict, cell_rows: list, have_base: bool) -> str:
        if not cell_rows:
            return "<i>This cell is not in the grid" + (" — train it below." if self.data is not None else ".") + "</i>"
        bad = sum(r.diverged for r in cell_rows)
        if bad == len(cell_rows):
            return f"<b>Every run of this cell diverged</b> (NaN loss, {bad} run{'s' if bad > 1 else ''})."
        ok = SweepResult([r for r in cell_rows if not r.diverged])
        m, s, n = ok.mean_std("test_acc", scale_by_t2=None)
        vm, vs, _ = ok.mean_std("val_acc", scale_by_t2=None)
        e, _, _ = ok.mean_std("test_errors", scale_by_t2=None)
        secs = sum(r.seconds for r in cell_rows)
        text = (f"<b>final test accuracy {m * 100:.2f}%</b>" + (f" ± {s * 100:.2f}" if n > 1 else "")
                + f" ({e:.0f} errors) · val {vm * 100:.2f}%" + (f" ± {vs * 100:.2f}" if n > 1 else ""))
        if have_base:
            bm, bs, _ = self.result.mean_std("test_acc", **base)
            diff = (m - bm) * 100
            text += f" · labels only {bm * 100:.2f}% → <b>{diff:+.2f} points</b>"
        text += f" · {n} run{'s' if n > 1 else ''}, {secs:.1f} s of training"
        if bad:
            text += f" · <b>{bad} more diverged</b> (NaN loss)"
        return text

    # --- figures -------------------------------------------------------------------------------

    def _heatmap_figure(self) -> go.Figure:
        fig = go.Figure([
            go.Heatmap(z=[[0.0]], x=["1"], y=["1"], colorscale="Viridis", texttemplate="%{z:.2f}",
                       colorbar=dict(title="test %", len=0.8), hovertemplate="T=%{x} α=%{y}: %{z:.2f}%<extra></extra>"),
            go.Scatter(x=[], y=[], mode="markers", marker=dict(symbol="square-open", size=34, color="white",
                       line=dict(width=3)), hoverinfo="skip", showlegend=False),
        ])
        fig.update_layout(title="mean test accuracy (click a cell)", width=430, height=380,
                          xaxis_title="temperature T", yaxis_title="α", margin=dict(l=50, r=10, t=50, b=50))
        fig.update_xaxes(type="category")
        fig.update_yaxes(type="category")
        return fig

    def _update_heatmap(self) -> None:
        name, scaled = self.student.value, self.scale.value
        temps = self.result.temperatures_of(name, None, scaled)
        alphas = self.result.alphas_of(name, scaled)
        z = np.full((len(alphas), len(temps)), np.nan)
        for i, a in enumerate(alphas):
            for j, t in enumerate(temps):
                values = self.result.values("test_acc", student=name, temperature=t, alpha=a, scale_by_t2=scaled)
                if values:
                    z[i, j] = float(np.mean(values)) * 100
        title = f"{name}{'' if scaled else ' without T²'}: mean test %"
        if self.result.select(student=name, baseline=True):
            bm = self.result.baseline_mean_std(name)[0]
            title += f"<br><sup>labels only: {bm * 100:.2f}%</sup>"
        with self.heatmap.batch_update():
            heat = self.heatmap.data[0]
            heat.z = z.tolist()
            heat.x = [_fmt(t) for t in temps]
            heat.y = [_fmt(a) for a in alphas]
            self.heatmap.layout.title.text = title

    def _curves_figure(self) -> go.Figure:
        fig = go.Figure()
        for who, dash in (("distilled", None), ("labels only", "dash")):
            for metric, colour in (("val", COLOUR_VAL), ("test", COLOUR_TEST)):
                fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name=f"{who}: {metric}",
                                         line=dict(color=colour, dash=dash),
                                         error_y=dict(type="data", array=[], visible=True, thickness=1)))
        fig.update_layout(xaxis_title="epoch", yaxis_title="accuracy (%)", width=560, height=380,
                          margin=dict(l=50, r=10, t=50, b=50), legend=dict(orientation="h", y=-0.25))
        return fig

    # --- training one more cell -------------------------------------------------------------------

    def train_cell(self, temperature: float | None = None, alpha: float | None = None) -> SweepResult:
        """Train (or load from the cache) the cell (T, alpha) for the chosen student, T² setting and
        seed (every seed when the seed control says "mean"), add it to the result and show it."""
        if self.data is None:
            raise RuntimeError("this panel was built without data, teacher and base_config: it cannot train")
        t = losses.check_temperature(self.new_temperature.value if temperature is None else temperature)
        a = losses.check_alpha(self.new_alpha.value if alpha is None else alpha)
        name, scaled, seed = self.student.value, self.scale.value, self.seed.value
        seeds = self.result.seeds if seed == MEAN else [seed]
        self.progress.max = len(seeds) * (1 + (a > 0))
        self.progress.value = 0
        self.train_status.value = f"training {name} T={_fmt(t)} α={_fmt(a)} …"
        self.train_button.disabled = True
        try:
            new = run_grid(self.data, self.teacher, {name: self.result.specs[name]}, [t], [a], seeds,
                           self.base_config.replace(scale_by_t2=scaled), progress=False,
                           on_cell=lambda done, total, row: setattr(self.progress, "value", done))
        finally:
            self.train_button.disabled = False
        self.result = self.result.merge(new)
        trained = new.trained_now
        self.train_status.value = (f"done: {trained} trained, {len(new) - trained} from the cache "
                                   f"({new.training_seconds:.1f} s of training)")
        self._refresh_options()
        self._update_heatmap()
        if a > 0:
            self.select(temperature=t, alpha=a)
        else:
            self.timed(self.update)
        return new


def _set_options(control: widgets.ValueWidget, options: list) -> None:
    """Replace a selection widget's options, keeping its value when it is still offered."""
    old = control.value
    values = [v for _, v in options]
    control.options = options
    if old in values:
        control.value = old
    elif values:
        control.value = values[0]


def _closest(control: widgets.ValueWidget, wanted: float, argument: str) -> float:
    values = [v for _, v in control.options]
    for v in values:
        if math.isclose(v, wanted, rel_tol=1e-6):
            return v
    raise ValueError(f"{argument}={wanted:g} is not in the grid; choose one of {[_fmt(v) for v in values]}")


# --- labkd bench ---------------------------------------------------------------------------------


def _synthetic_result(temperatures=(1, 2, 3, 4, 8, 20), alphas=(0.5, 0.9, 1.0), seeds=3, epochs=10) -> SweepResult:
    """A result the size of the lesson's full grid, with made-up histories (no training)."""
    from labkd.sweeps import STUDENTS, SweepRow

    rng = np.random.default_rng(0)

    def row(student: str, t: float | None, a: float, seed: int, scale: bool = True) -> SweepRow:
        acc = 0.9 + 0.05 * (1 - np.exp(-np.arange(1, epochs + 1) / 3)) + rng.normal(0, 0.002, epochs)
        history = [{"epoch": e + 1, "loss": 1.0, "train_acc": float(acc[e]), "val_acc": float(acc[e]),
                    "test_acc": float(acc[e]), "seconds": float(e)} for e in range(epochs)]
        return SweepRow(student, t, a, seed, scale, history, 10_000, 5.0, True, "synthetic")

    rows = []
    for student in STUDENTS:
        for seed in range(seeds):
            rows.append(row(student, None, 0.0, seed))
            rows += [row(student, t, a, seed) for t in temperatures for a in alphas]
    rows += [row("800-800", t, 0.9, seed, False) for t in temperatures for seed in range(seeds)]
    return SweepResult(rows, dict(STUDENTS))


def benchmark_cases() -> dict:
    """Panel callbacks for ``labkd bench``, on a synthetic result the size of the full lesson's grid."""
    panel = SweepPanel(_synthetic_result())
    temps = [v for _, v in panel.temperature.options]
    state = {"i": 0}

    def next_temperature() -> None:
        state["i"] += 1
        panel.temperature.value = temps[state["i"] % len(temps)]

    def next_student() -> None:  # also redraws the heatmap
        panel.student.value = "30-30" if panel.student.value == "800-800" else "800-800"

    def toggle_scaling() -> None:
        panel.student.value = "800-800"
        panel.scale.value = not panel.scale.value

    return {"temperature": next_temperature, "student": next_student, "t2_scaling": toggle_scaling}
