r"""Distilling an ensemble into one network (Hinton, Vinyals & Dean 2015, §4).

Lesson 08 trains several networks of the same architecture that differ only in their random seed,
averages their predictions, and distils that ensemble into a single network of the same size:

>>> ens = train_ensemble(data, seeds=[0, 1, 2, 3, 4], config=teacher_config(fast))
>>> ensemble_rows(ens)                          # each member and the ensemble, on the test set
>>> rows = distil_ensemble(data, ens, kd_config(fast), methods=("arithmetic", "geometric"), seeds=[100])

Two ways to average K members' soft targets at temperature T (see :func:`labkd.losses.ensemble_probs`):

.. math::
    p^{\mathrm{arith}} = \frac1K \sum_k \mathrm{softmax}(z_k/T), \qquad
    p^{\mathrm{geo}} \propto \exp\Big(\frac1K \sum_k \log \mathrm{softmax}(z_k/T)\Big)
    = \mathrm{softmax}\Big(\frac{\bar z}{T}\Big).

Every result is a *tidy row* (a dict) with the seed in a column; :func:`labkd.teacher_studies.summarize`
and :func:`labkd.teacher_studies.compare` turn rows into mean ± std and verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor

from labkd import metrics
from labkd.checks import check_hidden, check_seeds
from labkd.data import Data
from labkd.experiments import Trained, train_model
from labkd.losses import ENSEMBLE_METHODS, check_alpha, check_temperature, ensemble_logits, ensemble_probs
from labkd.progress import RunProgress
from labkd.teacher_studies import check_config, compare, first_layer_norm, mlp_name, summarize
from labkd.train import TrainConfig

#: Every member and every student: two hidden layers of 128 units (a 784-128-128-10 MLP on MNIST).
#: Members of 512 units were tried: each makes ~1.6 % errors and five of them fix only ~6 % of
#: those, too little to see what a student keeps; 128-unit members leave the ensemble more to do.
HIDDEN = (128, 128)
#: Distillation settings: Hinton's loss at T = 2 with 90 % weight on the soft targets (one exploratory
#: run with seed 100 gave 190, 193 and 217 test errors at T = 2, 4 and 8; the difference between 2
#: and 4 is within the seed spread, 8 was clearly worse).
TEMPERATURE = 2.0
ALPHA = 0.9
#: Learning rate of members *and* students, so the two recipes differ only in the loss. At the
#: course's usual 0.05 a 512-unit student distilled at T = 4 diverged (NaN) in the first epoch.
LR = 0.02
STUDENT_LR = LR
#: Names used in the rows' ``model`` column.
SINGLE = "single model"
ENSEMBLE = "ensemble"
COLOURS = {"member": "#7f7f7f", "arithmetic": "#1f77b4", "geometric": "#ff7f0e", "ensemble": "#2ca02c"}


def teacher_config(fast: bool, seed: int = 0) -> TrainConfig:
    """Recipe of each ensemble member (and of the labels-only single model): SGD + Nesterov at
    lr :data:`LR`, cosine schedule, no augmentation; 10 epochs (2 in fast mode). About 10 s per
    128-unit member on MNIST on one quiet core."""
    return TrainConfig(epochs=2 if fast else 10, batch_size=128, lr=LR, jitter=0, seed=seed)


def kd_config(fast: bool, temperature: float = TEMPERATURE, alpha: float = ALPHA, lr: float = STUDENT_LR,
              seed: int = 0) -> TrainConfig:
    """The distilled student's recipe: the members' recipe with the distillation loss at
    ``temperature`` and ``alpha`` and learning rate ``lr`` (same epochs, same batch size)."""
    check_temperature(temperature)
    check_alpha(alpha)
    return teacher_config(fast, seed).replace(loss="distillation", temperature=float(temperature),
                                              alpha=float(alpha), lr=float(lr))


# --------------------------------------------------------------------------------------------
# The ensemble


@dataclass
class Ensemble:
    """K trained members of one architecture and their logits on the training and test splits.

    ``train_logits`` (K, N_train, C) and ``test_logits`` (K, N_test, C) are computed once, so
    combining the members costs no forward pass.
    """

    data: Data
    hidden: tuple[int, ...]
    members: list[Trained]
    seeds: list[int]
    train_logits: Tensor
    test_logits: Tensor
    rows: list[dict] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.members)

    def targets(self, method: str = "arithmetic", temperature: float = TEMPERATURE, size: int | None = None) -> Tensor:
        """Logits (N_train, C) whose softmax at ``temperature`` is the combined soft target of the
        first ``size`` members (all by default): what the distilled student is trained on."""
        return ensemble_logits(self._first(self.train_logits, size), temperature, _check_method(method))

    def test_probs(self, method: str = "arithmetic", size: int | None = None) -> Tensor:
        """The ensemble's predicted probabilities (N_test, C) at T = 1, from the first ``size`` members."""
        return ensemble_probs(self._first(self.test_logits, size), 1.0, _check_method(method))

    def _first(self, logits: Tensor, size: int | None) -> Tensor:
        if size is None:
            return logits
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= self.size:
            raise ValueError(f"size must be an integer in 1..{self.size} (members in this ensemble), got {size!r}; "
                             f"an ensemble needs at least one member")
        return logits[:size]


