"""Recording results (labkd.results) and the notebook start/finish helpers (labkd.notebook)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from labkd import notebook, results
from labkd.data import load_data, missing_files


def have_mnist() -> bool:
    try:
        return not missing_files("mnist")
    except FileNotFoundError:
        return False


@pytest.fixture(autouse=True)
def fresh_results(monkeypatch):
    """Each test starts with nothing recorded and no results file."""
    monkeypatch.setattr(results, "_recorded", {})
    monkeypatch.delenv(results.RESULTS_ENV, raising=False)


@pytest.fixture
def results_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "run" / "01_soft_targets.results.json"
    monkeypatch.setenv(results.RESULTS_ENV, str(path))
    return path


# --- results.record -------------------------------------------------------------------------


def test_record_without_a_results_file_keeps_values_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert results.record(teacher_errors=71) == {"teacher_errors": 71}
    results.record(student_errors=112)
    assert results.recorded() == {"teacher_errors": 71, "student_errors": 112}
    assert list(tmp_path.iterdir()) == []


def test_record_writes_and_merges_json(results_file):
    results_file.parent.mkdir(parents=True)
    results_file.write_text(json.dumps({"written_by_the_runner": "yes", "accuracy": 0.1}))
    results.record(accuracy=0.98)
    results.record(errors=112, accuracy=0.99)
    stored = json.loads(results_file.read_text())
    assert stored == {"written_by_the_runner": "yes", "accuracy": 0.99, "errors": 112}
    assert [p.name for p in results_file.parent.iterdir()] == [results_file.name]  # no temporary file


def test_record_creates_the_folder(results_file):
    results.record(x=1)
    assert json.loads(results_file.read_text()) == {"x": 1}


def test_record_converts_tensors_arrays_and_non_finite_numbers(results_file):
    results.record(
        acc=torch.tensor(0.5), count=np.int64(3), per_class=torch.tensor([1, 2]), array=np.array([0.25, 0.5]),
        nested={"t": (torch.tensor(2.0), math.nan)}, bad=float("inf"), text="ok",
    )
    stored = json.loads(results_file.read_text())
    assert stored == {"acc": 0.5, "count": 3, "per_class": [1, 2], "array": [0.25, 0.5],
                      "nested": {"t": [2.0, None]}, "bad": None, "text": "ok"}
    assert results.recorded() == stored


def test_record_replaces_a_corrupt_results_file(results_file):
    results_file.parent.mkdir(parents=True)
    results_file.write_text("{half a json")
    results.record(x=2)
    assert json.loads(results_file.read_text()) == {"x": 2}


def test_record_is_atomic(results_file, monkeypatch):
    results.record(first=1)
    good = results_file.read_text()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        results.record(second=2)
    assert results_file.read_text() == good
    assert json.loads(good) == {"first": 1}


# --- notebook.start / finish / banner -------------------------------------------------------


def test_finish_before_start_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(notebook, "_started", None)
    with pytest.raises(RuntimeError, match=r"call labkd\.notebook\.start\(\.\.\.\) at the top of the notebook first"):
        notebook.finish()


def test_start_loads_digits_and_finish_records_the_runtime(results_file, monkeypatch, capsys):
    shown = []
    monkeypatch.setattr(notebook, "_display_html", shown.append)
    data = notebook.start(dataset="digits", fast=False, seed=0)
    assert data.name == "digits" and (len(data.train), len(data.val), len(data.test)) == (1197, 200, 400)
    assert len(shown) == 1 and "digits" in shown[0] and "full mode" in shown[0]
    seconds = notebook.finish()
    assert seconds >= 0
    assert "This notebook ran in" in capsys.readouterr().out
    assert json.loads(results_file.read_text())["notebook_seconds"] == round(seconds, 1)


@pytest.fixture
def digits_only(monkeypatch):
    """start() without reading a dataset from disk: any name gives the digits."""
    digits = load_data("digits", val_size=200)
    monkeypatch.setattr(notebook, "load_data", lambda name, fallback=True: digits)
    return digits


def test_start_quiet_shows_nothing_and_seeds_torch(monkeypatch, digits_only):
    shown = []
    monkeypatch.setattr(notebook, "_display_html", shown.append)
    assert notebook.start(dataset="digits", seed=3, quiet=True) is digits_only
    after_start = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(after_start, torch.rand(3))
    assert shown == []


def test_start_sets_the_plotly_renderer(monkeypatch, digits_only):
    import plotly.io as pio

    monkeypatch.setattr(pio.renderers, "default", "browser")
    notebook.start(dataset="digits", quiet=True)
    assert pio.renderers.default == "plotly_mimetype"


@pytest.mark.skipif(not have_mnist(), reason="MNIST files not in LABKD_DATA")
def test_start_fast_mode_cuts_to_small_seeded_subsets():
    a = notebook.start(dataset="mnist", fast=True, seed=0, quiet=True)
    b = notebook.start(dataset="mnist", fast=True, seed=0, quiet=True)
    c = notebook.start(dataset="mnist", fast=True, seed=1, quiet=True)
    assert (len(a.train), len(a.val), len(a.test)) == (2000, 1000, 1000)
    assert torch.equal(a.train.x, b.train.x) and not torch.equal(a.train.x, c.train.x)
    assert a.spec == b.spec != c.spec
    assert a.input_shape == (1, 28, 28)


def test_banner_describes_the_run():
    data = load_data("digits", val_size=200)
    text = notebook.banner(data, fast=True)
    assert "digits" in text and "1,197 train / 200 val / 400 test" in text
    assert "fast mode" in text and torch.__version__ in text
    assert "⚠" not in text


def test_banner_fallback_warning_escapes_the_reason():
    data = dataclasses.replace(load_data("digits", val_size=200),
                               fallback_reason="mnist is not in /data/<MNIST>/raw & could not be downloaded")
    text = notebook.banner(data, fast=False)
    assert "⚠" in text and "offline digits dataset" in text and "Results will differ" in text
    assert "/data/&lt;MNIST&gt;/raw &amp; could not" in text
    assert "<MNIST>" not in text


def test_compare_records_rows_and_replaces_the_same_measurement(results_file) -> None:
    results.compare("teacher test errors", labkd=120, paper=67, seeds=[0], seconds=60)
    results.compare("student test errors", labkd=np.int64(150), paper=146)
    results.compare("teacher test errors", labkd=98, paper=67, seeds=[0], seconds=540)   # re-run of a cell
    rows = json.loads(results_file.read_text())[results.COMPARISONS]
    assert [r["what"] for r in rows] == ["student test errors", "teacher test errors"]
    assert rows[1]["labkd"] == 98 and rows[0]["labkd"] == 150 and rows[0]["seconds"] is None


@pytest.mark.parametrize("what, seconds, match", [("", None, "what"), ("x", -1.0, "seconds"),
                                                 ("x", float("nan"), "seconds")])
def test_compare_rejects_bad_rows(what, seconds, match) -> None:
    with pytest.raises(ValueError, match=match):
        results.compare(what, labkd=1, paper=2, seconds=seconds)
