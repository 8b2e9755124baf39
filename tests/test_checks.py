"""The shared argument checks of labkd.checks: each error names the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labkd.checks import check_classes


@pytest.mark.parametrize("classes", [[3, 1], (3, 1), torch.tensor([3, 1]), np.array([3, 1]), [np.int64(3), 1]])
def test_check_classes_accepts_lists_tensors_and_arrays(classes) -> None:
    assert check_classes(classes, 10) == [3, 1]
    assert all(type(c) is int for c in check_classes(classes, 10))


@pytest.mark.parametrize("classes, error, message", [
    (3, TypeError, r"keep must be a list of class ids such as \[3\]"),
    ("3", TypeError, "keep must be a list of class ids"),
    ([], ValueError, "keep is empty"),
    ([10], ValueError, r"keep has 10; class ids are integers 0\.\.9"),
    ([1.0], ValueError, "keep has 1.0"),
    ([True], ValueError, "keep has True"),
    ([2, 2], ValueError, "keep lists a class twice"),
])
def test_check_classes_names_the_argument(classes, error, message) -> None:
    with pytest.raises(error, match=message):
        check_classes(classes, 10, "keep")
