"""labkd.exercises.taxonomy: each checker passes the reference, catches every deliberate mistake
with its own hint, reports an unfilled stub without crashing, and agrees with the library."""

from __future__ import annotations

import pytest
import torch

from labkd import exercises, feature_losses, solutions

NAMES = ["attention_map", "rkd_distance_loss"]


@pytest.mark.parametrize("name, words", [
    ("attention_map", ["length 1", "each example", "cancel", "over the channels"]),
    ("rkd_distance_loss", ["mean distance", "diagonal", "squared distances", "Huber", "detach"]),
])
def test_each_wrong_answer_fails_with_its_own_hint(name: str, words: list[str]) -> None:
    ex = exercises.get(name)
    assert len(ex.wrong_answers) == len(words) >= 2
    messages = []
    for wrong, word in zip(ex.wrong_answers, words):
        result = exercises.run_checker(name, wrong)
        assert not result.passed, f"{wrong.__name__} passed the checker of {name}"
        assert "raised" not in result.message, f"{wrong.__name__} crashed instead of getting a hint: {result.message}"
        assert word in result.message, (wrong.__name__, word, result.message)
        messages.append(result.message)
    assert len(set(messages)) == len(messages), f"two mistakes share one hint: {messages}"


@pytest.mark.parametrize("name", NAMES)
def test_unfilled_stub_is_reported_not_raised(name: str) -> None:
    def stub(*args):
        raise NotImplementedError("Exercise: fill me in")

    result = exercises.run_checker(name, stub)
    assert not result.passed and "not done yet" in result.message and "fill me in" in result.message


def test_crashing_answer_is_reported() -> None:
    result = exercises.run_checker("rkd_distance_loss", lambda s, t: s @ t)  # shapes do not fit
    assert not result.passed and "raised RuntimeError" in result.message


def test_reference_solutions_agree_with_the_library() -> None:
    g = torch.Generator().manual_seed(1)
    f = torch.randn(3, 4, 5, 5, generator=g)
    assert torch.allclose(solutions.attention_map(f), feature_losses.attention_map(f), atol=1e-6)
    s, t = torch.randn(7, 3, generator=g), torch.randn(7, 8, generator=g)
    assert solutions.rkd_distance_loss(s, t).item() == pytest.approx(feature_losses.rkd_distance_loss(s, t).item(),
                                                                     rel=1e-5)
