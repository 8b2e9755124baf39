"""Exercises of lesson 11 (response-, feature- and relation-based KD): the attention map of
attention transfer and the RKD distance loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from labkd.exercises import ExerciseFailed, close, exercise

# --------------------------------------------------------------------------------------------
# Exercise 1: the attention map


def attention_map(features: Tensor) -> Tensor:
    """Reference: sum the squared activations over the channels, flatten the H x W map and
    scale it to unit Euclidean length. (N, C, H, W) -> (N, H*W)."""
    return F.normalize(features.pow(2).sum(dim=1).flatten(1), dim=1)


def _not_normalised(features: Tensor) -> Tensor:
    return features.pow(2).sum(dim=1).flatten(1)


def _mean_over_batch(features: Tensor) -> Tensor:
    q = features.pow(2).sum(dim=1).flatten(1)
    return q / q.norm()  # one norm for the whole batch instead of one per example


def _signed(features: Tensor) -> Tensor:
    return F.normalize(features.sum(dim=1).flatten(1), dim=1)  # activations cancel across channels


def _over_space(features: Tensor) -> Tensor:
    return F.normalize(features.pow(2).sum(dim=(2, 3)), dim=1)  # a channel profile, not a spatial map


@exercise("attention_map", "Exercise 1: the attention map", attention_map,
          wrong_answers=(_not_normalised, _mean_over_batch, _signed, _over_space))
def check_attention_map(candidate) -> None:
    # two examples, two channels, 2x2 maps; example 1 is example 0 times 3
    a = torch.tensor([[[1.0, -2.0], [0.0, 1.0]], [[-1.0, 0.0], [2.0, 1.0]]])
    features = torch.stack([a, 3 * a])  # (2, 2, 2, 2)
    expected = attention_map(features)
    out = candidate(features)
    if not isinstance(out, Tensor):
        raise ExerciseFailed(f"return a tensor, got {type(out).__name__}.")
    if out.shape == (2, 2) and close(out, F.normalize(features.pow(2).sum(dim=(2, 3)), dim=1)):
        raise ExerciseFailed("you summed over the positions, which gives one value per channel; attention is a "
                             "map over the positions: sum over the channels (dim=1) and keep H x W.")
    if out.shape != (2, 4):
        raise ExerciseFailed(f"for features of shape (2, 2, 2, 2) the result should have shape (2, 4): one "
                             f"flattened 2x2 map per example, got {tuple(out.shape)}.")
    if close(out, F.normalize(features.sum(dim=1).flatten(1), dim=1)):
        raise ExerciseFailed("positive and negative activations cancel: square them (|A|^2) before summing "
                             "over the channels.")
    norms = out.norm(dim=1)
    batch_normalised = not close(norms, torch.ones(2)) and close(out.norm(), torch.tensor(1.0))
    if close(norms.sum(), torch.tensor(1.0)) or batch_normalised:
        raise ExerciseFailed("the whole batch has length 1, not each example: normalise every row on its own "
                             "(F.normalize(q, dim=1)).")
    if not close(norms, torch.ones(2), atol=1e-4):
        raise ExerciseFailed(f"each map should have Euclidean length 1 (the lengths are {norms.tolist()}): divide "
                             f"every row by its norm, so that a network with stronger activations is not "
                             f"penalised.")
    if not close(out, expected, atol=1e-5):
        raise ExerciseFailed(f"the map of the test example should be {[round(v, 3) for v in expected[0].tolist()]}, "
                             f"got {[round(v, 3) for v in out[0].tolist()]}: sum the squares over the channels, "
                             f"flatten, normalise.")


# --------------------------------------------------------------------------------------------
# Exercise 2: the RKD distance loss


def rkd_distance_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Reference: distances between all pairs of rows, each matrix divided by its mean over the
    pairs i != j, then the Huber loss (smooth L1) between the two matrices, averaged over all
    N x N entries. The teacher is a fixed target. student (N, D_s), teacher (N, D_t)."""
    def psi(e: Tensor) -> Tensor:
        d = torch.cdist(e, e)
        n = len(e)
        return d / (d.sum() / (n * (n - 1)))

    return F.smooth_l1_loss(psi(student), psi(teacher.detach()))


def _not_normalised_rkd(student: Tensor, teacher: Tensor) -> Tensor:
    return F.smooth_l1_loss(torch.cdist(student, student), torch.cdist(teacher, teacher).detach())


