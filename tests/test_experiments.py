"""Cached training (labkd.experiments.train_model) and the shared teachers (labkd.zoo).

Each test trains tiny MLPs on the 8x8 digits in its own empty cache folder.
"""

from __future__ import annotations


import pytest
import torch

from labkd import cache, experiments, zoo
from labkd.cache import CacheWarning
from labkd.experiments import Trained, model_identity, train_model
from labkd.models import build_model
from labkd.train import TrainConfig

from support import no_cache_warnings, same_weights

CONFIG = TrainConfig(epochs=1, batch_size=64, seed=0)
SMALL = {"hidden": (16,)}

pytestmark = pytest.mark.usefixtures("cache_folder")



def train(data, config=CONFIG, arch="mlp", **kwargs) -> Trained:
    options = {**SMALL, **kwargs.pop("options", {})} if arch == "mlp" else kwargs.pop("options", {})
    return train_model(arch, data, config, **options, **kwargs)


# --- caching --------------------------------------------------------------------------------


def test_second_call_is_served_from_the_cache(digits, fit_calls, cache_folder):
    with no_cache_warnings():
        first = train(digits)
        second = train(digits)
    assert (first.cached, second.cached) == (False, True)
    assert len(fit_calls) == 1  # the second call did no training
    assert second.key == first.key
    assert same_weights(first.model, second.model)
    assert second.history == first.history and second.seconds == first.seconds
    assert (cache_folder / f"{first.key}.pt").is_file()
    assert not second.model.training
    x = digits.test.x[:20]
    assert torch.equal(first.model(x), second.model(x))


def test_cached_model_remembers_its_key(digits):
    trained = train(digits)
    again = train(digits)
    assert model_identity(trained) == model_identity(again) == trained.key
    assert model_identity(again.model) == trained.key  # the bare model knows where it came from


def test_use_cache_false_neither_reads_nor_writes(digits, fit_calls, cache_folder):
    train(digits, use_cache=False)
    assert not cache_folder.exists() or not list(cache_folder.glob("*.pt"))
    train(digits)
    again = train(digits, use_cache=False)
    assert not again.cached and len(fit_calls) == 3


@pytest.mark.parametrize("change", [
    {"config": CONFIG.replace(seed=1)},
    {"config": CONFIG.replace(epochs=2)},
    {"config": CONFIG.replace(lr=0.01)},
    {"config": CONFIG.replace(jitter=1)},
    {"options": {"hidden": (17,)}},
    {"arch": "small_student"},
])
def test_a_different_run_gets_a_different_key(digits, change):
    base = train(digits)
    other = train(digits, **change)
    assert other.key != base.key and not other.cached


def test_different_data_gets_a_different_key(digits):
    base = train(digits)
    assert train(digits.subset(n_train=500)).key != base.key
    assert train(digits.subset(n_train=500, seed=1)).key != train(digits.subset(n_train=500)).key
    assert train(digits.subset(drop_classes=[3])).key != base.key


def test_key_does_not_depend_on_the_label(digits):
    a = train(digits, label="first name")
    b = train(digits, label="second name")
    assert a.key == b.key and b.cached


def test_label_is_stored_for_listing(digits):
    trained = train(digits, label="my tiny student")
    entries = cache.list_entries()
    assert [(e.key, e.description) for e in entries] == [(trained.key, "my tiny student")]
    unlabelled = train(digits, config=CONFIG.replace(seed=3))
    descriptions = {e.key: e.description for e in cache.list_entries()}
    assert "mlp" in descriptions[unlabelled.key] and "seed=3" in descriptions[unlabelled.key]


# --- corrupt cache files --------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_cache_file_is_reported_retrained_and_replaced(digits, fit_calls, cache_folder, damage):
    import os

    first = train(digits)
    path = cache_folder / f"{first.key}.pt"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.write_bytes(os.urandom(5000))
    with pytest.warns(CacheWarning, match="unusable"):
        second = train(digits)
    assert not second.cached and len(fit_calls) == 2
    assert same_weights(first.model, second.model)  # retraining is deterministic
    with no_cache_warnings():
        assert cache.load(first.key) is not None  # a good file replaced the bad one
        third = train(digits)
    assert third.cached and len(fit_calls) == 2


