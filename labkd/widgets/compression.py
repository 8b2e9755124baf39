"""Panels of lesson 12 (compression): accuracy against size and latency, per method.

>>> panel = CompressionPanel(rows)              # method drop-down, strength slider, size measure
>>> panel.select("prune", 0.9)                  # what the slider does: highlight, arrows, read-out
>>> CombinationPanel(models, data, rows)        # a combination of your own: prune, then store, then measure

``rows`` are :func:`labkd.compression.compression_study` rows. The panel only filters them (no
model is run), so a change redraws in a few milliseconds: the chosen variants are highlighted
with an arrow from the model each was compressed from, in both panels (size and latency).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkd.compression import MODELS, select, strengths
from labkd.compression_methods import FORMATS, METHODS, SIZE_MEASURES, STRENGTH, check_method, check_sparsity, combine, measure
from labkd.compression_figures import add_traces, check_rows, check_size, fill_traces, tradeoff_figure
from labkd.widgets import Panel, figure_widget

NO_STRENGTH = "—"


def _strength_label(method: str, value: object) -> str:
    kind = STRENGTH[method]
    if kind == "bits":
        return f"{value} bits"
    if kind == "sparsity":
        return f"{float(value):.0%}"
    return str(value)


class CompressionPanel(Panel):
    """Pick a method and its strength; the matching variants are highlighted on both plots.

    Args:
        rows: :func:`labkd.compression.compression_study` rows (precomputed: nothing retrains).
        size: the size measure of the x-axis at start (a key of :data:`SIZE_MEASURES`).
    """

    def __init__(self, rows: Sequence[Mapping], size: str = "stored_bytes", method: str = "prune") -> None:
        self.rows = check_rows(rows)
        self.methods = [m for m in METHODS if any(r["method"] == m for r in self.rows)]
        if check_method(method) not in self.methods:
            method = self.methods[0]
        self.method_picker = widgets.Dropdown(options=[(f"{m}: {METHODS[m]}", m) for m in self.methods],
                                              value=method, description="method",
                                              layout=widgets.Layout(width="560px"))
        self.strength = widgets.SelectionSlider(options=[NO_STRENGTH], description="strength",
                                                continuous_update=True, layout=widgets.Layout(width="420px"))
        self.size_picker = widgets.Dropdown(options=[(v, k) for k, v in SIZE_MEASURES.items()], value=check_size(size),
                                            description="size", layout=widgets.Layout(width="420px"))
        self.readout = widgets.HTML()
        for control, name in ((self.method_picker, "method"), (self.strength, "strength"), (self.size_picker, "size")):
            control.add_class(f"labkd-compression-{name}")

        fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                            subplot_titles=("accuracy vs size", "accuracy vs latency"))
        self.figure = figure_widget(fig)
        self.groups = add_traces(self.figure, self.rows)
        self._drawn_size: str | None = None
        self._muted = False
        self._set_strength_options()
        self.update()

        self.method_picker.observe(self._on_method, names="value")
        self.strength.observe(self._on_strength, names="value")
        self.size_picker.observe(self.on_change, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.method_picker, self.size_picker],
                                                 layout=widgets.Layout(flex_flow="row wrap")),
                                    self.strength, self.readout, self.figure])
        self.widget.add_class("labkd-compression-panel")

    # -- state -------------------------------------------------------------------------------

    @property
    def method(self) -> str:
        return self.method_picker.value

    @property
    def size(self) -> str:
        return self.size_picker.value

    @property
    def value(self) -> object:
        """The chosen strength (bits, sparsity, student name), or None for methods without one."""
        return None if self.strength.value == NO_STRENGTH else self.strength.value

    def chosen(self) -> list[Mapping]:
        return select(self.rows, self.method, self.value)

    def _set_strength_options(self) -> None:
        values = strengths(self.rows, self.method) if STRENGTH[self.method] else []
        self._muted = True  # changing the options moves the value: redraw once, afterwards
        if values:
            options = [(_strength_label(self.method, v), v) for v in values]
            self.strength.options = options
            self.strength.value = values[len(values) // 2]
            self.strength.description = STRENGTH[self.method]
        else:
            self.strength.options = [NO_STRENGTH]
            self.strength.description = "strength"
        self.strength.disabled = not values
        self._muted = False

    # -- callbacks ---------------------------------------------------------------------------

    def _on_strength(self, change: dict | None = None) -> None:
        if not self._muted:
            self.on_change()

    def _on_method(self, change: dict | None = None) -> None:
        self._set_strength_options()
        self.on_change()

    def select(self, method: str, strength: object = None, size: str | None = None) -> None:
        """Set the controls (what a student does with the mouse); the figure follows."""
        check_method(method)
        if method not in self.methods:
            raise ValueError(f"method={method!r} was not measured in these rows; measured: {self.methods}")
        if size is not None:
            self.size_picker.value = check_size(size)
        if method != self.method:
            self.method_picker.value = method
        if strength is not None:
            if STRENGTH[method] is None:
                raise ValueError(f"method={method!r} has no strength to choose; leave strength=None")
            target = select(self.rows, method, strength)[0]["strength"]  # validates, finds the stored value
            self.strength.value = target

    def update(self) -> None:
        """Refill the highlight, arrows and read-out from the precomputed rows (no model runs)."""
        chosen = self.chosen()
        with self.figure.batch_update():
            redraw = "all" if self._drawn_size is None else "size" if self._drawn_size != self.size else "none"
            fill_traces(self.figure, self.rows, self.groups, self.size, chosen, background=redraw)
        self._drawn_size = self.size
        self.readout.value = readout_html(self.rows, chosen, self.method, self.value)


def readout_html(rows: Sequence[Mapping], chosen: Sequence[Mapping], method: str, value: object) -> str:
    """A small HTML table of the chosen variants against the models they came from."""
    by_label = {r["label"]: r for r in rows}
    at = "" if value is None else f" at {html.escape(_strength_label(method, value))}"
    head = f"<b>{html.escape(method)}</b>{at}: {html.escape(METHODS[method])}"
    lines = ["<tr><th>variant</th><th>test acc</th><th>Δ vs from</th><th>stored</th><th>dense file</th>"
             "<th>nonzero params</th><th>ms / batch</th></tr>"]
    for r in chosen:
        parent = by_label.get(r["parent"]) if r["parent"] else None
        delta = "" if parent is None else f"{(r['test_acc'] - parent['test_acc']) * 100:+.2f} pts"
        ratio = "" if parent is None else f" ({parent['stored_bytes'] / r['stored_bytes']:.1f}× smaller)"
        latency = "" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}"
        lines.append(f"<tr><td>{html.escape(r['label'])}</td><td>{r['test_acc']:.2%}</td><td>{delta}</td>"
                     f"<td>{r['stored_bytes'] / 1e3:,.1f} kB{ratio}</td><td>{r['dense_bytes'] / 1e3:,.1f} kB</td>"
                     f"<td>{r['nonzero']:,}</td><td>{latency}</td></tr>")
    return f"<div>{head}</div><table style='font-size:12px'>{''.join(lines)}</table>"


class CombinationPanel(Panel):
    """Build a variant the study did not measure: pick a model (a baseline or a distilled
    student), a sparsity and a number format, press *measure*; the variant is pruned, stored in
    that format, measured (test accuracy, stored size, CPU latency) and added to the plots beside
    every variant of the study, with its numbers in the table under the controls.

    Args:
        models: ``{name: trained model or Trained}`` to choose from.
        data: the lesson's data (test split for accuracy, training images for batch-norm repair).
        rows: the study's rows, drawn as the background (may be empty).
        latency_batch_size, runs, threads: as in :func:`labkd.compression.compression_study`.
    Callbacks: :meth:`measure` (the button), :meth:`select`.
    """

    def __init__(self, models: Mapping, data, rows: Sequence[Mapping] = (), latency_batch_size: int = 256,
                 runs: int = 3, threads: int = 1, calibration_images: int = 2000) -> None:
        if not models:
            raise ValueError("models is empty: give {name: trained model} to choose from")
        self.models = {name: getattr(m, "model", m) for name, m in models.items()}
        self.data = data
        self.rows = list(rows)
        self.batch = data.test.x[:latency_batch_size]
        self.calibration = data.train.x[:calibration_images] if calibration_images else None
        self.runs, self.threads = runs, threads
        self.measured: list[dict] = []
        self.last_update_ms = 0.0
        style = {"description_width": "initial"}
        self.model_picker = widgets.Dropdown(options=list(self.models), description="model", style=style,
                                             layout=widgets.Layout(width="360px"))
        self.sparsity = widgets.FloatSlider(value=0.0, min=0.0, max=0.95, step=0.05, description="prune to sparsity",
                                            readout_format=".0%", style=style, continuous_update=False,
                                            layout=widgets.Layout(width="420px"))
        self.number_format = widgets.ToggleButtons(options=list(FORMATS), value="float32", description="then store as",
                                                   style=style)
        self.button = widgets.Button(description="measure", button_style="primary", icon="play")
        self.button.on_click(lambda _: self.measure())
        self.readout = widgets.HTML("<i>choose a combination and press <b>measure</b></i>")
        fig = tradeoff_figure(self.rows) if self.rows else go.Figure(make_subplots(
            rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
            subplot_titles=("accuracy vs size", "accuracy vs latency")))
        for col in (1, 2):
            fig.add_trace(go.Scatter(x=[], y=[], text=[], mode="markers+text", textposition="top center",
                                     name="your combinations", showlegend=col == 1,
                                     marker=dict(size=14, symbol="x", color="black"),
                                     hovertemplate="%{text}<br>%{y:.2%}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(type="log", row=1, col=1)
        fig.update_xaxes(type="log", row=1, col=2)
        self.figure = figure_widget(fig)
        self.figure.add_class("labkd-combination-plot")
        self.widget = widgets.VBox([widgets.HBox([self.model_picker, self.sparsity],
                                                 layout=widgets.Layout(flex_flow="row wrap")),
                                    self.number_format, self.button, self.readout, self.figure])
        self.widget.add_class("labkd-combination-panel")

    def select(self, model: str | None = None, sparsity: float | None = None, number_format: str | None = None) -> None:
        """Set the controls (nothing is measured until :meth:`measure`)."""
        if model is not None and model not in self.models:
            raise ValueError(f"model={model!r} is unknown; choose one of {list(self.models)}")
        if number_format is not None and number_format not in FORMATS:
            raise ValueError(f"number_format={number_format!r} is unknown; choose one of {list(FORMATS)}")
        if sparsity is not None:
            sparsity = check_sparsity(sparsity)
            if sparsity > self.sparsity.max:
                raise ValueError(f"sparsity must be at most {self.sparsity.max:g} here, got {sparsity!r}")
            self.sparsity.value = sparsity
        if model is not None:
            self.model_picker.value = model
        if number_format is not None:
            self.number_format.value = number_format

    def label(self) -> str:
        s = self.sparsity.value
        return f"{self.model_picker.value}{f' · pruned {s:.0%}' if s > 0 else ''} · {self.number_format.value}"

    def measure(self) -> dict:
        """Build the chosen combination, measure it, add it to the plots and the table; returns its row."""
        self.button.disabled = True
        self.readout.value = f"measuring <b>{html.escape(self.label())}</b> …"
        try:
            self.timed(self._measure)
        finally:
            self.button.disabled = False
        return self.measured[-1]

    def _measure(self) -> None:
        base = self.models[self.model_picker.value]
        variant = combine(base, self.sparsity.value, self.number_format.value, self.calibration)
        row = {"label": self.label(), **measure(variant, self.data, self.batch, runs=self.runs, threads=self.threads)}
        row["from"] = measure(combine(base), self.data, None)
        self.measured.append(row)
        self.update()

    def update(self) -> None:
        """Redraw the 'your combinations' points and the table from what was measured (no model runs)."""
        rows = self.measured
        with self.figure.batch_update():
            mine = self.figure.data[-2:]
            for trace, key in zip(mine, ("stored_bytes", "latency_ms"), strict=True):
                trace.x = [r[key] for r in rows]
                trace.y = [r["test_acc"] for r in rows]
                trace.text = [str(i + 1) for i in range(len(rows))]
        lines = ["<tr><th>#</th><th>combination</th><th>test acc</th><th>Δ vs the model as trained</th><th>stored</th>"
                 "<th>smaller by</th><th>nonzero params</th><th>ms / batch</th></tr>"]
        for i, r in enumerate(rows, start=1):
            ref = r["from"]
            lines.append(f"<tr><td>{i}</td><td>{html.escape(r['label'])}</td><td>{r['test_acc']:.2%}</td>"
                         f"<td>{(r['test_acc'] - ref['test_acc']) * 100:+.2f} pts</td>"
                         f"<td>{r['stored_bytes'] / 1e3:,.1f} kB</td><td>{ref['stored_bytes'] / r['stored_bytes']:.1f}×</td>"
                         f"<td>{r['nonzero']:,}</td><td>{r['latency_ms']:.2f}</td></tr>")
        self.readout.value = f"<table style='font-size:12px'>{''.join(lines)}</table>"


# --------------------------------------------------------------------------------------------
# labkd bench


def synthetic_rows() -> list[dict]:
    """Rows shaped like the lesson's (9 baselines, 3 students, every method), with made-up numbers."""
    rows: list[dict] = [{"model": "teacher", "family": "teacher", "method": "float32", "strength": None,
                         "label": "teacher · float32", "parent": None, "test_acc": 0.99, "stored_bytes": 9_500_000,
                         "dense_bytes": 9_500_000, "nonzero": 2_400_000, "latency_ms": 20.0}]

    def add(name, family, method, strength, label, parent, acc, size, latency, dense=None):
        rows.append({"model": name, "family": family, "method": method, "strength": strength, "label": label,
                     "parent": parent, "test_acc": acc, "stored_bytes": int(size), "dense_bytes": int(dense or size),
                     "nonzero": int(size / 4), "latency_ms": latency})

    for i, (name, (family, _, _)) in enumerate(MODELS.items()):
        size, acc, lat = 30_000 * 3 ** (i % 3), 0.95 + 0.01 * (i % 3), 1.0 + i
        base = f"{name} · float32"
        add(name, family, "float32", None, base, None, acc, size, lat)
        add(name, family, "int8", None, f"{name} · int8", base, acc - 0.001, size / 4, lat * 0.7)
        for b in (8, 4, 2):
            add(name, family, "kbit", b, f"{name} · kbit {b} bits", base, acc - 0.02 * (8 - b) / 6, size * b / 32, lat)
        for s in (0.5, 0.8, 0.9, 0.95):
            add(name, family, "prune", s, f"{name} · prune {s:.0%}", base, acc - s ** 4 * 0.2, size * (1 - s) * 1.5,
                lat, dense=size)
    for name in ("MLP 32×2", "MLP 128×2", "MLP 512×2"):
        ref = next(r for r in rows if r["label"] == f"{name} · float32")
        add(name, "student", "distil", name, f"{name} · distil", ref["label"], ref["test_acc"] + 0.005,
            ref["stored_bytes"], ref["latency_ms"])
        add(name, "student", "distil+int8", name, f"{name} · distil+int8", f"{name} · distil", ref["test_acc"],
            ref["stored_bytes"] / 4, ref["latency_ms"])
        for s in (0.5, 0.8, 0.9, 0.95):
            add(name, "student", "distil+prune", s, f"{name} · distil+prune {s:.0%}", f"{name} · distil",
                ref["test_acc"] - s ** 4 * 0.1, ref["stored_bytes"] * (1 - s) * 1.5, ref["latency_ms"])
    return rows


def benchmark_cases() -> dict:
    """Panel callbacks for ``labkd bench``: move the strength slider, switch method and size measure."""
    panel = CompressionPanel(synthetic_rows())
    state = {"i": 0}

    def next_sparsity() -> None:
        if panel.method != "prune":
            panel.method_picker.value = "prune"
        options = [v for _, v in panel.strength.options]
        state["i"] += 1
        panel.strength.value = options[state["i"] % len(options)]

    def next_method() -> None:
        state["i"] += 1
        panel.method_picker.value = panel.methods[state["i"] % len(panel.methods)]

    def toggle_size() -> None:
        panel.size_picker.value = "dense_bytes" if panel.size == "stored_bytes" else "stored_bytes"

    return {"sparsity": next_sparsity, "method": next_method, "size_measure": toggle_size}
