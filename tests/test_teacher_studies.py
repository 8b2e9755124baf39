"""Lessons 04-05: labkd.teacher_studies (shared), labkd.teacher_size and labkd.early_stopping.

Real (tiny) training on the bundled 8x8 digits, 2-3 epochs, so the whole file runs in seconds;
the cache (a temporary folder, see conftest) is shared by the tests of this session.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labkd import load_data, metrics, stats
from labkd import early_stopping as es
from labkd import teacher_size as tsz
from labkd import teacher_studies as ts
from labkd.experiments import train_model
from labkd.models import build_model, num_parameters
from labkd.train import TrainConfig

TEACHERS = [(16, 16), (64, 64)]
STUDENT = (8, 8)
SEEDS = [0, 1]
TEACHER = TrainConfig(epochs=3, batch_size=32, lr=0.05, eval_every=3)
KD = TrainConfig(epochs=3, batch_size=32, optimizer="adam", lr=0.003, loss="distillation", eval_every=3)


@pytest.fixture(scope="module")
def data():
    return load_data("digits", val_size=200)


@pytest.fixture(scope="module")
def family(data):
    return tsz.train_teacher_family(data, TEACHERS, SEEDS, TEACHER, progress=False)


@pytest.fixture(scope="module")
def grid(data, family):
    return tsz.distil_grid(data, family, [STUDENT], KD, settings=[(4.0, 0.9), (2.0, 0.5)], progress=False)


@pytest.fixture(scope="module")
def schedules(data):
    return es.train_schedule_teachers(data, (32, 32), [1, 3], SEEDS, TEACHER, progress=False)


# -- shared: names, rows, choices and claims -----------------------------------------------


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


def test_entropy_bits():
    assert ts.entropy_bits(torch.zeros(3, 8)) == pytest.approx(3.0)  # uniform over 8 classes: 3 bits
    sharp = torch.tensor([[20.0, 0.0, 0.0, 0.0]])
    assert ts.entropy_bits(sharp) < 1e-6 < ts.entropy_bits(sharp, temperature=10.0) < 2.0


def test_summarize_and_compare():
    rows = [{"g": "a", "test_acc": v} for v in (0.90, 0.92, 0.94)] + [{"g": "b", "test_acc": 0.5}]
    out = {s["g"]: s for s in ts.summarize(rows, ["g"])}
    assert out["a"]["mean"] == pytest.approx(0.92)
    assert out["a"]["std"] == pytest.approx(np.std([0.90, 0.92, 0.94], ddof=1))
    assert out["b"]["std"] == 0.0 and out["b"]["n"] == 1
    with pytest.raises(KeyError, match="nope"):
        ts.summarize(rows, ["nope"])
    with pytest.raises(ValueError, match="empty"):
        ts.summarize([], ["g"])
    clear = ts.compare([0.95, 0.951, 0.949], [0.90, 0.901, 0.899], "big", "small")
    assert clear["significant"] and "big is better" in clear["verdict"]
    assert not ts.compare([0.99], [0.5])["significant"]


def test_choose_uses_validation_and_claims_pair_seeds():
    rows = [{"seed": s, "arm": arm, "val_acc": v, "test_acc": t}
            for s in (0, 1) for arm, v, t in (("a", 0.90, 0.99), ("b", 0.95, 0.80))]
    assert ts.choose(rows, ["arm"])["arm"] == "b", "the choice follows validation, not test accuracy"
    assert ts.choose(rows, ["arm"], metric="test_acc")["arm"] == "a"
    with pytest.raises(ValueError, match="no rows match"):
        ts.choose(rows, ["arm"], arm="c")
    assert ts.per_seed(rows, [1, 0], arm="a") == [0.99, 0.99]
    with pytest.raises(ValueError, match="seed=5"):
        ts.per_seed(rows, [5], arm="a")
    fresh = [{"seed": s, "arm": arm, "test_acc": 0.9 + (0.01 if arm == "t" else 0) + s / 1000}
             for s in range(100, 105) for arm in ("t", "c")]
    c = ts.claim_from_rows("t beats c", fresh, list(range(100, 105)), {"arm": "t"}, {"arm": "c"}, "t", "c")
    assert isinstance(c, stats.Claim) and c.shown and c.delta == pytest.approx(0.01)
    dev, fresh_seeds = ts.check_dev_and_fresh([0, 1], [100, 101])
    assert dev == [0, 1] and fresh_seeds == [100, 101]
    with pytest.raises(ValueError, match="fresh_seeds"):
        ts.check_dev_and_fresh([0, 1], [1, 100])


def test_findings_table():
    fig = ts.findings_table([{"claim": "x", "paper": "y", "this run": "z<br>w"}])
    assert fig.data[0].type == "table" and fig.layout.height > 60
    with pytest.raises(ValueError, match="empty"):
        ts.findings_table([])


# -- lesson 04: family, settings grid, choices, assistants ---------------------------------


def test_recipes_fit_the_transfer_set():
    full, fast = tsz.RECIPES.all(False), tsz.RECIPES.all(True)
    assert full["teacher"].jitter == 0 and full["teacher"].loss == "cross_entropy"
    assert full["student"].loss == "distillation" and full["teacher"].epochs > fast["teacher"].epochs
    assert tsz.check_settings(tsz.SETTINGS) == list(tsz.SETTINGS)


def test_bad_arguments_fail_before_training(data, family):
    with pytest.raises(TypeError, match="tuple of layer widths"):
        tsz.distil_grid(data, family, [30], KD)
    with pytest.raises(ValueError, match="empty"):
        tsz.distil_grid(data, family, [], KD)
    with pytest.raises(ValueError, match="empty"):
        tsz.train_teacher_family(data, [], SEEDS, TEACHER)
    with pytest.raises(ValueError, match="twice"):
        tsz.distil_grid(data, family, [(8, 8), (8, 8)], KD)
    with pytest.raises(ValueError, match="loss='distillation'"):
        tsz.distil_grid(data, family, [STUDENT], KD.replace(loss="cross_entropy"))
    with pytest.raises(KeyError, match="seed 7"):
        tsz.distil_grid(data, family, [STUDENT], KD, seeds=[7])
    with pytest.raises(ValueError, match="settings"):
        tsz.distil_grid(data, family, [STUDENT], KD, settings=[])
    with pytest.raises(ValueError, match="temperature"):
        tsz.distil_grid(data, family, [STUDENT], KD, settings=[(0.0, 0.5)])
    with pytest.raises(ValueError, match="alpha"):
        tsz.distil_grid(data, family, [STUDENT], KD, settings=[(4.0, 1.5)])
    with pytest.raises(ValueError, match="teacher"):
        tsz.distil_grid(data, family, [STUDENT], KD, settings={"64-16-16-10": (4.0, 0.9)})
    with pytest.raises(ValueError, match="repeats"):
        tsz.train_teacher_family(data, TEACHERS, [0, 0], TEACHER)
    with pytest.raises(ValueError, match="loss='cross_entropy'"):
        tsz.train_teacher_family(data, TEACHERS, [0], KD)
    with pytest.raises(ValueError, match="assistant_hidden_sizes"):
        tsz.teacher_assistant(data, family, STUDENT, [], KD)


def test_family_rows_and_cache(data, family):
    assert family.hidden_sizes == TEACHERS and family.seeds == SEEDS
    assert family.hidden("64-64-64-10") == (64, 64)
    with pytest.raises(KeyError, match="no teacher called"):
        family.hidden("64-5-5-10")
    assert len(family.rows) == len(TEACHERS) * len(SEEDS)
    for r in family.rows:
        assert 0.5 < r["test_acc"] <= 1 and 0 < r["train_acc"] <= 1
        assert 0 < r["entropy_bits"] <= math.log2(10) + 1e-5
    again = tsz.train_teacher_family(data, TEACHERS[:1], [0], TEACHER, progress=False)
    assert again.get(TEACHERS[0], 0).cached
    assert tsz.teacher_table(family).data[0].type == "table"


def test_grid_rows_are_fair_and_complete(grid, family):
    assert len(grid) == len(SEEDS) * (2 * len(TEACHERS) + 1)
    assert {(r["temperature"], r["alpha"]) for r in grid if r["teacher"] != ts.BASELINE} == {(4.0, 0.9), (2.0, 0.5)}
    for r in grid:
        if r["teacher"] != ts.BASELINE:
            assert r["kl_transfer"] >= 0
            assert r["teacher_acc"] == family.get(r["teacher_hidden"], r["seed"]).final("test_acc")
        else:
            assert "kl_transfer" not in r
    norms = {}
    for r in grid:
        norms.setdefault(r["seed"], set()).add(r["init_norm"])
    assert all(len(v) == 1 for v in norms.values()), "students of one seed must start from identical weights"
    assert all("identical" in line for line in ts.same_start(grid))
    assert "_trained" not in repr(grid[0])


def test_choices_follow_validation(grid, family):
    chosen = tsz.best_settings(grid)
    assert set(chosen) == {family.name(h) for h in TEACHERS}
    for teacher, (t, a) in chosen.items():
        mine = [r for r in grid if r["teacher"] == teacher]
        best = max(ts.summarize(mine, ["temperature", "alpha"], "val_acc"), key=lambda s: s["mean"])
        assert (t, a) == (best["temperature"], best["alpha"])
    assert tsz.best_smaller_teacher(grid, family) == "64-16-16-10"
    picked = tsz.chosen_rows(grid, chosen)
    assert len(picked) == len(SEEDS) * (len(TEACHERS) + 1)
    claim = tsz.size_claim(picked, family, "64-16-16-10", SEEDS)
    assert claim.claim.startswith("(04a)") and not claim.shown  # two seeds can never show a claim
    mimic = tsz.mimicry(grid, family)
    assert [m["teacher"] for m in mimic] == [family.name(h) for h in TEACHERS]
    assert all(m["kl"] >= 0 and 0 < m["entropy_bits"] for m in mimic)
    found = tsz.findings(mimic, [claim])
    assert len(found) == 2 and "bits" in found[0]["this run"]


def test_teacher_assistant_reuses_the_direct_runs(data, family, grid):
    rows = tsz.teacher_assistant(data, family, STUDENT, [(16, 16)], KD, progress=False)
    assert {r["route"] for r in rows} == {"direct", "via TA 64-16-16-10"} and len(rows) == 2 * len(SEEDS)
    for seed in SEEDS:
        direct = next(r for r in rows if r["route"] == "direct" and r["seed"] == seed)
        same = next(r for r in grid if r["teacher"] == "64-64-64-10" and r["seed"] == seed
                    and (r["temperature"], r["alpha"]) == (KD.temperature, KD.alpha))
        assert direct["test_acc"] == same["test_acc"] and direct["cached"]
        assert len({r["init_norm"] for r in rows if r["seed"] == seed}) == 1
    via = [r for r in rows if r["route"] != "direct"]
    assert all(0 <= r["assistant_acc"] <= 1 and r["assistant_hidden"] == (16, 16) for r in via)
    claim = tsz.assistant_claim(rows, "via TA 64-16-16-10", SEEDS)
    assert claim.claim.startswith("(04b)") and claim.seeds == SEEDS


def test_assistant_grid_sets_each_step_and_chooses_on_validation(data, family, grid):
    to_ta, to_student = [(4.0, 0.9), (2.0, 0.5)], [(2.0, 0.5), (4.0, 0.9)]
    rows = tsz.assistant_grid(data, family, STUDENT, [(16, 16)], KD, to_ta, to_student, progress=False)
    assert len(rows) == len(SEEDS) * (len(to_student) + len(to_ta) * len(to_student))
    via = [r for r in rows if r["route"] != "direct"]
    assert {(r["assistant_temperature"], r["assistant_alpha"]) for r in via} == set(to_ta)
    assert {(r["temperature"], r["alpha"]) for r in rows} == set(to_student)
    assert all(0 < r["assistant_bits"] <= math.log2(10) + 1e-5 for r in via)
    for seed in SEEDS:  # direct runs are the grid's students of the largest teacher; every student starts alike
        assert len({r["init_norm"] for r in rows if r["seed"] == seed}) == 1
        for r in (r for r in rows if r["route"] == "direct" and r["seed"] == seed):
            same = next(g for g in grid if g["teacher"] == "64-64-64-10" and g["seed"] == seed
                        and (g["temperature"], g["alpha"]) == (r["temperature"], r["alpha"]))
            assert r["test_acc"] == same["test_acc"] and r["cached"]
    pick = tsz.best_routes(rows)
    direct = max(ts.summarize([r for r in rows if r["route"] == "direct"], ["temperature", "alpha"], "val_acc"),
                 key=lambda s: s["mean"])
    assert pick.direct == (direct["temperature"], direct["alpha"]) and pick.val["direct"] == direct["mean"]
    assert pick.assistant_hidden == (16, 16) and pick.route == "via TA 64-16-16-10"
    assert pick.to_assistant in to_ta and pick.to_student in to_student
    best = [r["val_acc"] for r in via if (r["assistant_temperature"], r["assistant_alpha"]) == pick.to_assistant
            and (r["temperature"], r["alpha"]) == pick.to_student]
    assert pick.val[pick.route] == pytest.approx(sum(best) / len(best))
    # the fresh comparison: one setting per step, the direct route at its own choice
    fresh = tsz.assistant_grid(data, family, STUDENT, [pick.assistant_hidden], KD, [pick.to_assistant],
                               [pick.to_student], direct_settings=[pick.direct], progress=False)
    assert len(fresh) == 2 * len(SEEDS)
    assert tsz.assistant_claim(fresh, pick.route, SEEDS).seeds == SEEDS
    bits = tsz.route_entropies(rows, family, pick)
    assert list(bits) == ["64-64-64-10", pick.route] and all(0 < b <= math.log2(10) + 1e-5 for b in bits.values())
    with pytest.raises(ValueError, match="assistant_settings"):
        tsz.assistant_grid(data, family, STUDENT, [(16, 16)], KD, [], to_student)
    with pytest.raises(ValueError, match="direct_settings"):
        tsz.assistant_grid(data, family, STUDENT, [(16, 16)], KD, to_ta, to_student, direct_settings=[])
    with pytest.raises(ValueError, match="no runs through"):
        tsz.best_routes([r for r in rows if r["route"] == "direct"])


# -- lesson 05: complete schedules and ESKD --------------------------------------------------


def test_schedule_arguments_are_checked(data):
    with pytest.raises(ValueError, match="schedules"):
        es.train_schedule_teachers(data, (32, 32), [1, 2], [0], TEACHER)  # no full (3-epoch) schedule
    with pytest.raises(ValueError, match="schedules"):
        es.train_schedule_teachers(data, (32, 32), [], [0], TEACHER)
    with pytest.raises(ValueError, match="schedules"):
        es.train_schedule_teachers(data, (32, 32), [0, 3], [0], TEACHER)
    with pytest.raises(ValueError, match="stop_epochs"):
        es.check_stop_epochs([3], 3)
    with pytest.raises(ValueError, match="stop_epochs"):
        es.check_stop_epochs([], 3)
    with pytest.raises(ValueError, match="stop_epochs"):
        es.check_stop_epochs([0], 3)
    assert es.check_stop_epochs([2, 1, 2], 3) == [1, 2]


def test_schedule_teachers_are_complete_runs(data, schedules):
    assert sorted(schedules) == [(1, 0), (1, 1), (3, 0), (3, 1)]
    assert len(schedules[(1, 0)].history) == 1 and len(schedules[(3, 0)].history) == 3
    # the full schedule is the lesson-04 teacher of the same recipe: the same cache entry
    same = train_model("mlp", data, TEACHER.replace(seed=0), hidden=(32, 32), progress=False)
    assert same.cached and same.key == schedules[(3, 0)].key
    rows = es.teacher_rows(schedules, data)
    assert len(rows) == 4 and all(0 <= r["ece"] <= 1 and 0 < r["entropy_bits"] <= math.log2(10) for r in rows)


def test_students_from_schedules_and_the_choice(data, schedules):
    rows = es.distil_from_schedules(data, schedules, STUDENT, KD, SEEDS, progress=False)
    assert len(rows) == len(SEEDS) * 3
    for seed in SEEDS:
        assert len({r["init_norm"] for r in rows if r["seed"] == seed}) == 1
    assert es.best_schedule(rows) == 1  # the only shorter schedule
    claim = es.early_teacher_claim(rows, 1, SEEDS)
    assert claim.claim.startswith("(05a)") and claim.treatment == "1-epoch teacher"
    curves = es.schedule_curves(es.teacher_rows(schedules, data), rows)
    assert curves["student"][0] == [1, 3] and curves["baseline"] is not None
    with pytest.raises(KeyError, match="seed 9"):
        es.distil_from_schedules(data, schedules, STUDENT, KD, [9])


def test_eskd_runs_switch_the_loss(data, schedules):
    teachers = {s: schedules[(3, s)] for s in SEEDS}
    with pytest.raises(ValueError, match="stop_epochs"):
        es.eskd_runs(data, teachers, STUDENT, KD, stop_epochs=[3])
    rows = es.eskd_runs(data, teachers, STUDENT, KD, stop_epochs=[1, 2], progress=False)
    assert {r["arm"] for r in rows} == {ts.BASELINE, es.KD_THROUGHOUT, "ESKD k=1", "ESKD k=2"}
    for seed in SEEDS:
        mine = {r["arm"]: r for r in rows if r["seed"] == seed}
        assert len({r["init_norm"] for r in mine.values()}) == 1
        assert mine["ESKD k=1"]["_trained"].key != mine[es.KD_THROUGHOUT]["_trained"].key
    assert es.best_stop(rows) in (1, 2)
    claim = es.eskd_claim(rows, 1, SEEDS)
    assert claim.claim.startswith("(05b)") and claim.control == es.KD_THROUGHOUT
    assert len(es.findings(es.teacher_rows(schedules, data), [claim])) == 2


def test_kd_epochs_is_eskd_in_one_schedule(data, schedules):
    """kd_epochs=k: the first k epochs are exactly KD's, the rest differ; kd_epochs=epochs is KD."""
    teacher = schedules[(3, 0)]
    kd = KD.replace(epochs=3, eval_every=1, seed=0)
    full = train_model("mlp", data, kd, teacher=teacher, hidden=STUDENT, use_cache=False, progress=False)
    eskd = train_model("mlp", data, kd.replace(kd_epochs=1), teacher=teacher, hidden=STUDENT, use_cache=False,
                       progress=False)
    assert eskd.history[0]["loss"] == full.history[0]["loss"]
    assert eskd.history[1]["loss"] != full.history[1]["loss"]
    same = train_model("mlp", data, kd.replace(kd_epochs=3), teacher=teacher, hidden=STUDENT, use_cache=False,
                       progress=False)
    assert same.history[-1]["loss"] == full.history[-1]["loss"]
    with pytest.raises(ValueError, match="kd_epochs"):
        kd.replace(kd_epochs=4)
    with pytest.raises(ValueError, match="kd_epochs"):
        kd.replace(kd_epochs=0)
    with pytest.raises(ValueError, match="kd_epochs"):
        TrainConfig(kd_epochs=1)  # labels only: nothing to stop


