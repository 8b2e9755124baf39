"""labkd.specialists: covariance, k-means, dustbin data, initialisation, combination, a whole run (digits)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from labkd import load_data, metrics, train_model
from labkd import specialists as sp
from labkd import specialists_combine as spc
from labkd.exercises.ensembles import dustbin_labels as reference_dustbin_labels

HIDDEN = (32, 32)
SMALL = {"arch": "mlp", "hidden": (24,)}  # a quick specialist of its own for the tests


@pytest.fixture(scope="module")
def data():
    return load_data("digits")


@pytest.fixture(scope="module")
def generalist(data):
    return train_model("mlp", data, sp.RECIPES("generalist", fast=True).replace(batch_size=32, epochs=3), hidden=HIDDEN,
                       progress=False)


def test_prediction_covariance_matches_numpy():
    probs = torch.softmax(torch.randn(50, 4, generator=torch.Generator().manual_seed(0)), 1)
    cov = spc.prediction_covariance(probs)
    assert torch.allclose(cov, torch.from_numpy(__import__("numpy").cov(probs.numpy().T)).float(), atol=1e-6)
    assert torch.allclose(cov, cov.T)
    with pytest.raises(ValueError, match="at least 2 rows"):
        spc.prediction_covariance(probs[:1])


def test_kmeans_finds_obvious_clusters_and_is_seeded():
    gen = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + 0.1 * torch.randn(5, 2, generator=gen) for c in centres])
    labels = spc.kmeans(points, 3, seed=0)
    assert labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert torch.equal(spc.kmeans(points, 3, seed=4), labels)  # numbering by first point: same partition, same ids
    assert spc.kmeans(points, 1).tolist() == [0] * 15
    with pytest.raises(ValueError, match="k must be"):
        spc.kmeans(points, 0)
    with pytest.raises(ValueError, match="k must be"):
        spc.kmeans(points, 16)


def test_cluster_classes_groups_classes_predicted_together():
    # classes 0,1 share probability on the same images, so do 2,3; class 4 is on its own
    gen = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(200):
        which = int(torch.randint(3, (1,), generator=gen))
        a = float(torch.rand(1, generator=gen))
        row = [0.0] * 5
        if which == 0:
            row[0], row[1] = a, 1 - a
        elif which == 1:
            row[2], row[3] = a, 1 - a
        else:
            row[4] = 1.0
        rows.append(row)
    groups = spc.cluster_classes(torch.tensor(rows), 3, seed=0)
    assert groups == [[0, 1], [2, 3], [4]]
    assert spc.cluster_order(groups) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="n_clusters"):
        spc.cluster_classes(torch.tensor(rows), 6)


def test_dustbin_labels_matches_the_exercise_reference():
    labels = torch.tensor([0, 6, 2, 9, 4, 6, 1, 0, 7])
    for classes in ([6, 0, 2, 4], [9], [1, 7]):
        assert torch.equal(sp.dustbin_labels(labels, classes), reference_dustbin_labels(labels, classes))
    assert sp.dustbin_labels(labels, [6, 0, 2, 4]).tolist() == [1, 0, 2, 4, 3, 0, 4, 1, 4]


def test_specialist_data(data):
    classes = [3, 5, 8]
    sdata = sp.specialist_data(data, classes, seed=0)
    assert sdata.num_classes == 4 and sdata.class_names[-1] == sp.DUSTBIN
    n_special = int(torch.isin(data.train.y, torch.tensor(classes)).sum())
    counts = sdata.train.class_counts(4)
    assert int(counts[:3].sum()) == n_special and int(counts[3]) == n_special  # equal-sized dustbin sample
    assert len(sdata.test) == len(data.test) and int(sdata.test.y.max()) == 3
    assert sdata.spec != data.spec
    correction = sp.dustbin_correction(data, classes, sdata)
    assert correction == pytest.approx(math.log((len(data.train) - n_special) / n_special))
    with pytest.raises(ValueError, match="classes is empty"):
        sp.specialist_data(data, [], seed=0)
    with pytest.raises(ValueError, match="all 10 classes"):
        sp.specialist_data(data, list(range(10)))
    with pytest.raises(ValueError, match="twice"):
        sp.specialist_data(data, [3, 3])


def test_init_specialist_starts_as_the_generalist(data, generalist):
    classes = [3, 5, 8]
    model = sp.init_specialist(generalist, classes)
    x = data.test.x[:64]
    g = metrics.predict_logits(generalist.model, x)
    s = metrics.predict_logits(model, x)
    assert s.shape == (64, 4)
    assert torch.allclose(s[:, :3], g[:, classes], atol=1e-5)  # same hidden layers, same rows
    rest = [c for c in range(10) if c not in classes]
    assert torch.allclose(s[:, 3], g[:, rest].mean(1) + math.log(7), atol=1e-4)  # the dustbin row
    assert bool((s[:, 3] <= torch.logsumexp(g[:, rest], 1) + 1e-4).all())  # a lower bound on the log-sum-exp
    assert model.cache_key.startswith(generalist.key)


def test_combine_keeps_the_generalist_without_specialists_or_when_they_agree():
    gen = torch.Generator().manual_seed(0)
    p_g = torch.softmax(torch.randn(6, 5, generator=gen), 1)
    groups = [[0, 1]]
    agreeing = torch.cat([p_g[:, :2], p_g[:, 2:].sum(1, keepdim=True)], 1)
    q = spc.combine(p_g, [agreeing], groups, active=torch.ones(6, 1, dtype=torch.bool))
    assert torch.allclose(q, p_g, atol=1e-3)
    off = spc.combine(p_g, [agreeing], groups, active=torch.zeros(6, 1, dtype=torch.bool))
    assert torch.equal(off, p_g)


def test_combine_moves_probability_towards_the_specialist():
    p_g = torch.tensor([[0.45, 0.40, 0.05, 0.05, 0.05]])
    p_m = torch.tensor([[0.05, 0.85, 0.10]])  # the specialist on classes 0, 1 is sure it is class 1
    q = spc.combine(p_g, [p_m], [[0, 1]], active=torch.ones(1, 1, dtype=torch.bool), steps=500)
    assert int(q.argmax()) == 1 and float(q.sum()) == pytest.approx(1.0, abs=1e-5)
    # q is a minimum: the objective's gradient there is ~0 and random nudges do not lower it
    z = torch.log(q.double()).requires_grad_(True)
    obj = spc.combination_objective(z, p_g.double(), [p_m.double()], [[0, 1]], torch.ones(1, 1, dtype=torch.bool))
    (grad,) = torch.autograd.grad(obj.sum(), z)
    assert float(grad.abs().max()) < 1e-3
    for k in range(5):
        nudge = 0.05 * torch.randn(1, 5, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
        worse = spc.combination_objective(z.detach() + nudge, p_g.double(), [p_m.double()], [[0, 1]],
                                         torch.ones(1, 1, dtype=torch.bool))
        assert float(worse) >= float(obj.detach()) - 1e-9


def test_coarse_log_probs_sums_the_other_classes():
    log_q = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    out = spc.coarse_log_probs(log_q, [2, 0]).exp()
    assert torch.allclose(out, torch.tensor([[0.3, 0.1, 0.6]]))


def test_active_specialists():
    p_g = torch.tensor([[0.6, 0.3, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4]])
    groups = [[0, 2], [3]]
    assert spc.active_specialists(p_g, groups, top_n=1).tolist() == [[True, False], [False, True]]
    assert spc.active_specialists(p_g, groups, top_n=2).tolist() == [[True, False], [True, True]]
    with pytest.raises(ValueError, match="top_n"):
        spc.active_specialists(p_g, groups, top_n=0)


def test_combine_validates():
    p_g = torch.softmax(torch.randn(3, 4), 1)
    with pytest.raises(ValueError, match="one probability table per specialist"):
        spc.combine(p_g, [], [[0, 1]])
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        spc.combine(p_g, [torch.full((3, 4), 0.25)], [[0, 1]])
    with pytest.raises(ValueError, match="probabilities"):
        spc.combine(-p_g, [torch.full((3, 3), 1 / 3)], [[0, 1]])


def test_a_whole_run(data, generalist):
    config = sp.RECIPES("specialist", fast=True).replace(batch_size=32)
    run = sp.run_specialists(data, generalist, 3, config, steps=100, progress=False, model=SMALL)
    assert sorted(spc.cluster_order(run.groups)) == list(range(10))
    assert all(len(s.classes) >= 2 for s in run.specialists)
    assert run.combined_probs.shape == run.generalist_probs.shape == (len(data.test), 10)
    assert torch.allclose(run.combined_probs.sum(1), torch.ones(len(data.test)), atol=1e-4)
    untouched = ~run.active.any(1)
    assert torch.equal(run.combined_probs[untouched], run.generalist_probs[untouched])
    models = [r["model"] for r in run.rows]
    assert models == ["generalist", "generalist + specialists"]
    gen_acc = metrics.accuracy(metrics.predict_logits(generalist.model, data.test.x), data.test.y)
    assert run.rows[0]["test_acc"] == pytest.approx(gen_acc)
    assert len(sp.specialist_table_rows(run)) == len(run.specialists)
    assert len(sp.relative_improvement(run.rows)) == 1
    assert len(sp.verdicts(run.rows)) == 2
    assert len(sp.describe_groups(run.groups, data.class_names)) == 3
    again = sp.train_specialists(data, generalist, run.groups, config, progress=False, model=SMALL)
    assert all(s.trained.cached for s in again)
    assert torch.allclose(again[0].test_probs, run.specialists[0].test_probs)
    probs = again[0].test_probs
    assert torch.allclose(probs, F.softmax(metrics.predict_logits(again[0].trained.model, data.test.x)
                                           + torch.tensor([0.0] * len(again[0].classes) + [again[0].correction]), 1),
                          atol=1e-5)


def test_fit_dustbin_shift_matches_the_target_share():
    logits = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
    for share in (0.1, 0.5, 0.9):
        b = sp.fit_dustbin_shift(logits, share)
        shifted = logits.clone()
        shifted[:, -1] += b
        assert float(torch.softmax(shifted, 1)[:, -1].mean()) == pytest.approx(share, abs=1e-6)
    with pytest.raises(ValueError, match="dustbin_fraction"):
        sp.fit_dustbin_shift(logits, 1.0)


def test_paper_correction_option(data, generalist):
    config = sp.RECIPES("specialist", fast=True).replace(batch_size=32)
    fitted = sp.train_specialists(data, generalist, [[3, 5]], config, progress=False, from_generalist=True)
    paper = sp.train_specialists(data, generalist, [[3, 5]], config, correction="paper", progress=False,
                                 from_generalist=True)
    assert paper[0].correction == pytest.approx(paper[0].paper_correction)
    assert fitted[0].paper_correction == pytest.approx(paper[0].paper_correction)
    assert fitted[0].correction != pytest.approx(paper[0].correction)
    with pytest.raises(ValueError, match="correction='none'"):
        sp.train_specialists(data, generalist, [[3, 5]], config, correction="none")


def test_results_table_rows_and_confusable_classes():
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.0, 0.1, 0.9]])
    y = torch.tensor([0, 1, 1, 2])
    assert sp.confusable_classes(probs, y) == [1]  # class 1 is right half the time, overall 75 %
    rows = [{"model": m, "seed": s, "test_acc": a, "confusable_acc": b, "test_errors": e}
            for m, s, a, b, e in (("generalist", 0, 0.80, 0.60, 20), ("generalist + specialists", 0, 0.84, 0.66, 16),
                                  ("generalist", 1, 0.80, 0.60, 20), ("generalist + specialists", 1, 0.82, 0.63, 18))]
    assert sp.relative_improvement(rows) == pytest.approx([0.05, 0.025])

    class Run:  # results_table_rows only reads .rows
        def __init__(self, rows):
            self.rows = rows

    lines = sp.results_table_rows([Run(rows[:2]), Run(rows[2:])])
    assert lines[0]["model"] == "generalist" and lines[1]["relative improvement (all)"].startswith("+3.75 ± ")
    assert lines[1]["test errors"] == "17.0" and lines[1]["seeds"] == 2


def test_paper_comparison(data, generalist):
    run = sp.run_specialists(data, generalist, 3, sp.RECIPES("specialist", fast=True).replace(batch_size=32), steps=50,
                             progress=False, model=SMALL)
    lines = sp.paper_comparison([run])
    assert lines[1]["paper (JFT)"] == "25.0%" and lines[3]["paper (JFT)"] == "+4.4%"
    assert lines[1]["this run"] == f"{run.rows[0]['test_acc']:.2%}"


def test_a_group_with_an_unknown_class_is_a_clear_error(data, generalist):
    config = sp.RECIPES("specialist", fast=True)
    with pytest.raises(ValueError, match=r"groups\[0\] has 12"):
        sp.run_specialists(data, generalist, [[3, 12]], config, model=SMALL)
    with pytest.raises(ValueError, match=r"groups\[1\] has the unknown class 'Sweater'"):
        sp.run_specialists(data, generalist, [[3, 5], ["Sweater", "0"]], config, model=SMALL)
    with pytest.raises(ValueError, match=r"groups\[0\] lists a class twice"):
        sp.train_specialists(data, generalist, [[3, 3]], config, model=SMALL)
    with pytest.raises(ValueError, match="groups must be"):
        sp.run_specialists(data, generalist, [], config, model=SMALL)
    with pytest.raises(ValueError, match="model must be a dict"):
        sp.train_specialists(data, generalist, [[3, 5]], config, model="cnn")
    with pytest.raises(ValueError, match="not both"):
        sp.train_specialists(data, generalist, [[3, 5]], config, model=SMALL, from_generalist=True)
    with pytest.raises(ValueError, match="loss='cross_entropy'"):
        sp.train_specialists(data, generalist, [[3, 5]], config.replace(loss="distillation"), model=SMALL)
    with pytest.raises(ValueError, match="n_train"):
        sp.specialist_base(data, n_train=0)


def test_class_ids_by_name(data):
    assert sp.class_ids(["3", "5", 0], data) == [3, 5, 0]
    with pytest.raises(ValueError, match="group has the unknown class 'ten'"):
        sp.class_ids(["ten"], data)
    with pytest.raises(TypeError, match="group must be a list"):
        sp.class_ids("35", data)


def test_specialists_of_their_own_and_the_claim(data, generalist):
    config = sp.RECIPES("specialist", fast=True).replace(batch_size=32, epochs=3)
    runs = [sp.run_specialists(data, g, [[3, 5, 8]], config, steps=100, progress=False, model=SMALL)
            for g in (generalist, train_model("mlp", data, sp.RECIPES("generalist", fast=True).replace(
                batch_size=32, epochs=3, seed=1), hidden=HIDDEN, progress=False))]
    run = runs[0]
    assert run.groups == [[3, 5, 8]] and run.confusable == [3, 5, 8] and run.covered == [3, 5, 8]
    spec = run.specialists[0].trained.model.spec
    assert spec["num_classes"] == 4 and tuple(spec["hidden"]) == (24,)  # its own architecture, not the generalist's
    for r in run.rows:
        assert r["confusable_acc"] == pytest.approx(r["covered_acc"])
        assert 0 <= r["val_acc"] <= 1 and 0 <= r["val_confusable_acc"] <= 1
    c = sp.specialist_claim(runs)
    assert c.seeds == [0, 1] and not c.shown  # two seeds: too few for a claim
    combined = [r["confusable_acc"] for run in runs for r in run.rows if r["model"] != "generalist"]
    alone = [r["confusable_acc"] for run in runs for r in run.rows if r["model"] == "generalist"]
    assert c.delta == pytest.approx(sum(combined) / 2 - sum(alone) / 2)
    assert "all_classes_delta" in c.extra and "confusable classes" in c.metric
    assert len(sp.verdicts([r for run in runs for r in run.rows])) == 2


def test_the_first_versions_specialist_starts_as_the_generalist(data, generalist):
    config = sp.RECIPES("specialist", fast=True).replace(batch_size=32)
    s = sp.train_specialists(data, generalist, [[3, 5]], config, progress=False, from_generalist=True)[0]
    assert tuple(s.trained.model.spec["hidden"]) == HIDDEN
