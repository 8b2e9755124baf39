r"""Grids of distillation runs over the temperature :math:`T` and the soft-target weight :math:`\alpha`.

Hinton, Vinyals & Dean (2015), https://arxiv.org/abs/1503.02531, train the student on

.. math::
    \alpha\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(v/T)\,\|\,\mathrm{softmax}(z/T)\big)
    + (1-\alpha)\,\mathrm{CE}(z, y)

and remark (§3) that a very small student prefers a moderate :math:`T` while a large one does
not care above 8. This module runs such a grid — every cell is one cached
:func:`labkd.experiments.train_model` call, so a second run only loads — and summarises it:

>>> result = run_grid(transfer, teacher, STUDENTS, temperatures=(1, 2, 4, 8, 20),
...                   alphas=(0.5, 0.9, 1.0), seeds=3, base_config=zoo.student_config(fast=False))
>>> result.mean_std("test_acc", student="800-800", temperature=4, alpha=0.9)   # (mean, std, n)
>>> best_temperature(result, "30-30", alpha=0.9).describe()
>>> accuracy_vs_temperature_figure(result, "800-800")

``alpha = 0`` is the labels-only student (``loss="cross_entropy"``): it does not depend on
``T``, so it is trained once per student and seed and every figure draws it as the baseline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor, nn

from labkd import cache, losses, plots, stats
from labkd.data import Data
from labkd.experiments import Trained, train_model
from labkd.metrics import predict_logits
from labkd.models import build_model
from labkd.progress import progress_bar
from labkd.train import TrainConfig

#: The two students of Hinton et al.'s temperature remark: name -> build_model arguments.
STUDENTS: dict[str, dict] = {
    "800-800": {"arch": "hinton_student"},
    "30-30": {"arch": "small_student"},
}

#: Accuracy-like metrics a row carries (``test_errors`` is a count, lower is better).
METRICS = ("test_acc", "val_acc", "train_acc", "test_errors", "loss")

_DEFAULTS = TrainConfig()


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
        return f"{self.student}, T={_fmt_t(self.temperature)}, α={self.alpha:g}{t2}, seed {self.seed}"


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
                "T": "—" if t is None else _fmt_t(t),
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


def _rank(value: float) -> float:
    """A sort key that puts NaN (a diverged cell) below every number."""
    return -math.inf if math.isnan(value) else value


def _fmt_t(t: float | None) -> str:
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
    """``seeds`` as a list: an int n >= 1 means ``first, first+1, ..., first+n-1``."""
    if isinstance(seeds, bool):
        raise TypeError(f"seeds must be a positive integer or a list of integers, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1 (how many seeds to average over), got {seeds}")
        return [first + i for i in range(seeds)]
    try:
        items = list(seeds)
    except TypeError:
        raise TypeError(f"seeds must be a positive integer or a list of integers, got {seeds!r}") from None
    if not items:
        raise ValueError("seeds is empty: give at least one seed")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in items):
        raise TypeError(f"seeds must be integers, got {items!r}")
    return list(dict.fromkeys(items))


def baseline_config(base_config: TrainConfig, seed: int) -> TrainConfig:
    """The labels-only run of a grid: ``loss="cross_entropy"`` with the distillation fields reset,
    so every grid (and every T² setting) finds the same cached baseline."""
    return base_config.replace(loss="cross_entropy", temperature=_DEFAULTS.temperature,
                               alpha=_DEFAULTS.alpha, scale_by_t2=True, seed=seed)


def cell_config(base_config: TrainConfig, temperature: float, alpha: float, seed: int) -> TrainConfig:
    """The distillation run of one grid cell."""
    return base_config.replace(loss="distillation", temperature=temperature, alpha=alpha, seed=seed)


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
            ``labkd.zoo.student_config(fast=False)``.
        baseline: also train the labels-only student for each student and seed.
        progress: one progress bar over the cells (default: on unless ``LABKD_PROGRESS=0``).
        on_cell: called as ``on_cell(done, total, row)`` after each cell (widgets' progress bars).
    Returns a :class:`SweepResult`. Invalid inputs raise before any training.
    """
    specs = _check_students(students)
    temps = _check_values(temperatures, "temperatures", losses.check_temperature)
    alpha_list = _check_values(alphas, "alphas", losses.check_alpha)
    if base_config is None:
        from labkd.zoo import student_config

        base_config = student_config(fast=False)
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
            if t is None:
                config = baseline_config(base_config, seed)
                label = f"sweep {name} labels only seed={seed}"
            else:
                config = cell_config(base_config, t, a, seed)
                label = f"sweep {name} T={t:g} alpha={a:g} t2={config.scale_by_t2} seed={seed}"
            start = time.perf_counter()
            try:
                trained = train_model(arch, data, config, teacher=None if t is None else teacher,
                                      use_cache=use_cache, progress=False, label=label, **spec)
            except ValueError as error:
                # The losses refuse NaN/inf logits: this run diverged. Keep it as a row (it is a
                # result: too high a learning rate for this cell), uncached, with no history.
                if "NaN or inf" not in str(error):
                    raise
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


