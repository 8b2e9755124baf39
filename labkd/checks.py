"""Argument checks shared by the lesson modules: each raises ``ValueError`` (or ``TypeError``)
naming the argument and what was expected, before any training starts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

Hidden = tuple[int, ...]


def check_positive_int(value: object, argument: str) -> None:
    """``value`` is a whole number > 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) <= 0:
        raise ValueError(f"{argument} must be a positive integer, got {value!r}")


def check_hidden(hidden: object, argument: str = "hidden") -> Hidden:
    """Hidden-layer widths of an MLP, e.g. ``(30, 30)``, as a tuple of ints."""
    if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
        raise TypeError(f"{argument} must be a tuple of layer widths such as (30, 30), got the number {hidden!r}; "
                        f"use mlp_hidden({hidden}) for two layers of that width")
    if not isinstance(hidden, Sequence) or isinstance(hidden, str) or len(hidden) == 0:
        raise ValueError(f"{argument} must be a non-empty tuple of layer widths such as (30, 30), got {hidden!r}")
    for h in hidden:
        check_positive_int(h, f"each width in {argument}")
    return tuple(int(h) for h in hidden)


def check_seeds(seeds: object) -> list[int]:
    """A non-empty list of distinct non-negative integer seeds."""
    if not isinstance(seeds, Iterable) or isinstance(seeds, str):
        raise TypeError(f"seeds must be a list of integers, got {type(seeds).__name__}")
    out = list(seeds)
    if not out:
        raise ValueError("seeds is empty; give at least one seed, e.g. [0]")
    for s in out:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or int(s) < 0:
            raise ValueError(f"seeds must be non-negative integers, got {s!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds has repeats: {out}")
    return [int(s) for s in out]


def check_classes(classes: object, num_classes: int, argument: str = "classes") -> list[int]:
    """A non-empty list (or tensor / array) of distinct class ids in ``0..num_classes-1``, as ints."""
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        raise TypeError(f"{argument} must be a list of class ids such as [{classes}], got the number {classes!r}")
    if isinstance(classes, (str, bytes)) or not (isinstance(classes, Sequence) or hasattr(classes, "tolist")):
        raise TypeError(f"{argument} must be a list of class ids, got {type(classes).__name__}")
    values = classes.tolist() if hasattr(classes, "tolist") else [c.item() if hasattr(c, "item") else c for c in classes]
    if not values:
        raise ValueError(f"{argument} is empty; name at least one class id in 0..{num_classes - 1}")
    for c in values:
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < num_classes:
            raise ValueError(f"{argument} has {c!r}; class ids are integers 0..{num_classes - 1}")
    if len(set(values)) != len(values):
        raise ValueError(f"{argument} lists a class twice: {values}")
    return values


def slider_temperature(temperature: object, low: float, high: float, argument: str = "temperature") -> float:
    """A valid temperature (:func:`labkd.losses.check_temperature`) inside a widget slider's range
    ``[low, high]``; ``ValueError`` stating the range otherwise (a slider would silently clamp it)."""
    from labkd.losses import check_temperature

    t = check_temperature(temperature, argument)
    if not low * (1 - 1e-9) <= t <= high * (1 + 1e-9):
        raise ValueError(f"{argument}={t:g} is outside the slider's range {low:g} to {high:g}")
    return t


def restore_if_not_finite(panel: object, change: dict | None) -> bool:
    """For a panel's ``on_change``: if ``change`` set a control to NaN or inf (directly, not through
    a setter), put its old value back (which redraws), add a note to ``panel.readout`` and return
    True, so the caller skips its own redraw and the NaN cannot poison the panel."""
    new = None if change is None else change.get("new")
    if not isinstance(new, float) or np.isfinite(new):
        return False
    owner = change["owner"]
    owner.value = change["old"]
    panel.readout.value += f"<div><i>ignored {owner.description} = {new}: not a finite number</i></div>"
    return True


def check_config(config: object, argument: str, loss: str | None = None):
    """``config`` is a :class:`labkd.TrainConfig` (with ``loss``, when given); returns it."""
    from labkd.train import TrainConfig  # checks sits below train: import on use

    if not isinstance(config, TrainConfig):
        raise TypeError(f"{argument} must be a labkd.TrainConfig, got {type(config).__name__}")
    if loss is not None and config.loss != loss:
        raise ValueError(f"{argument} must use loss={loss!r}, got loss={config.loss!r}")
    return config


def mlp_name(hidden: Sequence[int], data) -> str:
    """``"784-30-30-10"``: the layer sizes of an MLP on ``data`` (a :class:`labkd.data.Data`)."""
    import math

    return "-".join(str(v) for v in (math.prod(data.input_shape), *hidden, data.num_classes))