def _pm(stat: dict) -> str:
    """``mean ± std`` of a :func:`labkd.teacher_studies.summarize` group, in percent."""
    return f"{stat['mean']:.2%} ± {stat['std'] * 100:.2f}" if stat["n"] > 1 else f"{stat['mean']:.2%}"


def _check_method(method: str) -> str:
    if method not in ENSEMBLE_METHODS:
        raise ValueError(f"method={method!r} is unknown; expected one of {ENSEMBLE_METHODS}")
    return method


def _check_methods(methods: Sequence[str]) -> list[str]:
    if isinstance(methods, str):
        methods = [methods]
    out = [_check_method(m) for m in methods]
    if not out:
        raise ValueError(f"methods is empty; give at least one of {ENSEMBLE_METHODS}")
    return out


def train_ensemble(data: Data, seeds: Sequence[int], config: TrainConfig, hidden: Sequence[int] = HIDDEN,
                   progress: bool | None = None) -> Ensemble:
    """Train one MLP per seed with ``config`` (its seed replaced), cached, and collect their logits.

    Rows (``ensemble.rows``): ``model`` = :data:`SINGLE`, ``seed``, ``test_acc``, ``test_errors``.
    Raises ValueError for an empty ``seeds`` (an ensemble of size 0) before any training.
    """
    if not isinstance(seeds, (list, tuple, range)) or len(seeds) == 0:
        raise ValueError(f"seeds must list at least one seed (one per ensemble member), got {seeds!r}: "
                         f"an ensemble of size 0 has no predictions to average")
    seeds = check_seeds(seeds)
    hidden = check_hidden(hidden)
    check_config(config, "config", loss="cross_entropy")
    runs = RunProgress(len(seeds), "ensemble members", progress, None)
    members, train_logits, test_logits, rows = [], [], [], []
    for s in seeds:
        trained = train_model("mlp", data, config.replace(seed=s), hidden=hidden, progress=False,
                              label=f"ensemble member {mlp_name(hidden, data)} seed={s} on {data.name}")
        members.append(trained)
        train_logits.append(metrics.predict_logits(trained.model, data.train.x))
        test = metrics.predict_logits(trained.model, data.test.x)
        test_logits.append(test)
        rows.append({"model": SINGLE, "seed": s, "test_acc": metrics.accuracy(test, data.test.y),
                     "test_errors": metrics.error_count(test, data.test.y), "cached": trained.cached})
        runs.step(f"seed {s}")
    runs.close()
    return Ensemble(data, hidden, members, seeds, torch.stack(train_logits), torch.stack(test_logits), rows)


