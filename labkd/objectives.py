r"""Training objectives as registered modules: what ``TrainConfig.loss`` names.

An objective is an :class:`torch.nn.Module` registered under a name. :func:`labkd.train.fit`
asks it what it needs (a teacher, the two networks' features, their logits), hands it one
:class:`Step` per batch and minimises the scalar it returns. An objective may own parameters
(FitNets' regressor, CRD's projection heads) and buffers (a memory bank): ``fit`` optimises its
parameters with the student's, with one optimiser, and :func:`labkd.experiments.train_model`
stores its ``state_dict`` in the cache entry beside the model. ``fit`` never names a method, so a
new method is one registered class (plus its tests)::

    @objectives.register
    class MyLoss(objectives.Objective):
        name = "my_loss"                 # TrainConfig(loss="my_loss")
        needs_features = True            # fit fills step.student_features / step.teacher_features

        def build(self, student, teacher, data, config):
            d_s, d_t = student.feature_shape(self.student_layer), teacher.feature_shape(self.teacher_layer)
            self.head = nn.Linear(math.prod(d_s), math.prod(d_t))   # optimised with the student

        def forward(self, step):
            return F.mse_loss(self.head(step.student_features.flatten(1)), step.teacher_features.flatten(1))

Hyper-parameters come from the :class:`~labkd.train.TrainConfig` the objective is built with
(``temperature``, ``alpha``, ...); a new method's own ones go into
``TrainConfig.objective_options`` (declare them with their defaults in :attr:`Objective.defaults`
and read them with :meth:`Objective.option`).

The methods of the course: ``cross_entropy`` (labels only), ``distillation`` (Hinton et al.'s
KD, with ESKD's ``kd_epochs``), ``soft_target``, ``logit_matching``, ``hint`` (FitNets stage 1)
and ``feature_kd`` (KD plus an attention-transfer or RKD term, :mod:`labkd.feature_losses`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkd import feature_losses, losses
from labkd.models import check_feature_name


@dataclass
class Step:
    """What :func:`labkd.train.fit` hands an objective for one batch (N examples, C classes).

    ``student_logits`` is None only for objectives with ``needs_logits = False`` (FitNets stage 1
    runs the student up to its guided layer). Features are those of the objective's
    ``student_layer`` (default ``config.guided_layer``) and ``teacher_layer`` (default
    ``config.hint_layer``), filled when ``needs_features``. ``log``: the objective may put extra
    scalar terms here (detached, per-batch means); ``fit`` averages them over the epoch into the
    history row under the same names (``feature_kd`` logs ``feature_loss``).
    """

    student_logits: Tensor | None       # (N, C)
    labels: Tensor                      # (N,) class ids
    index: Tensor                       # (N,) positions of the examples in data.train
    epoch: int                          # 1-based
    teacher_logits: Tensor | None = None     # (N, C), detached
    student_features: Tensor | None = None   # (N, ...) the student's student_layer output
    teacher_features: Tensor | None = None   # (N, ...) the teacher's teacher_layer output, detached
    log: dict[str, Tensor] = field(default_factory=dict)


class Objective(nn.Module):
    """A training objective registered by name; may own parameters and buffers, which ``fit``
    optimises with the student and the cache stores with the model (``state_dict``).

    Class attributes a subclass sets: ``name`` (the ``TrainConfig.loss`` value), ``needs_teacher``
    (a teacher or its logits), ``needs_features`` (``fit`` then needs the teacher model and fills
    the features of :attr:`student_layer` and :attr:`teacher_layer`), ``needs_logits`` (False: the
    student runs only up to its layer, no logits, ``train_acc`` is NaN), ``config_fields`` (the
    :class:`~labkd.train.TrainConfig` fields only objectives like this one read: set with another
    loss they are an error) and ``defaults`` (the keys it accepts in ``objective_options``).
    """

    name: ClassVar[str]
    needs_teacher: ClassVar[bool] = True
    needs_features: ClassVar[bool] = False
    needs_logits: ClassVar[bool] = True
    config_fields: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.student_layer: str | None = config.guided_layer
        self.teacher_layer: str | None = config.hint_layer

    @classmethod
    def check_config(cls, config) -> None:
        """Raise ``ValueError`` naming the field if ``config`` cannot drive this objective
        (called by ``TrainConfig`` on construction); default: nothing to check."""

    def option(self, name: str) -> Any:
        """``config.objective_options[name]``, or its default from :attr:`defaults`."""
        if name not in self.defaults:
            raise KeyError(f"{name!r} is not an option of loss={self.name!r}; it has {sorted(self.defaults)}")
        return self.config.objective_options.get(name, self.defaults[name])

    def build(self, student: nn.Module, teacher: nn.Module | None, data, config) -> None:
        """Create shape-dependent parameters/buffers (e.g. a regressor, CRD's heads and memory bank)
        before the first step; default: nothing. Runs seeded with ``config.seed``."""

    def forward(self, step: Step) -> Tensor:  # scalar loss
        raise NotImplementedError

    def likely_causes(self) -> list[str]:
        """Hyper-parameters to suspect when training with this objective diverges (sentences)."""
        return []

    def entry_state(self, entry: Mapping) -> dict[str, Tensor]:
        """This objective's state in a cache ``entry``: ``entry["objective"]``; entries stored before
        objectives existed kept each sub-module's state under the sub-module's name (the FitNets
        regressor under ``"regressor"``)."""
        if "objective" in entry:
            return dict(entry["objective"] or {})
        return {f"{name}.{k}": v for name, _ in self.named_children() if entry.get(name) is not None
                for k, v in entry[name].items()}


#: Every registered objective by name (``TrainConfig.loss``).
OBJECTIVES: dict[str, type[Objective]] = {}


def register(cls: type[Objective]) -> type[Objective]:
    """Class decorator: ``OBJECTIVES[cls.name] = cls`` (a duplicate name raises ``ValueError``)."""
    if not isinstance(cls, type) or not issubclass(cls, Objective):
        raise TypeError(f"register expects a subclass of labkd.objectives.Objective, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{cls.__name__}.name must be a name such as 'my_loss', got {name!r}")
    if name in OBJECTIVES:
        raise ValueError(f"an objective named {name!r} is already registered ({OBJECTIVES[name].__qualname__}); "
                         f"choose another name")
    OBJECTIVES[name] = cls
    return cls


def get(name: object, argument: str = "loss") -> type[Objective]:
    """The objective class registered as ``name``; ``ValueError`` naming the known ones if unknown."""
    if not isinstance(name, str) or name not in OBJECTIVES:
        raise ValueError(f"{argument}={name!r} is unknown; expected one of {tuple(OBJECTIVES)}")
    return OBJECTIVES[name]


def check_config(config, defaults: Mapping[str, Any]) -> None:
    """What every config is checked for, whatever the objective: fields that only other objectives
    read are at their ``defaults`` (field name -> default), ``objective_options`` holds only options
    the objective knows; then the objective's own :meth:`Objective.check_config`."""
    cls = get(config.loss)
    for name in dict.fromkeys(f for c in OBJECTIVES.values() for f in c.config_fields):
        value = getattr(config, name)
        if name not in cls.config_fields and value != defaults[name]:
            users = " or ".join(f"loss={n!r}" for n, c in OBJECTIVES.items() if name in c.config_fields)
            raise ValueError(f"{name}={value!r} is only used with {users}, not loss={config.loss!r}")
    unknown = sorted(set(config.objective_options) - set(cls.defaults))
    if unknown:
        raise ValueError(f"objective_options has {unknown}, which loss={config.loss!r} does not use; "
                         f"it knows {sorted(cls.defaults) or 'none'}")
    cls.check_config(config)


def make(config, **parts: nn.Module | None) -> Objective:
    """The registered objective for ``config.loss``, built with ``config``. ``parts``: sub-modules
    given ready-made instead of built (``regressor=`` for ``hint``); None ones are ignored."""
    objective = get(config.loss)(config)
    for name, part in parts.items():
        if part is None:
            continue
        if not hasattr(objective, name):
            raise ValueError(f"{name}= is not a part of loss={config.loss!r}")
        if not isinstance(part, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(part).__name__}")
        setattr(objective, name, part)
    return objective


def prepare(config, student: nn.Module, teacher: nn.Module | None, data, teacher_logits: Tensor | None = None,
            **parts: nn.Module | None) -> Objective:
    """:func:`make`, checks that the objective gets what it needs, then :meth:`Objective.build`
    seeded with ``config.seed`` (the same objective parameters for the same seed, and the
    global random state left alone)."""
    objective = make(config, **parts)
    check_ready(objective, config, teacher, teacher_logits)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        objective.build(student, teacher, data, config)
    return objective


def check_ready(objective: object, config, teacher: nn.Module | None, teacher_logits: Tensor | None) -> None:
    """``objective`` is an :class:`Objective` for ``config.loss`` and gets what it needs: a teacher
    (or its logits), the teacher model itself when it reads features."""
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a labkd.objectives.Objective, got {type(objective).__name__}")
    if objective.name != config.loss:
        raise ValueError(f"objective is {objective.name!r} but config.loss={config.loss!r}")
    if objective.needs_teacher and teacher is None and teacher_logits is None:
        raise ValueError(f"loss={config.loss!r} needs a teacher (or teacher_logits)")
    if objective.needs_features and teacher is None:
        raise ValueError(f"loss={config.loss!r} needs the teacher model itself (its hint-layer features)")


# --------------------------------------------------------------------------------------------
# The course's objectives


def check_layers(cls: type[Objective], config) -> None:
    """For objectives reading features: ``config`` names both layers (``ValueError`` otherwise)."""
    if config.hint_layer is None or config.guided_layer is None:
        raise ValueError(f"loss={cls.name!r} needs hint_layer (a teacher layer) and guided_layer (a student layer)")


def check_layer_names(objective: Objective, student: nn.Module, teacher: nn.Module) -> None:
    """The objective's ``student_layer`` and ``teacher_layer`` exist in the two networks."""
    check_feature_name(student, objective.student_layer, "guided_layer")
    check_feature_name(teacher, objective.teacher_layer, "hint_layer")


@register
class CrossEntropy(Objective):
    """Labels only: cross-entropy with the one-hot targets."""

    name = "cross_entropy"
    needs_teacher = False

    def forward(self, step: Step) -> Tensor:
        return F.cross_entropy(step.student_logits, step.labels)


class _Response(Objective):
    """A loss on the teacher's logits; with ``kd_epochs`` (early-stopped KD, Cho & Hariharan 2019)
    only for the first ``kd_epochs`` epochs, then cross-entropy on the labels, in one schedule."""

    config_fields = ("kd_epochs",)
    #: whether it reads ``config.temperature`` (a suspect when training diverges)
    tempered: ClassVar[bool] = True

    def likely_causes(self) -> list[str]:
        return [f"temperature={self.config.temperature:g} (usually 1 to 20)"] if self.tempered else []

    def forward(self, step: Step) -> Tensor:
        kd_epochs = self.config.kd_epochs
        if kd_epochs is not None and step.epoch > kd_epochs:
            return F.cross_entropy(step.student_logits, step.labels)
        return self.distil(step)

    def distil(self, step: Step) -> Tensor:
        raise NotImplementedError


@register
class Distillation(_Response):
    r"""Hinton et al.'s KD: :math:`\alpha\,T^2\,\mathrm{KL}(p_T^{teacher}\|p_T^{student}) + (1-\alpha)\,\mathrm{CE}`
    (``scale_by_t2=False`` drops the :math:`T^2`)."""

    name = "distillation"

    def distil(self, step: Step) -> Tensor:
        c = self.config
        s, tl, y = step.student_logits, step.teacher_logits, step.labels
        if not c.scale_by_t2:
            return (c.alpha * losses.soft_target_loss(s, tl, c.temperature, scale_by_t2=False)
                    + (1 - c.alpha) * F.cross_entropy(s, y))
        return losses.distillation_loss(s, tl, y, c.temperature, c.alpha)


@register
class SoftTarget(_Response):
    """Soft targets alone (:func:`labkd.losses.soft_target_loss`)."""

    name = "soft_target"

    def distil(self, step: Step) -> Tensor:
        return losses.soft_target_loss(step.student_logits, step.teacher_logits, self.config.temperature,
                                       scale_by_t2=self.config.scale_by_t2)


@register
class LogitMatching(_Response):
    """Squared logit differences (Bucila et al. 2006; Ba & Caruana 2014)."""

    name = "logit_matching"
    tempered = False

    def distil(self, step: Step) -> Tensor:
        return losses.logit_matching_loss(step.student_logits, step.teacher_logits)


@register
class Hint(Objective):
    """FitNets stage 1 (Romero et al. 2015): a regressor on the student's guided layer learns,
    with the layers below it, to predict the teacher's hint layer (mean squared error). The
    regressor is this objective's parameter: trained with the student, stored with it."""

    name = "hint"
    needs_features = True
    needs_logits = False
    config_fields = ("hint_layer", "guided_layer")

    def __init__(self, config) -> None:
        super().__init__(config)
        self.regressor: nn.Module | None = None

    @classmethod
    def check_config(cls, config) -> None:
        check_layers(cls, config)

    def build(self, student, teacher, data, config) -> None:
        check_layer_names(self, student, teacher)
        if self.regressor is None:
            self.regressor = losses.make_hint_regressor(student.feature_shape(self.student_layer),
                                                        teacher.feature_shape(self.teacher_layer))

    def forward(self, step: Step) -> Tensor:
        return losses.hint_loss(self.regressor(step.student_features), step.teacher_features)


@register
class FeatureKD(Distillation):
    """KD (``alpha=0``: the labels alone) plus ``feature_weight`` times a feature or relation loss
    (``feature_loss``, a name in :data:`labkd.feature_losses.FEATURE_LOSSES`) between the student's
    ``guided_layer`` and the teacher's ``hint_layer``; logs the unweighted term as ``feature_loss``."""

    name = "feature_kd"
    needs_features = True
    config_fields = ("hint_layer", "guided_layer", "feature_loss")

    @classmethod
    def check_config(cls, config) -> None:
        feature_losses.get(config.feature_loss, "feature_loss")
        check_layers(cls, config)

    def build(self, student, teacher, data, config) -> None:
        self.feature = feature_losses.get(config.feature_loss)
        self.feature.check_batches(config.batch_size, len(data.train))
        check_layer_names(self, student, teacher)
        self.feature.check_shapes(student.feature_shape(self.student_layer), teacher.feature_shape(self.teacher_layer))

    def forward(self, step: Step) -> Tensor:
        extra = self.feature(step.student_features, step.teacher_features)
        step.log["feature_loss"] = extra.detach()
        return self.distil(step) + self.config.feature_weight * extra

    def likely_causes(self) -> list[str]:
        return [*super().likely_causes(), f"feature_weight={self.config.feature_weight:g}"]
