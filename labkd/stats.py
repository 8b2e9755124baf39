r"""Shared statistics of the course: mean ± standard error, paired differences and the "shown" verdict.

Every lesson that makes a claim ("hints + KD beat KD alone", "an early-stopped teacher teaches
better") records it through this module, so all lessons use one rule:

- the regime is chosen on the **validation** split with development seeds;
- the final comparison runs on at least :data:`MIN_SEEDS` **fresh, paired** seeds: for each seed
  the two arms start from the same initial weights and see the same batch order;
- Δ is the mean of the per-seed differences (treatment − control) and SE its standard error,
  :math:`\mathrm{SE} = s_\Delta / \sqrt{n}`;
- the claim is **shown** when Δ has the paper's sign and :math:`|\Delta| > 2\,\mathrm{SE}`.

>>> c = claim("hints + KD beat KD alone (deep thin student)", treatment=[0.91, 0.93, 0.90, 0.92, 0.94],
...           control=[0.85, 0.86, 0.84, 0.88, 0.85], seeds=[100, 101, 102, 103, 104])
>>> c.shown, round(c.delta, 3)
(True, 0.064)
>>> print(c.verdict)

:func:`labkd.results.record_claim` writes a claim into the notebook's results, from where
``labkd run`` collects it into ``reports/results.json`` and the "shown?" column of
``reports/results.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

#: The fewest paired seeds a claim needs before it can count as shown.
MIN_SEEDS = 5
#: How many standard errors the mean paired difference must exceed.
SE_MULTIPLE = 2.0


def _as_array(values: object, argument: str) -> np.ndarray:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        if hasattr(values, "tolist"):  # a torch tensor
            values = values.tolist()
        else:
            raise TypeError(f"{argument} must be a sequence of numbers, got {type(values).__name__}")
    try:
        array = np.asarray(list(values), dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{argument} must hold numbers only: {error}") from None
    if array.ndim != 1:
        raise ValueError(f"{argument} must be a flat list of numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{argument} holds a NaN or infinite value: {array.tolist()}")
    return array


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / √n; NaN for a single value)."""
    a = _as_array(values, "values")
    if a.size == 0:
        raise ValueError("values is empty: nothing to average")
    se = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else float("nan")
    return float(a.mean()), se


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value): the seed *spread*."""
    a = _as_array(values, "values")
    if a.size == 0:
        raise ValueError("values is empty: nothing to average")
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def pm(mean: float, spread: float | None = None, scale: float = 100.0, digits: int = 2, unit: str = "%") -> str:
    """``"97.42 ± 0.19 %"``: the one mean ± spread formatter of the course.

    ``scale`` multiplies both numbers (100 turns accuracies into percent); a missing or NaN
    ``spread`` prints the mean alone (one seed)."""
    text = f"{mean * scale:.{digits}f}"
    if spread is not None and math.isfinite(spread):
        text += f" ± {spread * scale:.{digits}f}"
    return text + (f" {unit}" if unit else "")


def pm_values(values: Sequence[float], scale: float = 100.0, digits: int = 2, unit: str = "%",
              spread: str = "std") -> str:
    """:func:`pm` of a list of per-seed values; ``spread`` is ``"std"`` (seed spread) or ``"se"``."""
    if spread not in ("std", "se"):
        raise ValueError(f"spread must be 'std' or 'se', got {spread!r}")
    mean, s = mean_std(values) if spread == "std" else mean_se(values)
    return pm(mean, s if len(values) > 1 else None, scale, digits, unit)


@dataclass(frozen=True)
class Paired:
    """Per-seed differences ``treatment − control`` and their mean ± standard error."""

    diffs: tuple[float, ...]
    seeds: tuple[int, ...]
    delta: float
    se: float

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def wins(self) -> int:
        """Seeds on which the treatment came out ahead."""
        return sum(d > 0 for d in self.diffs)


def paired(treatment: Sequence[float], control: Sequence[float], seeds: Sequence[int] | None = None) -> Paired:
    """The mean paired difference of two arms run on the same seeds (same order)."""
    a, b = _as_array(treatment, "treatment"), _as_array(control, "control")
    if a.size != b.size:
        raise ValueError(f"treatment and control must be paired seed by seed: got {a.size} and {b.size} values")
    if a.size == 0:
        raise ValueError("treatment and control are empty: nothing to compare")
    seeds = list(range(a.size)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != a.size:
        raise ValueError(f"seeds must give one seed per pair: {len(seeds)} seeds for {a.size} pairs")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds has repeats: {seeds}")
    d = a - b
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")
    return Paired(tuple(float(x) for x in d), tuple(seeds), float(d.mean()), se)


@dataclass(frozen=True)
class Claim:
    """One headline claim of a lesson and what the measurements say about it.

    ``delta``/``se`` are in the units of the values (accuracies: fractions); ``expected`` is the
    paper's sign (+1: the treatment should be higher, -1: lower, 0: any difference counts).
    ``shown`` follows the rule of this module; ``verdict`` says it in words.
    """

    claim: str
    delta: float
    se: float
    seeds: list[int]
    shown: bool
    expected: int = 1
    treatment: str = "treatment"
    control: str = "control"
    treatment_mean: float = float("nan")
    control_mean: float = float("nan")
    wins: int = 0
    metric: str = "test accuracy"
    scale: float = 100.0
    unit: str = "points"
    verdict: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The record ``labkd run`` keeps: claim, delta, se, seeds, shown (and the details)."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
        return out

    def row(self) -> dict:
        """A display row: claim, Δ ± SE, wins, seeds, shown?"""
        return {"claim": self.claim,
                "Δ ± SE": f"{self.delta * self.scale:+.2f} ± {self.se * self.scale:.2f} {self.unit}"
                if math.isfinite(self.se) else f"{self.delta * self.scale:+.2f} {self.unit}",
                "wins": f"{self.wins}/{len(self.seeds)}",
                "seeds": ", ".join(map(str, self.seeds)),
                "shown?": "yes" if self.shown else "no"}


def verdict_of(delta: float, se: float, n: int, expected: int = 1) -> tuple[bool, str]:
    """(shown, reason): the course's rule, with the reason it failed when it did."""
    if expected not in (-1, 0, 1):
        raise ValueError(f"expected must be +1, -1 or 0 (the paper's sign), got {expected!r}")
    if n < MIN_SEEDS:
        return False, f"only {n} paired seed{'s' if n != 1 else ''} (a claim needs at least {MIN_SEEDS})"
    if not math.isfinite(se):
        return False, "no standard error"
    if expected != 0 and math.copysign(1, delta) != expected or delta == 0:
        return False, "the difference has the opposite sign to the paper's" if delta != 0 else "no difference"
    if abs(delta) <= SE_MULTIPLE * se:
        return False, f"|Δ| is within {SE_MULTIPLE:g} standard errors"
    return True, f"|Δ| exceeds {SE_MULTIPLE:g} standard errors with the paper's sign" if expected else \
        f"|Δ| exceeds {SE_MULTIPLE:g} standard errors"


