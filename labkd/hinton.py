r"""Lesson 06: Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network", §3 on MNIST.

https://arxiv.org/abs/1503.02531 — three experiments, each a series of cached training runs:

1. **The MNIST table** (:func:`reproduce_table`): the 784-1200-1200-10 teacher (dropout, ±2-pixel
   jitter; :func:`labkd.zoo.mnist_teacher`), the 784-800-800-10 student on labels only, and the
   same student distilled at :math:`T = 20`. The paper reports 67, 146 and 74 test errors.
   :func:`table_rows` puts ours beside them, :func:`gap_closed` and :func:`check_target` say how
   much of the teacher/student gap distillation closed.
2. **The temperature remark** (:func:`small_student_sweep`): with 300 units per layer all
   temperatures above 8 did about equally well; with 30 units, 2.5-4 did best.
3. **Logit matching against soft targets** (:func:`matching_study`, :func:`gradient_agreement`):
   §2.1 shows that, for zero-mean logits and a high temperature, the soft-target gradient

   .. math::
       \frac{\partial\, T^2\mathrm{KL}}{\partial z_i} = T\,(q_i - p_i)
       \;\approx\; \frac{1}{N}\big((z_i - \bar z) - (v_i - \bar v)\big)

   becomes the gradient of Caruana/Bucila logit matching, :math:`\frac{1}{2N}\sum_i (z_i - v_i)^2`
   (``N`` classes, student logits :math:`z`, teacher logits :math:`v`).

Grids 1 and 2 reuse :func:`labkd.sweeps.run_grid` (so their rows are
:class:`~labkd.sweeps.SweepRow`\ s with histories, training seconds and initial-weight
fingerprints); grid 3 keeps the trained models, to compare their predictions.

>>> teacher = zoo.mnist_teacher(data, fast=fast)
>>> grid = reproduce_table(data, teacher, seeds=[0, 1, 2], base_config=student_config(fast))
>>> plots.comparison_table(table_rows(grid, teacher, data))
>>> print(check_target(grid, teacher, data))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from labkd import losses, metrics, plots, sweeps
from labkd.data import Data
from labkd.experiments import Trained, train_model
from labkd.losses import check_pair, check_temperature
from labkd.progress import progress_bar
from labkd.train import TrainConfig

#: The paper's numbers (§3, test errors out of 10,000), shared with lesson 02.
PAPER = sweeps.PAPER
#: The paper's distillation temperature for the 800-800 student.
TEMPERATURE = 20.0
#: Weight of the soft-target term. The paper only says the hard-label term got "a considerably
#: lower weight"; 0.9 is the course's usual choice.
ALPHA = 0.9
#: Students' learning rate (SGD + Nesterov): 0.05 can make distilled students diverge at T = 20.
STUDENT_LR = 0.02
#: The full-mode targets: a teacher within 100 errors, and half the teacher/student gap closed.
MAX_TEACHER_ERRORS = 100
MIN_GAP_CLOSED = 0.5

#: The paper's student (784-800-800-10).
LARGE_STUDENT = {"800-800": {"arch": "hinton_student"}}
#: The two students of the temperature remark (§3).
SMALL_STUDENTS = {"300-300": {"arch": "mlp", "hidden": (300, 300)}, "30-30": {"arch": "small_student"}}
#: Method names of section 3.
LOGIT_MATCHING = "logit matching"
SOFT_TARGETS = "soft targets"

COLOURS = {"teacher": "#7f7f7f", "baseline": "#d62728", "distilled": "#1f77b4", "matching": "#2ca02c",
           "paper": "#000000"}


# --------------------------------------------------------------------------------------------
# Recipes and checks


def student_config(fast: bool, seed: int = 0, epochs: int | None = None, lr: float = STUDENT_LR) -> TrainConfig:
    """The students' recipe: :func:`labkd.zoo.student_config` (no augmentation, no regularisation)
    with learning rate ``lr`` and ``epochs`` (default: 2 in fast mode, 20 in full mode)."""
    from labkd.zoo import student_config as base

    if epochs is None:
        epochs = 2 if fast else 20
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    return base(fast, seed, epochs=epochs, lr=float(lr))


def _check_data(data: object) -> Data:
    if not isinstance(data, Data):
        raise TypeError(f"data must be a labkd.Data (from notebook.start or load_data), got {type(data).__name__}")
    return data


def _check_trained(model: object, argument: str) -> Trained:
    if not isinstance(model, Trained):
        raise TypeError(f"{argument} must be a labkd Trained model (from train_model or zoo.mnist_teacher), "
                        f"got {type(model).__name__}")
    return model


def _check_temperatures(temperatures: object) -> list[float]:
    if isinstance(temperatures, (int, float)) or isinstance(temperatures, str):
        raise TypeError(f"temperatures must be a list of numbers such as [1, 4, 20], got {temperatures!r}")
    try:
        values = [check_temperature(t, "each temperature") for t in temperatures]
    except TypeError as error:
        raise TypeError(f"temperatures must be a list of numbers > 0 such as [1, 4, 20]: {error}") from None
    if not values:
        raise ValueError("temperatures is empty; give at least one, e.g. [1, 4, 20]")
    return sorted(set(values))


def _check_config(config: object) -> TrainConfig:
    if not isinstance(config, TrainConfig):
        raise TypeError(f"base_config must be a labkd.TrainConfig (see hinton.student_config), got {type(config).__name__}")
    return config


# --------------------------------------------------------------------------------------------
# 1. The MNIST table


def test_errors(model: Trained, data: Data) -> int:
    """Misclassified test images of a trained model (one forward pass over ``data.test``)."""
    _check_trained(model, "model")
    return metrics.error_count(metrics.predict_logits(model.model, data.test.x), data.test.y)


def reproduce_table(data: Data, teacher: Trained, seeds: int | Sequence[int], base_config: TrainConfig,
                    temperature: float = TEMPERATURE, alpha: float = ALPHA,
                    progress: bool | None = None) -> sweeps.SweepResult:
    """Train the 800-800 student on labels only and distilled at ``temperature`` for each seed.

    Both students of a seed start from the same weights and see the batches in the same order
    (``same_start`` proves it). ``base_config`` is the labels-only recipe
    (:func:`student_config`); the distilled student adds ``loss="distillation"``, ``temperature``
    and ``alpha``. Every run is cached. Returns a :class:`~labkd.sweeps.SweepResult`.
    """
    _check_data(data)
    _check_trained(teacher, "teacher")
    _check_config(base_config)
    check_temperature(temperature)
    losses.check_alpha(alpha)
    if alpha == 0:
        raise ValueError("alpha must be > 0: alpha = 0 is the labels-only student, which is trained anyway")
    return sweeps.run_grid(data, teacher, LARGE_STUDENT, [temperature], [alpha], seeds, base_config, progress=progress)


def gap_closed(baseline_errors: float, distilled_errors: float, teacher_errors: float) -> float:
    """The fraction of the teacher/student gap that distillation closed:
    ``(baseline - distilled) / (baseline - teacher)``.

    1 means the distilled student is as good as the teacher, 0 no better than labels alone,
    negative worse. NaN when the teacher is not better than the labels-only student (no gap).
    The paper: (146 - 74) / (146 - 67) = 0.91.
    """
    for value, name in ((baseline_errors, "baseline_errors"), (distilled_errors, "distilled_errors"),
                        (teacher_errors, "teacher_errors")):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a count >= 0 (test errors), got {value!r}")
    gap = float(baseline_errors) - float(teacher_errors)
    if gap <= 0:
        return float("nan")
    return (float(baseline_errors) - float(distilled_errors)) / gap


def _errors(grid: sweeps.SweepResult, **criteria) -> tuple[float, float, int, list[float]]:
    values = grid.values("test_errors", **criteria)
    if not values:
        raise ValueError(f"the grid has no run matching {criteria}; run reproduce_table first")
    mean, std = plots.mean_std(values)
    return mean, std, len(values), values


def _distilled(grid: sweeps.SweepResult) -> dict:
    """Criteria of the distilled cell of a :func:`reproduce_table` grid."""
    temps, alphas = grid.temperatures, grid.alphas
    if len(temps) != 1 or len(alphas) != 1:
        raise ValueError(f"expected one distilled cell (from reproduce_table), got temperatures {temps}, alphas {alphas}")
    return {"baseline": False, "temperature": temps[0], "alpha": alphas[0]}


def _pm(mean: float, std: float, n: int, values: Sequence[float]) -> str:
    if n < 2:
        return f"{mean:.0f}"
    return f"{mean:.1f} ± {std:.1f} (range {min(values):.0f}–{max(values):.0f})"


def table_rows(grid: sweeps.SweepResult, teacher: Trained, data: Data) -> list[dict]:
    """The paper's table with ours beside it: one row per model with the paper's test errors,
    ours (mean ± std over seeds and the range), the number of runs and the training time."""
    n_test = len(data.test)
    t_err = test_errors(teacher, data)
    base = _errors(grid, baseline=True)
    kd_criteria = _distilled(grid)
    kd = _errors(grid, **kd_criteria)
    seconds = {"baseline": [r.seconds for r in grid.select(baseline=True)],
               "distilled": [r.seconds for r in grid.select(**kd_criteria)]}
    t, a = kd_criteria["temperature"], kd_criteria["alpha"]
    column = f"this run: test errors of {n_test:,}"
    pixels, classes = math.prod(data.input_shape), data.num_classes
    return [
        {"model": f"teacher {pixels}-1200-1200-{classes} (dropout, jitter)",
         "paper: test errors of 10,000": PAPER["teacher_errors"],
         column: f"{t_err}", "runs": 1, "training time": _minutes([teacher.seconds])},
        {"model": f"student {pixels}-800-800-{classes}, labels only", "paper: test errors of 10,000": PAPER["labels_only_errors"],
         column: _pm(*base), "runs": base[2], "training time": _minutes(seconds["baseline"])},
        {"model": f"same student distilled, T = {t:g}, α = {a:g}", "paper: test errors of 10,000": PAPER["distilled_errors"],
         column: _pm(*kd), "runs": kd[2], "training time": _minutes(seconds["distilled"])},
    ]


def _minutes(seconds: Sequence[float]) -> str:
    total = float(sum(seconds))
    each = f" ({total / len(seconds) / 60:.1f} min each)" if len(seconds) > 1 else ""
    return f"{total / 60:.1f} min{each}"


@dataclass
class TargetCheck:
    """Did the full-mode run reach the lesson's targets? (teacher ≤ ``max_teacher_errors`` errors,
    and the distilled student closing at least ``min_fraction`` of the gap.) ``lines`` says it in words."""

    teacher_errors: int
    baseline_errors: float
    distilled_errors: float
    fraction: float
    teacher_ok: bool
    fraction_ok: bool
    reached: bool
    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def check_target(grid: sweeps.SweepResult, teacher: Trained, data: Data, fast: bool = False,
                 max_teacher_errors: int = MAX_TEACHER_ERRORS, min_fraction: float = MIN_GAP_CLOSED) -> TargetCheck:
    """Compare this run with the targets and say plainly why a target was missed.

    Errors are scaled to 10,000 test images when the test split is smaller (fast mode), so the
    teacher's target means the same error *rate*.
    """
    t_err = test_errors(teacher, data)
    base, base_std, n_base, _ = _errors(grid, baseline=True)
    kd, kd_std, n_kd, _ = _errors(grid, **_distilled(grid))
    fraction = gap_closed(base, kd, t_err)
    per_10k = 10_000 / len(data.test)
    teacher_ok = t_err * per_10k <= max_teacher_errors
    fraction_ok = not math.isnan(fraction) and fraction >= min_fraction
    scale = "" if per_10k == 1 else f" (= {t_err * per_10k:.0f} per 10,000)"
    lines = [f"teacher: {t_err} test errors of {len(data.test):,}{scale}; target ≤ {max_teacher_errors} per 10,000 → "
             + ("reached." if teacher_ok else "NOT reached.")]
    if math.isnan(fraction):
        lines.append(f"gap closed: undefined — the teacher ({t_err} errors) is not better than the labels-only "
                     f"student ({base:.1f}), so there is no gap to close.")
    else:
        lines.append(f"gap closed: (baseline − distilled) / (baseline − teacher) = ({base:.1f} − {kd:.1f}) / "
                     f"({base:.1f} − {t_err}) = {fraction:.2f}; target ≥ {min_fraction:g} → "
                     + ("reached." if fraction_ok else "NOT reached.")
                     + f" (the paper: {gap_closed(PAPER['labels_only_errors'], PAPER['distilled_errors'], PAPER['teacher_errors']):.2f})")
    if min(n_base, n_kd) >= 2 and not math.isnan(fraction):
        se = math.hypot(base_std / math.sqrt(n_base), kd_std / math.sqrt(n_kd))
        diff = base - kd
        lines.append(f"the distilled student makes {abs(diff):.1f} {'fewer' if diff >= 0 else 'more'} errors than the "
                     f"labels-only one; two standard "
                     f"errors over {min(n_base, n_kd)} seeds are {2 * se:.1f} → "
                     + ("a real improvement." if diff > 2 * se else "not clearly more than seed noise."))
    reached = teacher_ok and fraction_ok and not fast
    if fast:
        lines.append("Fast mode (2,000 training images, 2 epochs, one seed): these numbers only show that the code "
                     "runs; the targets are judged in full mode.")
    elif reached:
        lines.append("Both targets reached.")
    else:
        why = []
        if not teacher_ok:
            why.append(f"the teacher is weaker than the paper's ({t_err} vs {PAPER['teacher_errors']} errors): "
                       f"it trained for fewer epochs than Hinton et al.'s, so there is less extra knowledge to transfer")
        if not fraction_ok and math.isnan(fraction):
            why.append("the labels-only student is at least as good as the teacher, so there is no gap to close")
        elif not fraction_ok:
            why.append(f"the distilled student still makes {kd - t_err:.0f} more errors than the teacher. "
                       + _plateau(grid, len(data.test))
                       + f" The paper's student got within {PAPER['distilled_errors'] - PAPER['teacher_errors']} "
                       f"errors of its teacher, probably with far longer training and a tuned recipe; ours has one "
                       f"fixed learning rate and no tuning of α or T")
        lines.append("Target not reached: " + "; ".join(why) + ".")
    return TargetCheck(t_err, base, kd, fraction, teacher_ok, fraction_ok, reached, lines)


def _plateau(grid: sweeps.SweepResult, n_test: int) -> str:
    """A sentence on how the distilled students' mean test errors moved over the second half of training."""
    epochs, mean, _ = sweeps.mean_curve(grid, "test_acc", **_distilled(grid))
    if len(epochs) < 4:
        return f"It trained for only {len(epochs)} epochs."
    half = len(epochs) // 2
    before, after = (1 - mean[half - 1]) * n_test, (1 - mean[-1]) * n_test
    if before - after < 0.1 * before:
        return (f"Its test errors hardly moved over the second half of training ({before:.0f} after epoch {half}, "
                f"{after:.0f} at the end), so with this recipe it has learnt what it can from the soft targets; "
                f"the learning rate decays to zero, and more epochs or a higher rate might still help.")
    return (f"Its test errors were still falling at the end ({before:.0f} after epoch {half}, {after:.0f} at the end): "
            f"more epochs would probably help.")


