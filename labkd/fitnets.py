r"""FitNets: train a thin, deep student with a hint from the teacher's middle layer.

Romero et al. (2015), "FitNets: Hints for Thin Deep Nets", https://arxiv.org/abs/1412.6550 .
Training has two stages:

1. **Hints.** The student's layers up to its *guided* layer :math:`v_g`, plus a small
   *regressor* :math:`r`, learn to predict the teacher's *hint* layer :math:`u_h`:

   .. math::
       \mathcal{L}_{HT}(W_{guided}, W_r) = \tfrac12 \,\| u_h(x) - r(v_g(x)) \|^2

   (labkd uses the mean squared error, i.e. without the :math:`\tfrac12` and averaged over the
   elements). The regressor is thrown away afterwards.
2. **Distillation.** The whole student, starting from the stage-1 weights, is trained with the
   usual distillation loss (:func:`labkd.losses.distillation_loss`).

Lesson 03 (:func:`regime`): a teacher trained once on all the training images, and plain (no
batch norm) students of 16 channels, one deep (8 layers: does not learn from labels or soft
targets alone) and one shallow (3 layers: learns either way), compared at an equal budget of
epochs, with stacked hints (:func:`hint_pairs_for`):

>>> run = regime(fast=False, seed=0)            # sizes, recipes, fresh seeds 120..124
>>> teacher = train_lesson_teacher(data, run)   # cached
>>> students = lesson_data(data, run)
>>> rows = compare_methods(students, teacher, run.seeds, run.config(), run.stage1_epochs,
...                        run.hint_layers("deep"), run.guided_layers("deep"), "cnn",
...                        stage1_lr=run.stage1_lr, **run.options("deep"))
>>> paired_claim(rows, "(03) hints + KD beat KD alone for the deep thin student").verdict

(:func:`plan` with :data:`PLAN_RECIPES`, :func:`train_teacher`, :func:`build_student` and
:data:`STUDENT` keep the earlier batch-norm student of six layers that lesson 11 builds on.)

Speed: these CNNs are small, and PyTorch's default of one intra-op thread per core made them
about 10x *slower* on a busy 2-core CPU (OpenMP threads spin, waiting for each other). The
training and feature functions here therefore run with :data:`labkd.threads.TRAIN_THREADS` threads and restore
the previous setting afterwards (set it to None to leave PyTorch's setting alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from labkd import losses, parallel, stats
from labkd.checks import check_positive_int
from labkd.data import Data
from labkd.experiments import Trained, train_model
from labkd.fitnets_regime import (  # noqa: F401  (re-exported: the lesson calls fitnets.*)
    DEPTHS, DEV_RESULTS, DEV_SEEDS, FAST_DATA, FRESH_FIRST, N_TRAIN, N_VAL, RECIPES, STAGE1_EPOCHS, STAGE1_LR, STUDENT_RECIPE,
    TEACHER_RECIPE, WIDTH, Regime, build_thin_student, guided_layer_for, hint_pairs_for, regime, thin_student,
)
from labkd.fitnets_figures import (  # noqa: F401  (re-exported: the lesson calls fitnets.*)
    COLOURS, busiest_channels, comparison_figure, curves_figure, hint_figure, model_table,
)
from labkd.models import BlockModel, build_model, check_feature_name, num_parameters, rebuild
from labkd.recipes import Recipes
from labkd.threads import fixed_threads
from labkd.train import TrainConfig

#: The teacher: the ``fitnet_teacher`` preset with three layers (32, 64, 128) instead of (64, 128).
#: With only two 3x3 layers before global average pooling, the preset sees 10x10-pixel patches and
#: reached 89% on MNIST (10k images, 2 epochs) where the six-layer student reached 98%; a third
#: layer widens its view, costs half the computation and keeps it wide and shallow next to the
#: student (3 layers of 32-128 channels against 6 of 16-32, 3.3x the parameters).
TEACHER = "fitnet_teacher"
TEACHER_OPTIONS: dict = {"channels": (32, 64, 128)}
STUDENT = "fitnet_student"
#: The lesson's default hint (the teacher's middle layer) and guided layer (the student's
#: fourth of six). Both give 7x7 maps on MNIST, so the regressor is a 1x1 convolution, as in the paper.
HINT_LAYER = "conv2"
GUIDED_LAYER = "conv4"
METHODS = ("scratch", "KD", "hints + KD")

def threads(n: int | None = None):
    """Run the block with ``n`` (default :data:`labkd.threads.TRAIN_THREADS`) intra-op threads."""
    return fixed_threads(n)


#: Numbers reported by Romero et al. (2015), for comparison in the lesson.
PAPER_RESULTS: list[dict] = [
    {"dataset": "CIFAR-10", "model": "teacher (maxout CNN, 5 layers)", "params": "~9M", "result": "90.18% accuracy"},
    {"dataset": "CIFAR-10", "model": "FitNet 4 (19 layers), hints + KD", "params": "~2.5M",
     "result": "91.61% accuracy"},
    {"dataset": "MNIST", "model": "teacher (maxout)", "params": "", "result": "0.55% error"},
    {"dataset": "MNIST", "model": "FitNet, hints + KD", "params": "", "result": "0.51% error"},
]


# --------------------------------------------------------------------------------------------
# Recipes


#: The recipes of :func:`plan` (the earlier batch-norm student of six layers, which lesson 11 builds
#: on), as data: full mode, then the fields fast mode changes (tests: batches of 32, so that one
#: epoch of 2,000 images still makes 63 steps). A :class:`Plan` sets the epochs and batch size it
#: was given; the teacher trains on ±2-pixel jitter. Lesson 03's own recipes are
#: :data:`labkd.fitnets_regime.RECIPES`.
PLAN_RECIPES = Recipes({
    "teacher": TrainConfig(epochs=3, batch_size=128, lr=0.05, jitter=2),
    "student": TrainConfig(epochs=4, batch_size=128, lr=0.05, temperature=4.0, alpha=0.9),
}, fast={"teacher": {"epochs": 2, "batch_size": 32}, "student": {"epochs": 1, "batch_size": 32}})


@dataclass(frozen=True)
class Plan:
    """How big the lesson's experiment is.

    The teacher learns from the whole training split; the students from its first ``n_train``
    images (None: all). ``seeds``: one student per method and seed. :attr:`teacher` and
    :attr:`student` are the recipes (:data:`PLAN_RECIPES` with this plan's epochs and batch size).
    """

    n_train: int | None
    n_val: int | None
    epochs: int
    stage1_epochs: int
    teacher_epochs: int
    batch_size: int
    seeds: tuple[int, ...]

    @property
    def teacher(self) -> TrainConfig:
        """The CNN teacher's recipe: SGD + Nesterov, cosine schedule, ±2-pixel jitter (seed 0)."""
        return PLAN_RECIPES["teacher"].replace(epochs=self.teacher_epochs, batch_size=self.batch_size)

    @property
    def student(self) -> TrainConfig:
        """The students' recipe (labels only, seed 0); KD and stage 2 change ``loss`` to ``"distillation"``."""
        return PLAN_RECIPES["student"].replace(epochs=self.epochs, batch_size=self.batch_size)


def plan(fast: bool, seeds: int = 3, n_train: int | None = 10000, epochs: int = PLAN_RECIPES["student"].epochs,
         stage1_epochs: int = 2, teacher_epochs: int = PLAN_RECIPES["teacher"].epochs, seed: int = 0) -> Plan:
    """The experiment's size. Fast mode (tests): the data as given, :data:`PLAN_RECIPES`' fast
    changes (batches of 32, a 2-epoch teacher, 1 epoch per student stage), 1 seed.

    Full mode: students train on ``n_train`` images (CNNs train at a few hundred to a couple of
    thousand images/s on a laptop CPU) and are evaluated on 1,000 validation and all test images.
    """
    for value, name in ((seeds, "seeds"), (epochs, "epochs"), (stage1_epochs, "stage1_epochs"),
                        (teacher_epochs, "teacher_epochs")):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if n_train is not None and (isinstance(n_train, bool) or not isinstance(n_train, int) or n_train <= 0):
        raise ValueError(f"n_train must be a positive integer or None (all images), got {n_train!r}")
    if fast:
        teacher, student = PLAN_RECIPES("teacher", True), PLAN_RECIPES("student", True)
        return Plan(None, None, student.epochs, 1, teacher.epochs, student.batch_size, (seed,))
    return Plan(n_train, 1000, epochs, stage1_epochs, teacher_epochs, PLAN_RECIPES["student"].batch_size,
                tuple(range(seed, seed + seeds)))


def lesson_data(data: Data, plan: Plan) -> Data:
    """The students' data: the training split cut to ``plan.n_train`` images and the validation
    split to ``plan.n_val`` (unchanged when None or larger); the test split is kept whole."""
    n_train = plan.n_train if plan.n_train is not None and plan.n_train < len(data.train) else None
    n_val = plan.n_val if plan.n_val is not None and plan.n_val < len(data.val) else None
    if n_train is None and n_val is None:
        return data
    return data.subset(n_train=n_train, n_val=n_val)


def build_teacher(input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, seed: int = 0) -> BlockModel:
    """An untrained teacher (:data:`TEACHER` with :data:`TEACHER_OPTIONS`), e.g. to read its shapes."""
    return build_model(TEACHER, input_shape, num_classes, seed=seed, **TEACHER_OPTIONS)


def build_student(input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, seed: int = 0) -> BlockModel:
    """An untrained student (:data:`STUDENT`); every method starts from this for a given seed."""
    return build_model(STUDENT, input_shape, num_classes, seed=seed)


def train_teacher(data: Data, plan: Plan, seed: int = 0, progress: bool | None = None) -> Trained:
    """The wide, shallow CNN teacher, trained once on all of ``data.train`` and cached."""
    with threads():
        return train_model(TEACHER, data, plan.teacher.replace(seed=seed), progress=progress,
                           label=f"FitNets teacher ({TEACHER} {TEACHER_OPTIONS}) seed={seed} on {data.name}, "
                                 f"{len(data.train)} images", **TEACHER_OPTIONS)


def train_lesson_teacher(data: Data, run: Regime, progress: bool | None = None) -> Trained:
    """Lesson 03's teacher (:data:`TEACHER` with :data:`TEACHER_OPTIONS`, recipe ``run.teacher``),
    trained once on all of ``data.train`` and cached."""
    with threads():
        return train_model(TEACHER, data, run.teacher, progress=progress,
                           label=f"FitNets lesson teacher ({TEACHER} {TEACHER_OPTIONS}) {run.teacher.epochs} epochs "
                                 f"on {data.name}, {len(data.train)} images", **TEACHER_OPTIONS)


# --------------------------------------------------------------------------------------------
# The two stages


@dataclass
class FitNetResult:
    """Both stages of one FitNets run. ``stage1.regressor`` maps the guided layer onto the hint."""

    stage1: Trained
    stage2: Trained
    hint_layer: str
    guided_layer: str
    stage1_config: TrainConfig
    #: every hint of stage 1 in order (stacked hints); ``stage1`` is the last one.
    stage1_steps: tuple[Trained, ...] = ()

    @property
    def model(self) -> BlockModel:
        """The final student."""
        return self.stage2.model

    @property
    def regressor(self) -> nn.Module:
        return self.stage1.regressor

    @property
    def seconds(self) -> float:
        """Training time of both stages (every hint of stage 1)."""
        return sum(t.seconds for t in (self.stage1_steps or (self.stage1,))) + self.stage2.seconds

    def final(self, metric: str = "test_acc") -> float:
        return self.stage2.final(metric)

    def student_before(self) -> BlockModel:
        """The student as it was before stage 1 (models are seeded by ``config.seed``)."""
        return rebuild(self.stage1.model.spec).eval()

    def regressor_before(self, teacher: nn.Module | Trained) -> nn.Module:
        """The regressor as it was before stage 1 (seeded like :func:`labkd.experiments.train_model`)."""
        return _fresh_regressor(self.student_before(), _model(teacher), self.hint_layer, self.guided_layer,
                                self.stage1_config.seed)


def _model(model: nn.Module | Trained) -> BlockModel:
    return model.model if isinstance(model, Trained) else model


def _fresh_regressor(student: BlockModel, teacher: BlockModel, hint_layer: str, guided_layer: str,
                     seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return losses.make_hint_regressor(student.feature_shape(guided_layer), teacher.feature_shape(hint_layer))


def check_layers(teacher: nn.Module | Trained, hint_layer: str, guided_layer: str,
                 student_arch: str = STUDENT, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 **model_options) -> None:
    """Raise ``ValueError`` naming the valid layers if either name is not a layer of its model."""
    check_feature_name(_model(teacher), hint_layer, "hint_layer")
    student = build_model(student_arch, input_shape, num_classes, **model_options)
    check_feature_name(student, guided_layer, "guided_layer")


def _hint_pairs(hint_layer: str | Sequence[str], guided_layer: str | Sequence[str]) -> list[tuple[str, str]]:
    hints = [hint_layer] if isinstance(hint_layer, str) else list(hint_layer)
    guided = [guided_layer] if isinstance(guided_layer, str) else list(guided_layer)
    if not hints or len(hints) != len(guided) or not all(isinstance(n, str) for n in hints + guided):
        raise ValueError(f"hint_layer and guided_layer must be two layer names, or two lists of names of the same "
                         f"length (stacked hints), got {hint_layer!r} and {guided_layer!r}")
    return list(zip(hints, guided, strict=True))


def train_fitnet(
    data: Data,
    teacher: nn.Module | Trained,
    student_arch: str = STUDENT,
    hint_layer: str | Sequence[str] = HINT_LAYER,
    guided_layer: str | Sequence[str] = GUIDED_LAYER,
    config: TrainConfig | None = None,
    stage1_epochs: int = 1,
    stage1_config: TrainConfig | None = None,
    stage2_config: TrainConfig | None = None,
    progress: bool | None = None,
    on_stage: Callable[[str, Trained], None] | None = None,
    stage1_lr: float | None = None,
    **model_options,
) -> FitNetResult:
    """Stage 1 (hint: guided layer + regressor -> hint layer, MSE), then stage 2 (distillation
    of the whole student from the stage-1 weights). Every stage is cached.

    Args:
        hint_layer / guided_layer: one teacher layer and one student layer, as in the paper, or
            two lists of the same length: **stacked hints**, trained one after the other, each
            from the previous one's weights, bottom first (:func:`hint_pairs_for`).
        config: the students' recipe; ``config.epochs`` is the **total** budget: stage 1 uses
            it with ``loss="hint"`` and ``stage1_epochs`` epochs in all (split evenly over the
            hints), stage 2 with ``loss="distillation"`` and the remaining
            ``config.epochs - stage1_epochs`` epochs, so a FitNet trains exactly as many epochs
            as a student trained with KD alone.
        stage1_config / stage2_config: give either to override the derived recipe entirely
            (``stage1_config``: one hint only).
        stage1_lr: stage 1's learning rate (default: ``config.lr``). Stage 1 does not clip
            gradients: ``config.clip_norm`` applies to stage 2 only (the hint regression of a
            few layers does not blow up; the whole plain student, once its signal flows, can).
        on_stage: called with ``("stage1", trained)`` after each hint and ``("stage2", trained)``.
        model_options: passed to the student's architecture.
    Raises ``ValueError`` (listing the valid names) for an unknown ``hint_layer``/``guided_layer``.
    """
    base = config if config is not None else TrainConfig()
    pairs = _hint_pairs(hint_layer, guided_layer)
    check_positive_int(stage1_epochs, "stage1_epochs")
    if stage1_config is None and stage2_config is None and stage1_epochs >= base.epochs:
        raise ValueError(f"stage1_epochs={stage1_epochs} leaves no epoch of the budget config.epochs={base.epochs} "
                         f"for stage 2; use fewer stage-1 epochs or a larger budget")
    if stage1_config is not None and len(pairs) > 1:
        raise ValueError("stage1_config overrides a single hint; with stacked hints give stage1_epochs and stage1_lr")
    if stage1_config is None and stage1_epochs % len(pairs):
        raise ValueError(f"stage1_epochs={stage1_epochs} must split evenly over the {len(pairs)} stacked hints")
    per_hint = stage1_epochs // len(pairs)
    steps = [stage1_config] if stage1_config is not None else [
        base.replace(loss="hint", epochs=per_hint, hint_layer=h, guided_layer=g, eval_every=per_hint,
                     lr=base.lr if stage1_lr is None else stage1_lr, clip_norm=None) for h, g in pairs]
    s1 = steps[-1]
    if s1.loss != "hint" or (s1.hint_layer, s1.guided_layer) != pairs[-1]:
        raise ValueError(f"stage1_config must have loss='hint', hint_layer={pairs[-1][0]!r}, "
                         f"guided_layer={pairs[-1][1]!r}; got loss={s1.loss!r}, hint_layer={s1.hint_layer!r}, "
                         f"guided_layer={s1.guided_layer!r}")
    s2 = stage2_config or base.replace(loss="distillation", epochs=base.epochs - sum(c.epochs for c in steps))
    if s2.loss == "hint":
        raise ValueError("stage2_config must train the whole student (e.g. loss='distillation'), not loss='hint'")
    for h, g in pairs:
        check_layers(teacher, h, g, student_arch, data.input_shape, data.num_classes, **model_options)
    where = f"{data.name}, {len(data.train)} images"
    done: list[Trained] = []
    for cfg in steps:
        with threads():
            stage1 = train_model(student_arch, data, cfg, teacher=teacher, init=done[-1] if done else None,
                                 progress=progress,
                                 label=f"FitNets stage 1 ({student_arch} {cfg.guided_layer} <- teacher {cfg.hint_layer}"
                                       f"{f', hint {len(done) + 1} of {len(steps)}' if len(steps) > 1 else ''}) "
                                       f"seed={cfg.seed} on {where}", **model_options)
        done.append(stage1)
        if on_stage is not None:
            on_stage("stage1", stage1)
    with threads():
        stage2 = train_model(student_arch, data, s2, teacher=teacher, init=done[-1], progress=progress,
                             label=f"FitNets stage 2 ({student_arch} {s2.loss} from hints "
                                   f"{', '.join(f'{g}<-{h}' for h, g in pairs)}) seed={s2.seed} on {where}",
                             **model_options)
    if on_stage is not None:
        on_stage("stage2", stage2)
    return FitNetResult(done[-1], stage2, pairs[-1][0], pairs[-1][1], s1, tuple(done))


def train_baseline(data: Data, method: str, config: TrainConfig, teacher: nn.Module | Trained | None = None,
                   student_arch: str = STUDENT, progress: bool | None = None, **model_options) -> Trained:
    """``"scratch"`` (labels only) or ``"KD"`` (distillation from ``teacher``), cached."""
    with threads():
        return baseline_run(data, method, config, teacher, student_arch, **model_options).train(data, progress)


def baseline_run(data: Data, method: str, config: TrainConfig, teacher: nn.Module | Trained | None = None,
                 student_arch: str = STUDENT, **model_options) -> parallel.Run:
    """The cached run behind :func:`train_baseline`."""
    if method == "scratch":
        cfg = config.replace(loss="cross_entropy")
        teacher = None
    elif method == "KD":
        if teacher is None:
            raise ValueError("method='KD' needs the teacher")
        cfg = config.replace(loss="distillation")
    else:
        raise ValueError(f"method={method!r} is not a baseline; expected 'scratch' or 'KD'")
    return parallel.Run(student_arch, cfg, teacher=teacher, label=f"FitNets lesson: {student_arch} {method} "
                        f"seed={cfg.seed} on {data.name}, {len(data.train)} images", **model_options)


# --------------------------------------------------------------------------------------------
# The comparison


def compare_methods(
    data: Data,
    teacher: nn.Module | Trained,
    seeds: Sequence[int],
    config: TrainConfig,
    stage1_epochs: int = 1,
    hint_layer: str | Sequence[str] = HINT_LAYER,
    guided_layer: str | Sequence[str] = GUIDED_LAYER,
    student_arch: str = STUDENT,
    progress: bool | None = None,
    methods: Sequence[str] = METHODS,
    stage1_lr: float | None = None,
    **model_options,
) -> list[dict]:
    """Train the student three ways for every seed: labels only, KD, hints + KD (``methods``
    picks some of them, in this order).

    Every method starts from the same initial weights for a given seed and trains
    ``config.epochs`` epochs in all (hints + KD: ``stage1_epochs`` of stage 1, the rest of stage 2).
    Returns one row per (method, seed): ``{method, seed, accuracy, val_accuracy, params, seconds,
    curve, offset, start_norm}``: final test (and validation) accuracy; seconds of training (both
    stages for hints + KD); ``curve`` the test accuracy after each epoch of whole-network training,
    which for hints + KD starts after ``offset`` = ``stage1_epochs`` epochs of stage 1 (0 for the
    others); ``start_norm`` the first layer's weight norm before training (the same for every
    method of a seed).
    """
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    check_positive_int(stage1_epochs, "stage1_epochs")
    if stage1_epochs >= config.epochs:
        raise ValueError(f"stage1_epochs={stage1_epochs} leaves no epoch of the budget config.epochs={config.epochs} "
                         f"for stage 2")
    if isinstance(methods, str) or not methods or any(m not in METHODS for m in methods):
        raise ValueError(f"methods must list some of {list(METHODS)}, got {methods!r}")
    for h, g in _hint_pairs(hint_layer, guided_layer):
        check_layers(teacher, h, g, student_arch, data.input_shape, data.num_classes, **model_options)
    baselines = [m for m in METHODS[:2] if m in methods]
    fitnets: dict[int, FitNetResult] = {}
    # the baselines train in other processes (LABKD_WORKERS) while this one trains the FitNets' stages
    with parallel.background(data, [baseline_run(data, m, config.replace(seed=seed), teacher, student_arch,
                                                 **model_options) for seed in seeds for m in baselines]):
        if "hints + KD" in methods:
            for seed in seeds:
                fitnets[seed] = train_fitnet(data, teacher, student_arch, hint_layer, guided_layer,
                                             config.replace(seed=seed), stage1_epochs, progress=progress,
                                             stage1_lr=stage1_lr, **model_options)
    rows = []
    for seed in seeds:
        for method in baselines:
            trained = train_baseline(data, method, config.replace(seed=seed), teacher, student_arch, progress,
                                     **model_options)
            rows.append(_row(method, seed, trained, trained.model, trained.seconds, 0))
        if seed in fitnets:
            fitnet = fitnets[seed]
            rows.append(_row("hints + KD", seed, fitnet.stage2, fitnet.model, fitnet.seconds, stage1_epochs))
    return rows


def _start_norm(model: BlockModel) -> float:
    first = rebuild(model.spec).blocks[model.feature_names[0]][0]
    return float(first.weight.detach().norm())


def _row(method: str, seed: int, trained: Trained, model: nn.Module, seconds: float, offset: int) -> dict:
    return {"method": method, "seed": seed, "accuracy": trained.final("test_acc"),
            "val_accuracy": trained.final("val_acc"), "params": num_parameters(model),
            "seconds": round(seconds, 1), "curve": [h["test_acc"] for h in trained.history], "offset": offset,
            "start_norm": _start_norm(model)}


def summarize(rows: Sequence[dict]) -> list[dict]:
    """One row per method: test (and validation) accuracy mean ± std over seeds, parameters, mean
    training time."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        out.append({
            "method": method, "seeds": len(mine),
            "test accuracy %": stats.pm_values([r["accuracy"] for r in mine], unit=""),
            "validation accuracy %": stats.pm_values([r.get("val_accuracy", float("nan")) for r in mine], unit="")
            if all("val_accuracy" in r for r in mine) else "",
            "params": mine[0]["params"],
            "train seconds": round(float(np.mean([r["seconds"] for r in mine])), 1),
        })
    return out


def paired_claim(rows: Sequence[dict], what: str, treatment: str = "hints + KD", control: str = "KD",
                 expected: int = 1, metric: str = "accuracy") -> stats.Claim:
    """The claim "``treatment`` beats ``control``" judged by :func:`labkd.stats.claim` on the
    seeds both methods ran (paired seed by seed). ``metric``: ``"accuracy"`` (test) or
    ``"val_accuracy"`` (validation, for choosing a regime)."""
    if metric not in ("accuracy", "val_accuracy"):
        raise ValueError(f"metric must be 'accuracy' (test) or 'val_accuracy', got {metric!r}")
    by = {m: {r["seed"]: r[metric] for r in rows if r["method"] == m} for m in (treatment, control)}
    for m, values in by.items():
        if not values:
            raise ValueError(f"rows hold no {m!r} runs; found {sorted({r['method'] for r in rows})}")
    seeds = [s for s in by[treatment] if s in by[control]]
    if not seeds:
        raise ValueError(f"{treatment!r} and {control!r} share no seed: nothing to pair")
    return stats.claim(what, [by[treatment][s] for s in seeds], [by[control][s] for s in seeds], seeds,
                       expected=expected, treatment_name=treatment, control_name=control,
                       metric="test accuracy" if metric == "accuracy" else "validation accuracy")


# --------------------------------------------------------------------------------------------
# Looking at the hint


@torch.no_grad()
def hint_maps(teacher: nn.Module | Trained, student: nn.Module | Trained, regressor: nn.Module, x: Tensor,
              hint_layer: str = HINT_LAYER, guided_layer: str = GUIDED_LAYER) -> tuple[Tensor, Tensor]:
    """The teacher's hint and the regressed guided layer for images ``x``.

    Args: x (N, C, H, W) or one image (C, H, W). Returns ``(hint, regressed)``, each
    (N, C_t, H_t, W_t) — or (C_t, H_t, W_t) for one image — computed in eval mode.
    """
    teacher, student = _model(teacher), _model(student)
    check_feature_name(teacher, hint_layer, "hint_layer")
    check_feature_name(student, guided_layer, "guided_layer")
    if not isinstance(x, Tensor) or x.ndim not in (3, 4):
        raise ValueError(f"x must be images (N, C, H, W) or one image (C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    single = x.ndim == 3
    batch = x.unsqueeze(0) if single else x
    modes = [m.training for m in (teacher, student, regressor)]
    for m in (teacher, student, regressor):
        m.eval()
    device = next(student.parameters()).device
    batch = batch.to(device)
    hint = teacher.to(device).forward_features(batch, upto=hint_layer)[1][hint_layer]
    regressed = regressor.to(device)(student.forward_features(batch, upto=guided_layer)[1][guided_layer])
    for m, mode in zip((teacher, student, regressor), modes):
        m.train(mode)
    return (hint[0], regressed[0]) if single else (hint, regressed)


@dataclass
class HintSnapshot:
    """Hint and regressed maps before and after stage 1 for a few test images (all on the CPU).

    ``hint``, ``before``, ``after``: (N, C_t, H, W); ``images``: (N, 1, H_in, W_in);
    ``loss_before``/``loss_after``: the hint loss (MSE) on ``loss_images`` test images.
    """

    images: Tensor
    hint: Tensor
    before: Tensor
    after: Tensor
    loss_before: float
    loss_after: float
    loss_images: int
    hint_layer: str
    guided_layer: str


def hint_snapshot(teacher: nn.Module | Trained, fitnet: FitNetResult, data: Data, n_images: int = 16,
                  loss_images: int = 1000, hint_loss=losses.hint_loss) -> HintSnapshot:
    """Precompute everything the hint figures and the browser panel show (one pass, no training).

    ``hint_loss(regressed, hint)`` computes the loss values (the lesson passes the student's own).
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int) or not 1 <= n_images <= len(data.test):
        raise ValueError(f"n_images must be an integer in 1..{len(data.test)}, got {n_images!r}")
    x = data.test.x[:max(n_images, min(loss_images, len(data.test)))]
    student0, regressor0 = fitnet.student_before(), fitnet.regressor_before(teacher)
    layers = dict(hint_layer=fitnet.hint_layer, guided_layer=fitnet.guided_layer)
    with threads():
        hint, before = hint_maps(teacher, student0, regressor0, x, **layers)
        _, after = hint_maps(teacher, fitnet.stage1.model, fitnet.regressor, x, **layers)
    k = min(loss_images, len(x))
    return HintSnapshot(
        images=x[:n_images].cpu(), hint=hint[:n_images].cpu(), before=before[:n_images].cpu(),
        after=after[:n_images].cpu(), loss_before=float(hint_loss(before[:k], hint[:k])),
        loss_after=float(hint_loss(after[:k], hint[:k])), loss_images=k, **layers)
