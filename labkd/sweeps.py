r"""Grids of distillation runs over the temperature :math:`T` and the soft-target weight :math:`\alpha`.

Hinton, Vinyals & Dean (2015), https://arxiv.org/abs/1503.02531, train the student on

.. math::
    \alpha\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(v/T)\,\|\,\mathrm{softmax}(z/T)\big)
    + (1-\alpha)\,\mathrm{CE}(z, y)

and remark (§3) that a very small student prefers a moderate :math:`T` while a large one does
not care above 8. This module runs such a grid — every cell is one cached
:func:`labkd.experiments.train_model` call, so a second run only loads — and summarises it:

>>> result = run_grid(transfer, teacher, STUDENTS, temperatures=(1, 2, 4, 8, 20),
...                   alphas=(0.5, 0.9, 1.0), seeds=3, base_config=zoo.RECIPES["student"])
>>> result.mean_std("test_acc", student="800-800", temperature=4, alpha=0.9)   # (mean, std, n)

The lesson's judgements (best temperature, the §3 remark, "What we found") are in
:mod:`labkd.sweeps_findings`, its static figures in :mod:`labkd.sweeps_figures`.

``alpha = 0`` is the labels-only student (``loss="cross_entropy"``): it does not depend on
``T``, so it is trained once per student and seed and every figure draws it as the baseline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor, nn

from labkd import cache, checks, losses, parallel, plots
from labkd.data import Data
from labkd.experiments import Trained, train_model
from labkd.metrics import predict_logits
from labkd.models import build_model
from labkd.progress import progress_bar
from labkd.train import TrainConfig, TrainingDivergedError

#: The two students of Hinton et al.'s temperature remark: name -> build_model arguments.
STUDENTS: dict[str, dict] = {
    "800-800": {"arch": "hinton_student"},
    "30-30": {"arch": "small_student"},
}

#: Accuracy-like metrics a row carries (``test_errors`` is a count, lower is better).
METRICS = ("test_acc", "val_acc", "train_acc", "test_errors", "loss")

_DEFAULTS = TrainConfig()

#: Hinton et al. (2015) §3, MNIST, test errors out of 10,000: the 784-1200-1200 teacher (dropout,
#: jitter), the 784-800-800 net trained on labels only, and the same net distilled at T = 20.
PAPER = {"teacher_errors": 67, "labels_only_errors": 146, "distilled_errors": 74, "distilled_temperature": 20,
         "small_student_best_T": (2.5, 4.0), "large_student_insensitive_above": 8.0}


# --------------------------------------------------------------------------------------------
# Rows and results


@dataclass
class SweepRow:
    """One trained student of a grid.

    ``temperature`` is ``None`` and ``alpha`` is 0 for the labels-only baseline. ``history`` is
    the per-epoch list of ``fit`` rows (``epoch, loss, train_acc, val_acc, test_acc, seconds``);
    ``seconds`` is the training time (also when the model came from the cache); ``init`` is a
    fingerprint of the weights the student started from. A run whose loss became NaN or infinite
    (it *diverged*) is kept with an empty history: its metrics are NaN, so means over it are NaN too.
    """

    student: str
    temperature: float | None
    alpha: float
    seed: int
    scale_by_t2: bool
    history: list[dict]
    n_test: int
    seconds: float
    cached: bool
    key: str
    init: str = ""

    @property
    def baseline(self) -> bool:
        return self.temperature is None

    @property
    def diverged(self) -> bool:
        """True when training stopped on a NaN/inf loss (no history was kept)."""
        return not self.history

    def metric(self, name: str = "test_acc", epoch: int | None = None) -> float:
        """``name`` after ``epoch`` (1-based; default the last). ``test_errors`` counts mistakes.
        NaN for a diverged run."""
        if name not in METRICS:
            raise ValueError(f"metric={name!r} is unknown; expected one of {METRICS}")
        if self.diverged:
            return float("nan")
        if epoch is not None and not 1 <= epoch <= len(self.history):
            raise ValueError(f"epoch must be in 1..{len(self.history)}, got {epoch!r}")
        row = self.history[-1 if epoch is None else epoch - 1]
        if name == "test_errors":
            return float(round((1.0 - row["test_acc"]) * self.n_test))
        return float(row[name])

    def label(self) -> str:
        if self.baseline:
            return f"{self.student}, labels only, seed {self.seed}"
        t2 = "" if self.scale_by_t2 else ", no T²"
        return f"{self.student}, T={format_temperature(self.temperature)}, α={self.alpha:g}{t2}, seed {self.seed}"


_CRITERIA = ("student", "temperature", "alpha", "seed", "scale_by_t2", "baseline")


@dataclass
class SweepResult:
    """The rows of one or more grids, with the summaries the lesson needs.

    ``specs[name]`` holds the ``build_model`` arguments of each student (to train more cells).
    """

    rows: list[SweepRow] = field(default_factory=list)
    specs: dict[str, dict] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[SweepRow]:
        return iter(self.rows)

    # --- selection -------------------------------------------------------------------------

    def select(self, **criteria) -> list[SweepRow]:
        """Rows matching every criterion (``student``, ``temperature``, ``alpha``, ``seed``,
        ``scale_by_t2``, ``baseline``), sorted by seed. ``temperature=None`` or
        ``baseline=True`` picks the labels-only rows.

        ``scale_by_t2`` defaults to True: the T² ablation's rows are only chosen when asked for
        (``scale_by_t2=False``, or ``None`` for both); it never filters out the baseline rows.
        """
        unknown = set(criteria) - set(_CRITERIA)
        if unknown:
            raise ValueError(f"unknown criteria {sorted(unknown)}; expected some of {_CRITERIA}")
        criteria.setdefault("scale_by_t2", True)
        if criteria["scale_by_t2"] is None:
            del criteria["scale_by_t2"]
        chosen = []
        for row in self.rows:
            ok = True
            for name, wanted in criteria.items():
                if name == "scale_by_t2" and row.baseline:
                    continue
                value = getattr(row, name)
                if name in ("temperature", "alpha") and wanted is not None and value is not None:
                    ok = math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
                else:
                    ok = value == wanted
                if not ok:
                    break
            if ok:
                chosen.append(row)
        return sorted(chosen, key=lambda r: r.seed)

    def values(self, metric: str = "test_acc", epoch: int | None = None, **criteria) -> list[float]:
        """``metric`` of every matching row, in seed order."""
        return [row.metric(metric, epoch) for row in self.select(**criteria)]

    def mean_std(self, metric: str = "test_acc", epoch: int | None = None, **criteria) -> tuple[float, float, int]:
        """Mean, sample standard deviation (0 for one seed) and count of ``metric`` over the matching
        rows — usually one grid cell across seeds: ``mean_std(student="30-30", temperature=4, alpha=0.9)``."""
        values = self.values(metric, epoch, **criteria)
        if not values:
            raise ValueError(f"no rows match {criteria}; this result has students {self.students}, "
                             f"temperatures {self.temperatures}, alphas {self.alphas}, seeds {self.seeds}")
        mean, std = plots.mean_std(values)
        return mean, std, len(values)

    def baseline_mean_std(self, student: str, metric: str = "test_acc") -> tuple[float, float, int]:
        """Mean, std and count of the labels-only student's ``metric``."""
        return self.mean_std(metric, student=student, baseline=True)

    # --- what the grid holds ---------------------------------------------------------------

    @property
    def students(self) -> list[str]:
        return list(dict.fromkeys(r.student for r in self.rows))

    @property
    def temperatures(self) -> list[float]:
        return sorted({r.temperature for r in self.rows if not r.baseline})

    @property
    def alphas(self) -> list[float]:
        return sorted({r.alpha for r in self.rows if not r.baseline})

    @property
    def seeds(self) -> list[int]:
        return sorted({r.seed for r in self.rows})

    def temperatures_of(self, student: str, alpha: float | None = None, scale_by_t2: bool = True) -> list[float]:
        """Temperatures run for ``student`` (and ``alpha``) with this T² setting."""
        rows = self.select(student=student, baseline=False, scale_by_t2=scale_by_t2)
        return sorted({r.temperature for r in rows if alpha is None or math.isclose(r.alpha, alpha)})

    def alphas_of(self, student: str, scale_by_t2: bool = True) -> list[float]:
        """Alphas (> 0) run for ``student`` with this T² setting."""
        return sorted({r.alpha for r in self.select(student=student, baseline=False, scale_by_t2=scale_by_t2)})

    # --- combining and tabulating -----------------------------------------------------------

    def merge(self, *others: SweepResult) -> SweepResult:
        """All rows of ``self`` and ``others``; a later row replaces an earlier one of the same cell and seed."""
        merged: dict[tuple, SweepRow] = {}
        specs: dict[str, dict] = {}
        for result in (self, *others):
            specs.update(result.specs)
            for row in result.rows:
                merged[(row.student, row.temperature, row.alpha, row.seed, row.baseline or row.scale_by_t2)] = row
        return SweepResult(list(merged.values()), specs)

    def table(self, metric: str = "test_acc", student: str | None = None, percent: bool = True) -> list[dict]:
        """One dict per cell (labels-only first): student, T, alpha, T² scaling, mean ± std over seeds.

        Accuracies are in percent when ``percent``; ``test_errors`` is a count.
        """
        scale = 100.0 if percent and metric.endswith("_acc") else 1.0
        unit = " (%)" if scale == 100.0 else ""
        cells: dict[tuple, list[float]] = {}
        for row in self.rows:
            if student is not None and row.student != student:
                continue
            key = (row.student, row.temperature, row.alpha, True if row.baseline else row.scale_by_t2)
            cells.setdefault(key, []).append(row.metric(metric))
        out = []
        for (name, t, a, t2), values in sorted(cells.items(), key=lambda kv: (
                self.students.index(kv[0][0]), kv[0][1] is not None, not kv[0][3], kv[0][2], kv[0][1] or 0)):
            mean, std = plots.mean_std(values)
            out.append({
                "student": name,
                "T": "—" if t is None else format_temperature(t),
                "alpha": "0 (labels only)" if t is None else f"{a:g}",
                "T² scaling": "—" if t is None else ("yes" if t2 else "no"),
                f"mean {metric}{unit}": round(mean * scale, 2 if scale == 100.0 else 4),
                "± std": round(std * scale, 2 if scale == 100.0 else 4),
                "seeds": len(values),
            })
        return out

    @property
    def training_seconds(self) -> float:
        """Total training time of every row (the time a cold run takes)."""
        return float(sum(r.seconds for r in self.rows))

    @property
    def trained_now(self) -> int:
        """How many rows were trained by this call (the others came from the cache)."""
        return sum(not r.cached for r in self.rows)


