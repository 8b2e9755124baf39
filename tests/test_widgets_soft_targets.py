"""labkd.widgets.soft_targets: the panels of lesson 01, driven headless (no browser)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labkd import soft_targets as dk
from labkd.data import Split
from labkd.widgets import soft_targets as st

NAMES = [f"class {i}" for i in range(10)]
#: Generous sanity bound on one callback: the lesson promises well under 50 ms.
SANITY_MS = 500


@pytest.fixture(scope="module")
def test_split() -> tuple[torch.Tensor, Split]:
    g = torch.Generator().manual_seed(1)
    y = torch.arange(2000) % 10
    logits = torch.randn(2000, 10, generator=g) * 2
    logits[torch.arange(2000), y] += 5.0
    images = torch.randn(2000, 1, 28, 28, generator=g)
    return logits, Split(images, y)


@pytest.fixture
def panel(test_split) -> st.SoftTargetPanel:
    logits, split = test_split
    menu = dk.example_menu(logits, split.y, NAMES)
    return st.SoftTargetPanel(logits, split, NAMES, examples=menu)


def test_css_classes_for_the_browser_tests(panel) -> None:
    assert "labkd-temperature-slider" in panel.temperature._dom_classes
    assert "labkd-entropy" in panel.readout._dom_classes
    assert "labkd-probability-plot" in panel.figure._dom_classes
    assert panel.figure in panel.widget.children


def test_slider_is_log_scale_over_half_to_twenty(panel) -> None:
    slider = panel.temperature
    assert slider.base == 10
    assert 10 ** slider.min == pytest.approx(0.5) and 10 ** slider.max == pytest.approx(20)


def test_moving_the_temperature_redraws_the_bars(panel, test_split) -> None:
    logits, _ = test_split
    i = panel.index
    panel.set_temperature(1.0)
    before = np.array(panel.figure.data[1].y)
    readout_before = panel.readout.value
    panel.set_temperature(8.0)
    after = np.array(panel.figure.data[1].y)
    assert not np.allclose(before, after)
    expected = torch.softmax(logits[i].double() / 8.0, 0).numpy()
    assert np.allclose(after, expected, atol=1e-9)
    assert np.allclose(after.sum(), 1.0)
    assert panel.readout.value != readout_before and "T = 8.00" in panel.readout.value
    assert "soft target at T = 8.00" in panel.figure.layout.annotations[1].text
    print(f"SoftTargetPanel temperature callback: {panel.last_update_ms:.2f} ms")
    assert panel.last_update_ms < SANITY_MS


def test_picking_an_image_shows_it(panel, test_split) -> None:
    logits, split = test_split
    _, second = panel.picker.options[1]
    panel.select(second)
    assert np.allclose(np.array(panel.figure.data[0].z), split.x[second, 0].numpy())
    assert f"#{second}" in panel.figure.layout.annotations[0].text
    expected = torch.softmax(logits[second].double() / panel.temperature.value, 0).numpy()
    assert np.allclose(panel.figure.data[1].y, expected)
    label = int(split.y[second])
    colours = list(panel.figure.data[1].marker.color)
    assert colours[label] == st.COLOUR_LABEL and colours.count(st.COLOUR_LABEL) == 1


def test_log_scale_and_reference_markers(panel) -> None:
    panel.set_temperature(1.0)
    assert panel.figure.data[2].visible is False   # T = 1: the reference equals the bars
    panel.set_temperature(4.0)
    assert panel.figure.data[2].visible is True
    panel.log_scale.value = True
    assert panel.figure.layout.yaxis2.type == "log"
    assert min(panel.figure.data[1].y) >= st.LOG_FLOOR
    panel.log_scale.value = False
    assert panel.figure.layout.yaxis2.type == "linear"


def test_entropy_readout_matches_the_formula(panel, test_split) -> None:
    logits, _ = test_split
    panel.set_temperature(2.0)
    p = torch.softmax(logits[panel.index].double() / 2.0, 0)
    nats = float(-(p * p.log()).sum())
    assert f"entropy {nats:.2f} nats ({nats / math.log(2):.2f} bits)" in panel.readout.value


def test_entropy_text() -> None:
    p = np.array([0.931, 0.05, 0.019] + [0.0] * 7)
    text = st.entropy_text(p, [str(i) for i in range(10)], label=1)
    assert text.startswith("entropy ") and "nats (" in text and " bits)" in text
    assert "top class 0 (93.1%)" in text and "3 of 10 classes above 1%" in text and "label 1 (5.0%)" in text
    assert "label" not in st.entropy_text(p, [str(i) for i in range(10)], label=0)


def test_slider_picker_without_examples_and_hidden_temperature(test_split) -> None:
    logits, split = test_split
    browser = st.SoftTargetPanel(logits, split, NAMES, show_temperature=False)
    assert browser.picker.max == len(split) - 1
    assert browser.temperature.layout.display == "none"
    browser.select(17)
    assert np.allclose(browser.figure.data[1].y, torch.softmax(logits[17].double(), 0).numpy())
    assert browser.figure.layout.annotations[1].text == "predicted probabilities"


@pytest.mark.parametrize("change, words", [
    (dict(class_names=NAMES[:3]), "class_names"),
    (dict(examples=[]), "examples"),
    (dict(examples=[("too far", 5000)]), "index"),
    (dict(temperature=-1.0), "temperature"),
])
def test_soft_target_panel_rejects_bad_arguments(test_split, change, words) -> None:
    logits, split = test_split
    kwargs = {**dict(logits=logits, split=split, class_names=NAMES), **change}
    with pytest.raises(ValueError, match=words):
        st.SoftTargetPanel(**kwargs)


def test_soft_target_panel_needs_matching_rows(test_split) -> None:
    logits, split = test_split
    with pytest.raises(ValueError, match="rows|shape"):
        st.SoftTargetPanel(logits[:10], split, NAMES)


def test_dark_knowledge_panel_matches_the_library(test_split) -> None:
    logits, split = test_split
    panel = st.DarkKnowledgePanel(logits, split.y, NAMES, temperature=4.0)
    assert "labkd-matrix-temperature-slider" in panel.temperature._dom_classes
    expected = dk.soft_target_matrix(logits, split.y, 4.0).double().numpy()
    assert np.allclose(panel.matrix, expected, atol=1e-6)
    z = np.array(panel.figure.data[0].z, dtype=float)
    assert np.isnan(np.diag(z)).all()
    off = ~np.eye(10, dtype=bool)
    assert np.allclose(z[off], expected[off], atol=1e-6)
    assert "right)" in panel.figure.layout.yaxis.ticktext[0]

    readout, before = panel.readout.value, z.copy()
    panel.set_temperature(15.0)
    after = np.array(panel.figure.data[0].z, dtype=float)
    assert not np.allclose(before[off], after[off])
    assert panel.readout.value != readout and "T = 15.00" in panel.readout.value
    print(f"DarkKnowledgePanel temperature callback (N = {len(split)}): {panel.last_update_ms:.2f} ms")
    assert panel.last_update_ms < SANITY_MS


def test_dark_knowledge_panel_pairs_agree_with_library(test_split) -> None:
    logits, split = test_split
    panel = st.DarkKnowledgePanel(logits, split.y, NAMES, temperature=2.0, pairs=3)
    library = dk.most_confused_pairs(dk.soft_target_matrix(logits, split.y, 2.0), k=3)
    assert [(a, b) for a, b, _ in panel.top_pairs()] == [(p.first, p.second) for p in library]
    for a, b, _ in panel.top_pairs():
        assert f"{NAMES[a]}↔{NAMES[b]}" in panel.readout.value
    with pytest.raises(ValueError, match="pairs"):
        st.DarkKnowledgePanel(logits, split.y, NAMES, pairs=0)
