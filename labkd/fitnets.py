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

Lesson 03 (:func:`regime`): a teacher trained to convergence, and plain (no batch norm) students
of 16 channels, one deep (10 layers: does not learn from labels or soft targets alone) and one
shallow (3 layers: learns either way), compared at an equal budget of epochs:

>>> run = regime(fast=False, seed=0)            # sizes, recipes, fresh seeds 100..104
>>> teacher = train_lesson_teacher(data, run)   # cached
>>> students = lesson_data(data, run)
>>> rows = compare_methods(students, teacher, run.seeds, run.config(), run.stage1_epochs, "conv2",
...                        run.guided_layer("deep"), "cnn", **run.options("deep"))
>>> paired_claim(rows, "(03) hints + KD beat KD alone for the deep thin student").verdict

(:func:`plan`, :func:`train_teacher`, :func:`build_student` and :data:`STUDENT` keep the earlier
batch-norm student of six layers that lesson 11 builds on.)

Speed: these CNNs are small, and PyTorch's default of one intra-op thread per core made them
about 10x *slower* on a busy 2-core CPU (OpenMP threads spin, waiting for each other). The
training and feature functions here therefore run with :data:`labkd.threads.TRAIN_THREADS` threads and restore
the previous setting afterwards (set it to None to leave PyTorch's setting alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor, nn

from labkd import losses, stats
from labkd.checks import check_positive_int
from labkd.data import Data
from labkd.experiments import Trained, train_model
from labkd.models import BlockModel, build_model, check_feature_name, num_parameters, rebuild
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
#: One colour per method, shared by every figure and panel of the lesson.
COLOURS = {"scratch": "#7f7f7f", "KD": "#1f77b4", "hints + KD": "#2ca02c", "teacher": "#d62728"}

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


@dataclass(frozen=True)
class Plan:
    """How big the lesson's experiment is.

    The teacher learns from the whole training split; the students from its first ``n_train``
    images (None: all). ``seeds``: one student per method and seed.
    """

    n_train: int | None
    n_val: int | None
    epochs: int
    stage1_epochs: int
    teacher_epochs: int
    batch_size: int
    seeds: tuple[int, ...]


def plan(fast: bool, seeds: int = 3, n_train: int | None = 10000, epochs: int = 4, stage1_epochs: int = 2,
         teacher_epochs: int = 3, seed: int = 0) -> Plan:
    """The experiment's size. Fast mode (tests): the data as given, batches of 32 (so that one
    epoch of 2,000 images still makes 63 steps), 1 epoch per student stage, 1 seed.

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
        return Plan(None, None, 1, 1, 2, 32, (seed,))
    return Plan(n_train, 1000, epochs, stage1_epochs, teacher_epochs, 128, tuple(range(seed, seed + seeds)))


def lesson_data(data: Data, plan: Plan) -> Data:
    """The students' data: the training split cut to ``plan.n_train`` images and the validation
    split to ``plan.n_val`` (unchanged when None or larger); the test split is kept whole."""
    n_train = plan.n_train if plan.n_train is not None and plan.n_train < len(data.train) else None
    n_val = plan.n_val if plan.n_val is not None and plan.n_val < len(data.val) else None
    if n_train is None and n_val is None:
        return data
    return data.subset(n_train=n_train, n_val=n_val)


def teacher_config(plan: Plan, seed: int = 0) -> TrainConfig:
    """The CNN teacher's recipe: SGD + Nesterov, cosine schedule, ±2-pixel jitter."""
    return TrainConfig(epochs=plan.teacher_epochs, batch_size=plan.batch_size, lr=0.05, jitter=2, seed=seed)


def student_config(plan: Plan, seed: int = 0, **changes) -> TrainConfig:
    """The students' recipe (labels only); KD and stage 2 change ``loss`` to ``"distillation"``."""
    config = TrainConfig(epochs=plan.epochs, batch_size=plan.batch_size, lr=0.05, temperature=4.0, alpha=0.9,
                         seed=seed)
    return config.replace(**changes) if changes else config


def build_teacher(input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, seed: int = 0) -> BlockModel:
    """An untrained teacher (:data:`TEACHER` with :data:`TEACHER_OPTIONS`), e.g. to read its shapes."""
    return build_model(TEACHER, input_shape, num_classes, seed=seed, **TEACHER_OPTIONS)


def build_student(input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, seed: int = 0) -> BlockModel:
    """An untrained student (:data:`STUDENT`); every method starts from this for a given seed."""
    return build_model(STUDENT, input_shape, num_classes, seed=seed)


def train_teacher(data: Data, plan: Plan, seed: int = 0, progress: bool | None = None) -> Trained:
    """The wide, shallow CNN teacher, trained once on all of ``data.train`` and cached."""
    with threads():
        return train_model(TEACHER, data, teacher_config(plan, seed), progress=progress,
                           label=f"FitNets teacher ({TEACHER} {TEACHER_OPTIONS}) seed={seed} on {data.name}, "
                                 f"{len(data.train)} images", **TEACHER_OPTIONS)


# --------------------------------------------------------------------------------------------
# Lesson 03's regime: a deep, thin, plain student that cannot learn without a hint

#: The students of the lesson's claims are plain CNNs: ``depth`` 3x3 Conv(+bias)-ReLU layers of
#: :data:`WIDTH` channels, no batch normalisation, PyTorch's default initialisation, max-pooling
#: after layer 1 and about a third of the way up, global average pooling and a linear head (the
#: kind of network FitNets was written for, before batch normalisation). Signals shrink layer
#: after layer at initialisation, so a deep one does not learn from labels or soft targets.
WIDTH = 16
#: Depths of the two students: ``deep`` (the claim) and ``shallow`` (the contrast, where hints
#: have nothing to fix). Chosen on validation with :data:`DEV_SEEDS` (see :data:`DEV_RESULTS`).
DEPTHS: dict[str, int] = {"deep": 8, "shallow": 3}
#: The lesson's teacher (wide, shallow, batch norm) and its recipe: the whole training split,
#: trained to convergence (no jitter: fast, and > 99 % on MNIST).
TEACHER_RECIPE = TrainConfig(epochs=6, batch_size=128, lr=0.05, seed=0)
#: The students' recipe: ``epochs`` is the **total** budget of every arm (FitNets: stage 1 +
#: stage 2), ``loss`` is set per arm.
STUDENT_RECIPE = TrainConfig(epochs=8, batch_size=128, lr=0.01, temperature=4.0, alpha=0.9)
#: Epochs of FitNets stage 1 (hint training), taken out of the budget above.
STAGE1_EPOCHS = 3
#: Learning rate of stage 1 (the hint regression trains well at a rate at which a plain
#: network, once its signal no longer fades, diverges under the whole-network losses).
STAGE1_LR = 0.05
#: Training images of the students (the first of a seeded permutation of the training split).
N_TRAIN = 5000
#: Validation images used to choose the regime (test: all 10,000 images).
N_VAL = 2000
#: Seeds with which the regime was chosen on validation; the claims use fresh seeds.
DEV_SEEDS = (0, 1, 2)
#: Fresh seeds of the claims: ``FRESH_FIRST + seed`` onwards (``seed``: the notebook parameter).
FRESH_FIRST = 100
#: The development runs behind the choice (seed 0 unless said; 5,000 training images, 2,000
#: validation images): final **validation** accuracy (%) of each arm, "" = not run. The first
#: rows are quick probes with a proxy teacher (the same CNN trained on 10,000 images for 3
#: epochs, 96.6 %); the last one uses the lesson's teacher and the development seeds 0 and 1.
DEV_RESULTS: list[dict] = [
    {"regime": "10 layers, lr 0.05, 6 epochs", "teacher": "-", "scratch": "12.4", "KD": "", "hints + KD": ""},
    {"regime": "4 layers, lr 0.05, 6 epochs", "teacher": "-", "scratch": "47.7", "KD": "", "hints + KD": ""},
    {"regime": "3 layers, lr 0.05, 6 epochs", "teacher": "-", "scratch": "77.6", "KD": "", "hints + KD": ""},
    {"regime": "10 layers, lr 0.05, 8 epochs; hint -> conv5, stage 1: 2 epochs", "teacher": "proxy",
     "scratch": "", "KD": "", "hints + KD": "10.0"},
    {"regime": "8 layers, lr 0.05, 8 epochs; hint -> conv6, stage 1: 3 epochs", "teacher": "proxy",
     "scratch": "12.4", "KD": "10.0", "hints + KD": "10.0"},
    {"regime": "8 layers, lr 0.05 then 0.02 in stage 2; hint -> conv8, stage 1: 3 epochs", "teacher": "proxy",
     "scratch": "", "KD": "", "hints + KD": "10.0 / 10.0"},
    {"regime": "8 layers, lr 0.01, 8 epochs", "teacher": "proxy", "scratch": "12.4", "KD": "10.0", "hints + KD": ""},
    {"regime": "8 layers, lr 0.01 (stage 1 too); hint -> conv6 or conv8, stage 1: 3 epochs", "teacher": "proxy",
     "scratch": "", "KD": "", "hints + KD": "10.0 / 10.0"},
    {"regime": "8 layers, stage 1: 3 epochs at lr 0.05, then lr 0.01; hint -> conv6 (7 epochs in all)",
     "teacher": "proxy", "scratch": "", "KD": "", "hints + KD": "24.5"},
    {"regime": "8 layers, Adam lr 0.001, 8 epochs; hint -> conv6, stage 1: 3 epochs", "teacher": "proxy",
     "scratch": "59.7", "KD": "64.2", "hints + KD": "61.7"},
    {"regime": "chosen: 8 layers; stage 1: 3 epochs at lr 0.05, then lr 0.01; hint -> conv6; 8 epochs in all "
               "(development seeds 0 / 1)", "teacher": "lesson's (98.82 %)", "scratch": "",
     "KD": "9.95 / 9.35", "hints + KD": "22.70 / 9.35"},
]


def thin_student(depth: int, width: int = WIDTH) -> dict:
    """Model options (for ``build_model("cnn", **options)``) of a plain, thin CNN of ``depth`` layers.

    >>> build_model("cnn", seed=0, **thin_student(10))     # 10 layers of 16 channels, no batch norm

    Max-pooling follows layer 1 and layer ``1 + max(1, (depth - 1) // 3)``, so most layers run on
    7x7 maps (cheap on a CPU) and the guided layer can match a 7x7 teacher hint.
    """
    check_positive_int(depth, "depth")
    check_positive_int(width, "width")
    if depth < 2:
        raise ValueError(f"depth must be at least 2 (two pooling stages to reach 7x7 maps), got {depth!r}")
    second = 1 + max(1, (depth - 1) // 3)
    return {"channels": (int(width),) * depth, "batch_norm": False, "pool_after": (1, second)}


def guided_layer_for(depth: int) -> str:
    """The guided layer of a :func:`thin_student`: two layers below its top (so that stage 2
    starts with two untrained layers and the head above it), or the first with 7x7 maps if that
    comes later (so that a 1x1 regressor maps it onto a 7x7 hint, as in the paper)."""
    second = thin_student(depth)["pool_after"][1]
    return f"conv{max(second, depth - 2)}"


@dataclass(frozen=True)
class Regime:
    """Sizes of lesson 03's experiment (see :func:`regime`). ``epochs``: every arm's total budget;
    ``seeds``: the fresh seeds of the claims; ``depths``: the deep and the shallow student."""

    n_train: int | None
    n_val: int | None
    epochs: int
    stage1_epochs: int
    teacher: TrainConfig
    student: TrainConfig
    depths: dict
    seeds: tuple[int, ...]
    dev_seeds: tuple[int, ...] = DEV_SEEDS
    stage1_lr: float = STAGE1_LR

    def options(self, student: str) -> dict:
        """Model options of the ``"deep"`` or ``"shallow"`` student."""
        if student not in self.depths:
            raise ValueError(f"student={student!r} is unknown; expected one of {list(self.depths)}")
        return thin_student(self.depths[student])

    def guided_layer(self, student: str) -> str:
        if student not in self.depths:
            raise ValueError(f"student={student!r} is unknown; expected one of {list(self.depths)}")
        return guided_layer_for(self.depths[student])

    def config(self, seed: int = 0) -> TrainConfig:
        """The students' recipe with ``seed``."""
        return self.student.replace(seed=seed)


def regime(fast: bool, seed: int = 0, seeds: int = stats.MIN_SEEDS, deep: int = DEPTHS["deep"],
           shallow: int = DEPTHS["shallow"]) -> Regime:
    """Lesson 03's experiment: :data:`TEACHER_RECIPE`, :data:`STUDENT_RECIPE`, :data:`STAGE1_EPOCHS`,
    :data:`N_TRAIN` images, ``seeds`` fresh seeds from ``FRESH_FIRST + seed``.

    Fast mode (tests, a smoke test): the data as given, a 1-epoch teacher, 3 epochs per arm (1 of
    stage 1), batches of 32, one seed (``seed`` itself).
    """
    check_positive_int(seeds, "seeds")
    thin_student(deep)
    thin_student(shallow)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    depths = {"deep": deep, "shallow": shallow}
    if fast:
        return Regime(None, None, 3, 1, TEACHER_RECIPE.replace(epochs=1, batch_size=32),
                      STUDENT_RECIPE.replace(epochs=3, batch_size=32), depths, (seed,))
    fresh = stats.fresh_seeds(FRESH_FIRST + seed, seeds, development=DEV_SEEDS)
    return Regime(N_TRAIN, N_VAL, STUDENT_RECIPE.epochs, STAGE1_EPOCHS, TEACHER_RECIPE, STUDENT_RECIPE,
                  depths, tuple(fresh))


def train_lesson_teacher(data: Data, run: Regime, progress: bool | None = None) -> Trained:
    """Lesson 03's teacher (:data:`TEACHER` with :data:`TEACHER_OPTIONS`, recipe ``run.teacher``),
    trained once on all of ``data.train`` and cached."""
    with threads():
        return train_model(TEACHER, data, run.teacher, progress=progress,
                           label=f"FitNets lesson teacher ({TEACHER} {TEACHER_OPTIONS}) {run.teacher.epochs} epochs "
                                 f"on {data.name}, {len(data.train)} images", **TEACHER_OPTIONS)


def build_thin_student(depth: int, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                       seed: int = 0) -> BlockModel:
    """An untrained :func:`thin_student` (every arm of a seed starts from these weights)."""
    return build_model("cnn", input_shape, num_classes, seed=seed, **thin_student(depth))


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

    @property
    def model(self) -> BlockModel:
        """The final student."""
        return self.stage2.model

    @property
    def regressor(self) -> nn.Module:
        return self.stage1.regressor

    @property
    def seconds(self) -> float:
        """Training time of both stages."""
        return self.stage1.seconds + self.stage2.seconds

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


def train_fitnet(
    data: Data,
    teacher: nn.Module | Trained,
    student_arch: str = STUDENT,
    hint_layer: str = HINT_LAYER,
    guided_layer: str = GUIDED_LAYER,
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
    of the whole student from the stage-1 weights). Both stages are cached.

    Args:
        config: the students' recipe; ``config.epochs`` is the **total** budget: stage 1 uses
            it with ``loss="hint"`` and ``stage1_epochs`` epochs, stage 2 with
            ``loss="distillation"`` and the remaining ``config.epochs - stage1_epochs`` epochs, so
            a FitNet trains exactly as many epochs as a student trained with KD alone.
        stage1_config / stage2_config: give either to override the derived recipe entirely.
        stage1_lr: stage 1's learning rate (default: ``config.lr``).
        on_stage: called with ``("stage1", trained)`` and ``("stage2", trained)`` (progress displays).
        model_options: passed to the student's architecture.
    Raises ``ValueError`` (listing the valid names) for an unknown ``hint_layer``/``guided_layer``.
    """
    base = config if config is not None else TrainConfig()
    check_positive_int(stage1_epochs, "stage1_epochs")
    if stage1_config is None and stage2_config is None and stage1_epochs >= base.epochs:
        raise ValueError(f"stage1_epochs={stage1_epochs} leaves no epoch of the budget config.epochs={base.epochs} "
                         f"for stage 2; use fewer stage-1 epochs or a larger budget")
    s1 = stage1_config or base.replace(loss="hint", epochs=stage1_epochs, hint_layer=hint_layer,
                                        guided_layer=guided_layer, lr=base.lr if stage1_lr is None else stage1_lr)
    if s1.loss != "hint" or s1.hint_layer != hint_layer or s1.guided_layer != guided_layer:
        raise ValueError(f"stage1_config must have loss='hint', hint_layer={hint_layer!r}, "
                         f"guided_layer={guided_layer!r}; got loss={s1.loss!r}, hint_layer={s1.hint_layer!r}, "
                         f"guided_layer={s1.guided_layer!r}")
    s2 = stage2_config or base.replace(loss="distillation", epochs=base.epochs - s1.epochs)
    if s2.loss == "hint":
        raise ValueError("stage2_config must train the whole student (e.g. loss='distillation'), not loss='hint'")
    check_layers(teacher, hint_layer, guided_layer, student_arch, data.input_shape, data.num_classes, **model_options)
    where = f"{data.name}, {len(data.train)} images"
    with threads():
        stage1 = train_model(student_arch, data, s1, teacher=teacher, progress=progress,
                             label=f"FitNets stage 1 ({student_arch} {guided_layer} <- teacher {hint_layer}) "
                                   f"seed={s1.seed} on {where}", **model_options)
    if on_stage is not None:
        on_stage("stage1", stage1)
    with threads():
        stage2 = train_model(student_arch, data, s2, teacher=teacher, init=stage1, progress=progress,
                             label=f"FitNets stage 2 ({student_arch} {s2.loss} from hints "
                                   f"{guided_layer}<-{hint_layer}) seed={s2.seed} on {where}", **model_options)
    if on_stage is not None:
        on_stage("stage2", stage2)
    return FitNetResult(stage1, stage2, hint_layer, guided_layer, s1)


def train_baseline(data: Data, method: str, config: TrainConfig, teacher: nn.Module | Trained | None = None,
                   student_arch: str = STUDENT, progress: bool | None = None, **model_options) -> Trained:
    """``"scratch"`` (labels only) or ``"KD"`` (distillation from ``teacher``), cached."""
    if method == "scratch":
        cfg = config.replace(loss="cross_entropy")
        teacher = None
    elif method == "KD":
        if teacher is None:
            raise ValueError("method='KD' needs the teacher")
        cfg = config.replace(loss="distillation")
    else:
        raise ValueError(f"method={method!r} is not a baseline; expected 'scratch' or 'KD'")
    with threads():
        return train_model(student_arch, data, cfg, teacher=teacher, progress=progress,
                           label=f"FitNets lesson: {student_arch} {method} seed={cfg.seed} on {data.name}, "
                                 f"{len(data.train)} images", **model_options)


# --------------------------------------------------------------------------------------------
# The comparison


def compare_methods(
    data: Data,
    teacher: nn.Module | Trained,
    seeds: Sequence[int],
    config: TrainConfig,
    stage1_epochs: int = 1,
    hint_layer: str = HINT_LAYER,
    guided_layer: str = GUIDED_LAYER,
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
    check_layers(teacher, hint_layer, guided_layer, student_arch, data.input_shape, data.num_classes, **model_options)
    rows = []
    for seed in seeds:
        cfg = config.replace(seed=seed)
        for method in [m for m in METHODS[:2] if m in methods]:
            trained = train_baseline(data, method, cfg, teacher, student_arch, progress, **model_options)
            rows.append(_row(method, seed, trained, trained.model, trained.seconds, 0))
        if "hints + KD" not in methods:
            continue
        fitnet = train_fitnet(data, teacher, student_arch, hint_layer, guided_layer, cfg, stage1_epochs,
                              progress=progress, stage1_lr=stage1_lr, **model_options)
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


def busiest_channels(hint: Tensor, k: int = 4) -> list[int]:
    """The ``k`` channels of a hint (C, H, W) whose maps vary the most (the most informative to show)."""
    if hint.ndim != 3:
        raise ValueError(f"hint must have shape (C, H, W), got {tuple(hint.shape)}")
    return hint.flatten(1).std(1).argsort(descending=True)[:k].tolist()


# --------------------------------------------------------------------------------------------
# Figures


def hint_figure(snapshot: HintSnapshot, image: int = 0, channels: Sequence[int] | None = None) -> go.Figure:
    """Rows: channels of the teacher's hint; columns: the hint, the regressor's output before
    stage 1, and after. One test image; shared colour range per row."""
    channels = list(channels) if channels is not None else busiest_channels(snapshot.hint[image])
    titles = ["teacher hint", "regressed, before stage 1", "regressed, after stage 1"]
    fig = make_subplots(rows=len(channels), cols=3, column_titles=titles,
                        row_titles=[f"ch {c}" for c in channels], horizontal_spacing=0.03, vertical_spacing=0.03)
    for r, c in enumerate(channels, start=1):
        maps = [snapshot.hint[image, c], snapshot.before[image, c], snapshot.after[image, c]]
        lo, hi = float(min(m.min() for m in maps)), float(max(m.max() for m in maps))
        for col, m in enumerate(maps, start=1):
            fig.add_trace(go.Heatmap(z=m.flip(0).numpy(), zmin=lo, zmax=hi, colorscale="Viridis",
                                     showscale=False, hovertemplate="%{z:.2f}<extra></extra>"), row=r, col=col)
    fig.update_xaxes(visible=False).update_yaxes(visible=False)
    fig.update_layout(height=150 * len(channels) + 100, width=620, margin=dict(l=10, r=40, t=90, b=10),
                      title=dict(text=f"hint loss {snapshot.loss_before:.3f} → {snapshot.loss_after:.3f} "
                                      f"(MSE, {snapshot.loss_images} test images)", font_size=14, x=0.02, y=0.98))
    return fig


def comparison_figure(rows: Sequence[dict], teacher_accuracy: float | None = None) -> go.Figure:
    """Test accuracy of each method: one dot per seed and the mean ± std; the teacher as a line."""
    fig = go.Figure()
    for method in dict.fromkeys(r["method"] for r in rows):
        acc = [100 * r["accuracy"] for r in rows if r["method"] == method]
        mean, std = stats.mean_std(acc)
        colour = COLOURS.get(method)
        fig.add_trace(go.Scatter(x=[method] * len(acc), y=acc, mode="markers", name=f"{method} (seeds)",
                                 marker=dict(size=8, opacity=0.5, color=colour), showlegend=False))
        fig.add_trace(go.Scatter(x=[method], y=[mean], mode="markers", name=method,
                                 marker=dict(size=18, symbol="line-ew-open", line_width=3, color=colour),
                                 error_y=dict(type="data", array=[std], visible=True, color=colour)))
    if teacher_accuracy is not None:
        fig.add_hline(y=100 * teacher_accuracy, line_dash="dot", line_color=COLOURS["teacher"],
                      annotation_text="teacher")
    fig.update_layout(yaxis_title="test accuracy %", height=380, showlegend=False,
                      title="Same student, same initial weights, three ways of training")
    return fig


def curves_figure(rows: Sequence[dict], title: str = "Test accuracy during training (mean ± std over seeds)") -> go.Figure:
    """Test accuracy after each epoch, mean ± std over seeds. The x-axis counts every epoch of
    training, so hints + KD starts after its stage-1 epochs (in which the head is not trained)
    and every method ends at the same epoch (the same budget)."""
    fig = go.Figure()
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        offset, n = mine[0]["offset"], min(len(r["curve"]) for r in mine)
        spread = [stats.mean_std([100 * r["curve"][e] for r in mine]) for e in range(n)]
        fig.add_trace(go.Scatter(x=[offset + e + 1 for e in range(n)], y=[m for m, _ in spread], name=method,
                                 mode="lines+markers", line_color=COLOURS.get(method),
                                 error_y=dict(type="data", array=[s for _, s in spread])))
        if offset:
            fig.add_vrect(x0=0.5, x1=offset + 0.5, fillcolor="#2ca02c", opacity=0.08, line_width=0,
                          annotation_text="stage 1 (hints)", annotation_position="top left")
    fig.update_xaxes(dtick=1)
    fig.update_layout(xaxis_title="epochs of training (stage 1 included)", yaxis_title="test accuracy %",
                      height=380, title=title)
    return fig


def model_table(teacher: nn.Module | Trained, student: nn.Module | Trained,
                regressor: nn.Module | None = None, student_name: str = "student",
                **more_students: nn.Module | Trained) -> list[dict]:
    """Rows describing teacher, student, any ``more_students`` (by name) and the stage-1
    regressor: layers, channels, batch norm, parameters."""
    rows = []
    for name, model in (("teacher", teacher), (student_name, student), *more_students.items()):
        model = _model(model)
        channels = model.spec.get("channels", ())
        shown = f"{len(channels)} x {channels[0]}" if channels and len(set(channels)) == 1 else str(tuple(channels))
        rows.append({"model": name, "conv layers": len(model.feature_names), "channels": shown,
                     "batch norm": "yes" if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) else "no",
                     "params": num_parameters(model)})
    if regressor is not None:
        rows.append({"model": "regressor (stage 1 only)", "conv layers": 1, "channels": "",
                     "params": num_parameters(regressor)})
    return rows
