r"""Feature- and relation-based distillation losses, as plain functions on tensors.

The response-based losses (the teacher's *outputs*) are in :mod:`labkd.losses`. Here are two
other kinds of knowledge a teacher can pass on (Gou et al.'s survey, https://arxiv.org/abs/2006.05525,
calls the three families response-, feature- and relation-based):

- **feature-based**: what the teacher's middle layers compute. :func:`attention_transfer_loss`
  (Zagoruyko & Komodakis 2017, https://arxiv.org/abs/1612.03928) compares *where* two networks
  look; it needs no regressor because channels are summed away. (FitNets hints, the other
  feature loss of the course, are :func:`labkd.losses.hint_loss`.)
- **relation-based**: how the teacher arranges *examples* relative to one another.
  :func:`rkd_distance_loss` and :func:`rkd_angle_loss` (Park et al. 2019,
  https://arxiv.org/abs/1904.05068) compare the distances and angles between the embeddings of
  the examples of a batch, so the two networks' embeddings may have different sizes.

Every loss takes ``(student, teacher)``, treats the teacher as a fixed target (it is detached:
no gradient flows into it), checks its inputs before any work and raises ``ValueError`` /
``TypeError`` naming the argument. :data:`FEATURE_LOSSES` maps names to :class:`FeatureLoss`
entries; :func:`labkd.train.fit` uses it for ``TrainConfig(loss="feature_kd", feature_loss=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from labkd.losses import NonFiniteInputError

# --------------------------------------------------------------------------------------------
# Input checks


def check_features(features: Tensor, argument: str, ndim: int | tuple[int, ...], min_batch: int = 1) -> Tensor:
    """``features`` must be a finite floating-point tensor with ``ndim`` dimensions and at least
    ``min_batch`` examples; raises ``TypeError``/``ValueError`` naming ``argument`` otherwise."""
    dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    shapes = {2: "(N, D)", 4: "(N, C, H, W)"}
    expected = " or ".join(shapes.get(d, f"{d}-d") for d in dims)
    if not isinstance(features, Tensor):
        raise TypeError(f"{argument} must be a torch.Tensor of shape {expected}, got {type(features).__name__}")
    if features.ndim not in dims:
        raise ValueError(f"{argument} must have shape {expected}, got {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"{argument} must be a floating-point tensor, got {features.dtype}")
    if features.shape[0] < min_batch:
        why = " (a relation needs at least two examples)" if min_batch == 2 else ""
        raise ValueError(f"{argument} must hold at least {min_batch} examples{why}, got a batch of {features.shape[0]}")
    if not bool(torch.isfinite(features).all()):
        raise NonFiniteInputError(f"{argument} contains NaN or inf", argument)
    return features


def _check_batch(student: Tensor, teacher: Tensor, names: tuple[str, str]) -> None:
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"{names[0]} has {student.shape[0]} examples and {names[1]} {teacher.shape[0]}: "
                         f"both must describe the same batch")


def embed(features: Tensor, argument: str = "features") -> Tensor:
    """Feature maps (N, C, H, W) -> embeddings (N, C) by global average pooling (what the CNNs'
    heads see); embeddings (N, D) are returned unchanged."""
    check_features(features, argument, (2, 4))
    return features.mean(dim=(2, 3)) if features.ndim == 4 else features


# --------------------------------------------------------------------------------------------
# Feature-based: attention transfer


def attention_map(features: Tensor, p: float = 2.0) -> Tensor:
    r"""Activation-based spatial attention of Zagoruyko & Komodakis (2017), normalised.

    .. math::
        Q = \frac{\mathrm{vec}\,F(A)}{\|\mathrm{vec}\,F(A)\|_2}, \qquad F(A) = \sum_{c=1}^{C} |A_c|^p

    Args: features (N, C, H, W); p > 0 (the paper uses 2). Returns (N, H·W): one unit-length
    map per example (an all-zero map stays zero). Invariant to the number of channels and to
    scaling the features by a positive factor.
    """
    check_features(features, "features", 4)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0:
        raise ValueError(f"p must be a number > 0, got {p!r}")
    return F.normalize(features.abs().pow(p).sum(dim=1).flatten(1), dim=1)


def attention_transfer_loss(student_features: Tensor, teacher_features: Tensor, p: float = 2.0) -> Tensor:
    r"""Attention transfer (AT): squared distance between normalised attention maps, batch mean.

    .. math::
        \mathcal{L}_{AT} = \frac1N \sum_{n} \big\| Q_S^{(n)} - Q_T^{(n)} \big\|_2^2 \in [0, 2]

    with :math:`Q` from :func:`attention_map`. Zero iff the normalised maps are equal; the
    channel counts may differ, the map sizes H×W must match (pick layers of equal resolution).
    The authors' code averages over the H·W positions too, i.e. their value is this one divided
    by H·W, and weights it by β = 1000/2.
    Args: student_features (N, C_s, H, W), teacher_features (N, C_t, H, W). Returns a scalar.
    """
    check_features(student_features, "student_features", 4)
    check_features(teacher_features, "teacher_features", 4)
    _check_batch(student_features, teacher_features, ("student_features", "teacher_features"))
    if student_features.shape[2:] != teacher_features.shape[2:]:
        raise ValueError(f"student_features maps are {tuple(student_features.shape[2:])} and teacher_features "
                         f"maps {tuple(teacher_features.shape[2:])}: attention transfer compares maps of the "
                         f"same height and width; choose layers of equal resolution")
    q_s = attention_map(student_features, p)
    q_t = attention_map(teacher_features.detach(), p)
    return (q_s - q_t).pow(2).sum(dim=1).mean()


# --------------------------------------------------------------------------------------------
# Relation-based: RKD


def pairwise_distances(embeddings: Tensor, eps: float = 1e-12) -> Tensor:
    """Euclidean distances between the rows: (N, D) -> (N, N), zero diagonal, symmetric.

    Computed from differences (not the ``|a|² + |b|² - 2ab`` expansion, which loses precision);
    ``eps`` inside the square root keeps the gradient finite for identical rows.
    """
    check_features(embeddings, "embeddings", 2)
    diff = embeddings.unsqueeze(1) - embeddings.unsqueeze(0)  # (N, N, D)
    d = (diff.pow(2).sum(-1) + eps).sqrt()
    return d * (1 - torch.eye(len(embeddings), dtype=d.dtype, device=d.device))


def normalized_distances(embeddings: Tensor) -> Tensor:
    r"""RKD's distance potential :math:`\psi_D(t_i, t_j) = \|t_i - t_j\|_2 / \mu`, where
    :math:`\mu` is the mean distance over the :math:`N(N-1)` pairs :math:`i \ne j`.

    (N, D) with N >= 2 -> (N, N); zero diagonal, off-diagonal mean 1, invariant to scaling and
    translating the embeddings.
    """
    check_features(embeddings, "embeddings", 2, min_batch=2)
    d = pairwise_distances(embeddings)
    n = len(embeddings)
    mu = d.sum() / (n * (n - 1))
    return d / mu.clamp_min(1e-12)


def rkd_distance_loss(student_embeddings: Tensor, teacher_embeddings: Tensor) -> Tensor:
    r"""RKD-D (Park et al. 2019): Huber loss between the normalised distance matrices.

    .. math::
        \mathcal{L}_{RKD\text{-}D} = \frac{1}{N^2} \sum_{i,j} \ell_\delta\big(\psi_D(t_i, t_j), \psi_D(s_i, s_j)\big)

    with :func:`normalized_distances` as :math:`\psi_D` and the Huber loss :math:`\ell_\delta`
    (``smooth_l1``, δ = 1), as in the authors' code (mean over all N² entries). The embedding
    sizes D_s and D_t may differ. Zero when the student's embeddings are the teacher's up to
    scale, translation and rotation.
    Args: student_embeddings (N, D_s), teacher_embeddings (N, D_t), N >= 2. Returns a scalar.
    """
    return _relation_loss(normalized_distances, student_embeddings, teacher_embeddings)


def _relation_loss(potential, student_embeddings: Tensor, teacher_embeddings: Tensor) -> Tensor:
    """Huber loss between a relational ``potential`` of the student's and of the (detached)
    teacher's embeddings, after checking both are (N, D) with the same N >= 2."""
    check_features(student_embeddings, "student_embeddings", 2, min_batch=2)
    check_features(teacher_embeddings, "teacher_embeddings", 2, min_batch=2)
    _check_batch(student_embeddings, teacher_embeddings, ("student_embeddings", "teacher_embeddings"))
    with torch.no_grad():
        target = potential(teacher_embeddings.detach())
    return F.smooth_l1_loss(potential(student_embeddings), target)