def training_seconds(grid: sweeps.SweepResult, teacher: Trained) -> dict[str, float]:
    """Training time in seconds (kept with cached models too): teacher, students, total."""
    students = grid.training_seconds
    return {"teacher": float(teacher.seconds), "students": students, "total": float(teacher.seconds) + students}


def curves_figure(grid: sweeps.SweepResult, teacher: Trained, data: Data) -> go.Figure:
    """Test errors after every epoch: the teacher, and the two students (mean over seeds, with a
    thin line per seed); the paper's final numbers as dotted lines when the test set is MNIST's 10,000."""
    n_test = len(data.test)

    def errors(history: Sequence[Mapping]) -> list[float]:
        return [(1 - r["test_acc"]) * n_test for r in history]

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[r["epoch"] for r in teacher.history], y=errors(teacher.history), mode="lines+markers",
                             name="teacher 1200-1200", line=dict(color=COLOURS["teacher"])))
    kd = _distilled(grid)
    for name, criteria, colour in (("student, labels only", {"baseline": True}, COLOURS["baseline"]),
                                   (f"student, distilled T={kd['temperature']:g}", kd, COLOURS["distilled"])):
        rows = [r for r in grid.select(**criteria) if not r.diverged]
        for r in rows if len(rows) > 1 else []:
            fig.add_trace(go.Scatter(x=[h["epoch"] for h in r.history], y=errors(r.history), mode="lines",
                                     line=dict(color=colour, width=1), opacity=0.35, showlegend=False,
                                     name=f"{name}, seed {r.seed}"))
        if rows:
            epochs, mean, _ = sweeps.mean_curve(grid, "test_acc", **criteria)
            fig.add_trace(go.Scatter(x=epochs, y=[(1 - m) * n_test for m in mean], mode="lines+markers",
                                     name=f"{name} (mean of {len(rows)})", line=dict(color=colour, width=3)))
    if n_test == 10_000:
        for key, label, colour in (("teacher_errors", "paper: teacher", COLOURS["teacher"]),
                                   ("labels_only_errors", "paper: labels only", COLOURS["baseline"]),
                                   ("distilled_errors", "paper: distilled", COLOURS["distilled"])):
            fig.add_hline(y=PAPER[key], line_dash="dot", line_color=colour, annotation_text=f"{label} ({PAPER[key]})",
                          annotation_position="top right")
    low = min(min(t.y) for t in fig.data)
    high = max(max(t.y) for t in fig.data)
    fig.update_yaxes(type="log", title_text=f"test errors (of {n_test:,})",
                     range=[math.log10(max(1.0, low * 0.8)), math.log10(max(high * 1.25, 2.0))])
    n_epochs = max(len(r.history) for r in grid) if len(grid) else 1
    fig.update_xaxes(tick0=1, dtick=max(1, round(max(n_epochs, len(teacher.history)) / 10)))
    fig.update_layout(title="Test errors during training", xaxis_title="epoch", height=420,
                      legend=dict(orientation="h", y=-0.2))
    return fig


