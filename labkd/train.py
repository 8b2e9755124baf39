"""One training loop for every method: labels only, distillation, logit matching, FitNets hints.

The method is chosen by ``TrainConfig.loss``, the name of a registered objective
(:mod:`labkd.objectives`); the loop does not change and never names a method:

>>> teacher = build_model("hinton_teacher", seed=0)
>>> fit(teacher, data, TrainConfig(epochs=10, jitter=2))
>>> student = build_model("hinton_student", seed=0)
>>> fit(student, data, TrainConfig(loss="distillation", temperature=20, alpha=0.9), teacher=teacher)

:func:`train_loop` is the epoch skeleton (seeding, optimiser, schedule, divergence guard, progress)
of :func:`fit` and of :func:`fit_mutual`, which trains several models together (deep mutual
learning, lesson 10).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from labkd import clock, losses, objectives
from labkd.checks import check_config
from labkd.data import Data, batches
from labkd.metrics import predict_logits
from labkd.objectives import Objective, Step
from labkd.progress import progress_bar, show_progress
from labkd.threads import fixed_threads

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step")
#: Largest learning rate per optimiser: beyond it training only diverges (NaN) or thrashes.
LR_LIMITS = {"sgd": 10.0, "adam": 1.0}
#: The objectives ``fit`` understands, by name (the registry of :mod:`labkd.objectives`).
OBJECTIVES = objectives.OBJECTIVES


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (the model cache hashes it).

    ``loss``: one of :data:`OBJECTIVES` (registered in :mod:`labkd.objectives`). ``temperature``, ``alpha`` and ``scale_by_t2`` are used by
    ``distillation``/``soft_target``; ``hint_layer`` (teacher) and ``guided_layer`` (student) by
    ``hint``. ``feature_kd`` adds ``feature_weight`` (β) times a feature or relation loss
    (``feature_loss``, a name in :data:`labkd.feature_losses.FEATURE_LOSSES`) between the student's
    ``guided_layer`` and the teacher's ``hint_layer`` to the distillation loss (``alpha=0``: to
    the cross-entropy alone). ``jitter`` shifts training images by up to that many pixels.
    ``checkpoints`` keeps a copy of the weights after every epoch.
    """

    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    jitter: int = 0
    loss: str = "cross_entropy"
    temperature: float = 4.0
    alpha: float = 0.9
    scale_by_t2: bool = True
    hint_layer: str | None = None
    guided_layer: str | None = None
    feature_loss: str | None = None
    feature_weight: float = 1.0
    seed: int = 0
    checkpoints: bool = False
    #: evaluate val and test every this many epochs (and after the last); other rows hold NaN.
    #: Evaluating 15,000 images costs far more than an epoch on a small training set.
    eval_every: int = 1
    #: early-stopped KD (ESKD, Cho & Hariharan 2019): the distillation loss for the
    #: first ``kd_epochs`` epochs, then cross-entropy on the labels alone, in one schedule.
    kd_epochs: int | None = None
    #: linear learning-rate warm-up over the first ``warmup_epochs`` epochs, then ``schedule``
    #: over the rest (a high rate from the first step can diverge; Goyal et al. 2017, §2.2).
    warmup_epochs: int = 0
    #: max-norm constraint (Srivastava et al. 2014, §5.1): after every step, each unit's incoming
    #: weight vector (a row of a linear layer, a filter of a convolution) is scaled down to L2 norm
    #: at most ``max_norm``. ``None``: no constraint.
    max_norm: float | None = None
    #: gradient-norm clipping (Pascanu et al. 2013, §3.2): before every step, the gradient of all
    #: trained parameters together is scaled down to L2 norm at most ``clip_norm``. ``None``: no clipping.
    clip_norm: float | None = None
    #: hyper-parameters of an objective that the fields above do not cover, by name (each
    #: objective lists the ones it reads in ``Objective.defaults``); empty: left out of cache keys.
    objective_options: dict = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _positive_int(self.epochs, "epochs")
        _positive_int(self.batch_size, "batch_size")
        _positive_int(self.eval_every, "eval_every")
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int) \
                or not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be an integer in [0, epochs={self.epochs}), got {self.warmup_epochs!r}")
        _optional_norm(self.max_norm, "max_norm")
        _optional_norm(self.clip_norm, "clip_norm")
        if self.kd_epochs is not None:
            _positive_int(self.kd_epochs, "kd_epochs")
            if self.kd_epochs > self.epochs:
                raise ValueError(f"kd_epochs={self.kd_epochs} is beyond the schedule: the run trains epochs={self.epochs}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is unknown; expected one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r} is unknown; expected one of {SCHEDULES}")
        objectives.get(self.loss, "loss")
        if isinstance(self.lr, bool) or not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.optimizer in LR_LIMITS and self.lr > LR_LIMITS[self.optimizer]:
            raise ValueError(f"lr={self.lr!r} is beyond {LR_LIMITS[self.optimizer]:g}, where optimizer={self.optimizer!r} "
                             f"only diverges (the course uses SGD at 0.01 to 0.1, Adam at about 1e-3)")
        if isinstance(self.weight_decay, bool) or not (isinstance(self.weight_decay, (int, float))
                                                       and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0 and finite, got {self.weight_decay!r}")
        if isinstance(self.momentum, bool) or not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        for name in ("scale_by_t2", "checkpoints"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise TypeError(f"seed must be a non-negative integer, got {self.seed!r}")
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, int) or self.jitter < 0:
            raise ValueError(f"jitter must be a non-negative integer (pixels), got {self.jitter!r}")
        losses.check_temperature(self.temperature)
        losses.check_alpha(self.alpha)
        if isinstance(self.feature_weight, bool) or not isinstance(self.feature_weight, (int, float)) \
                or not math.isfinite(self.feature_weight) or self.feature_weight < 0:
            raise ValueError(f"feature_weight must be a finite number >= 0, got {self.feature_weight!r}")
        if not isinstance(self.objective_options, dict) or not all(isinstance(k, str) for k in self.objective_options):
            raise TypeError(f"objective_options must be a dict of option name -> value, got {self.objective_options!r}")
        # fields only other objectives read, unknown options, and the objective's own checks
        objectives.check_config(self, _FIELD_DEFAULTS)

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed: ``config.replace(temperature=8)``."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Every TrainConfig field's default (``objective_options``: empty).
_FIELD_DEFAULTS = {f.name: {} if f.default_factory is dict else f.default for f in dataclasses.fields(TrainConfig)}


def _positive_int(value: int, argument: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{argument} must be a positive integer, got {value!r}")


def _optional_norm(value: float | None, argument: str) -> None:
    """``None`` or a finite number > 0 (a norm bound: ``max_norm``, ``clip_norm``)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or value <= 0):
        raise ValueError(f"{argument} must be None or a finite number > 0, got {value!r}")


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model, per-epoch history, optional checkpoints, and
    the trained objective (with its parameters, e.g. FitNets' regressor)."""

    model: nn.Module
    history: list[dict] = field(default_factory=list)
    checkpoints: list[dict] = field(default_factory=list)
    objective: Objective | None = None
    seconds: float = 0.0

    @property
    def regressor(self) -> nn.Module | None:
        """The objective's ``regressor`` (FitNets hints), if it has one."""
        return getattr(self.objective, "regressor", None)

    def final(self, key: str) -> float:
        """The last epoch's value of ``key`` (e.g. ``"test_acc"``)."""
        return self.history[-1][key]


def default_device() -> torch.device:
    """CUDA when present (set ``LABKD_DEVICE=cpu`` to force the CPU), else the CPU."""
    wanted = os.environ.get("LABKD_DEVICE", "").strip()
    if wanted:
        try:
            device = torch.device(wanted)
        except (RuntimeError, ValueError):
            raise ValueError(f"LABKD_DEVICE={wanted!r} is not a device; use 'cpu', 'cuda' or 'cuda:0', "
                             f"or unset it") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"LABKD_DEVICE={wanted!r} asks for CUDA, which this machine does not have; "
                             f"use LABKD_DEVICE=cpu or unset it")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss (or exploding logits): stopped, nothing returned or cached."""


class DivergenceGuard:
    """Stops training at the first non-finite loss, naming the step and the likely causes
    (``causes``: the objective's own suspects, :meth:`labkd.objectives.Objective.likely_causes`)."""

    def __init__(self, config: TrainConfig, steps_per_epoch: int, causes: list[str] | tuple = (),
                 student_arguments: tuple[str, ...] = ("student", "regressed")) -> None:
        self.config, self.steps_per_epoch, self.steps = config, steps_per_epoch, 0
        self.causes, self.student_arguments = list(causes), tuple(student_arguments)

    def call(self, fn: Callable[..., Tensor], *args) -> Tensor:
        """``fn(*args)`` (an objective) with a NaN/inf in what the trained models produced (a loss
        argument starting with one of ``student_arguments``) turned into divergence."""
        try:
            return fn(*args)
        except losses.NonFiniteInputError as error:
            if error.argument.startswith(self.student_arguments):
                raise self.error(str(error)) from None
            raise

    def check(self, loss: Tensor) -> None:
        self.steps += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            self.steps -= 1
            raise self.error(f"the loss is {value}")

    def error(self, what: str) -> TrainingDivergedError:
        c = self.config
        epoch, step = self.steps // self.steps_per_epoch + 1, self.steps % self.steps_per_epoch + 1
        causes = [f"the learning rate lr={c.lr:g} may be too large for optimizer={c.optimizer!r} "
                  f"(the course trains with SGD at 0.01 to 0.1, Adam at about 1e-3)"]
        if c.weight_decay > 0:
            causes.append(f"weight_decay={c.weight_decay:g} (usually 0 to 1e-3)")
        causes += self.causes
        return TrainingDivergedError(
            f"training diverged at epoch {epoch}, step {step} of {self.steps_per_epoch}: {what}. "
            f"Likely cause: {'; or '.join(causes)}. Training stopped; nothing was cached.")


def _check_fit_inputs(model: nn.Module, data: Data, config: TrainConfig, teacher: nn.Module | None,
                      teacher_logits: Tensor | None) -> None:
    """What :func:`fit` checks before the first step, so a mistake fails in seconds, not an epoch in."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if teacher_logits is not None:
        if not isinstance(teacher_logits, Tensor):
            raise TypeError(f"teacher_logits must be a torch.Tensor of shape (N_train, C), "
                            f"got {type(teacher_logits).__name__}")
        if teacher_logits.ndim == 2 and teacher_logits.shape[0] > 0:
            losses.check_logits(teacher_logits, "teacher_logits")
    shape = tuple(data.input_shape)
    for what, net in (("model", model), ("teacher", teacher)):
        spec = getattr(net, "spec", None) or {}
        built = spec.get("input_shape")
        if built is not None and tuple(built) != shape:
            raise ValueError(f"the {what} was built for inputs {tuple(built)} but {data.name} has images "
                             f"{shape}; build it with input_shape=data.input_shape")
        if spec.get("num_classes") not in (None, data.num_classes):
            raise ValueError(f"the {what} was built for {spec['num_classes']} classes but {data.name} has "
                             f"{data.num_classes}; build it with num_classes=data.num_classes")
    limit = (min(shape[-2:]) - 1) // 2
    if config.jitter > limit:
        raise ValueError(f"jitter={config.jitter} would shift {shape[-2]}x{shape[-1]} images mostly out of view; "
                         f"use at most {limit} pixels (under half the image)")
    if len(data.train) == 0:
        raise ValueError("data.train is empty: nothing to train on")
    if not bool(torch.isfinite(data.train.x).all()):
        raise ValueError(f"data.train.x ({data.name}) contains NaN or inf")


def fit(
    model: nn.Module,
    data: Data,
    config: TrainConfig,
    teacher: nn.Module | None = None,
    teacher_logits: Tensor | None = None,
    regressor: nn.Module | None = None,
    progress: bool | None = None,
    device: torch.device | str | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    objective: Objective | None = None,
) -> FitResult:
    """Train ``model`` in place on ``data.train``; evaluate on val and test after each epoch.

    Args:
        teacher: a fixed teacher (kept in eval mode, no gradients) for the distillation losses.
        teacher_logits: instead of a teacher, its logits on ``data.train`` (N_train, C), e.g.
            an ensemble's (:func:`labkd.losses.ensemble_logits`) or a bias-shifted teacher's.
        regressor: for ``loss="hint"``, the FitNets regressor (built to match shapes if None).
            ``loss="feature_kd"`` needs the teacher model (its ``hint_layer`` output, every batch);
            its history rows also hold ``feature_loss``, the unweighted feature term.
        on_epoch: called with each epoch's history row (for live plots).
        objective: the objective for ``config.loss`` ready-built (:func:`labkd.objectives.prepare`,
            e.g. with state from the cache); None: built here, seeded with ``config.seed``. Its
            parameters are optimised with the model's.
    Returns a :class:`FitResult`; the same seed gives the same numbers on the CPU, whatever the
    caller's thread count (training runs with :data:`labkd.threads.TRAIN_THREADS` threads).
    ``teacher`` may also be a :class:`labkd.experiments.Trained` (its ``model`` is used). A
    non-finite loss stops training with :class:`TrainingDivergedError` naming the step and the
    likely cause.
    """
    if teacher is not None and not isinstance(teacher, nn.Module) and isinstance(getattr(teacher, "model", None), nn.Module):
        teacher = teacher.model  # a Trained, as train_model accepts
    start = time.perf_counter()
    with fixed_threads():
        result = _fit(model, data, config, teacher, teacher_logits, regressor, progress, device, on_epoch, objective)
    clock.add_training(time.perf_counter() - start)
    return result


def _fit(model, data, config, teacher, teacher_logits, regressor, progress, device, on_epoch, objective) -> FitResult:
    _check_fit_inputs(model, data, config, teacher, teacher_logits)
    if objective is None:
        objective = objectives.prepare(config, model, teacher, data, teacher_logits, regressor=regressor)
    else:
        objectives.check_ready(objective, config, teacher, teacher_logits)
    if teacher_logits is not None and teacher_logits.shape != (len(data.train), data.num_classes):
        raise ValueError(f"teacher_logits must have shape ({len(data.train)}, {data.num_classes}) "
                         f"(one row per training image), got {tuple(teacher_logits.shape)}")
    device = torch.device(device) if device is not None else default_device()
    data = data.to(device) if data.device != device else data
    model.to(device)
    objective.to(device)
    if teacher is not None:  # frozen: eval mode, and only ever called under no_grad
        teacher.to(device).eval()
    # A fixed teacher on un-augmented inputs gives the same logits every epoch: compute them once
    # (objectives reading features need the teacher on every batch).
    if teacher_logits is None and teacher is not None and objective.needs_teacher and config.jitter == 0 \
            and not objective.needs_features:
        teacher_logits = predict_logits(teacher, data.train.x)
    if teacher_logits is not None:
        teacher_logits = teacher_logits.to(device)

    result = FitResult(model=model, objective=objective)
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    guard = DivergenceGuard(config, steps_per_epoch, objective.likely_causes())
    zero = torch.zeros((), device=device)
    tally: dict[str, Tensor] = {"loss": zero, "correct": zero}

    def batch_loss(x: Tensor, y: Tensor, idx: Tensor, epoch: int) -> Tensor:
        step = _step(objective, model, teacher, teacher_logits, x, y, idx, epoch)
        loss = guard.call(objective, step)
        for name, value in step.log.items():  # extra terms the objective reports (per-batch means)
            tally[name] = tally.get(name, zero) + value * len(y)
        if step.student_logits is not None:
            tally["correct"] = tally["correct"] + (step.student_logits.detach().argmax(1) == y).sum()
        tally["loss"] = tally["loss"] + loss.detach() * len(y)
        return loss

    def end_epoch(epoch: int, evaluate: bool, seconds: float) -> dict:
        row = {
            "epoch": epoch,
            "loss": float(tally["loss"]) / len(data.train),
            "train_acc": float(tally["correct"]) / len(data.train) if objective.needs_logits else float("nan"),
            **(evaluate_splits(model, data) if evaluate else {"val_acc": float("nan"), "test_acc": float("nan")}),
            "seconds": seconds,
            **{name: float(v) / len(data.train) for name, v in tally.items() if name not in ("loss", "correct")},
        }
        tally.clear()
        tally.update(loss=zero, correct=zero)
        result.history.append(row)
        if config.checkpoints:
            result.checkpoints.append({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        if on_epoch is not None:
            on_epoch(row)
        return {"loss": f"{row['loss']:.3f}", "val_acc": f"{row['val_acc']:.4f}"}

    result.seconds = train_loop(config, data, [model, objective], list(model.parameters()) + list(objective.parameters()),
                                batch_loss, end_epoch, guard=guard, constrained=[model], progress=progress)
    return result


def _step(objective: Objective, model: nn.Module, teacher: nn.Module | None, teacher_logits: Tensor | None,
          x: Tensor, y: Tensor, idx: Tensor, epoch: int) -> Step:
    """One batch's :class:`~labkd.objectives.Step`: what the objective says it needs, no more."""
    if objective.needs_features:  # one pass of each model gives (logits and) features
        with torch.no_grad():
            t_out, t_feats = teacher.forward_features(x, upto=None if objective.needs_logits else objective.teacher_layer)
        logits, s_feats = model.forward_features(x, upto=None if objective.needs_logits else objective.student_layer)
        return Step(logits, y, idx, epoch, teacher_logits[idx] if teacher_logits is not None else t_out,
                    s_feats[objective.student_layer], t_feats[objective.teacher_layer])
    logits = model(x)
    t_logits = None
    if teacher_logits is not None:
        t_logits = teacher_logits[idx]
    elif teacher is not None and objective.needs_teacher:
        with torch.no_grad():
            t_logits = teacher(x)
    return Step(logits, y, idx, epoch, t_logits)


def train_loop(
    config: TrainConfig,
    data: Data,
    modules: list[nn.Module],
    params: list[nn.Parameter],
    batch_loss: Callable[[Tensor, Tensor, Tensor, int], Tensor],
    end_epoch: Callable[[int, bool, float], dict],
    *,
    guard: DivergenceGuard | None = None,
    constrained: list[nn.Module] = (),
    progress: bool | None = None,
    desc: str = "epochs",
) -> float:
    """The epoch skeleton every training run shares (:func:`fit`, :func:`labkd.online.fit_mutual`).

    Seeded by ``config.seed`` (the global random state is left alone): the batch order, then one
    optimiser over ``params`` and its per-step schedule (``config``). Each epoch puts ``modules``
    in training mode and, for every batch ``(x, y, index)`` of ``data.train``, minimises
    ``batch_loss(x, y, index, epoch)`` (a non-finite loss stops training through ``guard``), then
    applies ``config.max_norm`` to the ``constrained`` models; after the epoch it calls
    ``end_epoch(epoch, evaluate, seconds)`` — ``evaluate``: every ``config.eval_every`` epochs and
    after the last — which records the history and returns the progress bar's postfix.
    Returns the training time in seconds; ``modules`` are left in eval mode.
    """
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    guard = guard if guard is not None else DivergenceGuard(config, steps_per_epoch)
    show = show_progress() if progress is None else progress
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        optimizer = make_optimizer(params, config)
        scheduler = make_scheduler(optimizer, config, steps_per_epoch)
        bar = progress_bar(config.epochs, desc, "epoch", show)
        for epoch in range(1, config.epochs + 1):
            for module in modules:
                module.train()
            for x, y, idx in batches(data.train, config.batch_size, generator=generator,
                                     jitter=config.jitter, background=data.background):
                loss = batch_loss(x, y, idx, epoch)
                guard.check(loss)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.clip_norm is not None:
                    nn.utils.clip_grad_norm_(params, config.clip_norm)
                optimizer.step()
                if config.max_norm is not None:
                    for module in constrained:
                        apply_max_norm(module, config.max_norm)
                scheduler.step()
            evaluate = epoch % config.eval_every == 0 or epoch == config.epochs
            bar.set_postfix(**end_epoch(epoch, evaluate, time.perf_counter() - start))
            bar.update(1)
        bar.close()
    for module in modules:
        module.eval()
    return time.perf_counter() - start


def evaluate_splits(model: nn.Module, data: Data) -> dict[str, float]:
    """``{"val_acc": ..., "test_acc": ...}`` of ``model`` on ``data`` (what every history row holds)."""
    row = {}
    for name, split in (("val", data.val), ("test", data.test)):
        logits = predict_logits(model, split.x)
        row[f"{name}_acc"] = float((logits.argmax(1) == split.y).float().mean())
    return row


# --------------------------------------------------------------------------------------------
# Several models trained together: deep mutual learning (Zhang et al. 2018, lesson 10)


@dataclass
class MutualResult:
    """What :func:`fit_mutual` returns: the models, one history (list of epoch rows) per model,
    and on every evaluated epoch the cohort's test predictions ``predictions[epoch]`` (K, N_test)."""

    models: list[nn.Module]
    histories: list[list[dict]] = field(default_factory=list)
    seconds: float = 0.0
    predictions: dict[int, Tensor] = field(default_factory=dict)


def fit_mutual(
    models: Sequence[nn.Module], data: Data, config: TrainConfig, temperature: float = 1.0,
    progress: bool | None = None, device: torch.device | str | None = None,
    on_epoch: Callable[[list[dict]], None] | None = None,
) -> MutualResult:
    """Train a cohort of K >= 2 models in place with :func:`labkd.losses.mutual_learning_loss`.

    Every model sees the same batches, in the order :func:`labkd.train.fit` would give a single
    model with ``config`` (seeded by ``config.seed``), and has its own optimiser and schedule built
    from ``config`` as in ``fit``: a cohort member built with seed ``config.seed`` starts and is fed
    exactly like the same network trained alone. All are updated from one forward pass per batch
    (the paper alternates the updates; with detached targets the two differ only by one step's
    staleness). ``config.loss``, ``temperature`` and ``alpha`` fields are not used: the loss is
    DML's at ``temperature``. Val and test are evaluated every ``config.eval_every`` epochs and
    after the last (NaN in the other rows), on one thread (:mod:`labkd.threads`). The cohort
    trains in :func:`train_loop`, ``fit``'s own loop: the same seeding, optimiser
    (one over the cohort's parameters: each student gets its own update), schedule, warm-up,
    ``max_norm`` (on every student) and divergence guard
    (:class:`TrainingDivergedError`).

    History rows per model: ``epoch``, ``model``, ``loss``, ``train_acc``, ``val_acc``,
    ``test_acc``, ``agreement`` (top-1 test agreement with the other students, mean), ``seconds``;
    ``on_epoch`` receives the K rows of each epoch.
    """
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"models must hold at least 2 networks (a cohort), got {len(models)}")
    if any(not isinstance(m, nn.Module) for m in models):
        raise TypeError("models must be torch.nn.Module instances")
    if len({id(m) for m in models}) != len(models):
        raise ValueError("models lists the same network twice; build one network per student")
    check_config(config, "config")
    t = losses.check_temperature(temperature)
    with fixed_threads():
        return _fit_mutual(models, data, config, t, progress, device, on_epoch)


def _fit_mutual(models, data, config, t, progress, device, on_epoch) -> MutualResult:
    device = torch.device(device) if device is not None else default_device()
    data = data.to(device) if data.device != device else data
    for m in models:
        m.to(device)
    result = MutualResult(models=models, histories=[[] for _ in models])
    nan = float("nan")
    zeros = torch.zeros(len(models), device=device)
    tally = {"loss": zeros, "correct": zeros}

    guard = DivergenceGuard(config, math.ceil(len(data.train) / config.batch_size),
                            [f"temperature={t:g} (the paper uses 1)"], student_arguments=("logits_list",))

    def batch_loss(x: Tensor, y: Tensor, idx: Tensor, epoch: int) -> Tensor:
        logits = [m(x) for m in models]
        per_model = guard.call(losses.mutual_learning_loss, logits, y, t)  # student k's loss reaches student k only
        tally["loss"] = tally["loss"] + torch.stack([v.detach() for v in per_model]) * len(y)
        tally["correct"] = tally["correct"] + torch.stack([(z.detach().argmax(1) == y).sum() for z in logits])
        return torch.stack(per_model).sum()

    def end_epoch(epoch: int, evaluate: bool, seconds: float) -> dict:
        if evaluate:  # one pass over val and test per model gives accuracies, predictions, agreement
            preds = torch.stack([predict_logits(m, data.test.x).argmax(1) for m in models])
            val = [float((predict_logits(m, data.val.x).argmax(1) == data.val.y).float().mean())
                   for m in models]
            result.predictions[epoch] = preds.to(torch.int8).cpu()
        rows = []
        for k in range(len(models)):
            row = {"epoch": epoch, "model": k, "loss": float(tally["loss"][k]) / len(data.train),
                   "train_acc": float(tally["correct"][k]) / len(data.train)}
            if evaluate:
                others = [float((preds[k] == preds[j]).float().mean()) for j in range(len(models)) if j != k]
                row.update(val_acc=val[k], test_acc=float((preds[k] == data.test.y).float().mean()),
                           agreement=sum(others) / len(others))
            else:
                row.update(val_acc=nan, test_acc=nan, agreement=nan)
            row["seconds"] = seconds
            rows.append(row)
            result.histories[k].append(row)
        tally.update(loss=zeros, correct=zeros)
        if on_epoch is not None:
            on_epoch(rows)
        return {"val_acc": "/".join(f"{r['val_acc']:.3f}" for r in rows)} if evaluate else {}

    # the loop of labkd.train.fit: one optimiser over the cohort's parameters (each student's own
    # update, as K optimisers would make it), the same seeding, schedule and batches
    result.seconds = train_loop(config, data, models, [p for m in models for p in m.parameters()], batch_loss,
                                end_epoch, guard=guard, constrained=models, progress=progress, desc="mutual learning")
    for _ in models:
        clock.add_training(result.seconds / len(models))  # the notebook's training time, K models
    return result


def make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``config`` names: SGD with (Nesterov) momentum, or Adam; fused kernels."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    # fused=True: one multi-tensor kernel per step instead of a Python loop over parameters
    # (1.5 ms instead of 4.9 ms per step for the MLP teacher on 2 cores; same numbers).
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           nesterov=config.momentum > 0, fused=True)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """A per-step learning-rate schedule (``config.schedule``) over ``config.epochs`` epochs."""
    warm = config.warmup_epochs * steps_per_epoch
    total = config.epochs * steps_per_epoch - warm
    if config.schedule == "cosine":
        factor = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    elif config.schedule == "step":
        factor = lambda step: 0.1 ** ((step >= total // 2) + (step >= 3 * total // 4))  # noqa: E731
    else:
        factor = lambda step: 1.0  # noqa: E731
    if warm:
        decay = factor
        factor = lambda step: (step + 1) / warm if step < warm else decay(step - warm)  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def apply_max_norm(model: nn.Module, max_norm: float) -> None:
    """Scale each unit's incoming weights down to L2 norm ≤ ``max_norm``, in place: the rows of
    every ``nn.Linear`` weight (out, in) and the filters of every ``nn.Conv2d`` (out, in, k, k)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            module.weight.copy_(torch.renorm(module.weight, 2, 0, max_norm))

