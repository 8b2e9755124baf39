"""Cached training: build a model, train it with :func:`labkd.train.fit`, remember the result.

>>> teacher = train_model("hinton_teacher", data, TrainConfig(epochs=10, jitter=2))
>>> student = train_model("hinton_student", data, TrainConfig(loss="distillation", temperature=20),
...                       teacher=teacher)
>>> student.final("test_acc"), student.cached

The second call with the same arguments loads the weights and history from the cache, and the
objective's state (:mod:`labkd.objectives`: FitNets' regressor, CRD's heads and memory bank) with
them. :func:`cached` is the one cached-training step, also for runs that are not one model
(:func:`labkd.online.train_mutual`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from torch import Tensor, nn

from labkd import cache, objectives
from labkd.data import Data
from labkd.models import BlockModel, build_model
from labkd.objectives import Objective
from labkd.train import TrainConfig, fit

T = TypeVar("T")


@dataclass
class Trained:
    """A trained model with its history. ``seconds`` is the time its training took (also when
    it came from the cache); ``cached`` says whether this call loaded it. ``objective``: the
    trained objective (:mod:`labkd.objectives`), with its parameters if it has any."""

    model: BlockModel
    history: list[dict]
    key: str
    seconds: float
    cached: bool
    checkpoints: list[dict] = field(default_factory=list)
    objective: Objective | None = None

    @property
    def regressor(self) -> nn.Module | None:
        """The objective's ``regressor`` (FitNets hints), if it has one."""
        return getattr(self.objective, "regressor", None)

    def final(self, metric: str = "test_acc") -> float:
        """The last epoch's ``metric`` (``"test_acc"``, ``"val_acc"``, ``"loss"``, ...)."""
        if not self.history:
            raise ValueError("this model has no history (it was not trained)")
        if metric not in self.history[-1]:
            raise KeyError(f"metric={metric!r} is not in the history; it has {sorted(self.history[-1])}")
        return self.history[-1][metric]

    def checkpoint_model(self, epoch: int) -> BlockModel:
        """The model as it was after ``epoch`` (1-based); needs ``checkpoints=True`` in training."""
        if not self.checkpoints:
            raise ValueError("this model was trained without checkpoints; use TrainConfig(checkpoints=True)")
        if not 1 <= epoch <= len(self.checkpoints):
            raise ValueError(f"epoch must be in 1..{len(self.checkpoints)}, got {epoch}")
        from labkd.models import rebuild

        model = rebuild(self.model.spec)
        model.load_state_dict(self.checkpoints[epoch - 1])
        model.cache_key = f"{self.key}@{epoch}"
        return model.eval()


def model_identity(model: nn.Module | Trained) -> str:
    """The cache key of a trained model, or a fingerprint of its weights."""
    if isinstance(model, Trained):
        return model.key
    key = getattr(model, "cache_key", None)
    if key:
        return key
    return cache.tensor_fingerprint(*[t.float() for t in model.state_dict().values()])


def config_key(config: TrainConfig) -> dict:
    """The fields of ``config`` that differ from :class:`TrainConfig`'s defaults.

    Keys built from this survive new ``TrainConfig`` fields (added with defaults), so adding a
    method does not invalidate every cached teacher. Changing an existing default changes what
    old keys mean: bump ``cache.FORMAT`` when you do.
    """
    defaults = TrainConfig()
    return {k: v for k, v in config.to_dict().items() if v != getattr(defaults, k, object())}


@dataclass(frozen=True)
class Tracker:
    """Per-epoch metrics for :func:`train_model` to add to every history row.

    ``measure(model) -> {"name": value}`` runs after each epoch (the model in eval mode is up to
    the function: :func:`labkd.metrics.predict_logits` does it). ``name`` enters the cache key:
    give every different measurement its own name (and include whatever it depends on, e.g. the
    teacher it compares with), so a model is never served with another tracker's history."""

    name: str
    measure: Callable[[nn.Module], dict[str, float]]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Tracker name must be a non-empty string (it is part of the cache key), got {self.name!r}")
        if not callable(self.measure):
            raise TypeError(f"Tracker measure must be a function of the model, got {type(self.measure).__name__}")


def train_model(
    arch: str,
    data: Data,
    config: TrainConfig = TrainConfig(),
    *,
    teacher: nn.Module | Trained | None = None,
    teacher_logits: Tensor | None = None,
    init: nn.Module | Trained | None = None,
    use_cache: bool = True,
    progress: bool | None = None,
    label: str = "",
    track: Tracker | None = None,
    **model_options,
) -> Trained:
    """Build ``arch`` (seeded with ``config.seed``), train it, and cache the result.

    Args:
        arch: architecture or preset name (see :func:`labkd.models.build_model`).
        teacher / teacher_logits: for the distillation losses (see :func:`labkd.train.fit`).
        init: start from these weights instead of a fresh initialisation (FitNets stage 2,
            specialists initialised from the generalist, born-again generations).
        use_cache: look the result up first and store it afterwards.
        label: a human description stored beside the cache entry (``labkd cache list``).
        track: extra metrics measured on the model after every epoch and stored in its history
            rows (and so in the cache): a :class:`Tracker`, whose ``name`` is part of the key.
        model_options: passed to the architecture (``hidden=(30, 30)``, ``channels=...``).
    """
    _check_arguments(data, config, teacher, teacher_logits, init)
    if track is not None and not isinstance(track, Tracker):
        raise TypeError(f"track must be a labkd.experiments.Tracker, got {type(track).__name__}")
    teacher_model = teacher.model if isinstance(teacher, Trained) else teacher
    init_model = init.model if isinstance(init, Trained) else init
    model = build_model(arch, data.input_shape, data.num_classes, seed=config.seed, **model_options)
    if init_model is not None:
        model.load_state_dict(init_model.state_dict())
    key = _key(model, data, config, teacher, teacher_logits, init, track)
    objective = objectives.prepare(config, model, teacher_model, data, teacher_logits)

    def load(entry: dict) -> Trained:
        load_states({model: entry["state_dict"], objective: objective.entry_state(entry)})
        model.cache_key = key
        return Trained(model.eval(), list(entry["history"]), key, float(entry["seconds"]), True,
                       list(entry.get("checkpoints", [])), objective.eval())

    def train() -> tuple[Trained, dict]:
        on_epoch = None if track is None else (lambda row: row.update(track.measure(model)))
        result = fit(model, data, config, teacher=teacher_model, teacher_logits=teacher_logits,
                     progress=progress, on_epoch=on_epoch, objective=objective)
        model.cache_key = key
        entry = {
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "history": result.history,
            "seconds": result.seconds,
            "checkpoints": result.checkpoints,
            "objective": {k: v.detach().cpu() for k, v in objective.state_dict().items()},
        }
        return Trained(model, result.history, key, result.seconds, False, result.checkpoints, objective), entry

    return cached(key, load, train, label or f"{arch} {config.loss} seed={config.seed} on {data.name}", use_cache)


