"""Reference solutions of every exercise, for instructors: ``from labkd.solutions import softmax_with_temperature``.

The solutions live beside their checkers in :mod:`labkd.exercises`; this module only gathers
them under their exercise names.
"""

from __future__ import annotations

from collections.abc import Callable


def __getattr__(name: str) -> Callable:
    from labkd.exercises import get

    try:
        return get(name).solution
    except ValueError:
        raise AttributeError(f"no solution named {name!r}") from None


def names() -> list[str]:
    """Every exercise that has a reference solution."""
    from labkd.exercises import REGISTRY, _load_topics

    _load_topics()
    return sorted(REGISTRY)
