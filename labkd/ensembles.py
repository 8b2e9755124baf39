r"""Distilling an ensemble into one network (Hinton, Vinyals & Dean 2015, §4).

Lesson 08 trains K networks of one architecture that differ only in their random seed, averages
their predictions, and distils that ensemble into a single network of the same size. Everything
is organised in **seed groups**: group g has K members (seeds ``10g … 10g+K-1``) and one student
seed ``10g + 9``, used twice — once trained on the labels alone, once distilled from the group's
ensemble — so the two students start from the same weights and see the same batches.

>>> small = ensemble_data(data)                                 # 1,000 Fashion-MNIST images
>>> dev = run_groups(small, DEV_GROUPS, temperatures=TEMPERATURES)  # choose T on validation
>>> t, _ = choose_temperature(dev)
>>> rows = run_groups(small, stats.fresh_seeds(100, 5), temperatures=[t])
>>> ensemble_claim, student_claim, share = claims(rows, temperature=t)

Two ways to average K members' soft targets at temperature T (see :func:`labkd.losses.ensemble_probs`):

.. math::
    p^{\mathrm{arith}} = \frac1K \sum_k \mathrm{softmax}(z_k/T), \qquad
    p^{\mathrm{geo}} \propto \exp\Big(\frac1K \sum_k \log \mathrm{softmax}(z_k/T)\Big)
    = \mathrm{softmax}\Big(\frac{\bar z}{T}\Big).

The §4 of the paper says only that the ensemble's predictions were "averaged"; the lesson tries both.
Every result is a *tidy row* (a dict) with its seed group in a column; :mod:`labkd.stats` judges
the claims.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from labkd import metrics, parallel, stats
from labkd.checks import check_config, check_hidden, check_positive_int, check_seeds
from labkd.data import Data
from labkd.experiments import Trained
from labkd.losses import ENSEMBLE_METHODS, check_alpha, check_temperature, ensemble_logits, ensemble_probs
from labkd.progress import RunProgress
from labkd.recipes import Recipes
from labkd.train import TrainConfig

# --------------------------------------------------------------------------------------------
# The regime (chosen on the validation split with the development seed groups, see DEV_GROUPS)

#: Part 1 runs on Fashion-MNIST cut to :data:`N_TRAIN` training images. With the full 55,000 MNIST
#: images (this lesson's first version) five 128-unit MLPs were so alike that their ensemble fixed
#: only about 21 test errors, near the seed noise; on 3,000 Fashion-MNIST images at lr 0.05 the
#: ensemble still gained only 0.3 points. On 1,000 Fashion-MNIST images, with no jitter and a high
#: learning rate, each member fits its training set perfectly but in its own way.
DATASET = "fashion_mnist"
N_TRAIN = 1000
#: Members and students: a 784-256-256-10 MLP.
HIDDEN = (256, 256)
#: Members per ensemble (at most :data:`MAX_MEMBERS`, so a group's seeds never reach the next group's).
MEMBERS = 5
MAX_MEMBERS = 9
#: The distillation loss of the students. At lr 0.1 the soft-target term scaled by T² (the paper's
#: advice, §2) diverged within the first two epochs at T = 2; without the T² factor it trains
#: stably: the soft term's gradient is then 1/T² as large, a smaller effective weight that the
#: choice of T on validation takes into account. (A first version trained the students at lr 0.02
#: with the T² factor. On the fresh groups 100-104 its labels-only student was better than the
#: members (80.21 vs 79.86 %), its distilled student as good as now (80.68 %), and the share of the
#: ensemble's gain measured against that labels-only student was 45 %: the share depends on the
#: baseline's recipe as much as on distillation.)
KD = {"loss": "distillation", "alpha": 0.9, "scale_by_t2": False}
#: Fast mode (tests): 2 epochs of the same recipes.
FAST_EPOCHS = 2
#: Temperatures tried on the development groups; the one with the best validation gain is kept.
TEMPERATURES = (1.0, 2.0, 4.0)
TEMPERATURE = 2.0
#: The recipes, as data: one for members and students alike, so a labels-only student is one more
#: member and the distilled student differs from it in the loss alone (``temperature`` and
#: ``alpha`` are set per run). Members train at lr 0.1 with batches of 32: the noisy steps send
#: each seed to its own solution (with every model at lr 0.02 the ensemble's validation gain on
#: the development groups fell from about one point to 0.17). ``RECIPES(name, fast, seed=s)``.
_MEMBER = TrainConfig(epochs=20, batch_size=32, lr=0.1, eval_every=20)
RECIPES = Recipes({"member": _MEMBER, "student": _MEMBER, "distilled": _MEMBER.replace(**KD, temperature=TEMPERATURE)},
                  fast={name: {"epochs": FAST_EPOCHS, "eval_every": FAST_EPOCHS} for name in ("member", "student", "distilled")})
ALPHA = KD["alpha"]
#: The averaging whose ensemble and student make the claim; the other is reported beside it.
METHOD = "arithmetic"
#: Seed groups for choosing the regime (validation split only) and the first fresh group for the claim.
DEV_GROUPS = (0, 1)
FRESH_FIRST = 100
#: Names of the arms in the rows' ``arm`` column.
MEMBER, ENSEMBLE, LABELS, DISTILLED = "member", "ensemble", "labels only", "distilled"
#: Kept for old callers: the name of a single member in :attr:`Ensemble.rows`.
SINGLE = "single model"
COLOURS = {"member": "#7f7f7f", "arithmetic": "#1f77b4", "geometric": "#ff7f0e", "ensemble": "#2ca02c",
           "labels only": "#d62728"}


def ensemble_data(data: Data, n_train: int = N_TRAIN) -> Data:
    """The first ``n_train`` training images of ``data`` (a fixed seeded sample, all of them if
    fewer); validation and test splits unchanged."""
    check_positive_int(n_train, "n_train")
    return data.subset(n_train=min(int(n_train), len(data.train)), seed=0)


def group_seeds(group: int, members: int = MEMBERS) -> tuple[list[int], int]:
    """(member seeds, student seed) of seed group ``group``: ``10g … 10g+members-1`` and ``10g + 9``."""
    if isinstance(group, bool) or not isinstance(group, (int, np.integer)) or group < 0:
        raise ValueError(f"group must be a non-negative integer (a seed group), got {group!r}")
    check_members(members)
    return [10 * int(group) + k for k in range(members)], 10 * int(group) + 9


def check_members(members: object) -> int:
    """``members`` is an ensemble size in 2..:data:`MAX_MEMBERS` (an ensemble of one averages nothing)."""
    if isinstance(members, bool) or not isinstance(members, (int, np.integer)):
        raise ValueError(f"members must be an integer in 2..{MAX_MEMBERS}, got {members!r}")
    if members < 2:
        raise ValueError(f"members must be at least 2, got {members}: an ensemble of one has nothing to average")
    if members > MAX_MEMBERS:
        raise ValueError(f"members must be at most {MAX_MEMBERS} (a seed group holds seeds 10g..10g+9, the last "
                         f"for its students), got {members}")
    return int(members)


# --------------------------------------------------------------------------------------------
# The ensemble


@dataclass
class Ensemble:
    """K trained members of one architecture and their logits on the training, validation and test splits.

    ``train_logits`` (K, N_train, C), ``val_logits`` (K, N_val, C) and ``test_logits`` (K, N_test, C)
    are computed once, so combining the members costs no forward pass.
    """

    data: Data
    hidden: tuple[int, ...]
    members: list[Trained]
    seeds: list[int]
    train_logits: Tensor
    test_logits: Tensor
    rows: list[dict] = field(default_factory=list)
    val_logits: Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.test_logits.shape[0])

    def targets(self, method: str = "arithmetic", temperature: float = TEMPERATURE, size: int | None = None) -> Tensor:
        """Logits (N_train, C) whose softmax at ``temperature`` is the combined soft target of the
        first ``size`` members (all by default): what the distilled student is trained on."""
        return ensemble_logits(self._first(self.train_logits, size), temperature, _check_method(method))

    def test_probs(self, method: str = "arithmetic", size: int | None = None) -> Tensor:
        """The ensemble's predicted probabilities (N_test, C) at T = 1, from the first ``size`` members."""
        return ensemble_probs(self._first(self.test_logits, size), 1.0, _check_method(method))

    def val_probs(self, method: str = "arithmetic", size: int | None = None) -> Tensor:
        """The ensemble's predicted probabilities on the validation split (N_val, C) at T = 1."""
        if self.val_logits is None:
            raise ValueError("this ensemble stored no validation logits")
        return ensemble_probs(self._first(self.val_logits, size), 1.0, _check_method(method))

    def _first(self, logits: Tensor, size: int | None) -> Tensor:
        if size is None:
            return logits
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= self.size:
            raise ValueError(f"size must be an integer in 1..{self.size} (members in this ensemble), got {size!r}; "
                             f"an ensemble needs at least one member")
        return logits[:size]


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


