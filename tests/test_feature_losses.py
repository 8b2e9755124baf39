"""Semantics of the feature- and relation-based losses, against straightforward references.

Attention transfer compares *where* two networks are active; RKD compares how they arrange a
batch of examples. These tests pin down the properties that make each one what it is.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from labkd import feature_losses as fl


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- straightforward references, written out with loops ----------------------------------------


def reference_attention_loss(s: torch.Tensor, t: torch.Tensor) -> float:
    total = 0.0
    for a_s, a_t in zip(s.double(), t.double()):
        q_s = (a_s ** 2).sum(0).flatten()
        q_t = (a_t ** 2).sum(0).flatten()
        q_s, q_t = q_s / q_s.norm(), q_t / q_t.norm()
        total += float(((q_s - q_t) ** 2).sum())
    return total / len(s)


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def reference_rkd_distance(s: torch.Tensor, t: torch.Tensor) -> float:
    n = len(s)

    def psi(e):
        d = [[float((e[i] - e[j]).double().norm()) for j in range(n)] for i in range(n)]
        mu = sum(d[i][j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        return [[v / mu for v in row] for row in d]

    ps, pt = psi(s), psi(t)
    return sum(huber(ps[i][j] - pt[i][j]) for i in range(n) for j in range(n)) / (n * n)


def reference_rkd_angle(s: torch.Tensor, t: torch.Tensor) -> float:
    n = len(s)

    def cos(e, i, j, k):
        if i == j or k == j:
            return 0.0
        a, b = (e[i] - e[j]).double(), (e[k] - e[j]).double()
        return float(a @ b / (a.norm() * b.norm()))

    return sum(huber(cos(s, i, j, k) - cos(t, i, j, k)) for i, j, k in itertools.product(range(n), repeat=3)) / n ** 3


# --- attention transfer -------------------------------------------------------------------------


def test_attention_loss_matches_reference():
    s, t = randn(5, 3, 4, 4, seed=1), randn(5, 7, 4, 4, seed=2)
    assert fl.attention_transfer_loss(s, t).item() == pytest.approx(reference_attention_loss(s, t), rel=1e-5)


def test_attention_map_is_unit_length_and_channel_count_free():
    f = randn(4, 6, 5, 5, seed=3)
    q = fl.attention_map(f)
    assert q.shape == (4, 25)
    assert torch.allclose(q.norm(dim=1), torch.ones(4))
    # duplicating every channel doubles F(A) but leaves the normalised map unchanged
    assert torch.allclose(fl.attention_map(torch.cat([f, f], dim=1)), q, atol=1e-6)


def test_attention_loss_is_zero_when_normalised_maps_are_equal():
    t = randn(3, 8, 7, 7, seed=4)
    # a student with a different number of channels but the same spatial energy pattern
    s = torch.cat([t, t], dim=1) * 0.3
    assert fl.attention_transfer_loss(s, t).item() == pytest.approx(0.0, abs=1e-6)


def test_attention_loss_is_invariant_to_positive_scaling():
    s, t = randn(4, 3, 6, 6, seed=5), randn(4, 5, 6, 6, seed=6)
    base = fl.attention_transfer_loss(s, t).item()
    for k_s, k_t in [(10.0, 1.0), (1.0, 0.01), (3.0, 7.0)]:
        assert fl.attention_transfer_loss(k_s * s, k_t * t).item() == pytest.approx(base, rel=1e-5)
    assert base > 0.01  # different maps: the test would catch a loss that is always zero


def test_attention_loss_is_non_negative_and_at_most_two():
    for seed in range(30):
        s, t = randn(2, 3, 4, 4, seed=seed).relu(), randn(2, 4, 4, 4, seed=seed + 100)
        value = fl.attention_transfer_loss(s, t).item()
        assert -1e-7 <= value <= 2 + 1e-6


def test_attention_loss_does_not_send_gradient_to_the_teacher():
    s = randn(2, 3, 4, 4, seed=7).requires_grad_()
    t = randn(2, 5, 4, 4, seed=8).requires_grad_()
    fl.attention_transfer_loss(s, t).backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_attention_loss_bad_inputs_name_the_argument():
    good = randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="teacher_features"):
        fl.attention_transfer_loss(good, randn(2, 3, 5, 5))  # map size mismatch
    with pytest.raises(ValueError, match="student_features"):
        fl.attention_transfer_loss(randn(2, 48), good)  # wrong ndim
    bad = good.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="teacher_features contains NaN"):
        fl.attention_transfer_loss(good, bad)
    with pytest.raises(ValueError, match="teacher_features"):
        fl.attention_transfer_loss(good, randn(3, 3, 4, 4))  # batch mismatch
    with pytest.raises(TypeError, match="student_features"):
        fl.attention_transfer_loss(good.long(), good)
    with pytest.raises(ValueError, match="p must"):
        fl.attention_map(good, p=0)


# --- RKD -------------------------------------------------------------------------------------


def test_normalized_distances_have_mean_one_off_the_diagonal():
    e = randn(6, 4, seed=9)
    d = fl.normalized_distances(e)
    off = d[~torch.eye(6, dtype=torch.bool)]
    assert off.mean().item() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(d, d.T) and torch.all(d.diagonal() == 0)
    assert torch.allclose(fl.pairwise_distances(e), torch.cdist(e, e), atol=1e-5)


def test_rkd_distance_matches_reference():
    s, t = randn(6, 4, seed=10), randn(6, 9, seed=11) * 3
    assert fl.rkd_distance_loss(s, t).item() == pytest.approx(reference_rkd_distance(s, t), rel=1e-5)


def test_rkd_distance_is_zero_for_the_same_embeddings_and_invariant_to_scaling():
    t = randn(8, 5, seed=12)
    assert fl.rkd_distance_loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-7)
    assert fl.rkd_distance_loss(10.0 * t + 3.0, t).item() == pytest.approx(0.0, abs=1e-7)
    s = randn(8, 3, seed=13)
    base = fl.rkd_distance_loss(s, t).item()
    assert base > 1e-3
    assert fl.rkd_distance_loss(0.01 * s, 50.0 * t).item() == pytest.approx(base, rel=1e-4)


def test_rkd_distance_is_invariant_to_rotation():
    t, s = randn(7, 4, seed=14), randn(7, 4, seed=15)
    q, _ = torch.linalg.qr(randn(4, 4, seed=16))
    assert fl.rkd_distance_loss(s @ q, t).item() == pytest.approx(fl.rkd_distance_loss(s, t).item(), rel=1e-4)


def test_rkd_angle_matches_reference():
    s, t = randn(5, 3, seed=17), randn(5, 6, seed=18)
    assert fl.rkd_angle_loss(s, t).item() == pytest.approx(reference_rkd_angle(s, t), rel=1e-5, abs=1e-7)


def test_rkd_angle_is_invariant_to_translation_and_scaling():
    s, t = randn(6, 4, seed=19), randn(6, 5, seed=20)
    base = fl.rkd_angle_loss(s, t).item()
    assert base > 1e-3
    assert fl.rkd_angle_loss(4.0 * s - 2.0, t + 7.0).item() == pytest.approx(base, rel=1e-4)
    assert fl.rkd_angle_loss(0.5 * t + 1.0, t).item() == pytest.approx(0.0, abs=1e-7)


def test_rkd_combined_is_distance_plus_twice_angle():
    s, t = randn(6, 4, seed=21), randn(6, 5, seed=22)
    expected = fl.rkd_distance_loss(s, t) + 2 * fl.rkd_angle_loss(s, t)
    assert fl.rkd_loss(s, t).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("name", ["rkd_distance", "rkd_angle", "rkd"])
def test_relation_losses_do_not_send_gradient_to_the_teacher(name):
    s, t = randn(5, 3, seed=23).requires_grad_(), randn(5, 4, seed=24).requires_grad_()
    fl.FEATURE_LOSSES[name](s, t).backward()
    assert t.grad is None
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_relation_losses_have_finite_gradients_with_duplicate_examples():
    s = torch.cat([randn(1, 3, seed=25)] * 2 + [randn(2, 3, seed=26)]).requires_grad_()
    fl.rkd_loss(s, randn(4, 5, seed=27)).backward()
    assert torch.isfinite(s.grad).all()


@pytest.mark.parametrize("fn", [fl.rkd_distance_loss, fl.rkd_angle_loss])
def test_relation_losses_bad_inputs_name_the_argument(fn):
    good = randn(4, 3)
    with pytest.raises(ValueError, match="student_embeddings.*at least 2"):
        fn(randn(1, 3), randn(1, 3))  # a batch of one has no relations
    with pytest.raises(ValueError, match="teacher_embeddings"):
        fn(good, randn(5, 3))
    with pytest.raises(ValueError, match="student_embeddings"):
        fn(randn(4, 3, 2, 2), good)  # conv maps: pool them first (embed)
    bad = good.clone()
    bad[1, 1] = float("inf")
    with pytest.raises(ValueError, match="teacher_embeddings contains NaN or inf"):
        fn(good, bad)
    with pytest.raises(TypeError, match="teacher_embeddings"):
        fn(good, good.numpy())


# --- registry -------------------------------------------------------------------------------


def test_registry_pools_maps_for_relation_losses():
    s, t = randn(4, 3, 5, 5, seed=28), randn(4, 6, 5, 5, seed=29)
    pooled = fl.rkd_loss(s.mean((2, 3)), t.mean((2, 3)))
    assert fl.FEATURE_LOSSES["rkd"](s, t).item() == pytest.approx(pooled.item())
    assert fl.FEATURE_LOSSES["attention"](s, t).item() == pytest.approx(fl.attention_transfer_loss(s, t).item())


def test_registry_entries_are_documented_and_unknown_names_rejected():
    for name, entry in fl.FEATURE_LOSSES.items():
        assert entry.name == name and entry.family in ("feature", "relation")
        assert entry.url.startswith("https://arxiv.org/abs/") and entry.weight > 0
        assert entry.fn.__doc__ and "Park" in entry.fn.__doc__ + entry.paper or "Zagoruyko" in entry.paper
    with pytest.raises(ValueError, match="feature_loss='fitnet'"):
        fl.get("fitnet")


def test_check_shapes_before_training():
    fl.get("attention").check_shapes((32, 7, 7), (128, 7, 7))
    with pytest.raises(ValueError, match="guided_layer"):
        fl.get("attention").check_shapes((32, 14, 14), (128, 7, 7))
    fl.get("rkd").check_shapes((32, 7, 7), (100,))
    with pytest.raises(ValueError, match="embeddings"):
        fl.get("rkd").check_shapes((3, 4), (100,))


def test_huber_reference_agrees_with_torch():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5])
    expected = F.smooth_l1_loss(x, torch.zeros_like(x), reduction="none")
    assert [huber(float(v)) for v in x] == pytest.approx(expected.tolist())
    assert math.isclose(huber(1.0), 0.5)
