"""labkd.widgets.fitnets: the panels of lesson 03, driven headless (no browser)."""

from __future__ import annotations

import numpy as np
import pytest

from labkd import fitnets, load_data
from labkd.widgets import fitnets as panels

#: Generous sanity bound on one recompute callback: the lesson promises well under 50 ms.
SANITY_MS = 500
FAST = fitnets.plan(fast=True)


@pytest.fixture(scope="module")
def setup():
    data = load_data("digits", val_size=200).subset(n_train=256, n_val=64, n_test=128)
    teacher = fitnets.train_teacher(data, FAST, progress=False)
    config = FAST.student.replace(batch_size=32, epochs=2)  # a budget of 2: stage 1 + stage 2
    rows = fitnets.compare_methods(data, teacher, FAST.seeds, config, progress=False)
    fitnet = fitnets.train_fitnet(data, teacher, config=config, progress=False)
    return data, teacher, config, rows, fitnet


@pytest.fixture
def browser(setup) -> panels.HintBrowser:
    data, teacher, _, _, fitnet = setup
    return panels.HintBrowser(fitnets.hint_snapshot(teacher, fitnet, data, n_images=6))


def test_browser_shows_the_chosen_image_and_channel(browser) -> None:
    s = browser.snapshot
    browser.image.value, browser.channel.value = 2, 5
    np.testing.assert_allclose(np.asarray(browser.figure.data[1].z), s.hint[2, 5].flip(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(browser.figure.data[3].z), s.after[2, 5].flip(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(browser.figure.data[0].z), s.images[2, 0].flip(0).numpy(), rtol=1e-6)
    assert "channel 5, image 2" in browser.figure.layout.title.text
    before = np.asarray(browser.figure.data[2].z).copy()
    browser.channel.value = 6
    assert not np.allclose(np.asarray(browser.figure.data[2].z), before)


def test_browser_colour_range_is_shared(browser) -> None:
    browser.channel.value = 1
    lows = {t.zmin for t in browser.figure.data[1:]}
    assert len(lows) == 1


def test_browser_update_is_fast(browser) -> None:
    times = []
    for i in range(5):
        browser.image.value = i
        times.append(browser.last_update_ms)
    print(f"HintBrowser.update: median {sorted(times)[2]:.1f} ms")
    assert sorted(times)[2] < SANITY_MS


def test_regressor_summary() -> None:
    teacher, student = fitnets.build_teacher(), fitnets.build_student()  # 28x28 inputs
    text, n = panels.regressor_summary(student, teacher, "conv4", "conv2")  # (32, 7, 7) -> (64, 7, 7)
    assert "1x1 convolution" in text and n == 32 * 64 + 64
    text, n = panels.regressor_summary(student, teacher, "conv4", "conv1")  # (32, 7, 7) -> (32, 14, 14)
    assert "upsample" in text and n == 32 * 32 + 32
    text, n = panels.regressor_summary(student, teacher, "conv1", "conv3")  # (16, 28, 28) -> (128, 7, 7)
    assert "22x22" in text and n == 16 * 128 * 22 * 22 + 128


def test_pair_panel_starts_with_the_baselines(setup) -> None:
    data, teacher, config, rows, _ = setup
    panel = panels.HintPairPanel(data, teacher, config, rows, progress=False)
    bar = panel.figure.data[0]
    assert list(bar.x)[:2] == ["scratch", "KD"] and len(bar.x) == 3
    assert list(bar.y) == pytest.approx([100 * r["accuracy"] for r in rows])
    assert panel.guided.options == tuple(f"conv{i}" for i in range(1, 7))
    assert panel.hint.options == ("conv1", "conv2", "conv3")
    assert (panel.guided.value, panel.hint.value) == (fitnets.GUIDED_LAYER, fitnets.HINT_LAYER)
    assert "1x1 convolution" in panel.status.value


def test_pair_panel_warns_about_a_huge_regressor(setup) -> None:
    data, teacher, config, rows, _ = setup
    panel = panels.HintPairPanel(data, teacher, config, rows, progress=False)
    panel.guided.value, panel.hint.value = "conv1", "conv3"  # (16, 8, 8) -> (128, 2, 2): a 7x7 kernel
    assert "more parameters than the whole student" in panel.status.value
    panel.guided.value, panel.hint.value = "conv4", "conv1"  # 2x2 maps -> 4x4 maps (digits are 8x8)
    assert "more parameters" not in panel.status.value and "upsample" in panel.status.value
    assert panel.last_update_ms < SANITY_MS


def test_pair_panel_trains_a_new_pair_and_adds_a_bar(setup) -> None:
    data, teacher, config, rows, _ = setup
    panel = panels.HintPairPanel(data, teacher, config, rows, progress=False)
    panel.guided.value, panel.hint.value, panel.epochs.value = "conv3", "conv1", 1
    result = panel.train()
    bar = panel.figure.data[0]
    assert list(bar.x)[-1] == "conv3←conv1, 1 ep" and len(bar.x) == 4
    assert bar.y[-1] == pytest.approx(100 * result.final())
    assert panel.bar.value == 2 and not panel.button.disabled
    assert "Done" in panel.status.value
    again = panel.train()  # the same choice comes from the cache, and replaces its bar
    assert again.stage1.cached and again.stage2.cached and len(panel.figure.data[0].x) == 4
    assert "from the cache" in panel.status.value


def test_pair_panel_reports_a_failure_instead_of_raising(setup, monkeypatch) -> None:
    data, teacher, config, rows, _ = setup
    panel = panels.HintPairPanel(data, teacher, config, rows, progress=False)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(fitnets, "train_fitnet", broken)
    assert panel.train() is None
    assert "failed" in panel.status.value and "out of memory" in panel.status.value
    assert not panel.button.disabled and len(panel.figure.data[0].x) == 3


def test_pair_panel_with_a_thin_student(setup) -> None:
    data, teacher, config, _, _ = setup
    options = fitnets.thin_student(4)
    rows = fitnets.compare_methods(data, teacher, [config.seed], config, 1, guided_layer="conv2", student_arch="cnn",
                                   progress=False, **options)
    panel = panels.HintPairPanel(data, teacher, config, rows, student_arch="cnn", student_options=options,
                                guided_layer="conv2", progress=False)
    assert panel.guided.options == ("conv1", "conv2", "conv3", "conv4") and panel.guided.value == "conv2"
    assert list(panel.figure.data[0].x) == ["scratch", "KD", "conv2←conv2, 1 ep"]
    assert panel.epochs.max == config.epochs - 1  # stage 1 is part of the budget
    panel.guided.value = "conv3"
    result = panel.train()
    assert result is not None and len(result.model.feature_names) == 4
    assert len(result.stage1.history) + len(result.stage2.history) == config.epochs
