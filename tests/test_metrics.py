"""Metrics on hand-made logits whose answers can be worked out on paper (labkd.metrics)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from labkd.metrics import (
    accuracy, agreement, error_count, errors_per_class,
    expected_calibration_error, mean_kl, predict_logits, predictive_entropy,
)


def one_hot_logits(predicted: list[int], num_classes: int = 3, scale: float = 5.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predicted), num_classes).float() * scale


# true classes and predictions, 8 examples, 3 classes:
#   class 0: 3 examples, predicted 0, 0, 1  -> 1 error
#   class 1: 2 examples, predicted 1, 1     -> 0 errors
#   class 2: 3 examples, predicted 2, 0, 0  -> 2 errors
TARGETS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
PREDICTED = [0, 0, 1, 1, 1, 2, 0, 0]
LOGITS = one_hot_logits(PREDICTED)


def test_hand_example_accuracy_and_errors():
    assert accuracy(LOGITS, TARGETS) == pytest.approx(5 / 8)
    assert error_count(LOGITS, TARGETS) == 3
    assert errors_per_class(LOGITS, TARGETS).tolist() == [1, 0, 2]


def test_metrics_agree_with_each_other_on_random_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 7, generator=g)
    targets = torch.randint(0, 7, (500,), generator=g)
    per_class = errors_per_class(logits, targets)
    errors = error_count(logits, targets)
    wrong = logits.argmax(1) != targets
    assert torch.equal(per_class, torch.bincount(targets[wrong], minlength=7))
    assert int(per_class.sum()) == errors
    assert accuracy(logits, targets) == pytest.approx(1 - errors / 500)


def test_accuracy_extremes():
    targets = torch.tensor([2, 0, 1])
    assert accuracy(one_hot_logits([2, 0, 1]), targets) == 1.0
    assert accuracy(one_hot_logits([0, 1, 2]), targets) == 0.0
    assert errors_per_class(one_hot_logits([2, 0, 1]), targets).tolist() == [0, 0, 0]


def test_agreement():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(200, 5, generator=g)
    assert agreement(a, a) == 1.0
    assert agreement(a, a * 3 + 1) == 1.0  # only the argmax matters
    b = one_hot_logits([0, 1, 2, 0])
    c = one_hot_logits([0, 2, 2, 1])
    assert agreement(b, c) == pytest.approx(0.5)
    assert agreement(b, c) == agreement(c, b)


def test_mean_kl_zero_with_itself_positive_otherwise():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(64, 10, generator=g), torch.randn(64, 10, generator=g)
    assert mean_kl(a, a) == pytest.approx(0.0, abs=1e-6)
    assert mean_kl(a, a + 5.0) == pytest.approx(0.0, abs=1e-5)  # a shift of all logits changes nothing
    assert mean_kl(a, b) > 0.1
    assert mean_kl(a, b, temperature=10.0) < mean_kl(a, b)  # softer distributions are closer


def test_mean_kl_is_teacher_to_student_on_a_hand_example():
    teacher = torch.tensor([[0.0, 0.0]])  # p = (0.5, 0.5)
    student = torch.tensor([[math.log(4.0), 0.0]])  # q = (0.8, 0.2)
    kl_pq = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    kl_qp = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    assert mean_kl(teacher, student) == pytest.approx(kl_pq, rel=1e-5)
    assert mean_kl(student, teacher) == pytest.approx(kl_qp, rel=1e-5)


def test_entropy_uniform_and_confident():
    c = 10
    uniform = predictive_entropy(torch.zeros(4, c))
    assert uniform.shape == (4,)
    assert torch.allclose(uniform, torch.full((4,), math.log(c)))
    confident = predictive_entropy(torch.tensor([[50.0] + [0.0] * (c - 1)]))
    assert float(confident) == pytest.approx(0.0, abs=1e-6)
    two = predictive_entropy(torch.tensor([[math.log(4.0), 0.0]]))  # p = (0.8, 0.2)
    assert float(two) == pytest.approx(-(0.8 * math.log(0.8) + 0.2 * math.log(0.2)), rel=1e-5)


def test_entropy_grows_with_temperature():
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
    values = [float(predictive_entropy(logits, t)) for t in (0.5, 1.0, 2.0, 8.0)]
    assert values == sorted(values) and values[-1] < math.log(4)


def test_ece_zero_for_perfectly_calibrated_toys():
    # confident and right
    right = one_hot_logits([0, 1, 2], scale=100.0)
    assert expected_calibration_error(right, torch.tensor([0, 1, 2])) == pytest.approx(0.0, abs=1e-6)
    # 50% confident (two classes, equal logits) and right half of the time
    logits = torch.zeros(4, 2)
    assert expected_calibration_error(logits, torch.tensor([0, 1, 0, 1])) == pytest.approx(0.0, abs=1e-6)


def test_ece_hand_example_one_bin():
    # confidence 0.8 everywhere, 3 of 4 right: |0.8 - 0.75| = 0.05
    logits = torch.tensor([[math.log(4.0), 0.0]] * 4)
    assert expected_calibration_error(logits, torch.tensor([0, 0, 0, 1])) == pytest.approx(0.05, abs=1e-6)
    # confidently wrong: gap 1
    wrong = one_hot_logits([0, 1], scale=100.0)
    assert expected_calibration_error(wrong, torch.tensor([1, 0])) == pytest.approx(1.0, abs=1e-6)


def test_ece_hand_example_two_bins():
    # two examples at confidence 0.8, both right (gap 0.2); two at 0.6, one right (gap 0.1)
    logits = torch.tensor([[math.log(4.0), 0.0]] * 2 + [[math.log(1.5), 0.0]] * 2)
    targets = torch.tensor([0, 0, 0, 1])
    assert expected_calibration_error(logits, targets) == pytest.approx(0.5 * 0.2 + 0.5 * 0.1, abs=1e-6)
    # with a single bin the gaps cancel: mean confidence 0.7, accuracy 0.75
    assert expected_calibration_error(logits, targets, n_bins=1) == pytest.approx(0.05, abs=1e-6)


def test_predict_logits_batches_and_restores_the_mode():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, 3))
    x = torch.randn(10, 1, 2, 2)
    model.train()
    out = predict_logits(model, x, batch_size=3)
    assert model.training
    model.eval()
    assert torch.allclose(out, model(x))  # eval mode: no dropout, batches concatenated in order
    assert not out.requires_grad


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("function", [
    accuracy, error_count, errors_per_class, expected_calibration_error,
])
def test_bad_targets(function):
    logits = torch.zeros(4, 3)
    with pytest.raises(TypeError, match="targets must be an integer tensor"):
        function(logits, torch.zeros(4))
    with pytest.raises(ValueError, match=r"targets must have shape \(4,\)"):
        function(logits, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets must be class ids in 0\.\.2"):
        function(logits, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"logits must have shape \(N, C\)"):
        function(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="logits must be a torch.Tensor"):
        function([[0.0, 1.0]], torch.zeros(1, dtype=torch.long))


def test_bad_logit_pairs():
    with pytest.raises(ValueError, match=r"logits_a \(4, 3\) and logits_b \(4, 2\) must have the same shape"):
        agreement(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="must have the same shape"):
        mean_kl(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="contains NaN or inf"):
        mean_kl(torch.zeros(2, 3), torch.tensor([[0.0, float("nan"), 1.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(TypeError, match="floating-point"):
        agreement(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))


def test_bad_temperature_and_bins():
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        predictive_entropy(torch.zeros(2, 3), temperature=0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        mean_kl(torch.zeros(2, 3), torch.zeros(2, 3), temperature=float("inf"))
    with pytest.raises(ValueError, match="n_bins must be >= 1"):
        expected_calibration_error(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), n_bins=0)



def test_first_layer_norm_of_a_run_is_that_of_its_untrained_model(tmp_path, monkeypatch):
    from labkd import TrainConfig, build_model, load_data, train_model
    from labkd.metrics import first_layer_norm

    monkeypatch.setenv("LABKD_CACHE", str(tmp_path))
    data = load_data("digits").subset(n_train=64)
    trained = train_model("mlp", data, TrainConfig(epochs=1, seed=3), hidden=(8,), progress=False)
    untrained = build_model("mlp", data.input_shape, data.num_classes, seed=3, hidden=(8,))
    assert first_layer_norm(trained) == first_layer_norm(untrained)  # before training: rebuilt from the seed
    assert first_layer_norm(trained.model) != first_layer_norm(untrained)  # the trained weights moved
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        first_layer_norm("mlp")
