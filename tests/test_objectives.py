"""Training objectives as registered modules (labkd.objectives): the registry, what fit hands an
objective, an objective's own parameters trained by fit and stored by the cache, and that neither
fit nor train_model names a method. Everything runs on the 8x8 digits."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import warnings

import pytest
import torch
from torch import nn

from labkd import cache, experiments, objectives, train, zoo
from labkd.cache import CacheWarning
from labkd.experiments import config_key, train_model
from labkd.models import build_model
from labkd.objectives import OBJECTIVES, Objective, Step
from labkd.train import TrainConfig, fit

COURSE = ("cross_entropy", "distillation", "soft_target", "logit_matching", "hint", "feature_kd")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKD_CACHE", str(tmp_path))  # every test starts with an empty model cache


@pytest.fixture
def toy():
    """A registered toy objective with its own parameter (a learnable temperature) and a buffer
    counting its steps; unregistered afterwards so other tests see the course's objectives only."""

    @objectives.register
    class Toy(Objective):
        name = "toy_scaled_ce"
        needs_teacher = False
        defaults = {"start": 1.0}
        seen: list[Step] = []

        def build(self, student, teacher, data, config) -> None:
            self.scale = nn.Parameter(torch.tensor(float(self.option("start"))))
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))

        def forward(self, step: Step) -> torch.Tensor:
            Toy.seen.append(step)
            self.steps += 1
            return nn.functional.cross_entropy(step.student_logits * self.scale, step.labels)

    yield Toy
    del OBJECTIVES["toy_scaled_ce"]


def mlp(data, seed: int = 0, hidden=(16,)):
    return build_model("mlp", data.input_shape, data.num_classes, seed=seed, hidden=hidden)


def quick(**changes) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 64, **changes})


# --- the registry -----------------------------------------------------------------------------


def test_the_course_objectives_are_registered_and_fit_uses_the_registry():
    assert set(COURSE) <= set(OBJECTIVES)
    assert train.OBJECTIVES is OBJECTIVES
    for name in COURSE:
        assert OBJECTIVES[name].name == name and issubclass(OBJECTIVES[name], Objective)


def test_registering_a_duplicate_name_raises():
    class Again(Objective):
        name = "distillation"

    with pytest.raises(ValueError, match="'distillation' is already registered"):
        objectives.register(Again)
    assert OBJECTIVES["distillation"] is not Again


@pytest.mark.parametrize("bad, error", [(int, TypeError), ("not a class", TypeError)])
def test_register_accepts_only_objective_classes(bad, error):
    with pytest.raises(error, match="subclass of labkd.objectives.Objective"):
        objectives.register(bad)


def test_an_objective_needs_a_name():
    class Nameless(Objective):
        pass

    with pytest.raises(ValueError, match="Nameless.name must be a name"):
        objectives.register(Nameless)


def test_an_unknown_loss_names_the_known_ones():
    with pytest.raises(ValueError) as error:
        TrainConfig(loss="contrastive_typo")
    message = str(error.value)
    assert "loss='contrastive_typo' is unknown" in message
    assert all(repr(name) in message for name in OBJECTIVES)


def test_make_builds_the_objective_the_config_names(toy):
    assert isinstance(objectives.make(TrainConfig(loss="toy_scaled_ce")), toy)
    with pytest.raises(ValueError, match="regressor= is not a part of loss='distillation'"):
        objectives.make(TrainConfig(loss="distillation"), regressor=nn.Linear(2, 2))


def test_fields_of_other_objectives_and_unknown_options_raise(toy):
    with pytest.raises(ValueError, match=r"feature_loss='rkd' is only used with loss='feature_kd', not loss='hint'"):
        TrainConfig(loss="hint", hint_layer="fc1", guided_layer="fc1", feature_loss="rkd")
    with pytest.raises(ValueError, match=r"kd_epochs=1 is only used with loss='distillation'"):
        TrainConfig(kd_epochs=1)
    with pytest.raises(ValueError, match=r"objective_options has \['stop'\].*knows \['start'\]"):
        TrainConfig(loss="toy_scaled_ce", objective_options={"stop": 2})
    with pytest.raises(ValueError, match="objective_options has"):
        TrainConfig(objective_options={"start": 2.0})  # cross_entropy has no options
    with pytest.raises(TypeError, match="objective_options must be a dict"):
        TrainConfig(objective_options=[("start", 2.0)])


