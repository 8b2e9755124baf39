"""Semantics of the distillation losses, checked against straightforward references.

Many public KD implementations swap the KL arguments or drop the T² factor; these tests pin
down what the losses mean, not just what numbers they print today.
"""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from labkd import losses

TEMPERATURES = [0.5, 1.0, 2.0, 4.0, 20.0]


def logits(n: int = 16, c: int = 10, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(n, c, generator=torch.Generator().manual_seed(seed)) * scale


def reference_soft_target_loss(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """T² · mean over examples of sum_c p_teacher (log p_teacher - log p_student), written out."""
    total = torch.zeros((), dtype=torch.float64)
    for z, v in zip(student.double(), teacher.double()):
        p_t = torch.exp(v / t) / torch.exp(v / t).sum()
        p_s = torch.exp(z / t) / torch.exp(z / t).sum()
        total += (p_t * (p_t.log() - p_s.log())).sum()
    return t * t * total / len(student)


# --- soft-target loss ------------------------------------------------------------------------


@pytest.mark.parametrize("t", TEMPERATURES)
def test_soft_target_loss_matches_reference(t):
    s, v = logits(seed=1), logits(seed=2)
    assert losses.soft_target_loss(s, v, t).item() == pytest.approx(reference_soft_target_loss(s, v, t).item(), rel=1e-5)


@pytest.mark.parametrize("t", TEMPERATURES)
def test_soft_target_loss_is_zero_when_student_equals_teacher(t):
    v = logits(seed=3)
    assert losses.soft_target_loss(v.clone(), v, t).item() == pytest.approx(0.0, abs=1e-6)
    # adding a constant to every logit of a row does not change its softmax
    assert losses.soft_target_loss(v + 5.0, v, t).item() == pytest.approx(0.0, abs=1e-5)


def test_soft_target_loss_is_never_negative():
    for seed in range(50):
        s, v = logits(seed=seed), logits(seed=seed + 1000, scale=seed % 7)
        for t in TEMPERATURES:
            assert losses.soft_target_loss(s, v, t).item() >= -1e-7


def test_teacher_is_the_target():
    s, v = logits(seed=4), logits(seed=5, scale=6.0)
    forward = losses.soft_target_loss(s, v, 2.0).item()
    swapped = losses.soft_target_loss(v, s, 2.0).item()
    assert forward != pytest.approx(swapped, rel=1e-3)
    assert forward == pytest.approx(reference_soft_target_loss(s, v, 2.0).item(), rel=1e-5)


def test_batchmean_does_not_depend_on_batch_size():
    s, v = logits(n=8, seed=6), logits(n=8, seed=7)
    single = losses.soft_target_loss(s, v, 3.0).item()
    doubled = losses.soft_target_loss(torch.cat([s, s]), torch.cat([v, v]), 3.0).item()
    assert doubled == pytest.approx(single, rel=1e-6)


def test_gradient_reaches_the_student_only():
    s = logits(seed=8).requires_grad_()
    v = logits(seed=9).requires_grad_()
    losses.soft_target_loss(s, v.detach(), 4.0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    # the analytic gradient: T (p_s - p_t) / N
    p_s, p_t = F.softmax(s.detach() / 4.0, 1), F.softmax(v.detach() / 4.0, 1)
    assert torch.allclose(s.grad, 4.0 * (p_s - p_t) / len(s), atol=1e-6)


def grad_norm(t: float, scale_by_t2: bool = True) -> float:
    s = logits(n=64, seed=10).requires_grad_()
    v = logits(n=64, seed=11)
    losses.soft_target_loss(s, v, t, scale_by_t2=scale_by_t2).backward()
    return s.grad.norm().item()


def test_t_squared_keeps_gradient_magnitudes_comparable():
    scaled = {t: grad_norm(t) for t in (2.0, 4.0, 8.0, 20.0)}
    assert max(scaled.values()) / min(scaled.values()) < 2.0
    unscaled = {t: grad_norm(t, scale_by_t2=False) for t in (2.0, 20.0)}
    # without T², the gradient at T=20 is about (20/2)² = 100 times smaller than at T=2
    assert unscaled[20.0] / unscaled[2.0] < 0.05
    assert unscaled[20.0] == pytest.approx(scaled[20.0] / 400.0, rel=1e-4)


def test_high_temperature_limit_is_logit_matching():
    """Hinton et al. §2.1: for zero-mean logits and T ≫ |logits|, ∂L/∂z → (z − v)/C."""
    s0 = logits(seed=12, scale=2.0)
    v = logits(seed=13, scale=2.0)
    s0, v = s0 - s0.mean(1, keepdim=True), v - v.mean(1, keepdim=True)

    def grads(loss_fn):
        s = s0.clone().requires_grad_()
        loss_fn(s).backward()
        return s.grad

    matching = grads(lambda s: losses.logit_matching_loss(s, v))
    hot = grads(lambda s: losses.soft_target_loss(s, v, 1000.0))
    cold = grads(lambda s: losses.soft_target_loss(s, v, 1.0))
    assert torch.allclose(hot, matching, rtol=1e-2, atol=1e-5)
    assert (cold - matching).norm() / matching.norm() > 0.3
    relative_error = [((grads(lambda s, t=t: losses.soft_target_loss(s, v, t)) - matching).norm() / matching.norm()).item()
                      for t in (2.0, 10.0, 100.0)]
    assert relative_error[0] > relative_error[1] > relative_error[2]


# --- distillation loss -----------------------------------------------------------------------


def test_alpha_one_is_pure_soft_and_alpha_zero_is_pure_hard():
    s, v = logits(seed=14), logits(seed=15)
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(0))
    soft = losses.soft_target_loss(s, v, 4.0)
    hard = F.cross_entropy(s, y)
    assert losses.distillation_loss(s, v, y, 4.0, 1.0).item() == pytest.approx(soft.item(), rel=1e-6)
    assert losses.distillation_loss(s, v, y, 4.0, 0.0).item() == pytest.approx(hard.item(), rel=1e-6)
    mixed = losses.distillation_loss(s, v, y, 4.0, 0.3).item()
    assert mixed == pytest.approx(0.3 * soft.item() + 0.7 * hard.item(), rel=1e-6)


def test_alpha_zero_ignores_the_teacher():
    s = logits(seed=16).requires_grad_()
    y = torch.zeros(16, dtype=torch.long)
    a = losses.distillation_loss(s, logits(seed=17), y, 4.0, 0.0)
    b = losses.distillation_loss(s, logits(seed=18), y, 4.0, 0.0)
    assert a.item() == b.item()


# --- logit matching and hints ----------------------------------------------------------------


def test_logit_matching_loss():
    s, v = logits(seed=19), logits(seed=20)
    assert losses.logit_matching_loss(v, v).item() == 0.0
    expected = ((s - v) ** 2).sum() / (2 * 10 * len(s))
    assert losses.logit_matching_loss(s, v).item() == pytest.approx(expected.item(), rel=1e-6)
    # unlike soft targets, logit matching sees a constant shift of the logits
    assert losses.logit_matching_loss(v + 1.0, v).item() > 0


@pytest.mark.parametrize(
    "student_shape, teacher_shape",
    [((16, 14, 14), (64, 14, 14)), ((16, 28, 28), (64, 14, 14)), ((16, 7, 7), (64, 14, 14)), ((16, 7, 7), (1200,)),
     ((800,), (1200,))],
)
def test_hint_regressor_maps_student_features_to_teacher_shape(student_shape, teacher_shape):
    regressor = losses.make_hint_regressor(student_shape, teacher_shape)
    out = regressor(torch.randn(3, *student_shape))
    assert tuple(out.shape) == (3, *teacher_shape)
    assert sum(p.numel() for p in regressor.parameters()) > 0


def test_hint_loss_is_mse_and_checks_shapes():
    a, b = torch.randn(4, 8, 5, 5), torch.randn(4, 8, 5, 5)
    assert losses.hint_loss(a, a).item() == 0.0
    assert losses.hint_loss(a, b).item() == pytest.approx(((a - b) ** 2).mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        losses.hint_loss(a, b[:, :4])


def test_hint_regressor_rejects_impossible_shapes():
    with pytest.raises(ValueError, match="cannot regress"):
        losses.make_hint_regressor((1200,), (64, 14, 14))


# --- ensembles -------------------------------------------------------------------------------


def test_ensemble_arithmetic_and_geometric_means():
    teachers = [logits(seed=s) for s in (21, 22, 23)]
    arithmetic = losses.ensemble_probs(teachers, 2.0, "arithmetic")
    expected = sum(F.softmax(t / 2.0, 1) for t in teachers) / 3
    assert torch.allclose(arithmetic, expected, atol=1e-6)
    geometric = losses.ensemble_probs(teachers, 2.0, "geometric")
    unnormalised = torch.exp(sum(F.log_softmax(t / 2.0, 1) for t in teachers) / 3)
    assert torch.allclose(geometric, unnormalised / unnormalised.sum(1, keepdim=True), atol=1e-6)
    # the geometric mean of softmaxes is the softmax of the averaged logits
    assert torch.allclose(geometric, F.softmax(sum(teachers) / 3 / 2.0, 1), atol=1e-6)
    for probs in (arithmetic, geometric):
        assert torch.allclose(probs.sum(1), torch.ones(16), atol=1e-6)


def test_ensemble_of_one_is_that_teacher_and_logits_round_trip():
    v = logits(seed=24)
    for method in losses.ENSEMBLE_METHODS:
        assert torch.allclose(losses.ensemble_probs([v], 3.0, method), F.softmax(v / 3.0, 1), atol=1e-6)
    teachers = torch.stack([logits(seed=25), logits(seed=26)])
    z = losses.ensemble_logits(teachers, 4.0, "arithmetic")
    assert torch.allclose(F.softmax(z / 4.0, 1), losses.ensemble_probs(teachers, 4.0, "arithmetic"), atol=1e-5)
    # a student equal to the ensemble's logits has zero soft-target loss against it
    assert losses.soft_target_loss(z, z, 4.0).item() == pytest.approx(0.0, abs=1e-6)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0, -1.0, float("nan"), float("inf"), -float("inf")])
def test_bad_temperature(t):
    with pytest.raises(ValueError, match="temperature"):
        losses.soft_target_loss(logits(), logits(seed=1), t)


@pytest.mark.parametrize("t", ["4", None, True])
def test_temperature_of_wrong_type(t):
    with pytest.raises(TypeError, match="temperature"):
        losses.soft_target_loss(logits(), logits(seed=1), t)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        losses.distillation_loss(logits(), logits(seed=1), torch.zeros(16, dtype=torch.long), 4.0, alpha)


def test_mismatched_shapes_and_classes():
    with pytest.raises(ValueError, match="same shape"):
        losses.soft_target_loss(logits(n=16), logits(n=8), 2.0)
    with pytest.raises(ValueError, match="same shape"):
        losses.soft_target_loss(logits(c=10), logits(c=5), 2.0)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        losses.soft_target_loss(torch.randn(10), torch.randn(10), 2.0)
    with pytest.raises(TypeError, match="student_logits"):
        losses.soft_target_loss([[1.0, 2.0]], logits(n=1, c=2), 2.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits(bad):
    s = logits()
    s[3, 4] = bad
    with pytest.raises(ValueError, match="student_logits contains NaN or inf"):
        losses.soft_target_loss(s, logits(seed=1), 2.0)
    with pytest.raises(ValueError, match="teacher_logits contains NaN or inf"):
        losses.soft_target_loss(logits(seed=1), s, 2.0)


def test_bad_targets():
    s, v = logits(), logits(seed=1)
    with pytest.raises(ValueError, match="targets must be class ids in 0..9"):
        losses.distillation_loss(s, v, torch.full((16,), 10), 2.0, 0.5)
    with pytest.raises(ValueError, match="targets must have shape"):
        losses.distillation_loss(s, v, torch.zeros(8, dtype=torch.long), 2.0, 0.5)
    with pytest.raises(TypeError, match="targets must be an integer tensor"):
        losses.distillation_loss(s, v, torch.zeros(16), 2.0, 0.5)


def test_empty_or_unknown_ensemble():
    with pytest.raises(ValueError, match="at least one teacher"):
        losses.ensemble_probs([], 1.0)
    with pytest.raises(ValueError, match="at least one teacher"):
        losses.ensemble_probs(torch.empty(0, 4, 10), 1.0)
    with pytest.raises(ValueError, match="method"):
        losses.ensemble_probs([logits()], 1.0, "median")
    with pytest.raises(ValueError, match=r"teacher_logits\[1\]"):
        losses.ensemble_probs([logits(n=4), logits(n=5)], 1.0)
