"""Panels and figures of lesson 10 (online and self-distillation).

>>> MutualPanel(rows, data.test.y)   # seed + epoch slider: the cohort's accuracy, agreement and disagreements
>>> BornAgainPanel(ban)              # tick generations: the accuracy of their ensemble, seed by seed

The static figures (:func:`mutual_figure`, :func:`born_again_figure`) show final accuracies. The
panels ask what those cannot: how the two students of a cohort come to agree while they train
(and on which test images they still disagree, epoch by epoch), and which generations are worth
ensembling. Both only re-read stored results: the cohort's test predictions on every evaluated
epoch, and every generation's test logits.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from labkd import stats
from labkd.online import INDEPENDENT, MUTUAL, BornAgain, generation_ensembles
from labkd.widgets import Panel, figure_widget

COLOURS = {"student 0": "#1f77b4", "student 1": "#17becf", "alone": "#d62728", "agreement": "#2ca02c"}
#: How the two students' answers on a test image can relate (the bar chart of :class:`MutualPanel`).
OUTCOMES = ("both right", "only student 0 right", "only student 1 right", "both wrong, same answer",
            "both wrong, different answers")


def outcome_counts(predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Fractions of test images in each of :data:`OUTCOMES` for two students' predictions (2, N)."""
    if predictions.ndim != 2 or predictions.shape[0] < 2 or predictions.shape[1] != len(targets):
        raise ValueError(f"predictions must have shape (K >= 2, {len(targets)}), got {tuple(predictions.shape)}")
    a, b = predictions[0].long(), predictions[1].long()
    y = targets.long().cpu()
    a, b = a.cpu(), b.cpu()
    ra, rb = a == y, b == y
    counts = [ra & rb, ra & ~rb, ~ra & rb, ~ra & ~rb & (a == b), ~ra & ~rb & (a != b)]
    return {name: float(c.float().mean()) for name, c in zip(OUTCOMES, counts, strict=True)}


class _HeldPanel(Panel):
    """A panel whose :meth:`select` sets several controls and redraws once (:meth:`holding`)."""

    _hold = False

    @contextlib.contextmanager
    def holding(self):
        """Set controls inside the block without a redraw per control; redraw once at the end."""
        self._hold = True
        try:
            yield
        finally:
            self._hold = False
        self.timed(self.update)

    def on_change(self, change: dict | None = None) -> None:
        if not self._hold:
            super().on_change(change)