def _check_temperatures(temperatures: Sequence[float]) -> list[float]:
    if isinstance(temperatures, (int, float)):
        temperatures = [temperatures]
    out = [float(check_temperature(t)) for t in temperatures]
    if not out:
        raise ValueError("temperatures is empty; give at least one distillation temperature, e.g. [4.0]")
    return out


def train_ensemble(data: Data, seeds: Sequence[int], config: TrainConfig, hidden: Sequence[int] = HIDDEN,
                   progress: bool | None = None) -> Ensemble:
    """Train one MLP per seed with ``config`` (its seed replaced), cached, and collect their logits.

    Rows (``ensemble.rows``): ``model`` = :data:`SINGLE`, ``seed``, ``val_acc``, ``test_acc``,
    ``test_errors``. Raises ValueError for fewer than two ``seeds`` (an ensemble of one) before
    any training.
    """
    if not isinstance(seeds, (list, tuple, range)) or len(seeds) == 0:
        raise ValueError(f"seeds must list at least two seeds (one per ensemble member), got {seeds!r}: "
                         f"an ensemble of size 0 has no predictions to average")
    if len(seeds) == 1:
        raise ValueError(f"seeds must list at least two seeds (one per ensemble member), got {list(seeds)}: "
                         f"an ensemble of one has nothing to average")
    seeds = check_seeds(seeds)
    hidden = check_hidden(hidden)
    check_config(config, "config", loss="cross_entropy")
    planned = [parallel.Run("mlp", config.replace(seed=s), hidden=hidden, label=f"ensemble member {hidden} seed={s} on {data.name}")
               for s in seeds]
    parallel.train_runs(data, planned, progress=progress)
    runs = RunProgress(len(seeds), "ensemble members", progress, None)
    members, train_logits, val_logits, test_logits, rows = [], [], [], [], []
    for s, run in zip(seeds, planned, strict=True):
        trained = run.train(data)
        members.append(trained)
        train_logits.append(metrics.predict_logits(trained.model, data.train.x))
        val = metrics.predict_logits(trained.model, data.val.x)
        test = metrics.predict_logits(trained.model, data.test.x)
        val_logits.append(val)
        test_logits.append(test)
        rows.append({"model": SINGLE, "seed": s, "val_acc": metrics.accuracy(val, data.val.y),
                     "test_acc": metrics.accuracy(test, data.test.y),
                     "test_errors": metrics.error_count(test, data.test.y), "cached": trained.cached})
        runs.step(f"seed {s}")
    runs.close()
    return Ensemble(data, hidden, members, seeds, torch.stack(train_logits), torch.stack(test_logits), rows,
                    torch.stack(val_logits))


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


