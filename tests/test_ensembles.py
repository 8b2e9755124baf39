"""labkd.ensembles: members, combined targets, distilled students and the tables, on the 8x8 digits."""

from __future__ import annotations

import pytest
import torch

from labkd import ensembles as en
from labkd import load_data
from labkd.losses import ensemble_probs
from labkd.train import TrainConfig

HIDDEN = (16, 16)


@pytest.fixture(scope="module")
def data():
    return load_data("digits")


@pytest.fixture(scope="module")
def ensemble(data):
    recipe = en.teacher_config(fast=True).replace(batch_size=32, epochs=5)
    return en.train_ensemble(data, [0, 1, 2], recipe, hidden=HIDDEN, progress=False)


@pytest.fixture(scope="module")
def students(data, ensemble):
    kd = en.kd_config(fast=True).replace(batch_size=32, epochs=5)
    return en.distil_ensemble(data, ensemble, kd, seeds=[7], progress=False)


def test_empty_ensemble_is_a_clear_error(data):
    with pytest.raises(ValueError, match="size 0"):
        en.train_ensemble(data, [], en.teacher_config(fast=True))
    with pytest.raises(ValueError, match="empty"):
        ensemble_probs([])


def test_bad_arguments_fail_before_training(data, ensemble):
    with pytest.raises(ValueError, match="loss='cross_entropy'"):
        en.train_ensemble(data, [0], en.kd_config(fast=True))
    with pytest.raises(ValueError, match="method='median'"):
        ensemble.targets("median")
    with pytest.raises(ValueError, match="size must be"):
        ensemble.test_probs("arithmetic", size=0)
    with pytest.raises(ValueError, match="loss='distillation'"):
        en.distil_ensemble(data, ensemble, en.teacher_config(fast=True), seeds=[0])
    with pytest.raises(ValueError, match="spec differs"):
        en.distil_ensemble(data.subset(n_train=100), ensemble, en.kd_config(fast=True), seeds=[0])


def test_members_differ_and_logits_are_stored(data, ensemble):
    assert ensemble.size == 3 and ensemble.seeds == [0, 1, 2]
    assert ensemble.train_logits.shape == (3, len(data.train), 10)
    assert ensemble.test_logits.shape == (3, len(data.test), 10)
    assert not torch.allclose(ensemble.train_logits[0], ensemble.train_logits[1])  # different seeds, different nets
    for row, logits in zip(ensemble.rows, ensemble.test_logits, strict=True):
        assert row["test_errors"] == int((logits.argmax(1) != data.test.y).sum())


def test_targets_are_the_combined_soft_targets(ensemble):
    for method in ("arithmetic", "geometric"):
        t = ensemble.targets(method, temperature=3.0)
        want = ensemble_probs(ensemble.train_logits, 3.0, method)
        assert torch.allclose(torch.softmax(t / 3.0, 1), want, atol=1e-5)
    # a one-member ensemble is that member
    one = ensemble.test_probs("geometric", size=1)
    assert torch.allclose(one, torch.softmax(ensemble.test_logits[0], 1), atol=1e-6)


def test_ensemble_rows_and_size_curve(data, ensemble):
    rows = en.ensemble_rows(ensemble)
    assert [r["method"] for r in rows] == ["arithmetic", "geometric"]
    curve = en.size_curve(ensemble, ["arithmetic"])
    assert [r["size"] for r in curve] == [1, 2, 3]
    assert curve[0]["test_errors"] == ensemble.rows[0]["test_errors"]
    assert curve[-1]["test_acc"] == pytest.approx(rows[0]["test_acc"])


def test_distilled_students(data, ensemble, students):
    assert [r["method"] for r in students] == ["arithmetic", "geometric"]
    assert all(r["seed"] == 7 and 0 <= r["agreement"] <= 1 for r in students)
    assert all(r["test_acc"] > 0.5 for r in students)  # learned something in 5 epochs (chance is 0.1)
    # the two methods give different targets, so different students from the same start
    assert students[0]["test_acc"] != students[1]["test_acc"] or students[0]["agreement"] != students[1]["agreement"]
    again = en.distil_ensemble(data, ensemble, en.kd_config(fast=True).replace(batch_size=32, epochs=5), seeds=[7],
                               methods="arithmetic", progress=False)
    assert again[0]["cached"] and again[0]["test_acc"] == students[0]["test_acc"]


