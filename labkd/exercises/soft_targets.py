"""Exercises of lesson 01 (soft targets): softmax with a temperature, the entropy of a soft target in
bits; and the warm-up exercise of 00_start_here (accuracy from logits), which shows how exercises work."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from labkd.exercises import ExerciseFailed, close, exercise


def softmax_with_temperature(logits: Tensor, temperature: float) -> Tensor:
    """Reference: softmax(logits / T) over the last dimension. (N, C) -> (N, C)."""
    return torch.softmax(logits / temperature, dim=-1)


def _forgot_temperature(logits: Tensor, temperature: float) -> Tensor:
    return torch.softmax(logits, dim=-1)


def _multiplied(logits: Tensor, temperature: float) -> Tensor:
    return torch.softmax(logits * temperature, dim=-1)


def _wrong_dim(logits: Tensor, temperature: float) -> Tensor:
    return torch.softmax(logits / temperature, dim=0)


@exercise("softmax_with_temperature", "Exercise: softmax with temperature", softmax_with_temperature,
          wrong_answers=(_forgot_temperature, _multiplied, _wrong_dim))
def check_softmax_with_temperature(candidate) -> None:
    logits = torch.tensor([[2.0, 1.0, 0.1], [0.0, 5.0, -1.0]])
    out = candidate(logits, 1.0)
    if not isinstance(out, Tensor) or out.shape != logits.shape:
        raise ExerciseFailed(f"expected a tensor of shape {tuple(logits.shape)}, got "
                             f"{getattr(out, 'shape', type(out).__name__)}.")
    if not close(out.sum(-1), torch.ones(2)):
        raise ExerciseFailed("each row should sum to 1: take the softmax over the classes (dim=-1).")
    if not close(out, softmax_with_temperature(logits, 1.0)):
        raise ExerciseFailed("at T = 1 the result should be the ordinary softmax of the logits.")
    hot = candidate(logits, 4.0)
    if close(hot, out):
        raise ExerciseFailed("the temperature has no effect: divide the logits by T before the softmax.")
    if not close(hot, softmax_with_temperature(logits, 4.0)):
        raise ExerciseFailed("at T = 4 the distribution should get softer (flatter): divide the logits by T, "
                             "do not multiply.")


# --------------------------------------------------------------------------------------------
# Exercise 2 of lesson 01: how many bits does a soft target hold?


def entropy_in_bits(probs: Tensor) -> Tensor:
    """Reference: H(p) = -sum_c p_c log2 p_c per row, with 0 log 0 = 0. (N, C) -> (N,)."""
    return -torch.xlogy(probs, probs).sum(dim=-1) / math.log(2)


def _in_nats(probs: Tensor) -> Tensor:
    return -torch.xlogy(probs, probs).sum(dim=-1)


def _nan_at_zero(probs: Tensor) -> Tensor:
    return -(probs * torch.log2(probs)).sum(dim=-1)


def _no_minus_sign(probs: Tensor) -> Tensor:
    return torch.xlogy(probs, probs).sum(dim=-1) / math.log(2)


def _summed_over_examples(probs: Tensor) -> Tensor:
    return -torch.xlogy(probs, probs).sum(dim=0) / math.log(2)


@exercise("entropy_in_bits", "Exercise: the entropy of a soft target, in bits", entropy_in_bits,
          wrong_answers=(_in_nats, _nan_at_zero, _no_minus_sign, _summed_over_examples))
def check_entropy_in_bits(candidate) -> None:
    # rows: a fair coin between two classes (1 bit), uniform over 4 (2 bits), one-hot (0 bits)
    probs = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
    expected = entropy_in_bits(probs)
    out = candidate(probs.clone())
    if not isinstance(out, Tensor) or out.shape != (3,):
        raise ExerciseFailed(f"expected one number per row, a tensor of shape (3,) for 3 rows of 4 classes; got "
                             f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}. "
                             f"Sum over the classes (dim=-1), not over the examples.")
    if bool(torch.isnan(out).any()):
        raise ExerciseFailed("you got NaN for a row with zero probabilities: 0 * log(0) is NaN in floating point, "
                             "but it should count as 0 (torch.xlogy(p, p) does that, or mask the zeros).")
    if bool((out < -1e-6).any()):
        raise ExerciseFailed("entropy is never negative: H(p) = -sum p log2 p (did you forget the minus sign?).")
    if close(out, expected * math.log(2)):
        raise ExerciseFailed("these are nats (natural log): for bits use log2, or divide by ln 2.")
    if not close(out, expected):
        raise ExerciseFailed(f"expected {expected.tolist()} bits (a fair coin holds 1 bit, four equal classes 2 bits, "
                             f"a one-hot label 0 bits); got {[round(v, 4) for v in out.tolist()]}.")


# --------------------------------------------------------------------------------------------
# Warm-up exercise of 00_start_here: how exercises work


def accuracy_from_logits(logits: Tensor, targets: Tensor) -> float:
    """Reference: the fraction of rows whose largest logit is at the target class. (N, C), (N,) -> float."""
    return float((logits.argmax(dim=1) == targets).float().mean())


def _argmax_over_examples(logits: Tensor, targets: Tensor) -> float:
    return float((logits.argmax(dim=0) == targets).float().mean())


def _counts_instead_of_fraction(logits: Tensor, targets: Tensor) -> float:
    return float((logits.argmax(dim=1) == targets).sum())


def _max_value_not_index(logits: Tensor, targets: Tensor) -> float:
    return float((logits.max(dim=1).values == targets).float().mean())


@exercise("accuracy_from_logits", "Warm-up exercise: accuracy from logits", accuracy_from_logits,
          wrong_answers=(_argmax_over_examples, _counts_instead_of_fraction, _max_value_not_index))
def check_accuracy_from_logits(candidate) -> None:
    # three examples, three classes; the model is right on rows 0 and 2
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.5, 0.2, 2.5], [0.0, 0.1, 4.0]])
    targets = torch.tensor([0, 1, 2])
    out = candidate(logits, targets)
    if isinstance(out, Tensor):
        if out.numel() != 1:
            raise ExerciseFailed(f"return one number, got a tensor of shape {tuple(out.shape)}.")
        out = out.item()
    if not isinstance(out, (int, float)):
        raise ExerciseFailed(f"return a number (a float between 0 and 1), got {type(out).__name__}.")
    if abs(out - 2) < 1e-6:
        raise ExerciseFailed("you returned the number of correct rows (2); divide by the number of examples to get "
                             "a fraction.")
    if not 0 <= out <= 1:
        raise ExerciseFailed(f"accuracy is a fraction between 0 and 1, got {out}.")
    if abs(out - _argmax_over_examples(logits, targets)) < 1e-6 and abs(out - 2 / 3) > 1e-6:
        raise ExerciseFailed("take the argmax over the classes (dim=1), one predicted class per example; "
                             "dim=0 picks an example per class.")
    if abs(out - 2 / 3) > 1e-6:
        raise ExerciseFailed(f"expected 2/3 (rows 0 and 2 are right), got {out:.4f}. Compare the *index* of the "
                             f"largest logit (argmax) with the target, not the largest value.")


# --------------------------------------------------------------------------------------------
# Exercise of 00_start_here: the cross-entropy against a distribution, not a label


def soft_cross_entropy(logits: Tensor, target_probs: Tensor) -> Tensor:
    r"""Reference: :math:`-\frac1N\sum_n \sum_c p_{nc} \log \mathrm{softmax}(z_n)_c`, the loss a student
    minimises when its targets are a teacher's probabilities p instead of labels.

    logits (N, C), target_probs (N, C) with rows summing to 1; returns a scalar tensor. With
    one-hot targets it is ``F.cross_entropy``.
    """
    return -(target_probs * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def _soft_ce_no_log(logits: Tensor, target_probs: Tensor) -> Tensor:
    return -(target_probs * torch.softmax(logits, dim=-1)).sum(dim=-1).mean()


def _soft_ce_hard_labels(logits: Tensor, target_probs: Tensor) -> Tensor:
    return torch.nn.functional.cross_entropy(logits, target_probs.argmax(dim=-1))


def _soft_ce_mean_over_classes(logits: Tensor, target_probs: Tensor) -> Tensor:
    return -(target_probs * torch.log_softmax(logits, dim=-1)).mean()


def _soft_ce_summed_over_batch(logits: Tensor, target_probs: Tensor) -> Tensor:
    return -(target_probs * torch.log_softmax(logits, dim=-1)).sum()


def _soft_ce_positive_sign(logits: Tensor, target_probs: Tensor) -> Tensor:
    return (target_probs * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


_SOFT_CE_MISTAKES = (
    (_soft_ce_hard_labels, "you turned the targets into labels (argmax) and lost everything they say about the other "
                           "classes: weigh log softmax(logits) by every class's target probability."),
    (_soft_ce_no_log, "the cross-entropy uses the LOG of the predicted probabilities: torch.log_softmax(logits, "
                      "dim=-1), not torch.softmax."),
    (_soft_ce_mean_over_classes, "your loss is the right one divided by the number of classes: sum over the classes "
                                 "(dim=-1), then average over the examples."),
    (_soft_ce_summed_over_batch, "your loss grows with the batch size: average over the examples, do not sum."),
    (_soft_ce_positive_sign, "the sign is reversed: a cross-entropy is −Σ p log q, a positive number."),
)


@exercise("soft_cross_entropy", "Exercise: the cross-entropy against soft targets", soft_cross_entropy,
          wrong_answers=tuple(m for m, _ in _SOFT_CE_MISTAKES))
def check_soft_cross_entropy(candidate) -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 5, generator=g) * 2
    targets = torch.softmax(torch.randn(4, 5, generator=g) * 1.5, dim=-1)
    out = candidate(logits.clone(), targets.clone())
    if not isinstance(out, Tensor):
        raise ExerciseFailed(f"return a torch tensor (one number), got {type(out).__name__}.")
    if out.numel() != 1:
        raise ExerciseFailed(f"return one number (a scalar tensor), got shape {tuple(out.shape)}: sum over the "
                             f"classes, then average over the examples.")
    want = soft_cross_entropy(logits, targets)
    if not torch.allclose(out.detach().reshape(()).double(), want.double(), rtol=1e-4, atol=1e-6):
        for mistake, hint in _SOFT_CE_MISTAKES:
            if torch.allclose(out.detach().reshape(()).double(), mistake(logits, targets).double(), rtol=1e-4, atol=1e-6):
                raise ExerciseFailed(hint)
        raise ExerciseFailed(f"expected {float(want):.4f}, got {float(out):.4f}: −(target_probs · log_softmax(logits))"
                             f" summed over the classes, averaged over the examples.")
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 3, 1, 4]), 5).float()
    same = candidate(logits.clone(), one_hot)
    if not torch.allclose(torch.as_tensor(same).detach().reshape(()).double(),
                          torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3, 1, 4])).double(), rtol=1e-4):
        raise ExerciseFailed("with one-hot targets your loss should equal F.cross_entropy on the labels.")
