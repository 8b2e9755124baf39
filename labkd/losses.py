r"""Distillation losses as plain functions on tensors.

Shapes: logits are (N, C) — N examples, C classes; targets are (N,) class ids.
Every function checks its inputs first and raises ``ValueError``/``TypeError`` naming the
argument, so a mistake fails before any training starts.

The soft-target loss of Hinton, Vinyals & Dean (2015), https://arxiv.org/abs/1503.02531 :

.. math::
    \mathcal{L}_{soft} = T^2 \, \mathrm{KL}\big(\mathrm{softmax}(v/T) \,\|\, \mathrm{softmax}(z/T)\big)

with teacher logits :math:`v` (the target) and student logits :math:`z`, averaged over the
batch. The :math:`T^2` keeps its gradients the same size whatever the temperature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------
# Input checks

#: Temperatures every loss, sweep and widget accepts: within them, and with logits up to
#: :data:`LOGIT_LIMIT`, float32 soft targets and the T² factor stay finite (T = 1e-40 gave NaN on
#: the first step; T = 1e300 an infinite T²). 1e-6 and 1e4 are the T -> 0 and T -> ∞ limits.
TEMPERATURE_RANGE = (1e-6, 1e4)
#: Largest logit magnitude a loss accepts: a trained network's logits are a few tens; larger ones
#: mean the network diverged (and at 3e38 the softmax itself overflows to NaN).
LOGIT_LIMIT = 1e6


class NonFiniteInputError(ValueError):
    """A loss got NaN, inf or out-of-range values in ``argument`` (in training: divergence)."""

    def __init__(self, message: str, argument: str) -> None:
        super().__init__(message)
        self.argument = argument


def check_temperature(temperature: float, argument: str = "temperature") -> float:
    """A temperature in :data:`TEMPERATURE_RANGE` (1e-6 to 10,000), as a float."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"{argument} must be a positive number, got {type(temperature).__name__}")
    low, high = TEMPERATURE_RANGE
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"{argument} must be a finite number > 0 (between {low:g} and {high:g}), got {temperature!r}")
    if not low <= temperature <= high:
        raise ValueError(f"{argument}={temperature!r} is outside the usable range {low:g} to {high:g} "
                         f"(float32 soft targets under- or overflow beyond it)")
    return float(temperature)


def check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a number in [0, 1], got {type(alpha).__name__}")
    if not 0.0 <= alpha <= 1.0:  # also rejects NaN
        raise ValueError(f"alpha must be in [0, 1] (weight of the soft-target loss), got {alpha!r}")
    return float(alpha)


def check_logits(logits: Tensor, argument: str) -> Tensor:
    if not isinstance(logits, Tensor):
        raise TypeError(f"{argument} must be a torch.Tensor of shape (N, C), got {type(logits).__name__}")
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"{argument} must have shape (N, C) with C >= 2 classes, got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"{argument} must be a floating-point tensor, got {logits.dtype}")
    if not bool(torch.isfinite(logits).all()):
        raise NonFiniteInputError(f"{argument} contains NaN or inf", argument)
    return logits


def check_batch(logits: Tensor, argument: str) -> Tensor:
    """What every loss asks of its logits on top of :func:`check_logits`: a non-empty batch and
    magnitudes up to :data:`LOGIT_LIMIT`."""
    check_logits(logits, argument)
    if logits.shape[0] == 0:
        raise ValueError(f"{argument} is an empty batch (0 examples); a loss needs at least one")
    largest = float(logits.detach().abs().max())
    if largest > LOGIT_LIMIT:
        raise NonFiniteInputError(f"{argument} has values up to {largest:.3g}, beyond ±{LOGIT_LIMIT:g}: "
                                  f"the network producing them diverged", argument)
    return logits


def check_pair(student: Tensor, teacher: Tensor, names: tuple[str, str] = ("student_logits", "teacher_logits"),
               batch: bool = False) -> None:
    """Both (N, C) logits of the same shape; ``batch=True`` (the losses) also :func:`check_batch`."""
    check = check_batch if batch else check_logits
    check(student, names[0])
    check(teacher, names[1])
    if student.shape != teacher.shape:
        raise ValueError(
            f"{names[0]} {tuple(student.shape)} and {names[1]} {tuple(teacher.shape)} must have the same "
            f"shape (N, C): the same examples and the same classes"
        )


def check_targets(targets: Tensor, logits: Tensor) -> Tensor:
    if not isinstance(targets, Tensor) or targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"targets must be an integer tensor of class ids, shape (N,), got "
                        f"{getattr(targets, 'dtype', type(targets).__name__)}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"targets must have shape ({logits.shape[0]},) to match the logits, got {tuple(targets.shape)}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
        raise ValueError(f"targets must be class ids in 0..{logits.shape[1] - 1}, "
                         f"got values from {int(targets.min())} to {int(targets.max())}")
    return targets.long()


# --------------------------------------------------------------------------------------------
# Response-based losses


