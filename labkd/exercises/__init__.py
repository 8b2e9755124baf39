"""Exercises: the student writes a small function, a checker says in plain words what is right.

In a notebook::

    def softmax_with_temperature(logits, temperature):
        raise NotImplementedError("Exercise 1: divide by the temperature, then softmax")

    softmax_with_temperature = exercises.check(softmax_with_temperature, solutions=solutions)

``check`` runs the exercise's test cases on tiny fixed tensors and prints a pass or a specific
hint; it never raises, so the lesson runs to the end with the exercise unfilled. It returns
the function to use from then on: the student's if it passed, otherwise the reference solution
(so later cells still work). With ``solutions=True`` (instructor mode, ``labkd run
--solutions``) it checks and returns the reference solution.

Each topic module registers its exercises with :func:`exercise`; reference solutions are in
:mod:`labkd.solutions`.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass


class ExerciseFailed(AssertionError):
    """Raised inside a checker with the message to show the student."""


@dataclass
class Exercise:
    name: str
    title: str
    checker: Callable[[Callable], None]
    solution: Callable
    wrong_answers: tuple[Callable, ...] = ()


@dataclass
class CheckResult:
    name: str
    passed: bool
    message: str
    used: str  # "yours" or "solution"

    def _repr_html_(self) -> str:
        colour, mark = ("#2e7d32", "✔") if self.passed else ("#c62828", "✘")
        return (f'<div style="border-left:4px solid {colour};padding:4px 8px"><b>{mark} {html.escape(self.name)}</b>: '
                f"{html.escape(self.message)}</div>")

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'NOT YET'} {self.name}: {self.message}"


REGISTRY: dict[str, Exercise] = {}


def exercise(name: str, title: str, solution: Callable, wrong_answers: tuple[Callable, ...] = ()):
    """Register ``checker`` (decorated) for the exercise whose function is called ``name``.

    A checker calls the candidate on fixed inputs and raises :class:`ExerciseFailed` with a
    hint when something is wrong. ``wrong_answers`` are deliberate mistakes the tests use to
    prove the checker catches them.
    """
    def register(checker: Callable[[Callable], None]) -> Callable[[Callable], None]:
        if name in REGISTRY:
            raise ValueError(f"exercise {name!r} is registered twice")
        REGISTRY[name] = Exercise(name, title, checker, solution, wrong_answers)
        return checker
    return register


def _load_topics() -> None:
    # Import the topic modules so they register their exercises.
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def get(name: str) -> Exercise:
    _load_topics()
    if name not in REGISTRY:
        raise ValueError(f"no exercise named {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name]


def run_checker(name: str, candidate: Callable) -> CheckResult:
    """Run one exercise's checker on ``candidate``; never raises."""
    ex = get(name)
    try:
        ex.checker(candidate)
    except NotImplementedError as error:
        hint = str(error) or "fill in the function body"
        return CheckResult(ex.title, False, f"not done yet: {hint}. Later cells use the reference solution.", "solution")
    except ExerciseFailed as error:
        return CheckResult(ex.title, False, f"{error} Later cells use the reference solution.", "solution")
    except Exception as error:  # the student's code crashed: say where, keep the lesson going
        return CheckResult(ex.title, False, f"your function raised {type(error).__name__}: {error}. "
                           f"Later cells use the reference solution.", "solution")
    return CheckResult(ex.title, True, "correct — well done. Later cells use your function.", "yours")


def check(candidate: Callable, name: str | None = None, solutions: bool = False, show: bool = True) -> Callable:
    """Check ``candidate`` (its ``__name__`` names the exercise) and return the function to use."""
    name = name or candidate.__name__
    ex = get(name)
    result = run_checker(name, ex.solution if solutions else candidate)
    if solutions:
        result.message = "instructor mode: the reference solution " + ("passes." if result.passed else "FAILS: " + result.message)
    if show:
        _show(result)
    return candidate if result.passed and not solutions else ex.solution


def _show(result: CheckResult) -> None:
    try:
        from IPython.display import display
    except ImportError:
        print(result)
        return
    display(result)


def close(a, b, atol: float = 1e-5) -> bool:
    """``torch.allclose`` that also accepts non-tensors and shape mismatches (returns False)."""
    import torch

    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape:
        return False
    return bool(torch.allclose(a.float(), b.float(), atol=atol))


def one_number(got, what: str = "one number"):
    """An answer that must be one number: a Python int or float, or a one-element tensor (its
    ``.item()``). Anything else raises :class:`ExerciseFailed` saying "return ``what``"."""
    import torch

    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            raise ExerciseFailed(f"return {what}, not a tensor of shape {tuple(got.shape)}.")
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise ExerciseFailed(f"return {what}, got {type(got).__name__}.")
    return got
