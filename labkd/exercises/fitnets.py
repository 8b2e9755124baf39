"""Exercises of lesson 03 (FitNets hints): the hint loss and the hint regressor."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkd.exercises import ExerciseFailed, close, exercise

# --------------------------------------------------------------------------------------------
# Exercise 1: the hint loss


def hint_loss(regressed: Tensor, hint: Tensor) -> Tensor:
    """Reference: the mean squared error between the regressed guided layer and the teacher's
    hint, averaged over every element. Both (N, C, H, W); returns a scalar tensor."""
    return ((regressed - hint) ** 2).mean()


def _summed(regressed: Tensor, hint: Tensor) -> Tensor:
    return ((regressed - hint) ** 2).sum()


def _absolute(regressed: Tensor, hint: Tensor) -> Tensor:
    return (regressed - hint).abs().mean()


def _not_squared(regressed: Tensor, hint: Tensor) -> Tensor:
    return (regressed - hint).mean()


def _detached(regressed: Tensor, hint: Tensor) -> Tensor:
    return ((regressed - hint) ** 2).mean().detach()


@exercise("hint_loss", "Exercise 1: the hint loss", hint_loss,
          wrong_answers=(_summed, _absolute, _not_squared, _detached))
def check_hint_loss(candidate) -> None:
    # differences -1, 0, 0, 2, 0, -1, 0, 0: they sum to 0, their squares to 6 (MSE 0.75)
    hint = torch.tensor([[[[1.0, 0.0], [2.0, -1.0]], [[0.5, 0.5], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    regressed = torch.tensor([[[[0.0, 0.0], [2.0, 1.0]], [[0.5, -0.5], [0.0, 1.0]]]], requires_grad=True)
    expected = hint_loss(regressed.detach(), hint)
    out = candidate(regressed, hint)
    if not isinstance(out, Tensor) or out.numel() != 1:
        raise ExerciseFailed(f"return one number as a tensor (a scalar), got "
                             f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}.")
    value = out.detach().reshape(())
    if float(value) < 0:
        raise ExerciseFailed(f"the loss is negative ({float(value):.4f}); a squared error never is: square "
                             f"the differences before averaging.")
    perfect = candidate(hint, hint)
    if not isinstance(perfect, Tensor) or not close(perfect.detach().reshape(()), torch.tensor(0.0)):
        raise ExerciseFailed("the loss of a perfect prediction (regressed == hint) should be 0.")
    if close(value, torch.tensor(0.0)) and not close(expected, torch.tensor(0.0)):
        raise ExerciseFailed("the loss is 0 although the maps differ: square the differences before "
                             "averaging, so that errors of opposite sign do not cancel.")
    if close(value, (regressed.detach() - hint).abs().mean()):
        raise ExerciseFailed("that is the mean absolute error; FitNets uses the squared error.")
    if close(value, expected * hint.numel()):
        raise ExerciseFailed("you summed the squared errors; take the mean, so the loss does not grow "
                             "with the batch size and the map size.")
    if not close(value, expected):
        raise ExerciseFailed(f"for the test maps the hint loss should be {float(expected):.4f}, got "
                             f"{float(value):.4f}: average (regressed - hint)**2 over every element.")
    if not out.requires_grad:
        raise ExerciseFailed("the loss has no gradient: compute it with torch operations on the tensors "
                             "(no .detach(), float(), .item() or torch.tensor(...)), so training can "
                             "back-propagate through it.")
    out.reshape(()).backward()
    if regressed.grad is None or not close(regressed.grad, 2 * (regressed.detach() - hint) / hint.numel()):
        raise ExerciseFailed("the gradient with respect to the regressed map is wrong; use the mean of "
                             "the squared differences.")
    big = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    if not close(candidate(big, torch.zeros_like(big)).reshape(()), F.mse_loss(big, torch.zeros_like(big))):
        raise ExerciseFailed("the loss is right on the small example but not on a (4, 3, 5, 5) batch; "
                             "average over every element, whatever the shape.")


# --------------------------------------------------------------------------------------------
# Exercise 2: the regressor


def make_regressor(student_channels: int, teacher_channels: int) -> nn.Module:
    """Reference: a 1x1 convolution from the student's channels to the teacher's.

    Maps the guided layer (N, C_s, H, W) onto the hint's shape (N, C_t, H, W); trainable.
    """
    return nn.Conv2d(student_channels, teacher_channels, kernel_size=1)


def _reversed_channels(student_channels: int, teacher_channels: int) -> nn.Module:
    return nn.Conv2d(teacher_channels, student_channels, kernel_size=1)


def _shrinks_maps(student_channels: int, teacher_channels: int) -> nn.Module:
    return nn.Conv2d(student_channels, teacher_channels, kernel_size=3)


def _no_parameters(student_channels: int, teacher_channels: int):
    repeats = -(-teacher_channels // student_channels)
    return lambda features: features.repeat(1, repeats, 1, 1)[:, :teacher_channels]


def _frozen(student_channels: int, teacher_channels: int) -> nn.Module:
    conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1)
    conv.requires_grad_(False)
    return conv


@exercise("make_regressor", "Exercise 2: the hint regressor", make_regressor,
          wrong_answers=(_reversed_channels, _shrinks_maps, _no_parameters, _frozen))
def check_make_regressor(candidate) -> None:
    generator = torch.Generator().manual_seed(0)
    for cs, ct, size in ((16, 64, 14), (32, 8, 7)):
        regressor = candidate(cs, ct)
        if not isinstance(regressor, nn.Module):
            raise ExerciseFailed(f"return a torch module (e.g. an nn.Conv2d), not a "
                                 f"{type(regressor).__name__}: the regressor has weights that stage 1 trains.")
        params = [p for p in regressor.parameters()]
        if not params:
            raise ExerciseFailed(f"{type(regressor).__name__} has no parameters, so stage 1 could not train it; "
                                 f"use a layer with weights, such as nn.Conv2d.")
        features = torch.randn(2, cs, size, size, generator=generator)
        try:
            out = regressor(features)
        except RuntimeError as error:
            if "channels" in str(error):
                raise ExerciseFailed(f"the regressor cannot read the student's features (2, {cs}, {size}, {size}): "
                                     f"its input must have student_channels={cs} channels and its output "
                                     f"teacher_channels={ct} (check the order of the arguments).") from None
            raise
        if not isinstance(out, Tensor) or out.ndim != 4:
            raise ExerciseFailed(f"the output should be a (N, C, H, W) tensor, got "
                                 f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}.")
        if out.shape[1] != ct:
            raise ExerciseFailed(f"the output has {out.shape[1]} channels but the teacher's hint has "
                                 f"teacher_channels={ct}: map student_channels -> teacher_channels.")
        if out.shape[2:] != features.shape[2:]:
            raise ExerciseFailed(f"the maps changed size from {size}x{size} to {out.shape[2]}x{out.shape[3]}: "
                                 f"the hint has the same height and width as the guided layer here, so use "
                                 f"kernel_size=1 (or pad the convolution).")
        if not any(p.requires_grad for p in params):
            raise ExerciseFailed("the regressor's parameters are frozen (requires_grad=False); stage 1 "
                                 "must train them.")
        regressor.zero_grad()
        out.pow(2).mean().backward()
        if not any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params):
            raise ExerciseFailed("no gradient reaches the regressor's parameters: the output must be "
                                 "computed by its layers from the input features.")
