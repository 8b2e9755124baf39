"""labkd.fitnets: the two FitNets stages, the three-way comparison, hint maps and figures.

Runs on a few hundred 8x8 digits (the CNNs' maps are then 8x8 / 4x4 / 2x2), one epoch per stage.
"""

from __future__ import annotations

import pytest
import torch

from labkd import fitnets, load_data
from labkd.models import build_model, num_parameters

FAST = fitnets.plan(fast=True)


@pytest.fixture(scope="module")
def data():
    return load_data("digits", val_size=200).subset(n_train=256, n_val=64, n_test=128)


@pytest.fixture(scope="module")
def teacher(data):
    return fitnets.train_teacher(data, FAST, progress=False)


@pytest.fixture(scope="module")
def config():
    """Three epochs in all: two of stage 1 and one of stage 2 for the FitNet."""
    return FAST.student.replace(batch_size=32, epochs=3)


@pytest.fixture(scope="module")
def fitnet(data, teacher, config):
    return fitnets.train_fitnet(data, teacher, config=config, stage1_epochs=2, progress=False)


# --- recipes ---------------------------------------------------------------------------------


def test_plan_fast_and_full() -> None:
    assert FAST.seeds == (0,) and FAST.epochs == FAST.stage1_epochs == 1
    assert FAST.n_train is None and FAST.n_val is None
    full = fitnets.plan(fast=False, seeds=3, seed=5)
    assert full.seeds == (5, 6, 7) and full.epochs > 1 and full.n_train is not None
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="seeds"):
            fitnets.plan(fast=False, seeds=bad)
    with pytest.raises(ValueError, match="n_train"):
        fitnets.plan(fast=False, n_train=0)


def test_recipes_are_data_and_plans_apply_their_sizes() -> None:
    # the plan's recipes: PLAN_RECIPES with the plan's epochs and batch size (fast mode: its changes)
    full = fitnets.plan(fast=False, epochs=6, teacher_epochs=4)
    assert full.teacher == fitnets.PLAN_RECIPES["teacher"].replace(epochs=4)
    assert full.student == fitnets.PLAN_RECIPES["student"].replace(epochs=6)
    assert FAST.teacher == fitnets.PLAN_RECIPES("teacher", True)
    assert FAST.student == fitnets.PLAN_RECIPES("student", True)
    assert full.teacher.jitter > 0 and full.student.loss == "cross_entropy"
    # lesson 03's regime reads its recipes from fitnets.RECIPES in both modes
    for fast in (False, True):
        run = fitnets.regime(fast=fast)
        assert run.teacher == fitnets.RECIPES("teacher", fast) and run.student == fitnets.RECIPES("student", fast)
        assert run.stage1_epochs < run.epochs == run.student.epochs
    assert fitnets.RECIPES("student", True).epochs <= fitnets.RECIPES["student"].epochs


def test_lesson_data_cuts_only_the_training_split(data) -> None:
    cut = fitnets.lesson_data(data, fitnets.plan(fast=False, n_train=100))
    assert len(cut.train) == 100 and len(cut.test) == len(data.test) and len(cut.val) == len(data.val)
    assert torch.equal(cut.test.x, data.test.x)
    assert fitnets.lesson_data(data, FAST) is data
    assert fitnets.lesson_data(data, fitnets.plan(fast=False, n_train=10**6)) is data


def test_the_student_is_deeper_and_has_fewer_parameters() -> None:
    rows = fitnets.model_table(fitnets.build_teacher(), fitnets.build_student())
    teacher, student = rows
    assert student["conv layers"] > teacher["conv layers"]
    assert student["params"] < teacher["params"] / 2
    # the default hint and guided layers give maps of the same size: a 1x1 regressor suffices
    t = fitnets.build_teacher().feature_shape(fitnets.HINT_LAYER)
    s = fitnets.build_student().feature_shape(fitnets.GUIDED_LAYER)
    assert t[1:] == s[1:] and t[0] > s[0]


# --- the two stages --------------------------------------------------------------------------