# --- cache keys -------------------------------------------------------------------------------


def test_every_field_at_its_default_leaves_the_key_empty():
    """config_key keeps only what differs from the defaults, so a new field added with a default
    (objective_options among them) leaves every existing key as it was."""
    assert config_key(TrainConfig()) == {}
    for f in dataclasses.fields(TrainConfig):  # every field, given its default explicitly
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        assert config_key(TrainConfig(**{"epochs": 3, f.name: default} if f.name != "epochs" else {"epochs": 3})) \
            == {"epochs": 3}, f.name
    assert config_key(TrainConfig(epochs=3, objective_options={})) == {"epochs": 3}


def test_existing_configs_keep_their_keys():
    """The standard teacher's and a student's keys are exactly the fields they set (as before
    objectives existed: the old code's keys, written out)."""
    assert config_key(zoo.RECIPES("teacher", False)) == {"epochs": 100, "jitter": 2}
    assert config_key(zoo.RECIPES("teacher", True)) == {"epochs": 2, "jitter": 2}
    hint = TrainConfig(epochs=2, batch_size=64, loss="hint", hint_layer="conv2", guided_layer="conv2")
    assert config_key(hint) == {"epochs": 2, "batch_size": 64, "loss": "hint", "hint_layer": "conv2",
                                "guided_layer": "conv2"}


def test_options_enter_the_key_only_when_set(toy):
    config = TrainConfig(loss="toy_scaled_ce")
    assert config_key(config) == {"loss": "toy_scaled_ce"}
    assert config_key(config.replace(objective_options={"start": 2.0})) == {
        "loss": "toy_scaled_ce", "objective_options": {"start": 2.0}}
    hash(config.replace(objective_options={"start": 2.0}))  # configs stay hashable


# --- what fit hands an objective ---------------------------------------------------------------


