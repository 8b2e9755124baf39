r"""Three kinds of knowledge, one student: response-, feature- and relation-based distillation.

Lesson 11 trains one small CNN student four ways from one CNN teacher, all with
:func:`labkd.train.fit` (only ``TrainConfig.loss`` and its settings change):

==============  =========  ===================================================================
method          family     objective
==============  =========  ===================================================================
labels only     —          cross-entropy
KD              response   Hinton's :func:`labkd.losses.distillation_loss` (T and α chosen)
AT              feature    CE + β · :func:`labkd.feature_losses.attention_transfer_loss`
RKD             relation   CE + β · :func:`labkd.feature_losses.rkd_loss` (distances + angles)
==============  =========  ===================================================================

(``"KD + AT"`` and ``"KD + RKD"`` add the feature term to KD instead of the cross-entropy.)

**The regime** (:func:`plan`, :data:`RECIPES`). A teacher can only pass on what it knows better
than the student, so the lesson works where distillation matters: Fashion-MNIST; the teacher
learns from ``teacher_images`` training images until it has converged; the students learn from
only ``n_train`` of those images (no jitter), where labels alone leave them far below the teacher.

**The protocol** (:mod:`labkd.stats`). Each method's settings (T and α for KD, β for AT and RKD)
are chosen from :data:`GRID` on the *validation* split with the development seeds
(:func:`select_settings`); the chosen settings are then run on fresh, paired seeds
(:func:`train_students`: every method of one seed starts from the same weights and sees the same
batches) and judged on the *test* split (:func:`claims`).

>>> run = plan(fast)
>>> teacher = train_teacher(data, run)
>>> students = student_data(data, run)
>>> chosen = select_settings(students, teacher, run)               # validation, DEV_SEEDS
>>> rows = train_students(students, teacher, METHODS_DEFAULT, run.seeds, run.student, chosen.settings,
...                       test=data.test)
>>> for c in claims(rows):
...     print(c.verdict)

Each row also says how closely the student matches the teacher in each kind of knowledge
(:func:`probe`): soft targets (KL), attention maps (AT distance) and relations (RKD distance).
The closing lesson (13) uses :func:`course_methods`, :func:`literature`, :func:`recorded_results`
and :func:`speed_table`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor, nn

from labkd import feature_losses, losses, metrics, stats
from labkd.checks import check_positive_int, check_seeds
from labkd.data import Data, Split
from labkd.experiments import Trained, train_model
from labkd.models import BlockModel, build_model, num_parameters
from labkd.threads import fixed_threads
from labkd.train import TrainConfig

#: The lesson's dataset: harder than MNIST, so a small student trained on few images stays well
#: below a converged teacher.
DATASET = "fashion_mnist"
#: The teacher: three conv layers (16, 32, 64 channels); the student: the same layout at half
#: the width (8, 16, 32), a quarter of the parameters. Both end in 7x7 maps on 28x28 images.
TEACHER_ARCH, TEACHER_OPTIONS = "cnn", {"channels": (16, 32, 64)}
STUDENT_ARCH, STUDENT_OPTIONS = "cnn", {"channels": (8, 16, 32)}
#: The layers compared by AT and RKD: the last conv layer of each network. RKD pools them to
#: embeddings (what the heads see).
HINT_LAYER = "conv3"
GUIDED_LAYER = "conv3"
#: Temperature at which :func:`probe` compares soft targets.
PROBE_TEMPERATURE = 4.0
#: Seeds used to choose each method's settings on the validation split; the claims are
#: confirmed on fresh seeds (``100 + seed`` ...), never these.
DEV_SEEDS = (0, 1)
FRESH_SEED_OFFSET = 100

#: The recipes, as data. The teacher trains on ``Plan.teacher_images`` images, the students on
#: ``Plan.n_train``; every method changes only the student recipe's loss and its settings.
RECIPES: dict[str, TrainConfig] = {
    "teacher": TrainConfig(epochs=12, batch_size=128, lr=0.05),
    "student": TrainConfig(epochs=30, batch_size=64, lr=0.05),
}
#: Fast mode (tests): the same recipes, shortened.
FAST_RECIPES: dict[str, TrainConfig] = {
    "teacher": RECIPES["teacher"].replace(epochs=2, batch_size=64),
    "student": RECIPES["student"].replace(epochs=2, batch_size=32),
}
#: Data sizes: images the teacher and the students learn from, validation images (the
#: selection), test images evaluated after every epoch (``fit``'s curve; the final test accuracy
#: of :func:`train_students` uses the whole test split).
SIZES = {"teacher_images": 20000, "n_train": 1000, "n_val": 1000, "n_monitor": 200}
FAST_SIZES = {"teacher_images": None, "n_train": 500, "n_val": None, "n_monitor": 200}


@dataclass(frozen=True)
class Method:
    """One way of training the student: its knowledge ``family``, the config changes, and the
    settings a grid may vary (``tunable``)."""

    name: str
    family: str
    changes: Mapping[str, object]
    matches: str
    tunable: tuple[str, ...] = ()

    def config(self, base: TrainConfig, settings: Mapping[str, float] | None = None, *,
               beta: float | None = None) -> TrainConfig:
        """``base`` (the students' recipe, seed included) with this method's loss and ``settings``
        (e.g. ``{"temperature": 4, "alpha": 0.9}``); ``beta`` is short for ``feature_weight``."""
        if not isinstance(base, TrainConfig):
            raise TypeError(f"base must be a TrainConfig (the students' recipe), got {type(base).__name__}")
        if settings is not None and not isinstance(settings, Mapping):
            raise TypeError(f"settings must be a dict such as {{'temperature': 4.0}}, got {type(settings).__name__}")
        settings = dict(settings or {})
        if beta is not None:
            settings["feature_weight"] = beta
        wrong = sorted(set(settings) - set(self.tunable))
        if wrong:
            allowed = ", ".join(self.tunable) or "none"
            raise ValueError(f"settings {wrong} do not apply to {self.name!r} (it takes: {allowed})"
                             + ("; beta only applies to feature or relation methods" if "feature_weight" in wrong else ""))
        for key, value in settings.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"settings[{key!r}] must be a finite number, got {value!r}")
        return base.replace(**{**self.changes, **{k: float(v) for k, v in settings.items()}})


def _feature(name: str, alpha: float) -> dict:
    entry = feature_losses.get(name)
    return {"loss": "feature_kd", "alpha": alpha, "feature_loss": name, "feature_weight": entry.weight,
            "hint_layer": HINT_LAYER, "guided_layer": GUIDED_LAYER}


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("labels only", "none", {"loss": "cross_entropy"}, "the labels"),
    Method("KD", "response", {"loss": "distillation"}, "the teacher's softened outputs",
           ("temperature", "alpha")),
    Method("AT", "feature", _feature("attention", 0.0), "where the teacher's last conv layer is active",
           ("feature_weight",)),
    Method("RKD", "relation", _feature("rkd", 0.0), "distances and angles between examples' embeddings",
           ("feature_weight",)),
    Method("KD + AT", "response + feature", _feature("attention", 0.9), "soft outputs and attention maps",
           ("temperature", "alpha", "feature_weight")),
    Method("KD + RKD", "response + relation", _feature("rkd", 0.9), "soft outputs and relations",
           ("temperature", "alpha", "feature_weight")),
)}
METHODS_DEFAULT = ("labels only", "KD", "AT", "RKD")

#: The settings tried for each method on the validation split (small grids: CPU budget).
#: β spans two decades up to about the papers' weights in our units (AT: 1000/2 on a mean over
#: the 7x7 positions ≈ 10 here; RKD: 25 for distances); while building the lesson, β = 10 made
#: both AT and RKD students worse than labels alone on validation (:data:`REGIMES_TRIED`).
GRID: dict[str, tuple[dict, ...]] = {
    "labels only": ({},),
    "KD": tuple({"temperature": t, "alpha": a} for t in (2.0, 4.0, 8.0) for a in (0.5, 0.9)),
    "AT": tuple({"feature_weight": b} for b in (0.1, 1.0, 10.0)),
    "RKD": tuple({"feature_weight": b} for b in (0.1, 1.0, 10.0)),
    "KD + AT": tuple({"feature_weight": b} for b in (0.1, 1.0, 10.0)),
    "KD + RKD": tuple({"feature_weight": b} for b in (0.1, 1.0, 10.0)),
}

COLOURS = {"labels only": "#7f7f7f", "KD": "#1f77b4", "AT": "#2ca02c", "RKD": "#9467bd",
           "KD + AT": "#17becf", "KD + RKD": "#e377c2", "teacher": "#d62728"}
#: The three kinds of knowledge :func:`probe` measures, with the column names it uses.
PROBES = {"kl": f"soft targets: KL(T={PROBE_TEMPERATURE:g})", "attention": "attention maps: AT distance",
          "relation": "relations: RKD-D distance"}

#: The lesson's claims: (text, treatment, control, the paper's sign). 11b is judged per method
#: (either sign counts: the papers report gains over KD in other settings, we report what we find).
CLAIMS: tuple[tuple[str, str, str, int], ...] = (
    ("(11a) KD beats labels only with the lesson's teacher", "KD", "labels only", +1),
    ("(11b) attention transfer (Zagoruyko & Komodakis 2017) differs from KD", "AT", "KD", 0),
    ("(11b) RKD (Park et al. 2019) differs from KD", "RKD", "KD", 0),
)


def check_methods(methods: Sequence[str]) -> list[str]:
    """``methods`` as a list of known method names; ``ValueError`` naming ``methods`` otherwise."""
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown or len(set(methods)) != len(methods):
        raise ValueError(f"methods must be a non-empty list of distinct names from {tuple(METHODS)}; got {methods!r}")
    return methods


def _model(model: nn.Module | Trained) -> BlockModel:
    return model.model if isinstance(model, Trained) else model


def methods_table(methods: Sequence[str] = METHODS_DEFAULT) -> list[dict]:
    """Rows describing ``methods``: family, what the student is asked to match, the TrainConfig
    changes and the settings chosen on validation."""
    rows = []
    for name in check_methods(methods):
        m = METHODS[name]
        changes = ", ".join(f"{k}={v!r}" for k, v in m.changes.items()
                            if k not in ("hint_layer", "guided_layer", "feature_weight"))
        rows.append({"method": name, "family": m.family, "the student matches": m.matches, "TrainConfig": changes,
                     "chosen on validation": ", ".join(m.tunable) or "—"})
    return rows


#: What the papers report, in words (their settings are far from ours: see lesson 11's "What we found").
PAPER_CLAIMS: list[dict] = [
    {"method": "KD", "paper": "Hinton et al. 2015 (§3, §4)", "setting": "MNIST MLPs; speech recognition",
     "claim": "the distilled student gets much of the teacher's (or an ensemble's) gain over training on labels"},
    {"method": "AT", "paper": "Zagoruyko & Komodakis 2017 (§4)",
     "setting": "CIFAR-10 wide ResNets; ImageNet ResNet-34 → 18",
     "claim": "consistent gains over the student alone, about 1 point of top-1 error on ImageNet; AT and KD add up"},
    {"method": "RKD", "paper": "Park et al. 2019 (§4.1, §4.2)",
     "setting": "metric learning (CUB-200, Cars-196); CIFAR-100, Tiny ImageNet",
     "claim": "students taught by RKD beat their teachers at image retrieval; in classification RKD helps most "
              "combined with KD"},
]


# --------------------------------------------------------------------------------------------
# The regime


@dataclass(frozen=True)
class Plan:
    """How big the lesson's experiment is, and with which recipes and seeds.

    ``teacher_images``/``n_train``: training images of the teacher and of the students (None:
    all); ``n_val``: validation images (the selection); ``n_monitor``: test images ``fit``
    evaluates after every epoch (the final test accuracy uses the whole test split).
    """

    teacher_images: int | None
    n_train: int | None
    n_val: int | None
    n_monitor: int | None
    teacher: TrainConfig
    student: TrainConfig
    dev_seeds: tuple[int, ...]
    seeds: tuple[int, ...]
    grid: Mapping[str, tuple[dict, ...]]


def plan(fast: bool, seed: int = 0, n_seeds: int = stats.MIN_SEEDS, n_train: int | None = None,
         epochs: int | None = None, dev_seeds: Sequence[int] | None = None) -> Plan:
    """The experiment. Full mode: :data:`SIZES` and :data:`RECIPES`, the development seeds
    :data:`DEV_SEEDS` and ``n_seeds`` fresh seeds from ``100 + seed``. Fast mode (tests):
    :data:`FAST_SIZES`, :data:`FAST_RECIPES`, one development seed, one fresh seed and the
    first setting of each grid.

    ``n_train`` and ``epochs`` override the students' images and epochs.
    """
    if not isinstance(fast, bool):
        raise TypeError(f"fast must be True or False, got {fast!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    check_positive_int(n_seeds, "n_seeds")
    if n_train is not None:
        check_positive_int(n_train, "n_train")
    if epochs is not None:
        check_positive_int(epochs, "epochs")
    sizes, recipes = (FAST_SIZES, FAST_RECIPES) if fast else (SIZES, RECIPES)
    if dev_seeds is None:
        dev_seeds = DEV_SEEDS[:1] if fast else DEV_SEEDS
    dev_seeds = tuple(check_seeds(dev_seeds))
    seeds = stats.fresh_seeds(FRESH_SEED_OFFSET + seed, 1 if fast else n_seeds, development=dev_seeds)
    student = recipes["student"] if epochs is None else recipes["student"].replace(epochs=epochs)
    grid = {m: g[:1] for m, g in GRID.items()} if fast else dict(GRID)
    return Plan(teacher_images=sizes["teacher_images"], n_train=n_train or sizes["n_train"], n_val=sizes["n_val"],
                n_monitor=sizes["n_monitor"], teacher=recipes["teacher"], student=student,
                dev_seeds=dev_seeds, seeds=tuple(seeds), grid=grid)


def _cut(n: int | None, split: Split) -> int | None:
    return n if n is not None and n < len(split) else None


def teacher_data(data: Data, run: Plan) -> Data:
    """The teacher's data: the first ``run.teacher_images`` training images (of a seeded order),
    ``run.n_val`` validation images and ``run.n_monitor`` test images for its curve."""
    return data.subset(n_train=_cut(run.teacher_images, data.train), n_val=_cut(run.n_val, data.val),
                       n_test=_cut(run.n_monitor, data.test))


def student_data(data: Data, run: Plan) -> Data:
    """The students' data: the first ``run.n_train`` training images of the same seeded order
    (so they are among the teacher's), the same validation images and test images for the curves."""
    if run.n_train is not None and run.n_train > len(data.train):
        raise ValueError(f"n_train={run.n_train} is larger than the {len(data.train)} training images")
    return data.subset(n_train=_cut(run.n_train, data.train), n_val=_cut(run.n_val, data.val),
                       n_test=_cut(run.n_monitor, data.test))


def build_teacher(data: Data, seed: int = 0) -> BlockModel:
    """An untrained teacher (:data:`TEACHER_OPTIONS`), e.g. to read its shapes."""
    return build_model(TEACHER_ARCH, data.input_shape, data.num_classes, seed=seed, **TEACHER_OPTIONS)


def build_student(data: Data, seed: int = 0) -> BlockModel:
    """An untrained student (:data:`STUDENT_OPTIONS`); every method of one seed starts from it."""
    return build_model(STUDENT_ARCH, data.input_shape, data.num_classes, seed=seed, **STUDENT_OPTIONS)


def train_teacher(data: Data, run: Plan, seed: int = 0, progress: bool | None = None) -> Trained:
    """The teacher, trained on :func:`teacher_data` with ``run.teacher`` (cached)."""
    tdata = teacher_data(data, run)
    return train_model(TEACHER_ARCH, tdata, run.teacher.replace(seed=seed), progress=progress,
                       label=f"taxonomy lesson: teacher {TEACHER_OPTIONS} seed={seed} on {data.name}, "
                             f"{len(tdata.train)} images", **TEACHER_OPTIONS)


def test_accuracy(model: nn.Module | Trained, split: Split) -> float:
    """Top-1 accuracy of ``model`` on every image of ``split`` (eval mode)."""
    logits = metrics.predict_logits(_model(model), split.x)
    return metrics.accuracy(logits, split.y)


def train_student(data: Data, teacher: nn.Module | Trained, method: str, config: TrainConfig,
                  settings: Mapping[str, float] | None = None, beta: float | None = None,
                  progress: bool | None = None) -> Trained:
    """The student trained by ``method`` (a key of :data:`METHODS`) with the recipe ``config``
    (seed included) and ``settings`` (T, α, β; see :meth:`Method.config`); cached. Every method of
    one seed starts from the same weights and sees the same batches."""
    m = METHODS[check_methods([method])[0]]
    cfg = m.config(config, settings, beta=beta)
    described = ", ".join(f"{k}={v:g}" for k, v in (settings or {}).items()) or "defaults"
    return train_model(STUDENT_ARCH, data, cfg, teacher=None if cfg.loss == "cross_entropy" else teacher,
                       progress=progress, label=f"taxonomy lesson: student {method} ({described}) seed={cfg.seed} "
                                            f"on {data.name}, {len(data.train)} images", **STUDENT_OPTIONS)


# --------------------------------------------------------------------------------------------
# Choosing each method's settings on validation


def setting_label(settings: Mapping[str, float]) -> str:
    """``{"temperature": 4, "alpha": 0.9}`` -> ``"T=4, α=0.9"``."""
    names = {"temperature": "T", "alpha": "α", "feature_weight": "β"}
    return ", ".join(f"{names.get(k, k)}={v:g}" for k, v in settings.items()) or "—"


@dataclass
class Selection:
    """The validation runs of :func:`select_settings` and the settings chosen per method.

    ``rows``: one per (method, setting, development seed) with ``val_acc``; ``settings``: the
    chosen settings per method (the highest mean validation accuracy over the seeds).
    """

    rows: list[dict]
    settings: dict[str, dict]
    seeds: tuple[int, ...]

    def table(self) -> list[dict]:
        """One row per (method, setting): mean ± std validation accuracy over the development
        seeds, and which setting was chosen."""
        out = []
        for method in dict.fromkeys(r["method"] for r in self.rows):
            for label in dict.fromkeys(r["setting"] for r in self.rows if r["method"] == method):
                values = [r["val_acc"] for r in self.rows if r["method"] == method and r["setting"] == label]
                out.append({"method": method, "setting": label, "seeds": len(values),
                            "validation accuracy": stats.pm_values(values),
                            "chosen": "✓" if setting_label(self.settings[method]) == label else ""})
        return out


def select_settings(data: Data, teacher: nn.Module | Trained, run: Plan,
                    methods: Sequence[str] = METHODS_DEFAULT, grid: Mapping[str, Sequence[Mapping]] | None = None,
                    progress: bool | None = None, on_run: Callable[[str, str, int], None] | None = None) -> Selection:
    """Train every setting of ``grid`` (default ``run.grid``) for every method on the development
    seeds ``run.dev_seeds`` (cached) and choose, per method, the setting with the highest mean
    **validation** accuracy (ties: the first in the grid). The test split is not looked at."""
    methods = check_methods(methods)
    grid = run.grid if grid is None else grid
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must map method names to lists of settings, got {type(grid).__name__}")
    rows, chosen = [], {}
    for method in methods:
        options = list(grid.get(method, ()))
        if not options:
            raise ValueError(f"grid has no settings for method {method!r}; give at least one (e.g. {{}})")
        means = []
        for settings in options:
            values = []
            for seed in run.dev_seeds:
                trained = train_student(data, teacher, method, run.student.replace(seed=seed), settings,
                                        progress=progress)
                values.append(trained.final("val_acc"))
                rows.append({"method": method, "setting": setting_label(settings), "settings": dict(settings),
                             "seed": seed, "val_acc": trained.final("val_acc"), "seconds": trained.seconds})
                if on_run is not None:
                    on_run(method, setting_label(settings), seed)
            means.append(float(np.mean(values)))
        chosen[method] = dict(options[int(np.argmax(means))])
    return Selection(rows, chosen, tuple(run.dev_seeds))


# --------------------------------------------------------------------------------------------
# The comparison on fresh seeds


@torch.no_grad()
def embeddings(model: nn.Module | Trained, x: Tensor, layer: str) -> Tensor:
    """``model``'s ``layer`` output for images ``x``, pooled to (N, C) (eval mode, no gradient)."""
    model = _model(model)
    mode = model.training
    model.eval()
    with fixed_threads():
        _, feats = model.forward_features(x.to(next(model.parameters()).device), upto=layer)
    model.train(mode)
    return feature_losses.embed(feats[layer]).cpu()


@torch.no_grad()
def probe(student: nn.Module | Trained, teacher: nn.Module | Trained, x: Tensor,
          hint_layer: str = HINT_LAYER, guided_layer: str = GUIDED_LAYER,
          temperature: float = PROBE_TEMPERATURE, batch_size: int = 250) -> dict[str, float]:
    """How closely ``student`` matches ``teacher`` on images ``x`` (N, C, H, W), three ways:

    - ``kl``: KL(teacher‖student) of soft targets at ``temperature`` (response);
    - ``attention``: :func:`~labkd.feature_losses.attention_transfer_loss` at the layer pair (feature);
    - ``relation``: :func:`~labkd.feature_losses.rkd_distance_loss` of the pooled embeddings (relation),
      averaged over chunks of ``batch_size`` images (relations are measured within a batch).

    Lower is closer; 0 means identical. Eval mode; the models' modes are restored.
    """
    student, teacher = _model(student), _model(teacher)
    if not isinstance(x, Tensor) or x.ndim != 4 or len(x) < 2:
        raise ValueError(f"x must be a batch of at least 2 images (N, C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    check_positive_int(batch_size, "batch_size")
    losses.check_temperature(temperature)
    modes = (student.training, teacher.training)
    student.eval(), teacher.eval()
    device = next(student.parameters()).device
    teacher.to(device)
    sums = {"kl": 0.0, "attention": 0.0, "relation": 0.0}
    chunks = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
    chunks = [c for c in chunks if len(c) >= 2]
    with fixed_threads():
        for chunk in chunks:
            chunk = chunk.to(device)
            s_logits, s_feats = student.forward_features(chunk)
            t_logits, t_feats = teacher.forward_features(chunk)
            s, t = s_feats[guided_layer], t_feats[hint_layer]
            sums["kl"] += metrics.mean_kl(t_logits, s_logits, temperature) * len(chunk)
            sums["attention"] += float(feature_losses.attention_transfer_loss(s, t)) * len(chunk)
            sums["relation"] += float(feature_losses.rkd_distance_loss(feature_losses.embed(s),
                                                                       feature_losses.embed(t))) * len(chunk)
    student.train(modes[0]), teacher.train(modes[1])
    n = sum(len(c) for c in chunks)
    return {k: v / n for k, v in sums.items()}


def train_students(data: Data, teacher: nn.Module | Trained, methods: Sequence[str], seeds: Sequence[int],
                   config: TrainConfig, settings: Mapping[str, Mapping[str, float]] | None = None,
                   test: Split | None = None, n_probe: int = 1000, progress: bool | None = None,
                   on_run: Callable[[str, int], None] | None = None) -> list[dict]:
    """Train the student by every method for every seed (cached; ``settings[method]`` are the
    chosen T, α, β, default the method's defaults) and measure each one.

    ``test`` is the split the accuracies are measured on (default ``data.test``; the lesson passes
    the whole test split, while ``data.test`` holds the few images of the per-epoch curve).
    Returns one row per (method, seed): ``method``, ``family``, ``seed``, ``setting``,
    ``accuracy`` (on ``test``), ``val_acc``, ``agreement`` (top-1 agreement with the teacher on
    ``test``), ``seconds`` (training), ``curve`` (validation accuracy per epoch), ``params``,
    ``start_norm`` (first-layer weight norm before training: equal across the methods of one seed)
    and the three :func:`probe` distances on the first ``n_probe`` images of ``test``.
    """
    methods, seeds = check_methods(methods), check_seeds(seeds)
    settings = {} if settings is None else dict(settings)
    unknown = sorted(set(settings) - set(METHODS))
    if unknown:
        raise ValueError(f"settings has unknown methods {unknown}; expected names from {tuple(METHODS)}")
    if isinstance(n_probe, bool) or not isinstance(n_probe, int) or n_probe < 2:
        raise ValueError(f"n_probe must be an integer >= 2, got {n_probe!r}")
    test = data.test if test is None else test
    if not isinstance(test, Split):
        raise TypeError(f"test must be a labkd.data.Split (e.g. data.test), got {type(test).__name__}")
    teacher_model = _model(teacher)
    teacher_test = metrics.predict_logits(teacher_model, test.x)
    x_probe = test.x[:n_probe]
    rows = []
    for seed in seeds:
        start = build_student(data, seed=seed)
        norm = float(start.blocks["conv1"][0].weight.detach().norm())
        for method in methods:
            chosen = dict(settings.get(method, {}))
            trained = train_student(data, teacher, method, config.replace(seed=seed), chosen, progress=progress)
            logits = metrics.predict_logits(trained.model, test.x)
            rows.append({
                "method": method, "family": METHODS[method].family, "seed": seed, "setting": setting_label(chosen),
                "accuracy": metrics.accuracy(logits, test.y), "val_acc": trained.final("val_acc"),
                "agreement": metrics.agreement(logits, teacher_test), "seconds": round(trained.seconds, 1),
                "curve": [h["val_acc"] for h in trained.history], "params": num_parameters(trained.model),
                "start_norm": norm, **probe(trained, teacher_model, x_probe),
            })
            if on_run is not None:
                on_run(method, seed)
    return rows


def seed_students(data: Data, teacher: nn.Module | Trained, methods: Sequence[str], config: TrainConfig,
                  settings: Mapping[str, Mapping[str, float]] | None = None,
                  progress: bool | None = None) -> dict[str, Trained]:
    """``{method: student}`` for ``config.seed`` (cached: already trained by :func:`train_students`)."""
    settings = settings or {}
    return {m: train_student(data, teacher, m, config, settings.get(m), progress=progress)
            for m in check_methods(methods)}


def _values(rows: Sequence[Mapping], method: str, key: str = "accuracy") -> dict[int, float]:
    return {r["seed"]: r[key] for r in rows if r["method"] == method}


def claims(rows: Sequence[Mapping], claim_list: Sequence[tuple[str, str, str, int]] = CLAIMS) -> list[stats.Claim]:
    """The lesson's claims (:data:`CLAIMS`) judged by :func:`labkd.stats.claim` on the paired
    test accuracies of ``rows`` (from :func:`train_students`); claims whose methods were not run
    are left out. Each claim's ``extra`` holds the training seconds behind it."""
    out = []
    for text, treatment, control, expected in claim_list:
        a, b = _values(rows, treatment), _values(rows, control)
        if not a or not b:
            continue
        seeds = [s for s in a if s in b]
        if not seeds:
            raise ValueError(f"rows have no seed on which both {treatment!r} and {control!r} ran")
        seconds = sum(r["seconds"] for r in rows if r["method"] in (treatment, control) and r["seed"] in seeds)
        out.append(stats.claim(text, [a[s] for s in seeds], [b[s] for s in seeds], seeds, expected=expected,
                               treatment_name=treatment, control_name=control, seconds=round(float(seconds), 1)))
    return out


def same_start(rows: Sequence[Mapping]) -> list[str]:
    """:func:`labkd.stats.same_start` sentences: every method of one seed began from the same weights."""
    norms: dict[str, list[float]] = {}
    for r in rows:
        norms.setdefault(f"seed {r['seed']}", []).append(r["start_norm"])
    return stats.same_start(norms)


def summary(rows: Sequence[Mapping], probes: bool = True) -> list[dict]:
    """One row per method: test accuracy and agreement with the teacher (mean ± std over seeds,
    :func:`labkd.stats.pm_values`), mean training seconds, and (``probes=True``) the probes' means."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        out.append({
            "method": method, "family": mine[0]["family"], "setting": mine[0].get("setting", ""),
            "seeds": len(mine), "test accuracy": stats.pm_values([r["accuracy"] for r in mine]),
            "agreement with teacher": stats.pm_values([r["agreement"] for r in mine]),
            "train seconds": round(float(np.mean([r["seconds"] for r in mine])), 1),
            **({PROBES[k]: round(float(np.mean([r[k] for r in mine])), 4) for k in PROBES} if probes else {}),
        })
    return out


def key_results(rows: Sequence[Mapping]) -> dict[str, object]:
    """The numbers lesson 11 records (:func:`labkd.results.record`): per method the mean test
    accuracy and agreement (%), and which method is closest to the teacher in each probe."""
    out: dict[str, object] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        key = method.replace(" + ", "_").replace(" ", "_").lower()
        mine = [r for r in rows if r["method"] == method]
        out[f"{key}_test_accuracy_pct"] = round(100 * float(np.mean([r["accuracy"] for r in mine])), 2)
        out[f"{key}_agreement_pct"] = round(100 * float(np.mean([r["agreement"] for r in mine])), 2)
    out.update({f"closest_in_{p}": closest_method(rows, p) for p in PROBES})
    return out


def best_method(rows: Sequence[Mapping]) -> str:
    """The method with the highest mean test accuracy."""
    methods = dict.fromkeys(r["method"] for r in rows)
    if not methods:
        raise ValueError("rows is empty: no method to rank")
    return max(methods, key=lambda m: float(np.mean([r["accuracy"] for r in rows if r["method"] == m])))


def closest_method(rows: Sequence[Mapping], probe_name: str) -> str:
    """The method whose students are, on average, closest to the teacher in ``probe_name``."""
    if probe_name not in PROBES:
        raise ValueError(f"probe_name={probe_name!r} is unknown; expected one of {tuple(PROBES)}")
    means = {m: float(np.mean([r[probe_name] for r in rows if r["method"] == m]))
             for m in dict.fromkeys(r["method"] for r in rows)}
    if not means:
        raise ValueError("rows is empty: no method to rank")
    return min(means, key=means.get)


def findings(rows: Sequence[Mapping], found: Sequence[stats.Claim], teacher_accuracy: float,
             selection: Selection | None = None, run: Plan | None = None, fast: bool = False) -> list[str]:
    """"What we found" in sentences, every number from the runs: the regime, the teacher against
    the labels-only student, the settings chosen on validation, each claim's verdict, and the
    reading the verdicts allow."""
    if not rows:
        raise ValueError("rows is empty: run train_students first")
    lines = []
    seeds = sorted({r["seed"] for r in rows})
    mode = "fast (tiny subsets: illustration only)" if fast else "full"
    if run is not None:
        lines.append(f"Mode: {mode}; students: {run.student.epochs} epochs on {run.n_train:,} images, "
                     f"fresh seeds {seeds}; settings chosen on validation with seeds {list(run.dev_seeds)}.")
    else:
        lines.append(f"Mode: {mode}; fresh seeds {seeds}.")
    base = [r["accuracy"] for r in rows if r["method"] == "labels only"]
    if base:
        lines.append(f"Teacher {100 * teacher_accuracy:.2f} % against the labels-only student "
                     f"{stats.pm_values(base)} (test accuracy): a gap of "
                     f"{100 * (teacher_accuracy - float(np.mean(base))):.2f} points for distillation to close.")
    if selection is not None:
        lines.append("Chosen on validation: " + "; ".join(f"{m} {setting_label(s)}"
                                                          for m, s in selection.settings.items()) + ".")
    by_name = {c.treatment: c for c in found}
    for c in found:
        lines.append(f"{c.claim}: {'SHOWN' if c.shown else 'not shown'} "
                     f"(Δ = {c.row()['Δ ± SE']}, {c.treatment} ahead on {c.wins}/{len(c.seeds)} seeds).")
    if found and min(len(c.seeds) for c in found) < stats.MIN_SEEDS:
        lines.append(f"Too few paired seeds (fewer than {stats.MIN_SEEDS}) to judge any claim: run the full mode.")
        return lines
    kd = next((c for c in found if c.treatment == "KD" and c.control == "labels only"), None)
    others = [by_name[m] for m in ("AT", "RKD") if m in by_name and by_name[m].control == "KD"]
    if kd is not None:
        if kd.shown:
            lines.append("Reading: KD helps with this teacher (11a shown), so the teacher has knowledge to pass on.")
        else:
            lines.append("Reading: KD's gain over labels alone is not established at this budget (11a not "
                         "shown); the comparison between families below has little to compare.")
    if others:
        differ = [c for c in others if c.shown]
        if not differ:
            names = " and ".join(c.treatment for c in others)
            lines.append(f"{names} {'are each' if len(others) > 1 else 'is'} within two standard errors of KD: on "
                         f"this data the families we tried transfer about equally well, which is not the papers' "
                         f"finding (they report gains on CIFAR, ImageNet and metric learning).")
        for c in differ:
            direction = "better" if c.delta > 0 else "worse"
            lines.append(f"{c.treatment} does {direction} than KD by more than two standard errors "
                         f"({100 * c.delta:+.2f} ± {100 * c.se:.2f} points).")
    labels = _values(rows, "labels only")
    for c in others:  # not a claim: how far each family got on its own, beside labels alone
        mine = _values(rows, c.treatment)
        common = [s for s in mine if s in labels]
        if len(common) > 1:
            p = stats.paired([mine[s] for s in common], [labels[s] for s in common], common)
            lines.append(f"For scale: {c.treatment} against labels only, Δ = {100 * p.delta:+.2f} ± "
                         f"{100 * p.se:.2f} points (ahead on {p.wins}/{p.n} seeds); KD against labels only, "
                         f"{100 * kd.delta:+.2f} ± {100 * kd.se:.2f}." if kd is not None else
                         f"For scale: {c.treatment} against labels only, Δ = {100 * p.delta:+.2f} ± "
                         f"{100 * p.se:.2f} points (ahead on {p.wins}/{p.n} seeds).")
    return lines


#: The regimes tried while building the lesson (validation split, development seeds), in words;
#: :func:`findings` prints the measured numbers of the lesson's own regime.
REGIMES_TRIED: list[dict] = [
    {"regime": "MNIST; lesson 03's CNN teacher (3 epochs) and 6-layer student, 10,000 images, 4 epochs "
               "(this lesson before issue 18)",
     "teacher": "98.53 % (test)", "labels only": "98.32 % (test)",
     "what it showed": "a teacher barely better than its students: AT, RKD and KD all within the seed spread"},
    {"regime": "Fashion-MNIST; teacher 16-32-64 trained 5 epochs on 20,000 images; student 8-16-32 on 2,000 "
               "images, 20 epochs; seeds 0, 1",
     "teacher": "87.40 % (validation)", "labels only": "81.15 % (validation)",
     "what it showed": "KD (T=4, α=0.9) 81.87 %: +0.7 points, a weak teacher teaches little"},
    {"regime": "the same, teacher trained 12 epochs; student on 1,000 images, 30 epochs; seeds 0, 1",
     "teacher": "89.20 % (validation)", "labels only": "78.20 % (validation)",
     "what it showed": "KD T=4, α=0.9: 79.75 %, T=8, α=0.9: 79.50 %; AT β=10: 75.45 %, RKD β=10: 77.25 % "
                       "(worse than labels alone: hence smaller β in the grid)"},
]


# --------------------------------------------------------------------------------------------
# Figures


def attention_figure(model: nn.Module | Trained, x: Tensor, layers: Sequence[str] | None = None,
                     attention_map: Callable[[Tensor], Tensor] = feature_losses.attention_map) -> go.Figure:
    """Images ``x`` (B, 1, H, W) in the first column and ``model``'s attention maps at ``layers``
    (default: every block) beside them, computed with ``attention_map`` ((N, C, h, w) -> (N, h·w))."""
    model = _model(model)
    layers = list(layers) if layers is not None else model.feature_names
    mode = model.training
    model.eval()
    with torch.no_grad(), fixed_threads():
        _, feats = model.forward_features(x.to(next(model.parameters()).device))
    model.train(mode)
    fig = make_subplots(rows=len(x), cols=len(layers) + 1, column_titles=["image", *layers],
                        horizontal_spacing=0.02, vertical_spacing=0.02)
    for r in range(len(x)):
        fig.add_trace(go.Heatmap(z=x[r, 0].cpu().numpy(), colorscale="gray_r", showscale=False, hoverinfo="skip"),
                      row=r + 1, col=1)
        for c, layer in enumerate(layers, start=2):
            f = feats[layer][r:r + 1].cpu()
            q = attention_map(f).reshape(f.shape[2:])
            fig.add_trace(go.Heatmap(z=q.numpy(), colorscale="Viridis", showscale=False,
                                     hovertemplate="%{z:.3f}<extra></extra>"), row=r + 1, col=c)
    fig.update_xaxes(visible=False).update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(height=110 * len(x) + 60, width=110 * (len(layers) + 1) + 80, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def selection_figure(selection: Selection) -> go.Figure:
    """Validation accuracy of every setting tried (mean ± std over the development seeds), one
    panel per method; the chosen setting is drawn solid."""
    methods = list(dict.fromkeys(r["method"] for r in selection.rows))
    fig = make_subplots(rows=1, cols=len(methods), subplot_titles=methods, shared_yaxes=True,
                        column_widths=[max(1, len({r['setting'] for r in selection.rows if r['method'] == m}))
                                       for m in methods])
    for col, method in enumerate(methods, start=1):
        labels = list(dict.fromkeys(r["setting"] for r in selection.rows if r["method"] == method))
        mean_std = [stats.mean_std([r["val_acc"] for r in selection.rows
                                    if r["method"] == method and r["setting"] == label]) for label in labels]
        chosen = setting_label(selection.settings[method])
        fig.add_trace(go.Bar(x=labels, y=[100 * m for m, _ in mean_std], name=method, showlegend=False,
                             marker=dict(color=COLOURS.get(method, "#1f77b4"),
                                         opacity=[1.0 if label == chosen else 0.35 for label in labels]),
                             error_y=dict(type="data", array=[100 * s for _, s in mean_std])), row=1, col=col)
    low = min(r["val_acc"] for r in selection.rows)
    fig.update_yaxes(range=[100 * low - 2, None], row=1, col=1, title_text="validation accuracy %")
    fig.update_layout(height=380, title=f"Settings tried on the validation split (development seeds "
                                        f"{list(selection.seeds)}); solid = chosen")
    return fig


def comparison_figure(rows: Sequence[Mapping], teacher_accuracy: float | None = None) -> go.Figure:
    """Test accuracy and agreement with the teacher per method: a dot per seed, mean ± std; and
    the per-seed difference to the labels-only student of the same seed (paired)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig = make_subplots(rows=1, cols=3, subplot_titles=["test accuracy %", "top-1 agreement with the teacher %",
                                                        "paired gain over labels only (points)"])
    base = _values(rows, "labels only")
    for col, key in ((1, "accuracy"), (2, "agreement"), (3, "gain")):
        for method in methods:
            if key == "gain":
                if not base or method == "labels only":
                    continue
                mine = _values(rows, method)
                values = [100 * (mine[s] - base[s]) for s in mine if s in base]
            else:
                values = [100 * r[key] for r in rows if r["method"] == method]
            if not values:
                continue
            mean, std = stats.mean_std(values)
            colour = COLOURS.get(method)
            fig.add_trace(go.Scatter(x=[method] * len(values), y=values, mode="markers", showlegend=False,
                                     marker=dict(size=7, opacity=0.5, color=colour)), row=1, col=col)
            fig.add_trace(go.Scatter(x=[method], y=[mean], mode="markers", showlegend=False, name=method,
                                     marker=dict(size=18, symbol="line-ew-open", line_width=3, color=colour),
                                     error_y=dict(type="data", array=[std], color=colour)), row=1, col=col)
    if teacher_accuracy is not None:
        fig.add_hline(y=100 * teacher_accuracy, line_dash="dot", line_color=COLOURS["teacher"],
                      annotation_text="teacher", row=1, col=1)
    if base:
        fig.add_hline(y=0, line_color="#999", row=1, col=3)
    fig.update_layout(height=400, title="Same student, same start, four kinds of supervision (fresh seeds)")
    return fig


def match_figure(rows: Sequence[Mapping]) -> go.Figure:
    """Heatmap: for each method (rows) and kind of knowledge (columns), the mean probe distance
    to the teacher divided by the labels-only student's (1 = no closer than labels alone)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    means = {m: {k: float(np.mean([r[k] for r in rows if r["method"] == m])) for k in PROBES} for m in methods}
    base = means.get("labels only")
    z = [[means[m][k] / base[k] if base and base[k] > 0 else means[m][k] for k in PROBES] for m in methods]
    fig = go.Figure(go.Heatmap(z=z, x=list(PROBES.values()), y=methods, colorscale="RdBu", zmid=1.0,
                               texttemplate="%{z:.2f}", reversescale=False,
                               hovertemplate="%{y}, %{x}: %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=120 + 45 * len(methods), title="Distance to the teacher, relative to the labels-only "
                      "student" if base else "Distance to the teacher", margin=dict(l=10, r=10, t=60, b=10))
    return fig


# --------------------------------------------------------------------------------------------
# What the panel shows: one fixed batch, every model's three kinds of "knowledge"


@dataclass
class RelationSnapshot:
    """Precomputed views of one fixed batch of B test images (all on the CPU).

    ``images`` (B, 1, H, W), ``labels`` (B,); per model name ("teacher" and each method):
    ``probs[name]`` soft targets at ``temperature`` (B, C), ``attention[name]`` normalised
    attention maps (B, h, w), ``distances[name]`` RKD-normalised distance matrices (B, B) and
    ``scores[name]`` its :func:`probe` distances to the teacher on this batch.
    """

    images: Tensor
    labels: Tensor
    class_names: list[str]
    temperature: float
    probs: dict[str, Tensor] = field(default_factory=dict)
    attention: dict[str, Tensor] = field(default_factory=dict)
    distances: dict[str, Tensor] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return [n for n in self.probs if n != "teacher"]


def sorted_batch(data: Data, per_class: int = 3) -> Tensor:
    """Indices of ``per_class`` test images of every class, grouped by class (so a distance
    matrix shows blocks when the embedding separates the classes)."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    y = data.test.y.cpu()
    picks = [torch.nonzero(y == c).flatten()[:per_class] for c in range(data.num_classes)]
    return torch.cat(picks)


@torch.no_grad()
def relation_snapshot(teacher: nn.Module | Trained, students: Mapping[str, nn.Module | Trained], data: Data,
                      per_class: int = 3, temperature: float = PROBE_TEMPERATURE,
                      hint_layer: str = HINT_LAYER, guided_layer: str = GUIDED_LAYER) -> RelationSnapshot:
    """Everything :class:`labkd.widgets.taxonomy.TaxonomyPanel` shows, computed once (no training)."""
    if not students:
        raise ValueError("students is empty: give at least one {method: trained student}")
    idx = sorted_batch(data, per_class)
    x = data.test.x[idx].cpu()
    snap = RelationSnapshot(images=x, labels=data.test.y[idx].cpu(), class_names=list(data.class_names),
                            temperature=float(temperature))
    models = {"teacher": (_model(teacher), hint_layer), **{n: (_model(s), guided_layer) for n, s in students.items()}}
    for name, (model, layer) in models.items():
        mode = model.training
        model.eval()
        device = next(model.parameters()).device
        with fixed_threads():
            logits, feats = model.forward_features(x.to(device))
        model.train(mode)
        f = feats[layer].cpu()
        snap.probs[name] = torch.softmax(logits.cpu() / temperature, dim=1)
        snap.attention[name] = feature_losses.attention_map(f).reshape(len(x), *f.shape[2:])
        snap.distances[name] = feature_losses.normalized_distances(feature_losses.embed(f))
    for name in snap.methods:
        snap.scores[name] = probe(students[name], teacher, x, hint_layer, guided_layer, temperature)
    return snap


# --------------------------------------------------------------------------------------------
# The course at a glance (lesson 13)


#: Where each of the course's losses is taught and what it transfers.
_LESSONS = {"cross_entropy": "all (baseline)", "soft_target": "01, 02", "distillation": "01-05, 11",
            "logit_matching": "01", "hint": "03", "attention": "11", "rkd_distance": "11", "rkd_angle": "11",
            "rkd": "11"}
_FAMILIES = {"cross_entropy": "— (labels)", "soft_target": "response", "distillation": "response",
             "logit_matching": "response", "hint": "feature"}


def course_methods() -> list[dict]:
    """Every loss registered in :data:`labkd.losses.LOSSES` and
    :data:`labkd.feature_losses.FEATURE_LOSSES`: name, family, where it is taught, how to use it."""
    rows = []
    for name, fn in losses.LOSSES.items():
        use = "TrainConfig(loss='hint', hint_layer=..., guided_layer=...)" if name == "hint" else \
            f"TrainConfig(loss={name!r})"
        rows.append({"loss": name, "family": _FAMILIES.get(name, "?"), "function": f"losses.{fn.__name__}",
                     "lessons": _LESSONS.get(name, ""), "in fit": use})
    for name, entry in feature_losses.FEATURE_LOSSES.items():
        rows.append({"loss": name, "family": entry.family, "function": f"feature_losses.{entry.fn.__name__}",
                     "lessons": _LESSONS.get(name, ""),
                     "in fit": f"TrainConfig(loss='feature_kd', feature_loss={name!r}, "
                               f"feature_weight={entry.weight:g}, "
                               f"hint_layer=..., guided_layer=...)"})
    return rows


#: Four directions the literature took, with the paper's headline and how to try it here.
LITERATURE: list[dict] = [
    {"work": "DistilBERT", "paper": "Sanh et al. 2019", "url": "https://arxiv.org/abs/1910.01108",
     "idea": "distil BERT during pre-training: soft-target loss + masked-LM loss + cosine loss on hidden states; "
             "student = half the layers, initialised from every other teacher layer",
     "headline": "40% smaller, 60% faster, keeps 97% of BERT's GLUE score",
     "in labkd": "lesson 01 loss + a hidden-state term: TrainConfig(loss='feature_kd', alpha=0.9, ...); "
                 "initialise from the teacher with train_model(..., init=...)"},
    {"work": "MiniLM", "paper": "Wang et al. 2020", "url": "https://arxiv.org/abs/2002.10957",
     "idea": "deep self-attention distillation: match the last layer's attention distributions and "
             "value-relations (no layer mapping, any student width)",
     "headline": "keeps more than 99% of the teacher's accuracy on SQuAD 2.0 and several GLUE tasks with "
                 "50% of its parameters and computation",
     "in labkd": "closest analogue: attention transfer on the last layer only, "
                 "TrainConfig(loss='feature_kd', feature_loss='attention', hint_layer=..., guided_layer=...)"},
    {"work": "TAKD", "paper": "Mirzadeh et al. 2020", "url": "https://arxiv.org/abs/1902.03393",
     "idea": "when the teacher is much larger than the student, distil through an intermediate "
             "teacher assistant",
     "headline": "teacher → assistant → student beats teacher → student on CIFAR and ImageNet",
     "in labkd": "lesson 04: teacher_size.teacher_assistant(data, family, student_hidden, [assistant_hidden], "
                 "config)"},
    {"work": "CRD", "paper": "Tian et al. 2020", "url": "https://arxiv.org/abs/1910.10699",
     "idea": "contrastive representation distillation: make the student's embedding of an image "
             "closer to the teacher's embedding of the same image than to other images' (InfoNCE with "
             "a memory bank of negatives)",
     "headline": "outperformed KD and about a dozen other distillers (FitNets, AT, RKD, ...) on CIFAR-100 "
                 "teacher/student pairs and ImageNet",
     "in labkd": "not built in: a project. Write crd_loss(student, teacher) with projection heads in "
                 "feature_losses.py; lesson 11's RKD shows the batch-relation machinery to start from"},
]


def literature() -> list[dict]:
    """:data:`LITERATURE` as table rows (work, paper, headline, how to try it in labkd)."""
    return [{k: r[k] for k in ("work", "paper", "headline", "in labkd")} for r in LITERATURE]


def recorded_results(folder: Path | str | None = None) -> dict[str, dict]:
    """Key results the lessons recorded in an earlier ``labkd run`` (``<stem>.results.json`` files
    in ``folder``, default :func:`labkd.paths.reports_dir`), by notebook; {} when there are none.
    Unreadable files are skipped."""
    from labkd.paths import reports_dir

    folder = Path(folder) if folder is not None else reports_dir()
    found = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.results.json")):
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(values, dict):
            found[path.name[: -len(".results.json")]] = values
    return found


def results_table(results: Mapping[str, Mapping],
                  keys: Sequence[str] = ("accuracy", "error", "agreement")) -> list[dict]:
    """Rows ``{notebook, result, value}`` of the recorded numbers whose name contains one of ``keys``."""
    rows = []
    for notebook, values in results.items():
        for key, value in values.items():
            if any(k in key for k in keys) and isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"notebook": notebook, "result": key, "value": round(float(value), 4)})
    return rows


def retention(results: Mapping[str, Mapping]) -> list[dict]:
    """DistilBERT's "keeps 97% of the teacher's performance", for every recorded student: rows
    ``{notebook, student, student accuracy %, teacher accuracy %, retained %}`` from notebooks
    that recorded ``teacher_accuracy`` (a fraction) and ``<student>_test_accuracy_pct`` or
    ``<student>_test_error_pct`` (percent)."""
    rows = []
    for notebook, values in results.items():
        teacher = values.get("teacher_accuracy")
        if not isinstance(teacher, (int, float)) or not teacher > 0:
            continue
        for key, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key.endswith("_test_accuracy_pct"):
                name, acc = key[: -len("_test_accuracy_pct")], float(value)
            elif key.endswith("_test_error_pct"):
                name, acc = key[: -len("_test_error_pct")], 100.0 - float(value)
            else:
                continue
            rows.append({"notebook": notebook, "student": name, "student accuracy %": round(acc, 2),
                         "teacher accuracy %": round(100 * teacher, 2), "retained %": round(acc / teacher, 1)})
    return rows


@torch.no_grad()
def latency_ms(model: nn.Module, input_shape: Sequence[int] = (1, 28, 28), batch_size: int = 256,
               repeats: int = 5) -> float:
    """Median milliseconds of one forward pass over a batch on the CPU (one thread, eval mode)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    model = model.eval().cpu()
    x = torch.zeros(batch_size, *input_shape)
    times = []
    with fixed_threads():
        model(x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))


def _widths(options: Mapping) -> str:
    return "-".join(str(c) for c in options["channels"])


def course_pairs(data: Data) -> dict[str, tuple[BlockModel, BlockModel]]:
    """The course's teacher/student pairs, untrained (size and speed do not depend on the weights)."""
    shape, c = data.input_shape, data.num_classes

    def mlp(preset: str) -> BlockModel:
        return build_model(preset, shape, c)

    from labkd import fitnets  # lesson 03's pair, described for lesson 13's table

    return {
        "MLP 1200-1200 → 800-800 (lessons 01-02)": (mlp("hinton_teacher"), mlp("hinton_student")),
        "MLP 1200-1200 → 30-30 (lessons 02, 04)": (mlp("hinton_teacher"), mlp("small_student")),
        f"CNN {_widths(TEACHER_OPTIONS)} → {_widths(STUDENT_OPTIONS)} (lesson 11)": (build_model(TEACHER_ARCH, shape, c, **TEACHER_OPTIONS),
                                               build_model(STUDENT_ARCH, shape, c, **STUDENT_OPTIONS)),
        "CNN 3 wide → 6 thin layers (lesson 03)": (fitnets.build_teacher(shape, c), fitnets.build_student(shape, c)),
    }


def speed_table(pairs: Mapping[str, tuple[nn.Module, nn.Module]], repeats: int = 5) -> list[dict]:
    """For each ``{name: (teacher, student)}``: parameters, relative size and CPU inference time
    of the student — the quantities DistilBERT reports (40% smaller, 60% faster)."""
    rows = []
    for name, (teacher, student) in pairs.items():
        pt, ps = num_parameters(teacher), num_parameters(student)
        shape = tuple(teacher.spec["input_shape"]) if hasattr(teacher, "spec") else (1, 28, 28)
        tt, ts = latency_ms(teacher, shape, repeats=repeats), latency_ms(student, shape, repeats=repeats)
        rows.append({"pair": name, "teacher params": pt, "student params": ps,
                     "student / teacher params": round(ps / pt, 3),
                     "teacher ms / 256 images": round(tt, 1), "student ms / 256 images": round(ts, 1),
                     "speed-up x": round(tt / ts, 2) if ts > 0 else float("nan")})
    return rows