def test_stage1_trains_only_up_to_the_guided_layer(fitnet) -> None:
    before = fitnet.student_before().state_dict()
    after = fitnet.stage1.model.state_dict()
    names = fitnet.stage1.model.feature_names
    guided = names.index(fitnet.guided_layer)
    for i, layer in enumerate(names):
        weight = f"blocks.{layer}.0.weight"
        changed = not torch.equal(before[weight], after[weight])
        assert changed == (i <= guided), f"{layer}: changed={changed}, guided layer is {fitnet.guided_layer}"
    assert torch.equal(before["head.2.weight"], after["head.2.weight"])
    assert fitnet.regressor is not None and fitnet.stage1.history[-1]["loss"] >= 0


def test_the_before_state_is_what_training_started_from(teacher, fitnet) -> None:
    from labkd import objectives

    # the regressor train_model trains: the hint objective's, built seeded with the config's seed
    expected = objectives.prepare(fitnet.stage1_config, fitnet.student_before(), teacher.model, None).regressor
    before = fitnet.regressor_before(teacher).state_dict()
    assert before.keys() == expected.state_dict().keys()
    assert all(torch.equal(before[k], v) for k, v in expected.state_dict().items())
    assert not torch.equal(before["0.weight"], fitnet.regressor.state_dict()["0.weight"])


def test_stage1_counts_in_the_budget(fitnet, config) -> None:
    assert len(fitnet.stage1.history) == 2
    assert len(fitnet.stage1.history) + len(fitnet.stage2.history) == config.epochs


def test_a_budget_without_room_for_stage2_is_rejected(data, teacher, config) -> None:
    for bad in (3, 4):
        with pytest.raises(ValueError, match=f"stage1_epochs={bad}"):
            fitnets.train_fitnet(data, teacher, config=config, stage1_epochs=bad, progress=False)
        with pytest.raises(ValueError, match="stage1_epochs"):
            fitnets.compare_methods(data, teacher, [0], config, stage1_epochs=bad, progress=False)
    with pytest.raises(ValueError, match="stage1_epochs"):
        fitnets.train_fitnet(data, teacher, config=config, stage1_epochs=0, progress=False)


def test_stage2_starts_from_stage1_and_trains_everything(fitnet) -> None:
    s1, s2 = fitnet.stage1.model.state_dict(), fitnet.stage2.model.state_dict()
    assert not torch.equal(s1["head.2.weight"], s2["head.2.weight"])
    assert fitnet.seconds == pytest.approx(fitnet.stage1.seconds + fitnet.stage2.seconds)
    assert 0.0 <= fitnet.final() <= 1.0


def test_the_hint_loss_goes_down_in_stage1(data, teacher, fitnet) -> None:
    snap = fitnets.hint_snapshot(teacher, fitnet, data, n_images=4)
    assert snap.loss_after < snap.loss_before
    assert snap.hint.shape == snap.before.shape == snap.after.shape
    assert snap.hint.shape[:2] == (4, teacher.model.feature_shape(fitnets.HINT_LAYER)[0])
    assert snap.images.shape == (4, *data.input_shape)


def test_both_stages_are_cached(data, teacher, config, fitnet) -> None:
    again = fitnets.train_fitnet(data, teacher, config=config, stage1_epochs=2, progress=False)
    assert again.stage1.cached and again.stage2.cached
    assert again.final() == fitnet.final()
    seen = []
    fitnets.train_fitnet(data, teacher, config=config, stage1_epochs=2, progress=False,
                         on_stage=lambda stage, trained: seen.append((stage, trained.cached)))
    assert seen == [("stage1", True), ("stage2", True)]


@pytest.mark.parametrize("argument, value, valid", [
    ("hint_layer", "conv7", "conv1"),
    ("guided_layer", "fc1", "conv6"),
])
def test_unknown_layers_are_rejected_with_the_valid_names(data, teacher, config, argument, value, valid) -> None:
    with pytest.raises(ValueError, match=rf"{argument}=.*{value}.*{valid}"):
        fitnets.train_fitnet(data, teacher, config=config, progress=False, **{argument: value})
    with pytest.raises(ValueError, match=argument):
        fitnets.compare_methods(data, teacher, [0], config, progress=False, **{argument: value})


