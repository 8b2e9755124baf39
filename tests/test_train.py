"""One training loop for every method (labkd.train): reproducibility, learning, the frozen
teacher, FitNets hints, checkpoints and bad input. Everything runs on the 8x8 digits."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from labkd.models import build_model
from labkd.train import OBJECTIVES, OPTIMIZERS, SCHEDULES, FitResult, TrainConfig, fit

NUMBERS = ("epoch", "loss", "train_acc", "val_acc", "test_acc")  # every history column but the time



def mlp(data, seed: int = 0, **options) -> nn.Module:
    options.setdefault("hidden", (32,))
    return build_model("mlp", data.input_shape, data.num_classes, seed=seed, **options)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def numbers(result: FitResult) -> list[tuple]:
    return [tuple(row[k] for k in NUMBERS) for row in result.history]


def quick(**changes) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 64, **changes})


# --- history and reproducibility ------------------------------------------------------------


def test_history_has_one_row_per_epoch_with_every_column(digits):
    seen = []
    result = fit(mlp(digits), digits, quick(epochs=2), progress=False, on_epoch=seen.append)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert seen == result.history
    for row in result.history:
        assert set(row) == {*NUMBERS, "seconds"}
        assert all(0.0 <= row[k] <= 1.0 for k in ("train_acc", "val_acc", "test_acc"))
        assert math.isfinite(row["loss"]) and row["loss"] > 0
    assert 0 < result.history[0]["seconds"] <= result.history[1]["seconds"] <= result.seconds
    assert result.final("val_acc") == result.history[-1]["val_acc"]
    assert not result.model.training  # left in eval mode


def test_same_seed_gives_identical_numbers_and_weights(digits):
    runs = []
    for global_seed in (1, 2):  # whatever state the global RNG is in
        torch.manual_seed(global_seed)
        model = mlp(digits, dropout=0.2)  # dropout: the run's randomness must be seeded too
        runs.append(fit(model, digits, quick(epochs=2, jitter=1, seed=3), progress=False))
    assert numbers(runs[0]) == numbers(runs[1])
    assert same_state(state(runs[0].model), state(runs[1].model))


def test_two_runs_of_the_same_distillation_give_identical_accuracies(digits):
    teacher = fit(mlp(digits, seed=9, hidden=(64,)), digits, quick(epochs=2), progress=False).model
    config = quick(epochs=2, loss="distillation", temperature=4.0, alpha=0.7, seed=1)
    a = fit(mlp(digits, seed=1), digits, config, teacher=teacher, progress=False)
    b = fit(mlp(digits, seed=1), digits, config, teacher=teacher, progress=False)
    assert numbers(a) == numbers(b)
    assert same_state(state(a.model), state(b.model))


def test_different_seeds_give_different_runs(digits):
    a = fit(mlp(digits, seed=0), digits, quick(seed=0), progress=False)
    b = fit(mlp(digits, seed=0), digits, quick(seed=1), progress=False)  # same init, other batch order
    assert not same_state(state(a.model), state(b.model))
    assert a.history[0]["loss"] != b.history[0]["loss"]


def test_fit_leaves_the_global_rng_alone(digits):
    torch.manual_seed(0)
    before = torch.get_rng_state()
    fit(mlp(digits, dropout=0.3), digits, quick(jitter=1), progress=False)
    assert torch.equal(torch.get_rng_state(), before)


# --- learning -------------------------------------------------------------------------------


def test_loss_decreases_and_the_model_learns(digits):
    result = fit(mlp(digits), digits, quick(epochs=4, lr=0.05, schedule="constant"), progress=False)
    losses = [row["loss"] for row in result.history]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert losses[-1] < 0.5 * losses[0]
    assert result.final("val_acc") > 0.8 and result.final("train_acc") > 0.8


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.05), ("adam", 0.005)])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_optimizer_and_schedule_trains(digits, optimizer, lr, schedule):
    model = mlp(digits)
    initial = state(model)
    result = fit(model, digits, quick(epochs=2, optimizer=optimizer, lr=lr, schedule=schedule), progress=False)
    assert not same_state(initial, state(model))
    assert result.final("val_acc") > 0.5  # chance is 0.1


def test_schedules_and_optimizers_are_really_different(digits):
    finals = {}
    for optimizer in OPTIMIZERS:
        for schedule in SCHEDULES:
            model = mlp(digits)
            fit(model, digits, quick(epochs=2, optimizer=optimizer, lr=0.01, schedule=schedule), progress=False)
            finals[optimizer, schedule] = state(model)
    keys = list(finals)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert not same_state(finals[a], finals[b]), f"{a} and {b} trained identically"


def test_every_objective_runs(digits):
    teacher = mlp(digits, seed=5)
    for loss in [n for n, c in OBJECTIVES.items() if c.__module__ == "labkd.objectives"]:  # the course's own
        extra = {"hint_layer": "fc1", "guided_layer": "fc1"} if loss in ("hint", "feature_kd") else {}
        if loss == "feature_kd":
            extra["feature_loss"] = "rkd"
        result = fit(mlp(digits), digits, quick(loss=loss, **extra), teacher=teacher, progress=False)
        assert math.isfinite(result.history[0]["loss"]), loss


def test_teacher_logits_instead_of_a_teacher(digits):
    teacher = mlp(digits, seed=5)
    from labkd.metrics import predict_logits

    logits = predict_logits(teacher, digits.train.x)
    config = quick(loss="soft_target", temperature=2.0)
    a = fit(mlp(digits), digits, config, teacher=teacher, progress=False)
    b = fit(mlp(digits), digits, config, teacher_logits=logits, progress=False)
    assert numbers(a) == numbers(b)


# --- checkpoints ----------------------------------------------------------------------------


def test_checkpoints_one_distinct_state_per_epoch(digits):
    model = mlp(digits)
    result = fit(model, digits, quick(epochs=3, checkpoints=True), progress=False)
    assert len(result.checkpoints) == 3
    assert same_state(result.checkpoints[-1], state(model))
    for i in range(3):
        for j in range(i + 1, 3):
            assert not same_state(result.checkpoints[i], result.checkpoints[j])
    # checkpoints are copies: training further does not change them
    kept = {k: v.clone() for k, v in result.checkpoints[0].items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert same_state(kept, result.checkpoints[0])


def test_no_checkpoints_by_default(digits):
    assert fit(mlp(digits), digits, quick(), progress=False).checkpoints == []


# --- the teacher ----------------------------------------------------------------------------


class CallCounter:
    """Counts a module's forward calls and records its mode and grad state at each call."""

    def __init__(self, module: nn.Module) -> None:
        self.calls = 0
        self.training_seen: set[bool] = set()
        self.grad_enabled_seen: set[bool] = set()
        module.register_forward_hook(self)

    def __call__(self, module, inputs, output) -> None:
        self.calls += 1
        self.training_seen.add(module.training)
        self.grad_enabled_seen.add(torch.is_grad_enabled())


