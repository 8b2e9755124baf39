"""Exercises of lesson 08 (ensembles and specialists).

- ``geometric_mean_targets(teacher_logits, temperature)``: the soft targets of an ensemble as the
  normalised geometric mean of its members' soft targets.
- ``dustbin_labels(labels, classes)``: relabel a dataset for a specialist and its dustbin class.
"""

from __future__ import annotations

import torch
from torch import Tensor

from labkd.exercises import ExerciseFailed, close, exercise

# --------------------------------------------------------------------------------------------
# Exercise 1: geometric-mean ensemble targets


def geometric_mean_targets(teacher_logits: Tensor, temperature: float) -> Tensor:
    """Reference: the normalised geometric mean over the K members of softmax(z_k / T).
    teacher_logits (K, N, C) -> (N, C), rows summing to 1."""
    log_p = torch.log_softmax(teacher_logits / temperature, dim=-1)
    return torch.softmax(log_p.mean(dim=0), dim=-1)


def _arithmetic(teacher_logits: Tensor, temperature: float) -> Tensor:
    return torch.softmax(teacher_logits / temperature, dim=-1).mean(dim=0)


def _not_normalised(teacher_logits: Tensor, temperature: float) -> Tensor:
    return torch.log_softmax(teacher_logits / temperature, dim=-1).mean(dim=0).exp()


def _no_temperature(teacher_logits: Tensor, temperature: float) -> Tensor:
    return torch.softmax(torch.log_softmax(teacher_logits, dim=-1).mean(dim=0), dim=-1)


def _product_not_mean(teacher_logits: Tensor, temperature: float) -> Tensor:
    return torch.softmax(torch.log_softmax(teacher_logits / temperature, dim=-1).sum(dim=0), dim=-1)


def _mean_over_examples(teacher_logits: Tensor, temperature: float) -> Tensor:
    return torch.softmax(torch.log_softmax(teacher_logits / temperature, dim=-1).mean(dim=1), dim=-1)


#: Three members that disagree, on two examples and three classes.
ENSEMBLE_LOGITS = torch.tensor([
    [[4.0, 1.0, 0.0], [0.0, 2.0, 1.0]],
    [[1.0, 3.0, 0.0], [0.5, 0.0, 2.5]],
    [[2.0, 2.0, 2.5], [1.0, 3.0, 0.0]],
])


@exercise("geometric_mean_targets", "Exercise: an ensemble's geometric-mean soft targets", geometric_mean_targets,
          wrong_answers=(_arithmetic, _not_normalised, _no_temperature, _product_not_mean, _mean_over_examples))
def check_geometric_mean_targets(candidate) -> None:
    logits = ENSEMBLE_LOGITS.clone()
    for t in (1.0, 2.0):
        out = candidate(logits.clone(), t)
        want = geometric_mean_targets(logits, t)
        if not isinstance(out, Tensor) or out.shape != want.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            hint = (" You averaged over the examples (dim=1); average over the members (dim=0)."
                    if isinstance(out, Tensor) and out.shape == (3, 3) else " Average over the members, dim=0.")
            raise ExerciseFailed(f"3 members x 2 examples x 3 classes should give targets of shape (2, 3), got {got}.{hint}")
        if close(out, want):
            continue
        where = f"At T = {t:g}"
        if not close(out.sum(-1), torch.ones(2)):
            if close(out, _not_normalised(logits, t)):
                raise ExerciseFailed(f"{where} your rows sum to {[round(v, 3) for v in out.sum(-1).tolist()]}, not 1: "
                                     f"the geometric mean of distributions is not a distribution — renormalise it "
                                     f"(a softmax of the mean log-probabilities does that).")
            raise ExerciseFailed(f"{where} each row should be a distribution summing to 1.")
        if close(out, _arithmetic(logits, t)):
            raise ExerciseFailed(f"{where} you returned the arithmetic mean of the probabilities; the geometric mean "
                                 f"averages the *log*-probabilities, then renormalises.")
        if close(out, _product_not_mean(logits, t)):
            raise ExerciseFailed(f"{where} you multiplied the members' probabilities (a sum of logs): take the K-th "
                                 f"root, i.e. the mean of the log-probabilities over the members, not their sum.")
        if t != 1.0 and close(out, _no_temperature(logits, t)):
            raise ExerciseFailed(f"{where} the targets are as sharp as at T = 1: divide the logits by the temperature "
                                 f"before the log-softmax.")
        raise ExerciseFailed(f"{where} expected {[[round(v, 4) for v in r] for r in want.tolist()]}, got "
                             f"{[[round(v, 4) for v in r] for r in out.tolist()]}. Steps: log_softmax(logits / T) over "
                             f"the classes, mean over the members (dim=0), softmax over the classes.")


