"""Figures and panel of lesson 04 (teacher size): which teacher size suits which student?

>>> teacher_size_figure(family.rows, rows, "784-10-10-10")   # accuracy against teacher size
>>> mimicry_figure(teacher_size.mimicry(rows, family))       # the capacity gap, measured
>>> assistant_figure(ta_rows)                                # direct KD or via an assistant

>>> panel = TeacherSizePanel(data, family, grid_rows, kd_config(fast), student_widths=[10, 30, 100, 300])
>>> panel                          # drop-down, Train button, progress bar, two-panel figure

Choosing a student that is already in the precomputed grid only redraws (summaries of a few
dozen rows: a few milliseconds). A student size that is not in the grid yet shows the teachers
alone and enables the Train button, which distils it from every teacher with every seed
(cached :func:`labkd.train_model` calls) while a progress bar counts the runs.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkd.data import Data
from labkd.teacher_size import TeacherFamily, distil_grid
from labkd.teacher_studies import (
    BASELINE, COLOURS, check_config, input_size, mlp_hidden, mlp_name, mlp_num_parameters, summarize,
)
from labkd.train import TrainConfig
from labkd.widgets import Panel, cycle_values, figure_widget


class TeacherSizePanel(Panel):
    """Teacher accuracy and distilled-student accuracy against teacher size, for one student size.

    Args:
        data: the transfer set the grid was trained on.
        family: the trained teachers (:func:`labkd.teacher_studies.train_teacher_family`).
        rows: :func:`labkd.teacher_studies.distil_grid` rows (may cover only some students).
        config: the distillation recipe used for ``rows`` (new students are trained with it).
        student_widths: the widths offered in the drop-down (each an MLP of ``depth`` layers).
        metric: what the student curve shows (``"val_acc"``: the split regimes are chosen on).
        seeds: the seeds to draw and train (default: all of the family's).
    Only the rows distilled at the temperature and alpha of ``config`` are drawn.
    """

    def __init__(self, data: Data, family: TeacherFamily, rows: Sequence[Mapping], config: TrainConfig,
                 student_widths: Sequence[int], depth: int = 2, metric: str = "val_acc",
                 seeds: Sequence[int] | None = None) -> None:
        check_config(config, "config", loss="distillation")
        if not family.teachers:
            raise ValueError("family has no teachers; train them with train_teacher_family first")
        widths = [int(w) for w in student_widths]
        if not widths:
            raise ValueError("student_widths is empty; give the student widths to offer, e.g. [10, 30, 100]")
        self.hiddens = {w: mlp_hidden(w, depth) for w in widths}  # validates widths and depth
        self.data, self.family, self.config = data, family, config
        self.rows = [r for r in rows if r["teacher"] == BASELINE
                     or (r.get("temperature"), r.get("alpha")) == (config.temperature, config.alpha)]
        self.seeds = family.seeds if seeds is None else [int(v) for v in seeds]
        self.metric = metric

        self.picker = widgets.Dropdown(options=self._options(), value=self._first_trained(widths),
                                       description="student", style={"description_width": "initial"},
                                       layout=widgets.Layout(width="360px"))
        self.picker.add_class("labkd-student-size")
        self.train_button = widgets.Button(description="Train", icon="play", button_style="warning",
                                           layout=widgets.Layout(width="260px"))
        self.train_button.add_class("labkd-train-button")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="runs",
                                            layout=widgets.Layout(width="300px", visibility="hidden"))
        self.status = widgets.HTML()
        self.status.add_class("labkd-status")

        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                            subplot_titles=("teacher test accuracy", "student"))
        self.figure = figure_widget(fig)
        _size_traces(self.figure)
        self._drawn = False
        self.figure.add_class("labkd-teacher-size-plot")
        self.update()

        self.picker.observe(self.on_change, names="value")
        self.train_button.on_click(lambda _button: self.train())
        controls = widgets.HBox([self.picker, self.train_button, self.progress],
                                layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        self.widget = widgets.VBox([controls, self.status, self.figure])
        self.widget.add_class("labkd-teacher-size-panel")

    # -- state -------------------------------------------------------------------------------

    @property
    def width(self) -> int:
        return int(self.picker.value)

    @property
    def student(self) -> str:
        return mlp_name(self.hiddens[self.width], self.data)

    def missing_runs(self, width: int | None = None) -> int:
        """Training runs still needed for a student width: one per (teacher or baseline, seed)."""
        name = mlp_name(self.hiddens[self.width if width is None else int(width)], self.data)
        have = {(r["teacher"], r["seed"]) for r in self.rows if r["student"] == name}
        teachers = [mlp_name(h, self.data) for h in self.family.hidden_sizes] + [BASELINE]
        return sum((t, s) not in have for t in teachers for s in self.seeds)

    def _options(self) -> list[tuple[str, int]]:
        out = []
        for w, hidden in self.hiddens.items():
            params = mlp_num_parameters(input_size(self.data), hidden, self.data.num_classes)
            mark = "" if self.missing_runs(w) == 0 else " (not trained yet)"
            out.append((f"{mlp_name(hidden, self.data)}: {params:,} params{mark}", w))
        return out

    def _first_trained(self, widths: Sequence[int]) -> int:
        for w in widths:
            if self.missing_runs(w) == 0:
                return w
        return widths[0]

    # -- callbacks ---------------------------------------------------------------------------

    def select(self, width: int) -> None:
        """Choose a student width (one of ``student_widths``); the figure follows."""
        if int(width) not in self.hiddens:
            raise ValueError(f"width={width!r} is not offered; choose one of {list(self.hiddens)}")
        self.picker.value = int(width)

    def update(self) -> None:
        """Summarize the rows of the chosen student and refill the figure's traces in place."""
        curves = size_curves(self.family.rows, self.rows, self.student, self.metric)
        fill_size_figure(self.figure, curves, self.student, teachers=not self._drawn, metric=self.metric)
        self._drawn = True
        missing = self.missing_runs()
        self.train_button.disabled = missing == 0
        self.train_button.description = "all runs trained" if missing == 0 else f"Train {missing} runs (cached)"
        self.status.value = self._status(curves, missing)

    def _status(self, curves: Mapping, missing: int) -> str:
        if missing and not curves["student_x"]:
            return (f"<b>{html.escape(self.student)}</b> is not trained yet: press <i>Train</i> to distil it from "
                    f"{len(self.family.hidden_sizes)} teachers with {len(self.seeds)} seed(s), plus the labels-only "
                    f"baseline ({missing} runs; each is cached).")
        best = curves["best"]
        largest = curves["student_names"][-1] if curves["student_names"] else None
        text = f"Best teacher for <b>{html.escape(self.student)}</b>: {html.escape(best[2])} ({best[1]:.2%})"
        if largest is not None and largest != best[2]:
            text += f"; the largest teacher, {html.escape(largest)}, gives {curves['student_y'][-1]:.2%}"
        if curves["baseline"] is not None:
            text += f"; labels only: {curves['baseline'][0]:.2%}"
        n = min(curves["student_n"]) if curves["student_n"] else 0
        text += f" · {n} seed(s) per point" + (" — one seed: differences may be noise." if n < 2 else ".")
        if missing:
            text += f" {missing} runs are missing: press Train."
        return text

    def _on_run(self, done: int, total: int) -> None:
        self.progress.max = total
        self.progress.value = done

    def train(self) -> None:
        """Distil the chosen student from every teacher and seed (cached), then redraw."""
        if self.missing_runs() == 0:
            return
        hidden = self.hiddens[self.width]
        self.train_button.disabled = True
        self.progress.layout.visibility = "visible"
        self.status.value = f"training {html.escape(self.student)} …"
        try:
            new = distil_grid(self.data, self.family, [hidden], self.config, seeds=self.seeds,
                              progress=False, on_run=self._on_run)
        finally:
            self.progress.layout.visibility = "hidden"
        name = self.student
        self.rows = [r for r in self.rows if r["student"] != name] + new
        value = self.width
        self.picker.unobserve(self.on_change, names="value")
        self.picker.options = self._options()
        self.picker.value = value
        self.picker.observe(self.on_change, names="value")
        self.timed(self.update)


# --------------------------------------------------------------------------------------------
# Figures


def size_curves(family_rows: Sequence[Mapping], rows: Sequence[Mapping], student: str, metric: str = "val_acc") -> dict:
    """The numbers :func:`teacher_size_figure` and the widget draw for one student: teacher test
    accuracy and student ``metric`` (mean, std) against teacher parameters, the baseline and the
    best teacher. ``rows`` should hold one setting (T, alpha) per teacher."""
    teachers = sorted(summarize(family_rows, ["teacher", "params"]), key=lambda r: r["params"])
    mine = [r for r in rows if r["student"] == student]
    kd = sorted((r for r in summarize(mine, ["teacher", "teacher_params"], metric) if r["teacher"] != BASELINE),
                key=lambda r: r["teacher_params"]) if mine else []
    base = [r for r in summarize(mine, ["teacher"], metric) if r["teacher"] == BASELINE] if mine else []
    best = max(kd, key=lambda r: r["mean"]) if kd else None
    return {
        "teacher_x": [r["params"] for r in teachers], "teacher_y": [r["mean"] for r in teachers],
        "teacher_err": [r["std"] for r in teachers], "teacher_names": [r["teacher"] for r in teachers],
        "student_x": [r["teacher_params"] for r in kd], "student_y": [r["mean"] for r in kd],
        "student_err": [r["std"] for r in kd], "student_names": [r["teacher"] for r in kd],
        "student_n": [r["n"] for r in kd],
        "baseline": (base[0]["mean"], base[0]["std"]) if base else None,
        "best": None if best is None else (best["teacher_params"], best["mean"], best["teacher"]),
    }


def teacher_size_figure(family_rows: Sequence[Mapping], rows: Sequence[Mapping], student: str,
                        metric: str = "val_acc") -> go.Figure:
    """Two panels sharing a log x-axis (teacher parameters): the teachers' test accuracy on top,
    the distilled student's ``metric`` below (mean ± std over seeds), with the labels-only
    baseline as a dashed line and band and the best teacher starred. ``rows``: one (T, alpha)
    per teacher (:func:`labkd.teacher_size.chosen_rows`)."""
    fig = go.Figure(make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                                  subplot_titles=("teacher test accuracy", f"student {student}: {_metric_name(metric)}")))
    _size_traces(fig)
    fill_size_figure(fig, size_curves(family_rows, rows, student, metric), student, metric=metric)
    return fig


