"""Lesson 02's exercises (labkd.exercises.sweeps), starting with the kd_loss exercise: the reference passes, each classic mistake gets its own hint."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labkd import exercises, losses
from labkd.exercises import sweeps as topic
from exercise_hints import hint_test

# Each deliberate mistake and a phrase its hint must contain.
EXPECTED_HINTS = {
    topic._swapped: "swapped",
    topic._no_t_squared: "T²",
    topic._mean_reduction: "reduction='mean'",
    topic._softmax_input: "LOG-probabilities",
    topic._sum_reduction: "batch size",
    topic._forgot_temperature: "divide the student's AND the teacher's logits",
    topic._detached: "no gradient",
}


@pytest.mark.parametrize("t", [0.5, 1.0, 4.0, 20.0])
def test_reference_equals_the_library_soft_target_loss(t):
    g = torch.Generator().manual_seed(0)
    s, v = torch.randn(8, 10, generator=g) * 3, torch.randn(8, 10, generator=g) * 3
    assert topic.kd_loss(s, v, t).item() == pytest.approx(losses.soft_target_loss(s, v, t).item(), rel=1e-5)


def test_every_wrong_answer_is_registered_and_has_an_expected_hint():
    assert set(exercises.get("kd_loss").wrong_answers) == set(EXPECTED_HINTS)


@pytest.mark.parametrize("wrong", list(EXPECTED_HINTS), ids=lambda f: f.__name__)
def test_each_mistake_fails_with_its_own_hint(wrong):
    result = exercises.run_checker("kd_loss", wrong)
    assert not result.passed
    assert EXPECTED_HINTS[wrong] in result.message, result.message
    others = [h for w, h in EXPECTED_HINTS.items() if w is not wrong]
    assert not any(h in result.message for h in others), f"{wrong.__name__} got another mistake's hint: {result.message}"


def test_the_unfilled_stub_fails_gracefully():
    def kd_loss(student_logits, teacher_logits, temperature):
        raise NotImplementedError("Exercise 1: fill me in")

    result = exercises.run_checker("kd_loss", kd_loss)
    assert not result.passed and "not done yet" in result.message and "Exercise 1" in result.message


@pytest.mark.parametrize("candidate, words", [
    (lambda s, t, T: 1 / 0, "ZeroDivisionError"),
    (lambda s, t, T: 0.5, "torch tensor"),
    (lambda s, t, T: F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="none") * T * T, "scalar"),
    (lambda s, t, T: topic.kd_loss(s, t, T) + 0.3, "should be"),
])
def test_other_mistakes_get_a_message_not_a_crash(candidate, words):
    result = exercises.run_checker("kd_loss", candidate)
    assert not result.passed and words in result.message, result.message


def test_check_returns_the_students_function_only_when_it_passes():
    def kd_loss(student_logits, teacher_logits, temperature):
        return topic.kd_loss(student_logits, teacher_logits, temperature)

    assert exercises.check(kd_loss, show=False) is kd_loss
    assert exercises.check(topic._swapped, name="kd_loss", show=False) is topic.kd_loss
    assert exercises.check(kd_loss, solutions=True, show=False) is topic.kd_loss


def test_solution_is_listed_for_instructors():
    from labkd import solutions

    assert "kd_loss" in solutions.names()
    assert solutions.kd_loss is topic.kd_loss


# --- Exercise 2 of lesson 02: one distillation step, by hand -----------------------------------

# Each deliberate mistake of the step and a phrase its hint must contain (and no other's).
STEP_HINTS = {
    "distillation_step": {
        "_step_teacher_train_mode": "train mode",
        "_step_teacher_gradients": "torch.no_grad()",
        "_step_no_t_squared": "T²",
        "_step_swapped_kl": "wrong direction",
        "_step_mean_reduction": "reduction='mean'",
        "_step_no_zero_grad": "zero_grad() before",
        "_step_no_optimizer_step": "did not move",
    },
}
test_each_step_mistake_gets_its_own_hint = hint_test(STEP_HINTS)


def test_the_reference_step_passes_and_equals_the_library_step():
    assert exercises.run_checker("distillation_step", topic.distillation_step).passed
    assert exercises.run_checker("distillation_step", topic.library_step).passed
    for t, a in ((4.0, 0.9), (1.0, 0.0), (20.0, 1.0)):
        mine, _, _, out = topic._run_step(topic.distillation_step, t, a)
        lib, _, _, want = topic._run_step(topic.library_step, t, a)
        assert torch.allclose(topic._weights(mine), topic._weights(lib), atol=1e-6)
        assert float(out) == pytest.approx(float(want), rel=1e-5)


def test_a_step_written_differently_passes():
    """A student's correct step need not look like the reference (own KL formula, loss as float)."""
    def distillation_step(student, teacher, optimizer, images, labels, temperature, alpha):
        teacher.eval()
        with torch.no_grad():
            p = F.softmax(teacher(images) / temperature, dim=1)
        z = student(images)
        log_q = F.log_softmax(z / temperature, dim=1)
        kl = (p * (torch.log(p) - log_q)).sum(dim=1).mean()
        loss = alpha * temperature * temperature * kl + (1 - alpha) * F.cross_entropy(z, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    assert exercises.run_checker("distillation_step", distillation_step).passed


@pytest.mark.parametrize("candidate, words", [
    (lambda s, t, o, x, y, T, a: None, "did not move"),
    (lambda s, t, o, x, y, T, a: 1 / 0, "ZeroDivisionError"),
])
def test_other_step_mistakes_get_a_message(candidate, words):
    result = exercises.run_checker("distillation_step", candidate)
    assert not result.passed and words in result.message, result.message


def test_a_step_that_forgets_the_labels_gets_the_general_hint():
    def no_labels(student, teacher, optimizer, images, labels, temperature, alpha):
        return topic._step_with(topic.kd_loss)(student, teacher, optimizer, images, labels, temperature, 1.0)

    result = exercises.run_checker("distillation_step", no_labels)
    assert not result.passed and "alpha · soft + (1 − alpha)" in result.message, result.message


def test_a_wrong_return_value_is_named():
    def returns_nothing_useful(student, teacher, optimizer, images, labels, temperature, alpha):
        topic.distillation_step(student, teacher, optimizer, images, labels, temperature, alpha)
        return 0.0

    result = exercises.run_checker("distillation_step", returns_nothing_useful)
    assert not result.passed and "returned loss" in result.message, result.message


def test_the_library_step_is_what_fit_does_on_one_batch():
    """One epoch of labkd.train.fit on a one-batch training set = library_step on that batch."""
    from labkd import build_model, data as datasets
    from labkd.train import TrainConfig, fit

    data = datasets.load_data("digits").subset(n_train=64, seed=0)
    teacher = build_model("mlp", data.input_shape, data.num_classes, seed=1, hidden=(32,))
    config = TrainConfig(epochs=1, batch_size=64, lr=0.5, momentum=0.0, schedule="constant", loss="distillation",
                         temperature=4.0, alpha=0.9, seed=0)
    by_fit = build_model("mlp", data.input_shape, data.num_classes, seed=2, hidden=(16,))
    by_hand = build_model("mlp", data.input_shape, data.num_classes, seed=2, hidden=(16,))
    fit(by_fit, data, config, teacher=teacher, progress=False, device="cpu")
    optimizer = torch.optim.SGD(by_hand.parameters(), lr=config.lr)
    by_hand.train()
    topic.library_step(by_hand, teacher, optimizer, data.train.x, data.train.y, config.temperature, config.alpha)
    for a, b in zip(by_fit.parameters(), by_hand.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