def test_stage_configs_are_checked(data, teacher, config) -> None:
    with pytest.raises(ValueError, match="stage1_config"):
        fitnets.train_fitnet(data, teacher, stage1_config=config, progress=False)
    with pytest.raises(ValueError, match="stage2_config"):
        fitnets.train_fitnet(data, teacher, stage2_config=config.replace(
            loss="hint", hint_layer="conv1", guided_layer="conv3"), progress=False)


# --- the comparison --------------------------------------------------------------------------


def test_compare_methods_rows(data, teacher, config, fitnet) -> None:
    rows = fitnets.compare_methods(data, teacher, [0], config, stage1_epochs=2, progress=False)
    assert [r["method"] for r in rows] == list(fitnets.METHODS)
    assert {r["params"] for r in rows} == {num_parameters(fitnet.model)}
    assert rows[2]["accuracy"] == fitnet.final()  # the same cached run
    assert all(r["seconds"] >= 0 and 0 <= r["accuracy"] <= 1 for r in rows)
    assert all(r["curve"][-1] == r["accuracy"] for r in rows)
    # the same budget: stage 1 counts, so every curve ends at epoch config.epochs
    assert [r["offset"] + len(r["curve"]) for r in rows] == [config.epochs] * 3
    assert [r["offset"] for r in rows] == [0, 0, 2]
    assert len({r["start_norm"] for r in rows}) == 1  # one starting point for the three methods
    assert all(0 <= r["val_accuracy"] <= 1 for r in rows)
    with pytest.raises(ValueError, match="seeds"):
        fitnets.compare_methods(data, teacher, [], config)
    two = fitnets.compare_methods(data, teacher, [0], config, stage1_epochs=2, progress=False,
                                  methods=("KD", "hints + KD"))
    assert [r["method"] for r in two] == ["KD", "hints + KD"] and two[1]["accuracy"] == fitnet.final()
    for bad in ((), ("labels",), "KD"):
        with pytest.raises(ValueError, match="methods"):
            fitnets.compare_methods(data, teacher, [0], config, stage1_epochs=2, methods=bad)


def test_baselines_trained_beside_the_fitnets_give_the_rows_of_one_process(data, teacher, config, tmp_path,
                                                                           monkeypatch) -> None:
    one = fitnets.compare_methods(data, teacher, [0, 1], config, stage1_epochs=2, progress=False)
    monkeypatch.setenv("LABKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LABKD_WORKERS", "2")
    two = fitnets.compare_methods(data, teacher, [0, 1], config, stage1_epochs=2, progress=False)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in two] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in one]
    assert fitnets.baseline_run(data, "KD", config.replace(seed=1), teacher).train(data).cached


def test_every_method_starts_from_the_same_weights(data, config) -> None:
    a = fitnets.build_student(data.input_shape, data.num_classes, seed=config.seed)
    b = build_model(fitnets.STUDENT, data.input_shape, data.num_classes, seed=config.seed)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def _rows(accuracies: dict[str, list[float]], early: float = 0.5) -> list[dict]:
    """Rows as compare_methods makes them; curves go from ``early`` (hints + KD: +0.3) to the final value."""
    return [{"method": m, "seed": 100 + s, "accuracy": a, "val_accuracy": a - 0.01, "params": 100, "seconds": 1.0,
             "curve": [early + (0.3 if m == "hints + KD" else 0.0) + 0.01 * s, a],
             "offset": 1 if m == "hints + KD" else 0}
            for m, values in accuracies.items() for s, a in enumerate(values)]


def test_summarize() -> None:
    rows = _rows({"KD": [0.90, 0.91, 0.92], "hints + KD": [0.95, 0.96, 0.97]})
    summary = fitnets.summarize(rows)
    assert [r["method"] for r in summary] == ["KD", "hints + KD"]
    assert summary[0]["test accuracy %"] == "91.00 ± 1.00" and summary[1]["validation accuracy %"] == "95.00 ± 1.00"