class MutualPanel(_HeldPanel):
    """Pick a seed and move the epoch slider: the test accuracy of the cohort's two students and
    of the same network trained alone, the students' agreement up to that epoch, and how the
    test images split between "both right", "only one right" and "both wrong" at that epoch.
    Callbacks: :meth:`update`, :meth:`select`."""

    def __init__(self, rows: Sequence[Mapping], targets: torch.Tensor) -> None:
        rows = list(rows)
        cohort = [r for r in rows if r.get("method") == MUTUAL]
        if not cohort or any("predictions" not in r for r in cohort):
            raise ValueError("rows must be the non-empty result of labkd.online.mutual_vs_independent")
        if not isinstance(targets, torch.Tensor) or targets.ndim != 1:
            raise TypeError("targets must be the test labels, a 1-D tensor (data.test.y)")
        self.rows, self.targets = rows, targets.cpu()
        self.seeds = sorted({r["seed"] for r in cohort})
        first = next(iter(cohort[0]["predictions"].values()))
        if first.shape[1] != len(targets):
            raise ValueError(f"targets has {len(targets)} labels, the stored predictions cover {first.shape[1]} images")
        self.last_update_ms = 0.0
        epochs = sorted(cohort[0]["predictions"])
        style = {"description_width": "initial"}
        self.seed = widgets.Dropdown(options=self.seeds, value=self.seeds[0], description="seed", style=style,
                                     layout=widgets.Layout(width="160px"))
        self.epoch = widgets.SelectionSlider(options=epochs, value=epochs[-1], description="epoch",
                                             continuous_update=True, style=style, layout=widgets.Layout(width="420px"))
        self.status = widgets.HTML()
        fig = make_subplots(rows=1, cols=2, column_widths=[0.58, 0.42], horizontal_spacing=0.12,
                            subplot_titles=("test accuracy and agreement", "test images at this epoch"))
        for name, dash in (("student 0", None), ("student 1", None), ("alone", "dash"), ("agreement", "dot")):
            label = {"student 0": "mutual student 0", "student 1": "mutual student 1",
                     "alone": "student 0's network trained alone", "agreement": "students agree"}[name]
            fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name=label,
                                     line=dict(color=COLOURS[name], dash=dash)), row=1, col=1)
        fig.add_trace(go.Bar(x=list(OUTCOMES), y=[0] * len(OUTCOMES), name="share of test images", showlegend=False,
                             marker_color=["#2ca02c", "#1f77b4", "#17becf", "#ff7f0e", "#d62728"],
                             hovertemplate="%{x}: %{y:.2%}<extra></extra>"), row=1, col=2)
        fig.update_yaxes(tickformat=".1%", row=1, col=1)
        fig.update_yaxes(tickformat=".1%", type="log", title_text="share (log scale)", row=1, col=2)
        fig.update_xaxes(title_text="epoch", row=1, col=1)
        fig.update_layout(height=430, margin=dict(l=60, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.35),
                          shapes=[dict(type="line", xref="x", yref="paper", x0=0, x1=0, y0=0, y1=1,
                                       line=dict(color="#888", dash="dot"))])
        self.figure = figure_widget(fig)
        self.figure.add_class("labkd-mutual-plot")
        self.seed.observe(self.on_change, names="value")
        self.epoch.observe(self.on_change, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.seed, self.epoch]), self.status, self.figure])
        self.widget.add_class("labkd-mutual-panel")
        self.timed(self.update)

    def _mine(self) -> dict[str, Mapping]:
        s = self.seed.value
        out = {}
        for r in self.rows:
            if r["seed"] == s:
                out["alone" if r["method"] == INDEPENDENT else f"student {r['model']}"] = r
        return out

    @staticmethod
    def _curve(history: Sequence[Mapping], key: str) -> tuple[list[int], list[float]]:
        pts = [(h["epoch"], h[key]) for h in history if h.get(key) is not None and np.isfinite(h[key])]
        return [p[0] for p in pts], [p[1] for p in pts]

    def select(self, seed: int | None = None, epoch: int | None = None) -> None:
        """Choose the seed and/or the epoch (one of the evaluated epochs); redraw once."""
        if seed is not None and seed not in self.seeds:
            raise ValueError(f"seed={seed!r} is not in the rows; choose one of {self.seeds}")
        if epoch is not None and epoch not in self.epoch.options:
            raise ValueError(f"epoch={epoch!r} was not evaluated; choose one of {list(self.epoch.options)}")
        with self.holding():
            if seed is not None:
                self.seed.value = seed
            if epoch is not None:
                self.epoch.value = epoch

    def breakdown(self, epoch: int | None = None) -> dict[str, float]:
        """:func:`outcome_counts` of the chosen seed's students at ``epoch`` (default: the slider's)."""
        epoch = self.epoch.value if epoch is None else epoch
        return outcome_counts(self._mine()["student 0"]["predictions"][epoch], self.targets)

    def update(self) -> None:
        mine, e = self._mine(), self.epoch.value
        parts = {}
        with self.figure.batch_update():
            for trace, name in zip(self.figure.data[:4], ("student 0", "student 1", "alone", "agreement"), strict=True):
                source = mine.get("student 0" if name == "agreement" else name)
                x, y = self._curve(source["history"], "agreement" if name == "agreement" else "test_acc") \
                    if source is not None else ([], [])
                trace.x, trace.y = x, y
                if e in x:
                    parts[name] = y[x.index(e)]
            split = self.breakdown(e)
            self.figure.data[4].y = [max(split[o], 1e-4) for o in OUTCOMES]
            self.figure.layout.shapes[0].x0 = self.figure.layout.shapes[0].x1 = e
        text = [f"<b>epoch {e}</b>"]
        for name in ("student 0", "student 1", "alone"):
            if name in parts:
                text.append(f"{'alone' if name == 'alone' else 'mutual ' + name}: {parts[name]:.2%}")
        if "agreement" in parts:
            text.append(f"the students agree on {parts['agreement']:.2%} of test images")
        one = split["only student 0 right"] + split["only student 1 right"]
        text.append(f"exactly one of them is right on {one:.2%}, both wrong on "
                    f"{split['both wrong, same answer'] + split['both wrong, different answers']:.2%}")
        self.status.value = " · ".join(text[:1] + [html.escape(t) for t in text[1:]])