def test_tables_figure_and_verdicts(ensemble, students):
    lines = en.results_table_rows(ensemble, students)
    assert len(lines) == 2 + 2 + 2 and lines[0]["model"].startswith("best single model")
    best = max(r["test_acc"] for r in ensemble.rows)
    assert lines[0]["test accuracy"] == f"{best:.2%}"
    fig = en.ensemble_figure(ensemble, students)
    assert len(fig.data) == 1 + 2 + 2
    assert list(fig.data[0].y) == [r["test_errors"] for r in ensemble.rows]
    said = en.verdicts(ensemble, students)
    assert len(said) == 3 and all("single seed" in s for s in said)  # one student seed: no claim


def test_kd_config():
    kd = en.kd_config(fast=False, temperature=2.0, alpha=0.5)
    assert isinstance(kd, TrainConfig) and kd.loss == "distillation" and kd.temperature == 2.0 and kd.alpha == 0.5
    assert kd.epochs == en.teacher_config(fast=False).epochs
    with pytest.raises(ValueError):
        en.kd_config(fast=True, temperature=0)


def test_share_of_the_gain_on_a_synthetic_ensemble(data):
    """Three members, each wrong on its own third of the first 30 test images: the ensemble fixes
    them all, so a student halfway between member and ensemble kept 50 % of the gain."""
    y = data.test.y
    n, c = len(y), 10
    right = torch.nn.functional.one_hot(y, c).float() * 5
    test_logits = right.repeat(3, 1, 1)
    for k in range(3):
        wrong = torch.arange(10 * k, 10 * k + 10)
        test_logits[k, wrong] = torch.nn.functional.one_hot((y[wrong] + 1) % c, c).float() * 3
    train_logits = torch.zeros(3, len(data.train), c)
    singles = [{"model": en.SINGLE, "seed": k, "test_acc": 1 - 10 / n, "test_errors": 10} for k in range(3)]
    singles[0]["test_acc"] = 1 - 11 / n  # a little spread between the members
    ens = en.Ensemble(data, HIDDEN, [], [0, 1, 2], train_logits, test_logits, singles)
    assert [r["test_errors"] for r in en.ensemble_rows(ens)] == [0, 0]
    mean_single = sum(r["test_acc"] for r in singles) / 3
    students = [{"method": m, "seed": s, "test_acc": (mean_single + 1.0) / 2} for m in ("arithmetic", "geometric")
                for s in (0, 1)]
    lines = en.results_table_rows(ens, students)
    assert [line["share of the ensemble's gain"] for line in lines[-2:]] == ["50%", "50%"]
    flat = [{**r, "test_acc": 1.0, "test_errors": 0} for r in singles]  # perfect members: the ensemble cannot gain
    ens_flat = en.Ensemble(data, HIDDEN, [], [0, 1, 2], train_logits, right.repeat(3, 1, 1), flat)
    assert "n/a" in en.results_table_rows(ens_flat, students)[-1]["share of the ensemble's gain"]


def test_paper_comparison(ensemble, students):
    lines = en.paper_comparison(ensemble, students)
    assert [line["paper (speech, 10 models)"] for line in lines] == ["58.9%", "61.1%", "60.8%", "86%"]
    mean_single = sum(r["test_acc"] for r in ensemble.rows) / ensemble.size
    assert lines[0]["this run"] == f"{mean_single:.2%}"


def test_paper_comparison_records_rows(ensemble, students):
    from labkd import results

    en.paper_comparison(ensemble, students, record=True)
    rows = [r for r in results.recorded()[results.COMPARISONS] if r["what"].startswith("ensemble distillation")]
    assert len(rows) == 4 and rows[0]["paper"].startswith("58.9%")
