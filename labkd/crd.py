r"""Contrastive representation distillation (CRD; Tian, Krishnan & Isola, ICLR 2020, §3).

KD asks the student to copy the teacher's class probabilities one class at a time. CRD asks
for more: the student's *embedding* of an image must be recognisable, among many other
images, as the partner of the teacher's embedding of the *same* image. Both embeddings go
through a small linear head to a common space of size ``d`` and are L2-normalised,

.. math::
    g_S(s) = \frac{W_S s}{\|W_S s\|_2}, \qquad g_T(t) = \frac{W_T t}{\|W_T t\|_2},

and a critic scores a pair by

.. math::
    h(t, s) = \frac{e^{g_T(t)^\top g_S(s)/\tau} / Z}{e^{g_T(t)^\top g_S(s)/\tau} / Z + K/M},

where ``K`` negatives are drawn for every positive pair, ``M`` is the number of training images
and ``Z`` normalises the exponentials (fixed from the first batch, as in the authors' code). The
loss is noise-contrastive estimation: the positive pair should be judged "together", the K
negatives "apart",

.. math::
    \mathcal{L}_{CRD} = -\frac{1}{B}\sum_{i=1}^{B}\Big[\log h(t_i, s_i)
                        + \sum_{k=1}^{K} \log\big(1 - h(t_i, s_{j_k})\big)\Big].

The negatives are read from a **memory bank** (one per side, ``M x d``): the embedding each
training image had when it was last seen, updated with momentum ``m`` after every batch,
``bank[i] <- normalise(m · bank[i] + (1 - m) · g(x_i))`` (§3, "memory buffer"; Wu et al. 2018).
As in the authors' code the loss is symmetric: the teacher's embedding is the anchor against the
student's bank, and the student's embedding against the teacher's bank. Unlike their CIFAR-100
code, which draws an image's negatives from the other classes only, :meth:`MemoryBank.negatives`
draws them from all other training images (the contrastive task then uses no labels).

:class:`CRD` (registered as ``TrainConfig(loss="crd")``) adds the KD loss, the paper's best row
("CRD+KD"): ``KD(T, α) + β · L_CRD`` with β = ``TrainConfig.feature_weight``; α = 0 leaves the
cross-entropy and the contrastive term alone (the paper's "CRD" row). Its settings
(:data:`DEFAULTS`: ``dim``, ``negatives``, ``nce_temperature``, ``momentum``) come from
``TrainConfig.objective_options``.

The pieces are modules of their own, testable on two tensors: :class:`Embed` (a head),
:class:`MemoryBank` (the banks, sampling and the momentum update) and :func:`nce_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkd import feature_losses
from labkd.objectives import Distillation, Step, check_layer_names, check_layers, register

#: Hyper-parameters read from ``TrainConfig.objective_options`` and their defaults. The authors'
#: code uses d = 128, 16,384 negatives of 50,000 CIFAR images, τ = 0.07 and momentum 0.5; our
#: students see about a thousand images, so the negatives are fewer (they must be < M).
DEFAULTS: dict[str, float] = {"dim": 64, "negatives": 256, "nce_temperature": 0.07, "momentum": 0.5}
#: Avoids log(0) in :func:`nce_loss` (the authors' code uses the same constant).
EPS = 1e-7


def _number(value: object, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{argument} must be a finite number, got {value!r}")
    return float(value)


def _whole(value: object, argument: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{argument} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_options(options: Mapping[str, object] | None, n_data: int | None = None) -> dict[str, float]:
    """CRD's hyper-parameters: :data:`DEFAULTS` updated with ``options`` (from
    ``TrainConfig.objective_options``), checked. ``ValueError`` naming the option: ``dim`` and
    ``negatives`` positive integers (``negatives`` < ``n_data`` when it is given),
    ``nce_temperature`` > 0, ``momentum`` in [0, 1); an unknown key is an error too."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"objective_options {unknown} are not CRD's; it takes {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **options}
    out["dim"] = _whole(out["dim"], "dim (the embedding size d)")
    out["negatives"] = _whole(out["negatives"], "negatives (K per positive pair)")
    if n_data is not None and out["negatives"] >= n_data:
        raise ValueError(f"negatives={out['negatives']} must be smaller than the {n_data} training images "
                         f"(the negatives of an image are drawn from the others)")
    out["nce_temperature"] = _number(out["nce_temperature"], "nce_temperature")
    if out["nce_temperature"] <= 0:
        raise ValueError(f"nce_temperature must be > 0, got {out['nce_temperature']!r}")
    out["momentum"] = _number(out["momentum"], "momentum")
    if not 0 <= out["momentum"] < 1:
        raise ValueError(f"momentum must be in [0, 1) (the share of the old bank entry kept), got {out['momentum']!r}")
    return out