# --------------------------------------------------------------------------------------------
# 2. The temperature remark: small students


def small_student_sweep(data: Data, teacher: Trained, temperatures: Sequence[float], seeds: int | Sequence[int],
                        base_config: TrainConfig, alpha: float = ALPHA,
                        students: Mapping[str, Mapping] | None = None,
                        progress: bool | None = None) -> sweeps.SweepResult:
    """Distil the 300-300 and 30-30 students (:data:`SMALL_STUDENTS`) at every temperature, plus
    each on labels only, for every seed (cached). Test the remark with
    ``sweeps.check_temperature_remark(result, alpha, small="30-30", large="300-300")``."""
    _check_data(data)
    _check_trained(teacher, "teacher")
    _check_config(base_config)
    return sweeps.run_grid(data, teacher, dict(students or SMALL_STUDENTS), temperatures, [alpha], seeds, base_config,
                           progress=progress)


# --------------------------------------------------------------------------------------------
# 3. Logit matching against soft targets


def soft_target_gradient(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    r"""Per-example gradient of :math:`T^2\,\mathrm{KL}(p\,\|\,q)` with respect to the student's logits,
    :math:`T\,(q - p)` with :math:`q = \mathrm{softmax}(z/T)`, :math:`p = \mathrm{softmax}(v/T)`.
    (N, C), (N, C) -> (N, C). Equals N times the autograd gradient of
    :func:`labkd.losses.soft_target_loss` (a batch mean)."""
    check_pair(student_logits, teacher_logits)
    t = check_temperature(temperature)
    return t * (torch.softmax(student_logits / t, dim=-1) - torch.softmax(teacher_logits / t, dim=-1))


def logit_matching_gradient(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    r"""Per-example gradient of :math:`\frac{1}{2C}\sum_c (z_c - v_c)^2`: :math:`(z - v)/C`. (N, C) -> (N, C)."""
    check_pair(student_logits, teacher_logits)
    return (student_logits - teacher_logits) / student_logits.shape[1]


def zero_mean(logits: Tensor) -> Tensor:
    """Logits with each row's mean subtracted (the softmax does not change). (N, C) -> (N, C)."""
    return logits - logits.mean(dim=-1, keepdim=True)


def gradient_agreement(student_logits: Tensor, teacher_logits: Tensor, temperatures: Sequence[float],
                       centre: bool = False) -> dict[str, list[float]]:
    """How alike the soft-target and logit-matching gradients are at each temperature, on one fixed
    batch of logits: ``cosine`` (of the two (N, C) gradients, flattened; 1 = same direction) and
    ``norm_ratio`` (‖soft-target‖ / ‖logit-matching‖; 1 = same size). ``centre=True`` zero-means
    each example's logits first (the condition of the paper's §2.1)."""
    check_pair(student_logits, teacher_logits)
    temps = _check_temperatures(temperatures)
    z, v = student_logits.double(), teacher_logits.double()
    if centre:
        z, v = zero_mean(z), zero_mean(v)
    lm = logit_matching_gradient(z, v).flatten()
    out: dict[str, list[float]] = {"cosine": [], "norm_ratio": []}
    for t in temps:
        kd = soft_target_gradient(z, v, t).flatten()
        out["cosine"].append(float(torch.nn.functional.cosine_similarity(kd, lm, dim=0)))
        out["norm_ratio"].append(float(kd.norm() / lm.norm()))
    return out


@dataclass
class MatchingResult:
    """The students of section 3: ``models[(method, temperature, seed)]`` (``temperature`` is None for
    logit matching) and one row per soft-target student comparing it with the logit-matching one."""

    student: str
    models: dict[tuple[str, float | None, int], Trained]
    rows: list[dict]
    temperatures: list[float]
    seeds: list[int]
    n_test: int

    @property
    def training_seconds(self) -> float:
        return float(sum(m.seconds for m in self.models.values()))

    @property
    def trained_now(self) -> int:
        return sum(not m.cached for m in self.models.values())

    def mean_by_temperature(self, key: str) -> dict[str, float]:
        """``{"T": mean over seeds of key}`` for a row key such as ``"agreement"``."""
        if not self.rows or key not in self.rows[0]:
            raise KeyError(f"{key!r} is not a column of the rows; expected one of {sorted(self.rows[0]) if self.rows else []}")
        return {f"{t:g}": float(np.mean([r[key] for r in self.rows if r["temperature"] == t])) for t in self.temperatures}

    def summary(self) -> list[dict]:
        """Mean over seeds per temperature: test errors and agreement with the logit-matching student."""
        out = []
        for t in self.temperatures:
            rows = [r for r in self.rows if r["temperature"] == t]
            stats = {k: plots.mean_std([r[k] for r in rows]) for k in ("test_errors", "agreement", "logit_correlation")}
            out.append({"T": f"{t:g}", "soft-target student: test errors": _mean_sd(stats["test_errors"], 1),
                        "predicts the same class as logit matching (%)": _mean_sd(stats["agreement"], 100, 2),
                        "correlation of zero-meaned logits": _mean_sd(stats["logit_correlation"], 1, 3),
                        "seeds": len(rows)})
        lm = [r["lm_test_errors"] for r in self.rows if r["temperature"] == self.temperatures[0]]
        out.append({"T": "—", "soft-target student: test errors": f"logit matching: {_mean_sd(plots.mean_std(lm), 1)}",
                    "predicts the same class as logit matching (%)": "100", "correlation of zero-meaned logits": "1",
                    "seeds": len(lm)})
        return out


def _mean_sd(stats: tuple[float, float], k: float, digits: int = 1) -> str:
    m, s = stats
    return f"{m * k:.{digits}f}" if s == 0 else f"{m * k:.{digits}f} ± {s * k:.{digits}f}"


def logit_correlation(logits_a: Tensor, logits_b: Tensor) -> float:
    """Pearson correlation of two models' zero-meaned logits over all examples and classes (1 = the
    same logits up to a per-example shift and a common scale)."""
    check_pair(logits_a, logits_b, ("logits_a", "logits_b"))
    a, b = zero_mean(logits_a.double()).flatten(), zero_mean(logits_b.double()).flatten()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-300))


