"""Exercise of lesson 04 (teacher size): ``mlp_num_parameters(input_size, hidden, num_classes)``,
how big is a teacher?"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from labkd.exercises import ExerciseFailed, exercise

# --------------------------------------------------------------------------------------------
# Lesson 04: counting parameters


def mlp_num_parameters(input_size: int, hidden: Sequence[int], num_classes: int) -> int:
    """Reference: each fully connected layer fan_in -> fan_out has fan_in * fan_out weights and
    fan_out biases; sum over the layers input -> hidden[0] -> ... -> hidden[-1] -> classes."""
    sizes = [input_size, *hidden, num_classes]
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def _no_biases(input_size: int, hidden: Sequence[int], num_classes: int) -> int:
    sizes = [input_size, *hidden, num_classes]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def _no_output_layer(input_size: int, hidden: Sequence[int], num_classes: int) -> int:
    sizes = [input_size, *hidden]
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def _first_hidden_only(input_size: int, hidden: Sequence[int], num_classes: int) -> int:
    return (input_size + 1) * hidden[0] + (hidden[0] + 1) * num_classes


@exercise("mlp_num_parameters", "Exercise: how many parameters does a teacher have?", mlp_num_parameters,
          wrong_answers=(_no_biases, _no_output_layer, _first_hidden_only))
def check_mlp_num_parameters(candidate) -> None:
    cases = [(784, (30, 30), 10), (64, (8, 4, 6), 3), (784, (1200, 1200), 10)]
    for args in cases:
        got = candidate(*args)
        if isinstance(got, Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)) or got != int(got):
            raise ExerciseFailed(f"return a whole number (an int); for {args} you returned {got!r}.")
        want = mlp_num_parameters(*args)
        if int(got) == want:
            continue
        name = f"mlp_num_parameters{args}"
        if int(got) == _no_biases(*args):
            raise ExerciseFailed(f"{name} should be {want:,}; you returned {int(got):,}, which leaves out the biases: "
                                 f"every layer also has one bias per output unit, (fan_in + 1) * fan_out in all.")
        if int(got) == _no_output_layer(*args):
            raise ExerciseFailed(f"{name} should be {want:,}; you returned {int(got):,}: count the last layer too, "
                                 f"from the last hidden layer to the {args[2]} classes.")
        if int(got) == _first_hidden_only(*args):
            raise ExerciseFailed(f"{name} should be {want:,}; you returned {int(got):,}: use every hidden layer in "
                                 f"`hidden`, not only the first.")
        raise ExerciseFailed(f"{name} should be {want:,}, you returned {int(got):,}. List the layer sizes "
                             f"[input_size, *hidden, num_classes] and add (fan_in + 1) * fan_out for each pair of "
                             f"neighbours.")