def test_paired_claim_pairs_seed_by_seed() -> None:
    rows = _rows({"KD": [0.10, 0.11, 0.12, 0.10, 0.11], "hints + KD": [0.60, 0.70, 0.65, 0.80, 0.75]})
    c = fitnets.paired_claim(rows, "hints beat KD")
    assert c.shown and c.seeds == [100, 101, 102, 103, 104] and c.delta == pytest.approx(0.592)
    assert "SHOWN" in c.verdict and c.treatment == "hints + KD" and c.control == "KD"
    assert fitnets.paired_claim(rows, "on validation", metric="val_accuracy").metric == "validation accuracy"
    close = _rows({"KD": [0.90, 0.93, 0.96, 0.91, 0.95], "hints + KD": [0.91, 0.92, 0.97, 0.90, 0.95]})
    assert not fitnets.paired_claim(close, "no effect").shown
    three = _rows({"KD": [0.1, 0.1, 0.1], "hints + KD": [0.9, 0.9, 0.95]})
    assert not fitnets.paired_claim(three, "too few seeds").shown  # fewer than stats.MIN_SEEDS
    with pytest.raises(ValueError, match="scratch"):
        fitnets.paired_claim(rows, "x", control="scratch")
    with pytest.raises(ValueError, match="metric"):
        fitnets.paired_claim(rows, "x", metric="loss")


# --- lesson 03's regime ----------------------------------------------------------------------


def test_thin_students_are_plain_and_thin() -> None:
    options = fitnets.thin_student(10)
    model = build_model("cnn", seed=0, **options)
    assert len(model.feature_names) == 10
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert {m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)} == {fitnets.WIDTH}
    # the guided layer gives 7x7 maps like the teacher's hint: a 1x1 regressor suffices
    for depth in (2, 3, 10, 16):
        student = fitnets.build_thin_student(depth)
        guided = student.feature_shape(fitnets.guided_layer_for(depth))
        assert guided[1:] == fitnets.build_teacher().feature_shape(fitnets.HINT_LAYER)[1:] == (7, 7)
    assert fitnets.guided_layer_for(10) == "conv8" and fitnets.guided_layer_for(3) == "conv2"


@pytest.mark.parametrize("kwargs, argument", [
    ({"depth": 0}, "depth"), ({"depth": 1}, "depth"), ({"depth": -3}, "depth"), ({"depth": 2.5}, "depth"),
    ({"depth": True}, "depth"), ({"depth": 10, "width": 0}, "width"),
])
def test_bad_students_name_the_parameter(kwargs, argument) -> None:
    with pytest.raises(ValueError, match=argument):
        fitnets.thin_student(**kwargs)


def test_regime_full_and_fast() -> None:
    full = fitnets.regime(fast=False, seed=0)
    # 100-104 and 110-114 judged earlier regimes: this one is confirmed on seeds never used
    assert full.seeds == (120, 121, 122, 123, 124) and not set(full.seeds) & set(fitnets.DEV_SEEDS)
    assert fitnets.regime(fast=False, seed=3, seeds=6).seeds == tuple(range(123, 129))
    assert full.depths["deep"] > full.depths["shallow"]
    assert 1 <= full.stage1_epochs < full.epochs == full.config().epochs
    assert full.config(seed=7).seed == 7 and full.guided_layer("deep") == f"conv{full.depths['deep']}"
    for run in (full, fitnets.regime(fast=True)):
        for student in run.depths:
            assert run.hints(student) == tuple(zip(run.hint_layers(student), run.guided_layers(student)))
            assert run.stage1_epochs % len(run.hints(student)) == 0
    assert full.options("shallow") == fitnets.thin_student(full.depths["shallow"])
    fast = fitnets.regime(fast=True, seed=2)
    assert fast.seeds == (2,) and fast.n_train < full.n_train and fast.stage1_epochs < fast.epochs
    with pytest.raises(ValueError, match="student"):
        full.options("medium")
    for kwargs, argument in (({"seeds": 0}, "seeds"), ({"deep": 0}, "depth"), ({"shallow": 1}, "depth"),
                             ({"shallow": 2}, "depth"),
                             ({"seed": -1}, "seed")):
        with pytest.raises(ValueError, match=argument):
            fitnets.regime(fast=False, **kwargs)


