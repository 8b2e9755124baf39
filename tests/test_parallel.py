"""Training runs in several processes (labkd.parallel): the same weights as one process, stored in
the cache for the caller to load, divergence left to the caller, bad arguments named."""

from __future__ import annotations

import pytest
import torch

from labkd import parallel, runner, sweeps
from labkd.experiments import model_key, train_model
from labkd.parallel import Run
from labkd.train import TrainConfig, TrainingDivergedError

from conftest import write_notebook
from support import same_weights

CONFIG = TrainConfig(epochs=2, batch_size=64, seed=0)
SMALL = {"hidden": (16,)}


def without_seconds(history: list[dict]) -> list[dict]:
    """A history without its wall-clock times (the one thing two processes may not share)."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def use_cache(monkeypatch, folder) -> None:
    monkeypatch.setenv("LABKD_CACHE", str(folder))
    monkeypatch.setenv("LABKD_PROGRESS", "0")


def test_two_processes_store_the_weights_one_process_would_train_and_leave_divergence_to_the_caller(
        digits, tmp_path, monkeypatch):
    teacher = train_model("mlp", digits, CONFIG.replace(seed=7), use_cache=False, progress=False, hidden=(32,))
    runs = [Run("mlp", CONFIG.replace(seed=s), label=f"seed {s}", **SMALL) for s in (0, 1)]
    runs.append(Run("mlp", CONFIG.replace(seed=0, loss="distillation"), teacher=teacher, **SMALL))
    diverging = Run("mlp", CONFIG.replace(seed=2, weight_decay=1e10), **SMALL)  # finite, explodes the weights

    use_cache(monkeypatch, tmp_path / "parallel")
    assert parallel.train_runs(digits, runs + [diverging, runs[0]], workers=2) == 3
    assert parallel.pending(digits, runs + [diverging]) == [diverging]  # it was not stored
    loaded = [r.train(digits) for r in runs]
    assert all(t.cached for t in loaded)
    with pytest.raises(TrainingDivergedError):  # the caller meets the divergence itself
        train_model("mlp", digits, diverging.config, **SMALL)

    use_cache(monkeypatch, tmp_path / "serial")
    serial = [train_model(r.arch, digits, r.config, teacher=teacher if r.teacher is not None else None, **r.options)
              for r in runs]
    for a, b in zip(loaded, serial, strict=True):
        assert a.key == b.key and not b.cached
        assert same_weights(a.model, b.model)
        assert without_seconds(a.history) == without_seconds(b.history)


def test_a_grid_trained_in_two_processes_gives_the_rows_of_one_process(digits, tmp_path, monkeypatch):
    teacher = train_model("mlp", digits, CONFIG.replace(seed=7), use_cache=False, progress=False, hidden=(32,))
    grid = {"temperatures": [2.0, 8.0], "alphas": [0.5], "seeds": [0, 1], "base_config": CONFIG, "progress": False}
    use_cache(monkeypatch, tmp_path / "parallel")
    two = sweeps.run_grid(digits, teacher, {"s": {"arch": "mlp", **SMALL}}, workers=2, **grid)
    use_cache(monkeypatch, tmp_path / "serial")
    one = sweeps.run_grid(digits, teacher, {"s": {"arch": "mlp", **SMALL}}, workers=1, **grid)
    assert len(two.rows) == len(one.rows) == 6
    assert all(r.cached for r in two.rows) and not any(r.cached for r in one.rows)  # trained before the loop
    for a, b in zip(two.rows, one.rows, strict=True):
        assert (a.temperature, a.seed, a.init) == (b.temperature, b.seed, b.init)
        assert without_seconds(a.history) == without_seconds(b.history)


GRID_IN_A_NOTEBOOK = """from labkd import load_data, TrainConfig, train_model, sweeps
from labkd.results import record
data = load_data("digits", val_size=200)
config = TrainConfig(epochs=1, batch_size=64, seed=0)
teacher = train_model("mlp", data, config, hidden=(32,), use_cache=False, progress=False)
grid = sweeps.run_grid(data, teacher, {"s": {"arch": "mlp", "hidden": (16,)}}, [2.0], [0.5], seeds=[0, 1],
                       base_config=config, progress=False)
