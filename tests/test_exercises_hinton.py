"""Exercises of lesson 06: what names each deliberate mistake, answers of the wrong type, and the
references against the library (the generic checks are in test_exercises_framework.py)."""

from __future__ import annotations

import torch

from exercise_hints import hint_test

from labkd import hinton
from labkd.exercises import check, run_checker
from labkd.exercises import hinton as ex

#: Each deliberate mistake and a phrase its hint must contain.
EXPECTED_HINTS = {
    "teacher_soft_targets": {
        "_dropout_on": "train mode",
        "_unsoftened": "T = 1 probabilities",
        "_logits": "not probabilities",
        "_with_gradients": "torch.no_grad()",
        "_multiplied": "DIVIDE",
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
    assert "shape (N, C)" in run_checker("teacher_soft_targets", lambda m, x, t: "0.9").message
    assert "shaped like the logits" in run_checker("soft_target_gradient", lambda z, v, t: (z - v).sum()).message
    assert "zero" in run_checker("soft_target_gradient",
                                 lambda z, v, t: ex.soft_target_gradient(z, v, t) + (z == v).all() * 1.0).message


def test_references_agree_with_the_library():
    teacher = ex._DropoutTeacher()
    x = torch.randn(7, 6)
    p = ex.teacher_soft_targets(teacher, x, 3.0)
    assert not teacher.training and torch.allclose(p.sum(1), torch.ones(7))
    assert torch.equal(p, ex.teacher_soft_targets(teacher, x, 3.0))  # eval mode: the same targets every call
    assert "bits" in ex.dropout_noise(teacher, x, 3.0) and not teacher.training
    gen = torch.Generator().manual_seed(0)
    z, v = torch.randn(6, 10, generator=gen), torch.randn(6, 10, generator=gen) * 4
    for t in (1.0, 2.5, 20.0):
        assert torch.allclose(ex.soft_target_gradient(z, v, t), hinton.soft_target_gradient(z, v, t))


def test_a_passing_function_is_returned_for_later_cells():
    def teacher_soft_targets(teacher, images, temperature):
        teacher.train(False)
        with torch.inference_mode():
            return torch.nn.functional.softmax(teacher(images) / temperature, dim=1)

    assert check(teacher_soft_targets, show=False) is teacher_soft_targets