def soft_target_loss(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float, scale_by_t2: bool = True
) -> Tensor:
    r"""Hinton's soft-target loss :math:`T^2\,\mathrm{KL}(p_T^{teacher} \| p_T^{student})`, batch mean.

    The teacher is the target distribution. Zero iff the two agree; never negative.
    ``scale_by_t2=False`` drops the :math:`T^2` factor (only to show why it is there).
    Args: student_logits (N, C), teacher_logits (N, C), temperature > 0. Returns a scalar.
    """
    check_pair(student_logits, teacher_logits, batch=True)
    t = check_temperature(temperature)
    if not isinstance(scale_by_t2, (bool, np.bool_)):
        raise TypeError(f"scale_by_t2 must be True or False, got {scale_by_t2!r}")
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / t, dim=-1)  # the teacher is a fixed target
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * t * t if scale_by_t2 else kl


def distillation_loss(
    student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, temperature: float, alpha: float
) -> Tensor:
    r""":math:`\alpha\,\mathcal{L}_{soft} + (1-\alpha)\,\mathrm{CE}(z, y)`.

    alpha = 1: soft targets only; alpha = 0: labels only. Args: student_logits (N, C),
    teacher_logits (N, C), targets (N,), temperature > 0, alpha in [0, 1]. Returns a scalar.
    """
    a = check_alpha(alpha)
    check_pair(student_logits, teacher_logits, batch=True)
    y = check_targets(targets, student_logits)
    soft = soft_target_loss(student_logits, teacher_logits, temperature) if a > 0 else student_logits.new_zeros(())
    hard = F.cross_entropy(student_logits, y) if a < 1 else student_logits.new_zeros(())
    return a * soft + (1 - a) * hard


def cross_entropy_loss(student_logits: Tensor, targets: Tensor) -> Tensor:
    """Plain cross-entropy on hard labels. student_logits (N, C), targets (N,)."""
    check_batch(student_logits, "student_logits")
    return F.cross_entropy(student_logits, check_targets(targets, student_logits))


def logit_matching_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    r"""Squared difference of logits (Bucila et al. 2006; Ba & Caruana 2014),
    :math:`\frac{1}{2C}\sum_c (z_c - v_c)^2`, batch mean.

    The :math:`1/(2C)` makes its gradient, :math:`(z_c - v_c)/C`, exactly the high-temperature
    limit of :func:`soft_target_loss` for zero-mean logits (Hinton et al. §2.1).
    """
    check_pair(student_logits, teacher_logits, batch=True)
    c = student_logits.shape[1]
    return (student_logits - teacher_logits.detach()).pow(2).sum(dim=1).mean() / (2 * c)


# --------------------------------------------------------------------------------------------
# Ensembles


def _check_stack(teacher_logits: Sequence[Tensor] | Tensor) -> Tensor:
    if isinstance(teacher_logits, Tensor):
        stack = teacher_logits
        if stack.ndim != 3:
            raise ValueError(f"teacher_logits must have shape (K, N, C), got {tuple(stack.shape)}")
    else:
        items = list(teacher_logits)
        if not items:
            raise ValueError("teacher_logits is empty: an ensemble needs at least one teacher")
        for i, t in enumerate(items):
            check_logits(t, f"teacher_logits[{i}]")
            if t.shape != items[0].shape:
                raise ValueError(f"teacher_logits[{i}] has shape {tuple(t.shape)}, expected {tuple(items[0].shape)}")
        stack = torch.stack(items)
    if stack.shape[0] == 0:
        raise ValueError("teacher_logits is empty: an ensemble needs at least one teacher")
    check_logits(stack.reshape(-1, stack.shape[-1]), "teacher_logits")
    return stack


ENSEMBLE_METHODS = ("arithmetic", "geometric")


def ensemble_probs(teacher_logits: Sequence[Tensor] | Tensor, temperature: float = 1.0, method: str = "arithmetic") -> Tensor:
    r"""Combine K teachers' soft targets at temperature T. (K, N, C) or K tensors (N, C) -> (N, C).

    ``arithmetic``: :math:`\frac1K\sum_k p_k`; ``geometric``: the normalised
    :math:`\exp(\frac1K\sum_k \log p_k)` — which equals softmax of the averaged logits.
    """
    stack = _check_stack(teacher_logits)
    t = check_temperature(temperature)
    if method == "arithmetic":
        return F.softmax(stack / t, dim=-1).mean(0)
    if method == "geometric":
        return F.softmax(F.log_softmax(stack / t, dim=-1).mean(0), dim=-1)
    raise ValueError(f"method={method!r} is unknown; expected one of {ENSEMBLE_METHODS}")


def ensemble_logits(teacher_logits: Sequence[Tensor] | Tensor, temperature: float = 1.0, method: str = "arithmetic") -> Tensor:
    """Logits ``T·log p`` whose softmax at temperature T is :func:`ensemble_probs`, so an
    ensemble can stand wherever a single teacher's logits go. Returns (N, C)."""
    t = check_temperature(temperature)
    return t * torch.log(ensemble_probs(teacher_logits, t, method).clamp_min(1e-30))


