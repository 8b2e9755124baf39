"""Exercise of lesson 10 (online distillation): the deep-mutual-learning loss of one student."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from labkd.exercises import ExerciseFailed, exercise


def mutual_loss_for_one(logits: Tensor, other_logits: Sequence[Tensor], targets: Tensor) -> Tensor:
    """Reference (T = 1): CE(y, z_k) + mean over the other students j of KL(p_j || p_k),
    the others detached. logits (N, C), other_logits: list of (N, C), targets (N,) -> scalar."""
    log_p = F.log_softmax(logits, dim=1)
    kl = sum(F.kl_div(log_p, F.log_softmax(z.detach(), dim=1), reduction="batchmean", log_target=True)
             for z in other_logits)
    return F.cross_entropy(logits, targets) + kl / len(other_logits)


def _reversed_kl(logits, other_logits, targets):
    p = F.log_softmax(logits, dim=1)
    kl = sum(F.kl_div(F.log_softmax(z.detach(), dim=1), p, reduction="batchmean", log_target=True) for z in other_logits)
    return F.cross_entropy(logits, targets) + kl / len(other_logits)


def _summed_not_averaged(logits, other_logits, targets):
    log_p = F.log_softmax(logits, dim=1)
    kl = sum(F.kl_div(log_p, F.log_softmax(z.detach(), dim=1), reduction="batchmean", log_target=True)
             for z in other_logits)
    return F.cross_entropy(logits, targets) + kl


def _no_labels(logits, other_logits, targets):
    log_p = F.log_softmax(logits, dim=1)
    return sum(F.kl_div(log_p, F.log_softmax(z.detach(), dim=1), reduction="batchmean", log_target=True)
               for z in other_logits) / len(other_logits)


def _not_detached(logits, other_logits, targets):
    log_p = F.log_softmax(logits, dim=1)
    kl = sum(F.kl_div(log_p, F.log_softmax(z, dim=1), reduction="batchmean", log_target=True) for z in other_logits)
    return F.cross_entropy(logits, targets) + kl / len(other_logits)


@exercise("mutual_loss_for_one", "Exercise: the mutual-learning loss of one student", mutual_loss_for_one,
          wrong_answers=(_reversed_kl, _summed_not_averaged, _no_labels, _not_detached))
def check_mutual_loss_for_one(candidate) -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 3, generator=g)
    others = [torch.randn(4, 3, generator=g) * 2, torch.randn(4, 3, generator=g)]
    y = torch.tensor([0, 2, 1, 2])
    expected = mutual_loss_for_one(z, others, y)
    mine = z.clone().requires_grad_(True)
    theirs = [o.clone().requires_grad_(True) for o in others]
    out = candidate(mine, theirs, y)
    if not isinstance(out, Tensor) or out.numel() != 1:
        raise ExerciseFailed(f"return one number (a scalar tensor), got "
                             f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}.")
    value = float(out.detach())
    ce = float(F.cross_entropy(z, y))
    if abs(value - (expected.item() - ce)) < 1e-5:
        raise ExerciseFailed("the labels are missing: each student still learns from the true labels, "
                             "add the cross-entropy CE(y, z_k).")
    if abs(value - _summed_not_averaged(z, others, y).item()) < 1e-5:
        raise ExerciseFailed("with several other students, average their KL terms (divide by K - 1) instead of "
                             "adding them up.")
    if abs(value - _reversed_kl(z, others, y).item()) < 1e-5:
        raise ExerciseFailed("the KL is the wrong way round: the other student is the target, KL(p_other || p_k) "
                             "(in F.kl_div the student's log-probabilities come first, the target second).")
    if abs(value - expected.item()) > 1e-5:
        raise ExerciseFailed(f"expected {expected.item():.4f} for these logits, got {value:.4f}: "
                             f"CE(y, z_k) + mean over the others of KL(softmax(z_j) || softmax(z_k)).")
    if out.requires_grad:
        out.backward()
        if mine.grad is None or float(mine.grad.abs().sum()) == 0:
            raise ExerciseFailed("the loss sends no gradient into this student's logits.")
        if any(t.grad is not None and float(t.grad.abs().sum()) > 0 for t in theirs):
            raise ExerciseFailed("the value is right, but gradients flow into the other students: their "
                                 "predictions are targets here, use z_j.detach().")
    else:
        raise ExerciseFailed("the loss has no gradient: compute it with torch operations on the logits "
                             "(no .item() or .detach() on this student's logits).")