#: Largest batch :func:`rkd_angle_loss` accepts: it compares all N³ triplets (N = 256: 16.8M
#: angles, about 70 MB per (N, N, N) tensor; N = 1024 would take gigabytes).
RKD_ANGLE_MAX_BATCH = 256


def check_angle_batch(n: int, argument: str = "batch_size") -> None:
    """Raise ``ValueError`` naming ``argument`` if ``n`` examples are too many for the angle loss."""
    if n > RKD_ANGLE_MAX_BATCH:
        raise ValueError(f"{argument}={n} is too large for the RKD angle loss, which builds (N, N, N) tensors "
                         f"(N³ = {n ** 3:.3g} angles); use at most {RKD_ANGLE_MAX_BATCH} examples per batch")


def triplet_angles(embeddings: Tensor) -> Tensor:
    r"""RKD's angle potential: :math:`\cos\angle t_i t_j t_k = \langle e^{ij}, e^{kj} \rangle` with
    :math:`e^{ij} = (t_i - t_j)/\|t_i - t_j\|_2`, for every triplet. (N, D) -> (N, N, N),
    entry [j, i, k] (j is the vertex). Invariant to scaling, translating and rotating the embeddings.
    At most :data:`RKD_ANGLE_MAX_BATCH` examples (memory grows as N³)."""
    check_features(embeddings, "embeddings", 2, min_batch=2)
    check_angle_batch(len(embeddings), "the number of embeddings")
    e = F.normalize(embeddings.unsqueeze(0) - embeddings.unsqueeze(1), dim=2)  # e[j, i] = unit(t_i - t_j)
    return torch.bmm(e, e.transpose(1, 2))


