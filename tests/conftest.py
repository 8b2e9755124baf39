"""Shared test setup: where the data is, and temporary folders so tests never write to home.

- ``LABKD_DATA``: if unset, ``<repo>/../shared/data`` when that folder exists.
- ``LABKD_CACHE``: if unset, one temporary folder for the whole session, so notebooks executed
  in this run share trained models but nothing lands in ``~/.cache``.
- ``IPYTHONDIR`` and ``JUPYTER_RUNTIME_DIR``: if unset, temporary folders too; every kernel the
  tests start would otherwise create ``~/.ipython`` and connection files under ``~/.local``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

_created: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get("LABKD_DATA") and SHARED_DATA.is_dir():
        os.environ["LABKD_DATA"] = str(SHARED_DATA.resolve())
    for variable, prefix in (
        ("LABKD_CACHE", "labkd-cache-"),
        ("IPYTHONDIR", "labkd-ipython-"),
        ("JUPYTER_RUNTIME_DIR", "labkd-jupyter-runtime-"),
    ):
        if not os.environ.get(variable):
            folder = tempfile.mkdtemp(prefix=prefix)
            _created.append(folder)
            os.environ[variable] = folder


#: The tests that run a whole notebook: the long ones, spread one by one over the test processes.
NOTEBOOK_RUNS = ("test_notebook_runs_in_fast_mode",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """For ``make test``'s parallel run (pytest-xdist, ``--dist loadgroup``): every other test stays
    with the rest of its module in one process, so a module's fixtures (small models trained once
    per module) are not trained again in each process. The notebook runs come first, so the
    longest tasks start early and the short ones fill the gaps at the end; every lesson in student
    mode before any in solutions mode, so a lesson's second run finds its models in the cache
    instead of waiting for the first run to train them (the cache locks each model while it trains)."""
    for item in items:
        if item.originalname not in NOTEBOOK_RUNS:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__ if item.module else item.nodeid))

    def rank(item: pytest.Item) -> tuple[bool, bool]:
        params = getattr(item, "callspec", None)
        solutions = params is not None and params.params.get("mode") == "solutions"
        return item.originalname not in NOTEBOOK_RUNS, solutions

    items.sort(key=rank)  # stable: the collection order otherwise


def pytest_unconfigure(config: pytest.Config) -> None:
    while _created:
        shutil.rmtree(_created.pop(), ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Unit tests use tiny models: one torch thread avoids oversubscribing the CPU (on a busy
    2-core machine two threads made them up to 40x slower). Notebook kernels are unaffected."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model cache of this test's own (``LABKD_CACHE``), progress bars off. A module whose
    every test needs it says ``pytestmark = pytest.mark.usefixtures("cache_folder")``."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("LABKD_CACHE", str(folder))
    monkeypatch.setenv("LABKD_PROGRESS", "0")
    return folder


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits with 200 validation images: tiny models train on it in a blink.
    Modules that want smaller splits define their own ``digits``."""
    from labkd.data import load_data

    return load_data("digits", val_size=200)


@pytest.fixture
def fit_calls(monkeypatch: pytest.MonkeyPatch) -> list:
    """Records every training ``train_model`` starts (``labkd.train.fit`` as ``experiments`` calls
    it): one entry per call, the model's starting weights."""
    from labkd import experiments

    calls = []
    real_fit = experiments.fit

    def counting_fit(model, *args, **kwargs):
        calls.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(experiments, "fit", counting_fit)
    return calls


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root folder (the one holding pyproject.toml)."""
    return REPO_ROOT


PARAMETERS_SOURCE = "fast = False\nseed = 0\nsolutions = False"

GOOD_CELLS = [
    "import json, os, sys",
    # writes what the kernel saw, so tests can check parameters, the kernel and the env var
    "results = {'fast': fast, 'seed': seed, 'solutions': solutions, 'prefix': sys.prefix,\n"
    "           'accuracy': 0.987654321, 'student': {'params': 1234}}\n"
    "with open(os.environ['LABKD_RESULTS_FILE'], 'w') as f:\n"
    "    json.dump(results, f)",
    "from labkd.results import record\nrecord(recorded_via_labkd=42)",  # merges into the file
    "import plotly.graph_objects as go\n"
    "go.Figure(go.Bar(x=['teacher', 'student'], y=[0.99, 0.97])).show()",
]

BAD_CELLS = [
    "x = 1",
    "print('before the error')",
    "raise ValueError('boom: the student diverged')",
    "print('never reached')",
]


def write_notebook(path: Path, cells: list[str], parameters: str | None = PARAMETERS_SOURCE) -> Path:
    """Write a small notebook: an optional ``parameters``-tagged cell, then one code cell each."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells.extend(nbformat.v4.new_code_cell(source) for source in cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A notebooks folder with ``01_good.ipynb`` (records results, draws a plotly figure)
    and ``02_bad.ipynb`` (raises in its fourth code cell)."""
    folder = tmp_path / "notebooks"
    write_notebook(folder / "01_good.ipynb", GOOD_CELLS)
    write_notebook(folder / "02_bad.ipynb", BAD_CELLS)
    return folder