def nan_last(value: float) -> float:
    """A sort key that puts NaN (a diverged cell) below every number."""
    return -math.inf if math.isnan(value) else value


def format_temperature(t: float | None) -> str:
    """``"4"``, ``"0.5"``; ``"—"`` for no temperature (a labels-only row)."""
    return "—" if t is None else f"{t:g}"


# --------------------------------------------------------------------------------------------
# Running a grid


def _check_students(students: str | Mapping[str, Mapping]) -> dict[str, dict]:
    if isinstance(students, str):
        return {students: {"arch": students}}
    if not isinstance(students, Mapping) or not students:
        raise ValueError("students must be a preset name or a non-empty mapping name -> build_model "
                         "arguments, e.g. {'30-30': {'arch': 'mlp', 'hidden': (30, 30)}}")
    out = {}
    for name, spec in students.items():
        if not isinstance(spec, Mapping) or "arch" not in spec:
            raise ValueError(f"students[{name!r}] must be a dict with an 'arch' key, got {spec!r}")
        out[str(name)] = dict(spec)
    return out


def _check_values(values: Iterable[float], argument: str, check: Callable[[float], float]) -> list[float]:
    if isinstance(values, (int, float)):
        values = [values]
    try:
        items = list(values)
    except TypeError:
        raise TypeError(f"{argument} must be a sequence of numbers, got {type(values).__name__}") from None
    if not items:
        raise ValueError(f"{argument} is empty: the grid needs at least one value")
    out: list[float] = []
    for v in items:
        try:
            v = check(v)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{argument} has {v!r}: {error}") from None
        if not any(math.isclose(v, u) for u in out):
            out.append(v)
    return out


