"""Exercise of lesson 07 (transfer sets with missing classes).

- ``choose_bias_shift(logits, targets, classes, shifts)``: which candidate shift, added to the
  logits of ``classes``, gives the fewest errors on the validation set?
"""

from __future__ import annotations

import torch
from torch import Tensor

from labkd.exercises import ExerciseFailed, exercise, one_number


def _errors(logits: Tensor, targets: Tensor, classes, shift: float, only=None) -> int:
    z = logits.clone()
    z[:, list(classes)] += float(shift)
    wrong = z.argmax(1) != targets
    if only is not None:
        wrong &= torch.isin(targets, torch.tensor(list(only)))
    return int(wrong.sum())


def choose_bias_shift(logits: Tensor, targets: Tensor, classes, shifts: Tensor) -> float:
    """Reference: for each candidate b in ``shifts``, add b to the columns ``classes`` of
    ``logits`` (N, C), count the images whose argmax is not their target, and return the b with
    the fewest errors (on ties, the one closest to 0)."""
    errors = torch.tensor([_errors(logits, targets, classes, b) for b in shifts.tolist()])
    best = shifts[errors == errors.min()]
    return float(best[best.abs().argmin()])


def _wrong_sign(logits, targets, classes, shifts):  # subtracts the shift
    errors = torch.tensor([_errors(logits, targets, classes, -b) for b in shifts.tolist()])
    return float(shifts[errors.argmin()])


def _most_errors(logits, targets, classes, shifts):  # argmax instead of argmin
    errors = torch.tensor([_errors(logits, targets, classes, b) for b in shifts.tolist()])
    return float(shifts[errors.argmax()])


def _only_shifted_classes(logits, targets, classes, shifts):  # counts errors on the 3s only
    errors = torch.tensor([_errors(logits, targets, classes, b, only=classes) for b in shifts.tolist()])
    return float(shifts[errors.argmin()])


def _returns_error_count(logits, targets, classes, shifts):  # the fewest errors, not the shift
    return min(_errors(logits, targets, classes, b) for b in shifts.tolist())


def _cases() -> list[tuple[str, Tensor, Tensor, list[int], Tensor]]:
    """Random logits whose labels were made with a known bias: raising class 2 by about 3 (like the
    missing 3s), and lowering classes 0 and 1 by about 4 (like the 7s and 8s)."""
    out = []
    for description, classes, true_shift, seed in (("class 2 is too low", [2], 3.0, 0),
                                                   ("classes 0 and 1 are too high", [0, 1], -4.0, 1)):
        gen = torch.Generator().manual_seed(seed)
        logits = torch.randn(400, 5, generator=gen) * 2
        z = logits.clone()
        z[:, classes] += true_shift
        targets = z.argmax(1)
        flip = torch.rand(400, generator=gen) < 0.1  # a few labels the shift cannot fix
        targets[flip] = torch.randint(0, 5, (int(flip.sum()),), generator=gen)
        out.append((description, logits, targets, classes, torch.arange(-8.0, 8.01, 0.5)))
    return out


@exercise("choose_bias_shift", "Exercise: choose the bias shift on the validation set", choose_bias_shift,
          wrong_answers=(_wrong_sign, _most_errors, _only_shifted_classes, _returns_error_count))
def check_choose_bias_shift(candidate) -> None:
    for description, logits, targets, classes, shifts in _cases():
        got = one_number(candidate(logits.clone(), targets.clone(), list(classes), shifts.clone()),
                         "one number (the chosen shift)")
        errors = {float(b): _errors(logits, targets, classes, b) for b in shifts.tolist()}
        fewest = min(errors.values())
        where = (f"On test case '{description}' (classes {classes}, {len(targets)} images, candidate shifts "
                 f"{shifts[0]:g} to {shifts[-1]:g}) the fewest errors are {fewest}")
        matches = [b for b in errors if abs(b - float(got)) < 1e-6]
        if not matches:
            if float(got) == fewest:
                raise ExerciseFailed(f"{where}, and you returned {got!r}: that is the number of errors. Return the "
                                     f"shift that gives them (one of the candidates in `shifts`).")
            raise ExerciseFailed(f"{where}; you returned {got!r}, which is not one of the candidate shifts. "
                                 f"Return an element of `shifts`.")
        b = matches[0]
        if errors[b] == fewest:
            continue
        where += f"; your shift {b:+g} gives {errors[b]}."
        if errors.get(-b, None) == fewest:
            raise ExerciseFailed(f"{where} Its opposite, {-b:+g}, would be right: add the shift to the logits of "
                                 f"`classes` (logits[:, classes] + b), do not subtract it.")
        if errors[b] == max(errors.values()):
            raise ExerciseFailed(f"{where} That is the shift with the MOST errors: keep the candidate whose "
                                 f"error count is smallest (argmin, not argmax).")
        only = {s: _errors(logits, targets, classes, s, only=classes) for s in errors}
        if only[b] == min(only.values()):
            raise ExerciseFailed(f"{where} It is the best shift for the images of classes {classes} alone. Raising "
                                 f"a class's bias always helps that class and hurts the others: count the errors "
                                 f"on every image, whatever its class.")
        raise ExerciseFailed(f"{where} For each candidate b: z = logits.clone(); z[:, classes] += b; count "
                             f"(z.argmax(1) != targets); return the b with the smallest count.")