def matching_study(data: Data, teacher: Trained, temperatures: Sequence[float], seeds: int | Sequence[int],
                   base_config: TrainConfig, student: Mapping[str, Mapping] | None = None,
                   progress: bool | None = None) -> MatchingResult:
    """Train one student by logit matching (``loss="logit_matching"``) and one with pure soft targets
    (``loss="soft_target"``, the T²-scaled KL, no labels) at each temperature, for each seed; all
    students of a seed start from the same weights. Each soft-target student is compared with the
    logit-matching student of its seed on the test set: top-1 ``agreement`` and the correlation of
    their zero-meaned logits. Default student: 300-300."""
    _check_data(data)
    _check_trained(teacher, "teacher")
    _check_config(base_config)
    temps = _check_temperatures(temperatures)
    seed_list = sweeps.check_seeds(seeds, base_config.seed)
    specs = dict(student or {"300-300": SMALL_STUDENTS["300-300"]})
    if len(specs) != 1:
        raise ValueError(f"student must name one student, e.g. {{'300-300': {{'arch': 'mlp', 'hidden': (300, 300)}}}}, "
                         f"got {list(specs)}")
    (name, spec), = specs.items()
    spec = dict(spec)
    arch = spec.pop("arch")
    teacher_test = metrics.predict_logits(teacher.model, data.test.x)
    runs = progress_bar(len(seed_list) * (len(temps) + 1), "students", progress=progress, leave=True)
    models: dict[tuple[str, float | None, int], Trained] = {}
    rows: list[dict] = []
    try:
        for seed in seed_list:
            runs.set_description(f"{name} logit matching seed {seed}")
            lm = train_model(arch, data, base_config.replace(loss="logit_matching", seed=seed), teacher=teacher,
                             progress=False, label=f"lesson 06 {name} logit matching seed={seed}", **spec)
            runs.update(1)
            models[(LOGIT_MATCHING, None, seed)] = lm
            lm_logits = metrics.predict_logits(lm.model, data.test.x)
            lm_errors = metrics.error_count(lm_logits, data.test.y)
            for t in temps:
                runs.set_description(f"{name} soft targets T={t:g} seed {seed}")
                kd = train_model(arch, data, base_config.replace(loss="soft_target", temperature=t, alpha=1.0, seed=seed),
                                 teacher=teacher, progress=False,
                                 label=f"lesson 06 {name} soft targets T={t:g} seed={seed}", **spec)
                runs.update(1)
                models[(SOFT_TARGETS, t, seed)] = kd
                kd_logits = metrics.predict_logits(kd.model, data.test.x)
                rows.append({
                    "temperature": t, "seed": seed,
                    "test_errors": metrics.error_count(kd_logits, data.test.y), "lm_test_errors": lm_errors,
                    "agreement": metrics.agreement(kd_logits, lm_logits),
                    "logit_correlation": logit_correlation(kd_logits, lm_logits),
                    "teacher_agreement": metrics.agreement(kd_logits, teacher_test),
                })
    finally:
        runs.close()
    return MatchingResult(name, models, rows, temps, seed_list, len(data.test))


