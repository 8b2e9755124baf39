"""The kd_loss exercise: the reference passes, each classic mistake gets its own hint."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labkd import exercises, losses
from labkd.exercises import kd_loss as topic

# Each deliberate mistake and a phrase its hint must contain.
EXPECTED_HINTS = {
    topic._swapped: "swapped",
    topic._no_t_squared: "T²",
    topic._mean_reduction: "reduction='mean'",
    topic._softmax_input: "LOG-probabilities",
    topic._sum_reduction: "batch size",
    topic._forgot_temperature: "divide the student's AND the teacher's logits",
    topic._detached: "no gradient",
}


@pytest.mark.parametrize("t", [0.5, 1.0, 4.0, 20.0])
def test_reference_equals_the_library_soft_target_loss(t):
    g = torch.Generator().manual_seed(0)
    s, v = torch.randn(8, 10, generator=g) * 3, torch.randn(8, 10, generator=g) * 3
    assert topic.kd_loss(s, v, t).item() == pytest.approx(losses.soft_target_loss(s, v, t).item(), rel=1e-5)


def test_every_wrong_answer_is_registered_and_has_an_expected_hint():
    assert set(exercises.get("kd_loss").wrong_answers) == set(EXPECTED_HINTS)


@pytest.mark.parametrize("wrong", list(EXPECTED_HINTS), ids=lambda f: f.__name__)
def test_each_mistake_fails_with_its_own_hint(wrong):
    result = exercises.run_checker("kd_loss", wrong)
    assert not result.passed
    assert EXPECTED_HINTS[wrong] in result.message, result.message
    others = [h for w, h in EXPECTED_HINTS.items() if w is not wrong]
    assert not any(h in result.message for h in others), f"{wrong.__name__} got another mistake's hint: {result.message}"


def test_the_unfilled_stub_fails_gracefully():
    def kd_loss(student_logits, teacher_logits, temperature):
        raise NotImplementedError("Exercise 1: fill me in")

    result = exercises.run_checker("kd_loss", kd_loss)
    assert not result.passed and "not done yet" in result.message and "Exercise 1" in result.message


@pytest.mark.parametrize("candidate, words", [
    (lambda s, t, T: 1 / 0, "ZeroDivisionError"),
    (lambda s, t, T: 0.5, "torch tensor"),
    (lambda s, t, T: F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="none") * T * T, "scalar"),
    (lambda s, t, T: topic.kd_loss(s, t, T) + 0.3, "should be"),
])
def test_other_mistakes_get_a_message_not_a_crash(candidate, words):
    result = exercises.run_checker("kd_loss", candidate)
    assert not result.passed and words in result.message, result.message


def test_check_returns_the_students_function_only_when_it_passes():
    def kd_loss(student_logits, teacher_logits, temperature):
        return topic.kd_loss(student_logits, teacher_logits, temperature)

    assert exercises.check(kd_loss, show=False) is kd_loss
    assert exercises.check(topic._swapped, name="kd_loss", show=False) is topic.kd_loss
    assert exercises.check(kd_loss, solutions=True, show=False) is topic.kd_loss


def test_solution_is_listed_for_instructors():
    from labkd import solutions

    assert "kd_loss" in solutions.names()
    assert solutions.kd_loss is topic.kd_loss
