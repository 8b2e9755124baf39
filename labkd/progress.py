"""Progress bars over epochs and training runs: ``tqdm.auto`` in notebooks and terminals, nothing
at all when ``LABKD_PROGRESS=0`` (the tests set it) or ``progress=False``.

>>> runs = RunProgress(total=12, desc="students", progress=None)
>>> runs.step("784-30-30-10 seed 0"); runs.close()
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def show_progress() -> bool:
    """Progress bars are on unless ``LABKD_PROGRESS=0`` (the tests set it)."""
    return os.environ.get("LABKD_PROGRESS", "1") != "0"


class NoBar:
    """Stands in for a tqdm bar when progress is off: every method does nothing."""

    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, *args: Any, **kwargs: Any) -> None: ...
    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None: ...
    def set_description(self, text: str) -> None: ...
    def close(self) -> None: ...


def progress_bar(total: int, desc: str, unit: str = "run", progress: bool | None = None, leave: bool = False):
    """A tqdm bar of ``total`` steps, or a :class:`NoBar` when progress is off (``progress=None``:
    follow ``LABKD_PROGRESS``) or there is nothing to count."""
    if total <= 0 or not (show_progress() if progress is None else progress):
        return NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave)


class RunProgress:
    """A bar over training runs plus an optional ``on_run(done, total)`` callback (widgets use it
    to move their own progress bar)."""

    def __init__(self, total: int, desc: str, progress: bool | None = None,
                 on_run: Callable[[int, int], None] | None = None) -> None:
        self.total, self.done, self.on_run = total, 0, on_run
        self.bar = progress_bar(total, desc, "run", progress)

    def step(self, label: str = "") -> None:
        """One run finished (``label`` names it beside the bar)."""
        self.done += 1
        self.bar.set_postfix_str(label, refresh=False)
        self.bar.update(1)
        if self.on_run is not None:
            self.on_run(self.done, self.total)

    def close(self) -> None:
        self.bar.close()
