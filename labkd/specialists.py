r"""A generalist and specialists on confusable classes (Hinton, Vinyals & Dean 2015, §5).

The recipe of the paper's JFT experiment, on a dataset a CPU can handle (Fashion-MNIST):

1. Train a **generalist** on all classes.
2. **Cluster the classes** that the generalist confuses: k-means on the columns of the covariance
   matrix of its predicted probability vectors (:func:`prediction_covariance`, :func:`cluster_classes`).
3. Train one **specialist** per cluster of two or more classes, on all training images of its
   classes plus an equal-sized random sample of the others, all mapped to one *dustbin* class
   (:func:`dustbin_labels`, :func:`specialist_data`). It has K + 1 outputs. After training, the dustbin logit is shifted
   so that the specialist's dustbin probability matches the real share of other-class images
   again: by default a shift fitted on the validation images (:func:`fit_dustbin_shift`); the
   paper's fixed correction, the log of the under-sampling factor, is :func:`dustbin_correction`.
4. At test time, the specialists whose classes contain one of the generalist's top-n classes
   are *active*; the combined prediction :math:`q` minimises

.. math::
    \mathrm{KL}(p^g \,\|\, q) + \sum_{m \in A_k} \mathrm{KL}(p^m \,\|\, q^m),

where :math:`q^m` is :math:`q` restricted to specialist m's classes plus one entry, the sum of
:math:`q` over all its other classes, that faces its dustbin (:func:`combine`).

In the lesson the specialists have **capacity of their own**: a small CNN trained from scratch on its
classes and a dustbin, beside a *smaller* generalist (a one-hidden-layer MLP). A first version
started each specialist from the generalist's weights, with the generalist's size, and added
+0.02 % on Fashion-MNIST: a copy of the generalist has no more capacity than the generalist.
(:func:`init_specialist` and ``from_generalist=True`` keep that variant.)

The clustering and the combination, on tensors, are in :mod:`labkd.specialists_combine`; the
covariance figure in :mod:`labkd.specialists_figures`.

>>> small = specialist_base(data)                       # 10,000 Fashion-MNIST training images
>>> gen = train_generalist(small, seed, fast)
>>> group = class_ids(CONFUSABLE, small)                 # shirt, T-shirt/top, pullover, coat
>>> run = run_specialists(small, gen, [group], RECIPES("specialist", fast))
>>> run.rows            # generalist vs combined, overall and on the specialists' classes
>>> specialist_claim(runs)                               # paired over the generalists' seeds
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkd import metrics, stats
from labkd.checks import check_config, check_hidden, check_positive_int, check_seeds
from labkd.data import Data, Split
from labkd.experiments import Trained, train_model
from labkd.models import BlockModel, rebuild
from labkd.progress import RunProgress
from labkd.recipes import Recipes
from labkd.specialists_combine import (
    active_specialists, check_classes, check_probs, cluster_classes, combine, prediction_covariance,
)
from labkd.train import TrainConfig

DUSTBIN = "dustbin"
#: How a specialist's dustbin logit is shifted after training (see :func:`train_specialists`).
CORRECTIONS = ("fitted", "paper")

# --------------------------------------------------------------------------------------------
# The regime (chosen on the validation split with the development seeds DEV_SEEDS)

#: Part 2 runs on the whole Fashion-MNIST training split (all test images).
DATASET = "fashion_mnist"
N_TRAIN = 55_000
#: The confusable group of Fashion-MNIST: the four upper-body garments, the only classes on which
#: the generalist's validation accuracy is below its average (on the development seed). k-means on
#: the covariance of its validation predictions, with four clusters, finds them as two pairs
#: (T-shirt/top with shirt, pullover with coat); the lesson prints both.
CONFUSABLE = ("T-shirt/top", "Pullover", "Coat", "Shirt")
#: The generalist: a small MLP, 784-64-10. The specialist: a small CNN of its own (8 and 16
#: channels, a linear layer on the 7x7 maps), trained from scratch. Tried first, on the
#: development seeds: specialists started from a generalist of their own size (this lesson's first
#: version: +0.02 % on all classes); a 784-512-512 MLP specialist from scratch (no better than the
#: generalist on its own classes, 76 % on the validation images); CNNs with global average pooling
#: on 10,000 images (67-73 % on their own classes, weaker than the generalist); the same CNN at lr
#: 0.05 (its training collapsed to the dustbin).
GENERALIST = {"arch": "mlp", "hidden": (64,)}
SPECIALIST = {"arch": "cnn", "channels": (8, 16), "head": "flatten"}
#: Other-class (dustbin) images per image of the specialist's classes: a quarter keeps the
#: specialist's training set, and its cost, small while it sees every image of its own classes.
REST_RATIO = 0.25
#: The old generalist (lesson 08's first version), kept for :func:`train_generalists`' default.
HIDDEN = (512, 512)
#: Recipes, as data: SGD + Nesterov, cosine schedule, no jitter; evaluated after the last epoch
#: only; fast mode trains 2 and 1 epochs. ``RECIPES("specialist", fast, seed=s)``.
RECIPES = Recipes({"generalist": TrainConfig(epochs=10, batch_size=128, lr=0.05, eval_every=10),
                   "specialist": TrainConfig(epochs=4, batch_size=64, lr=0.01, eval_every=4)},
                  fast={"generalist": {"epochs": 2, "eval_every": 2}, "specialist": {"epochs": 1, "eval_every": 1}})
#: Seeds used to choose the regime; the claim runs on fresh seeds from FRESH_FIRST.
DEV_SEEDS = (0, 1)
FRESH_FIRST = 100


def specialist_base(data: Data, n_train: int = N_TRAIN) -> Data:
    """The first ``n_train`` training images of ``data`` (a fixed seeded sample; all if fewer)."""
    check_positive_int(n_train, "n_train")
    return data.subset(n_train=min(int(n_train), len(data.train)), seed=0)


def class_ids(names: Sequence[str | int], data: Data, argument: str = "group") -> list[int]:
    """Class ids of ``names`` (class names of ``data`` or ids), checked: an unknown class raises a
    ValueError naming ``argument`` and listing the classes."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise TypeError(f"{argument} must be a list of class names or ids, got {names!r}")
    out = []
    for n in names:
        if isinstance(n, str):
            if n not in data.class_names:
                raise ValueError(f"{argument} has the unknown class {n!r}; the classes of {data.name} are "
                                 f"{data.class_names}")
            out.append(data.class_names.index(n))
        else:
            out.append(n)
    return check_classes(out, data.num_classes, argument)


