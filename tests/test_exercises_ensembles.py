"""Lesson 08's exercises: each deliberate mistake gets its own hint (the generic checks — reference
passes, stub survives, every wrong answer fails — are in test_exercises_framework.py)."""

from __future__ import annotations

import pytest
import torch

import labkd.exercises.ensembles as ex
from labkd.exercises import ExerciseFailed, get
from labkd.losses import ensemble_probs
from labkd.specialists import dustbin_labels

@pytest.mark.parametrize("wrong, hint", [
    (ex._arithmetic, "arithmetic mean"),
    (ex._not_normalised, "renormalise"),
    (ex._no_temperature, "divide the logits by the temperature"),
    (ex._product_not_mean, "K-th root"),
    (ex._mean_over_examples, "dim=1"),
])
def test_geometric_mean_hints(wrong, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        get("geometric_mean_targets").checker(wrong)


@pytest.mark.parametrize("wrong, hint", [
    (ex._keep_original_ids, "renumber"),
    (ex._dustbin_minus_one, "negative"),
    (ex._dustbin_first, "dustbin last"),
    (ex._sorted_order, "not in sorted order"),
    (ex._dustbin_is_num_classes, "renumber"),
])
def test_dustbin_hints(wrong, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        get("dustbin_labels").checker(wrong)


def test_references_agree_with_the_library():
    logits = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ex.geometric_mean_targets(logits, 2.0), ensemble_probs(logits, 2.0, "geometric"), atol=1e-6)
    labels = torch.randint(10, (50,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(ex.dustbin_labels(labels, [3, 1, 8]), dustbin_labels(labels, [3, 1, 8]))


def test_mutating_the_input_is_caught():
    def in_place(labels, classes):
        out = ex.dustbin_labels(labels, classes)
        labels.copy_(out)
        return out

    with pytest.raises(ExerciseFailed, match="changed the labels"):
        get("dustbin_labels").checker(in_place)