class BornAgainPanel(_HeldPanel):
    """Tick generations: the test accuracy of their ensemble (the average of their softmax
    outputs), seed by seed, beside generation 0 alone, with the paired difference ± SE.
    Callbacks: :meth:`update`, :meth:`select`."""

    def __init__(self, ban: BornAgain) -> None:
        if not isinstance(ban, BornAgain) or not ban.trained:
            raise ValueError("ban must be a non-empty BornAgain result (from labkd.online.born_again)")
        self.ban = ban
        self.last_update_ms = 0.0
        self.gens = list(range(ban.generations + 1))
        self.boxes = [widgets.Checkbox(value=True, description=f"generation {g}", indent=False,
                                       layout=widgets.Layout(width="130px")) for g in self.gens]
        self.status = widgets.HTML()
        self.base = ban.accuracy(0)
        # every generation's softmax outputs, once: a tick then only averages and takes an argmax
        self.probs = {s: torch.softmax(ban.test_logits[s].float(), dim=-1) for s in ban.seeds}
        fig = go.Figure([
            go.Scatter(x=[str(s) for s in ban.seeds], y=self.base, mode="markers", name="generation 0 alone",
                       marker=dict(color="#d62728", size=10, symbol="diamond"),
                       hovertemplate="seed %{x}: %{y:.2%}<extra></extra>"),
            go.Scatter(x=[], y=[], mode="markers", name="ensemble of the ticked generations",
                       marker=dict(color="#2ca02c", size=11), hovertemplate="seed %{x}: %{y:.2%}<extra></extra>"),
        ])
        fig.update_layout(xaxis_title="seed (chain)", yaxis_title="test accuracy", yaxis_tickformat=".2%", height=360,
                          margin=dict(l=60, r=20, t=30, b=40), legend=dict(orientation="h", y=-0.3))
        self.figure = figure_widget(fig)
        self.figure.add_class("labkd-born-again-plot")
        for box in self.boxes:
            box.observe(self.on_change, names="value")
        self.widget = widgets.VBox([widgets.HBox(self.boxes, layout=widgets.Layout(flex_flow="row wrap")),
                                    self.status, self.figure])
        self.widget.add_class("labkd-born-again-panel")
        self.timed(self.update)

    @property
    def members(self) -> list[int]:
        return [g for g, box in zip(self.gens, self.boxes, strict=True) if box.value]

    def select(self, members: Sequence[int]) -> None:
        """Tick exactly the generations in ``members``; redraw once."""
        members = list(members)
        bad = [g for g in members if g not in self.gens]
        if bad:
            raise ValueError(f"members {bad} are not generations of this chain; choose from {self.gens}")
        with self.holding():
            for g, box in zip(self.gens, self.boxes, strict=True):
                box.value = g in members

    def ensemble(self, members: Sequence[int] | None = None) -> list[float]:
        """Per seed, the test accuracy of the ensemble of ``members`` (default: the ticked ones)."""
        members = self.members if members is None else list(members)
        if not members or any(g not in self.gens for g in members) or len(set(members)) != len(members):
            raise ValueError(f"members must list distinct generations of this chain ({self.gens}), got {members}")
        targets = self.ban.test_targets
        return [float((self.probs[s][members].mean(0).argmax(1) == targets).float().mean()) for s in self.ban.seeds]

    def update(self) -> None:
        members = self.members
        if not members:
            with self.figure.batch_update():
                self.figure.data[1].x, self.figure.data[1].y = [], []
            self.status.value = "Tick at least one generation."
            return
        acc = self.ensemble(members)
        with self.figure.batch_update():
            self.figure.data[1].x = [str(s) for s in self.ban.seeds]
            self.figure.data[1].y = acc
        name = "generation " + str(members[0]) if len(members) == 1 else \
            "the ensemble of generations " + ", ".join(map(str, members))
        text = f"<b>{html.escape(name)}</b>: {stats.pm_values(acc)} (generation 0 alone: {stats.pm_values(self.base)})"
        if len(self.ban.seeds) > 1 and members != [0]:
            p = stats.paired(acc, self.base, self.ban.seeds)
            text += f" · Δ = {p.delta * 100:+.2f} ± {p.se * 100:.2f} points (paired, ± SE), ahead on {p.wins}/{p.n} seeds"
        self.status.value = text


def mutual_figure(rows: Sequence[Mapping]) -> go.Figure:
    """Final test accuracy per seed: the network trained alone and the same network (same initial
    weights, same batches) as student 0 of a mutual-learning cohort, joined by a line."""
    alone = {r["seed"]: r["test_acc"] for r in rows if r["method"] == INDEPENDENT}
    mutual = {r["seed"]: r["test_acc"] for r in rows if r["method"] == MUTUAL and r["model"] == 0}
    fig = go.Figure()
    for s in sorted(set(alone) & set(mutual)):
        up = mutual[s] > alone[s]
        fig.add_trace(go.Scatter(x=["trained alone", "mutual learning"], y=[alone[s], mutual[s]], mode="lines+markers",
                                 name=f"seed {s}", line=dict(color="#2ca02c" if up else "#d62728"),
                                 hovertemplate=f"seed {s}: " + "%{y:.2%}<extra></extra>"))
    fig.update_layout(yaxis_title="final test accuracy", yaxis_tickformat=".2%", height=360,
                      margin=dict(l=60, r=20, t=30, b=40), legend=dict(orientation="h", y=-0.2))
    return fig


