"""Panels and figures of lesson 10, driven headless on synthetic results shaped like the real
ones (no training): set a control, check what the figure and the status now say."""

from __future__ import annotations

import pytest
import torch

from labkd.widgets import online as wo

SANITY_MS = 1000  # far above the 50 ms target: only catches a callback that trains or loops badly


def test_outcome_counts_partition_the_test_images():
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    p = torch.tensor([[0, 1, 9, 9, 7, 8],
                      [0, 9, 2, 9, 6, 8]])
    c = wo.outcome_counts(p, y)
    assert list(c) == list(wo.OUTCOMES) and sum(c.values()) == pytest.approx(1.0)
    assert c["both right"] == pytest.approx(1 / 6) and c["only student 0 right"] == pytest.approx(1 / 6)
    assert c["only student 1 right"] == pytest.approx(1 / 6)
    assert c["both wrong, same answer"] == pytest.approx(2 / 6) and c["both wrong, different answers"] == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="predictions"):
        wo.outcome_counts(p[:1], y)


def test_mutual_panel_epoch_slider_moves_the_breakdown():
    rows, targets = wo._synthetic_rows(seeds=2, epochs=12, every=3, n=400)
    panel = wo.MutualPanel(rows, targets)
    assert list(panel.epoch.options) == [3, 6, 9, 12] and panel.epoch.value == 12
    late = list(panel.figure.data[4].y)
    assert panel.figure.layout.shapes[0].x0 == 12
    panel.select(epoch=3)
    assert list(panel.figure.data[4].y) != late and panel.figure.layout.shapes[0].x0 == 3
    assert "epoch 3" in panel.status.value and "agree on" in panel.status.value
    split = panel.breakdown()
    assert sum(split.values()) == pytest.approx(1.0)
    # the curves are the chosen seed's: student 0, student 1, alone, agreement
    y0 = list(panel.figure.data[0].y)
    panel.select(seed=1)
    assert len(panel.figure.data[0].x) == 4 and len(panel.figure.data[2].x) == 4
    assert list(panel.figure.data[3].y) == [h["agreement"] for h in rows[3]["history"]]
    assert y0 == list(panel.figure.data[0].y)  # synthetic seeds share their curves
    print(f"mutual epoch slider: {panel.last_update_ms:.1f} ms")
    assert panel.last_update_ms < SANITY_MS
    with pytest.raises(ValueError, match="epoch"):
        panel.select(epoch=4)
    with pytest.raises(ValueError, match="seed"):
        panel.select(seed=9)


def test_mutual_panel_rejects_bad_inputs():
    rows, targets = wo._synthetic_rows(seeds=1, epochs=6, every=3, n=50)
    with pytest.raises(ValueError, match="rows"):
        wo.MutualPanel([], targets)
    with pytest.raises(TypeError, match="targets"):
        wo.MutualPanel(rows, [0, 1])
    with pytest.raises(ValueError, match="targets"):
        wo.MutualPanel(rows, targets[:10])


def test_born_again_panel_ensembles_the_ticked_generations():
    ban = wo._synthetic_ban(generations=3, seeds=3, n=500)
    panel = wo.BornAgainPanel(ban)
    assert panel.members == [0, 1, 2, 3] and len(panel.figure.data[1].y) == 3
    panel.select([2])
    # an "ensemble" of one generation is that generation
    assert list(panel.figure.data[1].y) == pytest.approx(ban.accuracy(2))
    assert "generation 2" in panel.status.value and "Δ =" in panel.status.value
    panel.select([0, 1])
    assert "generations 0, 1" in panel.status.value
    # the panel's cached softmax outputs give the library's ensemble accuracy, seed by seed
    from labkd.online import ensemble_accuracy

    for members in ([0, 1], [1, 3], [0, 1, 2, 3]):
        expected = [ensemble_accuracy(ban.test_logits[s], ban.test_targets, 0, members=members) for s in ban.seeds]
        assert panel.ensemble(members) == pytest.approx(expected)
    with pytest.raises(ValueError, match="distinct generations"):
        panel.ensemble([1, 1])
    panel.boxes[0].value = False
    panel.boxes[1].value = False
    assert len(panel.figure.data[1].y) == 0 and "at least one" in panel.status.value
    print(f"born-again checkbox: {panel.last_update_ms:.1f} ms")
    assert panel.last_update_ms < SANITY_MS
    with pytest.raises(ValueError, match="members"):
        panel.select([7])
    with pytest.raises(ValueError, match="ban"):
        wo.BornAgainPanel(None)


def test_static_figures():
    rows, _ = wo._synthetic_rows(seeds=3, epochs=6, every=3, n=50)
    fig = wo.mutual_figure(rows)
    assert len(fig.data) == 3 and all(len(t.y) == 2 for t in fig.data)
    ban = wo._synthetic_ban(generations=2, seeds=2, n=100)
    fig = wo.born_again_figure(ban)
    assert len(fig.data) == 4 and list(fig.data[0].y) == [r["test_acc"] for r in ban.rows if r["seed"] == 0]


def test_benchmark_hooks_run():
    cases = wo.benchmark_cases()
    assert set(cases) == {"epoch", "generation_checkbox"}
    for call in cases.values():
        call()