# --------------------------------------------------------------------------------------------
# Feature-based: FitNets hints


def make_hint_regressor(student_shape: Sequence[int], teacher_shape: Sequence[int]) -> nn.Module:
    """The FitNets regressor mapping the student's guided-layer output to the teacher's hint.

    Shapes are per example: (C, H, W) for conv features, (D,) for vectors.
    conv -> conv: a convolution whose kernel shrinks the student's map to the teacher's size
    (1x1 when equal, as in Romero et al.; upsampling first when the student's map is smaller);
    anything -> vector: flatten and a linear layer.
    """
    s, t = tuple(int(v) for v in student_shape), tuple(int(v) for v in teacher_shape)
    if len(s) == 3 and len(t) == 3:
        (cs, hs, ws), (ct, ht, wt) = s, t
        layers: list[nn.Module] = []
        if hs < ht or ws < wt:
            layers.append(nn.Upsample(size=(ht, wt), mode="nearest"))
            hs, ws = ht, wt
        layers.append(nn.Conv2d(cs, ct, kernel_size=(hs - ht + 1, ws - wt + 1)))
        return nn.Sequential(*layers)
    if len(t) == 1:
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(s), t[0]))
    raise ValueError(f"cannot regress student features {s} onto teacher features {t}: "
                     f"expected (C, H, W) -> (C, H, W) or anything -> (D,)")


def hint_loss(regressed_student: Tensor, teacher_features: Tensor) -> Tensor:
    r"""FitNets hint loss: mean squared error between the regressed guided layer
    :math:`r(v_g)` and the teacher's hint :math:`u_h`. Both (N, ...) of the same shape, floating
    point, finite, N >= 1; the teacher's features are a fixed target (detached)."""
    for tensor, name in ((regressed_student, "regressed_student"), (teacher_features, "teacher_features")):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
        if tensor.ndim < 2 or tensor.shape[0] == 0:
            raise ValueError(f"{name} must have shape (N, ...) with N >= 1 examples, got {tuple(tensor.shape)}")
    if regressed_student.shape != teacher_features.shape:
        raise ValueError(f"regressed_student {tuple(regressed_student.shape)} and teacher_features "
                         f"{tuple(teacher_features.shape)} must have the same shape; build the regressor "
                         f"with make_hint_regressor(student_shape, teacher_shape)")
    for tensor, name in ((regressed_student, "regressed_student"), (teacher_features, "teacher_features")):
        if not bool(torch.isfinite(tensor).all()):
            raise NonFiniteInputError(f"{name} contains NaN or inf", name)
    return F.mse_loss(regressed_student, teacher_features.detach())



# --------------------------------------------------------------------------------------------
# Online: deep mutual learning (Zhang et al. 2018; lesson 10, labkd.train.fit_mutual)


def mutual_learning_loss(logits_list: Sequence[Tensor], targets: Tensor, temperature: float = 1.0) -> list[Tensor]:
    r"""Deep mutual learning: one loss per student of the cohort.

    :math:`\mathcal{L}_k = \mathrm{CE}(y, z_k) + \frac{T^2}{K-1}\sum_{j\ne k}\mathrm{KL}(p_j^{(T)}\|p_k^{(T)})`.

    The other students' probabilities are detached: ``mutual_learning_loss(...)[k]`` sends
    gradients into ``logits_list[k]`` only, so summing the K losses and calling ``backward``
    once updates every student with its own loss. The KL part is zero when all students agree.

    Args:
        logits_list: K >= 2 tensors (N, C), one per student, on the same examples.
        targets: class ids (N,).
        temperature: T > 0 of the KL part (the paper: 1); the KL is scaled by T².
    Returns: a list of K scalar tensors.
    """
    if isinstance(logits_list, Tensor) or not isinstance(logits_list, Sequence):
        raise TypeError("logits_list must be a list of K >= 2 logit tensors (N, C), one per student")
    if len(logits_list) < 2:
        raise ValueError(f"logits_list must hold at least 2 students' logits (mutual learning needs a cohort), "
                         f"got {len(logits_list)}")
    for k, z in enumerate(logits_list):
        check_logits(z, f"logits_list[{k}]")
        if z.shape != logits_list[0].shape:
            raise ValueError(f"logits_list[{k}] has shape {tuple(z.shape)}, expected {tuple(logits_list[0].shape)} "
                             f"like logits_list[0]: every student sees the same examples and classes")
    y = check_targets(targets, logits_list[0])
    t = check_temperature(temperature)
    k_models = len(logits_list)
    log_p = [F.log_softmax(z / t, dim=-1) for z in logits_list]
    out = []
    for k, z in enumerate(logits_list):
        kl = sum(F.kl_div(log_p[k], log_p[j].detach(), reduction="batchmean", log_target=True)
                 for j in range(k_models) if j != k)
        out.append(F.cross_entropy(z, y) + (t * t) * kl / (k_models - 1))
    return out