def test_teacher_logits_are_computed_once_without_jitter(digits):
    teacher = mlp(digits, seed=5)
    counter = CallCounter(teacher)
    fit(mlp(digits), digits, quick(epochs=3, loss="distillation"), teacher=teacher, progress=False)
    assert counter.calls == math.ceil(len(digits.train) / 4096)  # one precompute (predict_logits' batches)


def test_teacher_runs_once_per_batch_with_jitter(digits):
    teacher = mlp(digits, seed=5)
    counter = CallCounter(teacher)
    fit(mlp(digits), digits, quick(epochs=2, loss="distillation", jitter=1), teacher=teacher, progress=False)
    assert counter.calls == 2 * math.ceil(len(digits.train) / 64)


@pytest.mark.parametrize("jitter", [0, 1])
def test_teacher_stays_in_eval_mode_and_gets_no_gradients(digits, jitter):
    teacher = mlp(digits, seed=5, dropout=0.5)
    teacher.train()  # fit must switch it to eval (dropout off)
    before = state(teacher)
    counter = CallCounter(teacher)
    fit(mlp(digits), digits, quick(epochs=2, loss="distillation", jitter=jitter), teacher=teacher, progress=False)
    assert counter.calls > 0
    assert counter.training_seen == {False}
    assert counter.grad_enabled_seen == {False}
    assert all(p.grad is None for p in teacher.parameters())
    assert same_state(before, state(teacher))


