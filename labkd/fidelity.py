r"""Fidelity versus generalization: does the student learn to copy its teacher? (lesson 09)

Stanton, Izmailov, Kirichenko, Alemi & Wilson, "Does Knowledge Distillation Really Work?"
(NeurIPS 2021, https://arxiv.org/abs/2106.05945) separate two things distillation is asked for:

- **generalization**: the student's accuracy on new data;
- **fidelity**: how closely the student copies its teacher, measured by top-1 **agreement**
  :math:`\frac1N\sum_i [\arg\max_c z_{ic} = \arg\max_c v_{ic}]` and by
  :math:`\mathrm{KL}(p_{teacher}\,\|\,p_{student})` (at T = 1), on the training (transfer) set and
  on the test set.

This module distils MLP students from MLP teachers while measuring both after every epoch
(:func:`distil_with_fidelity`, cached like :func:`labkd.train_model`), runs the lesson's grid of
students × augmentation × seeds (:func:`fidelity_study`), summarises it (:func:`summary_rows`) and
finds pairs of conditions where fidelity and generalization disagree (:func:`decoupled_pairs`).

>>> teachers = train_teachers(data, seeds=[0, 1, 2], config=RECIPES("teacher", fast))
>>> study = fidelity_study(data, teachers, {"300-300": (300, 300), "30-30": (30, 30)}, [0, 2],
...                        RECIPES("student", fast, temperature=4.0))
>>> summary_rows(study.final())

Teachers use seeds ``seed + TEACHER_SEED_OFFSET`` so that a same-size student never starts from
its teacher's initial weights (that would make "self-distillation" a copy by construction).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from labkd import metrics, stats
from labkd.data import Data
from labkd.experiments import Tracker, Trained, model_identity, train_model
from labkd.models import BlockModel, build_model
from labkd.progress import RunProgress
from labkd.recipes import Recipes
from labkd.checks import check_config, check_hidden, check_positive_int, check_seeds, mlp_name
from labkd.stats import compare, summarize
from labkd.train import TrainConfig

#: Teacher of seed s is initialised with seed s + TEACHER_SEED_OFFSET (never the student's weights).
TEACHER_SEED_OFFSET = 100
#: The teachers' widths: a 784-300-300-10 MLP.
TEACHER_HIDDEN = (300, 300)
#: Label of the students trained on labels alone (the "independent network" reference).
LABELS_ONLY = "labels only"
#: Metrics measured after every epoch (besides ``test_acc``): fidelity on train and test.
FIDELITY_METRICS = ("train_agreement", "test_agreement", "train_kl", "test_kl")
#: Their names in sentences and tables.
METRIC_NAMES = {"train_agreement": "train agreement", "test_agreement": "test agreement",
                "train_kl": "train KL(t‖s)", "test_kl": "test KL(t‖s)"}


# --------------------------------------------------------------------------------------------
# Recipes


#: The recipes, as data (fast mode: 2 epochs each). ``"teacher"``: labels, SGD + Nesterov at 0.05,
#: cosine schedule, ±2-pixel jitter; :func:`train_teachers` sets each teacher's seed to the lesson
#: seed + :data:`TEACHER_SEED_OFFSET`. ``"student"``: the teacher's soft targets alone
#: (``loss="soft_target"``, no label term, so everything the student learns comes from the
#: teacher) at T = 4 and lr 0.02; :func:`fidelity_study` sets its seed and jitter per run.
RECIPES = Recipes({"teacher": TrainConfig(epochs=20, batch_size=128, lr=0.05, jitter=2, seed=TEACHER_SEED_OFFSET),
                   "student": TrainConfig(epochs=20, batch_size=128, lr=0.02, loss="soft_target", temperature=4.0)},
                  fast={"teacher": {"epochs": 2}, "student": {"epochs": 2}})


def transfer_set(data: Data, n_transfer: int | None, seed: int = 0) -> Data:
    """The distillation set: ``n_transfer`` training images of ``data`` (a seeded subset), or all
    of them when ``n_transfer`` is None or not smaller (fast mode is already small)."""
    if n_transfer is not None:
        check_positive_int(n_transfer, "n_transfer")
    small = n_transfer is not None and n_transfer < len(data.train)
    return data.subset(n_train=int(n_transfer), seed=seed) if small else data


def train_teachers(data: Data, seeds: Sequence[int], config: TrainConfig, hidden: Sequence[int] = TEACHER_HIDDEN,
                   progress: bool | None = None) -> dict[int, Trained]:
    """One labels-trained MLP teacher per lesson seed (cached): ``{seed: Trained}``.

    ``config.seed`` is ignored; teacher ``s`` uses ``s + TEACHER_SEED_OFFSET``."""
    seeds = check_seeds(seeds)
    hidden = check_hidden(hidden)
    check_config(config, "config", loss="cross_entropy")
    runs = RunProgress(len(seeds), "teachers", progress, None)
    out = {}
    for s in seeds:
        out[s] = train_model("mlp", data, config.replace(seed=s + TEACHER_SEED_OFFSET), hidden=hidden, progress=False,
                             label=f"fidelity teacher {mlp_name(hidden, data)} seed={s} on {data.name}")
        runs.step(f"seed {s}")
    runs.close()
    return out


# --------------------------------------------------------------------------------------------
# One run, measured every epoch


@dataclass
class FidelityRun:
    """One student: its per-epoch ``history`` (``epoch``, ``test_acc``, ``val_acc``, ``loss`` and
    :data:`FIDELITY_METRICS`), the trained model, and where it came from."""

    student: str
    hidden: tuple[int, ...]
    method: str            # "distilled" or LABELS_ONLY
    jitter: int
    seed: int
    history: list[dict]
    model: BlockModel
    key: str
    seconds: float
    cached: bool
    init_norm: float = 0.0

    def final(self, metric: str = "test_acc") -> float:
        return self.history[-1][metric]

    @property
    def condition(self) -> str:
        """``"784-30-30-10 · distilled · jitter 2"``: the row label of tables and figures."""
        return f"{self.student} · {self.method} · jitter {self.jitter}"


def fidelity_sample(data: Data, n: int | None, seed: int = 0) -> Tensor:
    """Indices of the (un-jittered) training images on which train fidelity is measured: a fixed,
    seeded sample of ``n`` (all of them when None or when ``n`` >= the split)."""
    total = len(data.train)
    if n is None or n >= total:
        return torch.arange(total)
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n_fidelity must be a positive integer or None, got {n!r}")
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def distil_with_fidelity(
    data: Data, teacher: Trained, student_hidden: Sequence[int], config: TrainConfig, labels_only: bool = False,
    n_fidelity: int | None = 5000, use_cache: bool = True, progress: bool | None = None,
) -> FidelityRun:
    """Train an MLP student (seed ``config.seed``) and measure its fidelity to ``teacher`` after
    every epoch: top-1 agreement and KL(teacher ‖ student) at T = 1 on ``n_fidelity`` training
    images (un-augmented) and on the whole test split, beside its test accuracy.

    ``config`` is a distillation recipe (:data:`RECIPES` ``"student"``, any ``jitter``); with
    ``labels_only`` the same recipe is trained on the labels instead (``loss="cross_entropy"``):
    the teacher is then only measured against, never learnt from. Cached on disk by a hash of
    everything (student, data, config, teacher, sample size).
    """
    hidden = check_hidden(student_hidden, "student_hidden")
    if not isinstance(teacher, Trained):
        raise TypeError(f"teacher must be a labkd Trained model (from train_model), got {type(teacher).__name__}")
    check_config(config, "config")
    if config.loss not in ("soft_target", "distillation"):
        raise ValueError(f"config must be a distillation recipe (loss='soft_target' or 'distillation'), "
                         f"got loss={config.loss!r}; use labels_only=True for the labels-only reference")
    train_config = config.replace(loss="cross_entropy") if labels_only else config
    idx = fidelity_sample(data, n_fidelity)
    name = mlp_name(hidden, data)
    method = LABELS_ONLY if labels_only else "distilled"
    train_x, test_x = data.train.x[idx], data.test.x
    t_train, t_test = metrics.predict_logits(teacher.model, train_x), metrics.predict_logits(teacher.model, test_x)

    def fidelity(model: nn.Module) -> dict[str, float]:
        s_train, s_test = metrics.predict_logits(model, train_x), metrics.predict_logits(model, test_x)
        return fidelity_metrics(t_train, s_train, t_test, s_test)

    init_norm = metrics.first_layer_norm(build_model("mlp", data.input_shape, data.num_classes, seed=train_config.seed,
                                        hidden=hidden))  # the weights before training (same seed, same start)
    # the tracked numbers depend on the teacher and the sample even for the labels-only student
    tracker = Tracker(f"fidelity to {model_identity(teacher)} on {len(idx)} training images", fidelity)
    trained = train_model("mlp", data, train_config, teacher=None if labels_only else teacher, track=tracker,
                          use_cache=use_cache, progress=progress, hidden=hidden,
                          label=f"fidelity: {name} {method} jitter={config.jitter} seed={config.seed}")
    return FidelityRun(name, hidden, method, config.jitter, config.seed, trained.history, trained.model, trained.key,
                       trained.seconds, trained.cached, init_norm)


def fidelity_metrics(teacher_train: Tensor, student_train: Tensor, teacher_test: Tensor,
                     student_test: Tensor) -> dict[str, float]:
    """Agreement and KL(teacher ‖ student) at T = 1 on train and test; logits (N, C) each."""
    return {
        "train_agreement": metrics.agreement(student_train, teacher_train),
        "test_agreement": metrics.agreement(student_test, teacher_test),
        "train_kl": metrics.mean_kl(teacher_train, student_train),
        "test_kl": metrics.mean_kl(teacher_test, student_test),
    }


# --------------------------------------------------------------------------------------------
# The lesson's grid


@dataclass
class FidelityStudy:
    """Every run of :func:`fidelity_study` plus the teachers' own numbers."""

    runs: list[FidelityRun] = field(default_factory=list)
    teacher_rows: list[dict] = field(default_factory=list)

    def rows(self) -> list[dict]:
        """Tidy rows, one per (run, epoch): ``condition``, ``student``, ``method``, ``jitter``,
        ``seed``, ``epoch``, ``test_acc`` and :data:`FIDELITY_METRICS`."""
        out = []
        for run in self.runs:
            for h in run.history:
                out.append({"condition": run.condition, "student": run.student, "method": run.method,
                            "jitter": run.jitter, "seed": run.seed, "epoch": h["epoch"], "test_acc": h["test_acc"],
                            **{m: h[m] for m in FIDELITY_METRICS}})
        return out

    def final(self) -> list[dict]:
        """The last epoch's row of every run."""
        last = {}
        for row in self.rows():
            last[(row["condition"], row["seed"])] = row
        return list(last.values())

    @property
    def conditions(self) -> list[str]:
        return list(dict.fromkeys(run.condition for run in self.runs))

    @property
    def seeds(self) -> list[int]:
        return sorted({run.seed for run in self.runs})

    @property
    def epochs(self) -> int:
        return max(len(run.history) for run in self.runs)

    def curves(self) -> dict[str, dict[str, np.ndarray]]:
        """Per condition and metric, the mean over seeds per epoch: ``{condition: {metric: (E,)}}``
        (what the panel reads; computed once)."""
        out: dict[str, dict[str, np.ndarray]] = {}
        for cond in self.conditions:
            mine = [r for r in self.runs if r.condition == cond]
            out[cond] = {m: np.mean([[h[m] for h in r.history] for r in mine], axis=0)
                         for m in ("test_acc", *FIDELITY_METRICS)}
        return out