def test_fit_optimises_the_objectives_own_parameter(digits, toy):
    toy.seen.clear()
    config = quick(loss="toy_scaled_ce", epochs=2, objective_options={"start": 0.5})
    result = fit(mlp(digits), digits, config, progress=False)
    objective = result.objective
    assert isinstance(objective, toy)
    assert float(objective.scale.detach()) != 0.5  # trained with the student
    steps = -(-len(digits.train) // 64) * 2
    assert int(objective.steps) == steps == len(toy.seen)


def test_each_step_holds_the_batch_its_positions_and_the_epoch(digits, toy):
    toy.seen.clear()
    fit(mlp(digits), digits, quick(loss="toy_scaled_ce", epochs=2), progress=False)
    first = [s for s in toy.seen if s.epoch == 1]
    assert {s.epoch for s in toy.seen} == {1, 2}
    index = torch.cat([s.index for s in first])
    assert sorted(index.tolist()) == list(range(len(digits.train)))  # every example once per epoch
    for s in toy.seen:
        assert torch.equal(digits.train.y[s.index], s.labels)
        assert s.student_logits.shape == (len(s.labels), digits.num_classes)
        assert s.teacher_logits is None and s.student_features is None  # nothing it did not ask for


def test_objectives_reading_features_get_both_layers(digits):
    seen = []

    @objectives.register
    class Features(Objective):
        name = "toy_features"
        needs_features = True
        config_fields = ("hint_layer", "guided_layer")

        def forward(self, step: Step) -> torch.Tensor:
            seen.append(step)
            return nn.functional.cross_entropy(step.student_logits, step.labels)

    try:
        teacher = mlp(digits, seed=1, hidden=(24,))
        fit(mlp(digits), digits, quick(loss="toy_features", hint_layer="fc1", guided_layer="fc1"),
            teacher=teacher, progress=False)
    finally:
        del OBJECTIVES["toy_features"]
    step = seen[0]
    n = len(step.labels)
    assert step.student_features.shape == (n, 16) and step.teacher_features.shape == (n, 24)
    assert step.teacher_logits.shape == (n, 10) and not step.teacher_features.requires_grad


def test_feature_kd_logs_its_feature_term(digits):
    teacher = mlp(digits, seed=1)
    result = fit(mlp(digits), digits, quick(loss="feature_kd", feature_loss="rkd", hint_layer="fc1",
                                            guided_layer="fc1"), teacher=teacher, progress=False)
    assert result.history[0]["feature_loss"] >= 0


def test_fit_rejects_an_objective_for_another_loss(digits):
    objective = objectives.make(TrainConfig(loss="distillation"))
    with pytest.raises(ValueError, match="objective is 'distillation' but config.loss='cross_entropy'"):
        fit(mlp(digits), digits, quick(), objective=objective, progress=False)
    with pytest.raises(TypeError, match="objective must be a labkd.objectives.Objective"):
        fit(mlp(digits), digits, quick(), objective=nn.Linear(2, 2), progress=False)


# --- the cache stores an objective's state ---------------------------------------------------


def test_objective_state_survives_a_cache_round_trip(digits, toy):
    config = quick(loss="toy_scaled_ce", objective_options={"start": 0.5})
    first = train_model("mlp", digits, config, hidden=(16,), progress=False)
    second = train_model("mlp", digits, config, hidden=(16,), progress=False)
    assert not first.cached and second.cached
    assert float(second.objective.scale.detach()) == float(first.objective.scale.detach()) != 0.5
    assert int(second.objective.steps) == int(first.objective.steps) > 0


def test_an_entry_stored_before_objectives_still_loads(digits):
    """Entries written before objectives kept the FitNets regressor under "regressor"; they load
    (cache.FORMAT unchanged)."""
    teacher = mlp(digits, seed=1, hidden=(12,))
    config = quick(loss="hint", hint_layer="fc1", guided_layer="fc1")
    first = train_model("mlp", digits, config, teacher=teacher, hidden=(6,), progress=False)
    entry = cache.load(first.key)
    old = {k: v for k, v in entry.items() if k != "objective"}
    old["regressor"] = {k[len("regressor."):]: v for k, v in entry["objective"].items()}
    cache.save(first.key, old)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        again = train_model("mlp", digits, config, teacher=teacher, hidden=(6,), progress=False)
    assert again.cached
    for a, b in zip(first.regressor.state_dict().values(), again.regressor.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_an_entry_whose_objective_state_does_not_fit_retrains_from_fresh_weights(digits, toy):
    config = quick(loss="toy_scaled_ce")
    first = train_model("mlp", digits, config, hidden=(16,), progress=False)
    entry = cache.load(first.key)
    entry["objective"] = {"scale": torch.tensor(1.0)}  # the buffer is missing
    cache.save(first.key, entry)
    with pytest.warns(CacheWarning, match="does not fit"):
        again = train_model("mlp", digits, config, hidden=(16,), progress=False)
    assert not again.cached  # retrained from the initial weights, not the half-loaded entry: the same run
    a, b = again.model.state_dict(), first.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)


# --- no method is named in the loop ------------------------------------------------------------


def _string_constants(function) -> set[str]:
    tree = ast.parse(inspect.getsource(function).lstrip())
    body = tree.body[0]
    if ast.get_docstring(body):
        body.body = body.body[1:]
    return {n.value for n in ast.walk(body) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


@pytest.mark.parametrize("function", [train.fit, train._fit, train._step, train.train_loop,
                                      train._check_fit_inputs, experiments.train_model, experiments.cached])
def test_the_loop_and_the_cache_name_no_method(function):
    source = inspect.getsource(function)
    assert "config.loss ==" not in source and "config.loss in" not in source
    named = _string_constants(function) & set(OBJECTIVES)
    assert not named, f"{function.__qualname__} names {named}"


def test_train_names_no_method_outside_docstrings():
    module = ast.parse(inspect.getsource(train))
    docstrings = {id(n.body[0].value) for n in ast.walk(module)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(n)}
    literals = {n.value for n in ast.walk(module)
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings}
    assert not literals & set(OBJECTIVES) - {"cross_entropy"}  # the default loss is TrainConfig's default


def test_crd_is_registered_wherever_labkd_is_imported():
    import subprocess
    import sys
    code = ("from labkd.train import TrainConfig; "
            "TrainConfig(loss='crd', hint_layer='fc1', guided_layer='fc1'); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
