"""labkd.online: the mutual-learning loss (semantics and bad inputs), fit_mutual (pairing with fit,
predictions, eval_every), cohorts against networks trained alone, born-again generations and
their ensembles, the claims and the selection on validation. Real (tiny) training on the 8x8 digits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from labkd import load_data
from labkd import online as on
from labkd.models import build_model
from labkd.stats import Claim
from labkd.train import TrainConfig, fit

CONFIG = TrainConfig(epochs=2, batch_size=32, lr=0.05)
KD = CONFIG.replace(loss="distillation", temperature=4.0, alpha=1.0, lr=0.02)


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
    ([_logits(0), torch.full((6, 4), float("nan"))], r"logits_list\[1\]"),
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


# -- training a cohort ------------------------------------------------------------------------


def test_fit_mutual_trains_every_model_and_is_seeded(data):
    def cohort():
        return [build_model("mlp", data.input_shape, 10, seed=s, hidden=(16, 16)) for s in (0, 1)]

    from labkd import clock

    before = clock.totals()["models_trained"]
    first = on.fit_mutual(cohort(), data, CONFIG, progress=False)
    assert clock.totals()["models_trained"] == before + 2, "a cohort's training counts in the notebook's clock"
    again = on.fit_mutual(cohort(), data, CONFIG, progress=False)
    assert [len(h) for h in first.histories] == [2, 2]
    assert first.histories[0][-1]["test_acc"] > 0.5 and first.histories[1][-1]["test_acc"] > 0.5
    assert [h[-1]["test_acc"] for h in first.histories] == [h[-1]["test_acc"] for h in again.histories]
    assert first.histories[0][-1]["loss"] != first.histories[1][-1]["loss"]
    # test predictions of every evaluated epoch, and the agreement they give
    assert sorted(first.predictions) == [1, 2] and first.predictions[2].shape == (2, len(data.test))
    p = first.predictions[2]
    assert first.histories[0][-1]["agreement"] == pytest.approx(float((p[0] == p[1]).float().mean()))


def test_student_zero_is_fed_like_the_network_trained_alone(data):
    """With the mutual term switched off (a cohort of identical twins has KL = 0 throughout),
    student 0 follows exactly the same trajectory as ``fit`` on the same seed: same initial
    weights, same batches, same optimiser — so cohort and network alone form a fair pair."""
    config = CONFIG.replace(seed=7)
    twins = [build_model("mlp", data.input_shape, 10, seed=7, hidden=(16,)) for _ in range(2)]
    on.fit_mutual(twins, data, config, progress=False)
    alone = build_model("mlp", data.input_shape, 10, seed=7, hidden=(16,))
    fit(alone, data, config, progress=False)
    for p, q in zip(twins[0].parameters(), alone.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    for p, q in zip(twins[0].parameters(), twins[1].parameters(), strict=True):
        assert torch.equal(p, q)


def test_eval_every_skips_evaluations_but_not_the_last(data):
    config = CONFIG.replace(epochs=5, eval_every=2)
    cohort = [build_model("mlp", data.input_shape, 10, seed=s, hidden=(8,)) for s in (0, 1)]
    result = on.fit_mutual(cohort, data, config, progress=False)
    evaluated = [r["epoch"] for r in result.histories[0] if not math.isnan(r["test_acc"])]
    assert evaluated == [2, 4, 5] and sorted(result.predictions) == [2, 4, 5]
    single = fit(build_model("mlp", data.input_shape, 10, seed=0, hidden=(8,)), data, config, progress=False)
    assert [r["epoch"] for r in single.history if not math.isnan(r["val_acc"])] == [2, 4, 5]
    with pytest.raises(ValueError, match="eval_every"):
        CONFIG.replace(eval_every=0)


def test_fit_mutual_runs_on_fits_loop_guard_and_max_norm(data):
    """The cohort trains in fit's loop: a student's exploding logits stop training with fit's
    divergence error, and max_norm bounds every student's units."""
    from labkd.train import TrainingDivergedError

    cohort = [build_model("mlp", data.input_shape, 10, seed=s, hidden=(8,)) for s in (0, 1)]
    with torch.no_grad():
        cohort[1].head.weight.mul_(1e38)  # logits overflow to inf on the first batch
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step 1 .*temperature=1"):
        on.fit_mutual(cohort, data, CONFIG, progress=False)
    cohort = [build_model("mlp", data.input_shape, 10, seed=s, hidden=(8,)) for s in (0, 1)]
    on.fit_mutual(cohort, data, CONFIG.replace(max_norm=0.5), progress=False)
    for m in cohort:
        for layer in m.modules():
            if isinstance(layer, torch.nn.Linear):
                assert float(layer.weight.detach().norm(dim=1).max()) <= 0.5 * (1 + 1e-5)