# --------------------------------------------------------------------------------------------
# Which temperature is best?


@dataclass
class TemperatureChoice:
    """The best temperature of one student (and alpha) with the spread that qualifies it.

    ``per_temperature[T] = (mean, std, n)`` of ``metric`` (used to choose) and ``reported[T]``
    of ``report`` (shown). ``close`` lists the temperatures whose mean is within one combined
    standard deviation of the best; ``per_seed_best[seed]`` the best T of each seed alone.
    """

    student: str
    alpha: float
    metric: str
    report: str
    temperature: float
    per_temperature: dict[float, tuple[float, float, int]]
    reported: dict[float, tuple[float, float, int]]
    close: list[float]
    per_seed_best: dict[int, float]

    def spread_above(self, t_min: float) -> tuple[float, float]:
        """(max − min of the mean ``report`` over temperatures ≥ t_min, their mean std): is the
        student insensitive to T there? Compare the first with the second."""
        chosen = [v for t, v in self.reported.items() if t >= t_min]
        if not chosen:
            raise ValueError(f"no temperature >= {t_min} in {sorted(self.reported)}")
        means = [m for m, _, _ in chosen]
        return max(means) - min(means), float(np.mean([s for _, s, _ in chosen]))

    def describe(self, percent: bool = True) -> str:
        k = 100.0 if percent and self.report.endswith("_acc") else 1.0
        u = " %" if k == 100.0 else ""
        m, s, n = self.per_temperature[self.temperature]
        rm, rs, _ = self.reported[self.temperature]
        close = ", ".join(_fmt_t(t) for t in self.close)
        seeds = ", ".join(f"seed {seed}: T={_fmt_t(t)}" for seed, t in self.per_seed_best.items())
        if n < 2:
            return (f"{self.student} (α={self.alpha:g}): best T = {_fmt_t(self.temperature)} by {self.metric} "
                    f"({m * k:.2f}{u}; {self.report} {rm * k:.2f}{u}) — one seed, so no spread to judge it by.")
        return (f"{self.student} (α={self.alpha:g}): best T = {_fmt_t(self.temperature)} by {self.metric} "
                f"({m * k:.2f} ± {s * k:.2f}{u} over {n} seeds; {self.report} {rm * k:.2f} ± {rs * k:.2f}{u}). "
                f"Within one std of it: T ∈ {{{close}}}. Best T per seed: {seeds}.")


def best_temperature(result: SweepResult, student: str, alpha: float | None = None, metric: str = "val_acc",
                     report: str = "test_acc", scale_by_t2: bool = True) -> TemperatureChoice:
    """The temperature with the highest mean ``metric`` (validation accuracy by default, so the
    choice is not made on the test set) for ``student`` at ``alpha`` (default: the largest alpha
    run), with the spread over seeds."""
    if student not in result.students:
        raise ValueError(f"student={student!r} is not in this result; expected one of {result.students}")
    if alpha is None:
        alphas = result.alphas_of(student, scale_by_t2)
        if not alphas:
            raise ValueError(f"no distilled runs of {student!r} in this result")
        alpha = alphas[-1]
    temps = result.temperatures_of(student, alpha, scale_by_t2)
    if not temps:
        raise ValueError(f"no runs of {student!r} at alpha={alpha}; alphas run: {result.alphas_of(student, scale_by_t2)}")
    sign = -1.0 if metric == "test_errors" else 1.0
    crit = dict(student=student, alpha=alpha, scale_by_t2=scale_by_t2)
    per_t = {t: result.mean_std(metric, temperature=t, **crit) for t in temps}
    reported = {t: result.mean_std(report, temperature=t, **crit) for t in temps}
    best = max(temps, key=lambda t: (_rank(sign * per_t[t][0]), -t))
    bm, bs, _ = per_t[best]
    close = [t for t in temps if abs(per_t[t][0] - bm) <= math.hypot(bs, per_t[t][1]) + 1e-12]
    per_seed: dict[int, float] = {}
    for seed in result.seeds:
        scores = {t: result.values(metric, temperature=t, seed=seed, **crit) for t in temps}
        scores = {t: v[0] for t, v in scores.items() if v}
        if scores:
            per_seed[seed] = max(scores, key=lambda t: (_rank(sign * scores[t]), -t))
    return TemperatureChoice(student, float(alpha), metric, report, best, per_t, reported, close, per_seed)