def test_hint_teacher_is_frozen_too(digits):
    teacher = build_model("cnn", digits.input_shape, 10, channels=(8, 8), seed=1)
    before = state(teacher)
    counter = CallCounter(teacher.blocks["conv1"])
    fit(build_model("cnn", digits.input_shape, 10, channels=(4, 4), seed=0), digits,
        quick(loss="hint", hint_layer="conv1", guided_layer="conv2"), teacher=teacher, progress=False)
    steps = math.ceil(len(digits.train) / 64)
    assert steps <= counter.calls <= steps + 1  # once per batch (+ one probe of the feature shape)
    assert counter.training_seen == {False} and counter.grad_enabled_seen == {False}
    assert all(p.grad is None for p in teacher.parameters())
    assert same_state(before, state(teacher))


def test_a_model_used_as_teacher_can_be_trained_afterwards(digits):
    """Distilling from a model must not freeze it for good (born-again chains, fine-tuning a copy)."""
    teacher = mlp(digits, seed=5)
    fit(mlp(digits), digits, quick(loss="distillation"), teacher=teacher, progress=False)
    assert all(p.requires_grad for p in teacher.parameters())
    again = copy.deepcopy(teacher)
    before = state(again)
    fit(again, digits, quick(), progress=False)
    assert not same_state(before, state(again))


# --- FitNets hints --------------------------------------------------------------------------


def test_hint_training_changes_only_the_layers_up_to_the_guided_one(digits):
    teacher = build_model("cnn", digits.input_shape, 10, channels=(8, 8, 8), seed=1)
    student = build_model("cnn", digits.input_shape, 10, channels=(4, 4, 4, 4), seed=0)
    before = state(student)
    result = fit(student, digits, quick(loss="hint", hint_layer="conv2", guided_layer="conv2"),
                 teacher=teacher, progress=False)
    after = state(student)
    changed = {k.split(".")[1] if k.startswith("blocks.") else k.split(".")[0]
               for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"conv1", "conv2"}
    assert result.regressor is not None
    # the regressor maps the student's conv2 (4, 2, 2) onto the teacher's (8, 2, 2) and was trained
    out = result.regressor(torch.zeros(1, *student.feature_shape("conv2")))
    assert out.shape[1:] == teacher.feature_shape("conv2")
    assert math.isnan(result.history[0]["train_acc"])  # no logits in stage 1


def test_hint_loss_decreases(digits):
    teacher = build_model("cnn", digits.input_shape, 10, channels=(8, 8), seed=1)
    student = build_model("cnn", digits.input_shape, 10, channels=(4, 4), seed=0)
    result = fit(student, digits, quick(epochs=3, loss="hint", hint_layer="conv1", guided_layer="conv1",
                                        lr=0.01, schedule="constant"), teacher=teacher, progress=False)
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < losses[0]


def test_hint_with_a_given_regressor_trains_it(digits):
    teacher = build_model("mlp", digits.input_shape, 10, hidden=(12,), seed=1)
    student = build_model("mlp", digits.input_shape, 10, hidden=(6,), seed=0)
    regressor = nn.Linear(6, 12)
    before = state(regressor)
    result = fit(student, digits, quick(loss="hint", hint_layer="fc1", guided_layer="fc1"),
                 teacher=teacher, regressor=regressor, progress=False)
    assert result.regressor is regressor and not same_state(before, state(regressor))


def test_hint_with_unknown_layers(digits):
    teacher = mlp(digits, seed=1)
    with pytest.raises(ValueError, match=r"guided_layer='conv9' is not a layer"):
        fit(mlp(digits), digits, quick(loss="hint", hint_layer="fc1", guided_layer="conv9"), teacher=teacher)
    with pytest.raises(ValueError, match=r"hint_layer='conv9' is not a layer"):
        fit(mlp(digits), digits, quick(loss="hint", hint_layer="conv9", guided_layer="fc1"), teacher=teacher)