def matching_findings(result: MatchingResult) -> list[str]:
    """What section 3 measured, in words: where the soft-target students agree most with logit matching."""
    stats = {t: {k: plots.mean_std([r[k] for r in result.rows if r["temperature"] == t])
                 for k in ("agreement", "logit_correlation", "test_errors")} for t in result.temperatures}
    lo, hi = result.temperatures[0], result.temperatures[-1]
    if lo == hi:
        return [f"Only one temperature (T = {lo:g}) was run: nothing to compare."]
    lines = [f"T = {t:g}: the soft-target student predicts the same class as the logit-matching student on "
             f"{stats[t]['agreement'][0]:.2%} of the test images; their zero-meaned logits correlate at "
             f"{stats[t]['logit_correlation'][0]:.3f}; {stats[t]['test_errors'][0]:.0f} test errors."
             for t in result.temperatures]
    (m_lo, s_lo), (m_hi, s_hi) = stats[lo]["logit_correlation"], stats[hi]["logit_correlation"]
    n = len(result.seeds)
    if n < 2:
        lines.append(f"From T = {lo:g} to T = {hi:g} the logit correlation went from {m_lo:.3f} to {m_hi:.3f} "
                     f"(one seed: no spread to judge the difference by).")
        return lines
    bound = 2 * math.hypot(s_lo, s_hi) / math.sqrt(n)
    if m_hi - m_lo > bound:
        lines.append(f"From T = {lo:g} to T = {hi:g} the logit correlation rises from {m_lo:.3f} to {m_hi:.3f}, more "
                     f"than two standard errors ({bound:.3f}) over {n} seeds: at high temperature the two losses "
                     f"train nearly the same network, as §2.1 predicts.")
    else:
        lines.append(f"From T = {lo:g} to T = {hi:g} the logit correlation goes from {m_lo:.3f} to {m_hi:.3f}, not "
                     f"more than two standard errors ({bound:.3f}) over {n} seeds: this run does not show the "
                     f"high-temperature limit clearly.")
    return lines


