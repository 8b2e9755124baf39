"""The exercise framework (labkd.exercises) and every registered exercise.

The parametrised tests below cover each exercise any topic module registers: its reference
solution passes, each deliberate wrong answer fails with a hint, and an unfilled stub is
reported without crashing the lesson.
"""

from __future__ import annotations

import pytest

from labkd import exercises, solutions
from labkd.exercises import REGISTRY, CheckResult, ExerciseFailed, _load_topics, check, run_checker

_load_topics()
NAMES = sorted(REGISTRY)
WRONG = [(name, i) for name in NAMES for i in range(len(REGISTRY[name].wrong_answers))]
LATER_CELLS = "Later cells use the reference solution."


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise 1: divide by the temperature, then softmax")


def test_there_are_exercises():
    assert "softmax_with_temperature" in NAMES


# --- every registered exercise --------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_reference_solution_passes(name):
    ex = REGISTRY[name]
    ex.checker(ex.solution)  # raises ExerciseFailed if the checker rejects its own solution
    result = run_checker(name, ex.solution)
    assert result.passed and result.used == "yours"


@pytest.mark.parametrize("name", NAMES)
def test_exercise_is_complete(name):
    ex = REGISTRY[name]
    assert len(ex.wrong_answers) >= 2, "register at least two deliberate wrong answers"
    assert ex.title.strip() and ex.name == name
    assert getattr(solutions, name) is ex.solution
    assert name in solutions.names()


@pytest.mark.parametrize("name, index", WRONG)
def test_each_wrong_answer_fails_with_a_specific_hint(name, index):
    ex = REGISTRY[name]
    wrong = ex.wrong_answers[index]
    with pytest.raises(ExerciseFailed) as info:  # a hint, not a crash inside the checker
        ex.checker(wrong)
    assert len(str(info.value)) > 15
    result = run_checker(name, wrong)
    assert not result.passed and result.used == "solution"
    assert str(info.value) in result.message and LATER_CELLS in result.message


@pytest.mark.parametrize("name", NAMES)
def test_every_mistake_gets_a_hint_of_its_own(name):
    """Per-topic test files check that each hint names its mistake; here: no two mistakes of one
    exercise share a hint, and none of them crashes the checker instead of getting one."""
    messages = [run_checker(name, wrong).message for wrong in REGISTRY[name].wrong_answers]
    assert not [m for m in messages if " raised " in m], messages
    assert len(set(messages)) == len(messages), f"two mistakes of {name} share one hint: {messages}"


@pytest.mark.parametrize("name", NAMES)
def test_unfilled_stub_is_reported_and_the_solution_used(name):
    result = run_checker(name, stub)
    assert not result.passed and result.used == "solution"
    assert result.message.startswith("not done yet: Exercise 1:")
    used = check(stub, name=name, show=False)
    assert used is REGISTRY[name].solution


@pytest.mark.parametrize("name", NAMES)
def test_instructor_mode_returns_the_solution_and_says_it_passes(name, monkeypatch):
    shown = []
    monkeypatch.setattr(exercises, "_show", shown.append)
    used = check(stub, name=name, solutions=True)
    assert used is REGISTRY[name].solution
    assert len(shown) == 1 and shown[0].passed
    assert shown[0].message == "instructor mode: the reference solution passes."


# --- check() on the example exercise ------------------------------------------------------


def softmax_with_temperature(logits, temperature):
    """A student's correct answer, written differently from the reference."""
    import torch

    z = logits / temperature
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def test_check_returns_a_correct_candidate():
    assert check(softmax_with_temperature, show=False) is softmax_with_temperature


def test_check_finds_the_exercise_by_the_functions_name():
    def softmax_with_temperature(logits, temperature):
        raise NotImplementedError("Exercise 1: divide by T")

    solution = REGISTRY["softmax_with_temperature"].solution
    assert check(softmax_with_temperature, show=False) is solution


def test_check_with_a_stub_does_not_raise_and_prints_a_hint(capsys, monkeypatch):
    monkeypatch.setattr(exercises, "_show", lambda result: print(result))
    used = check(stub, name="softmax_with_temperature")
    out = capsys.readouterr().out
    assert used is REGISTRY["softmax_with_temperature"].solution
    assert out.startswith("NOT YET") and "divide by the temperature" in out


def test_check_with_solutions_true_ignores_the_candidate():
    used = check(softmax_with_temperature, solutions=True, show=False)
    assert used is REGISTRY["softmax_with_temperature"].solution


@pytest.mark.parametrize("broken", [
    lambda logits, temperature: 1 / 0,
    lambda logits, temperature: None,
    lambda logits: logits,  # wrong signature
    lambda logits, temperature: logits.numpy(),
])
def test_check_never_raises_on_a_broken_candidate(broken):
    result = run_checker("softmax_with_temperature", broken)
    assert not result.passed and LATER_CELLS in result.message
    assert check(broken, name="softmax_with_temperature", show=False) is REGISTRY["softmax_with_temperature"].solution


def test_crashing_candidate_is_named_in_the_message():
    result = run_checker("softmax_with_temperature", lambda logits, temperature: 1 / 0)
    assert "your function raised ZeroDivisionError" in result.message


def test_unknown_exercise():
    with pytest.raises(ValueError, match=r"no exercise named 'nope'; known: \[.*'softmax_with_temperature'"):
        check(stub, name="nope", show=False)
    with pytest.raises(AttributeError, match="no solution named 'nope'"):
        solutions.nope  # noqa: B018


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):
        exercises.exercise("softmax_with_temperature", "again", solution=lambda: None)(lambda c: None)


def test_result_renders_in_html_and_text():
    good = CheckResult("Exercise <1>", True, "correct & done", "yours")
    bad = CheckResult("Exercise 1", False, "not yet", "solution")
    assert "&lt;1&gt;" in good._repr_html_() and "&amp;" in good._repr_html_() and "✔" in good._repr_html_()
    assert "✘" in bad._repr_html_()
    assert str(good).startswith("PASS") and str(bad).startswith("NOT YET")


def test_close_helper():
    import torch

    assert exercises.close(torch.ones(2), torch.ones(2) + 1e-7)
    assert not exercises.close(torch.ones(2), torch.ones(3))
    assert not exercises.close(torch.ones(2), [1.0, 1.0])
    assert not exercises.close(torch.ones(2), torch.zeros(2))
