"""Exercise of lesson 04 (labkd.exercises.teacher_size): the checker passes the reference, catches
each deliberate mistake with its own hint, and never crashes on an unfilled or broken function."""

from __future__ import annotations

import pytest
import torch

from exercise_hints import hint_test

from labkd.exercises import check, run_checker
from labkd.exercises import teacher_size as ex
from labkd.models import build_model, num_parameters

#: Each deliberate mistake and a phrase its hint must contain.
EXPECTED_HINTS = {
    "mlp_num_parameters": {
        "_no_biases": "biases",
        "_no_output_layer": "last layer",
        "_first_hidden_only": "every hidden layer",
    },
}


test_each_wrong_answer_gets_its_own_hint = hint_test(EXPECTED_HINTS)


def test_wrong_return_types_are_explained():
    assert "whole number" in run_checker("mlp_num_parameters", lambda i, h, c: "24790").message
    assert run_checker("mlp_num_parameters", lambda i, h, c: torch.tensor(ex.mlp_num_parameters(i, h, c))).passed


def test_a_passing_function_is_returned_for_later_cells():
    def mlp_num_parameters(input_size, hidden, num_classes):
        sizes = [input_size, *hidden, num_classes]
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    assert check(mlp_num_parameters, show=False) is mlp_num_parameters


@pytest.mark.parametrize("hidden", [(30, 30), (1200, 1200), (10, 20, 30)])
def test_parameter_reference_matches_torch(hidden):
    assert ex.mlp_num_parameters(784, hidden, 10) == num_parameters(build_model("mlp", hidden=hidden))
