"""labkd.teacher_studies: the loops of lessons 04-05 (teacher size, assistants, checkpoints, ESKD).

Real (tiny) training on the bundled 8x8 digits, 2-3 epochs, so the whole file runs in seconds;
the cache (a temporary folder, see conftest) is shared by the tests of this session.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labkd import load_data, metrics
from labkd import teacher_studies as ts
from labkd.models import build_model, num_parameters

TEACHERS = [(16, 16), (64, 64)]
STUDENT = (8, 8)
SEEDS = [0, 1]



@pytest.fixture(scope="module")
def data():
    return load_data("digits", val_size=200)


@pytest.fixture(scope="module")
def kd():
    return ts.kd_config(fast=True).replace(epochs=3, batch_size=32)


def teacher_recipe(checkpoints: bool = False):
    """The fast recipe with small batches and no jitter, so 8x8 digits are learnt in 3 epochs."""
    return ts.teacher_config(fast=True, checkpoints=checkpoints).replace(epochs=3, batch_size=32, jitter=0)


@pytest.fixture(scope="module")
def family(data):
    return ts.train_teacher_family(data, TEACHERS, SEEDS, teacher_recipe(), progress=False)


@pytest.fixture(scope="module")
def grid(data, family, kd):
    return ts.distil_grid(data, family, [STUDENT], kd, progress=False)


@pytest.fixture(scope="module")
def checkpointed(data):
    return ts.train_checkpointed_teachers(data, (32, 32), SEEDS, teacher_recipe(checkpoints=True), progress=False)


# -- recipes, names and checks -------------------------------------------------------------


@pytest.mark.parametrize("hidden", [(30, 30), (1200, 1200), (8, 4, 6), (5,)])
def test_parameter_count_matches_the_built_model(hidden):
    model = build_model("mlp", (1, 28, 28), 10, hidden=hidden)
    assert ts.mlp_num_parameters(784, hidden, 10) == num_parameters(model)


def test_names_and_hidden_sizes(data):
    assert ts.mlp_hidden(30) == (30, 30)
    assert ts.mlp_hidden(7, depth=3) == (7, 7, 7)
    assert ts.mlp_name((30, 30), data) == "64-30-30-10"
    with pytest.raises(ValueError, match="width"):
        ts.mlp_hidden(0)


def test_transfer_set_cuts_only_when_smaller(data):
    assert ts.transfer_set(data, None) is data
    assert ts.transfer_set(data, 10 ** 6) is data
    small = ts.transfer_set(data, 300)
    assert len(small.train) == 300 and len(small.test) == len(data.test)
    assert small.spec != data.spec


def test_configs_are_validated():
    assert ts.kd_config(fast=True).loss == "distillation"
    assert ts.kd_config(fast=False).lr == ts.STUDENT_LR and ts.kd_config(fast=False, lr=0.05).lr == 0.05
    assert ts.teacher_config(fast=False).epochs > ts.teacher_config(fast=True).epochs
    assert ts.teacher_config(fast=True, checkpoints=True).checkpoints
    with pytest.raises(ValueError, match="temperature"):
        ts.kd_config(fast=True, temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        ts.kd_config(fast=True, alpha=1.5)


def test_bad_arguments_fail_before_training(data, family, kd):
    with pytest.raises(TypeError, match="tuple of layer widths"):
        ts.distil_grid(data, family, [30], kd)
    with pytest.raises(ValueError, match="empty"):
        ts.distil_grid(data, family, [], kd)
    with pytest.raises(ValueError, match="twice"):
        ts.distil_grid(data, family, [(8, 8), (8, 8)], kd)
    with pytest.raises(ValueError, match="loss='distillation'"):
        ts.distil_grid(data, family, [STUDENT], kd.replace(loss="cross_entropy"))
    with pytest.raises(KeyError, match="seed 7"):
        ts.distil_grid(data, family, [STUDENT], kd, seeds=[7])
    with pytest.raises(ValueError, match="repeats"):
        ts.train_teacher_family(data, TEACHERS, [0, 0], ts.teacher_config(True))
    with pytest.raises(ValueError, match="loss='cross_entropy'"):
        ts.train_teacher_family(data, TEACHERS, [0], kd)


# -- the family and the grid ---------------------------------------------------------------


def test_family_rows_and_cache(data, family):
    assert family.hidden_sizes == TEACHERS and family.seeds == SEEDS
    assert len(family.rows) == len(TEACHERS) * len(SEEDS)
    params = {r["teacher"]: r["params"] for r in family.rows}
    assert params["64-16-16-10"] < params["64-64-64-10"]
    for r in family.rows:
        assert 0.5 < r["test_acc"] <= 1, "even 3 epochs should learn the digits"
        assert 0 < r["entropy_T"] <= math.log(10) + 1e-5
    again = ts.train_teacher_family(data, TEACHERS[:1], [0], teacher_recipe(), progress=False)
    assert again.get(TEACHERS[0], 0).cached
    assert again.get(TEACHERS[0], 0).key == family.get(TEACHERS[0], 0).key


def test_grid_rows_are_fair_and_complete(grid, family):
    assert len(grid) == len(SEEDS) * (len(TEACHERS) + 1)
    baseline = [r for r in grid if r["teacher"] == ts.BASELINE]
    assert len(baseline) == len(SEEDS) and all("agreement" not in r for r in baseline)
    for r in grid:
        if r["teacher"] != ts.BASELINE:
            assert 0 <= r["agreement"] <= 1 and r["kl_T"] >= 0
            assert r["teacher_acc"] == family.get(r["teacher_hidden"], r["seed"]).final("test_acc")
    norms = {}
    for r in grid:
        norms.setdefault(r["seed"], set()).add(r["init_norm"])
    assert all(len(v) == 1 for v in norms.values()), "students of one seed must start from identical weights"
    assert len({v.pop() for v in norms.values()}) == len(SEEDS), "different seeds should start differently"
    assert all("identical" in line for line in ts.same_start(grid))
    assert "_trained" not in repr(grid[0])


def test_summarize_and_compare():
    rows = [{"g": "a", "test_acc": v} for v in (0.90, 0.92, 0.94)] + [{"g": "b", "test_acc": 0.5}]
    stats = {s["g"]: s for s in ts.summarize(rows, ["g"])}
    assert stats["a"]["mean"] == pytest.approx(0.92)
    assert stats["a"]["std"] == pytest.approx(np.std([0.90, 0.92, 0.94], ddof=1))
    assert stats["b"]["std"] == 0.0 and stats["b"]["n"] == 1
    with pytest.raises(KeyError, match="nope"):
        ts.summarize(rows, ["nope"])
    with pytest.raises(KeyError, match="kl_T"):
        ts.summarize(rows, ["g"], "kl_T")
    partial = rows + [{"g": "a", "test_acc": 0.5, "kl_T": 0.1}]
    assert ts.summarize(partial, ["g"], "kl_T") == [{"g": "a", "mean": 0.1, "std": 0.0, "n": 1, "values": [0.1]}]
    with pytest.raises(ValueError, match="empty"):
        ts.summarize([], ["g"])
    clear = ts.compare([0.95, 0.951, 0.949], [0.90, 0.901, 0.899], "big", "small")
    assert clear["significant"] and clear["difference"] == pytest.approx(0.05)
    assert "big is better" in clear["verdict"]
    noisy = ts.compare([0.95, 0.90, 0.99], [0.94, 0.89, 0.98])
    assert not noisy["significant"] and "no clear winner" in noisy["verdict"]
    single = ts.compare([0.99], [0.5])
    assert not single["significant"] and "single seed" in single["verdict"]


def test_best_teachers_picks_the_best_mean():
    family = ts.TeacherFamily(data=None, rows=[
        {"teacher": "small", "test_acc": 0.95}, {"teacher": "big", "test_acc": 0.99},
        {"teacher": "small", "test_acc": 0.95}, {"teacher": "big", "test_acc": 0.99}])
    rows = [{"student": "s", "teacher": t, "test_acc": v}
            for t, vs in (("small", (0.97, 0.971)), ("big", (0.93, 0.931)), (ts.BASELINE, (0.90, 0.90)))
            for v in vs]
    (found,) = ts.best_teachers(rows, family)
    assert found["best teacher"] == "small" and found["most accurate teacher"] == "big"
    assert "small is better" in found["verdict"]


def test_teacher_assistant_reuses_the_direct_runs(data, family, grid, kd):
    rows = ts.teacher_assistant(data, family, STUDENT, [(16, 16)], kd, progress=False)
    routes = {r["route"] for r in rows}
    assert routes == {ts.BASELINE, "teacher → student", "teacher → TA 64-16-16-10 → student"}
    assert len(rows) == 3 * len(SEEDS)
    largest = ts.mlp_name(family.largest(), data)
    for seed in SEEDS:
        direct = next(r for r in rows if r["route"] == "teacher → student" and r["seed"] == seed)
        same = next(r for r in grid if r["teacher"] == largest and r["seed"] == seed)
        assert direct["test_acc"] == same["test_acc"] and direct["cached"]
        assert len({r["init_norm"] for r in rows if r["seed"] == seed}) == 1
    via = [r for r in rows if "TA" in r["route"]]
    assert all(0 <= r["assistant_acc"] <= 1 and r["assistant"] == "64-16-16-10" for r in via)
    assert len(ts.assistant_verdicts(rows)) == 1


# -- checkpoints and early-stopped teachers ------------------------------------------------


def test_checkpointed_teachers_need_checkpoints(data):
    with pytest.raises(ValueError, match="checkpoints"):
        ts.train_checkpointed_teachers(data, (32, 32), [0], ts.teacher_config(True))


def test_checkpoint_stats(data, checkpointed):
    rows = ts.checkpoint_stats(checkpointed, data, temperature=4)
    assert len(rows) == 3 * len(SEEDS)
    for seed, teacher in checkpointed.items():
        last = next(r for r in rows if r["seed"] == seed and r["epoch"] == 3)
        assert last["test_acc"] == pytest.approx(teacher.final("test_acc"))
        assert all(0 <= r["ece"] <= 1 and r["entropy_T"] > 0 for r in rows)
    with pytest.raises(ValueError, match="1..3"):
        ts.checkpoint_stats(checkpointed, data, epochs=[4])


def test_sweep_final_checkpoint_equals_final_teacher(data, checkpointed, kd):
    rows = ts.checkpoint_sweep(data, checkpointed, STUDENT, kd, epochs=[1, 3], progress=False)
    assert len(rows) == len(SEEDS) * 3
    for seed, teacher in checkpointed.items():
        from_last = next(r for r in rows if r["seed"] == seed and r["teacher_epoch"] == 3)
        direct = ts.distil_grid(data, ts.TeacherFamily(data, {((32, 32), seed): teacher}), [STUDENT], kd,
                                baseline=False, progress=False)[0]
        # the checkpoint after the last epoch is the trained teacher: same soft targets, same student
        assert from_last["test_acc"] == direct["test_acc"]
        assert len({r["init_norm"] for r in rows if r["seed"] == seed}) == 1
    summary = ts.early_stopping_summary(ts.checkpoint_stats(checkpointed, data), rows)
    assert summary["best_epoch"] in (1, 3) and summary["final_epoch"] == 3 and summary["n_seeds"] == 2
    assert isinstance(summary["verdict"], str)


def test_early_stopping_summary_finds_the_best_epoch():
    stats = [{"seed": s, "epoch": e, "test_acc": 0.9 + e / 100, "entropy_T": 1.0, "ece": 0.01}
             for s in (0, 1) for e in (1, 2, 3)]
    sweep = [{"seed": s, "teacher_epoch": e, "test_acc": {1: 0.90, 2: 0.95, 3: 0.93}[e] + s / 1000}
             for s in (0, 1) for e in (1, 2, 3)]
    summary = ts.early_stopping_summary(stats, sweep)
    assert summary["best_epoch"] == 2 and summary["final_epoch"] == 3
    assert summary["student_acc_best"] == pytest.approx(0.9505)
    assert "teacher epoch 2 is better" in summary["verdict"]


def test_spread_epochs():
    for n, count in [(20, 8), (30, 8), (2, 8), (15, 6), (5, 5), (100, 3)]:
        epochs = ts.spread_epochs(n, count)
        assert epochs[0] == 1 and epochs[-1] == n
        assert epochs == sorted(set(epochs)) and len(epochs) == min(n, count)


def test_checkpoint_soft_targets_and_examples(data, checkpointed):
    teacher = checkpointed[0]
    logits = metrics.predict_logits(teacher.model, data.test.x)
    chosen = ts.pick_examples(logits, data.test.y, 4)
    assert len(chosen) == len(set(chosen)) == 4
    assert all(int(logits[i].argmax()) == int(data.test.y[i]) for i in chosen)
    soft = ts.checkpoint_soft_targets(teacher, data.test.x[chosen], [1, 3])
    assert soft.shape == (2, 4, 10)
    assert torch.allclose(soft[1], logits[chosen])


def test_fit_stops():
    assert ts.fit_stops([5, 10], 15) == [5, 10]
    assert ts.fit_stops([5, 10], 2) == [1]
    assert ts.fit_stops([0, 3, 3], 4) == [3]
    with pytest.raises(ValueError, match="at least 2"):
        ts.fit_stops([1], 1)


def test_early_stopped_kd(data, checkpointed, kd):
    with pytest.raises(ValueError, match="stop_epochs"):
        ts.early_stopped_kd(data, checkpointed, STUDENT, kd, stop_epochs=[3])
    rows = ts.early_stopped_kd(data, {0: checkpointed[0]}, STUDENT, kd, stop_epochs=[1], progress=False)
    arms = {r["arm"]: r for r in rows}
    assert set(arms) == set(ts.ARMS) and len(rows) == 3
    assert all(len(r["curve"]) == kd.epochs for r in rows)
    # ESKD and KD throughout share the first (KD) segment; labels only differs from it
    assert arms[ts.ARMS[0]]["curve"][0] == arms[ts.ARMS[1]]["curve"][0]
    assert len({r["init_norm"] for r in rows}) == 1
    assert arms[ts.ARMS[0]]["curve"][0] != arms[ts.ARMS[2]]["curve"][0]
    assert arms[ts.ARMS[1]]["_trained"].key != arms[ts.ARMS[0]]["_trained"].key
    assert len(ts.eskd_verdicts(rows)) == 2


def test_tables(grid, family):
    fig = ts.pivot(grid, "teacher", "student")
    assert fig.data[0].type == "table" and len(fig.data[0].cells.values[0]) == len(TEACHERS) + 1
    assert "%" in fig.data[0].cells.values[1][0]
    table = ts.teacher_table(family)
    assert list(table.data[0].cells.values[0]) == ["64-16-16-10", "64-64-64-10"]


def test_findings_and_readings(data, family, grid, kd):
    findings = ts.size_findings(grid, family)
    assert [f["claim"] for f in findings][0].startswith("a bigger")
    assert all(set(f) == {"claim", "paper", "this run"} for f in findings)
    assert findings[0]["this run"].count("<br>") == 0  # one student: one line
    assert "KL" in findings[1]["this run"]
    reading = ts.size_reading(grid, family)
    assert "spread" in reading or "claim" in reading
    fig = ts.findings_table(findings)
    assert fig.data[0].type == "table" and fig.layout.height > 60
    with pytest.raises(ValueError, match="empty"):
        ts.findings_table([])


def test_readings_follow_the_numbers():
    stats = [{"seed": s, "epoch": e, "test_acc": 0.9 + e / 100, "entropy_T": 2.0 / e, "ece": 0.01}
             for s in (0, 1) for e in (1, 2, 3)]
    late = [{"seed": s, "teacher_epoch": e, "test_acc": 0.90 + e / 100 + s / 1000} for s in (0, 1) for e in (1, 2, 3)]
    early = [{"seed": s, "teacher_epoch": e, "test_acc": {1: 0.99, 2: 0.95, 3: 0.93}[e] + s / 1000}
             for s in (0, 1) for e in (1, 2, 3)]
    assert ts.early_stopping_reading(ts.early_stopping_summary(stats, late), stats).startswith("The fully trained")
    text = ts.early_stopping_reading(ts.early_stopping_summary(stats, early), stats)
    assert text.startswith("An earlier checkpoint (epoch 1)") and "2.00 vs 0.67 nats" in text
    findings = ts.early_stopping_findings(ts.early_stopping_summary(stats, early))
    assert "best teacher epoch 1 of 3" in findings[0]["this run"]


def test_checkpoint_stats_sample_of_transfer_images(data, checkpointed):
    few = ts.checkpoint_stats({0: checkpointed[0]}, data, epochs=[3], n_transfer_images=100)[0]
    every = ts.checkpoint_stats({0: checkpointed[0]}, data, epochs=[3], n_transfer_images=None)[0]
    assert few["test_acc"] == every["test_acc"] and few["ece"] == every["ece"]
    assert few["entropy_T"] != every["entropy_T"] and abs(few["entropy_T"] - every["entropy_T"]) < 0.3
