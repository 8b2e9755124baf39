"""Panel of lesson 07 (transfer sets with missing classes): move a bias shift, watch the errors.

>>> panel = BiasShiftPanel([no_threes, only_78])      # ShiftStudy objects (logits computed once)
>>> panel                                             # study picker, shift slider, two-panel figure

The left plot is the test errors of each true class without the shift (grey) and with the
slider's shift (blue; classes missing from the transfer set in orange); the right one the
validation and test errors against the shift, with the current shift marked and the shift
chosen on validation dashed. Moving the slider adds one number to some columns of precomputed
(N, C) logits and counts errors: a millisecond or two, no retraining.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import ipywidgets as widgets
import torch
from plotly.subplots import make_subplots

from labkd.checks import restore_if_not_finite
from labkd.transfer_sets import ShiftStudy, check_shift
from labkd.transfer_sets_figures import fill_shift_figure, shift_traces
from labkd.widgets import Panel, figure_widget


class BiasShiftPanel(Panel):
    """A slider for the bias shift of one or more :class:`~labkd.transfer_sets.ShiftStudy`.

    Args:
        studies: one study or several (a toggle switches between them).
        shift: the slider's first value (default: the shift chosen on validation).

    Callbacks are plain methods: :meth:`set_shift`, :meth:`select` (switch study),
    :meth:`reset` (back to the shift chosen on validation) and :meth:`update` (redraw).
    """

    def __init__(self, studies: ShiftStudy | Sequence[ShiftStudy], shift: float | None = None) -> None:
        studies = [studies] if isinstance(studies, ShiftStudy) else list(studies)
        if not studies or not all(isinstance(s, ShiftStudy) for s in studies):
            raise ValueError("studies must be a ShiftStudy or a non-empty list of them "
                             "(from labkd.transfer_sets.missing_class_study or ShiftStudy.from_model)")
        names = [s.name for s in studies]
        if len(set(names)) != len(names):
            raise ValueError(f"studies need different names, got {names}")
        self.studies = {s.name: s for s in studies}
        self.last_update_ms = 0.0
        first = studies[0]
        start = first.shift if shift is None else check_shift(shift)

        self.picker = widgets.ToggleButtons(options=names, value=names[0], description="transfer set",
                                            style={"description_width": "initial"})
        self.picker.layout.display = None if len(names) > 1 else "none"
        self.slider = widgets.FloatSlider(description="bias shift", continuous_update=True, readout_format="+.1f",
                                          style={"description_width": "initial"}, layout=widgets.Layout(width="520px"))
        self.slider.add_class("labkd-bias-shift-slider")
        self._set_range(first)
        self.slider.value = start
        self.reset_button = widgets.Button(description="shift chosen on validation", icon="undo",
                                           layout=widgets.Layout(width="240px"))
        self.readout = widgets.HTML()
        self.readout.add_class("labkd-bias-shift-readout")

        fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], subplot_titles=("per class", "against the shift"))
        self.figure = figure_widget(fig)
        shift_traces(self.figure)
        self.figure.add_class("labkd-bias-shift-plot")
        fill_shift_figure(self.figure, first, self.shift)
        self._fill_readout()

        self.slider.observe(self.on_change, names="value")
        self.picker.observe(self._on_pick, names="value")
        self.reset_button.on_click(lambda _button: self.reset())
        controls = widgets.HBox([self.slider, self.reset_button], layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = widgets.VBox([self.picker, controls, self.readout, self.figure])
        self.widget.add_class("labkd-bias-shift-panel")

    # -- state -------------------------------------------------------------------------------

    @property
    def study(self) -> ShiftStudy:
        return self.studies[self.picker.value]

    @property
    def shift(self) -> float:
        return float(self.slider.value)

    def _set_range(self, study: ShiftStudy) -> None:
        grid = study.shifts
        step = float(grid[1] - grid[0]) if len(grid) > 1 else 0.1
        low, high = float(grid.min()), float(grid.max())
        if high <= low:
            low, high = low - 1.0, high + 1.0
        # widen before narrowing so min <= max holds at every step
        self.slider.min, self.slider.max = min(low, self.slider.min), max(high, self.slider.max)
        self.slider.min, self.slider.max, self.slider.step = low, high, step

    # -- callbacks ---------------------------------------------------------------------------

    def update(self) -> None:
        """Recount the errors at the slider's shift and refill the moving traces in place."""
        fill_shift_figure(self.figure, self.study, self.shift, curves=False)
        self._fill_readout()

    def on_change(self, change: dict | None = None) -> None:
        """The slider moved: redraw; a NaN or inf set on it directly is undone and reported."""
        if not restore_if_not_finite(self, change):
            super().on_change(change)

    def set_shift(self, shift: float) -> None:
        """Move the slider (the figure follows through :meth:`update`)."""
        shift = check_shift(shift)
        if not self.slider.min <= shift <= self.slider.max:
            raise ValueError(f"shift={shift:+.2f} is outside the slider's range "
                             f"[{self.slider.min:+.1f}, {self.slider.max:+.1f}]")
        self.slider.value = shift

    def reset(self) -> None:
        """Back to the shift chosen on the validation set."""
        self.set_shift(self.study.shift)

    def select(self, name: str) -> None:
        """Switch to another study (by name); the slider jumps to its validation-chosen shift."""
        if name not in self.studies:
            raise ValueError(f"no study named {name!r}; choose one of {list(self.studies)}")
        self.picker.value = name

    def _on_pick(self, change: dict | None = None) -> None:
        self.timed(self._switch)

    def _switch(self) -> None:
        study = self.study
        self.slider.unobserve(self.on_change, names="value")
        try:
            self._set_range(study)
            self.slider.value = study.shift
        finally:
            self.slider.observe(self.on_change, names="value")
        fill_shift_figure(self.figure, study, self.shift, curves=True)
        self._fill_readout()

    def _fill_readout(self) -> None:
        s, b = self.study, self.shift
        test, val = s.errors(b, "test"), s.errors(b, "val")
        before = s.errors(0.0, "test")
        missing = ""
        if s.missing:
            total = int(s.class_totals()[s.missing].sum())
            missing = (f" · on classes missing from the transfer set: <b>{s.errors_on_missing(b)}</b> of {total} "
                       f"(no shift: {s.errors_on_missing(0.0)})")
        self.readout.value = (
            f"{html.escape(s.name)}, shift <b>{b:+.1f}</b> on classes {s.classes}: <b>{test}</b> test errors of "
            f"{len(s.test_y):,} (no shift: {before}; chosen on validation: {s.shift:+.1f} → "
            f"{s.errors(s.shift)}) · {val} validation errors{missing}")