def rkd_angle_loss(student_embeddings: Tensor, teacher_embeddings: Tensor) -> Tensor:
    r"""RKD-A (Park et al. 2019): Huber loss between the cosines of all triplet angles,
    :math:`\frac{1}{N^3}\sum_{i,j,k} \ell_\delta(\psi_A(t_i,t_j,t_k), \psi_A(s_i,s_j,s_k))`
    (:func:`triplet_angles`; mean over all N³ entries, as in the authors' code).
    Args: student_embeddings (N, D_s), teacher_embeddings (N, D_t), N >= 2. Returns a scalar.
    Memory is O(N³ + N²·D): batches of at most :data:`RKD_ANGLE_MAX_BATCH` examples are accepted.
    """
    return _relation_loss(triplet_angles, student_embeddings, teacher_embeddings)


#: Park et al.'s weights: λ_D = 25 for distances, λ_A = 50 for angles (the ratio is kept in :func:`rkd_loss`).
RKD_ANGLE_RATIO = 2.0


def rkd_loss(student_embeddings: Tensor, teacher_embeddings: Tensor) -> Tensor:
    """RKD-DA: :func:`rkd_distance_loss` + 2 · :func:`rkd_angle_loss` (the paper's 25 : 50)."""
    return (rkd_distance_loss(student_embeddings, teacher_embeddings)
            + RKD_ANGLE_RATIO * rkd_angle_loss(student_embeddings, teacher_embeddings))