def check_seeds(seeds: int | Sequence[int], first: int = 0) -> list[int]:
    """``seeds`` as a list: an int n >= 1 means ``first, first+1, ..., first+n-1``; a list is
    checked by :func:`labkd.checks.check_seeds` (distinct non-negative integers)."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1 (how many seeds to average over), got {seeds}")
        return [first + i for i in range(int(seeds))]
    return checks.check_seeds(seeds)


def baseline_config(base_config: TrainConfig, seed: int) -> TrainConfig:
    """The labels-only run of a grid: ``loss="cross_entropy"`` with the distillation fields reset,
    so every grid (and every T² setting) finds the same cached baseline."""
    return base_config.replace(loss="cross_entropy", temperature=_DEFAULTS.temperature,
                               alpha=_DEFAULTS.alpha, scale_by_t2=True, seed=seed)


def cell_config(base_config: TrainConfig, temperature: float, alpha: float, seed: int) -> TrainConfig:
    """The distillation run of one grid cell."""
    return base_config.replace(loss="distillation", temperature=temperature, alpha=alpha, seed=seed)


def _cell(name: str, base_config: TrainConfig, t: float | None, a: float, seed: int) -> tuple[TrainConfig, str]:
    """A grid cell's recipe and cache label (``t=None``: the labels-only baseline)."""
    if t is None:
        return baseline_config(base_config, seed), f"sweep {name} labels only seed={seed}"
    config = cell_config(base_config, t, a, seed)
    return config, f"sweep {name} T={t:g} alpha={a:g} t2={config.scale_by_t2} seed={seed}"


