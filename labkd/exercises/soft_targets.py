"""Exercises of lesson 01 (soft targets): softmax with a temperature."""

from __future__ import annotations

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