# --- warm-up and max-norm -------------------------------------------------------------------


def learning_rates(config: TrainConfig, steps_per_epoch: int) -> list[float]:
    from labkd.train import make_optimizer, make_scheduler
    optimizer = make_optimizer([nn.Parameter(torch.zeros(1))], config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    rates = []
    for _ in range(config.epochs * steps_per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_warm_up_rises_linearly_then_follows_the_schedule_over_the_rest(schedule):
    config = TrainConfig(epochs=6, lr=0.1, schedule=schedule, warmup_epochs=2)
    rates = learning_rates(config, steps_per_epoch=5)
    warm = rates[:10]
    assert warm == pytest.approx([0.1 * (i + 1) / 10 for i in range(10)])
    rest = learning_rates(TrainConfig(epochs=4, lr=0.1, schedule=schedule), steps_per_epoch=5)
    assert rates[10:] == pytest.approx(rest)  # the schedule runs over the 4 epochs after the warm-up


def test_no_warm_up_is_the_plain_schedule():
    assert learning_rates(TrainConfig(epochs=3, lr=0.1), 4)[0] == pytest.approx(0.1)


def test_max_norm_bounds_every_unit_and_is_active(digits):
    model, free = mlp(digits, hidden=(64,)), mlp(digits, hidden=(64,))
    config = quick(lr=0.1, epochs=2)
    fit(free, digits, config, progress=False)
    bound = 0.5 * min(float(m.weight.detach().norm(dim=1).max()) for m in free.modules() if isinstance(m, nn.Linear))
    fit(model, digits, config.replace(max_norm=bound), progress=False)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            assert float(m.weight.detach().norm(dim=1).max()) <= bound * (1 + 1e-5)
    assert not same_state(state(model), state(free))


def test_new_fields_at_their_defaults_leave_cache_keys_alone():
    from labkd.experiments import config_key
    assert config_key(TrainConfig(epochs=7)) == {"epochs": 7}
    assert config_key(TrainConfig(epochs=7, max_norm=3.0, warmup_epochs=1)) == {"epochs": 7, "max_norm": 3.0,
                                                                              "warmup_epochs": 1}


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, pattern", [
    ({"epochs": 0}, r"epochs must be a positive integer, got 0"),
    ({"epochs": 1.5}, r"epochs must be a positive integer"),
    ({"batch_size": 0}, r"batch_size must be a positive integer"),
    ({"optimizer": "rmsprop"}, r"optimizer='rmsprop' is unknown; expected one of \('sgd', 'adam'\)"),
    ({"schedule": "linear"}, r"schedule='linear' is unknown"),
    ({"loss": "mse"}, r"loss='mse' is unknown; expected one of .*distillation"),
    ({"lr": 0}, r"lr must be a finite number > 0"),
    ({"lr": -0.1}, r"lr must be a finite number > 0"),
    ({"lr": float("nan")}, r"lr must be a finite number > 0"),
    ({"lr": float("inf")}, r"lr must be a finite number > 0"),
    ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
    ({"weight_decay": -1e-4}, r"weight_decay must be >= 0"),
    ({"jitter": -1}, r"jitter must be a non-negative integer"),
    ({"jitter": 1.5}, r"jitter must be a non-negative integer"),
    ({"temperature": 0}, r"temperature must be a finite number > 0"),
    ({"temperature": -2.0}, r"temperature must be a finite number > 0"),
    ({"temperature": float("nan")}, r"temperature must be a finite number > 0"),
    ({"temperature": float("inf")}, r"temperature must be a finite number > 0"),
    ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
    ({"alpha": -0.1}, r"alpha must be in \[0, 1\]"),
    ({"alpha": float("nan")}, r"alpha must be in \[0, 1\]"),
    ({"loss": "hint"}, r"loss='hint' needs hint_layer .* and guided_layer"),
    ({"warmup_epochs": -1}, r"warmup_epochs must be an integer in \[0, epochs=5\)"),
    ({"warmup_epochs": 5}, r"warmup_epochs must be an integer in \[0, epochs=5\), got 5"),
    ({"max_norm": 0}, r"max_norm must be None or a finite number > 0"),
    ({"max_norm": float("inf")}, r"max_norm must be None or a finite number > 0"),
    ({"clip_norm": -1.0}, r"clip_norm must be None or a finite number > 0"),
    ({"clip_norm": True}, r"clip_norm must be None or a finite number > 0"),
    ({"loss": "hint", "hint_layer": "fc1"}, r"loss='hint' needs hint_layer .* and guided_layer"),
])
def test_bad_config(changes, pattern):
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**changes)