def _student_row(data: Data, trained: Trained, group: int, arm: str, method: str, temperature: float,
                 ensemble: Ensemble | None = None) -> dict:
    val = metrics.predict_logits(trained.model, data.val.x)
    test = metrics.predict_logits(trained.model, data.test.x)
    row = {"group": group, "arm": arm, "method": method, "temperature": temperature, "seed": trained.model.spec["seed"],
           "val_acc": metrics.accuracy(val, data.val.y), "test_acc": metrics.accuracy(test, data.test.y),
           "test_errors": metrics.error_count(test, data.test.y), "init_norm": metrics.first_layer_norm(trained),
           "cached": trained.cached}
    if ensemble is not None and method:
        row["agreement"] = float((test.argmax(1) == ensemble.test_probs(method).argmax(1)).float().mean())
    return row


def distil_ensemble(data: Data, ensemble: Ensemble, config: TrainConfig, seeds: Sequence[int],
                    methods: Sequence[str] = ENSEMBLE_METHODS, progress: bool | None = None) -> list[dict]:
    """Distil the whole ensemble into one network of the members' architecture, once per averaging
    method and student seed (the same seed gives every method the same initial weights).

    The targets are :meth:`Ensemble.targets` at ``config.temperature``, passed to ``fit`` as
    precomputed ``teacher_logits``. Rows: ``model`` = ``"distilled (arithmetic)"`` etc., ``arm``,
    ``method``, ``temperature``, ``seed``, ``val_acc``, ``test_acc``, ``test_errors``,
    ``agreement`` (with the ensemble's top-1 on the test set), ``init_norm`` (first-layer norm
    before training: equal for equal seeds) and ``cached``.
    """
    check_config(config, "config", loss="distillation")
    seeds = check_seeds(seeds)
    methods = _check_methods(methods)
    if ensemble.data.spec != data.spec:
        raise ValueError("data must be the data the ensemble was trained on (its spec differs)")
    planned = [(s, m, parallel.Run("mlp", config.replace(seed=s), teacher_logits=ensemble.targets(m, config.temperature),
                                   hidden=ensemble.hidden,
                                   label=f"student of a {ensemble.size}-member {m} ensemble T={config.temperature:g} seed={s}"))
               for s in seeds for m in methods]
    parallel.train_runs(data, [run for _, _, run in planned], progress=progress)
    runs = RunProgress(len(planned), "distilled students", progress, None)
    rows = []
    for s, m, run in planned:
        row = _student_row(data, run.train(data), -1, DISTILLED, m, config.temperature, ensemble)
        rows.append({"model": f"distilled ({m})", **row})
        runs.step(f"{m}, seed {s}")
    runs.close()
    return rows