#: Hinton et al. (2015) §3, MNIST, test errors out of 10,000: the 784-1200-1200 teacher (dropout,
#: jitter), the 784-800-800 net trained on labels only, and the same net distilled at T = 20.
PAPER = {"teacher_errors": 67, "labels_only_errors": 146, "distilled_errors": 74, "distilled_temperature": 20,
         "small_student_best_T": (2.5, 4.0), "large_student_insensitive_above": 8.0}


@dataclass
class RemarkCheck:
    """Does our grid reproduce Hinton et al.'s remark on temperature and student size?

    ``small_prefers_range``: the small student's best mean test accuracy inside ``small_range`` beats
    the best outside it by more than two standard errors (None: untestable — one seed, or no T on
    one side). ``large_insensitive``: the large student's mean test accuracies at T >= ``large_above``
    span no more than two standard errors of a difference (None: untestable). ``lines`` says it in words.
    """

    small_prefers_range: bool | None
    large_insensitive: bool | None
    lines: list[str]

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _two_se(a: tuple[float, float, int], b: tuple[float, float, int]) -> float:
    return 2.0 * math.sqrt(a[1] ** 2 / a[2] + b[1] ** 2 / b[2])


def check_temperature_remark(result: SweepResult, alpha: float, small: str = "30-30", large: str = "800-800",
                             small_range: tuple[float, float] = PAPER["small_student_best_T"],
                             large_above: float = PAPER["large_student_insensitive_above"]) -> RemarkCheck:
    """Test the §3 remark on our measurements (mean test accuracy over seeds at ``alpha``).

    A difference counts when it exceeds two standard errors (std/√n of each side); with one seed
    there is no spread, so nothing is claimed.
    """
    lines: list[str] = []
    lo, hi = small_range
    crit = dict(alpha=alpha, scale_by_t2=True)
    small_t = result.temperatures_of(small, alpha)
    sstats = {t: result.mean_std("test_acc", student=small, temperature=t, **crit) for t in small_t}
    inside = [t for t in small_t if lo <= t <= hi]
    outside = [t for t in small_t if not lo <= t <= hi]
    small_ok: bool | None = None
    if not inside or not outside:
        lines.append(f"{small}: the grid has no temperature {'in' if not inside else 'outside'} "
                     f"[{lo:g}, {hi:g}]; cannot test the small-student remark.")
    else:
        t_in = max(inside, key=lambda t: _rank(sstats[t][0]))
        t_out = max(outside, key=lambda t: _rank(sstats[t][0]))
        diff = sstats[t_in][0] - sstats[t_out][0]
        bound = _two_se(sstats[t_in], sstats[t_out])
        n = min(sstats[t_in][2], sstats[t_out][2])
        text = (f"{small}: best T in [{lo:g}, {hi:g}] is {t_in:g} ({sstats[t_in][0] * 100:.2f}%), best outside is "
                f"{t_out:g} ({sstats[t_out][0] * 100:.2f}%): difference {diff * 100:+.2f} points")
        if n < 2:
            lines.append(text + " — one seed, no spread: no conclusion.")
        else:
            small_ok = diff > bound
            narrow = " — narrowly: more seeds would settle it" if small_ok and diff < 1.5 * bound else ""
            lines.append(text + f", two standard errors {bound * 100:.2f} → "
                         + (f"the moderate temperatures ARE better (reproduces the remark{narrow})." if small_ok else
                            "not clearly better (does not reproduce the remark at this precision)."))
    large_t = [t for t in result.temperatures_of(large, alpha) if t >= large_above]
    large_ok: bool | None = None
    if len(large_t) < 2:
        lines.append(f"{large}: fewer than two temperatures >= {large_above:g} in the grid; cannot test "
                     f"the large-student remark.")
    else:
        lstats = {t: result.mean_std("test_acc", student=large, temperature=t, **crit) for t in large_t}
        t_max = max(large_t, key=lambda t: _rank(lstats[t][0]))
        t_min = min(large_t, key=lambda t: -_rank(-lstats[t][0]))
        spread = lstats[t_max][0] - lstats[t_min][0]
        bound = _two_se(lstats[t_max], lstats[t_min])
        text = (f"{large}: at T >= {large_above:g} ({', '.join(f'{t:g}' for t in large_t)}) mean test accuracy "
                f"spans {spread * 100:.2f} points (T={t_min:g} lowest, T={t_max:g} highest)")
        if min(v[2] for v in lstats.values()) < 2:
            lines.append(text + " — one seed, no spread: no conclusion.")
        else:
            large_ok = spread <= bound
            lines.append(text + f", two standard errors of a difference {bound * 100:.2f} → "
                         + ("insensitive to T there (reproduces the remark)." if large_ok else
                            "T still matters there (does not reproduce the remark)."))
    return RemarkCheck(small_ok, large_ok, lines)


