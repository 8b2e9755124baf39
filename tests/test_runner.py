"""labkd.runner: executing notebooks with papermill, HTML reports, results files and the index."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import BAD_CELLS, GOOD_CELLS, write_notebook
from labkd import runner, runner_index
from labkd.runner import RunResult

PLOTLYJS_MARKER = "window.__labkdDefine = window.define"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[RunResult], Path]:
    """One run of a good and a failing notebook (fast mode, seed=3), shared by the tests below."""
    base = tmp_path_factory.mktemp("runner")
    good = write_notebook(base / "notebooks" / "01_good.ipynb", GOOD_CELLS)
    bad = write_notebook(base / "notebooks" / "02_bad.ipynb", BAD_CELLS)
    output = base / "reports"
    results = runner.run_notebooks([bad, good], output, fast=True, parameters={"seed": 3}, progress=False)
    runner_index.write_index(results, output)
    return results, output


def test_every_notebook_runs_even_after_a_failure(run) -> None:
    results, output = run
    assert [r.name for r in results] == ["02_bad", "01_good"]
    bad, good = results
    assert (bad.status, good.status) == ("failed", "ok")
    for result in results:
        assert result.executed == output / f"{result.name}.ipynb" and result.executed.is_file()
        assert result.html == output / f"{result.name}.html" and result.html.is_file()
        assert result.duration > 0
    assert not list(output.glob(".*")), "temporary files were left behind"


def test_failure_names_the_cell_and_the_error(run) -> None:
    bad = run[0][0]
    assert bad.error_name == "ValueError"
    assert "boom: the student diverged" in bad.error_value
    assert bad.failed_cell is not None and bad.execution_count is not None
    executed = nbformat.read(str(bad.executed), as_version=4)
    failing = [c for c in executed.cells if c.cell_type == "code" and c.execution_count == bad.execution_count]
    assert len(failing) == 1 and "raise ValueError" in failing[0].source
    assert "cell" in bad.describe() and "ValueError: boom" in bad.describe()
    # the partial report shows what ran before the error, and nothing after it
    page = bad.html.read_text(encoding="utf-8")
    assert "before the error" in page and "boom: the student diverged" in page
    assert "never reached" not in [o.get("text", "").strip() for c in executed.cells for o in c.get("outputs", [])]


def test_parameters_reach_the_notebook_and_results_are_read(run) -> None:
    good = run[0][1]
    assert good.results is not None and good.results_error is None
    assert good.results["fast"] is True
    assert good.results["solutions"] is False
    assert good.results["seed"] == 3
    assert good.results["recorded_via_labkd"] == 42, "labkd.results.record() did not reach the runner"
    assert good.results == json.loads((run[1] / "01_good.results.json").read_text())


def test_kernel_is_this_environments_python(run) -> None:
    """The `python3` kernel papermill starts must be the venv's interpreter, not a system one."""
    assert run[0][1].results["prefix"] == sys.prefix


def test_html_embeds_plotlyjs_once_and_keeps_the_figure_interactive(run) -> None:
    page = run[0][1].html.read_text(encoding="utf-8")
    assert page.count(PLOTLYJS_MARKER) == 1
    assert "Plotly.newPlot" in page and '"teacher"' in page
    loads_from_cdn = re.search(r"""(src=|import )["']https://cdn\.plot\.ly""", page)
    assert not loads_from_cdn, "plotly.js must not come from a CDN: reports have to work offline"


def test_index_links_reports_with_status_and_results(run) -> None:
    output = run[1]
    page = (output / "index.html").read_text(encoding="utf-8")
    for name in ("01_good", "02_bad"):
        assert f'href="{name}.html"' in page and f'href="{name}.ipynb"' in page
    assert '<span class="failed">failed</span>' in page and '<span class="ok">ok</span>' in page
    assert "ValueError: boom: the student diverged" in page
    assert "accuracy" in page and "0.9877" in page and "student.params" in page
    summary = json.loads((output / "index.json").read_text())
    assert (summary["ok"], summary["failed"]) == (1, 1)
    assert summary["notebooks"][0]["error"].startswith("ValueError")