# --------------------------------------------------------------------------------------------
# labkd bench


def _synthetic_study(name: str, classes: list[int], n: int = 10000, c: int = 10, seed: int = 0) -> ShiftStudy:
    """Random logits the size of MNIST's test set, with the ``classes`` logits pushed down."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (2 * n,), generator=gen)
    logits = torch.randn(2 * n, c, generator=gen) + 4 * torch.nn.functional.one_hot(y, c)
    logits[:, classes] -= 3.0
    return ShiftStudy(name, classes, classes, logits[:n], y[:n], logits[n:], y[n:], [str(i) for i in range(c)])


def benchmark_cases() -> dict:
    """Panel callbacks for ``labkd bench``: move the slider, switch the study (synthetic logits)."""
    panel = BiasShiftPanel([_synthetic_study("no 3s", [3]), _synthetic_study("7s and 8s", [7, 8], seed=1)])
    state = {"i": 0}
    values = [-4.0, -1.0, 0.0, 2.5, 5.0]

    def move_slider() -> None:
        state["i"] += 1
        panel.slider.value = values[state["i"] % len(values)]

    def switch_study() -> None:
        panel.picker.value = "7s and 8s" if panel.picker.value == "no 3s" else "no 3s"

    return {"shift": move_slider, "study": switch_study}