def remark_temperatures(result: SweepResult, student: str, alpha: float,
                        small_range: tuple[float, float] = PAPER["small_student_best_T"]) -> tuple[float, float]:
    """The two arms of the small-student remark, chosen on **validation** accuracy (mean over the
    grid's seeds, the development seeds): the best temperature inside ``small_range`` and the
    best one outside it. Raises ``ValueError`` when the grid has none on one side."""
    lo, hi = small_range
    ts = result.temperatures_of(student, alpha)
    inside, outside = [t for t in ts if lo <= t <= hi], [t for t in ts if not lo <= t <= hi]
    if not inside or not outside:
        raise ValueError(f"the grid of {student!r} at alpha={alpha:g} needs temperatures inside and outside "
                         f"[{lo:g}, {hi:g}]; it has {ts}")

    def val(t: float) -> float:
        return _rank(result.mean_std("val_acc", student=student, temperature=t, alpha=alpha, scale_by_t2=True)[0])

    return max(inside, key=val), max(outside, key=val)


def remark_claim(data: Data, teacher: Trained | nn.Module, dev: SweepResult, student: str, alpha: float,
                 seeds: Sequence[int], base_config: TrainConfig, lesson: str, progress: bool | None = None):
    """Hinton et al.'s small-student remark as a :func:`labkd.stats.claim`: the two temperatures
    are chosen on validation with ``dev`` (development seeds), then ``student`` is distilled at
    both on the fresh ``seeds`` (paired: the same seed gives both arms the same start and batch
    order) and the test accuracies are compared. Returns ``(claim, confirmation grid)``."""
    t_in, t_out = remark_temperatures(dev, student, alpha)
    seeds = check_seeds(seeds)
    reused = sorted(set(seeds) & set(dev.seeds))
    if reused:
        raise ValueError(f"seeds {reused} chose the temperatures (development seeds {dev.seeds}); the claim must be "
                         f"confirmed on fresh seeds")
    spec = {student: dev.specs[student]} if student in dev.specs else {student: STUDENTS[student]}
    confirm = run_grid(data, teacher, spec, [t_in, t_out], [alpha], list(seeds), base_config, baseline=False,
                       progress=progress)

    def acc(t: float) -> list[float]:
        return [confirm.values("test_acc", student=student, temperature=t, alpha=alpha, seed=s)[0] for s in seeds]

    c = stats.claim(f"({lesson}) the {student} student distils better at a temperature in 2.5–4 than outside it",
                    treatment=acc(t_in), control=acc(t_out), seeds=list(seeds), expected=+1,
                    treatment_name=f"T = {t_in:g}", control_name=f"T = {t_out:g} (best outside 2.5–4)")
    return c, confirm


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


def gradient_norms_figure(norms: Mapping[str, Sequence[float]], temperatures: Sequence[float]) -> go.Figure:
    """Log-log plot of :func:`soft_gradient_norms` against T."""
    fig = go.Figure()
    for name, values in norms.items():
        fig.add_trace(go.Scatter(x=list(temperatures), y=list(values), mode="lines+markers", name=name))
    fig.update_xaxes(type="log", title="temperature T", tickvals=list(temperatures))
    fig.update_yaxes(type="log", title="‖∂L_soft/∂z‖ per example")
    fig.update_layout(title="Soft-target gradient size at the start of training", height=380)
    return fig