def born_again_figure(ban: BornAgain) -> go.Figure:
    """Test accuracy per generation, one line per seed (solid), and of the ensemble of
    generations 0..g (dotted)."""
    fig = go.Figure()
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    ens = generation_ensembles(ban, first=0)
    for i, s in enumerate(ban.seeds):
        colour = palette[i % len(palette)]
        mine = [r for r in ban.rows if r["seed"] == s]
        fig.add_trace(go.Scatter(x=[r["generation"] for r in mine], y=[r["test_acc"] for r in mine],
                                 mode="lines+markers", name=f"seed {s}", line=dict(color=colour)))
        e = [r for r in ens if r["seed"] == s]
        fig.add_trace(go.Scatter(x=[0] + [r["generation"] for r in e], y=[mine[0]["test_acc"]] + [r["test_acc"] for r in e],
                                 mode="lines", line=dict(dash="dot", color=colour), name=f"ensemble 0..g, seed {s}",
                                 showlegend=i == 0))
    fig.update_layout(xaxis_title="generation (0: labels only)", yaxis_title="test accuracy", yaxis_tickformat=".2%",
                      height=380, margin=dict(l=60, r=20, t=30, b=40), xaxis=dict(dtick=1))
    return fig


# --- labkd bench ---------------------------------------------------------------------------------


def _synthetic_ban(generations: int = 2, seeds: int = 5, n: int = 10000) -> BornAgain:
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
            ban.rows.append({"seed": s, "generation": gen, "test_acc": acc, "val_acc": acc, "train_acc": 1.0,
                             "agreement_prev": None if gen == 0 else 0.9, "init_norm": 1.0 + gen})
    return ban


def _synthetic_rows(seeds: int = 5, epochs: int = 60, every: int = 6, n: int = 10000) -> tuple[list[dict], torch.Tensor]:
    """Rows shaped like :func:`labkd.online.mutual_vs_independent`'s, with made-up predictions."""
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 10, (n,), generator=g)
    rows = []
    for s in range(seeds):
        predictions = {}
        for e in range(every, epochs + 1, every):
            wrong = torch.rand(2, n, generator=g) < 0.2 * (1 - e / (epochs + 10))
            guess = torch.randint(0, 10, (2, n), generator=g)
            predictions[e] = torch.where(wrong, guess, targets.expand(2, n)).to(torch.int8)
        for k in range(2):
            h = [{"epoch": e, "test_acc": 0.9 + 0.0005 * e, "agreement": 0.95 + 0.0003 * e}
                 for e in range(every, epochs + 1, every)]
            rows.append({"method": MUTUAL, "seed": s, "model": k, "test_acc": h[-1]["test_acc"], "history": h,
                         "agreement": h[-1]["agreement"], "predictions": predictions, "init_norm": 1.0})
        h = [{"epoch": e, "test_acc": 0.9 + 0.0004 * e} for e in range(every, epochs + 1, every)]
        rows.append({"method": INDEPENDENT, "seed": s, "model": 0, "test_acc": h[-1]["test_acc"], "history": h,
                     "agreement": None, "init_norm": 1.0})
    return rows, targets


def benchmark_cases() -> dict:
    """Panel callbacks for ``labkd bench``, on synthetic results the size of the full lesson's:
    the epoch slider (outcome counts over 10,000 test images) and a generation checkbox
    (ensembles over 10,000 test images for every seed)."""
    rows, targets = _synthetic_rows()
    mutual_panel = MutualPanel(rows, targets)
    ban_panel = BornAgainPanel(_synthetic_ban())
    state = {"i": 0}
    epochs = list(mutual_panel.epoch.options)

    def next_epoch() -> None:
        state["i"] += 1
        mutual_panel.epoch.value = epochs[state["i"] % len(epochs)]

    def toggle_generation() -> None:
        box = ban_panel.boxes[-1]
        box.value = not box.value

    return {"epoch": next_epoch, "generation_checkbox": toggle_generation}


__all__ = ["OUTCOMES", "BornAgainPanel", "MutualPanel", "born_again_figure", "mutual_figure",
           "outcome_counts"]
