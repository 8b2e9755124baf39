r"""Exercises of lesson 02 (temperature sweep): the soft-target loss, written by hand.

.. math::
    \mathcal{L}_{soft} = T^2 \cdot \frac1N \sum_n \mathrm{KL}\big(\mathrm{softmax}(v_n/T) \,\|\, \mathrm{softmax}(z_n/T)\big)

with teacher logits :math:`v` (the target) and student logits :math:`z`. The reference is
:func:`labkd.losses.soft_target_loss`; the checker recognises the usual mistakes by computing
them on the same fixed tensors and comparing.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from labkd.exercises import ExerciseFailed, exercise


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Reference: T² · KL(softmax(teacher/T) ‖ softmax(student/T)), mean over the batch.

    student_logits, teacher_logits (N, C); returns a scalar tensor that carries gradients to
    ``student_logits``.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature ** 2


# --- deliberate mistakes (the tests prove the checker names each one) ---------------------------


def _swapped(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """The student's distribution used as the target: KL(student ‖ teacher)."""
    return kd_loss(teacher_logits, student_logits, temperature)


def _no_t_squared(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    return kd_loss(student_logits, teacher_logits, temperature) / temperature ** 2


def _mean_reduction(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=-1)
    with warnings.catch_warnings():  # torch warns about this very mistake; the checker explains it
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(log_p_student, p_teacher, reduction="mean") * temperature ** 2


def _softmax_input(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    p_student = F.softmax(student_logits / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(p_student, p_teacher, reduction="batchmean") * temperature ** 2


def _sum_reduction(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    return kd_loss(student_logits, teacher_logits, temperature) * student_logits.shape[0]


def _forgot_temperature(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    return kd_loss(student_logits, teacher_logits, 1.0) * temperature ** 2


def _detached(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    return kd_loss(student_logits.detach(), teacher_logits, temperature)


WRONG_ANSWERS = (_swapped, _no_t_squared, _mean_reduction, _softmax_input, _sum_reduction, _forgot_temperature,
                 _detached)

# Each mistake the checker recognises, with what to tell the student. Order matters: the first
# mistake that reproduces the candidate's numbers at every temperature wins.
_MISTAKES = (
    (_no_t_squared, "your loss is the right one divided by T²: multiply the KL by temperature ** 2. "
                    "Without it the soft-target gradients shrink like 1/T², so at T = 20 the student "
                    "barely learns from the teacher."),
    (_swapped, "the arguments of the KL are swapped: the teacher's softened distribution is the target. "
               "F.kl_div(input, target) wants the student's log-probabilities as input and the teacher's "
               "probabilities as target."),
    (_mean_reduction, "your loss is the right one divided by the number of classes C: "
                      "F.kl_div(..., reduction='mean') averages over every element (N·C of them). "
                      "Use reduction='batchmean', which sums over classes and averages over examples."),
    (_softmax_input, "F.kl_div expects LOG-probabilities as its first argument: use "
                     "F.log_softmax(student_logits / T, dim=-1), not F.softmax."),
    (_sum_reduction, "your loss grows with the batch size: average over the examples "
                     "(reduction='batchmean'), do not sum."),
    (_forgot_temperature, "both distributions must be softened: divide the student's AND the teacher's logits "
                          "by T before the (log-)softmax."),
)


def _case(seed: int, n: int, c: int, scale: float) -> Tensor:
    return torch.randn(n, c, generator=torch.Generator().manual_seed(seed)) * scale


@exercise("kd_loss", "Exercise: the soft-target (KD) loss", kd_loss, wrong_answers=WRONG_ANSWERS)
def check_kd_loss(candidate) -> None:
    student = _case(1, 4, 5, 3.0)
    teacher = _case(2, 4, 5, 3.0)
    temperatures = (1.0, 2.0, 4.0, 20.0)
    outputs = {}
    for t in temperatures:
        z = student.clone().requires_grad_(True)
        out = candidate(z, teacher.clone(), t)
        if not isinstance(out, Tensor):
            raise ExerciseFailed(f"kd_loss should return a torch tensor, got {type(out).__name__}.")
        if out.numel() != 1:
            raise ExerciseFailed(f"kd_loss should return one number (a scalar tensor), got shape {tuple(out.shape)}: "
                                 f"reduce over the classes and average over the batch.")
        outputs[t] = (z, out.reshape(()))
    expected = {t: kd_loss(student, teacher, t) for t in temperatures}

    def matches(values: dict[float, Tensor]) -> bool:
        return all(torch.allclose(outputs[t][1].detach().double(), values[t].double(), rtol=1e-4, atol=1e-7)
                   for t in temperatures)

    if not matches(expected):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about reduction="mean"; the hint says more
            for mistake, hint in _MISTAKES:
                if matches({t: mistake(student, teacher, t) for t in temperatures}):
                    raise ExerciseFailed(hint)
        t = 4.0
        raise ExerciseFailed(f"at T = {t:g} the loss should be {float(expected[t]):.4f}, yours is "
                             f"{float(outputs[t][1].detach()):.4f}. Soften both logits with T, take the KL from the teacher's "
                             f"probabilities to the student's, average over the batch and multiply by T².")
    same = float(candidate(teacher.clone(), teacher.clone(), 4.0).detach())
    if abs(same) > 1e-5:
        raise ExerciseFailed(f"when the student equals the teacher the loss should be 0, yours is {same:.4g}.")
    z, out = outputs[4.0]
    if not out.requires_grad:
        raise ExerciseFailed("the loss carries no gradient to the student's logits: do not .detach() them or "
                             "compute under torch.no_grad().")
    out.backward()
    if z.grad is None or not torch.isfinite(z.grad).all():
        raise ExerciseFailed("the gradient with respect to the student's logits is missing or not finite.")
