"""Exercise of lesson 07: the checker passes the reference, catches each deliberate mistake with
its own hint, and never crashes on an unfilled or broken function."""

from __future__ import annotations

import torch

from exercise_hints import hint_test

from labkd import transfer_sets as tr
from labkd.exercises import check, get, run_checker
from labkd.exercises import transfer_sets as ex

NAME = "choose_bias_shift"
#: Each deliberate mistake and a phrase its hint must contain.
EXPECTED_HINTS = {
    "_wrong_sign": "do not subtract",
    "_most_errors": "MOST errors",
    "_only_shifted_classes": "every image",
    "_returns_error_count": "number of errors",
}


test_each_wrong_answer_gets_its_own_hint = hint_test({NAME: EXPECTED_HINTS})


def test_unfilled_crashing_and_odd_returns_fail_gracefully():
    def choose_bias_shift(logits, targets, classes, shifts):
        raise NotImplementedError("Exercise 1: fill me in")

    result = run_checker(NAME, choose_bias_shift)
    assert not result.passed and "not done yet" in result.message and "Exercise 1" in result.message
    assert check(choose_bias_shift, show=False) is get(NAME).solution
    assert check(choose_bias_shift, solutions=True, show=False) is get(NAME).solution
    assert "IndexError" in run_checker(NAME, lambda z, y, c, s: [][1]).message
    assert "not one of the candidate shifts" in run_checker(NAME, lambda z, y, c, s: 0.123).message
    assert "one number" in run_checker(NAME, lambda z, y, c, s: s).message
    assert "one number" in run_checker(NAME, lambda z, y, c, s: "3").message


def test_any_tied_best_shift_and_tensor_returns_pass():
    def largest_of_the_best(logits, targets, classes, shifts):
        errors = tr.errors_by_shift(logits, targets, classes, shifts)
        return shifts[errors == errors.min()].max()  # a 0-d tensor, the last of the tied shifts

    assert run_checker(NAME, largest_of_the_best).passed
    assert check(largest_of_the_best, name=NAME, show=False) is largest_of_the_best


def test_reference_agrees_with_the_library():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(500, 10, generator=gen) * 2
    targets = torch.randint(0, 10, (500,), generator=gen)
    grid = tr.shift_grid(5.0, 0.5).float()
    for classes in ([3], [7, 8]):
        assert ex.choose_bias_shift(logits, targets, classes, grid) == tr.choose_shift(logits, targets, classes, grid)