def test_soft_targets_and_examples(data, schedules):
    teachers = {e: schedules[(e, 0)] for e in (1, 3)}
    logits = metrics.predict_logits(teachers[3].model, data.train.x)
    chosen = es.pick_examples(logits, data.train.y, 4)
    assert len(chosen) == len(set(chosen)) == 4
    soft = es.soft_targets(teachers, data.train.x[chosen])
    assert soft.shape == (2, 4, 10) and torch.allclose(soft[1], logits[chosen])


def test_teacher_table_of_schedules(data, schedules):
    fig = es.teacher_table(es.teacher_rows(schedules, data))
    assert fig.data[0].type == "table" and list(fig.data[0].cells.values[0]) == ["1 epochs", "3 epochs"]
    assert "bits" in " ".join(fig.data[0].header.values)
    with pytest.raises(ValueError, match="empty"):
        es.teacher_table([])


def test_lesson_05_recipes():
    small = es.RECIPES.all(False)
    assert small["teacher"].jitter == 0 and small["teacher"].epochs == max(es.SCHEDULES)
    assert max(es.STOP_EPOCHS) < small["student"].epochs
    assert es.RECIPES.all(True)["student"].epochs < small["student"].epochs


def test_training_seconds_adds_rows_assistants_and_teachers(family):
    rows = [{"seconds": 1.5}, {"seconds": 2.0, "assistant_seconds": 0.5}, {"seconds": None}]
    assert ts.training_seconds(rows) == pytest.approx(4.0)
    teacher = family.get(TEACHERS[0], 0)
    assert ts.training_seconds(rows, [teacher]) == pytest.approx(4.0 + teacher.seconds)


def test_studies_trained_in_two_processes_give_the_rows_of_one(data, family, tmp_path, monkeypatch):
    # assistants first, then every student: each phase in two processes (labkd.parallel), same weights
    def comparable(rows):
        return [{k: v for k, v in r.items() if k not in ("seconds", "assistant_seconds", "cached", "_trained")} for r in rows]

    one = tsz.teacher_assistant(data, family, STUDENT, [(32, 32)], KD, progress=False)
    monkeypatch.setenv("LABKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LABKD_WORKERS", "2")
    two = tsz.teacher_assistant(data, family, STUDENT, [(32, 32)], KD, progress=False)
    assert all(r["cached"] for r in two)  # trained by the workers, loaded here
    assert comparable(two) == comparable(one)
