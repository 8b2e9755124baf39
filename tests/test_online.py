"""labkd.online: the mutual-learning loss (semantics and bad inputs), fit_mutual, cohorts against
independent students, born-again generations. Real (tiny) training on the 8x8 digits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from labkd import load_data
from labkd import online as on
from labkd.models import build_model
from labkd.train import TrainConfig

CONFIG = TrainConfig(epochs=2, batch_size=32, lr=0.05)


@pytest.fixture(scope="module")
def data():
    return load_data("digits", val_size=200)


def _logits(seed: int, n: int = 6, c: int = 4, requires_grad: bool = False) -> torch.Tensor:
    z = torch.randn(n, c, generator=torch.Generator().manual_seed(seed))
    return z.requires_grad_(requires_grad)


TARGETS = torch.tensor([0, 1, 2, 3, 0, 1])


# -- the loss -----------------------------------------------------------------------------


def test_kl_part_is_zero_when_all_students_agree():
    z = _logits(0)
    losses = on.mutual_learning_loss([z, z.clone(), z.clone()], TARGETS)
    ce = F.cross_entropy(z, TARGETS)
    assert len(losses) == 3
    for loss in losses:
        assert loss.item() == pytest.approx(ce.item(), abs=1e-6)


def test_kl_part_is_positive_and_matches_the_formula():
    a, b, c = _logits(0), _logits(1), _logits(2)
    losses = on.mutual_learning_loss([a, b, c], TARGETS)
    for k, (z, others) in enumerate(((a, (b, c)), (b, (a, c)), (c, (a, b)))):
        kl = sum(F.kl_div(F.log_softmax(z, 1), F.softmax(o, 1), reduction="batchmean") for o in others) / 2
        assert kl > 0
        assert losses[k].item() == pytest.approx((F.cross_entropy(z, TARGETS) + kl).item(), rel=1e-5)
        assert losses[k].item() >= F.cross_entropy(z, TARGETS).item()


def test_the_other_students_are_detached_targets():
    a, b = _logits(0, requires_grad=True), _logits(1, requires_grad=True)
    loss_a, loss_b = on.mutual_learning_loss([a, b], TARGETS)
    loss_a.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert b.grad is None, "student 0's loss must not send gradients into student 1"
    # summing both losses gives each student exactly the gradient of its own loss
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    sum(on.mutual_learning_loss([a2, b2], TARGETS)).backward()
    assert torch.allclose(a2.grad, a.grad, atol=1e-7)


def test_temperature_scales_by_t_squared():
    a, b = _logits(0), _logits(1)
    t = 3.0
    (loss,) = on.mutual_learning_loss([a, b], TARGETS, temperature=t)[:1]
    kl_t = F.kl_div(F.log_softmax(a / t, 1), F.softmax(b / t, 1), reduction="batchmean")
    assert loss.item() == pytest.approx((F.cross_entropy(a, TARGETS) + t * t * kl_t).item(), rel=1e-5)


@pytest.mark.parametrize("bad, match", [
    ([_logits(0)], "at least 2"),
    ([_logits(0), _logits(1, n=5)], r"logits_list\[1\]"),
    ([_logits(0), _logits(1, c=3)], r"logits_list\[1\]"),
    ([_logits(0), torch.full((6, 4), float("nan"))], r"logits_list\[1\].*NaN"),
])
def test_bad_logits_raise_value_errors_naming_the_argument(bad, match):
    with pytest.raises(ValueError, match=match):
        on.mutual_learning_loss(bad, TARGETS)


def test_other_bad_inputs():
    a, b = _logits(0), _logits(1)
    with pytest.raises(TypeError, match="logits_list"):
        on.mutual_learning_loss(torch.stack([a, b]), TARGETS)
    for t in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            on.mutual_learning_loss([a, b], TARGETS, temperature=t)
    with pytest.raises(ValueError, match="targets"):
        on.mutual_learning_loss([a, b], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="targets"):
        on.mutual_learning_loss([a, b], torch.tensor([0, 1, 2, 3, 4, 9]))


# -- training ------------------------------------------------------------------------------


def test_fit_mutual_trains_every_model_and_is_seeded(data):
    def cohort():
        return [build_model("mlp", data.input_shape, 10, seed=s, hidden=(16, 16)) for s in (0, 1)]

    first = on.fit_mutual(cohort(), data, CONFIG, progress=False)
    again = on.fit_mutual(cohort(), data, CONFIG, progress=False)
    assert [len(h) for h in first.histories] == [2, 2]
    assert first.histories[0][-1]["test_acc"] > 0.5 and first.histories[1][-1]["test_acc"] > 0.5
    assert [h[-1]["test_acc"] for h in first.histories] == [h[-1]["test_acc"] for h in again.histories]
    assert first.histories[0][-1]["test_acc"] != first.histories[1][-1]["test_acc"] or \
        first.histories[0][-1]["loss"] != first.histories[1][-1]["loss"]


def test_identical_students_stay_identical(data):
    """The loss is symmetric and every student sees the same batches: two copies of one network
    receive the same updates, so a cohort of twins never drifts apart."""
    twins = [build_model("mlp", data.input_shape, 10, seed=3, hidden=(16,)) for _ in range(2)]
    result = on.fit_mutual(twins, data, CONFIG.replace(epochs=1), progress=False)
    for p, q in zip(twins[0].parameters(), twins[1].parameters(), strict=True):
        assert torch.equal(p, q)
    assert result.histories[0][-1]["loss"] == result.histories[1][-1]["loss"]
    fresh = build_model("mlp", data.input_shape, 10, seed=3, hidden=(16,))
    assert not torch.equal(next(fresh.parameters()), next(twins[0].parameters())), "training changed the weights"


def test_fit_mutual_rejects_bad_arguments(data):
    m = build_model("mlp", data.input_shape, 10, seed=0, hidden=(8,))
    with pytest.raises(ValueError, match="at least 2"):
        on.fit_mutual([m], data, CONFIG)
    with pytest.raises(ValueError, match="twice"):
        on.fit_mutual([m, m], data, CONFIG)
    with pytest.raises(ValueError, match="temperature"):
        on.fit_mutual([m, build_model("mlp", data.input_shape, 10, seed=1, hidden=(8,))], data, CONFIG, temperature=0)


def test_mutual_cohort_against_independent_students_is_cached(data):
    rows = on.mutual_vs_independent(data, (16, 16), CONFIG, n_models=2, repeats=1, progress=False)
    assert len(rows) == 4 and {r["method"] for r in rows} == {on.MUTUAL, on.INDEPENDENT}
    assert all("identical" in line for line in on.same_start(rows))
    summary = on.mutual_summary(rows)
    assert summary["n"] == 2 and isinstance(summary["verdict"], str)
    assert 0 < summary["mutual_agreement"] <= 1 and 0 < summary["independent_agreement"] <= 1
    cohort = on.train_mutual(data, (16, 16), CONFIG.replace(seed=0), [0, 1], progress=False)
    assert cohort.cached and cohort.final(0) == next(r["test_acc"] for r in rows if r["method"] == on.MUTUAL and r["model"] == 0)
    with pytest.raises(ValueError, match="n_models"):
        on.mutual_vs_independent(data, (16, 16), CONFIG, n_models=1)
    with pytest.raises(ValueError, match="loss='cross_entropy'"):
        on.mutual_vs_independent(data, (16, 16), CONFIG.replace(loss="distillation"))


def test_born_again_generations(data):
    kd = CONFIG.replace(loss="distillation", lr=0.02)
    ban = on.born_again(data, (16, 16), CONFIG, kd, generations=2, seeds=[0], progress=False)
    assert ban.generations == 2 and ban.seeds == [0]
    assert [r["generation"] for r in ban.rows] == [0, 1, 2]
    assert ban.rows[0]["agreement_prev"] is None and 0 < ban.rows[1]["agreement_prev"] <= 1
    assert all("fresh initial weights" in line for line in on.generation_starts(ban))
    assert len({r["init_norm"] for r in ban.rows}) == 3
    assert ban.trained[0][1].key != ban.trained[0][2].key
    assert ban.trained[0][2].model.spec["seed"] == on.generation_seed(0, 2) != 0
    same = on.born_again(data, (16, 16), CONFIG, kd, generations=1, seeds=[0], fresh_init=False, progress=False)
    assert same.trained[0][0].cached, "generation 0 is shared with the chain above"
    assert all("the same initial weights" in line for line in on.generation_starts(same))
    assert ban.test_logits[0].shape == (3, len(data.test), 10)
    ens = on.generation_ensembles(ban)
    # an ensemble of one generation is that generation
    assert ens[0]["test_acc"] == pytest.approx(ban.rows[1]["test_acc"], abs=1e-6)
    assert len(on.born_again_verdicts(ban)) == 2
    with pytest.raises(ValueError, match="generations"):
        on.born_again(data, (16, 16), CONFIG, kd, generations=0)
    with pytest.raises(ValueError, match="kd_config"):
        on.born_again(data, (16, 16), CONFIG, CONFIG)


def test_ensemble_accuracy_checks_its_range():
    logits = torch.randn(3, 5, 4)
    y = torch.zeros(5, dtype=torch.long)
    assert 0 <= on.ensemble_accuracy(logits, y, 2) <= 1
    with pytest.raises(ValueError, match="upto"):
        on.ensemble_accuracy(logits, y, 3)
    with pytest.raises(ValueError, match="shape"):
        on.ensemble_accuracy(logits[0], y, 0)
    assert math.isclose(on.ensemble_accuracy(logits, y, 1, first=1),
                        float((logits[1].argmax(1) == y).float().mean()))


def test_lesson_config_is_one_recipe_with_augmentation():
    fast, full = on.lesson_config(True), on.lesson_config(False)
    assert fast.jitter == full.jitter == 2 and fast.lr == full.lr == 0.02
    assert fast.loss == "cross_entropy" and fast.epochs < full.epochs


def test_findings_follow_the_numbers():
    from labkd.widgets.online import _synthetic_ban, _synthetic_rows

    rows = _synthetic_rows(n_models=2, repeats=3)
    rows = [dict(r, test_acc=r["test_acc"] + (0.01 if r["method"] == on.MUTUAL else 0) + r["seed"] / 1e4) for r in rows]
    ban = _synthetic_ban(generations=2, seeds=2, n=300)
    mutual, born = on.findings(rows, ban)
    assert "beyond the seed spread" in mutual["this run"] and "+1.00 points" in mutual["this run"]
    assert "generation 0 (labels)" in born["this run"] and "generations 1..2" in born["this run"]
    one = [r for r in rows if r["repeat"] == 0]
    assert "no claim" in on.findings(one, ban)[0]["this run"]