@pytest.mark.parametrize("changes", [{"temperature": "4"}, {"alpha": None}])
def test_config_wrong_types(changes):
    with pytest.raises(TypeError, match="temperature|alpha"):
        TrainConfig(**changes)


def test_config_replace_validates_and_to_dict_round_trips():
    config = TrainConfig(epochs=3, temperature=8.0)
    assert config.replace(temperature=2.0).temperature == 2.0 and config.temperature == 8.0
    assert TrainConfig(**config.to_dict()) == config
    with pytest.raises(ValueError, match="epochs"):
        config.replace(epochs=0)


@pytest.mark.parametrize("loss", ["distillation", "soft_target", "logit_matching", "hint"])
def test_loss_needing_a_teacher_without_one(digits, loss):
    extra = {"hint_layer": "fc1", "guided_layer": "fc1"} if loss == "hint" else {}
    with pytest.raises(ValueError, match=f"loss='{loss}' needs (a teacher|the teacher)"):
        fit(mlp(digits), digits, quick(loss=loss, **extra))


def test_hint_needs_the_teacher_model_not_logits(digits):
    logits = torch.zeros(len(digits.train), 10)
    with pytest.raises(ValueError, match="needs the teacher model itself"):
        fit(mlp(digits), digits, quick(loss="hint", hint_layer="fc1", guided_layer="fc1"), teacher_logits=logits)


@pytest.mark.parametrize("shape", [(10, 10), (1197, 9), (1197,)])
def test_teacher_logits_of_the_wrong_shape(digits, shape):
    model = mlp(digits)
    before = state(model)
    with pytest.raises(ValueError, match=r"teacher_logits must have shape \(1197, 10\) \(one row per training image\)"):
        fit(model, digits, quick(loss="distillation"), teacher_logits=torch.zeros(shape))
    assert same_state(before, state(model))  # failed before any work


def test_same_seed_same_weights_whatever_the_callers_thread_count(digits):
    """One seed names one model: with 1 or 2 caller threads, fit trains bit-identical weights
    (wide layers, where two threads do split the matrix products: unfixed, they differ)."""
    def weights(n_threads: int) -> torch.Tensor:
        before = torch.get_num_threads()
        torch.set_num_threads(n_threads)
        try:
            model = build_model("mlp", digits.input_shape, digits.num_classes, seed=0, hidden=(1024, 1024))
            fit(model, digits, TrainConfig(epochs=1, batch_size=256, seed=0), progress=False)
            assert torch.get_num_threads() == n_threads, "fit must restore the caller's thread count"
        finally:
            torch.set_num_threads(before)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(1), weights(2))


def test_clip_norm_bounds_each_step(digits):
    # one plain SGD step on the whole training set: the weights move by lr x the clipped gradient
    def step_size(clip_norm):
        model = build_model("mlp", digits.input_shape, 10, hidden=(16,), seed=0)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        config = TrainConfig(epochs=1, batch_size=len(digits.train), lr=1.0, momentum=0.0, schedule="constant",
                             clip_norm=clip_norm, eval_every=1)
        fit(model, digits, config, progress=False)
        return float((torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm())

    assert step_size(1e-3) == pytest.approx(1e-3, rel=1e-3)
    assert step_size(None) > 10 * 1e-3