# --------------------------------------------------------------------------------------------
# Seed groups: an ensemble, a labels-only student and distilled students that share its seed


@dataclass
class Group:
    """One seed group: its ensemble and the rows of every arm (members, ensembles, students)."""

    group: int
    ensemble: Ensemble
    rows: list[dict]


def run_group(data: Data, group: int, members: int = MEMBERS, temperatures: Sequence[float] = (TEMPERATURE,),
              methods: Sequence[str] = ENSEMBLE_METHODS, fast: bool = False, hidden: Sequence[int] = HIDDEN,
              alpha: float = ALPHA, progress: bool | None = None) -> Group:
    """Train (cached) seed group ``group``: ``members`` members with :data:`RECIPES` ``"member"``, the
    labels-only student and one distilled student per method and temperature, all three kinds of
    student on the group's student seed (same initial weights, same batches).

    Rows, all with ``group``, ``arm`` (:data:`MEMBER`, :data:`ENSEMBLE`, :data:`LABELS`,
    :data:`DISTILLED`), ``method``, ``temperature``, ``seed``, ``val_acc``, ``test_acc``,
    ``test_errors``; students also ``init_norm``."""
    member_seeds, student_seed = group_seeds(group, members)
    temperatures = _check_temperatures(temperatures)
    methods = _check_methods(methods)
    check_alpha(alpha)
    hidden = check_hidden(hidden)
    ens = train_ensemble(data, member_seeds, RECIPES("member", fast), hidden=hidden, progress=progress)
    rows = [{"group": group, "arm": MEMBER, "method": "", "temperature": float("nan"), "seed": r["seed"],
             "val_acc": r["val_acc"], "test_acc": r["test_acc"], "test_errors": r["test_errors"]} for r in ens.rows]
    for m in methods:
        val_p, test_p = ens.val_probs(m), ens.test_probs(m)
        rows.append({"group": group, "arm": ENSEMBLE, "method": m, "temperature": float("nan"), "seed": -1,
                     "val_acc": metrics.accuracy(val_p, data.val.y), "test_acc": metrics.accuracy(test_p, data.test.y),
                     "test_errors": metrics.error_count(test_p, data.test.y)})
    labels = parallel.Run("mlp", RECIPES("student", fast, seed=student_seed), hidden=hidden,
                          label=f"labels-only student {hidden} seed={student_seed} on {data.name}")
    students = [(t, m, parallel.Run("mlp", RECIPES("distilled", fast, seed=student_seed, temperature=float(t),
                                                   alpha=float(alpha)),
                                    teacher_logits=ens.targets(m, t), hidden=hidden,
                                    label=f"student of group {group}'s {m} ensemble T={t:g} seed={student_seed}"))
                for t in temperatures for m in methods]
    parallel.train_runs(data, [labels] + [run for _, _, run in students], progress=progress)
    rows.append(_student_row(data, labels.train(data), group, LABELS, "", float("nan")))
    rows += [_student_row(data, run.train(data), group, DISTILLED, m, t, ens) for t, m, run in students]
    return Group(group, ens, rows)