# --------------------------------------------------------------------------------------------
# Exercise 2: a specialist's labels


def dustbin_labels(labels: Tensor, classes: list[int]) -> Tensor:
    """Reference: ``classes[i]`` becomes i, every other label becomes ``len(classes)`` (the dustbin).
    labels (N,) long -> (N,) long."""
    out = torch.full_like(labels, len(classes))
    for i, c in enumerate(classes):
        out[labels == c] = i
    return out


def _keep_original_ids(labels: Tensor, classes: list[int]) -> Tensor:
    out = torch.full_like(labels, len(classes))
    for c in classes:
        out[labels == c] = c
    return out


def _dustbin_minus_one(labels: Tensor, classes: list[int]) -> Tensor:
    out = torch.full_like(labels, -1)
    for i, c in enumerate(classes):
        out[labels == c] = i
    return out


def _dustbin_first(labels: Tensor, classes: list[int]) -> Tensor:
    out = torch.zeros_like(labels)
    for i, c in enumerate(classes):
        out[labels == c] = i + 1
    return out


def _sorted_order(labels: Tensor, classes: list[int]) -> Tensor:
    return dustbin_labels(labels, sorted(classes))


def _dustbin_is_num_classes(labels: Tensor, classes: list[int]) -> Tensor:
    out = torch.full_like(labels, 10)
    for i, c in enumerate(classes):
        out[labels == c] = i
    return out


@exercise("dustbin_labels", "Exercise: a specialist's labels and its dustbin class", dustbin_labels,
          wrong_answers=(_keep_original_ids, _dustbin_minus_one, _dustbin_first, _sorted_order, _dustbin_is_num_classes))
def check_dustbin_labels(candidate) -> None:
    labels = torch.tensor([0, 6, 2, 9, 4, 6, 1, 0, 7])
    classes = [6, 0, 2, 4]  # shirt, T-shirt, pullover, coat: in this order
    want = dustbin_labels(labels, classes)  # [1, 0, 2, 4, 3, 0, 4, 1, 4]
    before = labels.clone()
    out = candidate(labels, list(classes))
    if not torch.equal(labels, before):
        raise ExerciseFailed("your function changed the labels it was given; build a new tensor (torch.full_like, clone).")
    if not isinstance(out, Tensor) or out.shape != labels.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ExerciseFailed(f"return one new label per image, a tensor of shape {tuple(labels.shape)}; got {got}.")
    if out.dtype != torch.long:
        raise ExerciseFailed(f"return integer class ids (torch.long) that cross-entropy accepts, got {out.dtype}.")
    if torch.equal(out, want):
        return
    shown = f"For labels {labels.tolist()} and classes {classes} expected {want.tolist()}, got {out.tolist()}."
    if int(out.min()) < 0:
        raise ExerciseFailed(f"{shown} The dustbin is a real class with its own output unit: give it the id "
                             f"len(classes) = {len(classes)}, not a negative number.")
    if int(out.max()) > len(classes):
        raise ExerciseFailed(f"{shown} A specialist has only len(classes) + 1 = {len(classes) + 1} outputs, so its "
                             f"labels are 0..{len(classes)}: renumber the special classes by their position in "
                             f"`classes`, and give every other label the dustbin id {len(classes)}.")
    if torch.equal(out, _dustbin_first(labels, classes)):
        raise ExerciseFailed(f"{shown} Put the dustbin last (id len(classes)), after the special classes 0..len(classes)-1: "
                             f"the combination reads the specialist's dustbin from its last output (coarse_log_probs puts the "
                             f"summed other classes last too).")
    if torch.equal(out, _sorted_order(labels, classes)):
        raise ExerciseFailed(f"{shown} Number the special classes in the order `classes` lists them (classes[0] -> 0), "
                             f"not in sorted order: the head's rows follow that order.")
    raise ExerciseFailed(f"{shown} classes[i] becomes i; everything else becomes len(classes).")
