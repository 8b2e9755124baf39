"""Architectures, presets, features, seeding and sizes (labkd.models)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labkd.models import (
    Dropout,
    keep_mask,
    PRESETS, RESNET_DEPTHS, build_model, check_feature_name, describe, num_parameters, rebuild,
    serialized_size,
)

from support import same_weights

#: Per-example feature shapes for 28x28 inputs, as the docstrings describe them: MLP layers are
#: vectors; CNNs pool after a third and two thirds of the layers; ResNet stages halve the map.
EXPECTED_FEATURES = {
    "hinton_teacher": {"fc1": (1200,), "fc2": (1200,)},
    "hinton_student": {"fc1": (800,), "fc2": (800,)},
    "small_student": {"fc1": (30,), "fc2": (30,)},
    "fitnet_teacher": {"conv1": (64, 14, 14), "conv2": (128, 7, 7)},
    "fitnet_student": {"conv1": (16, 28, 28), "conv2": (16, 14, 14), "conv3": (16, 14, 14),
                       "conv4": (32, 7, 7), "conv5": (32, 7, 7), "conv6": (32, 7, 7)},
    "resnet_simple": {"stem": (16, 28, 28), "stage1": (16, 28, 28), "stage2": (32, 14, 14), "stage3": (64, 7, 7)},
    "resnet_medium": {"stem": (16, 28, 28), "stage1": (16, 28, 28), "stage2": (32, 14, 14), "stage3": (64, 7, 7)},
    "resnet_deep": {"stem": (16, 28, 28), "stage1": (16, 28, 28), "stage2": (32, 14, 14), "stage3": (64, 7, 7)},
}



def images(n: int = 3, shape=(1, 28, 28), seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def test_every_preset_is_covered():
    assert set(PRESETS) == set(EXPECTED_FEATURES)


@pytest.mark.parametrize("preset", sorted(EXPECTED_FEATURES))
def test_preset_builds_and_exposes_documented_features(preset):
    model = build_model(preset, seed=0).eval()
    x = images(3)
    expected = EXPECTED_FEATURES[preset]
    assert model.feature_names == list(expected)
    logits, features = model.forward_features(x)
    assert logits.shape == (3, 10)
    assert list(features) == list(expected)
    for name, shape in expected.items():
        assert features[name].shape == (3, *shape)
        assert model.feature_shape(name) == shape
    assert torch.allclose(logits, model(x), atol=1e-6)


@pytest.mark.parametrize("arch, options", [
    ("mlp", {"hidden": (7, 5)}),
    ("cnn", {"channels": (4, 6, 8)}),
    ("resnet", {"width": 4}),
])
def test_architectures_on_small_inputs_and_other_class_counts(arch, options):
    model = build_model(arch, input_shape=(1, 8, 8), num_classes=3, seed=0, **options).eval()
    logits, features = model.forward_features(images(5, (1, 8, 8)))
    assert logits.shape == (5, 3)
    assert len(features) == len(model.feature_names) >= 2
    for name in model.feature_names:
        assert features[name].shape[1:] == model.feature_shape(name)


def test_cnn_pooling_and_channels_follow_the_options():
    model = build_model("cnn", channels=(8, 16), pool_after=[2])
    assert model.feature_shape("conv1") == (8, 28, 28)
    assert model.feature_shape("conv2") == (16, 14, 14)
    three_channel = build_model("cnn", input_shape=(3, 16, 16), channels=(4,))
    assert three_channel(torch.zeros(2, 3, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize("depth, layers", [("simple", 8), ("medium", 14), ("deep", 20)])
def test_resnet_depths_have_the_documented_layer_counts(depth, layers):
    model = build_model(f"resnet_{depth}")
    blocks = RESNET_DEPTHS[depth]
    # stem + 2 convs per basic block (3 stages) + the linear head; 1x1 shortcuts are not counted
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + len(linear_shapes(model)) == layers == 2 + 6 * blocks


def test_upto_stops_early():
    model = build_model("fitnet_student", seed=0).eval()
    calls = []
    for name in ("conv4", "conv5", "conv6"):
        model.blocks[name].register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    head_calls = []
    model.head.register_forward_hook(lambda *a: head_calls.append(1))
    logits, features = model.forward_features(images(2), upto="conv3")
    assert logits is None
    assert list(features) == ["conv1", "conv2", "conv3"]
    assert calls == [] and head_calls == []
    _, full = model.forward_features(images(2))
    assert torch.allclose(features["conv3"], full["conv3"])


def test_unknown_feature_name():
    model = build_model("hinton_student")
    expected = r"upto='conv1' is not a layer of this model; expected one of \['fc1', 'fc2'\]"
    with pytest.raises(ValueError, match=expected):
        model.forward_features(images(1), upto="conv1")
    with pytest.raises(ValueError, match=r"name='fc3'"):
        model.feature_shape("fc3")
    with pytest.raises(TypeError, match="does not expose features"):
        check_feature_name(nn.Linear(2, 2), "fc1", "guided_layer")


def test_feature_shape_keeps_the_training_mode():
    model = build_model("fitnet_student")
    model.train()
    model.feature_shape("conv2")
    assert model.training
    model.eval()
    model.feature_shape("conv2")
    assert not model.training


# --- seeding --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["hinton_student", "fitnet_student", "resnet_simple"])
def test_same_seed_same_weights_different_seed_different(arch):
    a, b, c = build_model(arch, seed=3), build_model(arch, seed=3), build_model(arch, seed=4)
    assert same_weights(a, b)
    first = next(iter(a.parameters()))
    assert not torch.equal(first, next(iter(c.parameters())))
    assert not same_weights(a, c)


def test_weights_do_not_depend_on_the_global_rng():
    torch.manual_seed(1)
    a = build_model("small_student", seed=0)
    torch.manual_seed(2)
    torch.rand(100)
    b = build_model("small_student", seed=0)
    assert same_weights(a, b)


def test_build_model_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    build_model("resnet_simple", seed=7)
    build_model("hinton_teacher", seed=8)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("arch, options", [
    ("hinton_teacher", {}),
    ("fitnet_student", {}),
    ("mlp", {"hidden": (9, 4), "dropout": 0.3}),
    ("cnn", {"channels": (3, 5), "pool_after": (1,), "kernel_size": 5}),
    ("resnet", {"depth": "medium", "width": 4}),
])
def test_rebuild_from_spec_gives_the_same_initial_weights(arch, options):
    model = build_model(arch, seed=5, **options)
    with torch.no_grad():  # train it a little: rebuild must give the *initial* weights
        for p in model.parameters():
            p.add_(1.0)
    again = rebuild(model.spec)
    assert same_weights(again, build_model(arch, seed=5, **options))
    assert again.spec == model.spec
    assert not same_weights(again, model)


def test_spec_records_everything_needed():
    spec = build_model("fitnet_student", seed=2).spec
    assert spec["arch"] == "cnn" and spec["seed"] == 2 and spec["channels"] == [16, 16, 16, 32, 32, 32]
    assert spec["input_shape"] == [1, 28, 28] and spec["num_classes"] == 10
    import json
    json.dumps(spec)  # the cache hashes it as JSON


# --- the Hinton models, sizes ---------------------------------------------------------------


def test_hinton_teacher_is_784_1200_1200_10_with_dropout():
    model = build_model("hinton_teacher")
    assert linear_shapes(model) == [(784, 1200), (1200, 1200), (1200, 10)]
    rates = sorted(m.p for m in model.modules() if isinstance(m, nn.Dropout))
    assert rates and min(rates) == pytest.approx(0.2) and max(rates) == pytest.approx(0.5)
    x = images(4)
    model.train()
    assert not torch.equal(model(x), model(x))  # dropout is active in training mode
    model.eval()
    assert torch.equal(model(x), model(x))


def test_hinton_student_is_784_800_800_10_without_dropout():
    model = build_model("hinton_student")
    assert linear_shapes(model) == [(784, 800), (800, 800), (800, 10)]
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    x = images(4)
    model.train()
    assert torch.equal(model(x), model(x))


def test_preset_options_can_be_overridden():
    model = build_model("hinton_teacher", hidden=(50, 40))
    assert linear_shapes(model) == [(784, 50), (50, 40), (40, 10)]
    assert model.spec["dropout"] == 0.5


def test_num_parameters_matches_a_hand_count():
    mlp = build_model("mlp", input_shape=(1, 8, 8), hidden=(5, 3))
    assert num_parameters(mlp) == (64 * 5 + 5) + (5 * 3 + 3) + (3 * 10 + 10)
    cnn = build_model("cnn", input_shape=(1, 8, 8), channels=(4,))
    assert num_parameters(cnn) == 1 * 4 * 9 + (4 + 4) + (4 * 10 + 10)  # conv (no bias), BN, head
    teacher = build_model("hinton_teacher")
    assert num_parameters(teacher) == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10


def test_serialized_size_grows_with_parameters():
    sizes = [serialized_size(build_model("mlp", hidden=(h,))) for h in (10, 100, 1000)]
    assert sizes[0] < sizes[1] < sizes[2]
    student = build_model("hinton_student")
    n = num_parameters(student)
    assert 4 * n <= serialized_size(student) <= 4 * n + 20_000  # float32 plus a little framing


def test_describe_mentions_parameters_and_size():
    text = describe(build_model("hinton_student"))
    assert text.startswith("mlp (800, 800)") and "1.28M params" in text and "MB" in text


# --- bad input ------------------------------------------------------------------------------


def test_unknown_model():
    with pytest.raises(ValueError, match=r"unknown model 'transformer'; expected one of .*'mlp'.*'hinton_teacher'"):
        build_model("transformer")


@pytest.mark.parametrize("arch, options, error, pattern", [
    ("mlp", {"colour": 3}, TypeError, r"bad option for model 'mlp'.*colour"),
    ("hinton_student", {"channels": (4,)}, TypeError, r"bad option for model 'mlp'.*channels"),
    ("mlp", {"hidden": ()}, ValueError, r"hidden must list positive layer widths"),
    ("mlp", {"hidden": (10, 0)}, ValueError, r"hidden must list positive layer widths"),
    ("mlp", {"dropout": 1.0}, ValueError, r"dropout must be a probability in \[0, 1\)"),
    ("mlp", {"input_dropout": -0.1}, ValueError, r"input_dropout must be a probability"),
    ("cnn", {"channels": (8, -1)}, ValueError, r"channels must list positive channel counts"),
    ("cnn", {"channels": (8, 8), "pool_after": (3,)}, ValueError, r"pool_after must name layers 1\.\.2"),
    ("resnet", {"depth": "huge"}, ValueError, r"depth='huge' is unknown"),
    ("resnet", {"width": 0}, ValueError, r"width must be a positive integer"),
])
def test_bad_options(arch, options, error, pattern):
    with pytest.raises(error, match=pattern):
        build_model(arch, **options)


@pytest.mark.parametrize("num_classes", [1, 0, 2.5, True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        build_model("mlp", num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# The fast dropout


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_keep_mask_keeps_a_fraction_1_minus_p(p: float) -> None:
    torch.manual_seed(0)
    mask = keep_mask(torch.empty(400, 500), p)
    assert mask.dtype == torch.bool and mask.shape == (400, 500)
    # 200k Bernoulli draws: standard error of the mean < 0.0012
    assert abs(mask.float().mean().item() - (1 - p)) < 0.006


def test_keep_mask_is_not_correlated_between_neighbours() -> None:
    """Four entries share one 64-bit draw; they must still be independent."""
    torch.manual_seed(0)
    m = keep_mask(torch.empty(100_000, 4), 0.5).float()
    corr = torch.corrcoef(m.T)
    assert (corr - torch.eye(4)).abs().max() < 0.02


def test_dropout_matches_nn_dropout_semantics() -> None:
    x = torch.ones(2000, 300)
    drop = Dropout(0.5)
    torch.manual_seed(1)
    y = drop.train()(x)
    assert set(y.unique().tolist()) == {0.0, 2.0}            # dropped or scaled by 1/(1-p)
    assert abs(y.mean().item() - 1.0) < 0.02                 # expectation kept
    assert torch.equal(drop.eval()(x), x)                    # identity in eval
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    torch.manual_seed(1)
    assert torch.equal(drop.train()(x), y)                   # seeded like every torch sampler


def test_dropout_gradient_is_masked_and_scaled() -> None:
    x = torch.randn(50, 40, requires_grad=True)
    torch.manual_seed(3)
    y = Dropout(0.25).train()(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.75))
    assert torch.all(x.grad[~kept] == 0)