# --------------------------------------------------------------------------------------------
# Figures


_NAMES = {"test_acc": "test accuracy", "val_acc": "validation accuracy", "train_acc": "training accuracy",
          "test_errors": "test errors", "loss": "training loss"}


def _scale(metric: str, percent: bool) -> tuple[float, str]:
    """(factor, axis title) of ``metric``: accuracies in percent when ``percent``."""
    name = _NAMES.get(metric, metric)
    if percent and metric.endswith("_acc"):
        return 100.0, f"{name} (%)"
    return 1.0, name


_BASELINE_STYLES = (("dash", "grey"), ("dot", "black"), ("dashdot", "#8c564b"))


def _add_baselines(fig: go.Figure, result: SweepResult, student: str, metric: str, k: float,
                   label: str = "", extra: Mapping[str, SweepResult] | None = None,
                   row: int | None = None, col: int | None = None, showlegend: bool = True) -> None:
    """The labels-only student of ``result`` (and of each ``extra`` result, e.g. another learning
    rate) as horizontal lines; the first with a ±std band."""
    sources = [(label, result), *(extra or {}).items()]
    kwargs = {} if row is None else {"row": row, "col": col}
    for i, (name, source) in enumerate(sources):
        if not source.select(student=student, baseline=True):
            continue
        mean, std, n = source.baseline_mean_std(student, metric)
        dash, colour = _BASELINE_STYLES[i % len(_BASELINE_STYLES)]
        fig.add_hline(y=mean * k, line_dash=dash, line_color=colour, **kwargs)
        if i == 0 and std > 0:
            fig.add_hrect(y0=(mean - std) * k, y1=(mean + std) * k, fillcolor=colour, opacity=0.15, line_width=0,
                          **kwargs)
        text = "labels only" + (f", {name}" if name else "") + f" ({n} seed{'s' if n > 1 else ''})"
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(dash=dash, color=colour), name=text,
                                 showlegend=showlegend), **kwargs)


def accuracy_vs_temperature_figure(result: SweepResult, student: str, metric: str = "test_acc",
                                   alphas: Sequence[float] | None = None, scale_by_t2: Sequence[bool] = (True,),
                                   percent: bool = True, title: str | None = None, baseline_label: str = "",
                                   extra_baselines: Mapping[str, SweepResult] | None = None) -> go.Figure:
    """``metric`` against T (log axis), one line per alpha (and T² setting), mean ± std over seeds;
    the labels-only baseline is the dashed line with its ±std band (``extra_baselines``, e.g.
    ``{"lr 0.05": other}``, add more labels-only lines)."""
    if student not in result.students:
        raise ValueError(f"student={student!r} is not in this result; expected one of {result.students}")
    k, y_title = _scale(metric, percent)
    series: dict[str, list[list[float]]] = {}
    temps_all: list[float] = sorted({t for s in scale_by_t2 for t in result.temperatures_of(student, None, s)})
    for scaled in scale_by_t2:
        for a in (alphas if alphas is not None else result.alphas_of(student, scaled)):
            temps = result.temperatures_of(student, a, scaled)
            if not temps:
                continue
            name = f"α = {a:g}" + ("" if scaled else ", without T²")
            series[name] = [[v * k for v in result.values(metric, student=student, temperature=t, alpha=a,
                                                        scale_by_t2=scaled)] for t in temps_all]
    if not series:
        raise ValueError(f"no distilled runs of {student!r} match alphas={alphas}, scale_by_t2={scale_by_t2}")
    # lines_with_error_bars needs a value per x; a missing cell is drawn as a gap.
    fig = plots.lines_with_error_bars(temps_all, {n: [v if v else [float("nan")] for v in per_t]
                                                  for n, per_t in series.items()},
                                      x_title="temperature T", y_title=y_title, log_x=True,
                                      title=title or f"{student} student: {_NAMES.get(metric, metric)} against temperature")
    fig.update_xaxes(tickvals=temps_all, ticktext=[_fmt_t(t) for t in temps_all])
    _add_baselines(fig, result, student, metric, k, baseline_label, extra_baselines)
    return fig


