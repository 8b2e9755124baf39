r"""Exercises of lesson 06 (Hinton et al.'s MNIST experiments).

- ``fraction_of_gap_closed(baseline_errors, distilled_errors, teacher_errors)``: how much of the
  teacher/student gap did distillation close?
- ``soft_target_gradient(student_logits, teacher_logits, temperature)``: the gradient of
  :math:`T^2\,\mathrm{KL}` with respect to the student's logits, the quantity that becomes logit
  matching at high temperature (§2.1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from labkd.exercises import ExerciseFailed, close, exercise
from labkd.losses import soft_target_loss

# --------------------------------------------------------------------------------------------
# Exercise 1: the fraction of the gap closed


def fraction_of_gap_closed(baseline_errors: float, distilled_errors: float, teacher_errors: float) -> float:
    """Reference: (baseline - distilled) / (baseline - teacher). 1 = as good as the teacher,
    0 = no better than the labels-only student."""
    return (baseline_errors - distilled_errors) / (baseline_errors - teacher_errors)


def _relative_improvement(baseline_errors: float, distilled_errors: float, teacher_errors: float) -> float:
    return (baseline_errors - distilled_errors) / baseline_errors


def _gap_remaining(baseline_errors: float, distilled_errors: float, teacher_errors: float) -> float:
    return (distilled_errors - teacher_errors) / (baseline_errors - teacher_errors)


def _against_the_teacher(baseline_errors: float, distilled_errors: float, teacher_errors: float) -> float:
    return (baseline_errors - distilled_errors) / teacher_errors


#: (baseline, distilled, teacher, what the case is)
GAP_CASES = (
    (146, 74, 67, "the paper's numbers"),
    (180, 180, 100, "a distilled student no better than the baseline"),
    (150, 100, 100, "a distilled student as good as the teacher"),
    (120, 130, 80, "a distilled student worse than the baseline"),
)


@exercise("fraction_of_gap_closed", "Exercise 1: the fraction of the gap closed", fraction_of_gap_closed,
          wrong_answers=(_relative_improvement, _gap_remaining, _against_the_teacher))
def check_fraction_of_gap_closed(candidate) -> None:
    for base, kd, teacher, what in GAP_CASES:
        got = candidate(base, kd, teacher)
        if isinstance(got, Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise ExerciseFailed(f"return one number (a float), got {type(got).__name__}.")
        want = fraction_of_gap_closed(base, kd, teacher)
        if math.isclose(got, want, abs_tol=1e-6):
            continue
        where = f"With {what} (baseline {base}, distilled {kd}, teacher {teacher} errors) the answer is {want:.3f}; you returned {got:.3f}."
        if math.isclose(got, _gap_remaining(base, kd, teacher), abs_tol=1e-6):
            raise ExerciseFailed(f"{where} That is the share of the gap still *left*; we want the share closed, "
                                 f"measured from the baseline: (baseline − distilled) on top.")
        if math.isclose(got, _relative_improvement(base, kd, teacher), abs_tol=1e-6):
            raise ExerciseFailed(f"{where} You divided by the baseline's errors (a relative improvement); divide by "
                                 f"the gap between the baseline and the teacher, (baseline − teacher).")
        if math.isclose(got, _against_the_teacher(base, kd, teacher), abs_tol=1e-6):
            raise ExerciseFailed(f"{where} You divided by the teacher's errors; divide by the whole gap, "
                                 f"(baseline − teacher).")
        raise ExerciseFailed(f"{where} The gap is (baseline − teacher); distillation closed (baseline − distilled) "
                             f"of it.")


# --------------------------------------------------------------------------------------------
# Exercise 2: the soft-target gradient


def soft_target_gradient(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    r"""Reference: :math:`T\,(\mathrm{softmax}(z/T) - \mathrm{softmax}(v/T))` per example, the gradient of
    :math:`T^2\,\mathrm{KL}(\mathrm{softmax}(v/T)\,\|\,\mathrm{softmax}(z/T))` with respect to z.
    (N, C), (N, C), T -> (N, C)."""
    t = temperature
    return t * (torch.softmax(student_logits / t, dim=-1) - torch.softmax(teacher_logits / t, dim=-1))


def _without_t2(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    t = temperature
    return (torch.softmax(student_logits / t, dim=-1) - torch.softmax(teacher_logits / t, dim=-1)) / t


def _t_squared(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    t = temperature
    return t * t * (torch.softmax(student_logits / t, dim=-1) - torch.softmax(teacher_logits / t, dim=-1))


def _sign_flipped(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    t = temperature
    return t * (torch.softmax(teacher_logits / t, dim=-1) - torch.softmax(student_logits / t, dim=-1))


def _no_softening(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    return temperature * (torch.softmax(student_logits, dim=-1) - torch.softmax(teacher_logits, dim=-1))


def _autograd_reference(z: Tensor, v: Tensor, t: float) -> Tensor:
    """N times the autograd gradient of the library's batch-mean loss: per-example gradients."""
    z = z.clone().requires_grad_(True)
    soft_target_loss(z, v, t).backward()
    return z.grad * len(z)


