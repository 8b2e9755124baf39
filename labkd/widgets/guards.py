"""Setter checks shared by the panels: a value outside a control's range is rejected with the
range in the message (a slider would silently clamp it), and a NaN or inf set on a control
directly is undone and reported in the panel's read-out, so it cannot poison the panel."""

from __future__ import annotations

import math

from labkd.losses import check_temperature


def slider_temperature(temperature: float, low: float, high: float, argument: str = "temperature") -> float:
    """A valid temperature inside a slider's range ``[low, high]``; ``ValueError`` stating the
    range otherwise."""
    t = check_temperature(temperature, argument)
    if not low * (1 - 1e-9) <= t <= high * (1 + 1e-9):
        raise ValueError(f"{argument}={t:g} is outside the slider's range {low:g} to {high:g}")
    return t


def restore_if_not_finite(panel, change: dict | None) -> bool:
    """If ``change`` set a control to NaN or inf, put its old value back (which redraws), add a
    note to ``panel.readout`` and return True: the caller then skips its own redraw."""
    new = None if change is None else change.get("new")
    if not isinstance(new, float) or math.isfinite(new):
        return False
    owner = change["owner"]
    owner.value = change["old"]
    panel.readout.value += f"<div><i>ignored {owner.description} = {new}: not a finite number</i></div>"
    return True
