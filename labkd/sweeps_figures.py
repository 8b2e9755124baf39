"""Lesson 02's static figures of a temperature grid (:mod:`labkd.sweeps`): accuracy against T,
the (alpha, T) heatmap, each student's preferred temperature, learning curves and the size of the
soft-target gradient. The lesson's panel is :class:`labkd.widgets.sweeps.SweepPanel`.

>>> accuracy_vs_temperature_figure(result, "800-800")
>>> learning_curves_figure(result, "800-800", {"T=20": dict(temperature=20, alpha=0.9)})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkd import plots
from labkd.sweeps import SweepResult, format_temperature, mean_curve
from labkd.sweeps_findings import best_temperature


def gradient_norms_figure(norms: Mapping[str, Sequence[float]], temperatures: Sequence[float]) -> go.Figure:
    """Log-log plot of :func:`soft_gradient_norms` against T."""
    fig = go.Figure()
    for name, values in norms.items():
        fig.add_trace(go.Scatter(x=list(temperatures), y=list(values), mode="lines+markers", name=name))
    fig.update_xaxes(type="log", title="temperature T", tickvals=list(temperatures))
    fig.update_yaxes(type="log", title="‖∂L_soft/∂z‖ per example")
    fig.update_layout(title="Soft-target gradient size at the start of training", height=380)
    return fig


# --------------------------------------------------------------------------------------------
# Figures


_NAMES = {"test_acc": "test accuracy", "val_acc": "validation accuracy", "train_acc": "training accuracy",
          "test_errors": "test errors", "loss": "training loss"}


def _scale(metric: str, percent: bool) -> tuple[float, str]:
    """(factor, axis title) of ``metric``: accuracies in percent when ``percent``."""
    name = _NAMES.get(metric, metric)
    if percent and metric.endswith("_acc"):
        return 100.0, f"{name} (%)"
    return 1.0, name


_BASELINE_STYLES = (("dash", "grey"), ("dot", "black"), ("dashdot", "#8c564b"))


def _add_baselines(fig: go.Figure, result: SweepResult, student: str, metric: str, k: float,
                   label: str = "", extra: Mapping[str, SweepResult] | None = None,
                   row: int | None = None, col: int | None = None, showlegend: bool = True) -> None:
    """The labels-only student of ``result`` (and of each ``extra`` result, e.g. another learning
    rate) as horizontal lines; the first with a ±std band."""
    sources = [(label, result), *(extra or {}).items()]
    kwargs = {} if row is None else {"row": row, "col": col}
    for i, (name, source) in enumerate(sources):
        if not source.select(student=student, baseline=True):
            continue
        mean, std, n = source.baseline_mean_std(student, metric)
        dash, colour = _BASELINE_STYLES[i % len(_BASELINE_STYLES)]
        fig.add_hline(y=mean * k, line_dash=dash, line_color=colour, **kwargs)
        if i == 0 and std > 0:
            fig.add_hrect(y0=(mean - std) * k, y1=(mean + std) * k, fillcolor=colour, opacity=0.15, line_width=0,
                          **kwargs)
        text = "labels only" + (f", {name}" if name else "") + f" ({n} seed{'s' if n > 1 else ''})"
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(dash=dash, color=colour), name=text,
                                 showlegend=showlegend), **kwargs)


def accuracy_vs_temperature_figure(result: SweepResult, student: str, metric: str = "test_acc",
                                   alphas: Sequence[float] | None = None, scale_by_t2: Sequence[bool] = (True,),
                                   percent: bool = True, title: str | None = None, baseline_label: str = "",
                                   extra_baselines: Mapping[str, SweepResult] | None = None) -> go.Figure:
    """``metric`` against T (log axis), one line per alpha (and T² setting), mean ± std over seeds;
    the labels-only baseline is the dashed line with its ±std band (``extra_baselines``, e.g.
    ``{"lr 0.05": other}``, add more labels-only lines)."""
    if student not in result.students:
        raise ValueError(f"student={student!r} is not in this result; expected one of {result.students}")
    k, y_title = _scale(metric, percent)
    series: dict[str, list[list[float]]] = {}
    temps_all: list[float] = sorted({t for s in scale_by_t2 for t in result.temperatures_of(student, None, s)})
    for scaled in scale_by_t2:
        for a in (alphas if alphas is not None else result.alphas_of(student, scaled)):
            temps = result.temperatures_of(student, a, scaled)
            if not temps:
                continue
            name = f"α = {a:g}" + ("" if scaled else ", without T²")
            series[name] = [[v * k for v in result.values(metric, student=student, temperature=t, alpha=a,
                                                        scale_by_t2=scaled)] for t in temps_all]
    if not series:
        raise ValueError(f"no distilled runs of {student!r} match alphas={alphas}, scale_by_t2={scale_by_t2}")
    # lines_with_error_bars needs a value per x; a missing cell is drawn as a gap.
    fig = plots.lines_with_error_bars(temps_all, {n: [v if v else [float("nan")] for v in per_t]
                                                  for n, per_t in series.items()},
                                      x_title="temperature T", y_title=y_title, log_x=True,
                                      title=title or f"{student} student: {_NAMES.get(metric, metric)} against temperature")
    fig.update_xaxes(tickvals=temps_all, ticktext=[format_temperature(t) for t in temps_all])
    _add_baselines(fig, result, student, metric, k, baseline_label, extra_baselines)
    return fig


def alpha_temperature_heatmap(result: SweepResult, student: str, metric: str = "test_acc",
                              scale_by_t2: bool = True, percent: bool = True) -> go.Figure:
    """Mean ``metric`` over seeds for every (alpha, T) cell; the title gives the labels-only baseline."""
    k, label = _scale(metric, percent)
    temps = result.temperatures_of(student, None, scale_by_t2)
    alphas = result.alphas_of(student, scale_by_t2)
    if not temps or not alphas:
        raise ValueError(f"no distilled runs of {student!r} with scale_by_t2={scale_by_t2} in this result")
    z = np.full((len(alphas), len(temps)), np.nan)
    for i, a in enumerate(alphas):
        for j, t in enumerate(temps):
            values = result.values(metric, student=student, temperature=t, alpha=a, scale_by_t2=scale_by_t2)
            if values:
                z[i, j] = float(np.mean(values)) * k
    title = f"{student}: mean {label} over seeds"
    if result.select(student=student, baseline=True):
        m, s, n = result.baseline_mean_std(student, metric)
        title += f" · labels only {m * k:.2f} ± {s * k:.2f}"
    fig = plots.heatmap(z, [format_temperature(t) for t in temps], [f"{a:g}" for a in alphas], title=title,
                        colorscale="Viridis", x_title="temperature T", y_title="alpha (weight of soft targets)")
    fig.update_yaxes(autorange=True)
    return fig


def temperature_preference_figure(result: SweepResult, alpha: float, students: Sequence[str] | None = None,
                                  metric: str = "test_acc", percent: bool = True, baseline_label: str = "",
                                  extra_baselines: Mapping[str, SweepResult] | None = None) -> go.Figure:
    """One panel per student: ``metric`` against T at ``alpha`` (mean ± std over seeds), the baseline
    band, and a star on the temperature chosen by :func:`best_temperature` (on validation accuracy)."""
    names = list(students) if students is not None else result.students
    k, y_title = _scale(metric, percent)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.08)
    for col, name in enumerate(names, start=1):
        temps = result.temperatures_of(name, alpha)
        if not temps:
            raise ValueError(f"no runs of {name!r} at alpha={alpha}")
        cells = [result.mean_std(metric, student=name, temperature=t, alpha=alpha, scale_by_t2=True) for t in temps]
        fig.add_trace(go.Scatter(x=temps, y=[m * k for m, _, _ in cells], mode="lines+markers", name=f"distilled, α={alpha:g}",
                                 error_y=dict(type="data", array=[s * k for _, s, _ in cells], visible=True),
                                 line=dict(color="#1f77b4"), showlegend=col == 1), row=1, col=col)
        best = best_temperature(result, name, alpha)
        bm = result.mean_std(metric, student=name, temperature=best.temperature, alpha=alpha, scale_by_t2=True)[0]
        fig.add_trace(go.Scatter(x=[best.temperature], y=[bm * k], mode="markers", marker=dict(symbol="star", size=16,
                                 color="#d62728"), name="best T (chosen on validation)", showlegend=col == 1),
                      row=1, col=col)
        _add_baselines(fig, result, name, metric, k, baseline_label, extra_baselines, row=1, col=col,
                       showlegend=col == 1)
        fig.update_xaxes(type="log", tickvals=temps, ticktext=[format_temperature(t) for t in temps], title_text="temperature T",
                         row=1, col=col)
    fig.update_yaxes(title_text=y_title, row=1, col=1)
    fig.update_layout(height=400, title=f"Which temperature does each student prefer? (α = {alpha:g})")
    return fig


def learning_curves_figure(result: SweepResult, student: str, cells: Mapping[str, Mapping], metric: str = "val_acc",
                           baseline: bool = True, percent: bool = True, title: str = "") -> go.Figure:
    """Mean ± std over seeds of ``metric`` per epoch for named cells, e.g.
    ``{"T=20 with T²": dict(temperature=20, alpha=0.9, scale_by_t2=True), ...}``, plus the baseline."""
    k, y_title = _scale(metric, percent)
    named = dict(cells)
    if baseline and result.select(student=student, baseline=True):
        named = {"labels only": {"baseline": True}, **named}
    fig = go.Figure()
    for name, criteria in named.items():
        epochs, mean, std = mean_curve(result, metric, student=student, **criteria)
        fig.add_trace(go.Scatter(x=epochs, y=[m * k for m in mean], mode="lines+markers", name=name,
                                 line=dict(dash="dash") if name == "labels only" else None,
                                 error_y=dict(type="data", array=[s * k for s in std], visible=True)))
    fig.update_layout(title=title or f"{student}: {_NAMES.get(metric, metric)} per epoch", xaxis_title="epoch", yaxis_title=y_title,
                      height=400)
    return fig
