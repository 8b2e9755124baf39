"""Lesson 12's panel: method and strength select precomputed variants; the figure follows in place."""

from __future__ import annotations

import pytest

from labkd.widgets import compression as wc
from labkd.compression_figures import tradeoff_figure
from labkd.widgets.compression import CompressionPanel, synthetic_rows

SANITY_MS = 500  # a generous bound: the target is well under 50 ms on a quiet machine


@pytest.fixture
def rows():
    return synthetic_rows()


def _highlight(panel, col=0):
    n = len(panel.groups)
    return panel.figure.data[2 * n + 2 + col]


def test_slider_moves_the_highlight_and_arrows(rows):
    panel = CompressionPanel(rows, method="prune")
    assert panel.strength.description == "sparsity" and not panel.strength.disabled
    panel.select("prune", 0.95)
    print(f"\ncompression panel redraw: {panel.last_update_ms:.1f} ms")
    assert panel.last_update_ms < SANITY_MS
    chosen = [r for r in rows if r["method"] == "prune" and r["strength"] == 0.95]
    hi = _highlight(panel)
    assert list(hi.x) == [r["stored_bytes"] for r in chosen] and list(hi.y) == [r["test_acc"] for r in chosen]
    arrows = panel.figure.data[2 * len(panel.groups)]
    assert len(arrows.x) == 3 * len(chosen) and arrows.x[2] is None
    assert "95%" in panel.readout.value and "smaller" in panel.readout.value
    before = list(hi.x)
    panel.strength.value = 0.5  # what the slider does
    assert list(_highlight(panel).x) != before


def test_size_measure_shows_that_pruning_does_not_shrink_the_dense_file(rows):
    panel = CompressionPanel(rows, method="prune")
    panel.select("prune", 0.9, size="dense_bytes")
    chosen = [r for r in rows if r["method"] == "prune" and r["strength"] == 0.9]
    assert list(_highlight(panel).x) == [r["dense_bytes"] for r in chosen]
    prune_trace = panel.figure.data[2 * panel.groups.index("prune")]
    assert max(prune_trace.x) == max(r["dense_bytes"] for r in rows if r["method"] == "prune")
    assert "dense file" in panel.figure.layout.xaxis.title.text


def test_method_switch_updates_the_slider(rows):
    panel = CompressionPanel(rows)
    panel.select("int8")
    assert panel.strength.disabled and panel.value is None
    assert len(_highlight(panel).x) == 9  # every baseline, quantized
    panel.select("kbit", 2)
    assert [v for _, v in panel.strength.options] == [8, 4, 2] and panel.value == 2
    panel.select("distil", "MLP 32×2")
    assert panel.strength.description == "student" and list(_highlight(panel).text) == ["MLP 32×2 · distil"]
    latency = _highlight(panel, col=1)
    assert list(latency.x) == [r["latency_ms"] for r in rows if r["label"] == "MLP 32×2 · distil"]


def test_clear_errors(rows):
    panel = CompressionPanel(rows)
    with pytest.raises(ValueError, match="unknown"):
        panel.select("distillation")
    with pytest.raises(ValueError, match="not measured at sparsity=0.7"):
        panel.select("prune", 0.7)
    with pytest.raises(ValueError, match="sparsity must be"):
        panel.select("prune", 1.5)
    with pytest.raises(ValueError, match="no strength"):
        panel.select("int8", 8)
    with pytest.raises(ValueError, match="rows is empty"):
        CompressionPanel([])
    with pytest.raises(ValueError, match="size="):
        tradeoff_figure(rows, size="megabytes")
    only_prune = [r for r in rows if r["method"] in ("float32", "prune")]
    with pytest.raises(ValueError, match="was not measured in these rows"):
        CompressionPanel(only_prune).select("int8")


def test_static_figure_and_benchmark_cases(rows):
    fig = tradeoff_figure(rows, method="kbit", strength=4)
    assert fig.layout.xaxis.type == "log" and len(fig.data[-2].x) == 9
    for name, case in wc.benchmark_cases().items():
        case()
        case()


# --- lesson 12's second panel: a combination the student chooses ---------------------------------


def test_combination_panel_measures_what_the_student_chose():
    from labkd import build_model
    from labkd import compression_methods as cp
    from labkd import data as datasets
    from labkd.widgets.compression import CombinationPanel, synthetic_rows

    data = datasets.load_data("digits")
    mlp = build_model("mlp", data.input_shape, data.num_classes, seed=0, hidden=(64, 64))
    panel = CombinationPanel({"mlp": mlp}, data, synthetic_rows(), latency_batch_size=16, runs=1)
    n_traces = len(panel.figure.data)
    panel.select(model="mlp", sparsity=0.9, number_format="4-bit")
    row = panel.measure()
    assert len(panel.figure.data) == n_traces, "updated in place, no new traces"
    assert row["label"] == "mlp · pruned 90% · 4-bit"
    assert row["stored_bytes"] < row["from"]["stored_bytes"] and row["sparsity"] >= 0.85
    assert list(panel.figure.data[-2].x) == [row["stored_bytes"]] and list(panel.figure.data[-1].x) == [row["latency_ms"]]
    assert "mlp · pruned 90% · 4-bit" in panel.readout.value
    panel.select(sparsity=0.0, number_format="float32")
    same = panel.measure()
    assert same["test_acc"] == pytest.approx(same["from"]["test_acc"]) and len(panel.figure.data[-2].x) == 2
    with pytest.raises(ValueError, match="number_format"):
        panel.select(number_format="3-bit")
    with pytest.raises(ValueError, match="model"):
        panel.select(model="cnn")
    with pytest.raises(ValueError, match="sparsity"):
        cp.combine(mlp, 1.5)
