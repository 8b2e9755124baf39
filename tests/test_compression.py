"""Lesson 12's library: pruning, quantization, honest sizes, latency and the study's rows."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from labkd import compression as cp
from labkd import compression_methods as cm
from labkd import metrics
from labkd.data import load_data
from labkd.models import build_model, serialized_size


@pytest.fixture(scope="module")
def data():
    return load_data("digits")


@pytest.fixture(scope="module")
def trained(data):
    return cp.train_baselines(data, fast=True, names=["MLP 128×2", "CNN 8-16-32"], progress=False)


def _mlp(hidden=(64, 64)):
    return build_model("mlp", (1, 8, 8), hidden=hidden, seed=0)


def test_global_pruning_zeroes_the_smallest_weights_of_a_copy():
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = cm.prune_magnitude(model, 0.8)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the original is untouched"
    assert cm.weight_sparsity(pruned) == pytest.approx(0.8, abs=1e-3)
    assert not any(name.endswith("_orig") or name.endswith("_mask") for name in pruned.state_dict())
    weights = torch.cat([m.weight.detach().flatten() for _, m in cm.compressible_layers(pruned)])
    originals = torch.cat([m.weight.detach().flatten() for _, m in cm.compressible_layers(model)])
    removed = originals[weights == 0].abs()
    assert float(removed.max()) <= float(originals[weights != 0].abs().min())
    biases = [m.bias for _, m in cm.compressible_layers(pruned)]
    assert all(bool((b != 0).all()) for b in biases), "biases are not pruned"


def test_layer_pruning_gives_every_layer_the_same_sparsity():
    pruned = cm.prune_magnitude(_mlp(), 0.5, scope="layer")
    for _, m in cm.compressible_layers(pruned):
        assert float((m.weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    assert cm.weight_sparsity(cm.prune_magnitude(_mlp(), 0.0)) == 0


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan"), "0.5", True, 2])
def test_sparsity_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match="sparsity must be a fraction in \\[0, 1\\)"):
        cm.prune_magnitude(_mlp(), bad)


def test_bad_arguments_name_the_parameter(data):
    with pytest.raises(ValueError, match="scope"):
        cm.prune_magnitude(_mlp(), 0.5, scope="rows")
    with pytest.raises(ValueError, match="method='svd' is unknown"):
        cm.compress(_mlp(), "svd")
    for bits in (1, 9, 4.5, True):
        with pytest.raises(ValueError, match="bits must be an integer from 2 to 8"):
            cm.quantize_weights(_mlp(), bits)
    with pytest.raises(ValueError, match="runs"):
        cm.latency_ms(_mlp(), torch.zeros(2, 1, 8, 8), runs=0)
    with pytest.raises(ValueError, match="names"):
        cp.train_baselines(data, fast=True, names=["VGG"])
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        cm.compressible_layers(torch.nn.ReLU())


def test_pruned_dense_file_does_not_shrink_but_the_sparse_encoding_does():
    model = _mlp((256, 256))
    dense = serialized_size(model)
    assert cm.sparse_size(model) == pytest.approx(dense, rel=0.01), "nothing to gain without zeros"
    assert cm.stored_size(model) <= dense
    pruned = cm.prune_magnitude(model, 0.9)
    assert serialized_size(pruned) == pytest.approx(dense, rel=0.01)
    # 10% nonzeros at 6 bytes each: about 15% of the dense 4 bytes per weight
    assert 0.1 < cm.sparse_size(pruned) / dense < 0.2
    assert cm.nonzero_parameters(pruned) < 0.15 * cp.num_parameters(pruned)


def test_int8_quantizes_only_linear_layers_without_warnings():
    x = torch.randn(16, 1, 8, 8)
    mlp = _mlp((256, 256))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = cm.quantize_int8(mlp)
        out = metrics.predict_logits(q, x)
    ratio = serialized_size(mlp) / serialized_size(q)
    assert 3.0 < ratio < 4.2, f"int8 weights are a quarter of float32, plus overhead: {ratio:.2f}"
    assert torch.allclose(out, metrics.predict_logits(mlp, x), atol=0.05)
    assert cm.nonzero_parameters(q) == pytest.approx(cp.num_parameters(mlp), rel=0.01)
    cnn = build_model("cnn", (1, 8, 8), channels=(8, 16))
    qc = cm.quantize_int8(cnn)
    assert isinstance(qc.blocks["conv1"][0], torch.nn.Conv2d), "convolutions stay float32"
    assert serialized_size(qc) > 0.8 * serialized_size(cnn)


def test_kbit_codes_pack_into_the_expected_bytes():
    w = torch.randn(5, 7)
    for bits in (2, 3, 4, 8):
        codes, scale = cm.quantize_tensor(w, bits)
        levels = 2 ** (bits - 1) - 1
        assert int(codes.abs().max()) == levels and scale.shape == (5,)
        assert torch.allclose(codes.float() * scale[:, None], w, atol=float(scale.max()) / 2 + 1e-6)
        packed = cm.pack_codes(codes, bits)
        assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(35 * bits / 8)
        bits_flat = np.unpackbits(packed.numpy())[:35 * bits].reshape(35, bits)
        unpacked = (bits_flat * (1 << np.arange(bits - 1, -1, -1))).sum(1) - levels
        assert np.array_equal(unpacked, codes.flatten().numpy())


def test_kbit_model_gets_smaller_with_fewer_bits():
    model = _mlp((256, 256))
    sizes = [cm.stored_size(cm.quantize_weights(model, b)) for b in (8, 4, 2)]
    dense = serialized_size(model)
    assert dense / sizes[0] == pytest.approx(4, rel=0.15)
    assert sizes[0] > sizes[1] > sizes[2]
    q2 = cm.quantize_weights(model, 2)
    assert all(len(torch.unique(m.weight[0])) <= 3 for _, m in cm.compressible_layers(q2))


def test_latency_is_positive_and_restores_threads():
    before = torch.get_num_threads()
    ms = cm.latency_ms(_mlp(), torch.zeros(32, 1, 8, 8), runs=3, threads=1)
    assert ms > 0 and torch.get_num_threads() == before


def test_study_rows_select_and_findings(data, trained):
    students = cp.distil_students(data, trained["MLP 128×2"], fast=True, names=["MLP 32×2"], progress=False)
    assert students["MLP 32×2"].history[-1]["test_acc"] > 0.3
    calls = []
    rows = cp.compression_study(data, trained, students, teacher=trained["MLP 128×2"], sparsities=(0.5, 0.9),
                                bits=(8, 2), latency_batch_size=32, runs=2, progress=False,
                                on_run=lambda i, n: calls.append((i, n)))
    assert len(rows) == 1 + 2 * (2 + 2 + 2) + (2 + 2) == calls[-1][1] == calls[-1][0]
    labels = {r["label"] for r in rows}
    assert all(r["parent"] in labels for r in rows if r["parent"])
    mlp_int8 = cp.select(rows, "int8")[0]
    parent = next(r for r in rows if r["label"] == mlp_int8["parent"])
    assert 3 < parent["stored_bytes"] / mlp_int8["stored_bytes"] < 4.5
    pruned = cp.select(rows, "prune", 0.9)
    assert len(pruned) == 2 and all(r["sparsity"] == pytest.approx(0.9, abs=0.01) for r in pruned)
    assert all(r["stored_bytes"] < r["dense_bytes"] for r in pruned)
    assert all(r["latency_ms"] > 0 for r in rows)
    assert cp.strengths(rows, "kbit") == [8, 2] and cp.strengths(rows, "prune") == [0.5, 0.9]
    with pytest.raises(ValueError, match="measured"):
        cp.select(rows, "prune", 0.8)
    with pytest.raises(ValueError, match="unknown"):
        cp.select(rows, "distill")
    lines = cp.summary_table(rows, methods=["prune"])
    assert len(lines) == 4 and all("×" in line["smaller by"] for line in lines)
    baseline = cp.train_baselines(data, fast=True, names=["MLP 32×2"], progress=False)
    seeds = cp.seed_rows(data, baseline, students, seed=0)
    assert [r["method"] for r in seeds] == ["float32", "distil"]
    text = cp.findings(rows, seeds)
    assert any("int8" in t for t in text) and any("single seed" in t for t in text)


def test_same_start_proves_identical_initial_weights(data, trained):
    students = cp.distil_students(data, trained["MLP 128×2"], fast=True, names=["MLP 32×2"], progress=False)
    baseline = cp.train_baselines(data, fast=True, names=["MLP 32×2"], progress=False)
    (line,) = cp.same_start(baseline, students)
    assert "identical" in line and "NOT" not in line
    with pytest.raises(ValueError, match="no labels-only baseline"):
        cp.same_start({}, students)


def test_batchnorm_recalibration_changes_statistics_not_weights(data):
    cnn = build_model("cnn", (1, 8, 8), channels=(8, 16), seed=0)
    pruned = cm.prune_magnitude(cnn, 0.5)
    weights = {k: v.clone() for k, v in pruned.state_dict().items() if "running" not in k and "num_batches" not in k}
    x = data.train.x[:300]
    cm.recalibrate_batchnorm(pruned, x, batch_size=100)
    bn = pruned.blocks["conv1"][1]
    with torch.no_grad():
        conv_out = pruned.blocks["conv1"][0](x)
    assert torch.allclose(bn.running_mean, conv_out.mean(dim=(0, 2, 3)), atol=1e-4)
    assert bn.momentum == 0.1 and not bn.training and not pruned.training
    assert all(torch.equal(v, pruned.state_dict()[k]) for k, v in weights.items())
    assert cm.recalibrate_batchnorm(_mlp(), x) is not None  # no batch norm: nothing to do
    with pytest.raises(ValueError, match="calibration_images"):
        cp.compression_study(data, {}, {"MLP 32×2": None}, calibration_images=-1)
