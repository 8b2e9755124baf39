"""labkd.ensembles: members, combined targets, seed groups, claims and tables, on the 8x8 digits."""

from __future__ import annotations

import math

import pytest
import torch

from labkd import ensembles as en
from labkd import ensembles_figures
from labkd import load_data, stats
from labkd.losses import ensemble_probs
from labkd.train import TrainConfig

HIDDEN = (16, 16)


@pytest.fixture(scope="module")
def data():
    return load_data("digits")


@pytest.fixture(scope="module")
def ensemble(data):
    recipe = en.RECIPES("member", fast=True).replace(batch_size=32, epochs=5, lr=0.05)
    return en.train_ensemble(data, [0, 1, 2], recipe, hidden=HIDDEN, progress=False)


@pytest.fixture(scope="module")
def groups(data):
    """Two seed groups of 3 members, each with a labels-only and two distilled students (fast recipes)."""
    return en.run_groups(data, [0, 1], members=3, temperatures=[2.0, 4.0], fast=True, hidden=HIDDEN, progress=False)


def test_an_ensemble_of_one_or_none_is_a_clear_error(data):
    with pytest.raises(ValueError, match="size 0"):
        en.train_ensemble(data, [], en.RECIPES("member", fast=True))
    with pytest.raises(ValueError, match="seeds.*ensemble of one"):
        en.train_ensemble(data, [3], en.RECIPES("member", fast=True))
    for bad in (1, 0, True, 2.5, en.MAX_MEMBERS + 1):
        with pytest.raises(ValueError, match="members"):
            en.run_group(data, 0, members=bad, fast=True)
    with pytest.raises(ValueError, match="members"):
        en.run_groups(data, [0], members=1, fast=True)
    with pytest.raises(ValueError, match="empty"):
        ensemble_probs([])


def test_bad_arguments_fail_before_training(data, ensemble):
    with pytest.raises(ValueError, match="loss='cross_entropy'"):
        en.train_ensemble(data, [0, 1], en.RECIPES("distilled", fast=True))
    with pytest.raises(TypeError, match="config must be a labkd.TrainConfig"):
        en.train_ensemble(data, [0, 1], {"lr": 0.1})
    with pytest.raises(ValueError, match="method='median'"):
        ensemble.targets("median")
    with pytest.raises(ValueError, match="size must be"):
        ensemble.test_probs("arithmetic", size=0)
    with pytest.raises(ValueError, match="loss='distillation'"):
        en.distil_ensemble(data, ensemble, en.RECIPES("member", fast=True), seeds=[0])
    with pytest.raises(ValueError, match="spec differs"):
        en.distil_ensemble(data.subset(n_train=100), ensemble, en.RECIPES("distilled", fast=True), seeds=[0])
    with pytest.raises(ValueError, match="group must be"):
        en.group_seeds(-1)
    with pytest.raises(ValueError, match="temperatures is empty"):
        en.run_group(data, 0, temperatures=[], fast=True)
    with pytest.raises(ValueError, match="temperature"):
        en.run_group(data, 0, temperatures=[0.0], fast=True)
    with pytest.raises(ValueError, match="methods is empty"):
        en.run_group(data, 0, methods=[], fast=True)
    with pytest.raises(ValueError, match="name='teacher'"):
        en.RECIPES("teacher", fast=True)
    with pytest.raises(ValueError, match="n_train"):
        en.ensemble_data(data, n_train=0)


def test_recipes_differ_only_where_they_should():
    member, student = en.RECIPES("member", False), en.RECIPES("student", False)
    kd = en.RECIPES("distilled", False, temperature=3.0, alpha=0.5)
    assert isinstance(kd, TrainConfig) and kd.loss == "distillation" and kd.temperature == 3.0 and kd.alpha == 0.5
    assert kd.scale_by_t2 == en.KD["scale_by_t2"]
    same = dict(loss="cross_entropy", temperature=student.temperature, alpha=student.alpha,
                scale_by_t2=student.scale_by_t2)
    assert kd.replace(**same) == student  # the distilled student differs from the labels-only one in the loss only
    assert member == student and member.jitter == 0  # a labels-only student is one more member
    assert en.RECIPES("member", True).epochs == en.FAST_EPOCHS < member.epochs
    with pytest.raises(ValueError):
        en.RECIPES("distilled", fast=True, temperature=0)