def fidelity_study(
    data: Data, teachers: Mapping[int, Trained], students: Mapping[str, Sequence[int]], jitters: Sequence[int],
    config: TrainConfig, labels_only: bool = True, n_fidelity: int | None = 5000, progress: bool | None = None,
) -> FidelityStudy:
    """For each teacher seed, each student and each jitter: distil and measure every epoch
    (:func:`distil_with_fidelity`); with ``labels_only``, also each student trained on the labels
    (jitter 0) as the reference of an independently trained network. Students of one seed start
    from the same weights whatever the condition (student seed = lesson seed)."""
    if not teachers:
        raise ValueError("teachers is empty; train them with train_teachers(data, seeds, RECIPES('teacher', fast))")
    if not students:
        raise ValueError("students is empty; give {name: hidden}, e.g. {'30-30': (30, 30)}")
    hiddens = {name: check_hidden(h, f"students[{name!r}]") for name, h in students.items()}
    jitter_list = list(jitters)
    if not jitter_list or any(isinstance(j, bool) or not isinstance(j, int) or j < 0 for j in jitter_list):
        raise ValueError(f"jitters must be a non-empty list of non-negative integers (pixels), got {jitters!r}")
    check_config(config, "config")
    total = len(teachers) * len(hiddens) * (len(jitter_list) + int(labels_only))
    bar = RunProgress(total, "students", progress, None)
    study = FidelityStudy()
    for seed, teacher in teachers.items():
        study.teacher_rows.append({"seed": seed, "teacher": mlp_name(tuple(teacher.model.spec["hidden"]), data),
                                   "test_acc": teacher.final("test_acc"), "val_acc": teacher.final("val_acc")})
        for hidden in hiddens.values():
            for jitter in jitter_list:
                study.runs.append(distil_with_fidelity(data, teacher, hidden, config.replace(seed=seed, jitter=jitter),
                                                       n_fidelity=n_fidelity, progress=False))
                bar.step(f"{mlp_name(hidden, data)} jitter {jitter}, seed {seed}")
            if labels_only:
                study.runs.append(distil_with_fidelity(data, teacher, hidden, config.replace(seed=seed, jitter=0),
                                                       labels_only=True, n_fidelity=n_fidelity, progress=False))
                bar.step(f"{mlp_name(hidden, data)} labels only, seed {seed}")
    bar.close()
    return study