def ensemble_rows(ensemble: Ensemble, methods: Sequence[str] = ENSEMBLE_METHODS) -> list[dict]:
    """The ensemble itself on the test set, once per averaging method: rows with ``model`` =
    ``"ensemble (arithmetic)"`` etc., ``size``, ``test_acc`` and ``test_errors``."""
    y = ensemble.data.test.y
    rows = []
    for m in _check_methods(methods):
        p = ensemble.test_probs(m)
        rows.append({"model": f"{ENSEMBLE} ({m})", "method": m, "size": ensemble.size, "seed": -1,
                     "test_acc": metrics.accuracy(p, y), "test_errors": metrics.error_count(p, y)})
    return rows


def size_curve(ensemble: Ensemble, methods: Sequence[str] = ENSEMBLE_METHODS) -> list[dict]:
    """Test accuracy of the ensemble of the first k members, k = 1..K, for each method (no training)."""
    y = ensemble.data.test.y
    return [{"method": m, "size": k, "test_acc": metrics.accuracy(ensemble.test_probs(m, k), y),
             "test_errors": metrics.error_count(ensemble.test_probs(m, k), y)}
            for m in _check_methods(methods) for k in range(1, ensemble.size + 1)]


def distil_ensemble(data: Data, ensemble: Ensemble, config: TrainConfig, seeds: Sequence[int],
                    methods: Sequence[str] = ENSEMBLE_METHODS, progress: bool | None = None) -> list[dict]:
    """Distil the whole ensemble into one network of the members' architecture, once per averaging
    method and student seed (the same seed gives every method the same initial weights).

    The targets are :meth:`Ensemble.targets` at ``config.temperature``, passed to ``fit`` as
    precomputed ``teacher_logits``. Rows: ``model`` = ``"distilled (arithmetic)"`` etc.,
    ``method``, ``seed``, ``test_acc``, ``test_errors``, ``agreement`` (with the ensemble's
    top-1 on the test set), ``init_norm`` (first-layer norm before training: equal for equal
    seeds) and ``cached``.
    """
    check_config(config, "config", loss="distillation")
    seeds = check_seeds(seeds)
    methods = _check_methods(methods)
    if ensemble.data.spec != data.spec:
        raise ValueError("data must be the data the ensemble was trained on (its spec differs)")
    runs = RunProgress(len(seeds) * len(methods), "distilled students", progress, None)
    rows = []
    for s in seeds:
        for m in methods:
            targets = ensemble.targets(m, config.temperature)
            trained = train_model("mlp", data, config.replace(seed=s), teacher_logits=targets, hidden=ensemble.hidden,
                                  progress=False, label=f"student of a {ensemble.size}-member {m} ensemble seed={s}")
            logits = metrics.predict_logits(trained.model, data.test.x)
            rows.append({"model": f"distilled ({m})", "method": m, "seed": s,
                         "test_acc": metrics.accuracy(logits, data.test.y),
                         "test_errors": metrics.error_count(logits, data.test.y),
                         "agreement": float((logits.argmax(1) == ensemble.test_probs(m).argmax(1)).float().mean()),
                         "init_norm": first_layer_norm(trained), "cached": trained.cached})
            runs.step(f"{m}, seed {s}")
    runs.close()
    return rows


# --------------------------------------------------------------------------------------------
# Reading the results


