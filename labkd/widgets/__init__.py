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

#: A mimetype no front-end renders: the panel's figures as they were first drawn, so that a
#: report made without a live kernel (``labkd run`` → HTML) still shows each panel's figure.
STATIC_PANEL_MIMETYPE = "application/vnd.labkd.static-panel+json"


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

        display(panel_bundle(self.widget), raw=True)


def panel_figures(widget) -> list[go.FigureWidget]:
    """Every ``FigureWidget`` inside ``widget`` (a box of controls and figures), in display order."""
    if isinstance(widget, go.FigureWidget):
        return [widget]
    return [f for child in getattr(widget, "children", ()) or () for f in panel_figures(child)]


def panel_bundle(widget) -> dict:
    """The display bundle of a panel: its live widget view, plus a static copy of its figures
    under :data:`STATIC_PANEL_MIMETYPE` (JupyterLab shows the widget; :mod:`labkd.runner` turns
    the copy into plain plotly figures for the offline HTML report, where widgets cannot run)."""
    bundle = dict(widget._repr_mimebundle_()) if hasattr(widget, "_repr_mimebundle_") else {"text/plain": repr(widget)}
    figures = [go.Figure(f).to_plotly_json() for f in panel_figures(widget)]
    if figures:
        import json

        import plotly.utils

        bundle[STATIC_PANEL_MIMETYPE] = {"figures": json.loads(json.dumps(figures, cls=plotly.utils.PlotlyJSONEncoder))}
    return bundle


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
