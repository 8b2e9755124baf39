"""The course notebooks: clean when committed, well-formed parameters, and they run (fast mode).

Each notebook runs with papermill (``fast=True``, kernel ``python3``, in its own folder) into
pytest's temporary folder, never into the repository.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
REQUIRED_PARAMETERS = {"fast": bool, "seed": int, "solutions": bool}

# With no notebooks, one parameter that fails (an empty parametrisation would only be skipped).
CASES = [pytest.param(p, id=p.stem) for p in NOTEBOOKS] or [pytest.param(None, id="no-notebooks")]


def _notebook(path: Path | None) -> nbformat.NotebookNode:
    assert path is not None, f"no notebooks in {NOTEBOOKS_DIR}"
    return nbformat.read(str(path), as_version=4)


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOKS_DIR}"


@pytest.mark.parametrize("path", CASES)
def test_committed_notebook_is_clean(path: Path | None) -> None:
    """Valid nbformat, a python3 kernelspec, and no outputs or execution counts."""
    nb = _notebook(path)
    nbformat.validate(nb)
    kernelspec = nb.metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3", f"kernelspec is {kernelspec!r}; expected name 'python3'"
    assert kernelspec.get("language", "python") == "python"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"cells {dirty} have outputs or execution counts; clear them before committing"
    assert "papermill" not in nb.metadata, "this is an executed copy; commit the source notebook"
    assert "widgets" not in nb.metadata, "saved widget state is output too; clear it before committing"


@pytest.mark.parametrize("path", CASES)
def test_parameters_cell(path: Path | None) -> None:
    """Exactly one code cell tagged ``parameters``, assigning fast, seed and solutions literals."""
    nb = _notebook(path)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{len(tagged)} cells are tagged 'parameters'; expected exactly 1"
    cell = tagged[0]
    assert cell.cell_type == "code"
    values = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            values[node.target.id] = node.value
    for name, kind in REQUIRED_PARAMETERS.items():
        assert name in values, f"the parameters cell does not define {name!r}"
        value = ast.literal_eval(values[name])
        assert type(value) is kind, f"{name} = {value!r}; expected a {kind.__name__} literal"
    assert ast.literal_eval(values["fast"]) is False, "committed notebooks default to the full run (fast = False)"


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["student", "solutions"])
@pytest.mark.parametrize("path", CASES)
def test_notebook_runs_in_fast_mode(path: Path | None, mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Student mode: the exercises are unfilled and their checkers say so without stopping the
    lesson. Solutions mode (``labkd run --solutions``): every checker passes the reference."""
    import papermill

    assert path is not None, f"no notebooks in {NOTEBOOKS_DIR}"
    results_file = tmp_path / f"{path.stem}.results.json"
    monkeypatch.setenv("LABKD_RESULTS_FILE", str(results_file))
    # One torch thread per kernel: fast mode's models are tiny, and two threads sharing a core
    # with anything else spin-wait (lesson 12 took 8 CPU minutes instead of one next to a job).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    executed = tmp_path / path.name
    papermill.execute_notebook(
        str(path), str(executed), parameters={"fast": True, "solutions": mode == "solutions"},
        kernel_name="python3", cwd=str(path.parent), progress_bar=False,
    )
    # The notebook got to its last cell (notebook.finish records the running time).
    results = json.loads(results_file.read_text())
    assert isinstance(results, dict) and results.get("notebook_seconds", 0) > 0, "the notebook did not reach finish()"
    outputs = json.dumps([c.get("outputs", []) for c in nbformat.read(str(executed), as_version=4).cells])
    checks = nbformat.read(str(path), as_version=4)
    n_exercises = sum("exercises.check(" in c.source for c in checks.cells if c.cell_type == "code")
    if mode == "solutions":
        assert "reference solution FAILS" not in outputs
        assert outputs.count("reference solution passes") >= n_exercises
    else:
        assert outputs.count("not done yet") >= n_exercises, "an unfilled exercise was not reported with its hint"


@pytest.mark.parametrize("path", CASES)
def test_papermill_reads_every_parameter(path: Path | None) -> None:
    """``papermill --help-notebook`` and the injected-parameters logic parse each line of the
    parameters cell (an ``=`` inside a comment once made papermill skip a parameter)."""
    import papermill

    nb = _notebook(path)
    cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    assigned = [n.targets[0].id for n in ast.parse(cell.source).body if isinstance(n, ast.Assign)]
    assert list(papermill.inspect_notebook(str(path))) == assigned


@pytest.mark.parametrize("path", CASES)
def test_ends_with_finish_and_no_stray_value(path: Path | None) -> None:
    """The last code cell is ``notebook.finish();`` — with the semicolon, so the lesson does not end
    by printing a bare number under the "This notebook ran in ..." line."""
    code = [c.source.strip() for c in _notebook(path).cells if c.cell_type == "code"]
    assert code[-1] == "notebook.finish();", code[-1]


def _kind(path: Path) -> str:
    """A notebook's kind from its metadata (``{"labkd": {"kind": "discussion"}}``); "lesson" by default."""
    return _notebook(path).metadata.get("labkd", {}).get("kind", "lesson")


#: Every numbered notebook is a lesson unless its metadata says otherwise (lesson 13 is a discussion).
LESSONS = [p for p in NOTEBOOKS if p.stem[:2].isdigit() and _kind(p) == "lesson"]
KINDS = ("lesson", "discussion")


@pytest.mark.parametrize("path", CASES)
def test_notebook_kind_is_known(path: Path | None) -> None:
    assert _kind(path) in KINDS, f"{path.name}: metadata labkd.kind must be one of {KINDS}"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in LESSONS])
def test_lesson_has_the_course_skeleton(path: Path) -> None:
    """Every lesson follows the skeleton of ../shared/STYLE.md: objectives, at least one exercise
    with its checker and one interactive demo, "What we found", a summary and a paper link."""
    nb = _notebook(path)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for part in ("Objectives", "Interactive demo", "What we found", "Summary", "arxiv.org"):
        assert part in text, f"{path.name} has no {part!r}"
    assert "exercises.check(" in code and "raise NotImplementedError" in code, f"{path.name} has no exercise"