def results_table_rows(ensemble: Ensemble, student_rows: Sequence[dict]) -> list[dict]:
    """One line per kind of model for "What we found": the best single member, the average member,
    each ensemble and each distilled student (mean ± std over seeds), with test errors, and the
    share of the ensemble's gain over the average member that the distilled student recovered
    (Hinton et al. report about 80 % for their speech model). The share is only given when the
    ensemble beat the average member by more than twice the members' standard error."""
    singles = ensemble.rows
    best = max(singles, key=lambda r: r["test_acc"])
    mean_single = float(np.mean([r["test_acc"] for r in singles]))
    n_test = len(ensemble.data.test)
    lines = [{"model": f"best single model (seed {best['seed']})", "test accuracy": f"{best['test_acc']:.2%}",
              "test errors": f"{best['test_errors']}", "share of the ensemble's gain": ""},
             {"model": f"single model, mean of {len(singles)} seeds",
              "test accuracy": _pm(summarize(singles, ["model"])[0]),
              "test errors": f"{n_test * (1 - mean_single):.1f}", "share of the ensemble's gain": ""}]
    ens = {r["method"]: r for r in ensemble_rows(ensemble)}
    for m, r in ens.items():
        lines.append({"model": f"ensemble of {ensemble.size} ({m} mean)", "test accuracy": f"{r['test_acc']:.2%}",
                      "test errors": f"{r['test_errors']}", "share of the ensemble's gain": "100 %"})
    for stat in summarize(list(student_rows), ["method"]):
        m = stat["method"]
        lines.append({"model": f"distilled from the {m} ensemble ({stat['n']} seed{'s' * (stat['n'] > 1)})",
                      "test accuracy": _pm(stat), "test errors": f"{n_test * (1 - stat['mean']):.1f}",
                      "share of the ensemble's gain": share_of_gain(stat["mean"], singles, ens[m]["test_acc"])})
    return lines


def share_of_gain(student_acc: float, single_rows: Sequence[dict], ensemble_acc: float) -> str:
    """``(student - mean single) / (ensemble - mean single)`` as a percentage, or why it is not
    given: the ensemble did not gain, or gained less than twice the members' standard error."""
    accs = [r["test_acc"] for r in single_rows]
    mean_single = float(np.mean(accs))
    spread = float(np.std(accs, ddof=1) / np.sqrt(len(accs))) if len(accs) > 1 else 0.0
    gain = ensemble_acc - mean_single
    if gain <= 0:
        return "n/a: the ensemble did not gain"
    if gain <= 2 * spread:
        return "n/a: the ensemble's gain is within the seed spread"
    if np.isnan(student_acc):
        return "n/a: no student"
    return f"{(student_acc - mean_single) / gain:.0%}"


def verdicts(ensemble: Ensemble, student_rows: Sequence[dict]) -> list[str]:
    """Sentences comparing the distilled students with the single models and with each other,
    judged against the seed spread (:func:`labkd.teacher_studies.compare`)."""
    singles = [r["test_acc"] for r in ensemble.rows]
    out = []
    by_method = {m: [r["test_acc"] for r in student_rows if r["method"] == m] for m in ENSEMBLE_METHODS}
    for m, values in by_method.items():
        if values:
            out.append(compare(values, singles, f"distilled ({m})", "single model")["verdict"])
    if all(by_method.values()):
        out.append(compare(by_method["arithmetic"], by_method["geometric"], "arithmetic targets",
                           "geometric targets")["verdict"])
    return out