def matching_figure(result: MatchingResult, cosines: Mapping[str, Sequence[float]] | None = None,
                    cosine_temperatures: Sequence[float] | None = None) -> go.Figure:
    """Three panels against T (log axis): the students' test errors (soft targets, with the
    logit-matching student as a line); how alike the soft-target and logit-matching students are
    (top-1 agreement, correlation of zero-meaned logits); and, if given, the cosine between the
    two losses' gradients on fixed logits (``{"as they are": [...], "zero-meaned": [...]}``)."""
    temps = result.temperatures
    panels = 3 if cosines else 2
    titles = ["test errors", "soft-target student vs logit-matching student", "gradient cosine on fixed logits"]
    fig = make_subplots(rows=1, cols=panels, subplot_titles=titles[:panels], horizontal_spacing=0.12,
                        specs=[[{}, {"secondary_y": True}] + ([{}] if cosines else [])])

    def stat(key: str, k: float = 1.0) -> tuple[list[float], list[float]]:
        s = [plots.mean_std([r[key] * k for r in result.rows if r["temperature"] == t]) for t in temps]
        return [m for m, _ in s], [d for _, d in s]

    m, s = stat("test_errors")
    fig.add_trace(go.Scatter(x=temps, y=m, error_y=dict(type="data", array=s, visible=True), mode="lines+markers",
                             name="soft targets (T²·KL, no labels)", line=dict(color=COLOURS["distilled"])), row=1, col=1)
    lm, lm_s = plots.mean_std([r["lm_test_errors"] for r in result.rows if r["temperature"] == temps[0]])
    fig.add_trace(go.Scatter(x=[temps[0], temps[-1]], y=[lm, lm], mode="lines", name=f"logit matching ({lm:.0f})",
                             line=dict(color=COLOURS["matching"], dash="dash")), row=1, col=1)
    m, s = stat("agreement", 100)
    fig.add_trace(go.Scatter(x=temps, y=m, error_y=dict(type="data", array=s, visible=True), mode="lines+markers",
                             name="same predicted class (%)", line=dict(color="#9467bd")), row=1, col=2, secondary_y=False)
    m, s = stat("logit_correlation")
    fig.add_trace(go.Scatter(x=temps, y=m, error_y=dict(type="data", array=s, visible=True), mode="lines+markers",
                             name="correlation of zero-meaned logits", line=dict(color="#ff7f0e", dash="dot")),
                  row=1, col=2, secondary_y=True)
    if cosines:
        xs = list(cosine_temperatures if cosine_temperatures is not None else temps)
        for (label, values), dash in zip(cosines.items(), ("solid", "dash", "dot"), strict=False):
            fig.add_trace(go.Scatter(x=xs, y=list(values), mode="lines", name=f"gradient cosine, logits {label}",
                                     line=dict(color="#17becf", dash=dash)), row=1, col=3)
        fig.update_yaxes(range=[-0.05, 1.05], title_text="cosine", row=1, col=3)
    for col in range(1, panels + 1):
        fig.update_xaxes(type="log", title_text="temperature T", row=1, col=col)
    fig.update_yaxes(title_text=f"test errors (of {result.n_test:,})", row=1, col=1)
    fig.update_yaxes(title_text="same class (%)", row=1, col=2, secondary_y=False)
    fig.update_yaxes(title_text="logit correlation", tickformat=".2f", row=1, col=2, secondary_y=True)
    fig.update_layout(height=420, title=f"{result.student} students: logit matching against soft targets",
                      legend=dict(orientation="h", y=-0.25))
    return fig


