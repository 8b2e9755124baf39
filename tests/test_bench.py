"""``labkd bench``: structure and arithmetic of the benchmark on tiny sizes (never its speed)."""

from __future__ import annotations

import dataclasses
import json
import math
import types

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from labkd import bench, bench_cases
from labkd.data import DatasetNotFoundError, load_data
from labkd.models import build_model

TINY = bench.BenchSettings(
    batch_size=32, tutorial_batch_size=16, tutorial_workers=0, rounds=2, seconds_per_case=0.01,
    warmup_steps=1, min_steps=2, max_steps=3, n_eval=16, peak_size=64, peak_repeats=2,
    dataloader_warmup_batches=1, widget_repeats=3, deadline_seconds=None,
)

REQUIRED = (
    "peak_gflops", "labkd_samples_per_s", "dataloader_samples_per_s", "speedup_vs_dataloader",
    "fraction_of_peak", "jitter_slowdown", "distill_samples_per_s", "batch_size",
)



@pytest.fixture(scope="module")
def mnist():
    try:
        data = load_data("mnist", download=False)
    except DatasetNotFoundError as error:
        pytest.skip(f"MNIST is not available: {error}")
    return data.subset(n_train=1000, n_val=100, n_test=100)


@pytest.fixture(scope="module")
def result(mnist):
    return bench.run(TINY, data=mnist, widgets=False)


def _positive_finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# --------------------------------------------------------------------------------------------
# FLOPs


def test_flop_formula_on_a_known_small_mlp() -> None:
    model = build_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=(5, 7))
    # 16*5 + 5*7 + 7*3 = 136 MACs; the first layer (80 MACs) computes no input gradient
    assert bench_cases.linear_macs(model) == (136, 80)
    assert bench_cases.training_flops_per_sample(model) == {"macs": 136, "executed": 6 * 136 - 2 * 80, "six_mac": 816}


def test_flop_formula_of_hinton_teacher() -> None:
    flops = bench_cases.training_flops_per_sample(build_model("hinton_teacher"))
    assert flops["macs"] == 784 * 1200 + 1200 * 1200 + 1200 * 10
    assert flops["six_mac"] == 6 * flops["macs"]
    assert flops["executed"] == flops["six_mac"] - 2 * 784 * 1200


@pytest.mark.parametrize("hidden", [(5, 7), (12,), (9, 3, 4)])
def test_executed_flops_match_what_torch_counts(hidden) -> None:
    """torch's own FLOP counter over a forward + backward agrees with the formula per example."""
    model = build_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=hidden)
    x = torch.randn(8, 1, 4, 4)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    assert counter.get_total_flops() == 8 * bench_cases.training_flops_per_sample(model)["executed"]


def test_linear_macs_rejects_a_model_without_linear_layers() -> None:
    with pytest.raises(ValueError, match="no nn.Linear"):
        bench_cases.linear_macs(torch.nn.ReLU())


# --------------------------------------------------------------------------------------------
# Pieces


def test_matmul_peak_is_a_positive_rate() -> None:
    peak = bench_cases.matmul_peak(64, 3)
    assert _positive_finite(peak["gflops"]) and _positive_finite(peak["median_gflops"])
    assert peak["median_gflops"] <= peak["gflops"]
    assert peak["gflops"] == pytest.approx(2 * 64 ** 3 / peak["best_seconds"] / 1e9)
    with pytest.raises(ValueError, match="size"):
        bench_cases.matmul_peak(0)


def test_percentile_interpolates() -> None:
    assert bench_cases.percentile([3, 1, 2], 50) == 2
    assert bench_cases.percentile([0, 10], 95) == pytest.approx(9.5)
    assert bench_cases.percentile([4], 95) == 4
    with pytest.raises(ValueError):
        bench_cases.percentile([], 50)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        bench.BenchSettings(batch_size=0)
    with pytest.raises(ValueError, match="min_steps"):
        bench.BenchSettings(min_steps=10, max_steps=5)
    with pytest.raises(ValueError, match="seconds_per_case"):
        bench.BenchSettings(seconds_per_case=-1)
    with pytest.raises(ValueError, match="deadline_seconds"):
        bench.BenchSettings(deadline_seconds=0)


def test_check_targets_compares_with_the_bounds() -> None:
    checks = bench.check_targets({"speedup_vs_dataloader": 5.0, "fraction_of_peak": 0.45, "jitter_slowdown": 1.3})
    assert checks["speedup_vs_dataloader"]["met"] is True
    assert checks["fraction_of_peak"]["met"] is False
    assert checks["jitter_slowdown"]["met"] is True  # the bound is inclusive


def test_finite_or_none_makes_strict_json() -> None:
    cleaned = bench.finite_or_none({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2}})
    assert cleaned == {"a": None, "b": [1.0, None], "c": {"d": 2}}
    json.dumps(cleaned, allow_nan=False)


# --------------------------------------------------------------------------------------------
# Widget latency hook


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def test_widget_latency_times_each_case_and_tolerates_broken_modules() -> None:
    calls = {"slider": 0, "picker": 0}

    def cases():
        def slider():
            calls["slider"] += 1

        def picker():
            calls["picker"] += 1
        return {"slider": slider, "picker": picker}

    def broken_case():
        raise RuntimeError("figure missing")

    modules = [
        ("labkd.widgets.good", _module("good", benchmark_cases=cases)),
        ("labkd.widgets.no_hook", _module("no_hook")),
        ("labkd.widgets.half", _module("half", benchmark_cases=lambda: {"bad": broken_case})),
        ("labkd.widgets.setup_fails", _module("setup_fails", benchmark_cases=lambda: 1 / 0)),
        ("labkd.widgets.unimportable", ImportError("no module named plotly_extra")),
    ]
    latency, errors = bench_cases.widget_latency(repeats=4, modules=modules)
    assert set(latency) == {"good.slider", "good.picker"}
    assert calls == {"slider": 5, "picker": 5}  # one warm-up call + 4 timed
    for stats in latency.values():
        assert stats["n"] == 4
        assert 0 <= stats["median"] <= stats["p95"] <= stats["max"]
    assert set(errors) == {"half.bad", "setup_fails", "unimportable"}
    assert "figure missing" in errors["half.bad"] and "ZeroDivisionError" in errors["setup_fails"]
    assert "import failed" in errors["unimportable"]


