"""Exercises of lesson 12 (compression).

- Exercise 1, ``quantized_size_bytes(num_weights, bits, num_scales)``: how many bytes do packed
  k-bit weights take?
- Exercise 2, ``magnitude_prune(weight, sparsity)``: zero the smallest weights by absolute value
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from labkd.exercises import ExerciseFailed, exercise

# --------------------------------------------------------------------------------------------
# Exercise 1: magnitude pruning


def magnitude_prune(weight: Tensor, sparsity: float) -> Tensor:
    """Reference: a copy of ``weight`` (any shape) with the ``round(sparsity * numel)`` entries of
    smallest absolute value set to zero; the others keep their values and signs."""
    k = round(sparsity * weight.numel())
    out = weight.detach().clone().reshape(-1)
    if k > 0:
        out[out.abs().argsort()[:k]] = 0
    return out.reshape(weight.shape)


def _prunes_largest(weight: Tensor, sparsity: float) -> Tensor:
    k = round(sparsity * weight.numel())
    out = weight.clone().reshape(-1)
    if k > 0:
        out[out.abs().argsort(descending=True)[:k]] = 0
    return out.reshape(weight.shape)


def _signed_not_absolute(weight: Tensor, sparsity: float) -> Tensor:
    k = round(sparsity * weight.numel())
    out = weight.clone().reshape(-1)
    if k > 0:
        out[out.argsort()[:k]] = 0
    return out.reshape(weight.shape)


def _density_not_sparsity(weight: Tensor, sparsity: float) -> Tensor:
    k = round((1 - sparsity) * weight.numel())
    out = weight.clone().reshape(-1)
    if k > 0:
        out[out.abs().argsort()[:k]] = 0
    return out.reshape(weight.shape)


def _in_place(weight: Tensor, sparsity: float) -> Tensor:
    k = round(sparsity * weight.numel())
    flat = weight.view(-1)
    if k > 0:
        flat[flat.abs().argsort()[:k]] = 0
    return weight


PRUNE_WEIGHT = torch.tensor([[0.5, -2.0, 0.1, 3.0],
                             [-0.3, 1.2, -4.0, 0.05],
                             [0.8, -0.6, 2.5, -1.5]])


@exercise("magnitude_prune", "Exercise 2: magnitude pruning", magnitude_prune,
          wrong_answers=(_prunes_largest, _signed_not_absolute, _density_not_sparsity, _in_place))
def check_magnitude_prune(candidate) -> None:
    for sparsity in (0.5, 0.25, 0.0):
        weight = PRUNE_WEIGHT.clone()
        out = candidate(weight, sparsity)
        if not torch.equal(weight, PRUNE_WEIGHT):
            raise ExerciseFailed("your function changed the weight tensor it was given: work on a copy "
                                 "(weight.clone()), so the trained model stays intact.")
        if not isinstance(out, Tensor) or out.shape != PRUNE_WEIGHT.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ExerciseFailed(f"return a tensor of the weight's shape {tuple(PRUNE_WEIGHT.shape)}, got {got}.")
        want = magnitude_prune(PRUNE_WEIGHT, sparsity)
        if torch.equal(out, want):
            continue
        n, k = PRUNE_WEIGHT.numel(), round(sparsity * PRUNE_WEIGHT.numel())
        zeros = int((out == 0).sum())
        where = f"With sparsity={sparsity} on a 3×4 weight, {k} of the {n} entries should be zero; you have {zeros}."
        if zeros == n - k and zeros != k:
            raise ExerciseFailed(f"{where} Sparsity is the fraction set to zero, not the fraction kept: "
                                 f"zero round(sparsity * numel) entries.")
        if zeros == k and torch.equal(out, _prunes_largest(PRUNE_WEIGHT, sparsity)):
            raise ExerciseFailed(f"{where} The right count, but you removed the largest weights: magnitude "
                                 f"pruning keeps the large |w| and zeroes the smallest ones.")
        if zeros == k and torch.equal(out, _signed_not_absolute(PRUNE_WEIGHT, sparsity)):
            raise ExerciseFailed(f"{where} The right count, but you zeroed the most negative weights (-4.0 is a "
                                 f"large weight!): rank by absolute value, weight.abs().")
        kept = out != 0
        if not torch.equal(out[kept], PRUNE_WEIGHT[kept]):
            raise ExerciseFailed("the weights you keep must keep their values and signs; only set the others to 0.")
        raise ExerciseFailed(f"{where} Steps: k = round(sparsity * weight.numel()); find the k smallest |w| "
                             f"(weight.abs().flatten().argsort()[:k]) and set those entries of a copy to 0.")


# --------------------------------------------------------------------------------------------
# Exercise 2: size of packed weights


def quantized_size_bytes(num_weights: int, bits: int, num_scales: int = 1) -> int:
    """Reference: ``num_weights`` codes of ``bits`` bits packed into whole bytes, plus one
    float32 (4-byte) scale for each of ``num_scales`` channels."""
    return math.ceil(num_weights * bits / 8) + 4 * num_scales


def _bits_not_bytes(num_weights: int, bits: int, num_scales: int = 1) -> int:
    return num_weights * bits + 4 * num_scales


def _no_scales(num_weights: int, bits: int, num_scales: int = 1) -> int:
    return math.ceil(num_weights * bits / 8)


def _one_byte_per_weight(num_weights: int, bits: int, num_scales: int = 1) -> int:
    return num_weights + 4 * num_scales


def _rounds_down(num_weights: int, bits: int, num_scales: int = 1) -> int:
    return num_weights * bits // 8 + 4 * num_scales


@exercise("quantized_size_bytes", "Exercise 1: how many bytes do k-bit weights take?", quantized_size_bytes,
          wrong_answers=(_bits_not_bytes, _no_scales, _one_byte_per_weight, _rounds_down))
def check_quantized_size_bytes(candidate) -> None:
    # (num_weights, bits, num_scales): the 784-512 layer of "MLP 512×2" at 4 bits, an odd count, 3 bits
    for args in ((784 * 512, 4, 512), (7, 4, 1), (10, 3, 2), (1000, 8, 1)):
        got = candidate(*args)
        if isinstance(got, Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)) or got != int(got):
            raise ExerciseFailed(f"return a whole number of bytes (an int); for {args} you returned {got!r}.")
        want, got = quantized_size_bytes(*args), int(got)
        if got == want:
            continue
        where = f"quantized_size_bytes{args} should be {want:,} bytes; you returned {got:,}."
        if got == _bits_not_bytes(*args):
            raise ExerciseFailed(f"{where} You counted bits: divide num_weights * bits by 8 to get bytes.")
        if got == _no_scales(*args):
            raise ExerciseFailed(f"{where} Add the scales: each channel keeps one float32 scale, 4 bytes each.")
        if got == _one_byte_per_weight(*args) and args[1] != 8:
            raise ExerciseFailed(f"{where} At {args[1]} bits, {8 // args[1] if 8 % args[1] == 0 else '8/bits'} codes "
                                 f"share a byte: packing is what makes k-bit weights small.")
        if got == _rounds_down(*args):
            raise ExerciseFailed(f"{where} A part-filled last byte still takes a whole byte: round up (math.ceil).")
        raise ExerciseFailed(f"{where} Bytes = ceil(num_weights * bits / 8) for the codes + 4 * num_scales.")