def fixed_logits(teacher: Trained, student_arch: str, data: Data, n: int = 512, seed: int = 0,
                 **options) -> tuple[Tensor, Tensor]:
    """(student logits, teacher logits), each (n, C), on the first ``n`` training images: the
    teacher's, and those of an *untrained* student built with ``seed`` — the first step of
    distillation. Fixed inputs for :func:`gradient_agreement` and the gradient panel."""
    from labkd.models import build_model

    _check_trained(teacher, "teacher")
    n = min(int(n), len(data.train))
    x = data.train.x[:n]
    fresh = build_model(student_arch, data.input_shape, data.num_classes, seed=seed, **options)
    return metrics.predict_logits(fresh, x), metrics.predict_logits(teacher.model, x)


#: Temperatures of the gradient-cosine curves (log-spaced).
COSINE_TEMPERATURES = tuple(float(t) for t in np.geomspace(0.5, 500, 31))


def gradient_cosines(student_logits: Tensor, teacher_logits: Tensor,
                     temperatures: Sequence[float] = COSINE_TEMPERATURES) -> dict[str, list[float]]:
    """The cosine of :func:`gradient_agreement` for the logits as they are and zero-meaned per
    example: ``{"as they are": [...], "zero-meaned": [...]}``, one value per temperature."""
    return {"as they are": gradient_agreement(student_logits, teacher_logits, temperatures)["cosine"],
            "zero-meaned": gradient_agreement(student_logits, teacher_logits, temperatures, centre=True)["cosine"]}