def test_widget_modules_finds_the_package_modules() -> None:
    names = [name for name, _ in bench_cases.widget_modules()]
    assert all(name.startswith("labkd.widgets.") for name in names)
    assert names == sorted(names)


def test_every_panel_module_has_latency_cases_and_they_run() -> None:
    """Every widgets module offers ``benchmark_cases()``, so ``labkd bench`` times every slider."""
    modules = bench_cases.widget_modules()
    missing = [name for name, module in modules if not hasattr(module, "benchmark_cases")]
    assert not missing, f"widget modules without benchmark_cases(): {missing}"
    latency, errors = bench_cases.widget_latency(repeats=1, modules=modules)
    assert not errors, errors
    for name, module in modules:
        short = name.rsplit(".", 1)[-1]
        assert any(case.startswith(short + ".") for case in latency), f"{short}: no case was timed"


# --------------------------------------------------------------------------------------------
# The whole run, tiny


def test_run_reports_every_key_as_a_positive_number(result) -> None:
    for key in REQUIRED:
        assert _positive_finite(result[key]), (key, result[key])
    for key in ("cpu", "cores", "torch", "torch_threads"):
        assert result["machine"][key]
    assert result["batch_size"] == TINY.batch_size
    assert set(result["cases"]) == {"labkd", "labkd_no_dropout", "jitter", "labkd_tutorial_batch", "distill",
                                     "dataloader"}
    for name, case in result["cases"].items():
        assert case["rounds"] == TINY.rounds, name
        assert case["median_samples_per_s"] <= case["best_samples_per_s"], name
    assert result["cases"]["dataloader"]["batch_size"] == TINY.tutorial_batch_size
    assert result["cases"]["labkd"]["batch_size"] == TINY.batch_size
    assert set(result["targets"]) == {"speedup_vs_dataloader", "fraction_of_peak", "jitter_slowdown"}
    assert result["rounds"] == TINY.rounds
    measured = result["peak"]["gflops_per_measurement"]
    assert len(measured) == 1 + TINY.rounds  # at the start and after every round
    assert result["peak_gflops"] == pytest.approx(max(measured), abs=0.01)


def test_run_ratios_are_computed_from_their_parts(result) -> None:
    r = result
    assert r["labkd_samples_per_s"] == r["cases"]["labkd"]["best_samples_per_s"]
    assert r["speedup_vs_dataloader"] == pytest.approx(r["labkd_samples_per_s"] / r["dataloader_samples_per_s"])
    assert r["speedup_vs_dataloader_same_batch"] == pytest.approx(
        r["labkd_tutorial_batch_samples_per_s"] / r["dataloader_samples_per_s"])
    assert r["dropout_slowdown"] == pytest.approx(r["labkd_no_dropout_samples_per_s"] / r["labkd_samples_per_s"])
    assert r["jitter_slowdown"] == pytest.approx(r["labkd_samples_per_s"] / r["jitter_samples_per_s"])
    flops = r["train_flops_per_sample"]
    assert flops == bench_cases.training_flops_per_sample(build_model("hinton_teacher"))["executed"]
    assert r["train_gflops"] == pytest.approx(r["labkd_samples_per_s"] * flops / 1e9)
    assert r["fraction_of_peak"] == pytest.approx(r["train_gflops"] / r["peak_gflops"])
    assert r["fraction_of_peak_6mac"] == pytest.approx(r["fraction_of_peak"] * r["train_flops_per_sample_6mac"] / flops)


def test_run_result_is_json_and_formats_as_a_table(result) -> None:
    text = json.dumps(bench.finite_or_none(result), allow_nan=False)
    assert json.loads(text)["batch_size"] == TINY.batch_size
    table = bench.format_table(result)
    assert "speedup vs DataLoader" in table and "targets:" in table and "distillation" in table


def test_main_prints_one_json_object(monkeypatch, capsys, mnist) -> None:
    real_run = bench.run
    # a deadline already passed after the first round: the second round is skipped
    monkeypatch.setattr(bench, "QUICK", dataclasses.replace(TINY, rounds=2, deadline_seconds=1e-6))
    monkeypatch.setattr(bench, "run", lambda settings, log=None: real_run(settings, data=mnist, widgets=False, log=log))
    assert bench.main(quick=True, as_json=True) == 0
    out = capsys.readouterr().out
    parsed = json.loads(out)  # exactly one object: json.loads rejects trailing text
    assert parsed["quick"] is True and parsed["rounds"] == 1 and parsed["settings"]["rounds"] == 2
    assert all(case["rounds"] == 1 for case in parsed["cases"].values())
    assert parsed["speedup_vs_dataloader"] > 0


def test_main_without_mnist_says_so_and_exits_1(monkeypatch, capsys) -> None:
    def missing(settings, log=None):
        raise DatasetNotFoundError("mnist is not in /nowhere/MNIST/raw")
    monkeypatch.setattr(bench, "run", missing)
    assert bench.main(quick=True, as_json=True) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "needs MNIST" in captured.err and "/nowhere" in captured.err