def _metric_name(metric: str) -> str:
    return {"val_acc": "validation accuracy", "test_acc": "test accuracy"}.get(metric, metric)


def _size_traces(fig: go.Figure) -> None:
    """Add the seven traces (in a fixed order) that :func:`fill_size_figure` updates in place:
    teachers, baseline band (low, high), baseline, students, best teacher, placeholder text."""
    hover = "%{text}<br>%{x:,} params<br>%{y:.2%}<extra></extra>"
    fig.add_trace(go.Scatter(name="teacher", mode="lines+markers", marker_color=COLOURS["teacher"],
                             hovertemplate=hover, error_y=dict(type="data", visible=True)), row=1, col=1)
    fig.add_trace(go.Scatter(name="labels-only band", mode="lines", line=dict(width=0), showlegend=False,
                             hoverinfo="skip"), row=2, col=1)
    fig.add_trace(go.Scatter(name="student, labels only (± std)", mode="lines", fill="tonexty",
                             fillcolor="rgba(214,39,40,0.12)", line=dict(width=0), hoverinfo="skip"), row=2, col=1)
    fig.add_trace(go.Scatter(name="student, labels only", mode="lines", line=dict(color=COLOURS["baseline"], dash="dash"),
                             hovertemplate="labels only: %{y:.2%}<extra></extra>"), row=2, col=1)
    fig.add_trace(go.Scatter(name="distilled student", mode="lines+markers", marker_color=COLOURS["student"],
                             hovertemplate=hover, error_y=dict(type="data", visible=True)), row=2, col=1)
    fig.add_trace(go.Scatter(name="best teacher for this student", mode="markers",
                             marker=dict(symbol="star", size=16, color=COLOURS["best"]),
                             hovertemplate="best: %{text}<br>%{y:.2%}<extra></extra>"), row=2, col=1)
    fig.add_trace(go.Scatter(name="placeholder", mode="text", showlegend=False, hoverinfo="skip",
                             textfont=dict(size=15, color="#888")), row=2, col=1)
    fig.update_xaxes(type="log", title_text="teacher parameters (log scale)", row=2, col=1)
    fig.update_xaxes(type="log", row=1, col=1)
    fig.update_yaxes(tickformat=".1%")
    fig.update_layout(height=560, margin=dict(l=60, r=20, t=40, b=50), legend=dict(orientation="h", y=-0.15))


