"""Where a notebook's time went: training models versus loading them from the cache.

:func:`labkd.train.fit` adds each training run and :func:`labkd.cache.load` each model it
served; :func:`labkd.notebook.finish` records the totals, and ``labkd run`` shows them per
notebook and for the whole course (how much a warm cache saves).
"""

from __future__ import annotations

_totals: dict[str, float] = {}


def reset() -> None:
    """Start counting from zero (``labkd.notebook.start`` calls it)."""
    _totals.update(training_seconds=0.0, models_trained=0, loading_seconds=0.0, models_loaded=0)


def add_training(seconds: float) -> None:
    _totals["training_seconds"] += float(seconds)
    _totals["models_trained"] += 1


def add_loading(seconds: float) -> None:
    _totals["loading_seconds"] += float(seconds)
    _totals["models_loaded"] += 1


def totals() -> dict[str, float]:
    """``{"training_seconds", "models_trained", "loading_seconds", "models_loaded"}`` so far."""
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in _totals.items()}


reset()