def _model_options(model: dict, argument: str) -> tuple[str, dict]:
    if not isinstance(model, dict) or "arch" not in model:
        raise ValueError(f"{argument} must be a dict with an 'arch' and its options, e.g. {SPECIALIST}, got {model!r}")
    return model["arch"], {k: v for k, v in model.items() if k != "arch"}


# --------------------------------------------------------------------------------------------
# A specialist's data and initial weights


def dustbin_labels(labels: Tensor, classes: Sequence[int]) -> Tensor:
    """Labels for a specialist: class ``classes[i]`` becomes i, every other class becomes
    ``len(classes)`` (the dustbin). labels (N,) -> (N,) long."""
    if len(classes) == 0:
        raise ValueError("classes is empty; a specialist needs at least one class")
    classes = [int(c) for c in classes]
    lookup = torch.full((max(int(labels.max()) + 1 if labels.numel() else 0, max(classes) + 1),), len(classes),
                        dtype=torch.long)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    return lookup[labels.long().cpu()].to(labels.device)


def specialist_data(data: Data, classes: Sequence[int], seed: int = 0, rest_ratio: float = 1.0) -> Data:
    """The training set of a specialist on ``classes``: every training image of those classes plus
    a seeded random sample of the others, ``rest_ratio`` times as many (all of them if fewer),
    labelled by :func:`dustbin_labels`. Validation and test splits keep all images, relabelled.
    The result has ``len(classes) + 1`` classes, the last called ``"dustbin"``."""
    classes = check_classes(classes, data.num_classes)
    if not (isinstance(rest_ratio, (int, float)) and rest_ratio > 0 and math.isfinite(rest_ratio)):
        raise ValueError(f"rest_ratio must be a number > 0 (other-class images per specialist image), got {rest_ratio!r}")
    member = torch.isin(data.train.y, torch.tensor(classes, device=data.train.y.device))
    special, rest = member.nonzero().squeeze(1), (~member).nonzero().squeeze(1)
    n_rest = min(len(rest), max(1, round(rest_ratio * len(special))))
    gen = torch.Generator().manual_seed(seed)
    chosen = rest[torch.randperm(len(rest), generator=gen)[:n_rest].to(rest.device)]
    index = torch.cat([special, chosen]).sort().values

    def relabel(split: Split) -> Split:
        return Split(split.x, dustbin_labels(split.y, classes))

    train = data.train.take(index)
    spec = {**data.spec, "specialist": {"classes": classes, "seed": seed, "rest_ratio": float(rest_ratio),
                                        "n_rest": int(n_rest)}}
    return dataclasses.replace(
        data, train=relabel(train), val=relabel(data.val), test=relabel(data.test),
        class_names=[data.class_names[c] for c in classes] + [DUSTBIN], spec=spec)


