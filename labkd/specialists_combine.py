r"""The method of lesson 08's specialists (:mod:`labkd.specialists`, Hinton, Vinyals & Dean 2015,
§5), on tensors: which classes the generalist confuses (k-means on the covariance of its predicted
probabilities, :func:`cluster_classes`) and how the generalist's and the active specialists'
distributions are combined into one (:func:`combine`, §5.2):

.. math::
    q = \arg\min_q\; \mathrm{KL}(p^g \,\|\, q) + \sum_{m \in A_k} \mathrm{KL}(p^m \,\|\, q^m)

>>> groups = cluster_classes(generalist_val_probs, n_clusters=4)
>>> q = combine(generalist_probs, [p_1, p_2], groups, top_n=2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from labkd.checks import check_classes as _check_class_ids


def check_classes(classes: Sequence[int], num_classes: int, argument: str = "classes") -> list[int]:
    """A specialist's classes (:func:`labkd.checks.check_classes`), leaving some for its dustbin."""
    values = _check_class_ids(classes, num_classes, argument)
    if len(values) == num_classes:
        raise ValueError(f"{argument} covers all {num_classes} classes: a specialist needs other classes "
                         f"for its dustbin")
    return values


# --------------------------------------------------------------------------------------------
# Which classes get confused: covariance of the predictions and k-means


def prediction_covariance(probs: Tensor) -> Tensor:
    r"""Covariance of predicted probability vectors, (N, C) -> (C, C).

    Entry (a, b) is :math:`\mathrm{cov}(p_a, p_b)` over the N examples: positive when the
    generalist tends to give classes a and b probability on the same images."""
    check_probs(probs, "probs")
    if probs.shape[0] < 2:
        raise ValueError(f"probs needs at least 2 rows (examples) to estimate a covariance, got {probs.shape[0]}")
    centred = probs.double() - probs.double().mean(0, keepdim=True)
    return (centred.T @ centred / (probs.shape[0] - 1)).float()


def kmeans(points: Tensor, k: int, seed: int = 0, iters: int = 100, restarts: int = 10) -> Tensor:
    """Seeded k-means (k-means++ starts, Lloyd iterations, best of ``restarts`` by inertia).

    points (M, D) -> cluster ids (M,) in 0..k-1, numbered in order of each cluster's first point
    (so equal partitions get equal ids). Deterministic for a given seed."""
    if not isinstance(points, Tensor) or points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"points must be a tensor of shape (M, D) with M >= 1, got "
                         f"{tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__}")
    m = points.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= m:
        raise ValueError(f"k must be an integer in 1..{m} (the number of points), got {k!r}")
    x = points.double()
    gen = torch.Generator().manual_seed(seed)
    best, best_inertia = None, math.inf
    for _ in range(max(1, restarts)):
        centres = x[torch.randint(m, (1,), generator=gen)]
        for _ in range(1, k):  # k-means++: next centre with probability proportional to squared distance
            d2 = torch.cdist(x, centres).pow(2).min(1).values
            if float(d2.sum()) <= 0:
                pick = torch.randint(m, (1,), generator=gen)
            else:
                pick = torch.multinomial(d2 / d2.sum(), 1, generator=gen)
            centres = torch.cat([centres, x[pick]])
        for _ in range(iters):
            labels = torch.cdist(x, centres).argmin(1)
            new = torch.stack([x[labels == j].mean(0) if bool((labels == j).any()) else centres[j] for j in range(k)])
            if torch.allclose(new, centres):
                break
            centres = new
        labels = torch.cdist(x, centres).argmin(1)
        inertia = float((x - centres[labels]).pow(2).sum())
        if inertia < best_inertia - 1e-12:
            best, best_inertia = labels, inertia
    return _renumber(best)


def _renumber(labels: Tensor) -> Tensor:
    order = {}
    for v in labels.tolist():
        order.setdefault(v, len(order))
    return torch.tensor([order[v] for v in labels.tolist()], dtype=torch.long)


def cluster_features(probs: Tensor, diagonal: bool = False) -> Tensor:
    """The points k-means clusters, one per class: the columns of :func:`prediction_covariance`,
    (C, C), with the diagonal set to 0 unless ``diagonal``. The diagonal is each class's own
    variance — how often it is predicted with confidence, not *with which other class* — and is
    ten times larger than the rest, so left in it would decide the clusters on its own."""
    cov = prediction_covariance(probs)
    if not diagonal:
        cov = cov.clone().fill_diagonal_(0.0)
    return cov.T.contiguous()


def cluster_classes(probs: Tensor, n_clusters: int, seed: int = 0, diagonal: bool = False) -> list[list[int]]:
    """Groups of classes that are predicted together: k-means on the columns of
    :func:`prediction_covariance` (diagonal zeroed, see :func:`cluster_features`).
    probs (N, C) -> ``n_clusters`` lists of class ids (a partition of 0..C-1), each sorted, in
    order of their smallest class."""
    points = cluster_features(probs, diagonal)
    c = points.shape[0]
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or not 1 <= n_clusters <= c:
        raise ValueError(f"n_clusters must be an integer in 1..{c} (the number of classes), got {n_clusters!r}")
    labels = kmeans(points, n_clusters, seed=seed)
    return [sorted(i for i in range(c) if int(labels[i]) == j) for j in range(n_clusters)]


