"""A shared test for topic exercise files: each deliberate mistake gets a hint that names it.

In ``tests/test_exercises_<topic>.py``::

    EXPECTED_HINTS = {"kd_loss": {"_swapped": "swapped", "_no_t_squared": "T²"}}
    test_each_wrong_answer_gets_its_own_hint = hint_test(EXPECTED_HINTS)

(What every exercise must do — pass its reference, fail each mistake, survive a stub — is checked
for all of them at once in ``test_exercises_framework.py``.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from labkd.exercises import get, run_checker


def hint_test(expected: Mapping[str, Mapping[str, str]]) -> Callable[[str, str], None]:
    """A test parametrized over ``{exercise: {wrong answer's __name__: phrase its hint contains}}``:
    every registered mistake is listed, its hint contains its phrase and no other mistake's."""

    @pytest.mark.parametrize("name, wrong", [(n, w) for n, hints in expected.items() for w in hints])
    def test(name: str, wrong: str) -> None:
        answers = {f.__name__: f for f in get(name).wrong_answers}
        assert set(answers) == set(expected[name]), "every registered mistake has an expected hint"
        result = run_checker(name, answers[wrong])
        assert not result.passed
        assert expected[name][wrong] in result.message, result.message
        others = [h for w, h in expected[name].items() if w != wrong]
        assert not any(h in result.message for h in others), f"the hint for {wrong} is not specific: {result.message}"

    return test