def dustbin_correction(data: Data, classes: Sequence[int], specialist: Data) -> float:
    """log(other-class training images / other-class images the specialist saw): added to the
    dustbin logit after training, it undoes the under-sampling of the other classes (the paper's
    "incrementing the logit of the dustbin class by the log of the proportion by which the
    specialist class is oversampled")."""
    classes = check_classes(classes, data.num_classes)
    n_rest_all = int((~torch.isin(data.train.y, torch.tensor(classes, device=data.train.y.device))).sum())
    n_rest_seen = int((specialist.train.y == len(classes)).sum())
    if n_rest_seen == 0:
        raise ValueError("the specialist's training set has no dustbin images")
    return math.log(n_rest_all / n_rest_seen)


def fit_dustbin_shift(logits: Tensor, dustbin_fraction: float, iters: int = 60) -> float:
    """The shift b of the dustbin (last) logit that makes the specialist's mean dustbin probability
    on held-out images equal ``dustbin_fraction``, the real share of other-class images. logits
    (N, K+1). Found by bisection (the mean is increasing in b).

    The paper's :func:`dustbin_correction` assumes the specialist fully adapted to its balanced
    training set; a specialist started from the generalist and trained briefly still carries the
    generalist's natural class frequencies, and the fixed correction would then count them twice.
    Fitting the shift on validation images is right in both cases."""
    if not 0 < dustbin_fraction < 1:
        raise ValueError(f"dustbin_fraction must be in (0, 1), got {dustbin_fraction!r}")
    z = logits.double()
    lo, hi = -30.0, 30.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        shifted = z.clone()
        shifted[:, -1] += mid
        if float(F.softmax(shifted, dim=1)[:, -1].mean()) < dustbin_fraction:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _head_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    head = getattr(model, "head", None)
    linears = [(n, m) for n, m in head.named_modules() if isinstance(m, nn.Linear)] if head is not None else []
    if not linears:
        raise TypeError(f"{type(model).__name__} has no linear head; build the generalist with labkd.build_model")
    name, layer = linears[-1]
    return f"head.{name}" if name else "head", layer