def alpha_temperature_heatmap(result: SweepResult, student: str, metric: str = "test_acc",
                              scale_by_t2: bool = True, percent: bool = True) -> go.Figure:
    """Mean ``metric`` over seeds for every (alpha, T) cell; the title gives the labels-only baseline."""
    k, label = _scale(metric, percent)
    temps = result.temperatures_of(student, None, scale_by_t2)
    alphas = result.alphas_of(student, scale_by_t2)
    if not temps or not alphas:
        raise ValueError(f"no distilled runs of {student!r} with scale_by_t2={scale_by_t2} in this result")
    z = np.full((len(alphas), len(temps)), np.nan)
    for i, a in enumerate(alphas):
        for j, t in enumerate(temps):
            values = result.values(metric, student=student, temperature=t, alpha=a, scale_by_t2=scale_by_t2)
            if values:
                z[i, j] = float(np.mean(values)) * k
    title = f"{student}: mean {label} over seeds"
    if result.select(student=student, baseline=True):
        m, s, n = result.baseline_mean_std(student, metric)
        title += f" · labels only {m * k:.2f} ± {s * k:.2f}"
    fig = plots.heatmap(z, [_fmt_t(t) for t in temps], [f"{a:g}" for a in alphas], title=title,
                        colorscale="Viridis", x_title="temperature T", y_title="alpha (weight of soft targets)")
    fig.update_yaxes(autorange=True)
    return fig


def temperature_preference_figure(result: SweepResult, alpha: float, students: Sequence[str] | None = None,
                                  metric: str = "test_acc", percent: bool = True, baseline_label: str = "",
                                  extra_baselines: Mapping[str, SweepResult] | None = None) -> go.Figure:
    """One panel per student: ``metric`` against T at ``alpha`` (mean ± std over seeds), the baseline
    band, and a star on the temperature chosen by :func:`best_temperature` (on validation accuracy)."""
    names = list(students) if students is not None else result.students
    k, y_title = _scale(metric, percent)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.08)
    for col, name in enumerate(names, start=1):
        temps = result.temperatures_of(name, alpha)
        if not temps:
            raise ValueError(f"no runs of {name!r} at alpha={alpha}")
        cells = [result.mean_std(metric, student=name, temperature=t, alpha=alpha, scale_by_t2=True) for t in temps]
        fig.add_trace(go.Scatter(x=temps, y=[m * k for m, _, _ in cells], mode="lines+markers", name=f"distilled, α={alpha:g}",
                                 error_y=dict(type="data", array=[s * k for _, s, _ in cells], visible=True),
                                 line=dict(color="#1f77b4"), showlegend=col == 1), row=1, col=col)
        best = best_temperature(result, name, alpha)
        bm = result.mean_std(metric, student=name, temperature=best.temperature, alpha=alpha, scale_by_t2=True)[0]
        fig.add_trace(go.Scatter(x=[best.temperature], y=[bm * k], mode="markers", marker=dict(symbol="star", size=16,
                                 color="#d62728"), name="best T (chosen on validation)", showlegend=col == 1),
                      row=1, col=col)
        _add_baselines(fig, result, name, metric, k, baseline_label, extra_baselines, row=1, col=col,
                       showlegend=col == 1)
        fig.update_xaxes(type="log", tickvals=temps, ticktext=[_fmt_t(t) for t in temps], title_text="temperature T",
                         row=1, col=col)
    fig.update_yaxes(title_text=y_title, row=1, col=1)
    fig.update_layout(height=400, title=f"Which temperature does each student prefer? (α = {alpha:g})")
    return fig


def mean_curve(result: SweepResult, metric: str = "val_acc", **criteria) -> tuple[list[int], list[float], list[float]]:
    """Epochs, mean and std over seeds of ``metric`` per epoch for the matching rows (diverged runs,
    which have no curve, are left out)."""
    rows = [r for r in result.select(**criteria) if not r.diverged]
    if not rows:
        raise ValueError(f"no rows (that did not diverge) match {criteria}")
    epochs = min(len(r.history) for r in rows)
    per_epoch = [plots.mean_std([r.metric(metric, e) for r in rows]) for e in range(1, epochs + 1)]
    return list(range(1, epochs + 1)), [m for m, _ in per_epoch], [s for _, s in per_epoch]


