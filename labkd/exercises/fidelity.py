"""Exercise of lesson 09 (fidelity): where do a teacher and its student disagree, and who is right?

``disagreement_breakdown(teacher_logits, student_logits, labels)`` sorts the test images into
five kinds; top-1 agreement is two of them (both right, and both wrong *with the same class*),
accuracy is others. Writing it shows why agreement and accuracy are different questions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from labkd.exercises import ExerciseFailed, exercise
from labkd.fidelity import KINDS


def disagreement_breakdown(teacher_logits: Tensor, student_logits: Tensor, labels: Tensor) -> dict[str, int]:
    """Reference: how many images are of each of :data:`KINDS`. (N, C), (N, C), (N,) -> {kind: count}."""
    t, s = teacher_logits.argmax(dim=1), student_logits.argmax(dim=1)
    t_ok, s_ok = t == labels, s == labels
    return {
        "both right": int((t_ok & s_ok).sum()),
        "only the teacher right": int((t_ok & ~s_ok).sum()),
        "only the student right": int((~t_ok & s_ok).sum()),
        "both wrong, same class": int((~t_ok & ~s_ok & (t == s)).sum()),
        "both wrong, different classes": int((~t_ok & ~s_ok & (t != s)).sum()),
    }


def agreement_from(breakdown: dict[str, int]) -> float:
    """Top-1 agreement from a breakdown: both right, plus both wrong with the same class."""
    total = sum(breakdown.values())
    return (breakdown["both right"] + breakdown["both wrong, same class"]) / total if total else float("nan")


def _wrong_together_is_agreement(teacher_logits, student_logits, labels):
    out = disagreement_breakdown(teacher_logits, student_logits, labels)
    both = out["both wrong, same class"] + out["both wrong, different classes"]
    return {**out, "both wrong, same class": both, "both wrong, different classes": 0}


def _swapped_roles(teacher_logits, student_logits, labels):
    return disagreement_breakdown(student_logits, teacher_logits, labels)


def _argmax_over_examples(teacher_logits, student_logits, labels):
    n = min(len(labels), teacher_logits.shape[1])
    return disagreement_breakdown(teacher_logits.T[:n], student_logits.T[:n], labels[:n])


def _fractions(teacher_logits, student_logits, labels):
    out = disagreement_breakdown(teacher_logits, student_logits, labels)
    return {k: v / len(labels) for k, v in out.items()}


# 8 images, 3 classes: teacher predictions, student predictions, labels
_T = torch.tensor([0, 1, 2, 0, 1, 2, 2, 1])
_S = torch.tensor([0, 1, 0, 0, 2, 1, 1, 1])
_Y = torch.tensor([0, 1, 2, 1, 2, 0, 2, 0])
# image: 0 both right, 1 both right, 2 only teacher, 3 both wrong same (0), 4 only student,
#        5 both wrong different (2 vs 1), 6 only teacher, 7 both wrong same (1)


def _logits_for(pred: Tensor, c: int = 3) -> Tensor:
    g = torch.Generator().manual_seed(int(pred.sum()))
    return torch.nn.functional.one_hot(pred, c).float() * 3 + torch.rand(len(pred), c, generator=g)


@exercise("disagreement_breakdown", "Exercise: where teacher and student disagree", disagreement_breakdown,
          wrong_answers=(_wrong_together_is_agreement, _swapped_roles, _argmax_over_examples, _fractions))
def check_disagreement_breakdown(candidate) -> None:
    t_logits, s_logits = _logits_for(_T), _logits_for(_S)
    out = candidate(t_logits.clone(), s_logits.clone(), _Y.clone())
    if not isinstance(out, dict) or set(out) != set(KINDS):
        raise ExerciseFailed(f"return a dict with exactly these keys: {list(KINDS)}.")
    want = disagreement_breakdown(t_logits, s_logits, _Y)
    try:
        got = {k: float(v) for k, v in out.items()}
    except (TypeError, ValueError):
        raise ExerciseFailed("each value should be a count (an int).") from None
    if got == want:
        return
    if abs(sum(got.values()) - 1) < 1e-6:
        raise ExerciseFailed("these are fractions; return how many images (counts) are of each kind — they add up "
                             f"to the {len(_Y)} images.")
    if got == {k: float(v) for k, v in _swapped_roles(t_logits, s_logits, _Y).items()}:
        raise ExerciseFailed("the teacher and the student are swapped: 'only the teacher right' counts images the "
                             "teacher gets right and the student gets wrong.")
    if got == {k: float(v) for k, v in _wrong_together_is_agreement(t_logits, s_logits, _Y).items()}:
        raise ExerciseFailed("two networks that are both wrong agree only if they pick the SAME wrong class: split "
                             "'both wrong' by whether the two predicted classes are equal.")
    if sum(got.values()) != len(_Y):
        raise ExerciseFailed(f"the counts add up to {sum(got.values()):g}, not to the {len(_Y)} images: take the "
                             f"argmax over the classes (dim=1), one prediction per image.")
    raise ExerciseFailed(f"expected {want}, got {out}. Compare each network's argmax with the label, and for images "
                         f"both get wrong, compare the two argmaxes with each other.")