def test_group_seeds_do_not_overlap():
    seen = set()
    for g in (0, 1, 100, 101):
        members, student = en.group_seeds(g, en.MAX_MEMBERS)
        assert student not in members and len(set(members)) == en.MAX_MEMBERS
        assert not (seen & {*members, student})
        seen |= {*members, student}


def test_members_differ_and_logits_are_stored(data, ensemble):
    assert ensemble.size == 3 and ensemble.seeds == [0, 1, 2]
    assert ensemble.train_logits.shape == (3, len(data.train), 10)
    assert ensemble.val_logits.shape == (3, len(data.val), 10)
    assert ensemble.test_logits.shape == (3, len(data.test), 10)
    assert not torch.allclose(ensemble.train_logits[0], ensemble.train_logits[1])  # different seeds, different nets
    for row, logits in zip(ensemble.rows, ensemble.test_logits, strict=True):
        assert row["test_errors"] == int((logits.argmax(1) != data.test.y).sum())


def test_targets_are_the_combined_soft_targets(ensemble):
    for method in ("arithmetic", "geometric"):
        t = ensemble.targets(method, temperature=3.0)
        want = ensemble_probs(ensemble.train_logits, 3.0, method)
        assert torch.allclose(torch.softmax(t / 3.0, 1), want, atol=1e-5)
    one = ensemble.test_probs("geometric", size=1)  # the first member alone is that member
    assert torch.allclose(one, torch.softmax(ensemble.test_logits[0], 1), atol=1e-6)


def test_ensemble_rows_and_size_curve(data, ensemble):
    rows = en.ensemble_rows(ensemble)
    assert [r["method"] for r in rows] == ["arithmetic", "geometric"]
    curve = en.size_curve(ensemble, ["arithmetic"])
    assert [r["size"] for r in curve] == [1, 2, 3]
    assert curve[0]["test_errors"] == ensemble.rows[0]["test_errors"]
    assert curve[-1]["test_acc"] == pytest.approx(rows[0]["test_acc"])


def test_distil_ensemble_is_cached_and_paired(data, ensemble):
    kd = en.RECIPES("distilled", fast=True).replace(batch_size=32, epochs=3)
    rows = en.distil_ensemble(data, ensemble, kd, seeds=[7], progress=False)
    assert [r["method"] for r in rows] == ["arithmetic", "geometric"] and all(r["seed"] == 7 for r in rows)
    assert rows[0]["init_norm"] == rows[1]["init_norm"]
    again = en.distil_ensemble(data, ensemble, kd, seeds=[7], methods="arithmetic", progress=False)
    assert again[0]["cached"] and again[0]["test_acc"] == rows[0]["test_acc"]


def test_a_group_pairs_its_students(groups):
    g = groups[0]
    arms = [r["arm"] for r in g.rows]
    assert arms.count(en.MEMBER) == 3 and arms.count(en.ENSEMBLE) == 2 and arms.count(en.LABELS) == 1
    assert arms.count(en.DISTILLED) == 2 * 2  # two temperatures, two methods
    students = [r for r in g.rows if r["arm"] in (en.LABELS, en.DISTILLED)]
    assert len({r["seed"] for r in students}) == 1 and len({r["init_norm"] for r in students}) == 1
    assert all("identical" in line for line in en.same_start(en.all_rows(groups)))
    members = [r["seed"] for r in g.rows if r["arm"] == en.MEMBER]
    assert students[0]["seed"] not in members


