"""labkd.exercises.fitnets: each hint names its mistake; other correct answers pass. (What every
exercise must do — pass its reference, fail each mistake, survive a stub — is in test_exercises_framework.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labkd import exercises, losses, solutions

NAMES = ["hint_loss", "make_regressor"]


@pytest.mark.parametrize("name, words", [
    ("hint_loss", ["take the mean", "mean absolute error", "square the differences", "no gradient"]),
    ("make_regressor", ["order of the arguments", "kernel_size=1", "not a function", "frozen"]),
])
def test_hints_name_the_mistake(name: str, words: list[str]) -> None:
    ex = exercises.get(name)
    assert len(ex.wrong_answers) == len(words)
    for wrong, word in zip(ex.wrong_answers, words):
        assert word in exercises.run_checker(name, wrong).message, (wrong.__name__, word)


def test_other_correct_answers_pass() -> None:
    def hint_loss(regressed, hint):
        return torch.nn.functional.mse_loss(regressed, hint)

    def make_regressor(student_channels, teacher_channels):  # a padded 3x3 convolution also fits
        return nn.Sequential(nn.Conv2d(student_channels, teacher_channels, 3, padding=1))

    assert exercises.check(hint_loss, show=False) is hint_loss
    assert exercises.check(make_regressor, show=False) is make_regressor
    assert exercises.check(hint_loss, solutions=True, show=False) is exercises.get("hint_loss").solution


def test_solutions_agree_with_the_library() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 4, 5, 5, generator=g)
    assert torch.allclose(solutions.hint_loss(a, b), losses.hint_loss(a, b))
    mine = solutions.make_regressor(16, 64)
    library = losses.make_hint_regressor((16, 14, 14), (64, 14, 14))
    assert [p.shape for p in mine.parameters()] == [p.shape for p in library.parameters()]


@pytest.mark.parametrize("name", NAMES)
def test_solutions_module_exposes_them(name: str) -> None:
    assert getattr(solutions, name) is exercises.get(name).solution
    assert name in solutions.names()
