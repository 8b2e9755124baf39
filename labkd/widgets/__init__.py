"""Interactive panels: ipywidgets controls driving a plotly ``FigureWidget`` in place.

Every panel is a small class whose callbacks are plain methods (``update``, ``on_...``) that the
tests call without a browser; ``panel.widget`` is what the notebook displays, and
``panel.figure`` the ``FigureWidget``. Panels that only recompute must update in well under
50 ms (``labkd bench`` times them); panels that retrain sit behind a button and use the cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import plotly.graph_objects as go


class Panel:
    """Base class: keeps the last callback's duration in ``last_update_ms``."""

    widget = None
    figure: go.FigureWidget

    def update(self) -> None:  # pragma: no cover - every panel defines it
        raise NotImplementedError

    def on_change(self, change: dict | None = None) -> None:
        """A control changed: redraw with ``update`` (timed in ``last_update_ms``)."""
        self.timed(self.update)

    def timed(self, callback: Callable[..., None], *args, **kwargs) -> None:
        start = time.perf_counter()
        callback(*args, **kwargs)
        self.last_update_ms = (time.perf_counter() - start) * 1000

    def _ipython_display_(self) -> None:  # display(panel) shows its widget
        from IPython.display import display

        display(self.widget)


def figure_widget(figure: go.Figure | None = None) -> go.FigureWidget:
    """A ``FigureWidget`` (needs the ``anywidget`` package, a labkd dependency)."""
    return go.FigureWidget(figure)


def cycle_values(control, values) -> Callable[[], None]:
    """A ``labkd bench`` case: each call moves ``control`` to the next of ``values`` (as a user would)."""
    values = list(values)
    if len(values) < 2:
        raise ValueError(f"values must offer at least two settings to cycle through, got {values!r}")
    state = {"i": values.index(control.value) if control.value in values else -1}

    def step() -> None:
        state["i"] = (state["i"] + 1) % len(values)
        control.value = values[state["i"]]

    return step