def test_notebook_without_results_file_shows_none(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "03_plain.ipynb", ["print('hi')"], parameters=None)
    (tmp_path / "out").mkdir()
    stale = tmp_path / "out" / "03_plain.results.json"
    stale.write_text('{"old": 1}')
    result = runner.run_notebook(path, tmp_path / "out")
    assert result.ok and result.results is None and not stale.exists()


def test_the_kernel_gets_its_training_processes_unless_the_caller_chose(tmp_path: Path, monkeypatch) -> None:
    cell = ("import json, os\nfrom labkd.results import record\n"
            "record(workers=os.environ.get('LABKD_WORKERS'))")
    path = write_notebook(tmp_path / "04_workers.ipynb", [cell], parameters=None)
    monkeypatch.delenv("LABKD_WORKERS", raising=False)
    assert runner.run_notebook(path, tmp_path / "out", workers=2).results["workers"] == "2"
    assert "LABKD_WORKERS" not in os.environ  # put back as it was
    monkeypatch.setenv("LABKD_WORKERS", "1")
    assert runner.run_notebook(path, tmp_path / "out", workers=2).results["workers"] == "1"


def test_unreadable_results_file_is_reported_in_the_index(tmp_path: Path) -> None:
    (tmp_path / "x.results.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        runner.read_results(tmp_path / "x.results.json")
    (tmp_path / "y.results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        runner.read_results(tmp_path / "y.results.json")
    assert runner.read_results(tmp_path / "missing.results.json") is None
    result = RunResult("x", tmp_path / "x.ipynb", "ok", 1.0, results_error="x.results.json is not valid JSON")
    runner_index.write_index([result], tmp_path)
    assert "x.results.json is not valid JSON" in (tmp_path / "index.html").read_text()


def test_index_escapes_html(tmp_path: Path) -> None:
    result = RunResult("n", tmp_path / "n.ipynb", "failed", 1.0, error_name="E", error_value="<script>x</script>",
                       results={"<b>": "<i>"})
    page = runner_index.render_index([result], tmp_path)
    assert "<script>x" not in page and "&lt;script&gt;x" in page and "&lt;b&gt;" in page


def test_prepare_for_html_converts_every_plotly_output(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    figure = {"data": [{"type": "scatter", "x": [1], "y": [2]}], "layout": {}, "config": {}}
    for _ in range(2):
        nb.cells.append(nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
            "display_data", data={runner.PLOTLY_MIMETYPE: figure, "text/plain": "Figure"})]))
    prepared = runner.prepare_for_html(nb)
    htmls = [c.outputs[0]["data"]["text/html"] for c in prepared.cells]
    assert PLOTLYJS_MARKER in htmls[0] and PLOTLYJS_MARKER not in htmls[1]
    assert all("Plotly.newPlot" in h for h in htmls)
    assert all(runner.PLOTLY_MIMETYPE not in c.outputs[0]["data"] for c in prepared.cells)
    assert runner.PLOTLY_MIMETYPE in nb.cells[0].outputs[0]["data"], "the input notebook was modified"


def test_discover_and_resolve_notebooks(tmp_path: Path) -> None:
    for name in ("10_b", "02_a", "notes"):
        write_notebook(tmp_path / f"{name}.ipynb", [])
    assert [p.name for p in runner.discover_notebooks(tmp_path)] == ["02_a.ipynb", "10_b.ipynb"]
    assert runner.resolve_notebooks([], tmp_path) == runner.discover_notebooks(tmp_path)
    by_stem = runner.resolve_notebooks(["10_b", "02_a.ipynb"], tmp_path)
    assert [p.name for p in by_stem] == ["10_b.ipynb", "02_a.ipynb"]
    assert runner.resolve_notebooks([str(tmp_path / "notes.ipynb")], tmp_path)[0].name == "notes.ipynb"
    with pytest.raises(runner.NotebookNotFoundError, match=r"unknown notebook '99_nope'.*02_a, 10_b"):
        runner.resolve_notebooks(["99_nope"], tmp_path)
    with pytest.raises(runner.NotebookNotFoundError, match="no notebooks"):
        runner.resolve_notebooks([], tmp_path / "empty")