class Embed(nn.Module):
    """CRD's projection head: a linear map to ``dim`` and L2 normalisation. Conv maps
    (N, C, H, W) are average-pooled to (N, C) first (what the networks' own heads see)."""

    def __init__(self, in_features: int, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(_whole(in_features, "in_features"), _whole(dim, "dim"))

    def forward(self, features: Tensor) -> Tensor:
        """(N, C) or (N, C, H, W) -> (N, dim), each row of length 1."""
        x = feature_losses.embed(features)
        if x.shape[1] != self.linear.in_features:
            raise ValueError(f"features have {x.shape[1]} channels, the head was built for {self.linear.in_features}")
        return F.normalize(self.linear(x), dim=1)


class MemoryBank(nn.Module):
    """Two memory banks of ``n_data`` unit vectors of size ``dim`` (``student`` and ``teacher``
    buffers, so ``state_dict`` and the model cache keep them) and the normalising constants
    ``z`` of each side (0 until the first batch sets them).

    Rows start as random unit vectors (``seed``); :meth:`update` moves the rows of a batch towards
    its embeddings; :meth:`negatives` draws, for every example, ``k`` indices of *other* examples.
    """

    def __init__(self, n_data: int, dim: int, momentum: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        self.n_data, self.dim = _whole(n_data, "n_data", 2), _whole(dim, "dim")
        self.momentum = check_options({"momentum": momentum})["momentum"]
        g = torch.Generator().manual_seed(int(seed))
        for side in ("student", "teacher"):
            self.register_buffer(side, F.normalize(torch.randn(self.n_data, self.dim, generator=g), dim=1))
        self.register_buffer("z", torch.zeros(2))

    def check_index(self, index: Tensor, argument: str = "index") -> Tensor:
        """``index`` as a (B,) long tensor of distinct positions in ``0 .. n_data - 1``."""
        if not isinstance(index, Tensor) or index.ndim != 1 or index.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"{argument} must be a 1-d integer tensor of positions in the training set, got "
                             f"{tuple(index.shape) if isinstance(index, Tensor) else type(index).__name__}")
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= self.n_data):
            raise ValueError(f"{argument} holds positions outside 0..{self.n_data - 1} (the bank has one row per "
                             f"training image): min {int(index.min())}, max {int(index.max())}")
        return index.long()

    def negatives(self, index: Tensor, k: int) -> Tensor:
        """(B,) positions -> (B, k) positions of other examples, uniformly with replacement
        (never the example itself). Uses torch's global generator (``fit`` seeds it)."""
        index = self.check_index(index)
        k = _whole(k, "negatives (K per positive pair)")
        if k >= self.n_data:
            raise ValueError(f"negatives={k} must be smaller than the bank's {self.n_data} rows")
        draw = torch.randint(0, self.n_data - 1, (len(index), k), device=index.device)
        return draw + (draw >= index.unsqueeze(1)).long()  # skip the example's own row

    def scores(self, anchor: Tensor, side: str, index: Tensor, negatives: Tensor) -> Tensor:
        r"""Dot products of each anchor (B, d) with the ``side`` bank's row of its own example
        (column 0: the positive pair) and of its negatives (columns 1..K): (B, 1 + K). The bank
        rows are constants (no gradient)."""
        bank = getattr(self, side)
        rows = torch.cat([index.unsqueeze(1), negatives], dim=1)  # (B, 1 + K)
        return torch.bmm(bank[rows].detach(), anchor.unsqueeze(2)).squeeze(2)

    @torch.no_grad()
    def update(self, index: Tensor, student: Tensor, teacher: Tensor) -> None:
        """``bank[i] <- normalise(m · bank[i] + (1 - m) · embedding)`` for the rows ``index``
        only, on both sides (embeddings (B, d), detached)."""
        index = self.check_index(index)
        m = self.momentum
        for side, new in (("student", student), ("teacher", teacher)):
            bank = getattr(self, side)
            bank[index] = F.normalize(m * bank[index] + (1 - m) * new.detach().to(bank.dtype), dim=1)


def nce_loss(scores: Tensor, n_data: int, temperature: float, z: Tensor | float) -> Tensor:
    r"""CRD's noise-contrastive loss on critic inputs ``scores`` (B, 1 + K): column 0 the positive
    pair's dot product, columns 1..K the negatives'. With :math:`P = e^{\text{score}/\tau}/Z` and
    noise :math:`K/M` (``M = n_data``),

    .. math::
        \mathcal{L} = -\frac1B \sum_i \Big[\log \frac{P_{i0}}{P_{i0} + K/M}
                      + \sum_{k\ge1} \log \frac{K/M}{P_{ik} + K/M}\Big].

    Lower when the positive's score is high and the negatives' are low. Returns a scalar.
    """
    if not isinstance(scores, Tensor) or scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be (B, 1 + K) with K >= 1 negatives, got "
                         f"{tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__}")
    k = scores.shape[1] - 1
    noise = k / float(n_data)
    p = torch.exp(scores / temperature) / z
    log_pos = torch.log(p[:, 0] / (p[:, 0] + noise + EPS))
    log_neg = torch.log(noise / (p[:, 1:] + noise + EPS))
    return -(log_pos + log_neg.sum(dim=1)).mean()