def init_specialist(generalist: nn.Module | Trained, classes: Sequence[int]) -> BlockModel:
    r"""A model with ``len(classes) + 1`` outputs that starts as the generalist: every hidden layer
    copied; the head's rows are the generalist's rows for ``classes`` plus a dustbin row, the mean
    of the other rows with bias :math:`\bar b + \log(\#\text{others})` — the log-sum-exp of the
    other logits when they are equal, a lower bound on it otherwise (Jensen)."""
    model = generalist.model if isinstance(generalist, Trained) else generalist
    spec = getattr(model, "spec", None)
    if not spec:
        raise TypeError("generalist must be a model built with labkd.build_model (or a Trained)")
    classes = check_classes(classes, spec["num_classes"])
    rest = [c for c in range(spec["num_classes"]) if c not in classes]
    new = rebuild({**spec, "num_classes": len(classes) + 1})
    prefix, old_head = _head_linear(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith(prefix + ".")}
    w, b = old_head.weight.detach(), old_head.bias.detach()
    state[f"{prefix}.weight"] = torch.cat([w[classes], w[rest].mean(0, keepdim=True)])
    state[f"{prefix}.bias"] = torch.cat([b[classes], (b[rest].mean() + math.log(len(rest))).reshape(1)])
    new.load_state_dict(state)
    identity = getattr(generalist, "key", None) or getattr(model, "cache_key", None)
    if identity:
        new.cache_key = f"{identity}->specialist{classes}"
    return new.eval()


# --------------------------------------------------------------------------------------------
# Training the specialists


@dataclass
class Specialist:
    """One trained specialist: its classes, the trained model, the dustbin shift in use (fitted on
    the validation images, :func:`fit_dustbin_shift`), the paper's fixed correction for comparison
    (:func:`dustbin_correction`) and its probabilities on the test set, (N_test, len(classes) + 1)."""

    classes: list[int]
    trained: Trained
    correction: float
    test_probs: Tensor
    n_train: int
    paper_correction: float = float("nan")


def specialist_probs(model: nn.Module, x: Tensor, correction: float) -> Tensor:
    """softmax of the specialist's logits with ``correction`` added to the dustbin (last) logit. (N, K+1)."""
    logits = metrics.predict_logits(model, x)
    logits[:, -1] += correction
    return F.softmax(logits, dim=1)


def train_specialists(data: Data, generalist: Trained, groups: Sequence[Sequence[int]], config: TrainConfig,
                      min_size: int = 2, rest_ratio: float = 1.0, correction: str = "fitted",
                      progress: bool | None = None, model: dict | None = None,
                      from_generalist: bool = False) -> list[Specialist]:
    """One specialist per group of at least ``min_size`` classes, trained (cached) with ``config``
    on :func:`specialist_data` (its sample of other classes drawn with ``config.seed``).

    The specialist is ``model`` (a dict: ``arch`` and its options; :data:`SPECIALIST` by default),
    built from ``config.seed``; with ``from_generalist=True`` it is instead a copy of the generalist
    with a dustbin row (:func:`init_specialist`, lesson 08's first version). ``correction``: how the
    dustbin logit is shifted after training — ``"fitted"`` (:func:`fit_dustbin_shift` on the
    validation images) or ``"paper"`` (:func:`dustbin_correction`)."""
    check_config(config, "config", loss="cross_entropy")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction={correction!r} is unknown; expected one of {CORRECTIONS}")
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence):
        raise TypeError(f"groups must be a list of class lists, e.g. [[0, 2, 4, 6]], got {groups!r}")
    groups = [check_classes(g, data.num_classes, f"groups[{i}]") for i, g in enumerate(groups)]
    chosen = [g for g in groups if len(g) >= min_size]
    if from_generalist:
        if model is not None:
            raise ValueError("give model or from_generalist=True, not both: a specialist started from the "
                             "generalist has the generalist's architecture")
        spec = generalist.model.spec
        arch = spec["arch"]
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()
                   if k not in ("arch", "input_shape", "num_classes", "seed")}
    else:
        arch, options = _model_options(SPECIALIST if model is None else model, "model")
    runs = RunProgress(len(chosen), "specialists", progress, None)
    out = []
    for classes in chosen:
        sdata = specialist_data(data, classes, seed=config.seed, rest_ratio=rest_ratio)
        names = ", ".join(data.class_names[c] for c in classes)
        if from_generalist:
            trained = train_model(arch, sdata, config, init=init_specialist(generalist, classes), progress=False,
                                  label=f"specialist [{names}] from {generalist.key[:8]} on {data.name}", **options)
        else:
            trained = train_model(arch, sdata, config, progress=False,
                                  label=f"specialist [{names}] {arch} seed={config.seed} on {data.name}", **options)
        paper = dustbin_correction(data, classes, sdata)
        if correction == "paper":
            shift = paper
        else:
            in_classes = torch.isin(data.val.y, torch.tensor(classes, device=data.val.y.device))
            shift = fit_dustbin_shift(metrics.predict_logits(trained.model, data.val.x),
                                      float((~in_classes).float().mean()))
        out.append(Specialist(classes, trained, shift, specialist_probs(trained.model, data.test.x, shift),
                              len(sdata.train), paper))
        runs.step(names)
    runs.close()
    return out