def ensemble_figure(ensemble: Ensemble, student_rows: Sequence[dict]) -> go.Figure:
    """Test errors of every member (grey dots), of the ensemble of the first k members (lines, one
    per averaging method) and of the distilled students (markers at k = K, mean ± std)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[1] * ensemble.size, y=[r["test_errors"] for r in ensemble.rows], mode="markers",
                             name="single models (each seed)", marker=dict(color=COLOURS["member"], size=8),
                             text=[f"seed {r['seed']}" for r in ensemble.rows]))
    curve = size_curve(ensemble)
    for m in ENSEMBLE_METHODS:
        mine = [r for r in curve if r["method"] == m]
        fig.add_trace(go.Scatter(x=[r["size"] for r in mine], y=[r["test_errors"] for r in mine], mode="lines+markers",
                                 name=f"ensemble ({m} mean)", line=dict(color=COLOURS[m])))
    n_test = len(ensemble.data.test)
    for stat in summarize(list(student_rows), ["method"], "test_errors") if student_rows else []:
        fig.add_trace(go.Scatter(
            x=[ensemble.size + 0.15 * (1 if stat["method"] == "geometric" else -1)], y=[stat["mean"]], mode="markers",
            name=f"distilled ({stat['method']}), {stat['n']} seed{'s' * (stat['n'] > 1)}",
            marker=dict(color=COLOURS[stat["method"]], symbol="star", size=14, line=dict(width=1, color="black")),
            error_y=dict(type="data", array=[stat["std"]], visible=True)))
    fig.update_layout(xaxis_title="members in the ensemble (k)", yaxis_title=f"test errors (of {n_test:,})",
                      height=420, width=680, margin=dict(l=60, r=10, t=40, b=50),
                      title="One network, an ensemble, and one network distilled from the ensemble")
    fig.update_xaxes(dtick=1)
    return fig


def same_start(rows: Sequence[dict]) -> list[str]:
    """One line per student seed: the first-layer norm before training of each averaging method's
    student — equal numbers show that every method started from the same weights."""
    out = []
    for s in dict.fromkeys(r["seed"] for r in rows):
        norms = {r["method"]: r["init_norm"] for r in rows if r["seed"] == s}
        same = len({round(v, 6) for v in norms.values()}) == 1
        out.append(f"student seed {s}: " + ", ".join(f"{m} {v:.4f}" for m, v in norms.items())
                   + (" — identical starts" if same else " — DIFFERENT starts"))
    return out


#: Hinton et al. (2015), Table 1 (speech, frame accuracy on the test set): one model, the ensemble
#: of 10 models differing in their initialisation, and one model distilled from the ensemble.
PAPER_SPEECH = {"single": 0.589, "ensemble": 0.611, "distilled": 0.608}


def paper_comparison(ensemble: Ensemble, student_rows: Sequence[dict], method: str = "arithmetic",
                     record: bool = False) -> list[dict]:
    """The paper's speech numbers (§4, Table 1, frame accuracy) beside this run's test accuracy:
    average single model, ensemble, distilled student (``method`` targets, mean over seeds) and
    the share of the ensemble's gain the student kept. ``record=True`` also records each line
    with :func:`labkd.results.compare` (the report's paper-versus-labkd table)."""
    single = float(np.mean([r["test_acc"] for r in ensemble.rows]))
    ens = next(r["test_acc"] for r in ensemble_rows(ensemble, [method]))
    mine = [r["test_acc"] for r in student_rows if r["method"] == method]
    student = float(np.mean(mine)) if mine else float("nan")
    p = PAPER_SPEECH
    paper_share = (p["distilled"] - p["single"]) / (p["ensemble"] - p["single"])
    lines = [
        {"": "one model", "paper (speech, 10 models)": f"{p['single']:.1%}", "this run": f"{single:.2%}"},
        {"": f"ensemble ({method} mean)", "paper (speech, 10 models)": f"{p['ensemble']:.1%}",
         "this run": f"{ens:.2%} ({ensemble.size} members)"},
        {"": "one model distilled from the ensemble", "paper (speech, 10 models)": f"{p['distilled']:.1%}",
         "this run": f"{student:.2%} ({len(mine)} seed{'s' * (len(mine) != 1)})"},
        {"": "share of the ensemble's gain kept", "paper (speech, 10 models)": f"{paper_share:.0%}",
         "this run": share_of_gain(student, ensemble.rows, ens)},
    ]
    if record:
        from labkd import results

        for line in lines:
            results.compare(f"ensemble distillation (§4): {line['']}", line["this run"],
                            f"{line['paper (speech, 10 models)']} (speech frame accuracy)",
                            seeds=sorted({r['seed'] for r in student_rows}) if "distilled" in line[""] else ensemble.seeds)
    return lines