class ContrastiveLoss(nn.Module):
    """The contrastive term of CRD with its state: the two heads (:class:`Embed`) and the
    banks (:class:`MemoryBank`). ``forward(student_features, teacher_features, index)`` embeds
    both, scores them against the other side's bank, returns the symmetric :func:`nce_loss`
    and (in training mode) updates the banks at ``index``."""

    def __init__(self, student_channels: int, teacher_channels: int, n_data: int,
                 options: Mapping[str, object] | None = None, seed: int = 0) -> None:
        super().__init__()
        self.options = check_options(options, _whole(n_data, "n_data", 2))
        d = int(self.options["dim"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.embed_student = Embed(student_channels, d)
            self.embed_teacher = Embed(teacher_channels, d)
        self.memory = MemoryBank(n_data, d, self.options["momentum"], seed=seed)
        self.last: dict[str, Tensor] = {}

    def forward(self, student_features: Tensor, teacher_features: Tensor, index: Tensor) -> Tensor:
        """Student features (B, C_s[, H, W]), the teacher's (B, C_t[, H, W]) and the examples'
        positions in the training set (B,) -> scalar loss."""
        index = self.memory.check_index(index)
        sizes = {"student_features": len(student_features), "teacher_features": len(teacher_features),
                 "index": len(index)}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"mismatched batch: {sizes} must all be the same batch size")
        s = self.embed_student(student_features)
        t = self.embed_teacher(teacher_features.detach())
        negatives = self.memory.negatives(index, int(self.options["negatives"]))
        scores_s = self.memory.scores(s, "teacher", index, negatives)  # student anchor, teacher bank
        scores_t = self.memory.scores(t, "student", index, negatives)  # teacher anchor, student bank
        tau = self.options["nce_temperature"]
        if float(self.memory.z.min()) <= 0:  # the authors' Z: mean exponential times M, set once
            with torch.no_grad():
                self.memory.z[0] = torch.exp(scores_s / tau).mean() * self.memory.n_data
                self.memory.z[1] = torch.exp(scores_t / tau).mean() * self.memory.n_data
        loss = (nce_loss(scores_s, self.memory.n_data, tau, self.memory.z[0])
                + nce_loss(scores_t, self.memory.n_data, tau, self.memory.z[1]))
        self.last = {"positive": (scores_s[:, 0] + scores_t[:, 0]).detach() / 2,
                     "negative": (scores_s[:, 1:].mean(1) + scores_t[:, 1:].mean(1)).detach() / 2}
        if self.training:
            self.memory.update(index, s, t)
        return loss


@register
class CRD(Distillation):
    r"""CRD+KD as one objective: ``KD(T, α) + β · L_CRD`` (α = ``alpha``, T = ``temperature``,
    β = ``feature_weight``; α = 0: cross-entropy + β · L_CRD, the paper's plain "CRD" row).

    ``L_CRD`` compares the student's ``guided_layer`` with the teacher's ``hint_layer`` (conv maps
    are average-pooled) through :class:`ContrastiveLoss`, whose heads are trained with the student
    and whose memory banks (one row per training image) are buffers: the model cache stores both.
    Options (``TrainConfig.objective_options``): :data:`DEFAULTS`. Logs ``crd_loss`` (unweighted).
    """

    name = "crd"
    needs_features = True
    config_fields = ("hint_layer", "guided_layer")
    defaults = DEFAULTS

    def __init__(self, config) -> None:
        super().__init__(config)
        self.contrast: ContrastiveLoss | None = None

    @classmethod
    def check_config(cls, config) -> None:
        check_options(config.objective_options)
        check_layers(cls, config)

    def build(self, student, teacher, data, config) -> None:
        check_layer_names(self, student, teacher)
        n = len(data.train)
        options = check_options(config.objective_options, n)
        s_shape, t_shape = student.feature_shape(self.student_layer), teacher.feature_shape(self.teacher_layer)
        for what, shape in (("guided_layer", s_shape), ("hint_layer", t_shape)):
            if len(shape) not in (1, 3):
                raise ValueError(f"loss='crd' embeds a vector (D,) or pooled conv maps (C, H, W); {what} gives {shape}")
        self.contrast = ContrastiveLoss(s_shape[0], t_shape[0], n, options, seed=config.seed)

    def forward(self, step: Step) -> Tensor:
        if self.contrast is None:
            raise RuntimeError("CRD.build(student, teacher, data, config) must run before the first step")
        contrastive = self.contrast(step.student_features, step.teacher_features, step.index)
        step.log["crd_loss"] = contrastive.detach()
        return self.distil(step) + self.config.feature_weight * contrastive

    def likely_causes(self) -> list[str]:
        return [f"feature_weight={self.config.feature_weight:g} (β of the contrastive term)",
                f"nce_temperature={self.option('nce_temperature'):g} (the paper's code: 0.07)"]
