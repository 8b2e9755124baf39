"""labkd.exercises.soft_targets: each checker passes the reference solution, catches every
deliberate mistake with its own hint, and reports an unfilled stub without crashing."""

from __future__ import annotations

import pytest

from labkd import exercises, solutions

NAMES = ["softmax_with_temperature", "entropy_in_bits", "accuracy_from_logits"]


@pytest.mark.parametrize("name", NAMES)
def test_reference_solution_passes(name: str) -> None:
    result = exercises.run_checker(name, exercises.get(name).solution)
    assert result.passed, result.message
    assert result.used == "yours"


@pytest.mark.parametrize("name", NAMES)
def test_each_wrong_answer_fails_with_its_own_hint(name: str) -> None:
    ex = exercises.get(name)
    assert len(ex.wrong_answers) >= 2
    messages = []
    for wrong in ex.wrong_answers:
        result = exercises.run_checker(name, wrong)
        assert not result.passed, f"{wrong.__name__} passed the checker of {name}"
        assert result.used == "solution"
        assert "raised" not in result.message, f"{wrong.__name__} crashed instead of getting a hint: {result.message}"
        messages.append(result.message)
    assert len(set(messages)) == len(messages), f"two mistakes share one hint: {messages}"


@pytest.mark.parametrize("name, words", [
    ("softmax_with_temperature", ["no effect", "do not multiply", "dim=-1"]),
    ("entropy_in_bits", ["nats", "NaN", "minus sign", "dim=-1"]),
    ("accuracy_from_logits", ["dim=1", "divide", "argmax"]),
])
def test_hints_name_the_mistake(name: str, words: list[str]) -> None:
    ex = exercises.get(name)
    for wrong, word in zip(ex.wrong_answers, words):
        assert word in exercises.run_checker(name, wrong).message, (wrong.__name__, word)


@pytest.mark.parametrize("name", NAMES)
def test_unfilled_stub_is_reported_not_raised(name: str) -> None:
    def stub(*args):
        raise NotImplementedError("Exercise: fill me in")

    stub.__name__ = name
    result = exercises.run_checker(name, stub)
    assert not result.passed and "not done yet" in result.message and "fill me in" in result.message
    used = exercises.check(stub, show=False)
    assert used is exercises.get(name).solution  # later cells keep working


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
