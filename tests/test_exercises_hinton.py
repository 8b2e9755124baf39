"""Exercises of lesson 06: what names each deliberate mistake, answers of the wrong type, and the
references against the library (the generic checks are in test_exercises_framework.py)."""

from __future__ import annotations

import pytest
import torch

from exercise_hints import hint_test

from labkd import hinton
from labkd.exercises import check, run_checker
from labkd.exercises import hinton as ex

#: Each deliberate mistake and a phrase its hint must contain.
EXPECTED_HINTS = {
    "fraction_of_gap_closed": {
        "_relative_improvement": "relative improvement",
        "_gap_remaining": "still *left*",
        "_against_the_teacher": "teacher's errors",
    },
    "soft_target_gradient": {
        "_without_t2": "T² times too small",
        "_t_squared": "T times too large",
        "_sign_flipped": "sign is reversed",
        "_no_softening": "must be softened",
    },
}


test_each_wrong_answer_gets_its_own_hint = hint_test(EXPECTED_HINTS)


def test_wrong_types_are_explained():
    assert "one number" in run_checker("fraction_of_gap_closed", lambda b, k, t: "0.9").message
    assert run_checker("fraction_of_gap_closed", lambda b, k, t: torch.tensor((b - k) / (b - t))).passed
    assert "shaped like the logits" in run_checker("soft_target_gradient", lambda z, v, t: (z - v).sum()).message
    assert "zero" in run_checker("soft_target_gradient",
                                 lambda z, v, t: ex.soft_target_gradient(z, v, t) + (z == v).all() * 1.0).message


def test_references_agree_with_the_library():
    assert ex.fraction_of_gap_closed(146, 74, 67) == pytest.approx(hinton.gap_closed(146, 74, 67))
    gen = torch.Generator().manual_seed(0)
    z, v = torch.randn(6, 10, generator=gen), torch.randn(6, 10, generator=gen) * 4
    for t in (1.0, 2.5, 20.0):
        assert torch.allclose(ex.soft_target_gradient(z, v, t), hinton.soft_target_gradient(z, v, t))


def test_a_passing_function_is_returned_for_later_cells():
    def fraction_of_gap_closed(baseline_errors, distilled_errors, teacher_errors):
        gap = baseline_errors - teacher_errors
        return (baseline_errors - distilled_errors) / gap

    assert check(fraction_of_gap_closed, show=False) is fraction_of_gap_closed