def test_cache_entry_that_does_not_fit_the_model_is_retrained(digits, fit_calls):
    first = train(digits)
    cache.save(first.key, {"state_dict": {"nonsense": torch.zeros(1)}, "history": [], "seconds": 0.0})
    with pytest.warns(CacheWarning, match="does not fit"):
        again = train(digits)
    assert not again.cached and len(fit_calls) == 2
    assert same_weights(first.model, again.model)


# --- teachers, logits, initial weights ------------------------------------------------------


def test_teacher_identity_changes_the_students_key(digits):
    teacher_a = train(digits, config=CONFIG.replace(seed=10))
    teacher_b = train(digits, config=CONFIG.replace(seed=11))
    config = CONFIG.replace(loss="distillation", temperature=4.0)
    student_a = train(digits, config, teacher=teacher_a)
    student_b = train(digits, config, teacher=teacher_b)
    assert student_a.key != student_b.key
    again = train(digits, config, teacher=teacher_a)
    assert again.cached and again.key == student_a.key
    # the teacher as a bare model (loaded from the cache) is the same teacher
    assert train(digits, config, teacher=teacher_a.model).key == student_a.key


def test_an_uncached_teacher_is_identified_by_its_weights(digits):
    config = CONFIG.replace(loss="distillation")
    t1 = build_model("mlp", digits.input_shape, 10, hidden=(8,), seed=1)
    t1_copy = build_model("mlp", digits.input_shape, 10, hidden=(8,), seed=1)
    t2 = build_model("mlp", digits.input_shape, 10, hidden=(8,), seed=2)
    assert train(digits, config, teacher=t1).key == train(digits, config, teacher=t1_copy).key
    assert train(digits, config, teacher=t1).key != train(digits, config, teacher=t2).key


def test_teacher_logits_are_part_of_the_key(digits):
    config = CONFIG.replace(loss="soft_target")
    logits = torch.randn(len(digits.train), 10, generator=torch.Generator().manual_seed(0))
    a = train(digits, config, teacher_logits=logits)
    assert train(digits, config, teacher_logits=logits.clone()).cached
    assert train(digits, config, teacher_logits=logits * 2).key != a.key


def test_init_starts_from_given_weights_and_changes_the_key(digits, fit_calls):
    generalist = train(digits, config=CONFIG.replace(seed=5))
    fresh = train(digits)
    from_generalist = train(digits, init=generalist)
    assert from_generalist.key not in (fresh.key, generalist.key)
    start = fit_calls[-1]
    assert all(torch.equal(start[k], v) for k, v in generalist.model.state_dict().items())
    # starting from the generalist's weights gives another result than a fresh start
    assert not same_weights(fresh.model, from_generalist.model)


def test_distillation_through_the_cache_is_reproducible(digits, cache_folder):
    teacher = train(digits, config=CONFIG.replace(seed=7), options={"hidden": (32,)})
    config = CONFIG.replace(loss="distillation", epochs=2)
    a = train(digits, config, teacher=teacher)
    cache.clear()
    b = train(digits, config, teacher=teacher)
    assert not b.cached
    assert [r["test_acc"] for r in a.history] == [r["test_acc"] for r in b.history]
    assert same_weights(a.model, b.model)


def test_hint_training_caches_the_regressor(digits):
    teacher = train(digits, config=CONFIG.replace(seed=7), options={"hidden": (12,)})
    config = CONFIG.replace(loss="hint", hint_layer="fc1", guided_layer="fc1")
    first = train(digits, config, teacher=teacher)
    second = train(digits, config, teacher=teacher)
    assert second.cached and first.regressor is not None
    assert same_weights(first.regressor, second.regressor)


# --- checkpoints ----------------------------------------------------------------------------