record(cached=[row.cached for row in grid.rows])"""


def test_a_notebook_kernel_trains_its_grid_in_the_processes_the_runner_gives_it(tmp_path, monkeypatch):
    # spawned workers must start from a Jupyter kernel, whose __main__ is no importable file
    path = write_notebook(tmp_path / "grid.ipynb", [GRID_IN_A_NOTEBOOK], parameters=None)
    use_cache(monkeypatch, tmp_path / "cache")
    monkeypatch.delenv("LABKD_WORKERS", raising=False)
    result = runner.run_notebook(path, tmp_path / "out", workers=2, html=False)
    assert result.ok, result.error_value
    assert result.results["cached"] == [True] * 4  # every cell trained by the workers, loaded by the kernel


def test_one_worker_or_one_run_trains_nothing_here(digits, cache_folder):
    runs = [Run("mlp", CONFIG.replace(seed=s), **SMALL) for s in (0, 1)]
    assert parallel.train_runs(digits, runs, workers=1) == 0
    assert parallel.train_runs(digits, runs[:1], workers=2) == 0
    assert not list(cache_folder.glob("*.pt"))
    assert parallel.pending(digits, runs) == runs


def test_pending_runs_are_those_whose_key_is_not_in_the_cache(digits, cache_folder):
    trained = train_model("mlp", digits, CONFIG, **SMALL)
    runs = [Run("mlp", CONFIG, **SMALL), Run("mlp", CONFIG.replace(seed=1), **SMALL)]
    assert model_key("mlp", digits, CONFIG, **SMALL) == runs[0].key(digits) == trained.key
    assert parallel.pending(digits, runs) == runs[1:]


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_workers_must_be_a_positive_whole_number(digits, workers):
    with pytest.raises(ValueError, match=r"workers must be a positive whole number of training processes"):
        parallel.train_runs(digits, [], workers=workers)


@pytest.mark.parametrize("value", ["0", "two", "-3"])
def test_a_bad_workers_variable_is_named(monkeypatch, value):
    monkeypatch.setenv("LABKD_WORKERS", value)
    with pytest.raises(ValueError, match=rf"LABKD_WORKERS must be a positive whole number .*'{value}'"):
        parallel.default_workers()


def test_the_workers_variable_sets_the_default(monkeypatch):
    monkeypatch.delenv("LABKD_WORKERS", raising=False)
    assert parallel.default_workers() == 1
    monkeypatch.setenv("LABKD_WORKERS", " 3 ")
    assert parallel.default_workers() == 3


def test_runs_are_checked_before_any_process_starts(digits):
    with pytest.raises(TypeError, match="runs must hold labkd.parallel.Run items"):
        parallel.train_runs(digits, [("mlp", CONFIG)], workers=2)
    with pytest.raises(TypeError, match="teacher must be a trained model"):
        Run("mlp", CONFIG, teacher="the big one")
    with pytest.raises(TypeError, match="config must be a labkd.TrainConfig"):
        Run("mlp", {"epochs": 1})
    with pytest.raises(TypeError, match="data must be a labkd Data"):
        parallel.train_runs(torch.zeros(3), [], workers=2)


def test_the_runner_shares_the_cores_among_the_notebooks_in_full_mode_only():
    assert runner.WORKERS_ENV == parallel.WORKERS_ENV
    assert runner.training_workers(jobs=1, fast=False, cores=2) == 2
    assert runner.training_workers(jobs=2, fast=False, cores=2) == 1
    assert runner.training_workers(jobs=3, fast=False, cores=2) == 1
    assert runner.training_workers(jobs=1, fast=True, cores=8) == 1


def test_a_run_that_fails_in_a_worker_is_left_to_the_caller_with_a_warning(digits, cache_folder):
    # a guided layer the model does not have: the worker fails, the caller's own call names the error
    bad = CONFIG.replace(loss="hint", hint_layer="fc1", guided_layer="fc9")
    teacher = train_model("mlp", digits, CONFIG.replace(seed=7), use_cache=False, progress=False, hidden=(32,))
    runs = [Run("mlp", bad, teacher=teacher, **SMALL), Run("mlp", bad.replace(seed=1), teacher=teacher, **SMALL)]
    with pytest.warns(RuntimeWarning, match=r"training in 2 processes stopped \(.*\); the 2 runs left train in this process"):
        assert parallel.train_runs(digits, runs, workers=2) == 0
    with pytest.raises(ValueError, match="guided_layer"):
        train_model("mlp", digits, bad, teacher=teacher, **SMALL)


def test_runs_on_precomputed_teacher_logits_train_alike_in_two_processes(digits, tmp_path, monkeypatch):
    logits = torch.randn(len(digits.train), 10, generator=torch.Generator().manual_seed(0)) * 3
    config = CONFIG.replace(loss="distillation", temperature=2.0)
    runs = [Run("mlp", config.replace(seed=s), teacher_logits=logits, **SMALL) for s in (0, 1)]
    use_cache(monkeypatch, tmp_path / "parallel")
    assert parallel.train_runs(digits, runs, workers=2) == 2
    loaded = [r.train(digits) for r in runs]
    use_cache(monkeypatch, tmp_path / "serial")
    serial = [train_model("mlp", digits, r.config, teacher_logits=logits, **SMALL) for r in runs]
    assert all(a.cached and not b.cached and a.key == b.key and same_weights(a.model, b.model)
               for a, b in zip(loaded, serial, strict=True))


def test_background_trains_the_runs_while_the_block_works_and_waits_for_them(digits, cache_folder):
    runs = [Run("mlp", CONFIG.replace(seed=s), **SMALL) for s in (0, 1)]
    with parallel.background(digits, runs, workers=1):
        pass
    assert parallel.pending(digits, runs) == runs  # one worker: nothing in the background
    with parallel.background(digits, runs, workers=2):
        mine = train_model("mlp", digits, CONFIG.replace(seed=5), **SMALL)  # this process's own work
    assert not mine.cached and parallel.pending(digits, runs) == []
    assert all(r.train(digits).cached for r in runs)


def test_background_stops_when_the_block_fails(digits, cache_folder):
    runs = [Run("mlp", CONFIG.replace(seed=s), **SMALL) for s in (2, 3)]
    with pytest.raises(KeyError, match="the block's own error"):
        with parallel.background(digits, runs, workers=2):
            raise KeyError("the block's own error")
