r"""Four kinds of knowledge, one student: response-, feature-, relation-based and contrastive distillation.

Lesson 11 trains one small CNN student five ways from one CNN teacher, all with
:func:`labkd.train.fit` (only ``TrainConfig.loss`` and its settings change; each loss is a
registered objective, :mod:`labkd.objectives`):

==============  =========  ===================================================================
method          family     objective
==============  =========  ===================================================================
labels only     —          cross-entropy
KD              response   Hinton's :func:`labkd.losses.distillation_loss` (T and α chosen)
AT              feature    CE + β · :func:`labkd.feature_losses.attention_transfer_loss`
RKD             relation   CE + β · :func:`labkd.feature_losses.rkd_loss` (distances + angles)
CRD + KD        contrast.  KD + β · CRD's contrastive loss (:class:`labkd.crd.CRD`, heads + memory bank)
==============  =========  ===================================================================

(``"KD + AT"`` and ``"KD + RKD"`` add the feature term to KD instead of the cross-entropy; the
methods that add a term to KD use KD's chosen T and α and tune only β.)

**The regime** (:func:`plan`, :data:`RECIPES`). A teacher can only pass on what it knows better
than the student, so the lesson works where distillation matters: Fashion-MNIST; the teacher
learns from ``teacher_images`` training images until it has converged; the students learn from
only ``n_train`` of those images (no jitter), where labels alone leave them far below the teacher.

**The protocol** (:mod:`labkd.stats`). Each method's settings (T and α for KD, β for the others)
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
>>> for c in taxonomy_results.claims(rows):
...     print(c.verdict)

Each row also says how closely the student matches the teacher in each kind of knowledge
(:func:`probe`): soft targets (KL), attention maps (AT distance) and relations (RKD distance).
The claims, tables and "What we found" are in :mod:`labkd.taxonomy_results`, the figures and the
panel's data in :mod:`labkd.taxonomy_figures`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from labkd import crd, feature_losses, losses, metrics, parallel, stats
from labkd.checks import check_positive_int, check_seeds
from labkd.data import Data, Split
from labkd.experiments import Trained, train_model
from labkd.models import BlockModel, build_model, num_parameters
from labkd.recipes import Recipes
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
RECIPES = Recipes({
    "teacher": TrainConfig(epochs=12, batch_size=128, lr=0.05),
    "student": TrainConfig(epochs=30, batch_size=64, lr=0.05),
}, fast={  # fast mode (tests): the same recipes, shortened
    "teacher": {"epochs": 2, "batch_size": 64},
    "student": {"epochs": 2, "batch_size": 32},
})
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
    #: a method whose chosen settings this one starts from (T and α of "KD" for the methods that
    #: add a term to KD): its grid then varies only its own weight β.
    inherits: str | None = None

    def config(self, base: TrainConfig, settings: Mapping[str, float] | None = None, *,
               beta: float | None = None) -> TrainConfig:
        """``base`` (the students' recipe, seed included) with this method's loss and ``settings``
        (e.g. ``{"temperature": 4, "alpha": 0.9}``); ``beta`` is short for ``feature_weight``.
        Settings that are not :class:`TrainConfig` fields (CRD's ``nce_temperature``, ...) go into
        ``objective_options``."""
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
        fields = {k: float(v) for k, v in settings.items() if k in _CONFIG_FIELDS}
        options = {k: v for k, v in settings.items() if k not in _CONFIG_FIELDS}
        changes = {**self.changes, **fields}
        if options:
            changes["objective_options"] = {**changes.get("objective_options", {}), **options}
        return base.replace(**changes)


_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


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
    Method("CRD + KD", "contrastive + response", {"loss": crd.CRD.name, "alpha": 0.9, "hint_layer": HINT_LAYER,
                                                  "guided_layer": GUIDED_LAYER},
           "which image the teacher's embedding belongs to, among many, and soft outputs",
           ("temperature", "alpha", "feature_weight", *crd.DEFAULTS), inherits="KD"),
    Method("CRD", "contrastive", {"loss": crd.CRD.name, "alpha": 0.0, "hint_layer": HINT_LAYER, "guided_layer": GUIDED_LAYER},
           "which image the teacher's embedding belongs to, among many", ("feature_weight", *crd.DEFAULTS)),
    Method("KD + AT", "response + feature", _feature("attention", 0.9), "soft outputs and attention maps",
           ("temperature", "alpha", "feature_weight"), inherits="KD"),
    Method("KD + RKD", "response + relation", _feature("rkd", 0.9), "soft outputs and relations",
           ("temperature", "alpha", "feature_weight"), inherits="KD"),
)}
METHODS_DEFAULT = ("labels only", "KD", "AT", "RKD", "CRD + KD")

#: The settings tried for each method on the validation split (small grids: the lesson must
#: train in under 30 minutes on a CPU). β of AT and RKD spans a decade below the papers' weights
#: in our units (AT: 1000/2 on a mean over the 7x7 positions ≈ 10 here; RKD: 25 for distances):
#: while building the lesson, β = 10 made both students worse than labels alone on validation
#: (:data:`labkd.taxonomy_results.REGIMES_TRIED`). CRD + KD tries the authors' β = 0.8 at their
#: code's τ = 0.07 and at τ = 0.2 (the best of the settings tried while building the lesson), and a
#: smaller β.
GRID: dict[str, tuple[dict, ...]] = {
    "labels only": ({},),
    "KD": ({"temperature": 2.0, "alpha": 0.9}, {"temperature": 4.0, "alpha": 0.9}, {"temperature": 8.0, "alpha": 0.9},
           {"temperature": 4.0, "alpha": 0.5}),
    "AT": tuple({"feature_weight": b} for b in (0.1, 1.0)),
    "RKD": tuple({"feature_weight": b} for b in (0.1, 1.0)),
    "CRD + KD": ({"feature_weight": 0.1}, {"feature_weight": 0.8}, {"feature_weight": 0.8, "nce_temperature": 0.2}),
    "CRD": ({"feature_weight": 0.2}, {"feature_weight": 0.8}),
    "KD + AT": tuple({"feature_weight": b} for b in (0.1, 1.0)),
    "KD + RKD": tuple({"feature_weight": b} for b in (0.1, 1.0)),
}

#: How the lesson writes each setting (:func:`setting_label`).
SYMBOLS = {"temperature": "T", "alpha": "α", "feature_weight": "β", "nce_temperature": "τ", "negatives": "K", "dim": "d"}
COLOURS = {"labels only": "#7f7f7f", "KD": "#1f77b4", "AT": "#2ca02c", "RKD": "#9467bd", "CRD + KD": "#ff7f0e",
           "CRD": "#bcbd22", "KD + AT": "#17becf", "KD + RKD": "#e377c2", "teacher": "#d62728"}
#: The three kinds of knowledge :func:`probe` measures, with the column names it uses.
PROBES = {"kl": f"soft targets: KL(T={PROBE_TEMPERATURE:g})", "attention": "attention maps: AT distance",
          "relation": "relations: RKD-D distance"}

#: The lesson's claims: (text, treatment, control, the paper's sign). 11b is judged per method
#: (either sign counts: the papers report gains over KD in other settings, we report what we find).
CLAIMS: tuple[tuple[str, str, str, int], ...] = (
    ("(11a) KD beats labels only with the lesson's teacher", "KD", "labels only", +1),
    ("(11b) attention transfer (Zagoruyko & Komodakis 2017) differs from KD", "AT", "KD", 0),
    ("(11b) RKD (Park et al. 2019) differs from KD", "RKD", "KD", 0),
    ("(11c) CRD + KD beats KD (Tian et al. 2020, §4.1)", "CRD + KD", "KD", +1),
)


def check_methods(methods: Sequence[str]) -> list[str]:
    """``methods`` as a list of known method names; ``ValueError`` naming ``methods`` otherwise."""
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown or len(set(methods)) != len(methods):
        raise ValueError(f"methods must be a non-empty list of distinct names from {tuple(METHODS)}; got {methods!r}")
    return methods


def model_of(model: nn.Module | Trained) -> BlockModel:
    """The network itself: ``model.model`` for a :class:`~labkd.experiments.Trained`, else ``model``."""
    return model.model if isinstance(model, Trained) else model


def by_seed(rows: Sequence[Mapping], method: str, key: str = "accuracy") -> dict[int, float]:
    """``{seed: row[key]}`` of ``method``'s rows (from :func:`train_students`)."""
    return {r["seed"]: r[key] for r in rows if r["method"] == method}


def methods_table(methods: Sequence[str] = METHODS_DEFAULT) -> list[dict]:
    """Rows describing ``methods``: family, what the student is asked to match, the TrainConfig
    changes and the settings chosen on validation."""
    rows = []
    for name in check_methods(methods):
        m = METHODS[name]
        changes = ", ".join(f"{k}={v!r}" for k, v in m.changes.items()
                            if k not in ("hint_layer", "guided_layer", "feature_weight"))
        varied = list(dict.fromkeys(k for setting in GRID.get(name, ()) for k in setting))
        chosen = ", ".join(SYMBOLS.get(k, k) for k in varied)
        if m.inherits:
            chosen = f"{chosen} (T, α: {m.inherits}'s)" if chosen else f"T, α: {m.inherits}'s"
        rows.append({"method": name, "family": m.family, "the student matches": m.matches, "TrainConfig": changes,
                     "chosen on validation": chosen or "—"})
    return rows


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
    :data:`FAST_SIZES`, :data:`RECIPES` with fast mode's changes, one development seed, one fresh seed and the
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
    sizes = FAST_SIZES if fast else SIZES
    recipes = {name: RECIPES(name, fast) for name in RECIPES}
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
    logits = metrics.predict_logits(model_of(model), split.x)
    return metrics.accuracy(logits, split.y)


def train_student(data: Data, teacher: nn.Module | Trained, method: str, config: TrainConfig,
                  settings: Mapping[str, float] | None = None, beta: float | None = None,
                  progress: bool | None = None) -> Trained:
    """The student trained by ``method`` (a key of :data:`METHODS`) with the recipe ``config``
    (seed included) and ``settings`` (T, α, β; see :meth:`Method.config`); cached. Every method of
    one seed starts from the same weights and sees the same batches."""
    return student_run(data, teacher, method, config, settings, beta).train(data, progress)


def student_run(data: Data, teacher: nn.Module | Trained, method: str, config: TrainConfig,
                settings: Mapping[str, float] | None = None, beta: float | None = None) -> parallel.Run:
    """The cached run behind :func:`train_student` (to train several at once with
    :func:`labkd.parallel.train_runs`)."""
    m = METHODS[check_methods([method])[0]]
    cfg = m.config(config, settings, beta=beta)
    described = ", ".join(f"{k}={v:g}" for k, v in (settings or {}).items()) or "defaults"
    return parallel.Run(STUDENT_ARCH, cfg, teacher=None if cfg.loss == "cross_entropy" else teacher,
                        label=f"taxonomy lesson: student {method} ({described}) seed={cfg.seed} "
                              f"on {data.name}, {len(data.train)} images", **STUDENT_OPTIONS)


# --------------------------------------------------------------------------------------------
# Choosing each method's settings on validation


def setting_label(settings: Mapping[str, float]) -> str:
    """``{"temperature": 4, "alpha": 0.9}`` -> ``"T=4, α=0.9"``."""
    return ", ".join(f"{SYMBOLS.get(k, k)}={v:g}" for k, v in settings.items()) or "—"


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
    **validation** accuracy (ties: the first in the grid). The test split is not looked at.

    A method that ``inherits`` another's settings (the KD-based combinations: KD's T and α) adds
    its grid's settings to those chosen for that method, when it was selected earlier in ``methods``."""
    methods = check_methods(methods)
    grid = run.grid if grid is None else grid
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must map method names to lists of settings, got {type(grid).__name__}")
    rows, chosen = [], {}
    for method in methods:
        options = list(grid.get(method, ()))
        if not options:
            raise ValueError(f"grid has no settings for method {method!r}; give at least one (e.g. {{}})")
        inherited = chosen.get(METHODS[method].inherits, {}) if METHODS[method].inherits else {}
        options = [{**inherited, **o} for o in options]
        parallel.train_runs(data, [student_run(data, teacher, method, run.student.replace(seed=seed), settings)
                                   for settings in options for seed in run.dev_seeds], progress=progress)
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
    model = model_of(model)
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
    student, teacher = model_of(student), model_of(teacher)
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
    teacher_model = model_of(teacher)
    teacher_test = metrics.predict_logits(teacher_model, test.x)
    x_probe = test.x[:n_probe]
    parallel.train_runs(data, [student_run(data, teacher, method, config.replace(seed=seed), settings.get(method, {}))
                               for seed in seeds for method in methods], progress=progress)
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