def test_a_cohort_entry_that_does_not_fit_is_retrained_from_fresh_weights(data, tmp_path, monkeypatch):
    """train_mutual goes through the shared cached-training step (experiments.cached)."""
    from labkd import cache
    from labkd.cache import CacheWarning

    monkeypatch.setenv("LABKD_CACHE", str(tmp_path / "cache"))
    first = on.train_mutual(data, (8,), CONFIG, [0, 1], progress=False)
    entry = cache.load(first.key)
    entry["state_dict"] = {k: v for k, v in entry["state_dict"].items() if k.startswith("0.")}  # student 1 lost
    cache.save(first.key, entry)
    with pytest.warns(CacheWarning, match="does not fit"):
        again = on.train_mutual(data, (8,), CONFIG, [0, 1], progress=False)
    assert not again.cached and again.key == first.key
    for a, b in zip(first.models, again.models, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert on.train_mutual(data, (8,), CONFIG, [0, 1], progress=False).cached


def test_fit_mutual_rejects_bad_arguments(data):
    m = build_model("mlp", data.input_shape, 10, seed=0, hidden=(8,))
    with pytest.raises(ValueError, match="at least 2"):
        on.fit_mutual([m], data, CONFIG)
    with pytest.raises(ValueError, match="twice"):
        on.fit_mutual([m, m], data, CONFIG)
    with pytest.raises(ValueError, match="temperature"):
        on.fit_mutual([m, build_model("mlp", data.input_shape, 10, seed=1, hidden=(8,))], data, CONFIG, temperature=0)
    with pytest.raises(TypeError, match="config"):
        on.fit_mutual([m, build_model("mlp", data.input_shape, 10, seed=1, hidden=(8,))], data, {"epochs": 1})


def test_cohort_against_networks_alone_pairs_by_seed_and_is_cached(data):
    rows = on.mutual_vs_independent(data, (16, 16), CONFIG, seeds=[3, 4], progress=False)
    assert len(rows) == 6 and {r["method"] for r in rows} == {on.MUTUAL, on.INDEPENDENT}
    assert all("(identical)" in line for line in on.same_start(rows))
    assert {r["init_seed"] for r in rows if r["method"] == on.MUTUAL and r["seed"] == 3} == set(on.peer_seeds(3))
    c = on.mutual_claim(rows)
    assert isinstance(c, Claim) and c.seeds == [3, 4] and not c.shown  # two seeds never count
    mutual = [r["test_acc"] for r in rows if r["method"] == on.MUTUAL and r["model"] == 0]
    alone = [r["test_acc"] for r in rows if r["method"] == on.INDEPENDENT]
    assert c.delta == pytest.approx(sum(mutual) / 2 - sum(alone) / 2)
    cohort = on.train_mutual(data, (16, 16), CONFIG.replace(seed=3), on.peer_seeds(3), progress=False)
    assert cohort.cached and cohort.final(0) == mutual[0] and sorted(cohort.predictions) == [1, 2]


@pytest.mark.parametrize("n_models", [1, 0, True, 2.0])
def test_a_cohort_of_one_is_refused_naming_n_models(data, n_models):
    with pytest.raises(ValueError, match="n_models"):
        on.mutual_vs_independent(data, (16, 16), CONFIG, seeds=[0], n_models=n_models)
    with pytest.raises(ValueError, match="n_models"):
        on.peer_seeds(0, n_models)


def test_mutual_vs_independent_rejects_other_bad_arguments(data):
    with pytest.raises(ValueError, match="loss='cross_entropy'"):
        on.mutual_vs_independent(data, (16, 16), KD, seeds=[0])
    with pytest.raises(ValueError, match="seeds"):
        on.mutual_vs_independent(data, (16, 16), CONFIG, seeds=[])
    with pytest.raises(ValueError, match="seeds"):
        on.train_mutual(data, (16, 16), CONFIG, seeds=[0])
    with pytest.raises(ValueError, match="rows"):
        on.mutual_claim([])


# -- born-again networks ------------------------------------------------------------------


def test_born_again_generations(data):
    ban = on.born_again(data, (16, 16), CONFIG, KD, generations=2, seeds=[0, 1], progress=False)
    assert ban.generations == 2 and ban.seeds == [0, 1]
    assert [r["generation"] for r in ban.rows if r["seed"] == 0] == [0, 1, 2]
    assert ban.rows[0]["agreement_prev"] is None and 0 < ban.rows[1]["agreement_prev"] <= 1
    assert all("fresh initial weights" in line for line in on.generation_starts(ban))
    assert ban.trained[0][2].model.spec["seed"] == on.generation_seed(0, 2) != 0
    # generation 0 is the network trained alone with the same recipe and seed: one cached run
    alone = on.mutual_vs_independent(data, (16, 16), CONFIG, seeds=[0], progress=False)
    assert next(r["test_acc"] for r in alone if r["method"] == on.INDEPENDENT) == ban.accuracy(0)[0]
    same = on.born_again(data, (16, 16), CONFIG, KD, generations=1, seeds=[0], fresh_init=False, progress=False)
    assert same.trained[0][0].cached
    assert all("the same initial weights" in line for line in on.generation_starts(same))
    assert ban.test_logits[0].shape == (3, len(data.test), 10)
    # an ensemble of one generation is that generation
    ens = on.generation_ensembles(ban)
    assert ens[0]["test_acc"] == pytest.approx(ban.rows[1]["test_acc"], abs=1e-6)
    c = on.born_again_claim(ban)
    assert c.seeds == [0, 1] and c.delta == pytest.approx(
        sum(ban.accuracy(1)) / 2 - sum(ban.accuracy(0)) / 2) and not c.shown
    e = on.ensemble_claim(ban)
    assert e.treatment_mean == pytest.approx(sum(
        on.ensemble_accuracy(ban.test_logits[s], ban.test_targets, 2, first=0) for s in ban.seeds) / 2)
    table = on.generation_table(ban)
    assert [r["generation"] for r in table] == [0, 1, 2] and table[0]["ensemble 0..g (test)"] == ""
    with pytest.raises(ValueError, match="generation"):
        on.born_again_claim(ban, generation=3)


@pytest.mark.parametrize("generations", [0, -1, True, 1.5])
def test_zero_generations_are_refused_naming_generations(data, generations):
    with pytest.raises(ValueError, match="generations"):
        on.born_again(data, (16, 16), CONFIG, KD, generations=generations)


def test_born_again_needs_a_distillation_recipe(data):
    with pytest.raises(ValueError, match="kd_config"):
        on.born_again(data, (16, 16), CONFIG, CONFIG)
    with pytest.raises(ValueError, match="config must use loss='cross_entropy'"):
        on.born_again(data, (16, 16), KD, KD)


def test_ensemble_accuracy_checks_its_range():
    logits = torch.randn(3, 5, 4)
    y = torch.zeros(5, dtype=torch.long)
    assert 0 <= on.ensemble_accuracy(logits, y, 2) <= 1
    with pytest.raises(ValueError, match="upto"):
        on.ensemble_accuracy(logits, y, 3)
    with pytest.raises(ValueError, match="shape"):
        on.ensemble_accuracy(logits[0], y, 0)
    with pytest.raises(ValueError, match="members"):
        on.ensemble_accuracy(logits, y, 0, members=[0, 0])
    assert math.isclose(on.ensemble_accuracy(logits, y, 1, first=1),
                        float((logits[1].argmax(1) == y).float().mean()))
    assert on.ensemble_accuracy(logits, y, 0, members=[0, 2]) == on.ensemble_accuracy(logits[[0, 2]], y, 1, first=0)


# -- choosing the regime on validation -----------------------------------------------------


def test_select_regime_reads_validation_only_and_picks_the_best(data):
    grid = {"ban T=2": KD.replace(temperature=2.0), "ban T=4": KD}
    sel = on.select_regime(data, (16, 16), CONFIG, {"dml T=1": 1.0, "dml T=2": 2.0}, grid, seeds=[0, 1], progress=False)
    assert {r["arm"] for r in sel.rows} == {"alone", "dml T=1", "dml T=2", "ban T=2", "ban T=4"}
    assert all(len([r for r in sel.rows if r["arm"] == a]) == 2 for a in {r["arm"] for r in sel.rows})
    gains = sel.gains()
    best = sel.best("born_again")
    assert best in grid and sum(gains[best]) >= max(sum(gains[k]) for k in grid) - 1e-12
    assert sel.best("mutual") in ("dml T=1", "dml T=2")
    assert [r["arm"] for r in sel.table()][0] == "alone"
    with pytest.raises(ValueError, match="kind"):
        sel.best("teacher")
    with pytest.raises(ValueError, match="born_again_grid"):
        on.select_regime(data, (16, 16), CONFIG, {"a": 1.0}, {"bad": CONFIG}, seeds=[0])
    with pytest.raises(ValueError, match="mutual_grid"):
        on.select_regime(data, (16, 16), CONFIG, {"a": 0.0}, grid, seeds=[0])


def test_recipes_are_data_and_fast_mode_is_short():
    fast, full = on.RECIPES.all(True), on.RECIPES.all(False)
    assert set(fast) == set(full) == {"alone", *on.BORN_AGAIN_GRID}
    assert full["alone"].loss == "cross_entropy" and full["alone"].jitter == 0
    assert all(c.epochs == on.FAST_EPOCHS for c in fast.values()) and full["alone"].epochs > on.FAST_EPOCHS
    assert all(c.loss == "distillation" for k, c in full.items() if k != "alone")
    # every recipe shares the network-alone schedule: only the loss differs
    assert all(c.replace(loss="cross_entropy", temperature=4.0, alpha=0.9) == full["alone"] for c in full.values())
    assert on.claim_seeds(0) == [100, 101, 102, 103, 104] and not set(on.claim_seeds(0)) & set(on.DEV_SEEDS)


def test_lesson_data_cuts_the_training_set_only():
    digits = load_data("digits", val_size=200)
    small = on.lesson_data(digits, fast=False, n_train=300)
    assert len(small.train) == 300 and len(small.test) == len(digits.test)
    assert on.lesson_data(digits, fast=True) is digits
    with pytest.raises(ValueError, match="n_train"):
        on.lesson_data(digits, fast=False, n_train=0)


def test_findings_carry_the_verdicts():
    from labkd import stats

    a = stats.claim("(10a) x", [0.92, 0.93, 0.91, 0.92, 0.93], [0.90, 0.91, 0.90, 0.91, 0.90], [100, 101, 102, 103, 104])
    b = stats.claim("(10b) y", [0.90, 0.91, 0.90, 0.91, 0.90], [0.90, 0.91, 0.90, 0.91, 0.905], [100, 101, 102, 103, 104])
    rows = on.findings(a, b)
    assert [r["claim"] for r in rows] == ["(10a) x", "(10b) y"]
    assert "SHOWN" in rows[0]["this run"] and "NOT SHOWN" in rows[1]["this run"]


def test_reading_follows_the_verdicts_and_the_selection():
    from labkd import stats

    seeds = [100, 101, 102, 103, 104]
    up = stats.claim("(10a) x", [0.92, 0.93, 0.91, 0.92, 0.93], [0.90, 0.91, 0.90, 0.91, 0.90], seeds)
    flat = stats.claim("(10b) y", [0.90, 0.91, 0.90, 0.91, 0.90], [0.90, 0.91, 0.90, 0.91, 0.905], seeds)
    text = on.reading(up, flat, up)
    assert "Mutual learning reproduced" in text and "did not beat generation 0" in text
    sel = on.Selection([{"arm": "alone", "kind": "alone", "seed": s, "val_acc": 0.90} for s in (0, 1, 2)]
                       + [{"arm": "m", "kind": "mutual", "seed": s, "val_acc": 0.91 + s / 1000} for s in (0, 1, 2)]
                       + [{"arm": "b", "kind": "born_again", "seed": s, "val_acc": 0.90 + (s - 1) / 500} for s in (0, 1, 2)],
                       [0, 1, 2])
    text = on.reading(flat, up, up, selection=sel)
    assert "Mutual learning did not reproduce" in text and "Born-again generation 1 beat" in text
    assert "m was kept." in text and "b was kept, a choice within the noise" in text
