"""labkd.widgets.taxonomy: the lesson-11 panel, driven headless on a real snapshot (untrained
models: the panel does not care how good they are) and on the synthetic benchmark snapshot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labkd import load_data, taxonomy, taxonomy_figures
from labkd.widgets import taxonomy as panel_module

SANITY_MS = 500  # generous bound; the lesson promises well under 50 ms


@pytest.fixture(scope="module")
def snapshot() -> taxonomy_figures.RelationSnapshot:
    data = load_data("digits", val_size=100).subset(n_train=64, n_val=32, n_test=200)
    teacher = taxonomy.build_teacher(data, seed=0)
    students = {m: taxonomy.build_student(data, seed=i) for i, m in enumerate(("KD", "AT", "RKD"))}
    return taxonomy_figures.relation_snapshot(teacher, students, data, per_class=2)


@pytest.fixture
def panel(snapshot) -> panel_module.TaxonomyPanel:
    return panel_module.TaxonomyPanel(snapshot)


def test_snapshot_is_grouped_by_class_and_consistent(snapshot) -> None:
    assert snapshot.labels.tolist() == sorted(snapshot.labels.tolist())
    assert snapshot.methods == ["KD", "AT", "RKD"]
    n = len(snapshot.images)
    for name in ("teacher", *snapshot.methods):
        assert snapshot.probs[name].shape == (n, 10)
        assert torch.allclose(snapshot.distances[name], snapshot.distances[name].T)
        assert snapshot.attention[name].flatten(1).norm(dim=1).allclose(torch.ones(n), atol=1e-5)
    assert set(snapshot.scores["AT"]) == {"kl", "attention", "relation"}


def test_panel_shows_the_chosen_image_and_student(panel, snapshot) -> None:
    panel.method.value, panel.image.value = "AT", 3
    data = panel.figure.data
    np.testing.assert_allclose(np.asarray(data[0].z), snapshot.images[3, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(data[2].z), snapshot.attention["AT"][3].numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(data[4].y), snapshot.probs["AT"][3].numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(data[6].z), snapshot.distances["AT"].numpy(), rtol=1e-6)
    assert list(data[7].y)[:2] == [2.5, 2.5]  # the box marks row 3
    assert "AT student, image 3" in panel.figure.layout.title.text
    before = np.asarray(data[6].z).copy()
    panel.method.value = "RKD"
    assert not np.allclose(np.asarray(panel.figure.data[6].z), before)
    np.testing.assert_allclose(np.asarray(panel.figure.data[5].z), snapshot.distances["teacher"].numpy(), rtol=1e-6)


def test_panel_reads_out_per_image_distances(panel, snapshot) -> None:
    panel.method.value, panel.image.value = "KD", 0
    p, q = snapshot.probs["teacher"][0], snapshot.probs["KD"][0]
    kl = float((p * (p.log() - q.log())).sum())
    assert f"{kl:.4f}" in panel.info.value


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="snapshot"):
        panel_module.TaxonomyPanel("not a snapshot")
    with pytest.raises(ValueError, match="method='FitNets'"):
        panel_module.TaxonomyPanel(panel_module._synthetic_snapshot(), method="FitNets")


def test_update_is_fast(panel) -> None:
    times = []
    for i in range(7):
        panel.image.value = i % 5 + 1 if panel.image.value == 0 else 0
        times.append(panel.last_update_ms)
    median = sorted(times)[3]
    print(f"TaxonomyPanel.update: median {median:.1f} ms")
    assert median < SANITY_MS


def test_benchmark_cases_move_the_panel() -> None:
    cases = panel_module.benchmark_cases()
    assert set(cases) == {"image", "method"}
    for case in cases.values():
        case()
        case()