# --------------------------------------------------------------------------------------------
# The report's "paper versus labkd" rows


def compare_with_paper(grid: sweeps.SweepResult, teacher: Trained, data: Data, target: TargetCheck,
                       sweep: sweeps.SweepResult | None = None, remark: sweeps.RemarkCheck | None = None,
                       matching: MatchingResult | None = None, alpha: float = ALPHA) -> list[dict]:
    """Record this lesson's measurements beside the paper's with :func:`labkd.results.compare`
    (collected by ``labkd run`` into the results table); returns the rows."""
    from labkd import results

    per = "" if len(data.test) == 10_000 else f" of {len(data.test):,}"
    seeds = grid.seeds
    kd = _distilled(grid)
    rows = [results.compare("MNIST teacher 784-1200-1200-10 (dropout, jitter): test errors",
                            f"{target.teacher_errors}{per}", PAPER["teacher_errors"],
                            seeds=[teacher.model.spec.get("seed")], seconds=round(teacher.seconds, 1))]
    for label, criteria, paper in (("784-800-800-10, labels only", {"baseline": True}, PAPER["labels_only_errors"]),
                                   (f"784-800-800-10, distilled at T = {kd['temperature']:g}", kd,
                                    PAPER["distilled_errors"])):
        rows.append(results.compare(f"{label}: test errors", _pm(*_errors(grid, **criteria)) + per, paper, seeds=seeds,
                                    seconds=round(sum(r.seconds for r in grid.select(**criteria)), 1)))
    paper_fraction = gap_closed(PAPER["labels_only_errors"], PAPER["distilled_errors"], PAPER["teacher_errors"])
    rows.append(results.compare("fraction of the teacher/student gap closed by distillation",
                                "undefined (no gap)" if math.isnan(target.fraction) else f"{target.fraction:.2f}",
                                f"{paper_fraction:.2f}", seeds=seeds))
    if sweep is not None:
        for name in sweep.students:
            best = sweeps.best_temperature(sweep, name, alpha)
            paper = "2.5–4" if name == "30-30" else "any T ≥ 8 about equally good"
            rows.append(results.compare(f"{name} student: best temperature (on validation)",
                                        f"T = {best.temperature:g}", paper, seeds=sweep.seeds,
                                        seconds=round(sum(r.seconds for r in sweep.select(student=name, scale_by_t2=None)), 1)))
    if remark is not None:
        def verdict(value: bool | None) -> str:
            return "untested (one seed)" if value is None else ("reproduced" if value else "not reproduced")

        rows.append(results.compare("30-30 student prefers T in 2.5–4 (beyond two standard errors)",
                                    verdict(remark.small_prefers_range), "yes"))
        rows.append(results.compare("300-300 student insensitive to T ≥ 8", verdict(remark.large_insensitive), "yes"))
    if matching is not None:
        hi = matching.temperatures[-1]
        corr = plots.mean_std([r["logit_correlation"] for r in matching.rows if r["temperature"] == hi])[0]
        rows.append(results.compare(f"soft targets at T = {hi:g} vs logit matching: correlation of zero-meaned logits",
                                    f"{corr:.3f}", "the same gradient in the high-T limit (§2.1)",
                                    seeds=matching.seeds, seconds=round(matching.training_seconds, 1)))
    return rows