def test_checkpoints_survive_the_cache(digits):
    config = CONFIG.replace(epochs=2, checkpoints=True)
    first = train(digits, config)
    second = train(digits, config)
    assert second.cached and len(second.checkpoints) == 2
    early, late = second.checkpoint_model(1), second.checkpoint_model(2)
    assert same_weights(late, first.model)
    assert not same_weights(early, late)
    assert model_identity(early) != model_identity(late)
    assert not early.training


def test_checkpoint_model_errors(digits):
    plain = train(digits)
    with pytest.raises(ValueError, match=r"trained without checkpoints; use TrainConfig\(checkpoints=True\)"):
        plain.checkpoint_model(1)
    with_checkpoints = train(digits, CONFIG.replace(checkpoints=True))
    for epoch in (0, 2):
        with pytest.raises(ValueError, match=r"epoch must be in 1\.\.1"):
            with_checkpoints.checkpoint_model(epoch)


def test_bad_arguments_fail_before_training(digits, fit_calls):
    with pytest.raises(ValueError, match="unknown model"):
        train_model("nope", digits, CONFIG)
    with pytest.raises(TypeError, match="bad option"):
        train_model("mlp", digits, CONFIG, colour=1)
    with pytest.raises(ValueError, match="guided_layer='conv1'"):
        train_model("mlp", digits, CONFIG.replace(loss="hint", hint_layer="fc1", guided_layer="conv1"),
                    teacher=build_model("mlp", digits.input_shape, 10, hidden=(4,)), hidden=(8,))
    assert fit_calls == []


# --- the shared teacher ---------------------------------------------------------------------


def test_zoo_teacher_is_shared_through_the_cache(digits, fit_calls):
    small = digits.subset(n_train=300)
    first = zoo.mnist_teacher(small, fast=True, progress=False)
    second = zoo.mnist_teacher(small, fast=True, progress=False)
    assert second.cached and second.key == first.key and len(fit_calls) == 1
    assert zoo.mnist_teacher(small, fast=True, seed=1, progress=False).key != first.key
    assert zoo.RECIPES("teacher", True).jitter == 2


def test_zoo_student_recipe():
    assert zoo.RECIPES("student", True).epochs < zoo.RECIPES("student", False).epochs
    changed = zoo.RECIPES("student", True, seed=3, loss="distillation", temperature=20.0)
    assert (changed.seed, changed.loss, changed.temperature) == (3, "distillation", 20.0)
    with pytest.raises(ValueError, match="temperature"):
        zoo.RECIPES("student", True, temperature=0)


def test_config_key_lists_only_what_differs_from_the_defaults() -> None:
    from labkd.experiments import config_key

    assert config_key(TrainConfig()) == {}
    assert config_key(TrainConfig(epochs=7, lr=0.05)) == {"epochs": 7}  # lr 0.05 is the default
    assert config_key(TrainConfig(loss="distillation", temperature=20)) == {"loss": "distillation", "temperature": 20}


def test_a_tracker_adds_per_epoch_metrics_that_are_cached_and_keyed(digits, fit_calls):
    """train_model(track=...) stores extra per-epoch metrics in the history, serves them from the
    cache, and keys on the tracker's name (another measurement never gets this history)."""
    calls = []

    def norm(model) -> dict:
        calls.append(1)
        return {"weight_norm": float(sum(p.detach().norm() for p in model.parameters()))}

    config = CONFIG.replace(epochs=2)
    tracked = train(digits, config, track=experiments.Tracker("weight norm", norm))
    assert len(calls) == 2 and all("weight_norm" in row for row in tracked.history)
    assert tracked.history[0]["weight_norm"] != tracked.history[-1]["weight_norm"]
    again = train(digits, config, track=experiments.Tracker("weight norm", norm))
    assert again.cached and again.history == tracked.history and len(calls) == 2
    other = train(digits, config, track=experiments.Tracker("another measurement", norm))
    plain = train(digits, config)
    assert len({tracked.key, other.key, plain.key}) == 3 and not other.cached and not plain.cached
    with pytest.raises(TypeError, match="track must be a labkd.experiments.Tracker"):
        train(digits, track=norm)
    with pytest.raises(ValueError, match="Tracker name must be a non-empty string"):
        experiments.Tracker("", norm)
