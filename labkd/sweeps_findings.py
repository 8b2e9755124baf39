r"""Lesson 02's judgements on a temperature grid (:mod:`labkd.sweeps`): which temperature is best,
does the grid reproduce Hinton et al.'s remark on temperature and student size (§3), and the
sentences and tables of "What we found" — all computed from the runs, never typed.

>>> best_temperature(result, "30-30", alpha=0.9).describe()
>>> check_temperature_remark(result, alpha=0.9)           # small student: moderate T; large: T >= 8 alike
>>> claim, grid = remark_claim(data, teacher, dev, "30-30", 0.9, seeds=[100, 101, 102, 103, 104], ...)
>>> findings(result)                                      # the lesson's summary rows
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from labkd import stats
from labkd.data import Data
from labkd.experiments import Trained
from labkd.sweeps import PAPER, STUDENTS, SweepResult, check_seeds, format_temperature, nan_last, run_grid
from labkd.train import TrainConfig


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
        close = ", ".join(format_temperature(t) for t in self.close)
        seeds = ", ".join(f"seed {seed}: T={format_temperature(t)}" for seed, t in self.per_seed_best.items())
        if n < 2:
            return (f"{self.student} (α={self.alpha:g}): best T = {format_temperature(self.temperature)} by {self.metric} "
                    f"({m * k:.2f}{u}; {self.report} {rm * k:.2f}{u}) — one seed, so no spread to judge it by.")
        return (f"{self.student} (α={self.alpha:g}): best T = {format_temperature(self.temperature)} by {self.metric} "
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
    best = max(temps, key=lambda t: (nan_last(sign * per_t[t][0]), -t))
    bm, bs, _ = per_t[best]
    close = [t for t in temps if abs(per_t[t][0] - bm) <= math.hypot(bs, per_t[t][1]) + 1e-12]
    per_seed: dict[int, float] = {}
    for seed in result.seeds:
        scores = {t: result.values(metric, temperature=t, seed=seed, **crit) for t in temps}
        scores = {t: v[0] for t, v in scores.items() if v}
        if scores:
            per_seed[seed] = max(scores, key=lambda t: (nan_last(sign * scores[t]), -t))
    return TemperatureChoice(student, float(alpha), metric, report, best, per_t, reported, close, per_seed)


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
        t_in = max(inside, key=lambda t: nan_last(sstats[t][0]))
        t_out = max(outside, key=lambda t: nan_last(sstats[t][0]))
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
        t_max = max(large_t, key=lambda t: nan_last(lstats[t][0]))
        t_min = min(large_t, key=lambda t: -nan_last(-lstats[t][0]))
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
        return nan_last(result.mean_std("val_acc", student=student, temperature=t, alpha=alpha, scale_by_t2=True)[0])

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
    label = max(having, key=lambda k: nan_last(having[k].baseline_mean_std(student, metric)[0]))
    return label, having[label]


def best_cell(result: SweepResult, student: str, metric: str = "val_acc",
              scale_by_t2: bool = True) -> tuple[float, float]:
    """(T, alpha) with the highest mean ``metric`` (validation accuracy: not chosen on the test set)."""
    cells = {(r.temperature, r.alpha) for r in result.select(student=student, baseline=False, scale_by_t2=scale_by_t2)}
    if not cells:
        raise ValueError(f"no distilled runs of {student!r} in this result")
    return max(sorted(cells), key=lambda c: nan_last(result.mean_std(metric, student=student, temperature=c[0], alpha=c[1],
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
            lines.append(f"{label:<{width}}: diverged in all {bad} runs (training stopped)")
            continue
        ok = SweepResult([r for r in rows if not r.diverged])
        first = ok.mean_std("test_acc", epoch=1, scale_by_t2=None)
        last = ok.mean_std("test_acc", scale_by_t2=None)
        note = f"; diverged in {bad} of {len(rows)} runs" if bad else ""
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