def _grid_run(name: str, spec: Mapping, base_config: TrainConfig, teacher: Trained | nn.Module, t: float | None,
              a: float, seed: int) -> parallel.Run:
    """A grid cell as a :class:`labkd.parallel.Run`."""
    options = dict(spec)
    arch = options.pop("arch")
    config, label = _cell(name, base_config, t, a, seed)
    return parallel.Run(arch, config, teacher=None if t is None else teacher, label=label, **options)


def run_grid(
    data: Data,
    teacher: Trained | nn.Module,
    students: str | Mapping[str, Mapping] = "hinton_student",
    temperatures: Sequence[float] = (1, 2, 4, 8, 20),
    alphas: Sequence[float] = (0.9,),
    seeds: int | Sequence[int] = 1,
    base_config: TrainConfig | None = None,
    *,
    baseline: bool = True,
    progress: bool | None = None,
    on_cell: Callable[[int, int, SweepRow], None] | None = None,
    use_cache: bool = True,
    workers: int | None = None,
) -> SweepResult:
    """Distil every student at every (temperature, alpha, seed), plus the labels-only baseline.

    Args:
        data: its ``train`` split is the transfer set; val and test are evaluated every epoch.
        teacher: the trained teacher (its logits on ``data.train`` are computed once per cell).
        students: a preset name, or ``{name: {"arch": ..., **options}}`` (see :data:`STUDENTS`).
        temperatures: T values (> 0). alphas: weights of the soft-target term in [0, 1];
            0 means labels only (trained once per seed, whatever T).
        seeds: how many seeds (``base_config.seed``, +1, ...) or a list of seeds. A seed fixes the
            student's initial weights and the batch order, the same for every cell.
        base_config: the training recipe (epochs, lr, ``scale_by_t2``...); ``loss``,
            ``temperature``, ``alpha`` and ``seed`` are set per cell. Default
            ``labkd.zoo.RECIPES["student"]``.
        baseline: also train the labels-only student for each student and seed.
        progress: one progress bar over the cells (default: on unless ``LABKD_PROGRESS=0``).
        on_cell: called as ``on_cell(done, total, row)`` after each cell (widgets' progress bars).
        workers: train the cells not in the cache yet in this many processes first (default
            ``LABKD_WORKERS``, else 1; see :mod:`labkd.parallel`); the same weights either way.
    Returns a :class:`SweepResult`. Invalid inputs raise before any training.
    """
    specs = _check_students(students)
    temps = _check_values(temperatures, "temperatures", losses.check_temperature)
    alpha_list = _check_values(alphas, "alphas", losses.check_alpha)
    if base_config is None:
        from labkd.zoo import RECIPES

        base_config = RECIPES["student"]
    if not isinstance(base_config, TrainConfig):
        raise TypeError(f"base_config must be a labkd.TrainConfig, got {type(base_config).__name__}")
    seed_list = check_seeds(seeds, base_config.seed)
    if not isinstance(data, Data):
        raise TypeError(f"data must be a labkd.Data, got {type(data).__name__}")
    if not isinstance(teacher, (Trained, nn.Module)):
        raise TypeError(f"teacher must be a trained model (labkd Trained or nn.Module), got {type(teacher).__name__}")

    wants_baseline = baseline or any(a == 0 for a in alpha_list)
    distil_alphas = [a for a in alpha_list if a > 0]
    jobs: list[tuple[str, float | None, float, int]] = []
    for name in specs:
        for seed in seed_list:
            if wants_baseline:
                jobs.append((name, None, 0.0, seed))
            jobs += [(name, t, a, seed) for a in distil_alphas for t in temps]

    if use_cache:
        parallel.train_runs(data, [_grid_run(name, specs[name], base_config, teacher, t, a, seed)
                                   for name, t, a, seed in jobs], workers, progress)
    bar = progress_bar(len(jobs), "grid", progress=progress, leave=True)
    rows: list[SweepRow] = []
    inits: dict[tuple[str, int], str] = {}
    try:
        for done, (name, t, a, seed) in enumerate(jobs, start=1):
            spec = dict(specs[name])
            arch = spec.pop("arch")
            if (name, seed) not in inits:
                inits[(name, seed)] = initial_fingerprint(arch, data, seed, **spec)
            bar.set_description(f"{name} " + ("labels only" if t is None else f"T={t:g} α={a:g}") + f" seed {seed}")
            config, label = _cell(name, base_config, t, a, seed)
            start = time.perf_counter()
            try:
                trained = train_model(arch, data, config, teacher=None if t is None else teacher,
                                      use_cache=use_cache, progress=False, label=label, **spec)
            except TrainingDivergedError:
                # fit stopped at a non-finite loss or exploding logits: this run diverged. Keep it as
                # a row (it is a result: too high a learning rate for this cell), uncached, with no history.
                row = SweepRow(name, t, a, seed, config.scale_by_t2, [], len(data.test),
                               time.perf_counter() - start, False, "", inits[(name, seed)])
            else:
                row = SweepRow(name, t, a, seed, config.scale_by_t2, list(trained.history), len(data.test),
                               float(trained.seconds), bool(trained.cached), trained.key, inits[(name, seed)])
            rows.append(row)
            bar.update(1)
            if on_cell is not None:
                on_cell(done, len(jobs), row)
    finally:
        bar.close()
    return SweepResult(rows, specs)