def fill_size_figure(fig: go.Figure, curves: Mapping, student: str, teachers: bool = True, metric: str = "val_acc") -> None:
    """Put ``curves`` (from :func:`size_curves`) into the traces of ``fig`` in place.

    Plain attribute assignments inside one batch update: the panel redraws in a few
    milliseconds. ``teachers=False`` leaves the (unchanging) teacher curve alone."""
    xs = curves["teacher_x"] + curves["student_x"]
    span = [min(xs) / 1.5, max(xs) * 1.5] if xs else [1, 10]
    base = curves["baseline"]
    best = curves["best"]
    with _batch(fig):
        t = fig.data
        if teachers:
            t[0].x, t[0].y, t[0].text = curves["teacher_x"], curves["teacher_y"], curves["teacher_names"]
            t[0].error_y.array = curves["teacher_err"]
        m, s = base if base is not None else (None, None)
        t[1].x, t[1].y = (span, [m - s] * 2) if base is not None else ([], [])
        t[2].x, t[2].y = (span, [m + s] * 2) if base is not None else ([], [])
        t[3].x, t[3].y = (span, [m] * 2) if base is not None else ([], [])
        t[4].x, t[4].y, t[4].text = curves["student_x"], curves["student_y"], curves["student_names"]
        t[4].error_y.array = curves["student_err"]
        t[5].x, t[5].y, t[5].text = ([best[0]], [best[1]], [best[2]]) if best is not None else ([], [], [])
        empty = not curves["student_x"] and base is None
        middle = float(np.sqrt(span[0] * span[1]))
        t[6].x, t[6].y = ([middle], [0.5]) if empty else ([], [])
        t[6].text = [f"{student}: not trained yet — press Train"] if empty else []
        fig.layout.annotations[1].text = f"student {student}: {_metric_name(metric)}"