def test_parse_parameters() -> None:
    parsed = runner.parse_parameters(["seed=7", "lr=0.5", "name=mnist", "flag=true", "t=True", "ks=[1, 2]", "s='a=b'"])
    assert parsed == {"seed": 7, "lr": 0.5, "name": "mnist", "flag": True, "t": True, "ks": [1, 2], "s": "a=b"}
    for bad in ("seed", "=3", "1x=2", "a b=1"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            runner.parse_parameters([bad])


def test_atomic_write_replaces_without_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "a" / "page.html"
    runner.atomic_write_text(target, "one")
    runner.atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["page.html"]


def test_comparison_rows_become_one_markdown_table_and_an_index_section(tmp_path: Path) -> None:
    rows = [{"what": "teacher test errors", "labkd": 98, "paper": 67, "seeds": [0], "seconds": 540.0},
            {"what": "a | pipe", "labkd": "1 ± 0.1", "paper": None, "seeds": None, "seconds": None}]
    done = [RunResult("06_hinton", tmp_path / "a.ipynb", "ok", 1.0, results={"paper_vs_labkd": rows, "x": 1}),
            RunResult("07_plain", tmp_path / "b.ipynb", "ok", 1.0, results={"x": 2})]
    runner_index.write_index(done, tmp_path)
    table = (tmp_path / "results.md").read_text().splitlines()
    assert table[0].startswith("| notebook | what we measured | labkd | paper | seeds | time |")
    assert table[2] == "| 06_hinton | teacher test errors | 98 | 67 | 0 | 9.0 min |"
    assert table[3] == "| 06_hinton | a \\| pipe | 1 ± 0.1 | — |  |  |"        # pipes escaped, missing as —
    assert len(table) == 4
    page = (tmp_path / "index.html").read_text()
    assert "Paper versus labkd" in page and "teacher test errors" in page
    assert "paper_vs_labkd" not in page                                  # not dumped as raw results


def test_no_comparisons_gives_a_table_that_says_so(tmp_path: Path) -> None:
    runner_index.write_index([RunResult("x", tmp_path / "x.ipynb", "ok", 1.0)], tmp_path)
    assert "no notebook recorded a comparison" in (tmp_path / "results.md").read_text()
    assert "Paper versus labkd" not in (tmp_path / "index.html").read_text()


def test_a_later_run_of_one_notebook_keeps_the_others_in_the_index(tmp_path: Path) -> None:
    for name in ("01_a", "02_b"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    first = [RunResult(n, tmp_path / f"{n}.ipynb", "ok", 5.0, executed=tmp_path / f"{n}.ipynb", mode="full",
                       results={"acc": i}) for i, n in enumerate(("01_a", "02_b"))]
    runner_index.write_index(first, tmp_path)
    again = RunResult("02_b", tmp_path / "02_b.ipynb", "ok", 7.0, executed=tmp_path / "02_b.ipynb", mode="full",
                      results={"acc": 9})
    merged = runner_index.with_earlier_runs([again], tmp_path)
    assert [(r.name, r.duration) for r in merged] == [("01_a", 5.0), ("02_b", 7.0)]
    assert merged[0].results == {"acc": 0} and isinstance(merged[0].executed, Path)
    fast = RunResult("02_b", tmp_path / "02_b.ipynb", "ok", 1.0, executed=tmp_path / "02_b.ipynb", mode="fast")
    assert [r.name for r in runner_index.with_earlier_runs([fast], tmp_path)] == ["02_b"]   # modes never mix
    (tmp_path / "01_a.ipynb").unlink()
    assert [r.name for r in runner_index.with_earlier_runs([again], tmp_path)] == ["02_b"]  # its files are gone
    (tmp_path / "index.json").write_text("{broken")
    assert runner_index.with_earlier_runs([again], tmp_path) == [again]