def same_start(study: FidelityStudy) -> list[str]:
    """Per (student, seed): the first-layer norm before training of every run — one number means
    every condition started from identical weights."""
    groups: dict[str, list[float]] = {}
    for run in study.runs:
        groups.setdefault(f"{run.student}, seed {run.seed}", []).append(run.init_norm)
    return stats.same_start(groups, what="first-layer norm")


# --------------------------------------------------------------------------------------------
# Summaries and the decoupling


SUMMARY_METRICS = (("test_acc", "test accuracy"), ("test_agreement", "test agreement"),
                   ("train_agreement", "train agreement"), ("test_kl", "test KL(t‖s)"), ("train_kl", "train KL(t‖s)"))


def summary_rows(final_rows: Sequence[Mapping], teacher_rows: Sequence[Mapping] | None = None) -> list[dict]:
    """One line per condition: every metric as mean ± std over seeds (strings, for a table).
    With ``teacher_rows``, a first line for the teachers' test accuracy."""
    if not final_rows:
        raise ValueError("final_rows is empty: run fidelity_study first")
    lines = []
    if teacher_rows:
        t = summarize(teacher_rows, ["teacher"])[0]
        lines.append({"condition": f"teacher {t['teacher']}", "test accuracy": _pm(t, True),
                      **{title: "" for m, title in SUMMARY_METRICS[1:]}})
    for cond in dict.fromkeys(r["condition"] for r in final_rows):
        mine = [r for r in final_rows if r["condition"] == cond]
        line = {"condition": cond}
        for metric, title in SUMMARY_METRICS:
            line[title] = _pm(summarize(mine, ["condition"], metric)[0], "kl" not in metric)
        lines.append(line)
    return lines


