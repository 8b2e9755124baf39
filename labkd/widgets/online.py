"""Panels and figures of lesson 10 (online and self-distillation).

>>> MutualPanel(rows)        # a checkbox per student: mutual-learning and independent curves
>>> BornAgainPanel(ban)      # a generation slider: accuracy per generation and the ensemble so far

Both only re-read precomputed results: histories for the first, test logits of every generation
for the second (the ensemble of generations 1..g is one softmax average, a few milliseconds).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from labkd.online import INDEPENDENT, MUTUAL, BornAgain, generation_ensembles
from labkd.teacher_studies import summarize
from labkd.widgets import Panel, figure_widget

COLOURS = {MUTUAL: ["#1f77b4", "#17becf", "#9467bd", "#2ca02c"], INDEPENDENT: ["#d62728", "#ff7f0e", "#8c564b", "#e377c2"]}


def _label(method: str, k: int) -> str:
    return f"{method} student {k}"


class MutualPanel(Panel):
    """Test accuracy per epoch of the students of one repeat: a checkbox per student (mutual
    learning: solid; the same seed trained alone: dashed). Callbacks: :meth:`update`,
    :meth:`select` (repeat and which students are shown)."""

    def __init__(self, rows: Sequence[Mapping], metric: str = "test_acc") -> None:
        rows = list(rows)
        if not rows or any("history" not in r for r in rows):
            raise ValueError("rows must be the non-empty result of labkd.online.mutual_vs_independent")
        if metric not in rows[0]["history"][0]:
            raise ValueError(f"metric={metric!r} is not in the histories; try 'test_acc' or 'val_acc'")
        self.rows, self.metric = rows, metric
        self.repeats = sorted({r["repeat"] for r in rows})
        self.n_models = 1 + max(r["model"] for r in rows)
        self.labels = [_label(m, k) for m in (MUTUAL, INDEPENDENT) for k in range(self.n_models)]
        self.last_update_ms = 0.0
        style = {"description_width": "initial"}
        self.repeat = widgets.Dropdown(options=[(f"repeat {r} (seeds {self._seeds(r)})", r) for r in self.repeats],
                                       value=self.repeats[0], description="cohort", style=style,
                                       layout=widgets.Layout(width="320px"))
        self.boxes = {label: widgets.Checkbox(value=True, description=label, indent=False,
                                              layout=widgets.Layout(width="210px")) for label in self.labels}
        self.status = widgets.HTML()
        fig = go.Figure()
        for method in (MUTUAL, INDEPENDENT):
            for k in range(self.n_models):
                fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name=_label(method, k),
                                         line=dict(color=COLOURS[method][k % 4], dash=None if method == MUTUAL else "dash")))
        fig.update_layout(xaxis_title="epoch", yaxis_title=metric.replace("_", " "), yaxis_tickformat=".1%", height=400,
                          margin=dict(l=60, r=20, t=30, b=40), legend=dict(orientation="h", y=-0.2))
        self.figure = figure_widget(fig)
        self.figure.add_class("labkd-mutual-plot")
        self.repeat.observe(self.on_change, names="value")
        for box in self.boxes.values():
            box.observe(self.on_change, names="value")
        self.widget = widgets.VBox([self.repeat, widgets.HBox(list(self.boxes.values()),
                                                              layout=widgets.Layout(flex_flow="row wrap")),
                                    self.status, self.figure])
        self.widget.add_class("labkd-mutual-panel")
        self.timed(self.update)

    def _seeds(self, repeat: int) -> str:
        return ", ".join(str(s) for s in sorted({r["seed"] for r in self.rows if r["repeat"] == repeat}))

    def select(self, repeat: int | None = None, shown: Sequence[str] | None = None) -> None:
        """Choose the repeat and (optionally) which of :attr:`labels` are ticked; redraw once."""
        if repeat is not None and repeat not in self.repeats:
            raise ValueError(f"repeat={repeat!r} is not in the rows; choose one of {self.repeats}")
        unknown = [s for s in (shown or []) if s not in self.boxes]
        if unknown:
            raise ValueError(f"unknown students {unknown}; choose from {self.labels}")
        self._hold = True
        try:
            if repeat is not None:
                self.repeat.value = repeat
            if shown is not None:
                for label, box in self.boxes.items():
                    box.value = label in shown
        finally:
            self._hold = False
        self.timed(self.update)

    def on_change(self, change: dict | None = None) -> None:
        if not getattr(self, "_hold", False):
            super().on_change(change)

    def update(self) -> None:
        """Refill the ticked students' curves for the chosen repeat (hide the others)."""
        mine = {(_label(r["method"], r["model"])): r for r in self.rows if r["repeat"] == self.repeat.value}
        with self.figure.batch_update():
            for trace, label in zip(self.figure.data, self.labels, strict=True):
                r = mine.get(label)
                show = self.boxes[label].value and r is not None
                trace.visible = True if show else False
                if r is not None:
                    trace.x = [h["epoch"] for h in r["history"]]
                    trace.y = [h[self.metric] for h in r["history"]]
        parts = []
        for method in (MUTUAL, INDEPENDENT):
            accs = [mine[_label(method, k)]["test_acc"] for k in range(self.n_models) if _label(method, k) in mine]
            agree = [mine[_label(method, k)]["agreement"] for k in range(self.n_models) if _label(method, k) in mine]
            if accs:
                parts.append(f"{method}: final test accuracy {np.mean(accs):.2%} (mean of {len(accs)}), students agree "
                             f"with each other on {np.mean(agree):.2%} of test images")
        self.status.value = " · ".join(html.escape(p) for p in parts)


