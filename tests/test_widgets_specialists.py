"""Panels of lesson 08, driven headless on synthetic tensors: move a control, check the figure changed.

Recompute times are printed (``pytest -s``) and only checked against a generous sanity bound.
"""

from __future__ import annotations

import pytest
import torch

from labkd.specialists_combine import cluster_classes
from labkd.specialists_figures import covariance_heatmap
from labkd.widgets.specialists import ClusterPanel, CombinationPanel, _synthetic, benchmark_cases

SANITY_MS = 1000  # far above the 50 ms target: only catches a callback that trains or loops badly


@pytest.fixture()
def synthetic():
    return _synthetic()


def test_cluster_panel_slider_regroups(synthetic):
    _, _, names, p_g, *_ = synthetic
    panel = ClusterPanel(p_g, names, k=3, k_values=[2, 3, 5])
    z3, text3 = [list(r) for r in panel.figure.data[0].z], panel.text.value
    assert list(panel.figure.data[1].x).count(None) == 3 and text3.count("<b>") == 3
    panel.slider.value = 5
    print(f"\ncluster panel redraw: {panel.last_update_ms:.2f} ms")
    assert panel.last_update_ms < SANITY_MS
    assert list(panel.figure.data[1].x).count(None) == 5 and panel.text.value.count("<b>") == 5
    assert list(panel.figure.layout.xaxis.ticktext) == [names[c] for g in panel.groups[5] for c in g]
    assert panel.groups[5] == cluster_classes(p_g, 5)
    assert [list(r) for r in panel.figure.data[0].z] != z3 or panel.figure.layout.xaxis.ticktext != text3
    with pytest.raises(ValueError, match="k=7"):
        ClusterPanel(p_g, names, k=7, k_values=[2, 3])
    with pytest.raises(ValueError, match="one column per class"):
        ClusterPanel(p_g[:, :4], names)


def test_covariance_heatmap_masks_the_diagonal():
    probs = torch.softmax(torch.randn(30, 4, generator=torch.Generator().manual_seed(0)), 1)
    groups = [[0, 2], [1, 3]]
    fig = covariance_heatmap(torch.cov(probs.T), groups, ["a", "b", "c", "d"])
    z = fig.data[0].z
    assert all(z[i][i] is None or z[i][i] != z[i][i] for i in range(4))  # blank (None or NaN) diagonal
    assert list(fig.layout.xaxis.ticktext) == ["a", "c", "b", "d"]


def test_combination_panel_picks_an_image(synthetic):
    images, labels, names, p_g, p_m, groups, q, active = synthetic
    panel = CombinationPanel(images, labels, names, p_g, p_m, groups, q, active)
    first = panel.choices[0]
    assert list(panel.figure.data[1].y[:10]) == pytest.approx(p_g[first].tolist())
    other = next(i for i in panel.choices if bool(active[i, 0]) and i != first)
    panel.picker.value = other
    print(f"\ncombination panel redraw: {panel.last_update_ms:.2f} ms")
    assert panel.last_update_ms < SANITY_MS
    assert list(panel.figure.data[-1].y[:10]) == pytest.approx(q[other].tolist())
    bars = list(panel.figure.data[2].y)
    assert bars[groups[0][0]] == pytest.approx(float(p_m[0][other, 0]))
    assert bars[-1] == pytest.approx(float(p_m[0][other, -1]))  # its dustbin column
    assert all(bars[c] is None for c in range(10) if c not in groups[0])
    assert f"#{other}" in panel.figure.layout.title.text
    inactive = next(i for i in panel.choices if not bool(active[i].any()))
    panel.picker.value = inactive
    assert all(v is None for v in panel.figure.data[2].y) and "no active specialist" in panel.status.value


def test_combination_panel_offers_changed_images_first(synthetic):
    images, labels, names, p_g, p_m, groups, q, active = synthetic
    panel = CombinationPanel(images, labels, names, p_g, p_m, groups, q, active)
    changed = (p_g.argmax(1) != q.argmax(1)).nonzero().squeeze(1).tolist()
    assert panel.choices[: min(len(changed), 60)] == changed[:60]
    with pytest.raises(ValueError, match="one entry"):
        CombinationPanel(images, labels, names, p_g, p_m[:1], groups, q, active)
    with pytest.raises(ValueError, match="choices"):
        CombinationPanel(images, labels, names, p_g, p_m, groups, q, active, choices=[10_000])


def test_benchmark_cases_run():
    cases = benchmark_cases()
    assert set(cases) == {"clusters_k", "test_image"}
    for case in cases.values():
        case()
        case()