def test_the_lesson_teacher_is_the_cached_wide_cnn(data) -> None:
    run = fitnets.regime(fast=True)
    teacher = fitnets.train_lesson_teacher(data, run, progress=False)
    assert teacher.model.spec["channels"] == list(fitnets.TEACHER_OPTIONS["channels"])
    assert len(teacher.history) == run.teacher.epochs
    assert fitnets.train_lesson_teacher(data, run, progress=False).cached


def test_compare_methods_with_a_thin_student(data, teacher) -> None:
    run = fitnets.regime(fast=True)
    options = fitnets.thin_student(3)
    rows = fitnets.compare_methods(data, teacher, [0], run.config(), run.stage1_epochs, run.hint_layers("shallow"),
                                   run.guided_layers("shallow"), student_arch="cnn", progress=False, **options)
    assert [r["method"] for r in rows] == list(fitnets.METHODS)
    assert {r["params"] for r in rows} == {num_parameters(build_model("cnn", data.input_shape, seed=0, **options))}
    assert [r["offset"] + len(r["curve"]) for r in rows] == [run.epochs] * 3


def test_stacked_hints_pair_each_teacher_layer_with_a_student_layer_of_its_map_size() -> None:
    teacher = fitnets.build_teacher()
    for depth in (3, 4, 8, 10, 16):
        pairs = fitnets.hint_pairs_for(depth)
        student = fitnets.build_thin_student(depth)
        # the teacher's conv1, then its conv2 twice (its conv3 was not learnt through 16 channels)
        assert [h for h, _ in pairs] == ["conv1", "conv2", "conv2"]
        guided = [int(g.removeprefix("conv")) for _, g in pairs]
        assert guided == sorted(set(guided)) and guided[-1] == depth  # bottom first, distinct, the top last
        for h, g in pairs:
            assert student.feature_shape(g)[1:] == teacher.feature_shape(h)[1:]
    for depth in (0, 2, 2.5):
        with pytest.raises(ValueError, match="depth"):
            fitnets.hint_pairs_for(depth)


def test_stacked_hints_train_one_after_the_other_within_the_budget(data, teacher) -> None:
    options = fitnets.thin_student(3)
    pairs = fitnets.hint_pairs_for(3)
    config = fitnets.STUDENT_RECIPE.replace(epochs=4, batch_size=32)
    result = fitnets.train_fitnet(data, teacher, "cnn", [h for h, _ in pairs], [g for _, g in pairs], config,
                                  stage1_epochs=3, progress=False, **options)
    assert [(t.history and len(t.history)) for t in result.stage1_steps] == [1, 1, 1]
    assert result.stage1 is result.stage1_steps[-1] and (result.hint_layer, result.guided_layer) == pairs[-1]
    assert len(result.stage2.history) == config.epochs - 3
    assert result.seconds == pytest.approx(sum(t.seconds for t in result.stage1_steps) + result.stage2.seconds)
    # each hint starts from the previous one's weights: the first layer moved on in every step
    firsts = [t.model.blocks["conv1"][0].weight for t in result.stage1_steps]
    assert not torch.equal(firsts[0], firsts[1]) and not torch.equal(firsts[1], firsts[2])
    hints, guided = [h for h, _ in pairs], [g for _, g in pairs]
    with pytest.raises(ValueError, match="stage1_epochs"):
        fitnets.train_fitnet(data, teacher, "cnn", hints, guided, config, stage1_epochs=2, progress=False, **options)
    with pytest.raises(ValueError, match="same length"):
        fitnets.train_fitnet(data, teacher, "cnn", hints, guided[:2], config, stage1_epochs=3, progress=False,
                             **options)


