"""Exercise of lesson 05 (early-stopped teachers): ``calibration_error(probs, targets, n_bins)``,
the expected calibration error from probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from labkd.exercises import ExerciseFailed, exercise, one_number

# --------------------------------------------------------------------------------------------
# Lesson 05: expected calibration error


def calibration_error(probs: Tensor, targets: Tensor, n_bins: int = 10) -> float:
    r"""Reference ECE (Guo et al. 2017): group examples into ``n_bins`` equal-width bins of
    confidence (the top-class probability), then
    :math:`\sum_b \frac{|B_b|}{N}\,|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|`.
    probs (N, C) rows summing to 1, targets (N,) class ids. Bin b holds confidences in
    [b/n_bins, (b+1)/n_bins); a confidence of exactly 1 goes into the last bin."""
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == targets).float()
    bins = torch.clamp((confidence * n_bins).long(), max=n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += float(mask.float().mean()) * abs(float(confidence[mask].mean()) - float(correct[mask].mean()))
    return ece


def _unweighted(probs: Tensor, targets: Tensor, n_bins: int = 10) -> float:
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == targets).float()
    bins = torch.clamp((confidence * n_bins).long(), max=n_bins - 1)
    gaps = [abs(float(confidence[bins == b].mean()) - float(correct[bins == b].mean()))
            for b in range(n_bins) if (bins == b).any()]
    return sum(gaps) / len(gaps)


def _signed(probs: Tensor, targets: Tensor, n_bins: int = 10) -> float:
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == targets).float()
    bins = torch.clamp((confidence * n_bins).long(), max=n_bins - 1)
    return sum(float((bins == b).float().mean()) * (float(confidence[bins == b].mean()) - float(correct[bins == b].mean()))
               for b in range(n_bins) if (bins == b).any())


def _one_bin(probs: Tensor, targets: Tensor, n_bins: int = 10) -> float:
    confidence, predicted = probs.max(dim=1)
    return abs(float(confidence.mean()) - float((predicted == targets).float().mean()))


def _true_class_probability(probs: Tensor, targets: Tensor, n_bins: int = 10) -> float:
    confidence = probs.gather(1, targets[:, None]).squeeze(1)
    correct = (probs.argmax(1) == targets).float()
    bins = torch.clamp((confidence * n_bins).long(), max=n_bins - 1)
    return sum(float((bins == b).float().mean()) * abs(float(confidence[bins == b].mean()) - float(correct[bins == b].mean()))
               for b in range(n_bins) if (bins == b).any())


def _examples(groups: Sequence[tuple[float, int, int]]) -> tuple[Tensor, Tensor]:
    """Rows of 3-class probabilities: for each (confidence, n_correct, n_wrong) group, the top
    class 0 gets ``confidence``; correct rows have target 0, wrong rows target 1."""
    probs, targets = [], []
    for p, n_right, n_wrong in groups:
        row = [p, (1 - p) * 0.6, (1 - p) * 0.4]
        probs += [row] * (n_right + n_wrong)
        targets += [0] * n_right + [1] * n_wrong
    return torch.tensor(probs, dtype=torch.float64), torch.tensor(targets)


#: Test sets: over- and under-confidence that cancel; bins of unequal size and gap.
CALIBRATION_CASES = (
    ("an over-confident and an under-confident half", [(0.95, 3, 1), (0.55, 4, 0)], 10),
    ("a big, nearly calibrated bin and a small, badly calibrated one", [(0.95, 6, 0), (0.65, 0, 2)], 10),
    ("the same examples with a single bin", [(0.95, 6, 0), (0.65, 0, 2)], 1),
)


@exercise("calibration_error", "Exercise: expected calibration error", calibration_error,
          wrong_answers=(_unweighted, _signed, _one_bin, _true_class_probability))
def check_calibration_error(candidate) -> None:
    for description, groups, n_bins in CALIBRATION_CASES:
        probs, targets = _examples(groups)
        got = one_number(candidate(probs, targets, n_bins), "one number (a float)")
        want = calibration_error(probs, targets, n_bins)
        if abs(got - want) < 1e-6:
            continue
        where = f"On {description} (n_bins={n_bins}) the ECE is {want:.4f}; you returned {got:.4f}."
        if n_bins > 1 and abs(got - _signed(probs, targets, n_bins)) < 1e-6:
            raise ExerciseFailed(f"{where} Over-confidence in one bin and under-confidence in another cancelled "
                                 f"out: take the absolute gap |accuracy - confidence| in each bin.")
        if n_bins > 1 and abs(got - _one_bin(probs, targets, n_bins)) < 1e-6:
            raise ExerciseFailed(f"{where} You compared the overall confidence with the overall accuracy; compare "
                                 f"them bin by bin (examples grouped by their confidence), then combine the bins.")
        if abs(got - _unweighted(probs, targets, n_bins)) < 1e-6:
            raise ExerciseFailed(f"{where} Each bin's gap must be weighted by the fraction of examples in it "
                                 f"(|B_b| / N), not averaged over the bins equally.")
        if abs(got - _true_class_probability(probs, targets, n_bins)) < 1e-6:
            raise ExerciseFailed(f"{where} The confidence is the probability of the *predicted* (top) class, "
                                 f"probs.max(dim=1), not the probability given to the true label.")
        raise ExerciseFailed(f"{where} Steps: confidence, prediction = probs.max(dim=1); bin = "
                             f"min(int(confidence * n_bins), n_bins - 1); add (bin size / N) * |mean confidence - "
                             f"accuracy| over the non-empty bins.")
