"""Exercise of lesson 05 (labkd.exercises.early_stopping): the checker passes the reference,
catches each deliberate mistake with its own hint, and never crashes on a broken function."""

from __future__ import annotations

import pytest
import torch

from exercise_hints import hint_test

from labkd import metrics
from labkd.exercises import early_stopping as ex
from labkd.exercises import run_checker

#: Each deliberate mistake and a phrase its hint must contain.
EXPECTED_HINTS = {
    "calibration_error": {
        "_unweighted": "weighted by the fraction",
        "_signed": "absolute gap",
        "_one_bin": "bin by bin",
        "_true_class_probability": "predicted",
    },
}


test_each_wrong_answer_gets_its_own_hint = hint_test(EXPECTED_HINTS)


def test_wrong_return_types_are_explained():
    assert "one number" in run_checker("calibration_error", lambda p, t, n=10: torch.zeros(3)).message


def test_calibration_reference_matches_the_library():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 10, generator=gen) * 3
    targets = torch.randint(0, 10, (500,), generator=gen)
    for n_bins in (1, 10, 15):
        ours = ex.calibration_error(torch.softmax(logits, 1), targets, n_bins)
        assert ours == pytest.approx(metrics.expected_calibration_error(logits, targets, n_bins), abs=1e-6)