class BornAgainPanel(Panel):
    """A generation slider: test accuracy of every generation (mean ± std over seeds, the chosen
    one highlighted) and of the ensemble of generations 1..g. Callbacks: :meth:`update`,
    :meth:`select`."""

    def __init__(self, ban: BornAgain) -> None:
        if not isinstance(ban, BornAgain) or not ban.trained:
            raise ValueError("ban must be a non-empty BornAgain result (from labkd.online.born_again)")
        self.ban = ban
        self.last_update_ms = 0.0
        g_max = ban.generations
        stats = {s["generation"]: s for s in summarize(ban.rows, ["generation"])}
        self.gens = list(range(g_max + 1))
        self.mean = np.array([stats[g]["mean"] for g in self.gens])
        self.std = np.array([stats[g]["std"] for g in self.gens])
        # the ensembles of generations 1..g never change: compute them once (the slider only picks)
        ens = summarize(generation_ensembles(ban), ["generation"]) if g_max >= 1 else []
        self.ensemble = [e["mean"] for e in sorted(ens, key=lambda e: e["generation"])]
        self.generation = widgets.IntSlider(value=g_max, min=0, max=g_max, step=1, description="generation",
                                            continuous_update=True, style={"description_width": "initial"},
                                            layout=widgets.Layout(width="380px"))
        self.status = widgets.HTML()
        fig = go.Figure([
            go.Bar(x=self.gens, y=self.mean, error_y=dict(type="data", array=self.std, visible=True), name="generation",
                   marker_color=["#1f77b4"] * len(self.gens), hovertemplate="generation %{x}: %{y:.2%}<extra></extra>"),
            go.Scatter(x=[], y=[], mode="lines+markers", name="ensemble of generations 1..g",
                       line=dict(color="#2ca02c"), hovertemplate="ensemble 1..%{x}: %{y:.2%}<extra></extra>"),
        ])
        lo = float(np.min(self.mean - self.std)) - 0.01
        fig.update_layout(xaxis_title="generation (0: labels only)", yaxis_title="test accuracy", yaxis_tickformat=".1%",
                          yaxis_range=[max(0.0, lo), min(1.0, float(np.max(self.mean + self.std)) + 0.01)],
                          height=380, margin=dict(l=60, r=20, t=30, b=40), legend=dict(orientation="h", y=-0.25),
                          xaxis=dict(tickmode="array", tickvals=self.gens))
        self.figure = figure_widget(fig)
        self.figure.add_class("labkd-born-again-plot")
        self.generation.observe(self.on_change, names="value")
        self.widget = widgets.VBox([self.generation, self.status, self.figure])
        self.widget.add_class("labkd-born-again-panel")
        self.timed(self.update)

    def select(self, generation: int) -> None:
        if not 0 <= int(generation) <= self.ban.generations:
            raise ValueError(f"generation must be in 0..{self.ban.generations}, got {generation!r}")
        self.generation.value = int(generation)

    def ensemble_curve(self, upto: int) -> list[float]:
        """Mean over seeds of the ensemble accuracy of generations 1..g, for g = 1..upto."""
        return self.ensemble[:upto]

    def update(self) -> None:
        g = self.generation.value
        curve = self.ensemble_curve(g)
        with self.figure.batch_update():
            self.figure.data[0].marker.color = ["#ff7f0e" if i == g else "#1f77b4" for i in self.gens]
            self.figure.data[1].x = list(range(1, g + 1))
            self.figure.data[1].y = curve
        agree = [r["agreement_prev"] for r in self.ban.rows if r["generation"] == g and r["agreement_prev"] is not None]
        text = f"<b>generation {g}</b>: test accuracy {self.mean[g]:.2%}"
        text += f" ± {self.std[g] * 100:.2f}" if len(self.ban.seeds) > 1 else ""
        text += f" (generation 0: {self.mean[0]:.2%})"
        if agree:
            text += f" · agrees with generation {g - 1} on {np.mean(agree):.2%} of test images"
        if curve:
            text += f" · ensemble of generations 1..{g}: <b>{curve[-1]:.2%}</b>"
        self.status.value = text + f" <i>({len(self.ban.seeds)} seed{'s' if len(self.ban.seeds) > 1 else ''})</i>"