@exercise("soft_target_gradient", "Exercise 2: the gradient of the soft-target loss", soft_target_gradient,
          wrong_answers=(_without_t2, _t_squared, _sign_flipped, _no_softening))
def check_soft_target_gradient(candidate) -> None:
    z = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.3, 0.2, -0.4, 1.5]], dtype=torch.float64)
    v = torch.tensor([[6.0, 1.0, -2.0, 0.0], [-1.0, 4.0, 0.0, 2.0]], dtype=torch.float64)
    for t in (1.0, 4.0):
        got = candidate(z.clone(), v.clone(), t)
        if not isinstance(got, Tensor) or got.shape != z.shape:
            raise ExerciseFailed(f"return a tensor shaped like the logits, {tuple(z.shape)}: one gradient entry per "
                                 f"logit; got {getattr(got, 'shape', type(got).__name__)}.")
        want = _autograd_reference(z, v, t)
        if close(got, want, atol=1e-6):
            continue
        at = f"At T = {t:g}"
        if t == 1.0 and close(got, -want, atol=1e-6):
            raise ExerciseFailed(f"{at} the sign is reversed: the gradient of the loss points *away* from the teacher, "
                                 f"softmax(z/T) − softmax(v/T) (student minus teacher), so that a descent step moves "
                                 f"the student towards the teacher.")
        if t != 1.0 and close(got, want / t**2, atol=1e-6):
            raise ExerciseFailed(f"{at} your gradient is T² times too small: that is the gradient of the KL alone. "
                                 f"The loss is T²·KL, and the chain rule through z/T gives one 1/T, so the result is "
                                 f"T·(q − p).")
        if t != 1.0 and close(got, want * t, atol=1e-6):
            raise ExerciseFailed(f"{at} your gradient is T times too large: T² from the loss, but the chain rule "
                                 f"through z/T divides by T once, so the result is T·(q − p), not T²·(q − p).")
        if t != 1.0 and close(got, t * (torch.softmax(z, -1) - torch.softmax(v, -1)), atol=1e-6):
            raise ExerciseFailed(f"{at} the probabilities must be softened: q = softmax(z/T) and p = softmax(v/T), "
                                 f"both divided by T before the softmax.")
        raise ExerciseFailed(f"{at} expected {[[round(x, 4) for x in row] for row in want.tolist()]}, got "
                             f"{[[round(float(x), 4) for x in row] for row in got.tolist()]}. The formula is "
                             f"T·(softmax(z/T) − softmax(v/T)), row by row.")
    if not close(candidate(z, z.clone(), 3.0), torch.zeros_like(z), atol=1e-9):
        raise ExerciseFailed("when the student's logits equal the teacher's the gradient must be zero.")