class _batch:
    """``fig.batch_update()`` for a FigureWidget, a no-op context for a plain Figure."""

    def __init__(self, fig: go.Figure) -> None:
        self.ctx = fig.batch_update() if isinstance(fig, go.FigureWidget) else None

    def __enter__(self):
        return self.ctx.__enter__() if self.ctx is not None else None

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc) if self.ctx is not None else False



def assistant_figure(rows: Sequence[Mapping]) -> go.Figure:
    """Student test accuracy per route (mean ± std over seeds, one dot per seed)."""
    stats = summarize(rows, ["route"])
    fig = go.Figure()
    colours = [COLOURS["assistant"] if "TA" in s["route"] else COLOURS["student"] for s in stats]
    fig.add_trace(go.Bar(x=[s["route"] for s in stats], y=[s["mean"] for s in stats], marker_color=colours,
                         error_y=dict(type="data", array=[s["std"] for s in stats], visible=True),
                         name="mean ± std", hovertemplate="%{x}<br>%{y:.2%}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[s["route"] for s in stats for _ in s["values"]],
                             y=[v for s in stats for v in s["values"]], mode="markers", name="one seed",
                             marker=dict(color="black", size=6)))
    low = min(v for s in stats for v in s["values"])
    high = max(v for s in stats for v in s["values"])
    pad = max(0.002, (high - low) * 0.5)
    fig.update_yaxes(range=[low - pad, high + pad], tickformat=".1%", title_text="student test accuracy")
    student = rows[0]["student"] if rows else ""
    fig.update_layout(title=f"Student {student}: direct distillation or through a teacher assistant",
                      height=420, showlegend=True)
    return fig