# --------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class FeatureLoss:
    """One entry of :data:`FEATURE_LOSSES`.

    ``inputs``: ``"maps"`` — the loss takes the layers' outputs (N, C, H, W) as they are;
    ``"embeddings"`` — conv maps are first pooled to (N, C) by :func:`embed`.
    ``weight``: a starting β for this course's CNNs (SGD, lr 0.05): the papers' weights (AT:
    β = 1000/2 on the per-position mean, ≈ 10 here for 7x7 maps; RKD: 25 and 50) made the
    students' first epochs unstable at that learning rate in lesson 11's tests; 1 trained well.
    """

    name: str
    fn: Callable[[Tensor, Tensor], Tensor]
    family: str
    inputs: str
    weight: float
    paper: str
    url: str

    def __call__(self, student_features: Tensor, teacher_features: Tensor) -> Tensor:
        """The loss on two layers' outputs, pooled first when the loss compares embeddings."""
        if self.inputs == "embeddings":
            student_features = embed(student_features, "student_features")
            teacher_features = embed(teacher_features, "teacher_features")
        return self.fn(student_features, teacher_features)

    def check_batches(self, batch_size: int, n_train: int) -> None:
        """Raise ``ValueError`` before training if batches of ``batch_size`` from ``n_train``
        images cannot be compared: a relation needs at least two examples in every batch (the
        last one included), and the angle loss at most :data:`RKD_ANGLE_MAX_BATCH`."""
        if self.family == "relation" and (n_train < 2 or n_train % batch_size == 1):
            raise ValueError(f"feature_loss={self.name!r} compares examples within a batch, but batch_size="
                             f"{batch_size} on {n_train} training images leaves a batch of one image; "
                             f"change batch_size or the number of training images")
        if self.fn in (rkd_angle_loss, rkd_loss):
            check_angle_batch(min(batch_size, n_train))

    def check_shapes(self, student_shape: Sequence[int], teacher_shape: Sequence[int],
                     names: tuple[str, str] = ("guided_layer", "hint_layer")) -> None:
        """Raise ``ValueError`` (naming the layer arguments) if per-example feature shapes, e.g.
        (32, 7, 7) and (128, 7, 7), cannot be compared by this loss; before training starts."""
        s, t = tuple(student_shape), tuple(teacher_shape)
        if self.inputs == "maps":
            if len(s) != 3 or len(t) != 3:
                raise ValueError(f"feature_loss={self.name!r} compares conv maps (C, H, W); {names[0]} gives "
                                 f"{s} and {names[1]} gives {t}")
            if s[1:] != t[1:]:
                raise ValueError(f"feature_loss={self.name!r} needs maps of the same size: {names[0]} gives "
                                 f"{s[1:]} and {names[1]} gives {t[1:]}; choose layers of equal resolution")
        elif len(s) not in (1, 3) or len(t) not in (1, 3):
            raise ValueError(f"feature_loss={self.name!r} compares embeddings (D,) or pooled maps (C, H, W); "
                             f"{names[0]} gives {s} and {names[1]} gives {t}")


FEATURE_LOSSES: dict[str, FeatureLoss] = {
    "attention": FeatureLoss("attention", attention_transfer_loss, "feature", "maps", 1.0,
                             "Zagoruyko & Komodakis 2017, attention transfer", "https://arxiv.org/abs/1612.03928"),
    "rkd_distance": FeatureLoss("rkd_distance", rkd_distance_loss, "relation", "embeddings", 1.0,
                                "Park et al. 2019, relational KD (distances)", "https://arxiv.org/abs/1904.05068"),
    "rkd_angle": FeatureLoss("rkd_angle", rkd_angle_loss, "relation", "embeddings", 2.0,
                             "Park et al. 2019, relational KD (angles)", "https://arxiv.org/abs/1904.05068"),
    "rkd": FeatureLoss("rkd", rkd_loss, "relation", "embeddings", 1.0,
                       "Park et al. 2019, relational KD (distances + angles)", "https://arxiv.org/abs/1904.05068"),
}


def get(name: str, argument: str = "feature_loss") -> FeatureLoss:
    """The registry entry called ``name``; ``ValueError`` naming ``argument`` if unknown."""
    if not isinstance(name, str) or name not in FEATURE_LOSSES:
        raise ValueError(f"{argument}={name!r} is unknown; expected one of {tuple(FEATURE_LOSSES)}")
    return FEATURE_LOSSES[name]