def _pm(stat: Mapping, percent: bool) -> str:
    """A :func:`labkd.stats.summarize` group as mean ± seed spread: percent, or KL in nats."""
    spread = stat["std"] if stat["n"] > 1 else None
    return stats.pm(stat["mean"], spread) if percent else stats.pm(stat["mean"], spread, scale=1, digits=4, unit="")


def decoupled_pairs(final_rows: Sequence[Mapping], metric: str = "test_agreement") -> list[dict]:
    """Pairs of conditions (A, B) where A generalizes better (higher test accuracy) but B is more
    faithful (higher ``metric``; for a ``*_kl`` metric, lower KL). Each dict: ``better_acc`` (A),
    ``more_faithful`` (B), the two differences, ``acc_verdict``/``fidelity_verdict`` (from
    :func:`labkd.stats.compare`) and ``significant`` (both differences beyond the
    seed spread). Sorted with the significant pairs first, then by the size of the disagreement."""
    if not final_rows:
        raise ValueError("final_rows is empty: run fidelity_study first")
    if metric not in FIDELITY_METRICS:
        raise ValueError(f"metric={metric!r} is unknown; expected one of {FIDELITY_METRICS}")
    lower_is_better = metric.endswith("_kl")
    by = {}
    for r in final_rows:
        by.setdefault(r["condition"], {"acc": [], "fid": []})
        by[r["condition"]]["acc"].append(r["test_acc"])
        by[r["condition"]]["fid"].append(-r[metric] if lower_is_better else r[metric])
    out = []
    names = list(by)
    for a in names:
        for b in names:
            if a == b:
                continue
            acc = compare(by[a]["acc"], by[b]["acc"], a, b)
            fid = compare(by[b]["fid"], by[a]["fid"], b, a)
            if acc["difference"] > 0 and fid["difference"] > 0:
                out.append({"better_acc": a, "more_faithful": b, "acc_difference": acc["difference"],
                            "fidelity_difference": fid["difference"], "acc_verdict": acc["verdict"],
                            "fidelity_verdict": fid["verdict"], "significant": acc["significant"] and fid["significant"]})
    return sorted(out, key=lambda p: (not p["significant"], -min(p["acc_difference"], p["fidelity_difference"])))