def cluster_order(groups: Sequence[Sequence[int]]) -> list[int]:
    """Classes listed cluster by cluster (for a block-diagonal heatmap)."""
    return [c for g in groups for c in g]


# --------------------------------------------------------------------------------------------
# Combining generalist and specialists (§5.2)


def check_probs(probs: Tensor, argument: str) -> Tensor:
    """``probs`` is an (N, C) tensor of finite, non-negative probabilities (C >= 2)."""
    if not isinstance(probs, Tensor) or probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"{argument} must be a tensor of shape (N, C) with C >= 2, got "
                         f"{tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__}")
    if not probs.is_floating_point() or not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):
        raise ValueError(f"{argument} must hold finite, non-negative probabilities")
    return probs


def active_specialists(generalist_probs: Tensor, groups: Sequence[Sequence[int]], top_n: int = 1) -> Tensor:
    """(N, M) bool: specialist m is active for example i when one of the generalist's ``top_n``
    classes for i is among specialist m's classes (the paper's set :math:`A_k`)."""
    p = check_probs(generalist_probs, "generalist_probs")
    c = p.shape[1]
    if isinstance(top_n, bool) or not isinstance(top_n, int) or not 1 <= top_n <= c:
        raise ValueError(f"top_n must be an integer in 1..{c}, got {top_n!r}")
    top = p.topk(top_n, dim=1).indices  # (N, top_n)
    member = torch.zeros(len(groups), c, dtype=torch.bool)
    for m, g in enumerate(groups):
        member[m, check_classes(g, c, f"groups[{m}]")] = True
    return member[:, top].any(-1).T.contiguous()  # (M, N, top_n) -> (N, M)


def coarse_log_probs(log_q: Tensor, classes: Sequence[int]) -> Tensor:
    """log q^m: the log-probabilities of ``classes`` followed by the log of the summed probability
    of every other class (what a specialist's dustbin faces). log_q (N, C) -> (N, len(classes) + 1)."""
    c = log_q.shape[1]
    rest = [k for k in range(c) if k not in set(classes)]
    return torch.cat([log_q[:, list(classes)], torch.logsumexp(log_q[:, rest], dim=1, keepdim=True)], dim=1)


def combination_objective(logits: Tensor, generalist_probs: Tensor, specialist_probs: Sequence[Tensor],
                          groups: Sequence[Sequence[int]], active: Tensor) -> Tensor:
    r"""Per example, :math:`\mathrm{KL}(p^g\|q) + \sum_{m\in A} \mathrm{KL}(p^m\|q^m)` with
    :math:`q = \mathrm{softmax}(\text{logits})`. Returns (N,)."""
    log_q = F.log_softmax(logits, dim=1)
    total = (torch.xlogy(generalist_probs, generalist_probs) - generalist_probs * log_q).sum(1)
    for m, (p_m, g) in enumerate(zip(specialist_probs, groups, strict=True)):
        kl = (torch.xlogy(p_m, p_m) - p_m * coarse_log_probs(log_q, g)).sum(1)
        total = total + active[:, m].to(kl.dtype) * kl
    return total


def combine(generalist_probs: Tensor, specialist_probs: Sequence[Tensor], groups: Sequence[Sequence[int]],
            active: Tensor | None = None, top_n: int = 1, steps: int = 300, lr: float = 0.1) -> Tensor:
    """The paper's combination: the q (N, C) that minimises :func:`combination_objective`, found by
    ``steps`` Adam steps on q's logits (started at log p^g), for all examples at once.

    generalist_probs (N, C); specialist_probs[m] (N, len(groups[m]) + 1), dustbin last; ``active``
    (N, M) bool, by default :func:`active_specialists` with ``top_n``. Examples with no active
    specialist keep q = p^g exactly."""
    p_g = check_probs(generalist_probs, "generalist_probs").double()
    n, c = p_g.shape
    if len(specialist_probs) != len(groups):
        raise ValueError(f"specialist_probs has {len(specialist_probs)} entries but groups has {len(groups)}: "
                         f"one probability table per specialist")
    p_ms = []
    for m, (p, g) in enumerate(zip(specialist_probs, groups, strict=True)):
        check_classes(g, c, f"groups[{m}]")
        check_probs(p, f"specialist_probs[{m}]")
        if p.shape != (n, len(g) + 1):
            raise ValueError(f"specialist_probs[{m}] must have shape ({n}, {len(g) + 1}) (its classes and a dustbin), "
                             f"got {tuple(p.shape)}")
        p_ms.append(p.double())
    active = active_specialists(generalist_probs, groups, top_n) if active is None else active
    if active.shape != (n, len(groups)):
        raise ValueError(f"active must have shape ({n}, {len(groups)}), got {tuple(active.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    rows = active.any(1).nonzero().squeeze(1)
    q = p_g.clone()
    if len(rows) == 0 or steps == 0:
        return q.float()
    sub_g, sub_m, sub_a = p_g[rows], [p[rows] for p in p_ms], active[rows]
    z = torch.log(sub_g.clamp_min(1e-12)).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([z], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            optimiser.zero_grad()
            combination_objective(z, sub_g, sub_m, groups, sub_a).sum().backward()
            optimiser.step()
    q[rows] = F.softmax(z.detach(), dim=1)
    return q.float()