# --------------------------------------------------------------------------------------------
# One whole run and its results


@dataclass
class SpecialistRun:
    """A generalist, its class clusters, its specialists, and the combined test predictions."""

    data: Data
    generalist: Trained
    groups: list[list[int]]
    specialists: list[Specialist]
    generalist_probs: Tensor
    combined_probs: Tensor
    active: Tensor
    covariance: Tensor
    confusable: list[int] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)

    @property
    def covered(self) -> list[int]:
        """Classes that some specialist covers (the confusable ones)."""
        return sorted({c for s in self.specialists for c in s.classes})

    def changed(self) -> Tensor:
        """Indices of test images whose top-1 class the specialists changed."""
        return (self.generalist_probs.argmax(1) != self.combined_probs.argmax(1)).nonzero().squeeze(1)


def confusable_classes(probs: Tensor, y: Tensor) -> list[int]:
    """The classes whose images the model gets right less often than average (per-class recall
    below the overall accuracy). probs (N, C), y (N,). Lesson 08 computes them on the validation
    split, so the test set does not choose the classes it is then scored on."""
    check_probs(probs, "probs")
    overall = accuracy_on(probs, y)
    recall = [accuracy_on(probs, y, [c]) for c in range(probs.shape[1])]
    return [c for c, r in enumerate(recall) if not math.isnan(r) and r < overall]


def accuracy_on(probs: Tensor, y: Tensor, classes: Sequence[int] | None = None) -> float:
    """Top-1 accuracy over the examples whose true class is in ``classes`` (all when None)."""
    mask = torch.ones_like(y, dtype=torch.bool) if classes is None else torch.isin(y, torch.tensor(list(classes)))
    if not bool(mask.any()):
        return float("nan")
    return float((probs[mask].argmax(1) == y[mask]).float().mean())


