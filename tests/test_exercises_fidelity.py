"""Exercises of lessons 09-10: what names each deliberate mistake, and the references against the
library (the generic checks of every exercise are in test_exercises_framework.py)."""

from __future__ import annotations

import pytest
import torch

from exercise_hints import hint_test

from labkd import metrics, online
from labkd.exercises import run_checker
from labkd.exercises import fidelity as ex_fidelity
from labkd.exercises import online as ex_online

#: Each deliberate mistake and a phrase its hint must contain.
EXPECTED_HINTS = {
    "disagreement_breakdown": {
        "_wrong_together_is_agreement": "SAME wrong class",
        "_swapped_roles": "swapped",
        "_argmax_over_examples": "over the classes (dim=1)",
        "_fractions": "these are fractions",
    },
    "mutual_loss_for_one": {
        "_reversed_kl": "wrong way round",
        "_summed_not_averaged": "average their KL terms",
        "_no_labels": "labels are missing",
        "_not_detached": "detach",
    },
}


test_each_wrong_answer_gets_its_own_hint = hint_test(EXPECTED_HINTS)


def test_references_match_the_library():
    gen = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(50, 10, generator=gen) for _ in range(3))
    y = torch.randint(0, 10, (50,), generator=gen)
    breakdown = ex_fidelity.disagreement_breakdown(a, b, y)
    assert sum(breakdown.values()) == 50
    assert ex_fidelity.agreement_from(breakdown) == pytest.approx(metrics.agreement(a, b))
    assert breakdown["both right"] + breakdown["only the teacher right"] == int((a.argmax(1) == y).sum())
    ours = ex_online.mutual_loss_for_one(a, [b, c], y)
    assert ours.item() == pytest.approx(online.mutual_learning_loss([a, b, c], y)[0].item(), rel=1e-5)


def test_wrong_return_types_are_explained():
    assert "exactly these keys" in run_checker("disagreement_breakdown", lambda t, s, y: torch.zeros(3)).message
    assert "one number" in run_checker("mutual_loss_for_one", lambda z, o, y: torch.zeros(3)).message
    assert "no gradient" in run_checker(
        "mutual_loss_for_one", lambda z, o, y: ex_online.mutual_loss_for_one(z, o, y).detach()).message