def mimicry_figure(mimic: Sequence[Mapping], temperature: float = 4.0) -> go.Figure:
    """The capacity gap, measured (rows of :func:`labkd.teacher_size.mimicry`): against teacher
    parameters, the entropy of the teacher's soft targets on the transfer set (bits) and how far
    the student stays from its teacher there, KL(teacher || student) at T (nats)."""
    if not mimic:
        raise ValueError("mimic is empty: compute it with labkd.teacher_size.mimicry")
    x = [m["params"] for m in mimic]
    names = [m["teacher"] for m in mimic]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=(f"teacher soft-target entropy on the transfer set, T={temperature:g} (bits)",
                                        f"student's KL(teacher ‖ student) on the transfer set, T={temperature:g} (nats)"))
    fig.add_trace(go.Scatter(x=x, y=[m["entropy_bits"] for m in mimic], text=names, mode="lines+markers",
                             name="teacher entropy", marker_color=COLOURS["teacher"],
                             error_y=dict(type="data", array=[m["entropy_std"] for m in mimic], visible=True)), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=[m["kl"] for m in mimic], text=names, mode="lines+markers",
                             name="student KL to its teacher", marker_color=COLOURS["student"],
                             error_y=dict(type="data", array=[m["kl_std"] for m in mimic], visible=True)), row=1, col=2)
    fig.update_xaxes(type="log", title_text="teacher parameters (log scale)")
    fig.update_layout(height=380, margin=dict(l=50, r=20, t=50, b=50), showlegend=False)
    return fig


def benchmark_cases() -> dict:
    """The student drop-down for ``labkd bench``, on made-up rows the size of lesson 04's full grid
    (4 teachers, 3 students, 3 seeds; no training)."""
    import torch

    from labkd.data import Split

    tiny = Split(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))
    data = Data("synthetic", tiny, tiny, tiny, [str(i) for i in range(10)], 0.0, 1.0)
    rng = np.random.default_rng(0)
    teachers, students, seeds = [32, 128, 512, 1200], [10, 30, 100], [0, 1, 2]
    family = TeacherFamily(data)
    rows = []
    for w in teachers:
        hidden = mlp_hidden(w)
        for s in seeds:
            family.teachers[(hidden, s)] = None  # only the keys are read without training
            family.rows.append({"teacher": mlp_name(hidden, data), "hidden": hidden, "seed": s,
                                "params": mlp_num_parameters(784, hidden, 10), "test_acc": 0.97 + rng.normal(0, 0.002)})
    for sw in students:
        for t in [*teachers, None]:
            for s in seeds:
                th = None if t is None else mlp_hidden(t)
                acc = 0.95 + rng.normal(0, 0.003)
                rows.append({"student": mlp_name(mlp_hidden(sw), data), "seed": s, "test_acc": acc, "val_acc": acc,
                             "temperature": None if t is None else 4.0, "alpha": None if t is None else 0.9,
                             "teacher": BASELINE if th is None else mlp_name(th, data), "teacher_hidden": th,
                             "teacher_params": None if th is None else mlp_num_parameters(784, th, 10)})
    panel = TeacherSizePanel(data, family, rows, TrainConfig(loss="distillation"), students)
    return {"student": cycle_values(panel.picker, students)}