def run_groups(data: Data, groups: Sequence[int], members: int = MEMBERS, temperatures: Sequence[float] = (TEMPERATURE,),
               methods: Sequence[str] = ENSEMBLE_METHODS, fast: bool = False, hidden: Sequence[int] = HIDDEN,
               alpha: float = ALPHA, progress: bool | None = None) -> list[Group]:
    """:func:`run_group` for each of ``groups`` (distinct non-negative integers)."""
    groups = check_seeds(groups)
    check_members(members)
    _check_temperatures(temperatures)
    _check_methods(methods)
    runs = RunProgress(len(groups), "seed groups", progress, None)
    out = []
    for g in groups:
        out.append(run_group(data, g, members, temperatures, methods, fast, hidden, alpha, progress=False))
        runs.step(f"group {g}")
    runs.close()
    return out


def all_rows(groups: Sequence[Group]) -> list[dict]:
    """The rows of every group, in one list."""
    return [r for g in groups for r in g.rows]


def _by_group(rows: Sequence[dict], arm: str, metric: str, method: str | None = None,
              temperature: float | None = None, reduce=np.mean) -> dict[int, float]:
    out: dict[int, list[float]] = {}
    for r in rows:
        if r["arm"] != arm or (method is not None and r["method"] != method):
            continue
        if temperature is not None and not math.isclose(r["temperature"], temperature):
            continue
        out.setdefault(r["group"], []).append(r[metric])
    return {g: float(reduce(v)) for g, v in out.items()}


def gains(rows: Sequence[dict], method: str = METHOD, temperature: float = TEMPERATURE,
          metric: str = "test_acc") -> list[dict]:
    """Per group: mean and best member, the ensemble (``method``), the labels-only and the distilled
    student (``method`` targets at ``temperature``), the ensemble's gain over the mean member and the
    distilled student's gain over its labels-only twin, in ``metric`` (``"val_acc"`` or ``"test_acc"``)."""
    _check_method(method)
    mean_m = _by_group(rows, MEMBER, metric)
    best_m = _by_group(rows, MEMBER, metric, reduce=np.max)
    ens = _by_group(rows, ENSEMBLE, metric, method)
    lab = _by_group(rows, LABELS, metric)
    dis = _by_group(rows, DISTILLED, metric, method, temperature)
    out = []
    for g in mean_m:
        if g in ens and g in lab and g in dis:
            out.append({"group": g, "mean member": mean_m[g], "best member": best_m[g], "ensemble": ens[g],
                        "labels only": lab[g], "distilled": dis[g], "ensemble gain": ens[g] - mean_m[g],
                        "student gain": dis[g] - lab[g]})
    if not out:
        raise ValueError(f"rows hold no complete group for method={method!r}, temperature={temperature!r}")
    return out


def temperature_table(rows: Sequence[dict], method: str = METHOD) -> list[dict]:
    """On the *validation* split, per temperature tried: the distilled student's gain over its
    labels-only twin (mean ± std over the groups) and the share of the ensemble's gain it kept."""
    temps = sorted({r["temperature"] for r in rows if r["arm"] == DISTILLED and r["method"] == method})
    if not temps:
        raise ValueError(f"rows hold no distilled student with method={method!r}")
    lines = []
    for t in temps:
        g = gains(rows, method, t, "val_acc")
        student, ensemble = [x["student gain"] for x in g], [x["ensemble gain"] for x in g]
        lines.append({"T": t, "groups": len(g), "student gain (val)": stats.pm_values(student, unit="points"),
                      "ensemble gain (val)": stats.pm_values(ensemble, unit="points"),
                      "share kept (val)": f"{np.mean(student) / np.mean(ensemble):.0%}" if np.mean(ensemble) > 0 else "n/a",
                      "_gain": float(np.mean(student))})
    return lines


def choose_temperature(rows: Sequence[dict], method: str = METHOD) -> tuple[float, list[dict]]:
    """The temperature whose distilled students gained most over their labels-only twins on the
    **validation** split (mean over the groups in ``rows``, normally :data:`DEV_GROUPS`), and the
    table of every temperature (:func:`temperature_table`, without its helper column)."""
    lines = temperature_table(rows, method)
    best = max(lines, key=lambda line: line["_gain"])
    return best["T"], [{k: v for k, v in line.items() if not k.startswith("_")} for line in lines]


