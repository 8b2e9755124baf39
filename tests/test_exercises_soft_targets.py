"""labkd.exercises.soft_targets: each hint names its mistake. (What every exercise must do — pass
its reference, fail each mistake, survive a stub — is in test_exercises_framework.)"""

from __future__ import annotations

import pytest

from labkd import exercises, solutions

NAMES = ["softmax_with_temperature", "entropy_in_bits", "accuracy_from_logits", "soft_cross_entropy"]


@pytest.mark.parametrize("name, words", [
    ("softmax_with_temperature", ["no effect", "do not multiply", "dim=-1"]),
    ("entropy_in_bits", ["nats", "NaN", "minus sign", "dim=-1"]),
    ("accuracy_from_logits", ["dim=1", "divide", "argmax"]),
    ("soft_cross_entropy", ["argmax", "LOG", "number of classes", "batch size", "sign is reversed"]),
])
def test_hints_name_the_mistake(name: str, words: list[str]) -> None:
    ex = exercises.get(name)
    for wrong, word in zip(ex.wrong_answers, words):
        assert word in exercises.run_checker(name, wrong).message, (wrong.__name__, word)


def test_a_crashing_answer_is_reported() -> None:
    def entropy_in_bits(probs):
        return probs.nonexistent()

    result = exercises.run_checker("entropy_in_bits", entropy_in_bits)
    assert not result.passed and "AttributeError" in result.message


def test_check_returns_the_students_function_when_right() -> None:
    import math

    import torch

    def entropy_in_bits(probs):
        safe = torch.where(probs > 0, probs, torch.ones_like(probs))
        return -(probs * torch.log(safe)).sum(-1) / math.log(2)

    assert exercises.check(entropy_in_bits, show=False) is entropy_in_bits
    assert exercises.check(entropy_in_bits, solutions=True, show=False) is exercises.get("entropy_in_bits").solution


@pytest.mark.parametrize("name", NAMES)
def test_solutions_module_exposes_them(name: str) -> None:
    assert getattr(solutions, name) is exercises.get(name).solution
    assert name in solutions.names()
