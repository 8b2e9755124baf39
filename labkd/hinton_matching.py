r"""Lesson 06, section 4: at a high temperature, soft targets become logit matching (Hinton et al. 2015, §2.1).

For zero-mean logits and a high temperature the soft-target gradient

.. math::
    \frac{\partial\, T^2\mathrm{KL}}{\partial z_i} = T\,(q_i - p_i)
    \;\approx\; \frac{1}{N}\big((z_i - \bar z) - (v_i - \bar v)\big)

becomes the gradient of Caruana/Bucila logit matching, :math:`\frac{1}{2N}\sum_i (z_i - v_i)^2`
(``N`` classes, student logits :math:`z`, teacher logits :math:`v`). :func:`gradient_agreement`
measures it on fixed logits; :func:`matching_study` trains students both ways and compares them;
:func:`matching_claim` judges "the high-temperature students are closer to logit matching" with
the course's paired-seed rule (:mod:`labkd.stats`).

The input checks at the top are shared with :mod:`labkd.hinton` (which re-exports this module's
public names, so ``hinton.matching_study`` keeps working).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from labkd import metrics, parallel, stats, sweeps
from labkd.data import Data
from labkd.experiments import Trained
from labkd.losses import check_pair, check_temperature
from labkd.progress import progress_bar
from labkd.train import TrainConfig

#: The students of section 3 (the temperature remark); section 4 uses the 300-300 one.
SMALL_STUDENTS = {"300-300": {"arch": "mlp", "hidden": (300, 300)}, "30-30": {"arch": "small_student"}}
#: Method names of section 4.
LOGIT_MATCHING = "logit matching"
SOFT_TARGETS = "soft targets"
COLOURS = {"teacher": "#7f7f7f", "baseline": "#d62728", "distilled": "#1f77b4", "matching": "#2ca02c",
           "paper": "#000000"}


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
        raise TypeError(f"base_config must be a labkd.TrainConfig (see hinton.RECIPES), got {type(config).__name__}")
    return config



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
        """Mean ± std over seeds per temperature (:func:`labkd.stats.pm_values`): test errors and
        agreement with the logit-matching student."""
        out = []
        for t in self.temperatures:
            rows = [r for r in self.rows if r["temperature"] == t]
            out.append({"T": f"{t:g}",
                        "soft-target student: test errors": _pm([r["test_errors"] for r in rows], 1, 1, ""),
                        "predicts the same class as logit matching (%)": _pm([r["agreement"] for r in rows], 100, 2, ""),
                        "correlation of zero-meaned logits": _pm([r["logit_correlation"] for r in rows], 1, 3, ""),
                        "seeds": len(rows)})
        lm = [r["lm_test_errors"] for r in self.rows if r["temperature"] == self.temperatures[0]]
        out.append({"T": "—", "soft-target student: test errors": f"logit matching: {_pm(lm, 1, 1, '')}",
                    "predicts the same class as logit matching (%)": "100", "correlation of zero-meaned logits": "1",
                    "seeds": len(lm)})
        return out

    def per_seed(self, key: str, temperature: float) -> list[float]:
        """``key`` (a row column such as ``"logit_correlation"``) at ``temperature``, one value per seed in
        ``seeds`` order."""
        if temperature not in self.temperatures:
            raise ValueError(f"temperature={temperature!r} was not run; the study has {self.temperatures}")
        if not self.rows or key not in self.rows[0]:
            raise KeyError(f"{key!r} is not a column of the rows; expected one of {sorted(self.rows[0]) if self.rows else []}")
        return [next(r[key] for r in self.rows if r["temperature"] == temperature and r["seed"] == s) for s in self.seeds]


def _pm(values: Sequence[float], scale: float, digits: int, unit: str) -> str:
    """Mean ± std over seeds, the mean alone when all seeds agree (:func:`labkd.stats.pm_values`)."""
    if len(set(values)) == 1:
        return stats.pm_values(values[:1], scale, digits, unit)
    return stats.pm_values(values, scale, digits, unit)


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
    their zero-meaned logits. Default student: 300-300. The students not in the cache yet train first
    in ``LABKD_WORKERS`` processes (:mod:`labkd.parallel`; the same weights)."""
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

    def run(seed: int, t: float | None) -> parallel.Run:
        """The logit-matching student of ``seed`` (``t`` None), or its soft-target student at ``t``."""
        if t is None:
            return parallel.Run(arch, base_config.replace(loss="logit_matching", seed=seed), teacher=teacher,
                                label=f"lesson 06 {name} logit matching seed={seed}", **spec)
        return parallel.Run(arch, base_config.replace(loss="soft_target", temperature=t, alpha=1.0, seed=seed),
                            teacher=teacher, label=f"lesson 06 {name} soft targets T={t:g} seed={seed}", **spec)

    parallel.train_runs(data, [run(seed, t) for seed in seed_list for t in [None, *temps]], progress=progress)
    teacher_test = metrics.predict_logits(teacher.model, data.test.x)
    runs = progress_bar(len(seed_list) * (len(temps) + 1), "students", progress=progress, leave=True)
    models: dict[tuple[str, float | None, int], Trained] = {}
    rows: list[dict] = []
    try:
        for seed in seed_list:
            runs.set_description(f"{name} logit matching seed {seed}")
            lm = run(seed, None).train(data)
            runs.update(1)
            models[(LOGIT_MATCHING, None, seed)] = lm
            lm_logits = metrics.predict_logits(lm.model, data.test.x)
            lm_errors = metrics.error_count(lm_logits, data.test.y)
            for t in temps:
                runs.set_description(f"{name} soft targets T={t:g} seed {seed}")
                kd = run(seed, t).train(data)
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


