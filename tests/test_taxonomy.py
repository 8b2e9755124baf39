"""Lesson 11's library: the ``feature_kd`` objective of ``fit`` and labkd.taxonomy (with its
``taxonomy_results`` and ``taxonomy_figures``).

Everything runs on the 8x8 digits with the lesson's CNNs (their last layers give 2x2 maps there),
one or two epochs, so the file stays fast. No test asserts a measured accuracy.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from labkd import taxonomy, taxonomy_figures, taxonomy_results
from labkd.data import load_data
from labkd.train import TrainConfig, fit

FAST = taxonomy.plan(fast=True)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", val_size=100).subset(n_train=320, n_val=64, n_test=128)


@pytest.fixture(scope="module")
def teacher(digits):
    return taxonomy.train_teacher(digits, FAST, progress=False)


@pytest.fixture(scope="module")
def students(digits):
    return taxonomy.student_data(digits, dataclasses.replace(FAST, n_train=160))


def feature_config(**changes) -> TrainConfig:
    base = dict(epochs=1, batch_size=32, lr=0.05, loss="feature_kd", alpha=0.0, feature_loss="attention",
                hint_layer=taxonomy.HINT_LAYER, guided_layer=taxonomy.GUIDED_LAYER)
    return TrainConfig(**{**base, **changes})


def student(data, seed: int = 0):
    return taxonomy.build_student(data, seed=seed)


# --- TrainConfig(loss="feature_kd") ----------------------------------------------------------


@pytest.mark.parametrize("changes, word", [
    ({"feature_loss": "crd"}, "feature_loss='crd'"),
    ({"feature_loss": None}, "feature_loss=None"),
    ({"feature_weight": -1.0}, "feature_weight"),
    ({"feature_weight": float("nan")}, "feature_weight"),
    ({"hint_layer": None}, "hint_layer"),
    ({"guided_layer": None}, "guided_layer"),
    ({"loss": "distillation"}, "is only used with loss="),
])
def test_config_rejects_bad_feature_settings(changes, word):
    with pytest.raises(ValueError, match=word.replace("(", r"\(").replace("[", r"\[")):
        feature_config(**changes)


def test_feature_kd_trains_and_logs_the_feature_term(digits, teacher):
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    model = student(digits)
    result = fit(model, digits, feature_config(feature_weight=1.0), teacher=teacher.model, progress=False)
    row = result.history[-1]
    assert math.isfinite(row["loss"]) and 0 <= row["feature_loss"] <= 2 and 0 <= row["train_acc"] <= 1
    assert all(torch.equal(before[k], v) for k, v in teacher.model.state_dict().items()), "the teacher changed"
    assert not teacher.model.training


def test_the_feature_term_pulls_the_student_towards_the_teacher(digits, teacher):
    x = digits.test.x[:100]
    far = fit(student(digits), digits, feature_config(feature_weight=0.0, epochs=2), teacher=teacher.model,
              progress=False)
    near = fit(student(digits), digits, feature_config(feature_weight=5.0, epochs=2), teacher=teacher.model,
               progress=False)
    d_far = taxonomy.probe(far.model, teacher, x)["attention"]
    d_near = taxonomy.probe(near.model, teacher, x)["attention"]
    assert d_near < d_far, (d_near, d_far)


def test_feature_kd_with_beta_zero_is_distillation(digits, teacher):
    kd = fit(student(digits), digits, TrainConfig(epochs=1, batch_size=32, loss="distillation"), teacher=teacher.model,
             progress=False)
    fkd = fit(student(digits), digits, feature_config(alpha=0.9, feature_weight=0.0), teacher=teacher.model,
              progress=False)
    assert fkd.history[0]["loss"] == pytest.approx(kd.history[0]["loss"], rel=1e-4)
    assert fkd.history[0]["test_acc"] == pytest.approx(kd.history[0]["test_acc"], abs=0.02)


def test_layers_are_checked_before_training(digits, teacher):
    with pytest.raises(ValueError, match="guided_layer"):  # 4x4 student maps against 2x2 teacher maps
        fit(student(digits), digits, feature_config(guided_layer="conv1"), teacher=teacher.model, progress=False)
    with pytest.raises(ValueError, match="hint_layer='conv9'"):
        fit(student(digits), digits, feature_config(hint_layer="conv9"), teacher=teacher.model, progress=False)
    with pytest.raises(ValueError, match="needs the teacher model"):
        fit(student(digits), digits, feature_config(), teacher_logits=torch.zeros(len(digits.train), 10),
            progress=False)


# --- the regime: plan, data, models ------------------------------------------------------------


def test_plan_keeps_development_and_fresh_seeds_apart():
    full = taxonomy.plan(fast=False, seed=3)
    assert full.seeds == tuple(range(103, 108)) and full.dev_seeds == taxonomy.DEV_SEEDS
    assert not set(full.seeds) & set(full.dev_seeds)
    assert full.grid == taxonomy.GRID and full.student == taxonomy.RECIPES["student"]
    assert full.n_train < full.teacher_images, "the students must learn from fewer images than the teacher"
    fast = taxonomy.plan(fast=True)
    assert len(fast.seeds) == 1 and len(fast.dev_seeds) == 1 and all(len(g) == 1 for g in fast.grid.values())
    custom = taxonomy.plan(fast=False, n_seeds=6, n_train=500, epochs=3)
    assert len(custom.seeds) == 6 and custom.n_train == 500 and custom.student.epochs == 3


@pytest.mark.parametrize("kwargs, error, word", [
    ({"fast": "yes"}, TypeError, "fast"),
    ({"fast": False, "seed": -1}, ValueError, "seed"),
    ({"fast": False, "n_seeds": 0}, ValueError, "n_seeds"),
    ({"fast": False, "n_train": 0}, ValueError, "n_train"),
    ({"fast": False, "epochs": 2.5}, ValueError, "epochs"),
    ({"fast": False, "dev_seeds": []}, ValueError, "seeds"),
    ({"fast": False, "dev_seeds": [100, 101]}, ValueError, "fresh seeds"),
])
def test_plan_rejects_bad_parameters(kwargs, error, word):
    with pytest.raises(error, match=word):
        taxonomy.plan(**kwargs)


def test_students_learn_from_a_subset_of_the_teachers_images(digits):
    run = dataclasses.replace(FAST, teacher_images=300, n_train=100, n_val=50, n_monitor=40)
    t, s = taxonomy.teacher_data(digits, run), taxonomy.student_data(digits, run)
    assert (len(t.train), len(s.train), len(s.val), len(s.test)) == (300, 100, 50, 40)
    teacher_images = {tuple(x.flatten().tolist()) for x in t.train.x}
    assert all(tuple(x.flatten().tolist()) in teacher_images for x in s.train.x)
    assert torch.equal(t.val.x, s.val.x)
    with pytest.raises(ValueError, match="n_train=1000"):
        taxonomy.student_data(digits, dataclasses.replace(run, n_train=1000))


def test_teacher_and_student_compare_maps_of_one_size(digits):
    t, s = taxonomy.build_teacher(digits), taxonomy.build_student(digits)
    assert t.feature_shape(taxonomy.HINT_LAYER)[1:] == s.feature_shape(taxonomy.GUIDED_LAYER)[1:]
    assert sum(p.numel() for p in s.parameters()) < sum(p.numel() for p in t.parameters())


# --- methods and their settings -----------------------------------------------------------------


def test_methods_change_only_the_loss_and_their_settings():
    base = FAST.student
    for name, method in taxonomy.METHODS.items():
        cfg = method.config(base)
        assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.seed) == (base.lr, base.epochs, base.batch_size, base.seed)
        for settings in taxonomy.GRID[name]:
            tuned = method.config(base, settings)
            assert all(getattr(tuned, k) == v if hasattr(tuned, k) else tuned.objective_options[k] == v
                       for k, v in settings.items())  # CRD's nce_temperature goes into objective_options
    assert taxonomy.METHODS["RKD"].config(base, beta=3.0).feature_weight == 3.0
    assert taxonomy.METHODS["KD"].config(base, {"temperature": 8, "alpha": 0.5}).temperature == 8.0
    assert [r["method"] for r in taxonomy.methods_table()] == list(taxonomy.METHODS_DEFAULT)


@pytest.mark.parametrize("method, settings, beta, word", [
    ("KD", None, 3.0, "beta only applies"),
    ("KD", {"feature_weight": 3.0}, None, "feature_weight"),
    ("labels only", {"temperature": 4.0}, None, "temperature"),
    ("AT", {"lr": 0.1}, None, "lr"),
    ("AT", {"feature_weight": float("inf")}, None, "feature_weight"),
    ("KD", {"temperature": "hot"}, None, "temperature"),
    ("KD", {"alpha": 1.5}, None, "alpha"),
])
def test_bad_settings_name_the_parameter(method, settings, beta, word):
    with pytest.raises(ValueError, match=word):
        taxonomy.METHODS[method].config(FAST.student, settings, beta=beta)


def test_bad_methods_and_bases_are_named():
    with pytest.raises(ValueError, match="methods"):
        taxonomy.check_methods(["KD", "FitNets"])
    with pytest.raises(ValueError, match="methods"):
        taxonomy.check_methods(["KD", "KD"])
    with pytest.raises(TypeError, match="base"):
        taxonomy.METHODS["KD"].config({"epochs": 1})
    assert taxonomy.setting_label({"temperature": 4.0, "alpha": 0.9}) == "T=4, α=0.9"
    assert taxonomy.setting_label({}) == "—"


# --- selection on validation ---------------------------------------------------------------------


def test_select_settings_keeps_the_best_validation_setting(students, teacher):
    grid = {"labels only": ({},), "KD": ({"temperature": 2.0, "alpha": 0.5}, {"temperature": 8.0, "alpha": 0.9})}
    run = dataclasses.replace(FAST, dev_seeds=(0, 1))
    seen = []
    sel = taxonomy.select_settings(students, teacher, run, ["labels only", "KD"], grid=grid,
                                   on_run=lambda *a: seen.append(a))
    assert len(sel.rows) == len(seen) == 2 * 3 and sel.seeds == (0, 1)
    means = {}
    for r in sel.rows:
        means.setdefault((r["method"], r["setting"]), []).append(r["val_acc"])
    best = max(grid["KD"], key=lambda s: sum(means[("KD", taxonomy.setting_label(s))]))
    assert sel.settings == {"labels only": {}, "KD": best}
    table = sel.table()
    assert [r["chosen"] for r in table].count("✓") == 2 and all(r["seeds"] == 2 for r in table)
    assert len(taxonomy_figures.selection_figure(sel).data) == 2


def test_kd_based_methods_start_from_kds_chosen_settings(digits, teacher):
    crd_students = taxonomy.student_data(digits, dataclasses.replace(FAST, n_train=300))  # > CRD's 256 negatives
    grid = {"KD": ({"temperature": 2.0, "alpha": 0.5}, {"temperature": 8.0, "alpha": 0.9}),
            "CRD + KD": ({"feature_weight": 0.5},)}
    sel = taxonomy.select_settings(crd_students, teacher, FAST, ["KD", "CRD + KD"], grid=grid, progress=False)
    assert sel.settings["CRD + KD"] == {**sel.settings["KD"], "feature_weight": 0.5}
    crd_row = [r for r in sel.rows if r["method"] == "CRD + KD"][0]
    assert crd_row["setting"] == taxonomy.setting_label({**sel.settings["KD"], "feature_weight": 0.5})
    alone = taxonomy.select_settings(crd_students, teacher, FAST, ["CRD + KD"], grid=grid, progress=False)
    assert alone.settings["CRD + KD"] == {"feature_weight": 0.5}  # without KD: the recipe's T and α
    cfg = taxonomy.METHODS["CRD + KD"].config(FAST.student, alone.settings["CRD + KD"])
    assert (cfg.loss, cfg.alpha, cfg.feature_weight, cfg.hint_layer) == ("crd", 0.9, 0.5, taxonomy.HINT_LAYER)


def test_select_settings_rejects_bad_grids(students, teacher):
    with pytest.raises(ValueError, match="grid has no settings for method 'AT'"):
        taxonomy.select_settings(students, teacher, FAST, ["AT"], grid={"KD": ({},)})
    with pytest.raises(TypeError, match="grid"):
        taxonomy.select_settings(students, teacher, FAST, ["KD"], grid=[{"temperature": 2.0}])
    with pytest.raises(ValueError, match="do not apply"):
        taxonomy.select_settings(students, teacher, FAST, ["AT"], grid={"AT": ({"temperature": 2.0},)})


# --- the comparison and the claims -------------------------------------------------------------


@pytest.fixture(scope="module")
def rows(students, teacher, digits):
    settings = {"KD": {"temperature": 4.0, "alpha": 0.9}, "AT": {"feature_weight": 2.0}}
    return taxonomy.train_students(students, teacher, ["labels only", "KD", "AT"], [100, 101], FAST.student,
                                   settings, test=digits.test, n_probe=64, progress=False)


def test_rows_pair_the_methods_of_each_seed(rows, students, teacher, digits):
    assert [(r["method"], r["seed"]) for r in rows] == [(m, s) for s in (100, 101) for m in ("labels only", "KD", "AT")]
    for seed in (100, 101):
        assert len({r["start_norm"] for r in rows if r["seed"] == seed}) == 1  # the same initial weights
    assert all("identical" in line for line in taxonomy_results.same_start(rows))
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["agreement"] <= 1 and len(r["curve"]) == FAST.student.epochs
        assert set(taxonomy.PROBES) <= set(r)
    at = taxonomy.train_student(students, teacher, "AT", FAST.student.replace(seed=101), {"feature_weight": 2.0})
    assert at.cached and rows[-1]["accuracy"] == taxonomy.test_accuracy(at, digits.test)
    assert rows[-1]["setting"] == "β=2"


def test_the_methods_trained_in_two_processes_give_the_rows_of_one(rows, students, teacher, digits, tmp_path,
                                                                    monkeypatch):
    settings = {"KD": {"temperature": 4.0, "alpha": 0.9}, "AT": {"feature_weight": 2.0}}
    monkeypatch.setenv("LABKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LABKD_WORKERS", "2")
    two = taxonomy.train_students(students, teacher, ["labels only", "KD", "AT"], [100, 101], FAST.student,
                                  settings, test=digits.test, n_probe=64, progress=False)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 6  # trained by the workers under the same keys
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in two] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    run = taxonomy.student_run(students, teacher, "AT", FAST.student.replace(seed=101), settings["AT"])
    assert run.key(students) == taxonomy.train_student(students, teacher, "AT", FAST.student.replace(seed=101),
                                                       settings["AT"]).key


def test_claims_summary_and_findings(rows, teacher, digits):
    found = taxonomy_results.claims(rows)
    assert [c.treatment for c in found] == ["KD", "AT"]  # RKD was not run: its claim is left out
    assert found[0].claim.startswith("(11a)") and found[1].claim.startswith("(11b)")
    assert found[0].expected == 1 and found[1].expected == 0
    for c in found:
        assert c.seeds == [100, 101] and not c.shown and "only 2 paired seeds" in c.verdict
        assert c.extra["seconds"] >= 0
    kd = {r["seed"]: r["accuracy"] for r in rows if r["method"] == "KD"}
    labels = {r["seed"]: r["accuracy"] for r in rows if r["method"] == "labels only"}
    assert found[0].delta == pytest.approx(sum(kd[s] - labels[s] for s in kd) / 2)
    table = taxonomy_results.summary(rows)
    assert table[2]["family"] == "feature" and "±" in table[2]["test accuracy"]
    assert taxonomy.PROBES["kl"] not in taxonomy_results.summary(rows, probes=False)[0]
    lines = taxonomy_results.findings(rows, found, taxonomy.test_accuracy(teacher, digits.test), run=FAST, fast=True)
    assert any("(11a)" in line and "not shown" in line for line in lines)
    assert len(taxonomy_figures.comparison_figure(rows, 0.9).data) == 3 * 4 + 2 * 2
    assert len(taxonomy_figures.match_figure(rows).data[0].z) == 3
    results = taxonomy_results.key_results(rows)
    assert results["at_test_accuracy_pct"] == round(100 * sum(r["accuracy"] for r in rows[2::3]) / 2, 2)
    assert taxonomy_results.best_method(rows) in ("labels only", "KD", "AT")


def _synthetic(kd_gain: float, at_gap: float, noise: float = 0.001) -> list[dict]:
    rows = []
    for i, seed in enumerate(range(100, 105)):
        wobble = noise * (i - 2)
        for method, acc in (("labels only", 0.80), ("KD", 0.80 + kd_gain + wobble), ("AT", 0.80 + kd_gain + at_gap)):
            rows.append({"method": method, "seed": seed, "accuracy": acc, "seconds": 1.0})
    return rows


def test_claims_follow_the_stats_rule():
    clear, within = taxonomy_results.claims(_synthetic(0.02, 0.0))
    assert clear.shown and clear.delta == pytest.approx(0.02)
    assert not within.shown  # AT equals KD up to seed noise
    _, worse = taxonomy_results.claims(_synthetic(0.02, -0.01))
    assert worse.shown and worse.delta < 0, "11b counts a difference of either sign"
    none, _ = taxonomy_results.claims(_synthetic(-0.02, 0.0))
    assert not none.shown and "opposite sign" in none.verdict
    lines = taxonomy_results.findings(_synthetic(0.02, -0.01), taxonomy_results.claims(_synthetic(0.02, -0.01)), 0.9)
    assert any("AT does worse than KD" in line for line in lines)
    assert any("KD helps" in line for line in lines)


def test_bad_arguments_of_the_comparison(students, teacher):
    with pytest.raises(ValueError, match="settings has unknown methods"):
        taxonomy.train_students(students, teacher, ["KD"], [100], FAST.student, {"FitNets": {}})
    with pytest.raises(ValueError, match="n_probe"):
        taxonomy.train_students(students, teacher, ["KD"], [100], FAST.student, n_probe=1)
    with pytest.raises(TypeError, match="test"):
        taxonomy.train_students(students, teacher, ["KD"], [100], FAST.student, test="all")
    with pytest.raises(ValueError, match="repeats"):
        taxonomy.train_students(students, teacher, ["KD"], [100, 100], FAST.student)
    with pytest.raises(ValueError, match="no seed on which both"):
        taxonomy_results.claims([{"method": "KD", "seed": 1, "accuracy": 0.9, "seconds": 1},
                         {"method": "labels only", "seed": 2, "accuracy": 0.8, "seconds": 1}])
    with pytest.raises(ValueError, match="rows is empty"):
        taxonomy_results.findings([], [], 0.9)
    with pytest.raises(ValueError, match="probe_name"):
        taxonomy_results.closest_method([], "angles")


# --- what each student learned -------------------------------------------------------------------


def test_probe_is_zero_for_the_teacher_itself(digits, teacher):
    x = digits.test.x[:50]
    same = taxonomy.probe(teacher, teacher, x, hint_layer="conv3", guided_layer="conv3")
    assert all(abs(v) < 1e-5 for v in same.values()), same
    other = taxonomy.probe(student(digits), teacher, x)
    assert all(v > 0 for v in other.values())
    with pytest.raises(ValueError, match="at least 2 images"):
        taxonomy.probe(teacher, teacher, x[:1])
    with pytest.raises(ValueError, match="batch_size"):
        taxonomy.probe(teacher, teacher, x, batch_size=0)


def test_relation_snapshot_and_attention_figure(digits, teacher):
    snap = taxonomy_figures.relation_snapshot(teacher, {"KD": student(digits)}, digits, per_class=1)
    assert snap.labels.tolist() == list(range(10)) and snap.methods == ["KD"]
    assert snap.distances["teacher"].shape == (10, 10)
    fig = taxonomy_figures.attention_figure(teacher, digits.test.x[:2])
    assert len(fig.data) == 2 * (1 + len(teacher.model.feature_names))
    with pytest.raises(ValueError, match="students is empty"):
        taxonomy_figures.relation_snapshot(teacher, {}, digits)