def decoupling_sentences(final_rows: Sequence[Mapping], metric: str = "test_agreement", limit: int = 3) -> list[str]:
    """The strongest pairs of :func:`decoupled_pairs` in words, stating whether they exceed the
    seed spread (one seed: no claim)."""
    pairs = decoupled_pairs(final_rows, metric)
    name = METRIC_NAMES[metric]
    if not pairs:
        worse = f"higher {name}" if metric.endswith("_kl") else f"lower {name}"
        return [f"No pair of conditions where better accuracy comes with {worse} (less fidelity): "
                f"by {name}, fidelity and generalization rank the conditions the same way."]
    acc = {s["condition"]: s for s in summarize(final_rows, ["condition"])}
    fstats = {s["condition"]: s for s in summarize(final_rows, ["condition"], metric)}
    n = min(s["n"] for s in acc.values())
    lines = []
    for p in pairs[:limit]:
        a, b = p["better_acc"], p["more_faithful"]
        fmt = (lambda v: f"{v:.4f}") if metric.endswith("_kl") else (lambda v: f"{v:.2%}")
        text = (f"{a}: test accuracy {acc[a]['mean']:.2%}, {name} {fmt(fstats[a]['mean'])} — "
                f"{b}: {acc[b]['mean']:.2%}, {fmt(fstats[b]['mean'])}. ")
        if n < 2:
            text += "One seed: no claim either way."
        elif p["significant"]:
            text += "Both differences exceed twice their standard error: the first generalizes better, the second copies its teacher better."
        else:
            text += "At least one of the two differences is within the seed spread."
        lines.append(text)
    return lines