def matching_claim(result: MatchingResult) -> stats.Claim:
    """§2.1 as a claim (:func:`labkd.stats.claim`): the soft-target student at the highest temperature
    is closer to the logit-matching student of its seed (correlation of zero-meaned test logits) than
    the one at the lowest temperature. Paired by seed: all students of a seed start alike. Nothing
    is chosen on the data (the prediction is the paper's), so the study's seeds confirm it directly."""
    if not isinstance(result, MatchingResult):
        raise TypeError(f"result must be a MatchingResult (from matching_study), got {type(result).__name__}")
    lo, hi = result.temperatures[0], result.temperatures[-1]
    if lo == hi:
        raise ValueError(f"result has one temperature (T = {lo:g}); the claim compares the lowest with the highest")
    return stats.claim(f"(06) at T = {hi:g} soft targets train nearly the logit-matching student (§2.1), "
                       f"more so than at T = {lo:g}",
                       treatment=result.per_seed("logit_correlation", hi),
                       control=result.per_seed("logit_correlation", lo), seeds=result.seeds, expected=+1,
                       treatment_name=f"T = {hi:g}", control_name=f"T = {lo:g}",
                       metric="correlation ×100 of zero-meaned test logits with the logit-matching student",
                       scale=100.0, unit="(×100)")


def matching_findings(result: MatchingResult) -> list[str]:
    """What section 4 measured, in words: where the soft-target students agree most with logit
    matching, then the verdict of :func:`matching_claim`."""
    means = {t: {k: float(np.mean(result.per_seed(k, t))) for k in ("agreement", "logit_correlation", "test_errors")}
             for t in result.temperatures}
    lo, hi = result.temperatures[0], result.temperatures[-1]
    if lo == hi:
        return [f"Only one temperature (T = {lo:g}) was run: nothing to compare."]
    lines = [f"T = {t:g}: the soft-target student predicts the same class as the logit-matching student on "
             f"{means[t]['agreement']:.2%} of the test images; their zero-meaned logits correlate at "
             f"{means[t]['logit_correlation']:.3f}; {means[t]['test_errors']:.0f} test errors."
             for t in result.temperatures]
    lines.append(matching_claim(result).verdict)
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
        s = [stats.mean_std([r[key] * k for r in result.rows if r["temperature"] == t]) for t in temps]
        return [m for m, _ in s], [d for _, d in s]

    m, s = stat("test_errors")
    fig.add_trace(go.Scatter(x=temps, y=m, error_y=dict(type="data", array=s, visible=True), mode="lines+markers",
                             name="soft targets (T²·KL, no labels)", line=dict(color=COLOURS["distilled"])), row=1, col=1)
    lm, lm_s = stats.mean_std([r["lm_test_errors"] for r in result.rows if r["temperature"] == temps[0]])
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
