"""The ``labkd`` command line: data, run, cache and bench."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from labkd import cli
from labkd import data as datasets

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------------------------
# usage


def test_python_dash_m_labkd_shows_every_command() -> None:
    done = subprocess.run([sys.executable, "-m", "labkd", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("data", "run", "cache", "bench"):
        assert command in done.stdout


def test_no_command_or_unknown_command_is_a_usage_error(capsys) -> None:
    assert run_cli(capsys, )[0] == 2
    code, _, err = run_cli(capsys, "train")
    assert code == 2 and "invalid choice" in err


# --------------------------------------------------------------------------------------------
# labkd data


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no shared datasets at {SHARED_DATA}")
def test_data_with_the_shared_datasets(capsys, monkeypatch) -> None:
    monkeypatch.setenv("LABKD_DATA", str(SHARED_DATA))
    code, out, _ = run_cli(capsys, "data")
    assert f"data folder: {SHARED_DATA}" in out and "(LABKD_DATA)" in out
    assert f"mnist: present in {SHARED_DATA / 'MNIST' / 'raw'}; checksums ok" in out
    assert f"fashion_mnist: present in {SHARED_DATA / 'FashionMNIST' / 'raw'}; checksums ok" in out
    assert "digits: always available" in out
    assert code == 0


def test_data_in_an_empty_folder_names_the_missing_files(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("LABKD_DATA", str(tmp_path))
    code, out, _ = run_cli(capsys, "data")
    assert code == 0, "missing datasets are not an error: the notebooks can fall back to digits"
    for name, folder in (("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")):
        line = next(line for line in out.splitlines() if line.startswith(f"{name}:"))
        assert "missing" in line and str(tmp_path / folder / "raw") in line
        assert all(f in line for f in datasets.RAW_FILES)
    assert "digits: always available" in out


def test_data_reports_incomplete_and_corrupt_files(capsys, tmp_path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    (raw / "train-labels-idx1-ubyte").write_bytes(b"nor this")
    code, out, _ = run_cli(capsys, "data", "--root", str(tmp_path))
    line = next(line for line in out.splitlines() if line.startswith("mnist:"))
    assert "missing t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte" in line
    assert "checksum FAILED for train-images-idx3-ubyte, train-labels-idx1-ubyte" in line
    assert code == 1


def test_data_with_a_bad_labkd_data_is_a_one_line_usage_error(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("LABKD_DATA", str(tmp_path / "nowhere"))
    code, out, err = run_cli(capsys, "data")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "LABKD_DATA" in err and "nowhere" in err


def test_data_root_must_exist(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "data", "--root", str(tmp_path / "nope"))
    assert code == 2 and "--root" in err and "nope" in err


def test_data_download_failure_prints_the_reason(capsys, monkeypatch, tmp_path) -> None:
    calls = []

    def fake_load(name, root=None, download=True, **kwargs):
        calls.append((name, Path(root), download))
        raise datasets.DatasetNotFoundError(f"{name}: no network here")

    monkeypatch.setattr(datasets, "load_data", fake_load)
    code, out, _ = run_cli(capsys, "data", "--download", "--root", str(tmp_path / "new"))
    assert calls == [("mnist", tmp_path / "new", True), ("fashion_mnist", tmp_path / "new", True)]
    assert "mnist: download failed: mnist: no network here" in out
    assert "fashion_mnist: download failed: fashion_mnist: no network here" in out
    assert code == 1


# --------------------------------------------------------------------------------------------
# labkd run


def test_run_reports_failures_and_still_runs_the_rest(capsys, course, tmp_path) -> None:
    output = tmp_path / "reports"
    code, out, _ = run_cli(
        capsys, "run", str(course / "02_bad.ipynb"), str(course / "01_good.ipynb"), "--fast", "--solutions",
        "--param", "seed=7", "--output", str(output), "--no-progress",
    )
    assert code == 1
    assert "FAILED  02_bad at cell" in out and "ValueError: boom: the student diverged" in out
    assert "ok      01_good" in out
    assert "1 ok, 1 failed in " in out and "(--jobs 1)" in out and f"report: {output / 'index.html'}" in out
    for name in ("01_good", "02_bad"):
        assert (output / f"{name}.ipynb").is_file() and (output / f"{name}.html").is_file()
    recorded = json.loads((output / "01_good.results.json").read_text())
    assert (recorded["fast"], recorded["solutions"], recorded["seed"]) == (True, True, 7)
    assert "02_bad.html" in (output / "index.html").read_text()


def test_run_with_two_jobs_runs_both_and_keeps_the_order(capsys, course, tmp_path) -> None:
    """``--jobs 2``: two notebooks at once in worker processes; results (and so the index and the
    results table) come back in the order given, whatever finished first."""
    output = tmp_path / "reports"
    code, out, _ = run_cli(
        capsys, "run", str(course / "02_bad.ipynb"), str(course / "01_good.ipynb"), "--fast",
        "--output", str(output), "--no-progress", "--jobs", "2",
    )
    assert code == 1 and "(--jobs 2)" in out
    lines = [line for line in out.splitlines() if line.startswith(("ok ", "FAILED "))]
    assert [line.split()[1] for line in lines] == ["02_bad", "01_good"]
    index = json.loads((output / "index.json").read_text())
    assert [n["name"] for n in index["notebooks"]] == ["02_bad", "01_good"]
    assert index["totals"]["notebooks"] == 2
    code, _, err = run_cli(capsys, "run", str(course / "01_good.ipynb"), "--output", str(output), "--jobs", "0")
    assert code == 2 and "--jobs must be a positive number" in err


def test_warm_runs_full_mode_without_reports(capsys, course, tmp_path, monkeypatch) -> None:
    """``labkd warm``: every notebook in full mode (fast=False) so its models reach the cache;
    no report is left behind, and a failing notebook is named and fails the command."""
    from labkd import runner

    seen = {}
    real = runner.run_notebooks

    def spy(paths, output_dir, **kwargs):
        seen.update(kwargs, output_dir=Path(output_dir))
        return real(paths, output_dir, **kwargs)

    monkeypatch.setattr(runner, "run_notebooks", spy)
    code, out, _ = run_cli(capsys, "warm", str(course / "01_good.ipynb"), str(course / "02_bad.ipynb"),
                           "--no-progress")
    assert code == 1
    assert seen["fast"] is False and seen["html"] is False and seen["jobs"] == 1
    assert "warmed the model cache" in out and "1 notebook(s) failed" in out and "FAILED  02_bad" in out
    assert not seen["output_dir"].exists(), "the scratch folder is removed"
    assert not list(course.glob("*.html"))
    code, _, err = run_cli(capsys, "warm", "--jobs", "0")
    assert code == 2 and "--jobs must be a positive number" in err


def test_run_unknown_notebook_is_a_usage_error(capsys, course, tmp_path) -> None:
    code, _, err = run_cli(capsys, "run", "99_missing", "--output", str(tmp_path))
    assert code == 2
    assert "unknown notebook '99_missing'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "index.html").exists()


def test_run_bad_param_is_a_usage_error(capsys, course, tmp_path) -> None:
    code, _, err = run_cli(capsys, "run", str(course / "01_good.ipynb"), "--param", "seed:3", "--output", str(tmp_path))
    assert code == 2 and "--param 'seed:3'" in err and "KEY=VALUE" in err


def test_run_output_must_not_be_a_file(capsys, course, tmp_path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    code, _, err = run_cli(capsys, "run", str(course / "01_good.ipynb"), "--output", str(target))
    assert code == 2 and "--output" in err


# --------------------------------------------------------------------------------------------
# labkd cache / labkd bench


def test_cache_list_and_clear_with_the_real_cache(capsys, monkeypatch, tmp_path) -> None:
    cache = pytest.importorskip("labkd.cache")
    monkeypatch.setenv("LABKD_CACHE", str(tmp_path))
    code, out, _ = run_cli(capsys, "cache", "list")
    assert code == 0 and "(empty)" in out
    key = cache.make_key({"test": "cli"})
    cache.save(key, {"state_dict": {}})
    cache.write_description(key, "tiny test model")
    code, out, _ = run_cli(capsys, "cache", "list")
    assert code == 0 and key in out and "tiny test model" in out and "1 entry" in out
    code, out, _ = run_cli(capsys, "cache", "clear")
    assert code == 0 and "removed 1 cached model " in out
    assert not list(tmp_path.glob("*.pt"))


def test_cache_list_accepts_dicts_and_objects(capsys, monkeypatch) -> None:
    entries = [
        {"key": "abc123", "description": "teacher cnn", "size": 2048, "modified": 0.0},
        types.SimpleNamespace(key="def456", description="student mlp", size=3 * 1024 * 1024, modified=0.0),
    ]
    fake = types.SimpleNamespace(list_entries=lambda: entries, clear=lambda: 2)
    monkeypatch.setitem(sys.modules, "labkd.cache", fake)
    code, out, _ = run_cli(capsys, "cache", "list")
    assert code == 0
    assert "abc123" in out and "2.0 KB" in out and "teacher cnn" in out
    assert "def456" in out and "3.0 MB" in out and "student mlp" in out
    assert "2 entries" in out
    assert run_cli(capsys, "cache", "clear")[1].startswith("removed 2 cached models")


def test_cache_bad_action_is_a_usage_error(capsys) -> None:
    code, _, err = run_cli(capsys, "cache", "purge")
    assert code == 2 and "invalid choice" in err


def test_bench_delegates_to_labkd_bench(capsys, monkeypatch) -> None:
    calls = []
    fake = types.SimpleNamespace(main=lambda quick, as_json: calls.append((quick, as_json)) or 3)
    monkeypatch.setitem(sys.modules, "labkd.bench", fake)
    assert cli.main(["bench", "--quick", "--json"]) == 3
    assert cli.main(["bench"]) == 3
    assert calls == [(True, True), (False, False)]


def test_missing_optional_module_is_one_clear_line(capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "labkd.bench", None)  # makes `import labkd.bench` fail
    code, _, err = run_cli(capsys, "bench")
    assert code == 1 and "labkd.bench is missing" in err and len(err.strip().splitlines()) == 1