def reading(study: FidelityStudy) -> str:
    """A few sentences on this run's main fidelity numbers (self-distillation at jitter 0)."""
    final = study.final()
    distilled = [r for r in final if r["method"] == "distilled"]
    if not distilled:
        return "No distilled students in this study."
    best = max(summarize(distilled, ["condition"], "test_agreement"), key=lambda s: s["mean"])
    train = summarize([r for r in distilled if r["condition"] == best["condition"]], ["condition"], "train_agreement")[0]
    n = best["n"]
    text = (f"The most faithful student ({best['condition']}) agrees with its teacher on {best['mean']:.2%} of the test "
            f"images and {train['mean']:.2%} of the training images ({n} seed{'s' if n > 1 else ''}).")
    independent = [r for r in final if r["method"] == LABELS_ONLY]
    if independent:
        ind = max(summarize(independent, ["condition"], "test_agreement"), key=lambda s: s["mean"])
        text += (f" A network of the same kind trained on the labels alone agrees on {ind['mean']:.2%} "
                 f"({ind['condition']}).")
    if train["mean"] < 0.999:
        text += " Even on the images it was distilled on, the student does not reproduce every teacher decision."
    return text


def _stat(rows: Sequence[Mapping], metric: str) -> dict | None:
    return summarize(rows, ["condition"], metric)[0] if rows else None


def findings(study: FidelityStudy) -> list[dict]:
    """The paper's three claims beside this run's numbers: ``claim``, ``paper``, ``this run``
    (for :func:`labkd.plots.findings_table`). Differences are judged against the seed
    spread; with one seed nothing is claimed."""
    final = study.final()
    distilled = [r for r in final if r["method"] == "distilled"]
    if not distilled:
        raise ValueError("the study has no distilled students")
    students = list(dict.fromkeys(r["student"] for r in distilled))
    jitters = sorted({r["jitter"] for r in distilled})
    out = []
    # 1. self-distillation (the largest student, the first jitter) does not copy the teacher
    same = [r for r in distilled if r["student"] == students[0] and r["jitter"] == jitters[0]]
    test, train = _stat(same, "test_agreement"), _stat(same, "train_agreement")
    out.append({
        "claim": "a student does not copy its teacher, even one of the same size",
        "paper": "a large gap between teacher and student predictions, even when the student could match the "
                 "teacher exactly; optimisation difficulty is the main reason",
        "this run": f"{same[0]['condition']}: agrees on {test['mean']:.2%} of test and {train['mean']:.2%} of the "
                    f"distillation images; KL(t‖s) test {_stat(same, 'test_kl')['mean']:.4f}",
    })
    # 2. the distillation data (jitter) changes how closely the student follows
    lines = []
    if len(jitters) > 1:
        for student in students:
            lo = [r for r in distilled if r["student"] == student and r["jitter"] == jitters[0]]
            hi = [r for r in distilled if r["student"] == student and r["jitter"] == jitters[-1]]
            for metric, label in (("test_agreement", "test agreement"), ("test_acc", "test accuracy")):
                c = compare([r[metric] for r in hi], [r[metric] for r in lo])
                spread = ("one seed: no claim" if len(lo) < 2 else
                          "beyond the seed spread" if c["significant"] else "within the seed spread")
                lines.append(f"{student}: jitter {jitters[-1]} vs {jitters[0]} changes {label} by "
                             f"{c['difference'] * 100:+.2f} points ({spread})")
    out.append({
        "claim": "the data used for distillation changes fidelity",
        "paper": "the details of the distillation data set decide how closely the student matches the teacher",
        "this run": "<br>".join(lines) if lines else "only one jitter setting was run",
    })
    # 3. more fidelity does not always mean better generalization (on the test or the distillation images)
    n = min(s["n"] for s in summarize(final, ["condition"]))
    parts = []
    for metric, where in (("train_agreement", "distillation images"), ("test_agreement", "test images")):
        pairs = decoupled_pairs(final, metric)
        significant = [p for p in pairs if p["significant"]]
        if n < 2:
            parts.append(f"agreement on {where}: {len(pairs)} pair(s) of conditions rank differently by accuracy and "
                         f"by agreement; one seed: no claim")
        elif significant:
            # prefer a pair of distilled students: a labels-only network agrees on the training
            # images simply because it fitted the same labels as the teacher
            both = [q for q in significant if LABELS_ONLY not in q["better_acc"] + q["more_faithful"]]
            p = (both or significant)[0]
            parts.append(f"agreement on {where}: {len(significant)} pair(s) beyond the seed spread, e.g. "
                         f"{p['better_acc']} is more accurate ({p['acc_difference'] * 100:+.2f} points) but "
                         f"{p['more_faithful']} agrees more ({p['fidelity_difference'] * 100:+.2f} points)")
        else:
            parts.append(f"agreement on {where}: {len(pairs)} pair(s) rank differently, none beyond the seed spread "
                         f"in both numbers")
    out.append({"claim": "closer to the teacher is not always better",
                "paper": "more closely matching the teacher paradoxically does not always lead to better student "
                         "generalization", "this run": "<br>".join(parts)})
    return out