def mutual_figure(rows: Sequence[Mapping]) -> go.Figure:
    """Final test accuracy of every student (one dot per seed), mutual against independent, with the means."""
    fig = go.Figure()
    for i, method in enumerate((MUTUAL, INDEPENDENT)):
        mine = [r for r in rows if r["method"] == method]
        fig.add_trace(go.Box(y=[r["test_acc"] for r in mine], x=[method] * len(mine), name=method, boxpoints="all",
                             jitter=0.3, pointpos=0, marker_color=COLOURS[method][0], boxmean=True,
                             text=[f"seed {r['seed']}" for r in mine], hovertemplate="%{text}: %{y:.2%}<extra></extra>"))
    fig.update_layout(yaxis_title="final test accuracy", yaxis_tickformat=".1%", height=360, showlegend=False,
                      margin=dict(l=60, r=20, t=30, b=40))
    return fig


def born_again_figure(ban: BornAgain) -> go.Figure:
    """Test accuracy per generation, one line per seed, with the ensemble of generations 1..g."""
    fig = make_subplots(rows=1, cols=1)
    for s in ban.seeds:
        mine = [r for r in ban.rows if r["seed"] == s]
        fig.add_trace(go.Scatter(x=[r["generation"] for r in mine], y=[r["test_acc"] for r in mine],
                                 mode="lines+markers", name=f"seed {s}"))
    ens = generation_ensembles(ban)
    for s in ban.seeds:
        mine = [r for r in ens if r["seed"] == s]
        fig.add_trace(go.Scatter(x=[r["generation"] for r in mine], y=[r["test_acc"] for r in mine], mode="lines",
                                 line=dict(dash="dot"), name=f"ensemble 1..g, seed {s}"))
    fig.update_layout(xaxis_title="generation (0: labels only)", yaxis_title="test accuracy", yaxis_tickformat=".1%",
                      height=380, margin=dict(l=60, r=20, t=30, b=40), xaxis=dict(dtick=1))
    return fig


# --- labkd bench ---------------------------------------------------------------------------------


def _synthetic_ban(generations: int = 4, seeds: int = 3, n: int = 10000) -> BornAgain:
    """Generations with made-up test logits the size of the full lesson's (no training)."""
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 10, (n,), generator=g)
    ban = BornAgain(test_targets=targets)
    for s in range(seeds):
        logits = torch.randn(generations + 1, n, 10, generator=g)
        logits[:, torch.arange(n), targets] += 3
        ban.test_logits[s] = logits
        ban.trained[s] = [None] * (generations + 1)  # type: ignore[list-item]
        for gen in range(generations + 1):
            acc = float((logits[gen].argmax(1) == targets).float().mean())
            ban.rows.append({"seed": s, "generation": gen, "test_acc": acc, "val_acc": acc,
                             "agreement_prev": None if gen == 0 else 0.9, "init_norm": 1.0})
    return ban


def _synthetic_rows(n_models: int = 2, repeats: int = 3, epochs: int = 15) -> list[dict]:
    rows = []
    for r in range(repeats):
        for method in (MUTUAL, INDEPENDENT):
            for k in range(n_models):
                h = [{"epoch": e + 1, "test_acc": 0.9 + 0.005 * e, "val_acc": 0.9} for e in range(epochs)]
                rows.append({"method": method, "repeat": r, "model": k, "seed": r * n_models + k,
                             "test_acc": h[-1]["test_acc"], "agreement": 0.97, "history": h})
    return rows


def benchmark_cases() -> dict:
    """Panel callbacks for ``labkd bench``: the generation slider (ensembles over 10,000 test
    images) and a student checkbox, on synthetic results the size of the full lesson's."""
    ban_panel = BornAgainPanel(_synthetic_ban())
    mutual_panel = MutualPanel(_synthetic_rows())
    state = {"i": 0}

    def next_generation() -> None:
        state["i"] += 1
        ban_panel.generation.value = state["i"] % (ban_panel.ban.generations + 1)

    def toggle_student() -> None:
        box = mutual_panel.boxes[mutual_panel.labels[0]]
        box.value = not box.value

    return {"generation": next_generation, "student_checkbox": toggle_student}