def claim(what: str, treatment: Sequence[float], control: Sequence[float], seeds: Sequence[int],
          expected: int = 1, treatment_name: str = "treatment", control_name: str = "control",
          metric: str = "test accuracy", scale: float = 100.0, unit: str = "points", **extra) -> Claim:
    """Judge a claim from paired per-seed values (``treatment[i]`` and ``control[i]`` ran on
    ``seeds[i]``). ``expected`` is the paper's sign of ``treatment − control``; ``scale`` and
    ``unit`` only change how the verdict prints (100 and "points" for accuracies)."""
    if not isinstance(what, str) or not what.strip():
        raise ValueError(f"what must name the claim, got {what!r}")
    p = paired(treatment, control, seeds)
    shown, reason = verdict_of(p.delta, p.se, p.n, expected)
    t_mean, c_mean = float(np.mean(treatment)), float(np.mean(control))
    se_text = f"{p.se * scale:.2f}" if math.isfinite(p.se) else "n/a"
    sentence = (f"{treatment_name} {t_mean * scale:.2f} vs {control_name} {c_mean * scale:.2f} ({metric}): "
                f"Δ = {p.delta * scale:+.2f} ± {se_text} {unit} (mean paired difference ± SE) over {p.n} "
                f"seeds, ahead on {p.wins}/{p.n}. ")
    sentence += ("SHOWN: " if shown else "NOT SHOWN: ") + reason + "."
    return Claim(claim=what, delta=p.delta, se=p.se, seeds=list(p.seeds), shown=shown, expected=expected,
                 treatment=treatment_name, control=control_name, treatment_mean=t_mean, control_mean=c_mean,
                 wins=p.wins, metric=metric, scale=scale, unit=unit, verdict=sentence, extra=dict(extra))


