r"""Dark knowledge: what a teacher's soft targets say beyond the label (lesson 01).

Hinton, Vinyals & Dean (2015), *Distilling the Knowledge in a Neural Network*,
https://arxiv.org/abs/1503.02531 . A teacher's soft target for an image is

.. math::
    p_i(T) = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}

with logits :math:`z` and temperature :math:`T`. The probabilities it gives the *wrong*
classes — a 2 that looks a little like a 7 — are the "dark knowledge" a student can learn from.

Everything here works on precomputed logits (N, C), so one forward pass of the teacher serves
every analysis and every widget:

>>> logits = metrics.predict_logits(teacher.model, data.test.x)
>>> matrix = soft_target_matrix(logits, data.test.y, temperature=4)     # (C, C)
>>> most_confused_pairs(matrix, k=5)
[Pair(first=4, second=9, score=0.031), ...]
>>> information_table(logits, data.test.y, temperatures=[1, 4, 20])

The lesson's static figures are in :mod:`labkd.soft_targets_figures`, its panels in
:mod:`labkd.widgets.soft_targets`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from labkd.losses import check_logits, check_targets, check_temperature

LN2 = math.log(2.0)

# --------------------------------------------------------------------------------------------
# Input checks


def check_temperatures(temperatures: Sequence[float]) -> list[float]:
    """A non-empty list of valid temperatures (a single number is a ``TypeError``)."""
    if isinstance(temperatures, (int, float)) or isinstance(temperatures, Tensor) and temperatures.ndim == 0:
        raise TypeError("temperatures must be a sequence of numbers, e.g. [1, 2, 4]; got a single number")
    values = [check_temperature(float(t) if isinstance(t, Tensor) else t, "temperatures[...]") for t in temperatures]
    if not values:
        raise ValueError("temperatures is empty; give at least one temperature > 0")
    return values


def _check_k(k: int, n: int, argument: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{argument} must be a positive integer, got {k!r}")
    if k > n:
        raise ValueError(f"{argument}={k} is larger than the {n} available")
    return k


def _check_square(matrix: Tensor) -> Tensor:
    if not isinstance(matrix, Tensor):
        raise TypeError(f"matrix must be a torch.Tensor of shape (C, C), got {type(matrix).__name__}")
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise ValueError(f"matrix must be square (C, C) with C >= 2, got {tuple(matrix.shape)}")
    return matrix


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
        raise ValueError(f"threshold must be a probability in [0, 1), got {threshold!r}")
    return float(threshold)


# --------------------------------------------------------------------------------------------
# Soft targets of single examples


def soft_targets(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """softmax(logits / T) per row. (N, C) -> (N, C); every row sums to 1."""
    check_logits(logits, "logits")
    return F.softmax(logits.double() / check_temperature(temperature), dim=1).to(logits.dtype)


def entropy(logits: Tensor, temperature: float = 1.0, unit: str = "nats") -> Tensor:
    """Entropy of each soft target, (N, C) -> (N,), in ``"nats"`` or ``"bits"``.

    0 for a one-hot distribution; log C (log2 C bits) for the uniform one.
    """
    if unit not in ("nats", "bits"):
        raise ValueError(f"unit must be 'nats' or 'bits', got {unit!r}")
    check_logits(logits, "logits")
    log_p = F.log_softmax(logits.double() / check_temperature(temperature), dim=1)
    h = -(log_p.exp() * log_p).sum(1)
    return (h / LN2 if unit == "bits" else h).to(logits.dtype)


def effective_classes(logits: Tensor, temperature: float = 1.0, threshold: float = 0.01) -> Tensor:
    """How many classes get more than ``threshold`` probability in each soft target. (N, C) -> (N,).

    A one-hot label has 1; the uniform distribution over C classes has C (for threshold < 1/C).
    """
    p = soft_targets(logits, temperature)
    return (p > _check_threshold(threshold)).sum(1)


def perplexity(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """exp(entropy): the number of equally likely classes with the same entropy. (N, C) -> (N,).

    1 for a one-hot distribution, C for the uniform one.
    """
    return entropy(logits, temperature).exp()


def top_classes(logits: Tensor, k: int = 2, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """The ``k`` most likely classes of each row: ``(probabilities (N, k), classes (N, k))``,
    most likely first."""
    check_logits(logits, "logits")
    _check_k(k, logits.shape[1])
    return soft_targets(logits, temperature).topk(k, dim=1)


def top2_margin(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """p(top class) - p(second class) for each row, (N, C) -> (N,), in [0, 1].

    A small margin means the teacher sees two plausible answers: the example carries a lot of
    information about how those two classes relate.
    """
    probs, _ = top_classes(logits, 2, temperature)
    return probs[:, 0] - probs[:, 1]


INFORMATIVE_CRITERIA = ("margin", "second", "entropy")


def most_informative_examples(
    logits: Tensor,
    k: int = 12,
    temperature: float = 1.0,
    by: str = "margin",
    among: Tensor | None = None,
) -> Tensor:
    """Indices (k,) of the examples whose soft targets say most about a second class.

    ``by``: ``"margin"`` — smallest top-1/top-2 margin first; ``"second"`` — largest
    second-highest probability first; ``"entropy"`` — highest entropy first. ``among``: an
    optional bool mask (N,) restricting the search (e.g. correctly classified examples only).
    Ties are broken by the lower index, so the result is deterministic.
    """
    check_logits(logits, "logits")
    if by not in INFORMATIVE_CRITERIA:
        raise ValueError(f"by={by!r} is unknown; expected one of {INFORMATIVE_CRITERIA}")
    n = logits.shape[0]
    if among is not None:
        if not isinstance(among, Tensor) or among.dtype != torch.bool or among.shape != (n,):
            raise ValueError(f"among must be a bool tensor of shape ({n},), got "
                             f"{getattr(among, 'dtype', type(among).__name__)} {tuple(getattr(among, 'shape', ()))}")
        candidates = among.nonzero().flatten().cpu()
    else:
        candidates = torch.arange(n)
    _check_k(k, len(candidates), "k (examples requested)")
    rows = logits[candidates.to(logits.device)]
    if by == "margin":
        score = top2_margin(rows, temperature)
    elif by == "second":
        score = -top_classes(rows, 2, temperature)[0][:, 1]
    else:
        score = -entropy(rows, temperature)
    order = torch.sort(score.double().cpu(), stable=True).indices[:k]
    return candidates[order]


# --------------------------------------------------------------------------------------------
# Class-level view: the soft-target matrix


def soft_target_matrix(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """The teacher's mean soft target for each true class. (N, C), (N,) -> (C, C).

    Row ``i`` averages softmax(logits / T) over the examples labelled ``i``; entry ``[i, j]`` is
    the mean probability that images of class ``i`` give to class ``j``. Rows sum to 1. As
    T -> 0 the matrix tends to the row-normalised confusion matrix; as T -> infinity every row
    tends to the uniform distribution. A class with no examples gets a row of NaN.
    """
    check_logits(logits, "logits")
    y = check_targets(targets, logits).to(logits.device)
    c = logits.shape[1]
    p = soft_targets(logits, temperature).double()
    sums = torch.zeros(c, c, dtype=torch.float64, device=logits.device).index_add_(0, y, p)
    counts = torch.bincount(y, minlength=c).double()
    return (sums / counts[:, None]).to(logits.dtype)  # 0/0 -> NaN for absent classes


class Pair(NamedTuple):
    """Two classes and how much soft probability passes between them."""

    first: int
    second: int
    score: float


def most_confused_pairs(matrix: Tensor, k: int = 5, symmetric: bool = True) -> list[Pair]:
    """The ``k`` largest off-diagonal entries of a (C, C) soft-target matrix, largest first.

    ``symmetric=True``: unordered pairs ``first < second`` scored by
    ``(matrix[first, second] + matrix[second, first]) / 2`` — "these two classes look alike".
    ``symmetric=False``: ordered pairs, ``first`` the true class, ``second`` the one it is
    mistaken for. Rows of NaN (absent classes) are ignored.
    """
    m = _check_square(matrix).double().cpu()
    c = m.shape[0]
    if symmetric:
        score = (m + m.T) / 2
        mask = torch.triu(torch.ones(c, c, dtype=torch.bool), diagonal=1)
    else:
        score = m
        mask = ~torch.eye(c, dtype=torch.bool)
    mask &= ~torch.isnan(score)
    available = int(mask.sum())
    _check_k(k, available, "k (pairs requested)")
    flat = torch.where(mask, score, torch.full_like(score, -math.inf)).flatten()
    values, positions = torch.sort(flat, descending=True, stable=True)
    return [Pair(int(p) // c, int(p) % c, float(v)) for v, p in zip(values[:k], positions[:k])]


def most_likely_wrong_classes(matrix: Tensor, true_class: int, k: int = 2) -> list[tuple[int, float]]:
    """The ``k`` wrong classes that images of ``true_class`` give most probability to,
    ``[(class, mean probability), ...]`` largest first (e.g. Hinton's "a 2 that looks like a 3 or a 7")."""
    m = _check_square(matrix).double().cpu()
    c = m.shape[0]
    if isinstance(true_class, bool) or not isinstance(true_class, int) or not 0 <= true_class < c:
        raise ValueError(f"true_class must be a class id in 0..{c - 1}, got {true_class!r}")
    _check_k(k, c - 1)
    row = m[true_class].clone()
    row[true_class] = -math.inf
    values, classes = torch.sort(row, descending=True, stable=True)
    return [(int(j), float(v)) for v, j in zip(values[:k], classes[:k])]


def compare_wrong_classes(logits: Tensor, targets: Tensor, true_class: int, a: int, b: int,
                          temperature: float = 1.0) -> dict[str, float]:
    """How the images of ``true_class`` split between two wrong classes ``a`` and ``b``.

    Hinton et al. (2015, section 1): "one version of a 2 may be given a probability of 1e-6 of
    being a 3 and 1e-9 of being a 7 whereas for another version it may be the other way around".
    Returns the median probability of ``a`` and of ``b`` among those images, and the fraction of
    them that rank ``a`` above ``b``.
    """
    check_logits(logits, "logits")
    y = check_targets(targets, logits).to(logits.device)
    c = logits.shape[1]
    for name, value in (("true_class", true_class), ("a", a), ("b", b)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < c:
            raise ValueError(f"{name} must be a class id in 0..{c - 1}, got {value!r}")
    if len({true_class, a, b}) != 3:
        raise ValueError(f"true_class, a and b must be three different classes, got {true_class}, {a}, {b}")
    rows = y == true_class
    if not bool(rows.any()):
        raise ValueError(f"no example has label {true_class}")
    p = soft_targets(logits[rows].double(), temperature)
    return {"examples": int(rows.sum()), "median_p_a": float(p[:, a].median()), "median_p_b": float(p[:, b].median()),
            "fraction_a_above_b": float((p[:, a] > p[:, b]).double().mean())}


# --------------------------------------------------------------------------------------------
# How much a soft target says


def entropy_by_temperature(logits: Tensor, temperatures: Sequence[float], unit: str = "bits") -> Tensor:
    """Mean entropy of the soft targets at each temperature, shape (len(temperatures),)."""
    check_logits(logits, "logits")
    return torch.stack([entropy(logits, t, unit).double().mean() for t in check_temperatures(temperatures)]).float()


def within_class_information(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> float:
    r"""Mean KL, in bits, between each example's soft target and its class's mean soft target.

    .. math:: \frac1N \sum_n \mathrm{KL}\big(p_n(T) \,\|\, \bar p_{y_n}(T)\big)

    It measures how much the soft targets of one class *differ between images*. If it is 0,
    every image of a class gets the same soft target and the teacher adds nothing a fixed
    "label smoothing" could not; the larger it is, the more image-specific knowledge the soft
    targets carry. It tends to 0 as T grows (every target becomes uniform).
    """
    check_logits(logits, "logits")
    y = check_targets(targets, logits).to(logits.device)
    t = check_temperature(temperature)
    log_p = F.log_softmax(logits.double() / t, dim=1)
    mean = soft_target_matrix(logits.double(), y, t)[y]  # (N, C) class means
    kl = (log_p.exp() * (log_p - mean.clamp_min(1e-300).log())).sum(1)
    return float(kl.mean() / LN2)


def information_table(
    logits: Tensor,
    targets: Tensor,
    temperatures: Sequence[float] = (1, 2, 4, 8, 20),
    threshold: float = 0.01,
) -> list[dict[str, float | str]]:
    """One row per temperature (after a first row for the one-hot label) with the mean over
    examples of: entropy in bits, perplexity (effective number of classes), classes above
    ``threshold``, probability *not* on the top class, and :func:`within_class_information`.
    """
    check_logits(logits, "logits")
    check_targets(targets, logits)
    temps = check_temperatures(temperatures)
    _check_threshold(threshold)
    label = f"classes > {threshold:.0%}"
    rows: list[dict[str, float | str]] = [{
        "target": "one-hot label", "entropy (bits)": 0.0, "perplexity": 1.0, label: 1.0,
        "mass off top class": 0.0, "image-specific bits": 0.0,
    }]
    for t in temps:
        p = soft_targets(logits, t)
        rows.append({
            "target": f"soft, T = {t:g}",
            "entropy (bits)": float(entropy(logits, t, "bits").mean()),
            "perplexity": float(perplexity(logits, t).mean()),
            label: float(effective_classes(logits, t, threshold).float().mean()),
            "mass off top class": float((1 - p.max(1).values).mean()),
            "image-specific bits": within_class_information(logits, targets, t),
        })
    return rows


def example_menu(logits: Tensor, targets: Tensor, class_names: Sequence[str], n_informative: int = 6,
                 n_confident: int = 2, n_wrong: int = 2, temperature: float = 1.0) -> list[tuple[str, int]]:
    """``[(label, index), ...]`` of interesting test examples for a drop-down: the most ambiguous
    correctly classified ones, the most confident ones, and misclassified ones (if any)."""
    check_logits(logits, "logits")
    y = check_targets(targets, logits).to(logits.device)
    if len(class_names) != logits.shape[1]:
        raise ValueError(f"class_names has {len(class_names)} names but the logits have {logits.shape[1]} classes")
    probs, classes = top_classes(logits, 2, temperature)
    correct = (classes[:, 0] == y).cpu()
    menu: list[tuple[str, int]] = []

    def describe(i: int, kind: str) -> str:
        first, second = int(classes[i, 0]), int(classes[i, 1])
        return (f"{kind}: #{i} (label {class_names[int(y[i])]}) → {class_names[first]} {float(probs[i, 0]):.0%}, "
                f"{class_names[second]} {float(probs[i, 1]):.0%}")

    groups = (("ambiguous", n_informative, correct, "margin"), ("misclassified", n_wrong, ~correct, "margin"))
    for kind, n, mask, by in groups:
        n = min(n, int(mask.sum()))
        if n > 0:
            menu += [(describe(int(i), kind), int(i)) for i in most_informative_examples(logits, n, temperature, by, mask)]
    n = min(n_confident, int(correct.sum()))
    if n > 0:
        confident = torch.where(correct, probs[:, 0].cpu() - probs[:, 1].cpu(), torch.tensor(-1.0, dtype=probs.dtype))
        order = torch.sort(confident.double(), descending=True, stable=True).indices[:n]
        menu += [(describe(int(i), "confident"), int(i)) for i in order]
    return menu


# --------------------------------------------------------------------------------------------
# "What we found": this run beside the paper

#: What Hinton, Vinyals & Dean (2015) report for their MNIST teacher (section 3).
PAPER = {
    "teacher_errors": 67,
    "test_images": 10_000,
    "teacher": "784-1200-1200-10, dropout, inputs jittered by up to 2 pixels, all 60,000 training images",
    "two_example": "a 2 may get 1e-6 for 3 and 1e-9 for 7, another 2 the other way round",
    "distillation_temperature": 20,
}


def findings(logits: Tensor, targets: Tensor, class_names: Sequence[str], pair_temperature: float = 4.0,
             temperatures: Sequence[float] = (1, 4, 20)) -> list[dict[str, str]]:
    """Rows ``{"quantity", "this run", "Hinton et al. 2015"}`` for the lesson's "What we found" table."""
    check_logits(logits, "logits")
    y = check_targets(targets, logits)
    temps = check_temperatures(temperatures)
    names = list(class_names)
    n = len(y)
    errors = int((logits.argmax(1).cpu() != y.cpu()).sum())
    paper_rate = PAPER["teacher_errors"] / PAPER["test_images"]
    matrix = soft_target_matrix(logits, y, pair_temperature)
    pairs = most_confused_pairs(matrix, k=3)
    rows = [
        {"quantity": "teacher test errors", "this run": f"{errors} of {n:,} ({errors / n:.2%})",
         "Hinton et al. 2015": f"{PAPER['teacher_errors']} of {PAPER['test_images']:,} ({paper_rate:.2%})"},
        {"quantity": f"most alike classes (soft-target matrix, T = {pair_temperature:g})",
         "this run": ", ".join(f"{names[p.first]}/{names[p.second]}" for p in pairs),
         "Hinton et al. 2015": "not reported"},
    ]
    if logits.shape[1] > 7 and bool((y == 2).any()):
        two = compare_wrong_classes(logits, y, 2, 3, 7, temperature=1.0)
        rows.append({
            "quantity": f"images labelled {names[2]}: median p({names[3]}), p({names[7]}) at T = 1; "
                        f"share ranking {names[3]} above {names[7]}",
            "this run": f"{two['median_p_a']:.1e}, {two['median_p_b']:.1e}; {two['fraction_a_above_b']:.0%}",
            "Hinton et al. 2015": PAPER["two_example"]})
    entropies = entropy_by_temperature(logits, temps, "bits").tolist()
    rows.append({"quantity": "mean entropy of the soft targets (bits) at " + ", ".join(f"T = {t:g}" for t in temps),
                 "this run": ", ".join(f"{h:.2f}" for h in entropies),
                 "Hinton et al. 2015": f"not reported (a one-hot label: 0; uniform: {math.log2(logits.shape[1]):.2f}); "
                                       f"MNIST distilled at T = {PAPER['distillation_temperature']}"})
    specific = [within_class_information(logits, y, t) for t in temps]
    rows.append({"quantity": "image-specific information (bits, KL to the class mean) at "
                             + ", ".join(f"T = {t:g}" for t in temps),
                 "this run": ", ".join(f"{v:.3f}" for v in specific),
                 "Hinton et al. 2015": "not measured; the paper argues that high-entropy soft targets give "
                                       "\"much more information per training case\" than hard targets"})
    return rows