def test_gains_claims_and_share(groups):
    rows = en.all_rows(groups)
    g = en.gains(rows, "arithmetic", 2.0)
    assert [x["group"] for x in g] == [0, 1]
    for x in g:
        assert x["ensemble gain"] == pytest.approx(x["ensemble"] - x["mean member"])
        assert x["best member"] >= x["mean member"]
    ens_claim, student_claim, info = en.claims(rows, "arithmetic", 2.0)
    assert isinstance(ens_claim, stats.Claim) and ens_claim.seeds == [0, 1]
    assert not ens_claim.shown and not student_claim.shown and not info["kept_half"]  # two groups: too few seeds
    assert ens_claim.delta == pytest.approx(sum(x["ensemble gain"] for x in g) / 2)
    if ens_claim.delta > 0:
        assert info["share"] == pytest.approx(student_claim.delta / ens_claim.delta)
    else:
        assert math.isnan(info["share"])
    assert "Share of the ensemble's gain" in en.share_sentence(info)
    with pytest.raises(ValueError, match="no complete group"):
        en.gains(rows, "arithmetic", 16.0)


def test_choose_temperature_uses_validation(groups):
    rows = en.all_rows(groups)
    t, table = en.choose_temperature(rows)
    assert t in (2.0, 4.0) and [line["T"] for line in table] == [2.0, 4.0]
    val_gain = {tt: sum(x["student gain"] for x in en.gains(rows, "arithmetic", tt, "val_acc")) for tt in (2.0, 4.0)}
    assert val_gain[t] == max(val_gain.values())
    # changing the test accuracies does not change the choice
    shuffled = [{**r, "test_acc": 1 - r["test_acc"]} for r in rows]
    assert en.choose_temperature(shuffled)[0] == t


def test_claims_on_synthetic_groups():
    """Five groups where the ensemble gains 2 points and the student 1.5: both shown, 75 % kept."""
    rows = []
    for g in range(5):
        wobble = 0.001 * g
        rows += [{"group": g, "arm": en.MEMBER, "method": "", "temperature": float("nan"), "test_acc": 0.80 + d + wobble,
                  "test_errors": 0} for d in (-0.01, 0.0, 0.01)]
        rows.append({"group": g, "arm": en.ENSEMBLE, "method": "arithmetic", "temperature": float("nan"),
                     "test_acc": 0.82 + wobble + 0.001 * (g % 2), "test_errors": 0})
        rows.append({"group": g, "arm": en.LABELS, "method": "", "temperature": float("nan"), "test_acc": 0.80 + wobble,
                     "test_errors": 0})
        rows.append({"group": g, "arm": en.DISTILLED, "method": "arithmetic", "temperature": 4.0,
                     "test_acc": 0.815 + wobble + 0.001 * (g % 3), "test_errors": 0})
    ens_claim, student_claim, info = en.claims(rows, "arithmetic", 4.0)
    assert ens_claim.shown and student_claim.shown and info["kept_half"]
    assert 0.7 < info["share"] < 0.85
    lines = en.results_table_rows(rows, 4.0)
    assert [line["model"] for line in lines][:3] == ["member (mean of the group)", "best member of the group",
                                                     "student, labels only"]
    assert lines[-1]["share of the ensemble's gain"] == f"{info['share']:.0%}"


def test_tables_figure_and_paper(groups):
    rows = en.all_rows(groups)
    lines = en.results_table_rows(rows, 2.0)
    assert len(lines) == 3 + 2 + 2
    fig = ensembles_figures.ensemble_figure(groups[0].ensemble, groups[0].rows)
    assert len(fig.data) == 1 + 2 + 1 + 4
    assert list(fig.data[0].y) == [r["test_errors"] for r in groups[0].ensemble.rows]
    paper = en.paper_comparison(rows, "arithmetic", 2.0)
    assert [line["paper (speech, 10 models)"] for line in paper] == ["58.9%", "61.1%", "60.8%", "86%"]


def test_paper_comparison_records_rows(groups):
    from labkd import results

    en.paper_comparison(en.all_rows(groups), "arithmetic", 2.0, record=True)
    rows = [r for r in results.recorded()[results.COMPARISONS] if r["what"].startswith("ensemble distillation")]
    assert len(rows) == 4 and rows[0]["paper"].startswith("58.9%")
