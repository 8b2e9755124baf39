"""Exercises of lesson 12: the checkers pass the reference, catch each deliberate mistake with its
own hint, and never crash on an unfilled or broken function."""

from __future__ import annotations

import math

import pytest
import torch

from exercise_hints import hint_test

from labkd import compression_methods as cp
from labkd.exercises import check, get, run_checker
from labkd.exercises import compression as ex
from labkd.models import build_model

#: Each deliberate mistake and a phrase its hint must contain.
EXPECTED_HINTS = {
    "magnitude_prune": {
        "_prunes_largest": "removed the largest",
        "_signed_not_absolute": "absolute value",
        "_density_not_sparsity": "not the fraction kept",
        "_in_place": "work on a copy",
    },
    "quantized_size_bytes": {
        "_bits_not_bytes": "divide",
        "_no_scales": "Add the scales",
        "_one_byte_per_weight": "share a byte",
        "_rounds_down": "round up",
    },
}


test_each_wrong_answer_gets_its_own_hint = hint_test(EXPECTED_HINTS)


@pytest.mark.parametrize("name", sorted(EXPECTED_HINTS))
def test_unfilled_and_crashing_functions_fail_gracefully(name):
    def stub(*args, **kwargs):
        raise NotImplementedError("Exercise 1: fill me in")

    stub.__name__ = name
    result = run_checker(name, stub)
    assert not result.passed and "not done yet" in result.message and "Exercise 1" in result.message

    def crashes(*args, **kwargs):
        return [][1]

    result = run_checker(name, crashes)
    assert not result.passed and "IndexError" in result.message
    assert check(stub, name=name, show=False) is get(name).solution
    assert check(stub, name=name, solutions=True, show=False) is get(name).solution


def test_wrong_return_types_are_explained():
    assert "tensor of the weight's shape" in run_checker("magnitude_prune", lambda w, s: w.clone().flatten()).message
    assert "whole number" in run_checker("quantized_size_bytes", lambda n, b, s=1: "12").message


@pytest.mark.parametrize("sparsity", [0.3, 0.9])
def test_pruning_reference_matches_torch_prune(sparsity):
    model = build_model("mlp", (1, 8, 8), hidden=(20,), seed=1)
    weight = model.blocks["fc1"][1].weight.detach()
    ours = ex.magnitude_prune(weight, sparsity)
    theirs = cp.prune_magnitude(model, sparsity, scope="layer").blocks["fc1"][1].weight.detach()
    assert torch.equal(ours == 0, theirs == 0)


def test_size_reference_matches_the_packed_file():
    weight = torch.randn(64, 50)
    for bits in (2, 4, 8):
        codes, scale = cp.quantize_tensor(weight, bits)
        assert cp.pack_codes(codes, bits).numel() + 4 * scale.numel() == ex.quantized_size_bytes(64 * 50, bits, 64)
    assert ex.quantized_size_bytes(7, 4) == math.ceil(3.5) + 4