# --------------------------------------------------------------------------------------------
# The claims


def claims(rows: Sequence[dict], method: str = METHOD, temperature: float = TEMPERATURE,
           prefix: str = "(08a)") -> tuple[stats.Claim, stats.Claim, dict]:
    """The two claims of §4 on the test split, paired per seed group, and the share of the gain kept:

    1. the ensemble beats its members: ensemble − mean member accuracy, per group;
    2. the distilled student beats the same student trained on labels: distilled − labels-only
       accuracy, per group (the two start from the same weights);
    3. ``share`` = mean student gain / mean ensemble gain (the paper's speech student kept about
       80 %), ``kept_half`` = share ≥ 0.5 *and* both claims shown; also the share per group."""
    g = gains(rows, method, temperature, "test_acc")
    seeds = [x["group"] for x in g]
    ens_claim = stats.claim(f"{prefix} the ensemble of {_members(rows)} beats its members ({method} mean)",
                            [x["ensemble"] for x in g], [x["mean member"] for x in g], seeds, expected=+1,
                            treatment_name=f"ensemble ({method})", control_name="mean member",
                            best_member=float(np.mean([x["best member"] for x in g])),
                            gain_over_best=float(np.mean([x["ensemble"] - x["best member"] for x in g])))
    student_claim = stats.claim(f"{prefix} the student distilled from the ensemble beats the same student trained "
                                f"on labels ({method} targets, T = {temperature:g})",
                                [x["distilled"] for x in g], [x["labels only"] for x in g], seeds, expected=+1,
                                treatment_name=f"distilled ({method}, T={temperature:g})", control_name="labels only")
    share = student_claim.delta / ens_claim.delta if ens_claim.delta > 0 else float("nan")
    info = {"share": share, "kept_half": bool(ens_claim.shown and student_claim.shown and share >= 0.5),
            "per_group": [x["student gain"] / x["ensemble gain"] if x["ensemble gain"] > 0 else float("nan") for x in g],
            "method": method, "temperature": temperature, "groups": seeds}
    student_claim.extra.update(share_of_ensemble_gain=share, kept_at_least_half=info["kept_half"])
    return ens_claim, student_claim, info


def _members(rows: Sequence[dict]) -> int:
    counts = {}
    for r in rows:
        if r["arm"] == MEMBER:
            counts[r["group"]] = counts.get(r["group"], 0) + 1
    return max(counts.values()) if counts else 0


def share_sentence(info: dict) -> str:
    """The share of the ensemble's gain kept, in words, with the rule (≥ 50 % and both claims shown)."""
    share = info["share"]
    if not math.isfinite(share):
        return "Share of the ensemble's gain kept: n/a (the ensemble did not gain)."
    per = ", ".join(f"{s:.0%}" if math.isfinite(s) else "n/a" for s in info["per_group"])
    return (f"Share of the ensemble's gain kept by the distilled student ({info['method']} targets, "
            f"T = {info['temperature']:g}): {share:.0%} (per group: {per}); at least half, with both gains shown: "
            + ("YES." if info["kept_half"] else "NO."))


# --------------------------------------------------------------------------------------------
# Reading the results