def _mean_with_diagonal(student: Tensor, teacher: Tensor) -> Tensor:
    def psi(e: Tensor) -> Tensor:
        d = torch.cdist(e, e)
        return d / d.mean()  # the N zeros on the diagonal pull the mean down

    return F.smooth_l1_loss(psi(student), psi(teacher).detach())


def _squared_distances(student: Tensor, teacher: Tensor) -> Tensor:
    def psi(e: Tensor) -> Tensor:
        d = torch.cdist(e, e).pow(2)
        n = len(e)
        return d / (d.sum() / (n * (n - 1)))

    return F.smooth_l1_loss(psi(student), psi(teacher).detach())


def _mse(student: Tensor, teacher: Tensor) -> Tensor:
    def psi(e: Tensor) -> Tensor:
        d = torch.cdist(e, e)
        n = len(e)
        return d / (d.sum() / (n * (n - 1)))

    return F.mse_loss(psi(student), psi(teacher).detach())


def _teacher_not_detached(student: Tensor, teacher: Tensor) -> Tensor:
    def psi(e: Tensor) -> Tensor:
        d = torch.cdist(e, e)
        n = len(e)
        return d / (d.sum() / (n * (n - 1)))

    return F.smooth_l1_loss(psi(student), psi(teacher))


@exercise("rkd_distance_loss", "Exercise 2: the RKD distance loss", rkd_distance_loss,
          wrong_answers=(_not_normalised_rkd, _mean_with_diagonal, _squared_distances, _mse, _teacher_not_detached))
def check_rkd_distance_loss(candidate) -> None:
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(5, 6, generator=g).requires_grad_()
    student = torch.randn(5, 3, generator=g).requires_grad_()
    out = candidate(student, teacher)
    if not isinstance(out, Tensor) or out.numel() != 1:
        raise ExerciseFailed(f"return one number as a tensor (a scalar), got "
                             f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}.")
    value = out.detach().reshape(())
    with torch.no_grad():
        same = candidate(teacher.detach() * 5.0, teacher.detach())
    if not close(same.reshape(()), torch.tensor(0.0), atol=1e-5):
        raise ExerciseFailed(f"a student whose embeddings are the teacher's times 5 has the same relations, so the "
                             f"loss should be 0, got {float(same):.4f}: divide each distance matrix by its mean "
                             f"distance.")
    s, t = student.detach(), teacher.detach()
    n = len(s)
    ds, dt = torch.cdist(s, s), torch.cdist(t, t)
    if close(value, F.smooth_l1_loss(ds / ds.mean(), dt / dt.mean())):
        raise ExerciseFailed("the mean distance should be taken over the N(N-1) pairs i != j only; the N zeros on "
                             "the diagonal are not distances between two examples.")
    if close(value, F.smooth_l1_loss(ds.pow(2) / (ds.pow(2).sum() / (n * (n - 1))),
                                     dt.pow(2) / (dt.pow(2).sum() / (n * (n - 1))))):
        raise ExerciseFailed("these are squared distances; RKD uses the Euclidean distances themselves.")
    expected = rkd_distance_loss(s, t)
    if close(value, 2 * expected) or close(value, F.mse_loss(ds / (ds.sum() / (n * (n - 1))),
                                                             dt / (dt.sum() / (n * (n - 1))))):
        raise ExerciseFailed("that is the mean squared error; RKD uses the Huber loss, F.smooth_l1_loss, which "
                             "is gentler on a few large differences.")
    if not close(value, expected, atol=1e-5):
        raise ExerciseFailed(f"for the test embeddings the loss should be {float(expected):.4f}, got "
                             f"{float(value):.4f}: distances, divided by their mean over i != j, then "
                             f"F.smooth_l1_loss between the student's and the teacher's matrices.")
    if not out.requires_grad:
        raise ExerciseFailed("the loss has no gradient for the student: compute it with torch operations only.")
    out.reshape(()).backward()
    if teacher.grad is not None and bool(teacher.grad.abs().sum() > 0):
        raise ExerciseFailed("the gradient reaches the teacher's embeddings: the teacher is a fixed target, "
                             "so use teacher.detach() (or torch.no_grad()) for its distances.")
    if student.grad is None or not bool(torch.isfinite(student.grad).all()):
        raise ExerciseFailed("the student's gradient is missing or not finite.")