def model_key(arch: str, data: Data, config: TrainConfig = TrainConfig(), *, teacher: nn.Module | Trained | None = None,
              teacher_logits: Tensor | None = None, init: nn.Module | Trained | None = None,
              track: Tracker | None = None, **model_options) -> str:
    """The cache key under which :func:`train_model` with the same arguments stores its result
    (whether it is trained yet: ``cache.path_for(key).exists()``)."""
    _check_arguments(data, config, teacher, teacher_logits, init)
    model = build_model(arch, data.input_shape, data.num_classes, seed=config.seed, **model_options)
    return _key(model, data, config, teacher, teacher_logits, init, track)


def _key(model: BlockModel, data: Data, config: TrainConfig, teacher: nn.Module | Trained | None,
         teacher_logits: Tensor | None, init: nn.Module | Trained | None, track: Tracker | None) -> str:
    return cache.make_key({
        "model": model.spec,
        "data": data.spec,
        "data_contents": data.fingerprint(),
        "train": config_key(config),
        "teacher": None if teacher is None else model_identity(teacher),
        "teacher_logits": None if teacher_logits is None else cache.tensor_fingerprint(teacher_logits),
        "init": None if init is None else model_identity(init),
        **({} if track is None else {"track": track.name}),
    })


def load_states(states: dict[nn.Module, dict[str, Tensor]]) -> None:
    """Load each module's stored state, all or none: if one does not fit (``RuntimeError``), every
    module gets its weights from before back and the error propagates (so :func:`cached` retrains
    from the initial weights, not half-loaded ones)."""
    before = {m: {k: v.detach().clone() for k, v in m.state_dict().items()} for m in states}
    try:
        for m, state in states.items():
            m.load_state_dict(state)
    except RuntimeError:
        for m, state in before.items():
            m.load_state_dict(state)
        raise


def cached(key: str, load: Callable[[dict], T], train: Callable[[], tuple[T, dict]], description: str,
           use_cache: bool = True) -> T:
    """The one cached-training step: under the key's lock, ``load(entry)`` the stored entry if
    there is one (an entry that does not fit — ``load`` raises ``RuntimeError`` or ``KeyError`` —
    is retrained with a warning), else ``train()`` -> ``(result, entry)`` and store ``entry``.

    One process at a time per key: a second one waits for the first to train and store the
    result, then loads it (``labkd run --jobs N`` shares teachers this way). Build ``key`` with
    :func:`labkd.cache.make_key` from :func:`config_key` and whatever else decides the result.
    """
    with cache.lock(key) if use_cache else contextlib.nullcontext():
        entry = cache.load(key) if use_cache else None
        if entry is not None:
            try:
                return load(entry)
            except (RuntimeError, KeyError) as error:  # shapes changed under the same key
                warnings.warn(f"cached model {key} does not fit ({error}); retraining", cache.CacheWarning, stacklevel=3)
        if use_cache:  # fail now, not after an hour of training, if the result cannot be stored
            cache.check_writable(key)
        result, entry = train()
        if use_cache:
            store(key, entry, description)
        return result


def _check_arguments(data: object, config: object, teacher: object, teacher_logits: object, init: object) -> None:
    """Wrong types fail here, with the argument named, not deep inside hashing or training."""
    if not isinstance(data, Data):
        raise TypeError(f"data must be a labkd Data (from load_data), got {type(data).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    for name, value in (("teacher", teacher), ("init", init)):
        if value is not None and not isinstance(value, (nn.Module, Trained)):
            raise TypeError(f"{name} must be a model or a Trained (from train_model), got {type(value).__name__}")
    if teacher_logits is not None and not isinstance(teacher_logits, Tensor):
        raise TypeError(f"teacher_logits must be a torch.Tensor of shape (N_train, C), got {type(teacher_logits).__name__}")


def store(key: str, entry: dict, description: str) -> bool:
    """Save a trained model's ``entry`` and its description in the cache; if that fails (disk
    full, the folder became read-only), warn with a :class:`labkd.cache.CacheWarning` and go on:
    the caller still has the trained model. Returns whether it was stored."""
    try:
        cache.save(key, entry)
        cache.write_description(key, description)
    except (OSError, ValueError) as error:
        warnings.warn(f"the trained model ({description}) could not be saved in the model cache "
                      f"(LABKD_CACHE): {type(error).__name__}: {error}; it is returned but not cached",
                      cache.CacheWarning, stacklevel=3)
        return False
    return True