def results_table_rows(rows: Sequence[dict], temperature: float = TEMPERATURE, metric: str = "test_acc") -> list[dict]:
    """One line per kind of model for "What we found" (mean ± std over the seed groups): the mean
    and the best member, each ensemble, the labels-only student and each distilled student, with
    test errors and the share of the ensemble's gain the distilled student kept (its gain over its
    labels-only twin / the ensemble's gain over the mean member, same method)."""
    lines = []

    def line(name: str, values: list[float], errors: list[float], share: str = "") -> dict:
        return {"model": name, "groups": len(values), "test accuracy": stats.pm_values(values),
                "test errors": f"{np.mean(errors):.1f}", "share of the ensemble's gain": share}

    mean_m, best_m = _by_group(rows, MEMBER, metric), _by_group(rows, MEMBER, metric, reduce=np.max)
    err_m = _by_group(rows, MEMBER, "test_errors")
    lines.append(line("member (mean of the group)", list(mean_m.values()), list(err_m.values())))
    best_err = _by_group(rows, MEMBER, "test_errors", reduce=np.min)
    lines.append(line("best member of the group", list(best_m.values()), list(best_err.values())))
    lab = _by_group(rows, LABELS, metric)
    lines.append(line("student, labels only", list(lab.values()), list(_by_group(rows, LABELS, "test_errors").values())))
    methods = [m for m in ENSEMBLE_METHODS if any(r["arm"] == ENSEMBLE and r["method"] == m for r in rows)]
    for m in methods:
        ens = _by_group(rows, ENSEMBLE, metric, m)
        lines.append(line(f"ensemble ({m} mean)", list(ens.values()),
                          list(_by_group(rows, ENSEMBLE, "test_errors", m).values()), "100 %"))
    for m in methods:
        dis = _by_group(rows, DISTILLED, metric, m, temperature)
        if not dis:
            continue
        g = gains(rows, m, temperature, metric)
        ens_gain = np.mean([x["ensemble gain"] for x in g])
        share = f"{np.mean([x['student gain'] for x in g]) / ens_gain:.0%}" if ens_gain > 0 else "n/a"
        lines.append(line(f"distilled ({m} targets, T = {temperature:g})", list(dis.values()),
                          list(_by_group(rows, DISTILLED, "test_errors", m, temperature).values()), share))
    return lines


def same_start(rows: Sequence[dict]) -> list[str]:
    """One line per seed group: the first-layer norms before training of its students (labels
    only and every distilled one), which must be identical (:func:`labkd.stats.same_start`)."""
    norms: dict[str, list[float]] = {}
    for r in rows:
        if r["arm"] in (LABELS, DISTILLED) and "init_norm" in r:
            key = f"group {r['group']} (student seed {r['seed']})" if r.get("group", -1) >= 0 else f"student seed {r['seed']}"
            norms.setdefault(key, []).append(r["init_norm"])
    if not norms:
        raise ValueError("rows hold no student with an init_norm")
    return stats.same_start(norms)


#: Hinton et al. (2015), Table 1 (speech, frame accuracy on the test set): one model, the ensemble
#: of 10 models differing in their initialisation, and one model distilled from the ensemble.
PAPER_SPEECH = {"single": 0.589, "ensemble": 0.611, "distilled": 0.608}


def paper_comparison(rows: Sequence[dict], method: str = METHOD, temperature: float = TEMPERATURE,
                     record: bool = False) -> list[dict]:
    """The paper's speech numbers (§4, Table 1, frame accuracy) beside this run's test accuracy
    (mean over the seed groups): mean member, ensemble, distilled student (``method`` targets at
    ``temperature``) and the share of the ensemble's gain it kept. ``record=True`` also records
    each line with :func:`labkd.results.compare`."""
    g = gains(rows, method, temperature)
    p = PAPER_SPEECH
    paper_share = (p["distilled"] - p["single"]) / (p["ensemble"] - p["single"])
    ens_gain, student_gain = np.mean([x["ensemble gain"] for x in g]), np.mean([x["student gain"] for x in g])
    groups = [x["group"] for x in g]
    members = _members(rows)
    lines = [
        {"": "one model", "paper (speech, 10 models)": f"{p['single']:.1%}",
         "this run": stats.pm_values([x["mean member"] for x in g])},
        {"": f"ensemble ({method} mean)", "paper (speech, 10 models)": f"{p['ensemble']:.1%}",
         "this run": f"{stats.pm_values([x['ensemble'] for x in g])} ({members} members)"},
        {"": "one model distilled from the ensemble", "paper (speech, 10 models)": f"{p['distilled']:.1%}",
         "this run": f"{stats.pm_values([x['distilled'] for x in g])} (labels only: "
                     f"{stats.pm_values([x['labels only'] for x in g])})"},
        {"": "share of the ensemble's gain kept", "paper (speech, 10 models)": f"{paper_share:.0%}",
         "this run": f"{student_gain / ens_gain:.0%}" if ens_gain > 0 else "n/a: the ensemble did not gain"},
    ]
    if record:
        from labkd import results

        for line in lines:
            results.compare(f"ensemble distillation (§4): {line['']}", line["this run"],
                            f"{line['paper (speech, 10 models)']} (speech frame accuracy)", seeds=groups)
    return lines