def claims_table(claims: Sequence[Claim]):
    """A plotly table of claims (one row each) for "What we found"."""
    from labkd.plots import comparison_table

    if not claims:
        raise ValueError("claims is empty: nothing to tabulate")
    return comparison_table([c.row() for c in claims])


def fresh_seeds(first: int, n: int = MIN_SEEDS, development: Sequence[int] = ()) -> list[int]:
    """``n`` consecutive seeds from ``first`` that are not development seeds (raises if they overlap)."""
    if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or first < 0:
        raise ValueError(f"first must be a non-negative integer seed, got {first!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    seeds = list(range(int(first), int(first) + int(n)))
    overlap = sorted(set(seeds) & {int(s) for s in development})
    if overlap:
        raise ValueError(f"seeds {overlap} were used to choose the regime (development seeds {sorted(development)}); "
                         f"a claim must be confirmed on fresh seeds: pick another first seed")
    return seeds


def same_start(norms: Mapping[object, Sequence[float]], what: str = "weight norm") -> list[str]:
    """Sentences proving paired runs started alike: for each group (e.g. a seed), the weight
    fingerprints (``what``, e.g. first-layer norms before training) of its runs must be identical."""
    out = []
    for group, values in norms.items():
        values = [float(v) for v in values]
        if not values:
            raise ValueError(f"group {group!r} has no runs")
        same = max(values) == min(values)
        out.append(f"{group}: {len(values)} runs start with {what} "
                   + (f"{values[0]:.6f} (identical)" if same
                      else f"{min(values):.6f}..{max(values):.6f} (NOT identical)"))
    return out


def summarize(rows: Sequence[Mapping], by: Sequence[str], metric: str = "test_acc") -> list[dict]:
    """Per group of the ``by`` columns of tidy ``rows`` (one dict per run): ``metric``'s ``mean``,
    seed spread ``std`` (:func:`mean_std`), ``n`` and ``values``, groups in first-seen order.
    Rows without ``metric`` are skipped; a ``by`` column missing from a row is a ``KeyError``."""
    if not rows:
        raise ValueError("rows is empty: nothing to summarize")
    absent = [k for k in by if not all(k in r for r in rows)]
    if absent or all(metric not in r for r in rows):
        known = sorted({str(k) for r in rows for k in r if not str(k).startswith("_")})
        raise KeyError(f"rows have no column(s) {absent or [metric]}; columns are {known}")
    values: dict[tuple, list[float]] = {}
    for r in (r for r in rows if metric in r):
        values.setdefault(tuple(r[k] for k in by), []).append(float(r[metric]))
    out = []
    for key, vs in values.items():
        mean, std = mean_std(vs)
        out.append(dict(zip(by, key, strict=True)) | {"mean": mean, "std": std, "n": len(vs), "values": vs})
    return out


def compare(a: Sequence[float], b: Sequence[float], name_a: str = "A", name_b: str = "B") -> dict:
    """Two *unpaired* groups of seeds: is ``mean(a) - mean(b)`` beyond twice its standard error
    :math:`\\sqrt{s_a^2/n_a + s_b^2/n_b}`? Returns ``difference``, ``standard_error``,
    ``significant`` (needs two seeds a side) and ``verdict``, a sentence. For arms run on the same
    seeds, prefer the paired :func:`claim`."""
    x, y = _as_array(list(a), "a"), _as_array(list(b), "b")
    if not (x.size and y.size):
        raise ValueError("compare needs at least one value on each side")
    diff = float(x.mean() - y.mean())
    pair = f"{name_a} {x.mean():.2%} vs {name_b} {y.mean():.2%}"
    if min(x.size, y.size) < 2:
        return {"difference": diff, "standard_error": float("nan"), "significant": False,
                "verdict": f"{pair} ({diff * 100:+.2f} points) from a single seed: no claim either way — run more "
                           f"seeds (fast=False)."}
    se = math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
    significant = abs(diff) > SE_MULTIPLE * se
    over = f"over {x.size} and {y.size} seeds"
    if significant:
        winner = name_a if diff > 0 else name_b
        verdict = (f"{winner} is better by {abs(diff) * 100:.2f} points ({pair}); that is more than twice the "
                   f"standard error ({se * 100:.2f}) {over}.")
    else:
        verdict = (f"{pair}: the difference ({diff * 100:+.2f} points) is within twice the standard error "
                   f"({se * 100:.2f}) {over} — no clear winner.")
    return {"difference": diff, "standard_error": float(se), "significant": bool(significant), "verdict": verdict}