def run_specialists(data: Data, generalist: Trained, groups: int | Sequence[Sequence[int | str]], config: TrainConfig,
                    top_n: int = 1, cluster_seed: int = 0, rest_ratio: float = 1.0, steps: int = 300,
                    correction: str = "fitted", progress: bool | None = None, model: dict | None = None,
                    from_generalist: bool = False) -> SpecialistRun:
    """Train the specialists and combine them with the generalist on the validation and test splits.

    ``groups``: the specialists' class groups (lists of class ids or names, e.g. ``[CONFUSABLE]``),
    or a number of clusters to find by clustering the generalist's *validation* predictions
    (:func:`cluster_classes`). ``model``/``from_generalist``: see :func:`train_specialists`.
    ``rows``: one row per model (``generalist``, ``generalist + specialists``) with ``seed`` (the
    generalist's), ``test_acc``, ``confusable_acc`` (on the confusable classes: the given groups'
    classes, or with a number of clusters those of :func:`confusable_classes` on the validation
    split), ``covered_acc`` (on the specialists' classes), ``other_acc`` (on the rest),
    ``test_errors``, and ``val_acc``/``val_confusable_acc`` (the same on the validation split,
    for choosing a regime)."""
    val_probs = F.softmax(metrics.predict_logits(generalist.model, data.val.x), dim=1)
    if isinstance(groups, (int, np.integer)) and not isinstance(groups, bool):
        n_clusters = int(groups)
        groups = cluster_classes(val_probs, n_clusters, seed=cluster_seed)
        confusable = confusable_classes(val_probs, data.val.y)
    else:
        if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence) or len(groups) == 0:
            raise ValueError(f"groups must be a number of clusters or a non-empty list of class groups "
                             f"(e.g. [{list(CONFUSABLE)}]), got {groups!r}")
        groups = [class_ids(g, data, f"groups[{i}]") for i, g in enumerate(groups)]
        n_clusters = len(groups)
        confusable = sorted({c for g in groups for c in g})
    specialists = train_specialists(data, generalist, groups, config, rest_ratio=rest_ratio, correction=correction,
                                    progress=progress, model=model, from_generalist=from_generalist)
    s_groups = [s.classes for s in specialists]

    def combined(x: Tensor, shift_probs: list[Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        p_g = F.softmax(metrics.predict_logits(generalist.model, x), dim=1)
        if not specialists:
            return p_g, p_g, torch.zeros(len(p_g), 0, dtype=torch.bool)
        probs = shift_probs if shift_probs is not None else \
            [specialist_probs(s.trained.model, x, s.correction) for s in specialists]
        active = active_specialists(p_g, s_groups, top_n)
        return p_g, combine(p_g, probs, s_groups, active, steps=steps), active

    p_g, q, active = combined(data.test.x, [s.test_probs for s in specialists])
    v_g, v_q, _ = combined(data.val.x)
    run = SpecialistRun(data, generalist, groups, specialists, p_g, q, active, prediction_covariance(val_probs),
                        confusable)
    y, covered = data.test.y, run.covered
    others = [c for c in range(data.num_classes) if c not in covered]
    for name, probs, vprobs in (("generalist", p_g, v_g), ("generalist + specialists", q, v_q)):
        run.rows.append({"model": name, "seed": generalist.model.spec["seed"], "clusters": n_clusters,
                         "specialists": len(specialists), "test_acc": accuracy_on(probs, y),
                         "confusable_acc": accuracy_on(probs, y, confusable) if confusable else float("nan"),
                         "covered_acc": accuracy_on(probs, y, covered) if covered else float("nan"),
                         "other_acc": accuracy_on(probs, y, others) if others else float("nan"),
                         "test_errors": metrics.error_count(torch.log(probs.clamp_min(1e-30)), y),
                         "val_acc": accuracy_on(vprobs, data.val.y),
                         "val_confusable_acc": accuracy_on(vprobs, data.val.y, confusable) if confusable
                         else float("nan")})
    return run


def describe_groups(groups: Sequence[Sequence[int]], class_names: Sequence[str]) -> list[str]:
    """One line per cluster: its class names, and whether it gets a specialist (2+ classes)."""
    return [f"cluster {i + 1}: {', '.join(class_names[c] for c in g)}"
            + ("  → specialist" if len(g) >= 2 else "  (one class: no specialist)") for i, g in enumerate(groups)]


def specialist_table_rows(run: SpecialistRun) -> list[dict]:
    """Each specialist: its classes, training images, dustbin correction, how often it was active
    on the test set, and the test accuracy on its classes of the generalist and of the combination."""
    y = run.data.test.y
    lines = []
    for m, s in enumerate(run.specialists):
        lines.append({"specialist": ", ".join(run.data.class_names[c] for c in s.classes),
                      "training images": f"{s.n_train:,}", "dustbin shift used": f"{s.correction:+.2f}",
                      "paper's correction": f"{s.paper_correction:+.2f}",
                      "active on": f"{float(run.active[:, m].float().mean()):.1%} of test images",
                      "generalist acc on its classes": f"{accuracy_on(run.generalist_probs, y, s.classes):.2%}",
                      "combined acc on its classes": f"{accuracy_on(run.combined_probs, y, s.classes):.2%}"})
    return lines


def relative_improvement(rows: Sequence[dict], metric: str = "test_acc") -> list[float]:
    """Per seed: (combined - generalist) / generalist of ``metric`` (the paper's 4.4 % is this for top-1)."""
    by_seed: dict[int, dict[str, float]] = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[r["model"]] = r[metric]
    return [(v["generalist + specialists"] - v["generalist"]) / v["generalist"] for v in by_seed.values()
            if "generalist" in v and "generalist + specialists" in v]


def verdicts(rows: Sequence[dict]) -> list[str]:
    """Did the specialists help, overall and on the confusable classes? Paired over the generalists'
    seeds (:func:`labkd.stats.claim`: Δ ± SE, and whether |Δ| > 2 SE on at least 5 seeds)."""
    out = []
    for metric, what in (("test_acc", "all classes"), ("confusable_acc", "the confusable classes")):
        pairs = _pairs(rows, metric)
        if pairs:
            c = stats.claim(f"specialists on {what}", [a for _, a, _ in pairs], [b for _, _, b in pairs],
                            [s for s, _, _ in pairs], treatment_name="generalist + specialists",
                            control_name="generalist")
            out.append(f"On {what}: {c.verdict}")
    return out


def _pairs(rows: Sequence[dict], metric: str) -> list[tuple[int, float, float]]:
    """(seed, combined, generalist) of ``metric`` for each generalist seed that has both rows."""
    by_seed: dict[int, dict[str, float]] = {}
    for r in rows:
        if not math.isnan(r[metric]):
            by_seed.setdefault(r["seed"], {})[r["model"]] = r[metric]
    return [(s, v["generalist + specialists"], v["generalist"]) for s, v in by_seed.items()
            if "generalist" in v and "generalist + specialists" in v]


def specialist_claim(runs: Sequence[SpecialistRun], prefix: str = "(08b)") -> stats.Claim:
    """The claim of §5 on the test split, paired over the generalists' seeds: the generalist combined
    with its specialists is more accurate *on the confusable classes* than the generalist alone.
    The accuracy on all classes (Δ ± SE) is kept in the claim's ``extra``."""
    rows = [r for run in runs for r in run.rows]
    pairs = _pairs(rows, "confusable_acc")
    if not pairs:
        raise ValueError("runs hold no generalist with its combination (nothing to compare)")
    names = ", ".join(runs[0].data.class_names[c] for c in runs[0].confusable)
    overall = _pairs(rows, "test_acc")
    delta, se = stats.mean_se([a - b for _, a, b in overall]) if len(overall) > 1 else (overall[0][1] - overall[0][2],
                                                                                      float("nan"))
    return stats.claim(f"{prefix} specialists raise the accuracy on the confusable classes ({names})",
                       [a for _, a, _ in pairs], [b for _, _, b in pairs], [s for s, _, _ in pairs],
                       expected=+1, treatment_name="generalist + specialists", control_name="generalist",
                       metric="test accuracy on the confusable classes",
                       all_classes_generalist=float(np.mean([b for _, _, b in overall])),
                       all_classes_combined=float(np.mean([a for _, a, _ in overall])),
                       all_classes_delta=delta, all_classes_se=se)


# --------------------------------------------------------------------------------------------
# Lesson helpers: data, several generalists, the summary table


def train_generalists(data: Data, seeds: Sequence[int], config: TrainConfig, hidden: Sequence[int] = HIDDEN,
                      progress: bool | None = None) -> list[Trained]:
    """One generalist MLP per seed (``config`` with its seed replaced), cached."""
    seeds = check_seeds(seeds)
    hidden = check_hidden(hidden)
    check_config(config, "config", loss="cross_entropy")
    runs = RunProgress(len(seeds), "generalists", progress, None)
    out = []
    for s in seeds:
        out.append(train_model("mlp", data, config.replace(seed=s), hidden=hidden, progress=False,
                               label=f"generalist seed={s} on {data.name}"))
        runs.step(f"seed {s}")
    runs.close()
    return out


def results_table_rows(runs: Sequence[SpecialistRun]) -> list[dict]:
    """Generalist alone vs generalist + specialists (mean ± std over the generalists' seeds): test
    accuracy on all classes and on the confusable ones, errors, and the relative improvement."""
    rows = [r for run in runs for r in run.rows]
    lines = []
    for model in ("generalist", "generalist + specialists"):
        mine = [r for r in rows if r["model"] == model]
        line = {"model": model, "seeds": len(mine),
                "test accuracy (all classes)": stats.pm_values([r["test_acc"] for r in mine]),
                "test accuracy (confusable classes)": stats.pm_values([r["confusable_acc"] for r in mine])
                if all(not math.isnan(r["confusable_acc"]) for r in mine) else "",
                "test errors": f"{np.mean([r['test_errors'] for r in mine]):.1f}"}
        if model != "generalist":
            for metric, name in (("test_acc", "all"), ("confusable_acc", "confusable")):
                rel = relative_improvement(rows, metric)
                line[f"relative improvement ({name})"] = ("+" if np.mean(rel) >= 0 else "") + stats.pm_values(rel) \
                    if rel else ""
        else:
            line["relative improvement (all)"] = line["relative improvement (confusable)"] = ""
        lines.append(line)
    return lines


def train_generalist(data: Data, seed: int, fast: bool, model: dict | None = None) -> Trained:
    """The lesson's generalist (:data:`GENERALIST` unless ``model``) with :data:`RECIPES` ``"generalist"``, cached."""
    arch, options = _model_options(GENERALIST if model is None else model, "model")
    return train_model(arch, data, RECIPES("generalist", fast, seed=seed), progress=False,
                       label=f"generalist {arch} {options} seed={seed} on {data.name}", **options)


def predict_probs(model: nn.Module | Trained, x: Tensor) -> Tensor:
    """softmax of a model's logits on images x: (N, C) probabilities, in eval mode."""
    model = model.model if isinstance(model, Trained) else model
    return F.softmax(metrics.predict_logits(model, x), dim=1)


#: Hinton et al. (2015), Table 3 (JFT): top-1 test accuracy of the baseline and of the baseline
#: combined with 61 specialist models.
PAPER_JFT = {"generalist": 0.250, "combined": 0.261, "specialists": 61}


def paper_comparison(runs: Sequence[SpecialistRun], record: bool = False) -> list[dict]:
    """The paper's JFT result beside this run's (means over the generalists' seeds). ``record=True``
    also records each line with :func:`labkd.results.compare`."""
    rows = [r for run in runs for r in run.rows]
    gen = float(np.mean([r["test_acc"] for r in rows if r["model"] == "generalist"]))
    comb = float(np.mean([r["test_acc"] for r in rows if r["model"] == "generalist + specialists"]))
    rel = relative_improvement(rows)
    n_spec = float(np.mean([len(run.specialists) for run in runs])) if runs else 0.0
    p = PAPER_JFT
    lines = [
        {"": "classes / specialists", "paper (JFT)": f"15,000 / {p['specialists']}",
         "this run": f"{runs[0].data.num_classes} / {n_spec:g}" if runs else ""},
        {"": "generalist, top-1 test accuracy", "paper (JFT)": f"{p['generalist']:.1%}", "this run": f"{gen:.2%}"},
        {"": "with specialists", "paper (JFT)": f"{p['combined']:.1%}", "this run": f"{comb:.2%}"},
        {"": "relative improvement", "paper (JFT)": f"{(p['combined'] - p['generalist']) / p['generalist']:+.1%}",
         "this run": f"{np.mean(rel):+.2%}" if rel else ""},
    ]
    if record:
        from labkd import results

        seeds = [run.generalist.model.spec["seed"] for run in runs]
        for line in lines[1:]:
            results.compare(f"specialists (§5): {line['']}", line["this run"], f"{line['paper (JFT)']} (JFT)", seeds=seeds)
    return lines