def initial_fingerprint(arch: str, data: Data, seed: int, **options) -> str:
    """A hash of the weights ``train_model(arch, ..., seed=seed)`` starts from."""
    model = build_model(arch, data.input_shape, data.num_classes, seed=seed, **options)
    return cache.tensor_fingerprint(*[p.detach() for p in model.state_dict().values()])[:12]


def same_start(result: SweepResult) -> list[dict]:
    """For each student and seed: how many runs, and how many distinct initial weights (should be 1)."""
    groups: dict[tuple[str, int], list[str]] = {}
    for row in result.rows:
        groups.setdefault((row.student, row.seed), []).append(row.init)
    return [{"student": s, "seed": seed, "runs": len(inits), "distinct initial weights": len(set(inits)),
             "fingerprint": inits[0]} for (s, seed), inits in groups.items()]


def mean_curve(result: SweepResult, metric: str = "val_acc", **criteria) -> tuple[list[int], list[float], list[float]]:
    """Epochs, mean and std over seeds of ``metric`` per epoch for the matching rows (diverged runs,
    which have no curve, are left out)."""
    rows = [r for r in result.select(**criteria) if not r.diverged]
    if not rows:
        raise ValueError(f"no rows (that did not diverge) match {criteria}")
    epochs = min(len(r.history) for r in rows)
    per_epoch = [plots.mean_std([r.metric(metric, e) for r in rows]) for e in range(1, epochs + 1)]
    return list(range(1, epochs + 1)), [m for m, _ in per_epoch], [s for _, s in per_epoch]


# --------------------------------------------------------------------------------------------
# Why the T² factor: gradient sizes


def soft_gradient_norms(student: nn.Module, teacher: Trained | nn.Module, x: Tensor,
                        temperatures: Sequence[float],
                        loss: Callable[[Tensor, Tensor, float], Tensor] | None = None) -> dict[str, list[float]]:
    r"""Size of the soft-target gradient :math:`\|\partial \mathcal{L}_{soft} / \partial z\|` per example
    (the norm of each row of the gradient, averaged; the loss is a batch mean, so it is multiplied
    by N) for each T, with and without the :math:`T^2` factor.

    Args: student and teacher models, x (N, ...) images, ``loss(student_logits, teacher_logits, T)``
    with the :math:`T^2` (default :func:`labkd.losses.soft_target_loss`; "without" divides it by
    :math:`T^2`). Returns ``{"with T²": [...], "without T²": [...]}``, one value per temperature.
    Without the factor the gradient shrinks like :math:`1/T^2` once T is large; with it, it levels off.
    """
    temps = _check_values(temperatures, "temperatures", losses.check_temperature)
    loss = loss or losses.soft_target_loss
    teacher_model = teacher.model if isinstance(teacher, Trained) else teacher
    v = predict_logits(teacher_model, x)
    z0 = predict_logits(student, x).to(v.device)
    out: dict[str, list[float]] = {"with T²": [], "without T²": []}
    for t in temps:
        for name, divide in (("with T²", 1.0), ("without T²", t * t)):
            z = z0.clone().requires_grad_(True)
            (loss(z, v, t) / divide).backward()
            out[name].append(float(z.grad.norm(dim=1).mean() * len(z)))
    return out
