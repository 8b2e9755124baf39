"""Exercise of lesson 09 (fidelity): top-1 agreement between a teacher and a student."""

from __future__ import annotations

import torch
from torch import Tensor

from labkd.exercises import ExerciseFailed, exercise


def top1_agreement(teacher_logits: Tensor, student_logits: Tensor) -> float:
    """Reference: the fraction of rows on which both predict the same class. (N, C), (N, C) -> float."""
    return float((teacher_logits.argmax(dim=1) == student_logits.argmax(dim=1)).float().mean())


def _compared_values(teacher_logits: Tensor, student_logits: Tensor) -> float:
    return float((teacher_logits.max(dim=1).values == student_logits.max(dim=1).values).float().mean())


def _argmax_over_examples(teacher_logits: Tensor, student_logits: Tensor) -> float:
    return float((teacher_logits.argmax(dim=0) == student_logits.argmax(dim=0)).float().mean())


def _count(teacher_logits: Tensor, student_logits: Tensor) -> float:
    return float((teacher_logits.argmax(dim=1) == student_logits.argmax(dim=1)).sum())


def _accuracy_against_teacher_probs(teacher_logits: Tensor, student_logits: Tensor) -> float:
    # agreement weighted by the teacher's confidence: a soft score, not top-1 agreement
    p = torch.softmax(teacher_logits, dim=1)
    return float(p.gather(1, student_logits.argmax(dim=1, keepdim=True)).mean())


@exercise("top1_agreement", "Exercise: top-1 agreement between teacher and student", top1_agreement,
          wrong_answers=(_compared_values, _argmax_over_examples, _count, _accuracy_against_teacher_probs))
def check_top1_agreement(candidate) -> None:
    # 5 examples, 3 classes; the student agrees with the teacher on rows 0, 1 and 3 (3/5), and
    # disagrees on row 2 although both have the same largest *value* there.
    teacher = torch.tensor([[2.0, 0.5, 0.1], [0.1, 3.0, 0.0], [1.0, 0.2, 0.3], [0.0, 0.4, 2.0], [0.2, 2.5, 0.1]])
    student = torch.tensor([[1.5, 0.2, 0.1], [0.3, 2.0, 1.0], [0.2, 0.3, 1.0], [0.1, 0.2, 0.9], [3.0, 0.5, 2.2]])
    out = candidate(teacher.clone(), student.clone())
    if isinstance(out, Tensor):
        if out.numel() != 1:
            raise ExerciseFailed(f"return one number, got a tensor of shape {tuple(out.shape)}.")
        out = out.item()
    if not isinstance(out, (int, float)):
        raise ExerciseFailed(f"return a number (a fraction between 0 and 1), got {type(out).__name__}.")
    if abs(out - 3) < 1e-6:
        raise ExerciseFailed("you returned how many rows agree (3); divide by the number of examples for a fraction.")
    if not 0 <= out <= 1:
        raise ExerciseFailed(f"agreement is a fraction between 0 and 1, got {out}.")
    if abs(out - _argmax_over_examples(teacher, student)) < 1e-6:
        raise ExerciseFailed("take the argmax over the classes (dim=1): one predicted class per example, "
                             "not one example per class.")
    if abs(out - _compared_values(teacher, student)) < 1e-6:
        raise ExerciseFailed("compare the predicted classes (argmax, the index of the largest logit), not the "
                             "largest logit values themselves.")
    if abs(out - 0.6) > 1e-6:
        raise ExerciseFailed(f"expected 0.6 (the two pick the same class on 3 of the 5 rows), got {out:.4f}. "
                             f"Top-1 agreement only asks whether the two argmax classes are equal; it does not "
                             f"weigh rows by the teacher's confidence.")