def learning_curves_figure(result: SweepResult, student: str, cells: Mapping[str, Mapping], metric: str = "val_acc",
                           baseline: bool = True, percent: bool = True, title: str = "") -> go.Figure:
    """Mean ± std over seeds of ``metric`` per epoch for named cells, e.g.
    ``{"T=20 with T²": dict(temperature=20, alpha=0.9, scale_by_t2=True), ...}``, plus the baseline."""
    k, y_title = _scale(metric, percent)
    named = dict(cells)
    if baseline and result.select(student=student, baseline=True):
        named = {"labels only": {"baseline": True}, **named}
    fig = go.Figure()
    for name, criteria in named.items():
        epochs, mean, std = mean_curve(result, metric, student=student, **criteria)
        fig.add_trace(go.Scatter(x=epochs, y=[m * k for m in mean], mode="lines+markers", name=name,
                                 line=dict(dash="dash") if name == "labels only" else None,
                                 error_y=dict(type="data", array=[s * k for s in std], visible=True)))
    fig.update_layout(title=title or f"{student}: {_NAMES.get(metric, metric)} per epoch", xaxis_title="epoch", yaxis_title=y_title,
                      height=400)
    return fig


# --------------------------------------------------------------------------------------------
# Sentences and tables for "What we found" (computed, never typed)


def _pm(mean_std_n: tuple[float, float, int], scale: float = 100.0, digits: int = 2) -> str:
    """A ``(mean, std, n)`` of :meth:`SweepResult.mean_std` through :func:`labkd.stats.pm` (no unit)."""
    mean, std, n = mean_std_n
    return stats.pm(mean, std if n > 1 else None, scale=scale, digits=digits, unit="")


def gain_over_baseline(result: SweepResult, student: str, temperature: float, alpha: float,
                       scale_by_t2: bool = True, baseline: SweepResult | None = None,
                       baseline_label: str = "labels only") -> str:
    """One sentence: the cell's mean test accuracy against the labels-only student's (from
    ``baseline`` if given, e.g. the labels-only runs at another learning rate), and whether the
    difference exceeds two standard errors (nothing is claimed with one seed)."""
    cell = result.mean_std("test_acc", student=student, temperature=temperature, alpha=alpha, scale_by_t2=scale_by_t2)
    base = (baseline if baseline is not None else result).baseline_mean_std(student)
    diff = cell[0] - base[0]
    text = (f"{student}, T={temperature:g}, α={alpha:g}{'' if scale_by_t2 else ' (no T²)'}: test accuracy "
            f"{_pm(cell)}% vs {baseline_label} {_pm(base)}% → {diff * 100:+.2f} points")
    if min(cell[2], base[2]) < 2:
        return text + " (one seed: no spread, so no conclusion)."
    bound = _two_se(cell, base)
    verdict = "larger than" if abs(diff) > bound else "within"
    return text + f", {verdict} two standard errors ({bound * 100:.2f})."


def stronger_baseline(candidates: Mapping[str, SweepResult], student: str,
                      metric: str = "val_acc") -> tuple[str, SweepResult]:
    """Of several results (e.g. ``{"lr 0.02": grid, "lr 0.05": other}``), the one whose labels-only
    ``student`` has the best mean ``metric`` — validation accuracy, so the test set does not choose.
    Comparing distillation with the *better* baseline keeps the comparison honest."""
    having = {k: r for k, r in candidates.items() if r.select(student=student, baseline=True)}
    if not having:
        raise ValueError(f"none of {list(candidates)} has a labels-only run of {student!r}")
    label = max(having, key=lambda k: _rank(having[k].baseline_mean_std(student, metric)[0]))
    return label, having[label]


def best_cell(result: SweepResult, student: str, metric: str = "val_acc",
              scale_by_t2: bool = True) -> tuple[float, float]:
    """(T, alpha) with the highest mean ``metric`` (validation accuracy: not chosen on the test set)."""
    cells = {(r.temperature, r.alpha) for r in result.select(student=student, baseline=False, scale_by_t2=scale_by_t2)}
    if not cells:
        raise ValueError(f"no distilled runs of {student!r} in this result")
    return max(sorted(cells), key=lambda c: _rank(result.mean_std(metric, student=student, temperature=c[0], alpha=c[1],
                                                                  scale_by_t2=scale_by_t2)[0]))