# --------------------------------------------------------------------------------------------
# Image by image: where does a student disagree with its teacher, and why? (lesson 09's panel)

#: The five kinds of test image, by who is right (the order of :func:`image_kinds`' codes).
KINDS = ("both right", "only the teacher right", "only the student right", "both wrong, same class",
         "both wrong, different classes")


def image_kinds(teacher_logits: Tensor, student_logits: Tensor, labels: Tensor) -> dict[str, np.ndarray]:
    """Per test image: ``kind`` (an index into :data:`KINDS`), ``kl_bits`` (KL(p ‖ q) at T = 1 in
    bits, p the teacher's softmax, q the student's), ``teacher_conf`` (the teacher's top
    probability), ``teacher_margin`` (its top-two probability gap), ``teacher_pred``,
    ``student_pred``. Shapes (N, C), (N, C), (N,)."""
    from labkd.losses import check_pair

    check_pair(student_logits, teacher_logits)
    if not isinstance(labels, Tensor) or labels.shape != teacher_logits.shape[:1]:
        raise ValueError(f"labels must be a tensor of shape ({teacher_logits.shape[0]},), got "
                         f"{tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__}")
    t_logp = torch.log_softmax(teacher_logits.float(), dim=1)
    s_logp = torch.log_softmax(student_logits.float(), dim=1)
    p = t_logp.exp()
    top2 = p.topk(2, dim=1).values
    t, s = teacher_logits.argmax(1), student_logits.argmax(1)
    t_ok, s_ok = t == labels, s == labels
    kind = torch.where(t_ok & s_ok, 0, torch.where(t_ok, 1, torch.where(s_ok, 2, torch.where(t == s, 3, 4))))
    return {"kind": kind.numpy(), "kl_bits": ((p * (t_logp - s_logp)).sum(1) / math.log(2)).numpy(),
            "teacher_conf": top2[:, 0].numpy(), "teacher_margin": (top2[:, 0] - top2[:, 1]).numpy(),
            "teacher_pred": t.numpy(), "student_pred": s.numpy()}


def test_logits(study: FidelityStudy, teachers: Mapping[int, Trained], data: Data
                ) -> tuple[dict[int, Tensor], dict[tuple[str, int], Tensor]]:
    """The teachers' (by seed) and every student's (by condition and seed) logits on
    ``data.test``, computed once for :class:`labkd.widgets.fidelity.DisagreementPanel`."""
    teacher_out = {s: metrics.predict_logits(t.model, data.test.x) for s, t in teachers.items()}
    student_out = {(r.condition, r.seed): metrics.predict_logits(r.model, data.test.x) for r in study.runs}
    return teacher_out, student_out
