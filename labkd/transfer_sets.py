r"""Transfer sets with missing classes, and soft targets as a regularizer.

Lesson 07 asks two questions of Hinton, Vinyals & Dean, *Distilling the Knowledge in a Neural
Network* (2015), https://arxiv.org/abs/1503.02531 (§3 and §6):

1. **What does a student learn about a class it never sees?** Distil the 784-800-800-10 student
   on a transfer set with no 3s (:func:`transfer_without`, :func:`distil_student`), then repair
   its output biases: one number :math:`b` added to the logits of some classes,

   .. math::  z'_{n,c} = z_{n,c} + b\,[c \in S],

   chosen on the *validation* set by a 1-D search (:func:`errors_by_shift`,
   :func:`choose_shift`). Adding :math:`b` to the logits is the same as adding it to the output
   layer's biases, so nothing is retrained: :class:`ShiftStudy` keeps the logits once and answers
   "how many errors with shift b?" for any b.
2. **Do soft targets stop a student from overfitting a small training set?** Train on 3 % of the
   images with hard labels or with the teacher's soft targets, beside a student trained on all
   the data (:func:`small_data_runs`), and compare early-stopped with final test accuracy
   (:func:`overfitting_summary`, :func:`regularizer_verdicts`).

>>> transfer = transfer_without(data, drop_classes=[3])
>>> student = distil_student(transfer, teacher, RECIPES("distil", fast))
>>> study = ShiftStudy.from_model("no 3s", student.model, data, classes=[3], missing=[3])
>>> study.shift, study.errors(0.0), study.errors(study.shift)

"What we found" (tables, verdicts, records) is in :mod:`labkd.transfer_sets_findings`, the static
figures in :mod:`labkd.transfer_sets_figures`; the slider panel is
:class:`labkd.widgets.transfer_sets.BiasShiftPanel`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from labkd import metrics, stats
from labkd.checks import check_classes, check_config, check_seeds
from labkd.data import Data, split_fraction
from labkd.experiments import Trained, train_model
from labkd.losses import check_logits, check_targets
from labkd.progress import RunProgress
from labkd.recipes import Recipes
from labkd.train import TrainConfig

#: The paper's numbers (MNIST, §3; speech, §6 Table 5: frame accuracy on train / test).
PAPER = {
    "all_classes_errors": 74,
    "no3_errors": 206, "no3_errors_on_3s": 133, "test_3s": 1010,
    "no3_shift": 3.5, "no3_errors_shifted": 109, "no3_errors_on_3s_shifted": 14,
    "only78_error_rate": 0.473, "only78_shift": -7.6, "only78_error_rate_shifted": 0.132,
    "speech": {"hard targets, 3%": (0.673, 0.445), "soft targets, 3%": (0.654, 0.570),
               "hard targets, 100%": (0.634, 0.589)},
}

#: The distillation temperature the paper used for the 784-800-800-10 student on MNIST.
TEMPERATURE = 20.0
#: Weight of the soft-target term in the distillation loss (the hard-label term gets 1 - ALPHA).
ALPHA = 0.9
#: Students' learning rate (SGD + Nesterov): 0.05 can diverge for distilled MLP students (lesson 04).
STUDENT_LR = 0.02
#: The student architecture of the paper's MNIST experiments.
STUDENT = "hinton_student"
#: Default grid of bias shifts searched on the validation set.
MAX_SHIFT, SHIFT_STEP = 15.0, 0.1

HARD, SOFT, FULL = "hard targets", "soft targets", "hard targets, all data"
#: The recipes, as data. ``"distil"``: the students of sections 1-4, Hinton's loss at
#: :data:`TEMPERATURE` and :data:`ALPHA`, 15 epochs (2 in fast mode), no jitter. The three arms of
#: section 5 are the same but for the targets and the data size: :data:`HARD` cross-entropy with
#: the labels of the small set, :data:`SOFT` the teacher's soft targets only (``loss="soft_target"``,
#: scaled by T²) and :data:`FULL` cross-entropy on all the training data (a reference). Their
#: learning rate stays constant to the end, so a run that overfits keeps doing so instead of being
#: frozen by a decaying rate. ``RECIPES(SOFT, fast, epochs=40, temperature=8.0)``.
_STUDENT = TrainConfig(epochs=15, batch_size=128, lr=STUDENT_LR, temperature=TEMPERATURE)
_ARM = _STUDENT.replace(epochs=40, schedule="constant")
RECIPES = Recipes({"distil": _STUDENT.replace(loss="distillation", alpha=ALPHA), HARD: _ARM, SOFT: _ARM.replace(loss="soft_target"),
                   FULL: _ARM.replace(epochs=10)},
                  fast={"distil": {"epochs": 2}, HARD: {"epochs": 3}, SOFT: {"epochs": 3}, FULL: {"epochs": 2}})
COLOURS = {HARD: "#d62728", SOFT: "#1f77b4", FULL: "#7f7f7f", "before": "#9e9e9e", "after": "#1f77b4",
           "missing": "#ff7f0e"}


# --------------------------------------------------------------------------------------------
# Checks


def check_shift(shift: object, argument: str = "shift") -> float:
    """A bias shift must be a finite real number (negative lowers the classes' logits)."""
    if isinstance(shift, Tensor) and shift.numel() == 1:
        shift = shift.item()
    if isinstance(shift, bool) or not isinstance(shift, (int, float, np.integer, np.floating)):
        raise TypeError(f"{argument} must be a number (added to the logits), got {type(shift).__name__}")
    if not math.isfinite(float(shift)):
        raise ValueError(f"{argument} must be a finite number, got {shift!r}")
    return float(shift)


def check_shifts(shifts: object, argument: str = "shifts") -> Tensor:
    """A non-empty 1-D grid of finite shifts, as a float64 tensor."""
    try:
        grid = torch.as_tensor(shifts, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{argument} must be a 1-D list or tensor of numbers, got {type(shifts).__name__}") from error
    if grid.numel() == 0:
        raise ValueError(f"{argument} is empty; give the candidate shifts, e.g. shift_grid()")
    if not bool(torch.isfinite(grid).all()):
        raise ValueError(f"{argument} contains NaN or inf; every candidate shift must be a finite number")
    return grid


def _check_fraction(fraction: object) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be a number in (0, 1] (the share of the training set kept), got {fraction!r}")
    return float(fraction)


# --------------------------------------------------------------------------------------------
# Recipes and transfer sets


def transfer_without(data: Data, drop_classes: Sequence[int] | None = None,
                     keep_classes: Sequence[int] | None = None) -> Data:
    """``data`` whose training (transfer) split lacks some classes; val and test keep all of them.

    Give ``drop_classes`` (e.g. ``[3]``: no 3s) or ``keep_classes`` (e.g. ``[7, 8]``: only 7s
    and 8s). Raises ValueError if the filter would leave no class, or no image, to learn from.
    """
    if (drop_classes is None) == (keep_classes is None):
        raise ValueError("give drop_classes (e.g. [3]) or keep_classes (e.g. [7, 8]), exactly one of them")
    c = data.num_classes
    if drop_classes is not None:
        dropped = check_classes(drop_classes, c, "drop_classes")
        if len(dropped) == c:
            raise ValueError(f"drop_classes={dropped} drops every class: the transfer set would be empty. "
                             f"Keep at least one of the classes 0..{c - 1}.")
        return data.subset(drop_classes=dropped)
    kept = check_classes(keep_classes, c, "keep_classes")
    return data.subset(keep_classes=kept)


def missing_classes(transfer: Data) -> list[int]:
    """The classes with no image in the transfer set (the training split)."""
    counts = transfer.train.class_counts(transfer.num_classes)
    return [int(i) for i in (counts == 0).nonzero().flatten()]


def distil_student(transfer: Data, teacher: Trained | nn.Module, config: TrainConfig, arch: str = STUDENT,
                   progress: bool | None = None, label: str = "") -> Trained:
    """Distil ``arch`` from ``teacher`` on the transfer set (cached :func:`labkd.train_model`)."""
    check_config(config, "config")
    if config.loss not in ("distillation", "soft_target"):
        raise ValueError(f"config must use loss='distillation' or 'soft_target', got loss={config.loss!r}")
    gone = missing_classes(transfer)
    what = f"without classes {gone}" if gone else "all classes"
    return train_model(arch, transfer, config, teacher=teacher, progress=progress,
                       label=label or f"lesson 07 {arch} distilled {what} seed={config.seed} on {transfer.name}")


# --------------------------------------------------------------------------------------------
# Bias shifts


def shift_grid(max_shift: float = MAX_SHIFT, step: float = SHIFT_STEP) -> Tensor:
    """Shifts from ``-max_shift`` to ``+max_shift`` in steps of ``step`` (0 included), float64."""
    max_shift, step = check_shift(max_shift, "max_shift"), check_shift(step, "step")
    if max_shift <= 0 or step <= 0:
        raise ValueError(f"max_shift and step must be > 0, got max_shift={max_shift}, step={step}")
    n = int(round(max_shift / step))
    return torch.arange(-n, n + 1, dtype=torch.float64) * step


def _decompose(logits: Tensor, classes: Sequence[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For each row: the best logit among ``classes`` and its class, the best among the others and
    its class (float64, on the CPU). With every class shifted, the "others" are -inf."""
    z = logits.detach().double().cpu()
    c = z.shape[1]
    inside = torch.zeros(c, dtype=torch.bool)
    inside[list(classes)] = True
    best_in, arg_in = z[:, inside].max(1)
    pred_in = torch.nonzero(inside).flatten()[arg_in]
    if bool(inside.all()):
        return best_in, pred_in, torch.full_like(best_in, -math.inf), pred_in
    best_out, arg_out = z[:, ~inside].max(1)
    return best_in, pred_in, best_out, torch.nonzero(~inside).flatten()[arg_out]


def _predict(parts: tuple[Tensor, Tensor, Tensor, Tensor], shifts: Tensor) -> Tensor:
    """Predicted classes (S, N) for each shift, from :func:`_decompose`'s parts; like argmax, a
    tie goes to the lower class id."""
    best_in, pred_in, best_out, pred_out = parts
    moved = best_in[None, :] + shifts[:, None]
    wins = (moved > best_out[None, :]) | ((moved == best_out[None, :]) & (pred_in < pred_out)[None, :])
    return torch.where(wins, pred_in[None, :], pred_out[None, :])


def errors_by_shift(logits: Tensor, targets: Tensor, classes: Sequence[int], shifts: object,
                    only: Sequence[int] | None = None) -> Tensor:
    """Errors (one count per candidate shift, shape (S,)) after adding each shift to ``classes``.

    Vectorised: with :math:`m_S` the best logit among ``classes`` and :math:`m_O` the best among
    the others, shift b predicts the best of ``classes`` when :math:`m_S + b > m_O`.
    ``only``: count errors on images of these true classes only (e.g. the 3s).
    """
    check_targets(targets, check_logits(logits, "logits"))
    c = logits.shape[1]
    classes = check_classes(classes, c)
    grid = check_shifts(shifts)
    y = targets.detach().cpu()
    if only is not None:
        keep = torch.isin(y, torch.tensor(check_classes(only, c, "only")))
        logits, y = logits[keep.to(logits.device)], y[keep]
    return (_predict(_decompose(logits, classes), grid) != y[None, :]).sum(1)


def choose_shift(logits: Tensor, targets: Tensor, classes: Sequence[int], shifts: object) -> float:
    """The candidate shift with the fewest errors; among ties, the one closest to 0."""
    grid = check_shifts(shifts)
    errors = errors_by_shift(logits, targets, classes, grid)
    best = errors == errors.min()
    candidates = grid[best]
    return round(float(candidates[candidates.abs().argmin()]), 9)  # 1.9, not 1.9000000000000001


@dataclass
class ShiftStudy:
    """A student's logits on val and test, and the bias shift chosen on val for ``classes``.

    ``classes`` get the shift; ``missing`` are the classes absent from the transfer set (for
    "no 3s" both are [3]; for "only 7s and 8s" the shift lowers [7, 8] and the eight others are
    missing). ``shifts`` is the searched grid and ``val_errors`` its validation errors.
    """

    name: str
    classes: list[int]
    missing: list[int]
    val_logits: Tensor
    val_y: Tensor
    test_logits: Tensor
    test_y: Tensor
    class_names: list[str]
    shifts: Tensor = field(default_factory=shift_grid)
    transfer_counts: Tensor | None = None
    val_errors: Tensor = field(init=False)
    test_errors: Tensor = field(init=False)
    shift: float = field(init=False)
    _parts: dict = field(init=False, repr=False)
    _y: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for split in ("val", "test"):
            check_targets(getattr(self, f"{split}_y"), check_logits(getattr(self, f"{split}_logits"), f"{split}_logits"))
        c = self.val_logits.shape[1]
        if self.test_logits.shape[1] != c or len(self.class_names) != c:
            raise ValueError(f"val_logits, test_logits and class_names must all have {c} classes")
        self.classes = check_classes(self.classes, c)
        self.missing = check_classes(self.missing, c, "missing") if len(self.missing) else []
        self.shifts = check_shifts(self.shifts)
        self.val_logits, self.test_logits = self.val_logits.detach().float().cpu(), self.test_logits.detach().float().cpu()
        self.val_y, self.test_y = self.val_y.detach().cpu(), self.test_y.detach().cpu()
        self.val_errors = errors_by_shift(self.val_logits, self.val_y, self.classes, self.shifts)
        self.test_errors = errors_by_shift(self.test_logits, self.test_y, self.classes, self.shifts)
        self.shift = choose_shift(self.val_logits, self.val_y, self.classes, self.shifts)
        # numpy copies of the per-image maxima: a slider move is a few vector ops on N numbers
        self._parts = {split: tuple(t.numpy() for t in _decompose(getattr(self, f"{split}_logits"), self.classes))
                       for split in ("val", "test")}
        self._y = {"val": self.val_y.numpy(), "test": self.test_y.numpy()}

    @classmethod
    def from_model(cls, name: str, model: nn.Module | Trained, data: Data, classes: Sequence[int],
                   missing: Sequence[int], shifts: object | None = None,
                   transfer: Data | None = None) -> ShiftStudy:
        """Compute ``model``'s logits on ``data.val`` and ``data.test`` once and search the shift."""
        net = model.model if isinstance(model, Trained) else model
        return cls(name, list(classes), list(missing),
                   metrics.predict_logits(net, data.val.x), data.val.y,
                   metrics.predict_logits(net, data.test.x), data.test.y, list(data.class_names),
                   shift_grid() if shifts is None else shifts,
                   None if transfer is None else transfer.train.class_counts(data.num_classes))

    def _split(self, split: str) -> tuple[Tensor, Tensor]:
        if split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        return (self.val_logits, self.val_y) if split == "val" else (self.test_logits, self.test_y)

    def predictions(self, shift: float = 0.0, split: str = "test") -> Tensor:
        """Predicted classes (N,) with ``shift`` added to the logits of ``classes`` (no copy of
        the logits: two precomputed maxima per image, so a slider move costs microseconds)."""
        return torch.from_numpy(self._predict_np(shift, split))

    def _predict_np(self, shift: float, split: str) -> np.ndarray:
        self._split(split)
        shift = check_shift(shift)
        best_in, pred_in, best_out, pred_out = self._parts[split]
        moved = best_in + shift
        wins = (moved > best_out) | ((moved == best_out) & (pred_in < pred_out))
        return np.where(wins, pred_in, pred_out)

    def errors(self, shift: float = 0.0, split: str = "test") -> int:
        """Misclassified images of ``split`` after adding ``shift`` to the logits of ``classes``."""
        return int((self._predict_np(shift, split) != self._y[split]).sum())

    def errors_per_class(self, shift: float = 0.0, split: str = "test") -> Tensor:
        """Misclassified images of each true class, shape (C,)."""
        y = self._y[split] if split in self._y else self._split(split)[1]
        wrong = self._predict_np(shift, split) != y
        return torch.from_numpy(np.bincount(y[wrong], minlength=len(self.class_names)))

    def class_totals(self, split: str = "test") -> Tensor:
        _, y = self._split(split)
        return torch.bincount(y, minlength=len(self.class_names))

    def errors_on_missing(self, shift: float = 0.0, split: str = "test") -> int:
        return int(self.errors_per_class(shift, split)[self.missing].sum()) if self.missing else 0

    def summary(self) -> dict:
        """Before/after numbers for "What we found": errors, error rates, errors on missing classes."""
        n = len(self.test_y)
        before, after = self.errors(0.0), self.errors(self.shift)
        return {
            "study": self.name, "shift": self.shift, "test_images": n,
            "missing_test_images": int(self.class_totals()[self.missing].sum()) if self.missing else 0,
            "test_errors": before, "test_errors_shifted": after,
            "test_error_rate": before / n, "test_error_rate_shifted": after / n,
            "errors_on_missing": self.errors_on_missing(0.0), "errors_on_missing_shifted": self.errors_on_missing(self.shift),
            "val_errors": self.errors(0.0, "val"), "val_errors_shifted": self.errors(self.shift, "val"),
            "oracle_shift_on_test": choose_shift(self.test_logits, self.test_y, self.classes, self.shifts),
            "oracle_test_errors": int(self.test_errors.min()),
        }


def missing_class_study(data: Data, teacher: Trained | nn.Module, config: TrainConfig, name: str,
                        drop_classes: Sequence[int] | None = None, keep_classes: Sequence[int] | None = None,
                        shifts: object | None = None, arch: str = STUDENT,
                        progress: bool | None = None) -> tuple[Trained, ShiftStudy]:
    """Distil the student without some classes, then choose its bias shift on validation.

    With ``drop_classes`` the dropped classes' logits are shifted (raised, if the search agrees);
    with ``keep_classes`` the kept classes' logits are (lowered). Returns (student, study).
    """
    transfer = transfer_without(data, drop_classes=drop_classes, keep_classes=keep_classes)
    grid = shift_grid() if shifts is None else check_shifts(shifts)
    student = distil_student(transfer, teacher, config, arch=arch, progress=progress)
    shifted = list(drop_classes) if drop_classes is not None else list(keep_classes)
    study = ShiftStudy.from_model(name, student, data, shifted, missing_classes(transfer), grid, transfer)
    return student, study


# --------------------------------------------------------------------------------------------
# Part 2: soft targets as a regularizer


def small_transfer(data: Data, fraction: float, seed: int = 0) -> Data:
    """A seeded ``fraction`` of the training split (val and test unchanged): 3 % of MNIST's 55,000
    training images is 1,650."""
    fraction = _check_fraction(fraction)
    if fraction == 1:
        return data
    return data.subset(n_train=split_fraction(len(data.train), fraction), seed=seed)


def train_tracked(arch: str, data: Data, config: TrainConfig, teacher: Trained | nn.Module | None = None,
                  progress: bool | None = None, label: str = "") -> Trained:
    """:func:`labkd.train_model`, plus the mean cross-entropy with the labels on val and test
    after every epoch (``val_loss``, ``test_loss`` in each history row), cached the same way.

    Accuracy hides over-confidence: a model can keep its test accuracy while its test loss
    climbs. The loss curves show that overfitting.
    """
    from labkd.experiments import Tracker

    check_config(config, "config")

    def losses(model: nn.Module) -> dict[str, float]:
        out = {}
        for name, split in (("val", data.val), ("test", data.test)):
            logits = metrics.predict_logits(model, split.x)
            out[f"{name}_loss"] = float(torch.nn.functional.cross_entropy(logits, split.y.to(logits.device)))
        return out

    return train_model(arch, data, config, teacher=teacher, progress=progress, track=Tracker("val_loss,test_loss", losses),
                       label=label or f"{arch} {config.loss} seed={config.seed} on {data.name} (tracked losses)")


def run_row(arm: str, seed: int, trained: Trained, n_train: int) -> dict:
    """One tidy row: final train/test accuracy, the epoch early stopping picks (best validation
    accuracy, first on ties), the test accuracy there, and the gap early-stopped minus final."""
    h = trained.history
    val = [r["val_acc"] for r in h]
    stop = int(np.argmax(val))
    return {
        "arm": arm, "seed": seed, "n_train": n_train, "epochs": len(h),
        "train_acc": h[-1]["train_acc"], "test_acc": h[-1]["test_acc"], "val_acc": h[-1]["val_acc"],
        "stop_epoch": h[stop]["epoch"], "stopped_test_acc": h[stop]["test_acc"],
        "gap": h[stop]["test_acc"] - h[-1]["test_acc"],
        "peak_test_acc": max(r["test_acc"] for r in h),
        "test_loss": h[-1].get("test_loss", float("nan")),
        "best_test_loss": min((r.get("test_loss", float("nan")) for r in h), default=float("nan")),
        "best_loss_epoch": int(np.nanargmin([r.get("test_loss", float("nan")) for r in h])) + 1
        if all("test_loss" in r for r in h) else 0,
        "curve_train": [r["train_acc"] for r in h], "curve_test": [r["test_acc"] for r in h],
        "curve_val": val, "curve_test_loss": [r.get("test_loss", float("nan")) for r in h],
        "init_norm": metrics.first_layer_norm(trained), "cached": trained.cached, "seconds": trained.seconds,
    }


def small_data_runs(data: Data, teacher: Trained | nn.Module, fraction: float, seeds: Sequence[int],
                    configs: Mapping[str, TrainConfig], arch: str = STUDENT, reference: bool = True,
                    progress: bool | None = None) -> list[dict]:
    """Train ``arch`` on a ``fraction`` of the training set with hard labels and with soft
    targets (one subset, one initialisation per seed, shared by both), plus, with ``reference``,
    one run on all the data with hard labels (first seed). Returns :func:`run_row` rows."""
    fraction = _check_fraction(fraction)
    seeds = check_seeds(seeds)
    missing = [k for k in (HARD, SOFT) + ((FULL,) if reference else ()) if k not in configs]
    if missing:
        raise ValueError(f"configs has no recipe for {missing}; take them from RECIPES (one per arm)")
    for k, config in configs.items():
        check_config(config, f"configs[{k!r}]")
    runs = RunProgress(2 * len(seeds) + int(reference), "students", progress)
    rows = []
    for seed in seeds:
        small = small_transfer(data, fraction, seed=seed)
        for arm in (HARD, SOFT):
            config = configs[arm].replace(seed=seed)
            trained = train_tracked(arch, small, config, teacher=teacher if arm == SOFT else None, progress=False,
                                    label=f"lesson 07 {arch} {arm} on {fraction:.0%} seed={seed} on {data.name}")
            rows.append(run_row(arm, seed, trained, len(small.train)))
            runs.step(f"{arm}, seed {seed}")
    if reference:
        config = configs[FULL].replace(seed=seeds[0])
        trained = train_tracked(arch, data, config, progress=False,
                                label=f"lesson 07 {arch} hard targets on all data seed={seeds[0]} on {data.name}")
        rows.append(run_row(FULL, seeds[0], trained, len(data.train)))
        runs.step("all data")
    runs.close()
    return rows


def same_start(rows: Sequence[Mapping]) -> list[str]:
    """Per seed, the first-layer weight norms *before* training of the hard- and soft-target runs
    (:func:`labkd.stats.same_start`): identical numbers prove that both started from the same
    weights (and saw the same images)."""
    norms: dict[str, list[float]] = {}
    for r in rows:
        if r["arm"] in (HARD, SOFT):
            norms.setdefault(f"seed {r['seed']}", []).append(r["init_norm"])
    return stats.same_start(norms, what="first-layer norm")