def describe_runs(entries: Sequence[tuple[str, SweepResult, Mapping]]) -> list[str]:
    """One line per ``(label, result, criteria)``: mean test accuracy after the first epoch and at the end."""
    lines = []
    width = max((len(label) for label, _, _ in entries), default=0)
    for label, result, criteria in entries:
        if not result.select(**criteria):
            lines.append(f"{label:<{width}}: not run")
            continue
        rows = result.select(**criteria)
        bad = sum(r.diverged for r in rows)
        if bad == len(rows):
            lines.append(f"{label:<{width}}: diverged (NaN loss) in every run ({bad})")
            continue
        ok = SweepResult([r for r in rows if not r.diverged])
        first = ok.mean_std("test_acc", epoch=1, scale_by_t2=None)
        last = ok.mean_std("test_acc", scale_by_t2=None)
        note = f"; diverged (NaN loss) in {bad} of {len(rows)} runs" if bad else ""
        lines.append(f"{label:<{width}}: test accuracy after epoch 1 {_pm(first)}%, at the end {_pm(last)}%{note}")
    return lines


def describe_t2_ablation(result: SweepResult, student: str, temperature: float, alpha: float) -> list[str]:
    """How the cell (T, alpha) learns with and without the T² factor, beside the labels-only student."""
    cell = dict(student=student, temperature=temperature, alpha=alpha)
    return describe_runs([
        (f"{student} labels only", result, dict(student=student, baseline=True)),
        (f"{student} T={temperature:g}, α={alpha:g}, with T²", result, {**cell, "scale_by_t2": True}),
        (f"{student} T={temperature:g}, α={alpha:g}, without T²", result, {**cell, "scale_by_t2": False}),
    ])


def findings(result: SweepResult, alpha: float = 0.9, temperature: float = 20.0, large: str = "800-800",
             small: str = "30-30", extra_baselines: Mapping[str, SweepResult] | None = None,
             baseline_label: str = "") -> list[dict]:
    """The lesson's summary table: our mean ± std test accuracy and errors beside the paper's errors.

    Rows: each student's labels-only run (and those of ``extra_baselines``, e.g.
    ``{"lr 0.05": other}``), the large student at the paper's setting (``temperature``, ``alpha``;
    the nearest ones run if absent), the same without T² (if run), and each student's best cell
    chosen on validation accuracy.
    """
    rows: list[dict] = []

    def add(label: str, paper: object, source: SweepResult = result, **criteria) -> None:
        if not source.select(**criteria):
            return
        acc = source.mean_std("test_acc", **criteria)
        err = source.mean_std("test_errors", **criteria)
        rows.append({"run": label, "test accuracy (%)": _pm(acc),
                     "test errors": _pm(err, scale=1, digits=0),
                     "seeds": acc[2], "paper: test errors": paper})

    for name in (large, small):
        if name not in result.students:
            continue
        add(f"{name}, labels only" + (f", {baseline_label}" if baseline_label else ""),
            PAPER["labels_only_errors"] if name == large else "—", student=name, baseline=True)
        for label, other in (extra_baselines or {}).items():
            add(f"{name}, labels only, {label}", "—", other, student=name, baseline=True)
        if name == large:
            temps, alphas = result.temperatures_of(name), result.alphas_of(name)
            if temps and alphas:
                t = min(temps, key=lambda v: abs(math.log(v / temperature)))
                a = min(alphas, key=lambda v: abs(v - alpha))
                paper = PAPER["distilled_errors"] if t == PAPER["distilled_temperature"] else "—"
                add(f"{name}, T={t:g}, α={a:g}", paper, student=name, temperature=t, alpha=a)
                add(f"{name}, T={t:g}, α={a:g}, no T²", "—", student=name, temperature=t, alpha=a,
                    scale_by_t2=False)
        if result.alphas_of(name):
            t, a = best_cell(result, name)
            add(f"{name}, best on val: T={t:g}, α={a:g}", "—", student=name, temperature=t, alpha=a)
    return rows


def describe_learning_rates(results: Mapping[str, SweepResult], temperature: float, alpha: float,
                            students: Sequence[str] | None = None) -> list[str]:
    """For each student, the labels-only run and the cell (T, alpha) of every result (e.g. one per
    learning rate, ``{"lr 0.02": grid, "lr 0.05": other}``): test accuracy after epoch 1 and at the end."""
    names = list(students) if students is not None else list(dict.fromkeys(
        s for r in results.values() for s in r.students))
    entries: list[tuple[str, SweepResult, Mapping]] = []
    for name in names:
        for label, result in results.items():
            entries.append((f"{name} labels only, {label}", result, dict(student=name, baseline=True)))
        for label, result in results.items():
            entries.append((f"{name} T={temperature:g}, α={alpha:g}, {label}", result,
                            dict(student=name, temperature=temperature, alpha=alpha)))
    return describe_runs(entries)