# --- maps and figures ------------------------------------------------------------------------


def test_the_students_clip_their_gradient_but_stage_1_does_not(data, teacher) -> None:
    # the regime's recipe clips every arm's gradient norm (stage 2 of a hinted plain student collapsed
    # without it); the hint regression of stage 1 trains unclipped at its own rate
    assert fitnets.STUDENT_RECIPE.clip_norm is not None and fitnets.regime(fast=True).student.clip_norm is not None
    options = fitnets.thin_student(3)
    pairs = fitnets.hint_pairs_for(3)
    config = fitnets.STUDENT_RECIPE.replace(epochs=4, batch_size=32)
    result = fitnets.train_fitnet(data, teacher, "cnn", [h for h, _ in pairs], [g for _, g in pairs], config,
                                  stage1_epochs=3, stage1_lr=0.2, progress=False, **options)
    assert result.stage1_config.clip_norm is None and result.stage1_config.lr == 0.2
    assert len(result.stage2.history) == 1
    for bad in (0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="clip_norm"):
            config.replace(clip_norm=bad)


def test_hint_maps_shapes(data, teacher, fitnet) -> None:
    x = data.test.x[:3]
    hint, regressed = fitnets.hint_maps(teacher, fitnet.stage1, fitnet.regressor, x)
    assert hint.shape == regressed.shape == (3, *teacher.model.feature_shape(fitnets.HINT_LAYER))
    one_hint, one_regressed = fitnets.hint_maps(teacher, fitnet.stage1, fitnet.regressor, x[0])
    assert torch.allclose(one_hint, hint[0], atol=1e-5) and torch.allclose(one_regressed, regressed[0], atol=1e-5)
    assert fitnet.stage1.model.training is False
    with pytest.raises(ValueError, match="hint_layer"):
        fitnets.hint_maps(teacher, fitnet.stage1, fitnet.regressor, x, hint_layer="conv9")
    with pytest.raises(ValueError, match="x must be"):
        fitnets.hint_maps(teacher, fitnet.stage1, fitnet.regressor, x[0, 0, 0])


def test_threads_are_restored() -> None:
    before = torch.get_num_threads()
    with fitnets.threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), fitnets.threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_busiest_channels() -> None:
    hint = torch.zeros(5, 4, 4)
    hint[3] = torch.randn(4, 4, generator=torch.Generator().manual_seed(0)) * 10
    hint[1] = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))
    assert fitnets.busiest_channels(hint, 2) == [3, 1]
    with pytest.raises(ValueError, match="C, H, W"):
        fitnets.busiest_channels(hint[0])


def test_figures(data, teacher, fitnet) -> None:
    snap = fitnets.hint_snapshot(teacher, fitnet, data, n_images=2)
    fig = fitnets.hint_figure(snap, image=1, channels=[0, 2])
    assert len(fig.data) == 6
    assert f"{snap.loss_before:.3f}" in fig.layout.title.text
    rows = _rows({"scratch": [0.8, 0.82], "KD": [0.85, 0.86], "hints + KD": [0.9, 0.88]})
    comparison = fitnets.comparison_figure(rows, teacher_accuracy=0.95)
    assert len(comparison.data) == 6 and list(comparison.data[1].y) == pytest.approx([81.0])
    curves = fitnets.curves_figure(rows)
    assert [t.name for t in curves.data] == list(fitnets.METHODS)
    assert list(curves.data[2].x) == [2, 3]  # hints + KD starts after its stage-1 epoch
    assert list(curves.data[0].y) == pytest.approx([50.5, 81.0])
    # epochs that were not evaluated (eval_every > 1: NaN) are left out, the last one is kept
    for r in rows:
        r["curve"][0] = float("nan")
    sparse = fitnets.curves_figure(rows)
    assert list(sparse.data[0].x) == [2] and list(sparse.data[0].y) == pytest.approx([81.0])
