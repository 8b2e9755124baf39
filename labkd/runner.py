"""Run the course notebooks with papermill and write HTML reports plus an ``index.html``.

>>> results = run_notebooks(discover_notebooks(), reports_dir(), fast=True)
>>> runner_index.write_index(results, reports_dir())     # the index page: labkd.runner_index

For every notebook ``<stem>`` the output folder gets ``<stem>.ipynb`` (executed, with outputs),
``<stem>.html`` (standalone; plotly figures stay interactive offline because plotly.js is
embedded once per page) and, if the notebook records any, ``<stem>.results.json``: the runner
points ``LABKD_RESULTS_FILE`` at that path while the notebook runs.
"""

from __future__ import annotations

import ast
import re
import copy
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nbformat

from labkd.paths import atomic_write_text, notebooks_dir
from labkd.widgets import STATIC_PANEL_MIMETYPE

#: The environment variable a notebook reads to know where to write its key results.
RESULTS_ENV = "LABKD_RESULTS_FILE"
#: The environment variable that says how many processes may train a notebook's runs at once
#: (``labkd.parallel.WORKERS_ENV``, named here so that the runner need not import torch).
WORKERS_ENV = "LABKD_WORKERS"


def training_workers(jobs: int, fast: bool, cores: int | None = None) -> int:
    """Training processes per notebook when ``jobs`` notebooks run at once: the machine's cores
    shared out among them in full mode; 1 in fast mode (starting a process costs more than the
    tiny runs it would share). ``LABKD_WORKERS``, when set, wins (see :func:`run_notebook`)."""
    cores = (os.cpu_count() or 1) if cores is None else cores
    return 1 if fast else max(1, cores // max(1, jobs))
PLOTLY_MIMETYPE = "application/vnd.plotly.v1+json"
WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"
STATUS_OK = "ok"
STATUS_FAILED = "failed"


class NotebookNotFoundError(ValueError):
    """A notebook named on the command line is not among the course notebooks."""


@dataclass
class RunResult:
    """What happened to one notebook. Paths are absolute; ``None`` when not written.

    For a cell error, ``failed_cell`` is papermill's 0-based index of the cell in the executed
    notebook (which counts papermill's injected-parameters cell) and ``execution_count`` the
    ``In [n]`` number shown beside it in the HTML.
    """

    name: str
    source: Path
    status: str
    duration: float
    executed: Path | None = None
    html: Path | None = None
    results: dict[str, Any] | None = None
    results_error: str | None = None
    failed_cell: int | None = None
    execution_count: int | None = None
    error_name: str | None = None
    error_value: str | None = None
    html_error: str | None = None
    mode: str = ""  # "fast", "full", "fast, solutions", ...: the parameters that change the numbers

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def error(self) -> str | None:
        """``"ename: evalue"`` of the failure, or None."""
        if self.error_name is None:
            return None
        return f"{self.error_name}: {self.error_value}" if self.error_value else self.error_name

    def describe(self) -> str:
        """One line for the terminal, e.g. ``FAILED 02_x at cell 4 (In [3]): ValueError: ...``."""
        if self.ok:
            return f"ok      {self.name}  ({self.duration:.1f} s{self.time_split()})"
        where = ""
        if self.failed_cell is not None:
            where = f" at cell {self.failed_cell}"
            if self.execution_count is not None:
                where += f" (In [{self.execution_count}])"
        return f"FAILED  {self.name}{where}: {self.error}  ({self.duration:.1f} s)"

    def time_split(self) -> str:
        """``"; training 52.1 s (3 models), 4 loaded from the cache"`` when the notebook said."""
        r = self.results or {}
        if not isinstance(r.get("training_seconds"), (int, float)):
            return ""
        return (f"; training {r['training_seconds']:.1f} s ({r.get('models_trained', 0)} models), "
                f"{r.get('models_loaded', 0)} loaded from the cache")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("source", "executed", "html"):
            data[key] = None if data[key] is None else str(data[key])
        data["error"] = self.error
        return data


# --------------------------------------------------------------------------------------------
# Choosing notebooks and parameters


def discover_notebooks(folder: Path | None = None) -> list[Path]:
    """The course notebooks, ``<folder>/[0-9]*.ipynb`` sorted (default: the repo's notebooks/)."""
    folder = notebooks_dir() if folder is None else Path(folder)
    return sorted(p for p in folder.glob("[0-9]*.ipynb") if p.is_file())


def resolve_notebooks(names: Sequence[str], folder: Path | None = None) -> list[Path]:
    """Turn paths or stems (``01_soft_targets``) into notebook paths; all when ``names`` is empty.

    Raises ``NotebookNotFoundError`` naming the unknown entry and the notebooks available.
    """
    folder = notebooks_dir() if folder is None else Path(folder)
    if not names:
        found = discover_notebooks(folder)
        if not found:
            raise NotebookNotFoundError(f"no notebooks matching [0-9]*.ipynb in {folder}")
        return found
    paths = []
    for name in names:
        candidate = Path(name).expanduser()
        if candidate.suffix == ".ipynb" and candidate.is_file():
            paths.append(candidate.resolve())
            continue
        stem = candidate.name.removesuffix(".ipynb")
        in_folder = folder / f"{stem}.ipynb"
        if in_folder.is_file():
            paths.append(in_folder.resolve())
            continue
        known = ", ".join(p.stem for p in discover_notebooks(folder)) or "none"
        raise NotebookNotFoundError(
            f"unknown notebook {name!r}: expected a path to an .ipynb file or a notebook name "
            f"in {folder} (available: {known})"
        )
    return paths


def parse_parameters(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings for papermill.

    VALUE is read as a Python literal (``3``, ``0.5``, ``True``, ``[1, 2]``, ``'text'``), then
    as JSON (``true``, ``null``), else kept as a plain string. Raises ``ValueError`` on bad syntax.
    """
    parameters: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(
                f"--param {item!r}: expected KEY=VALUE with KEY a Python identifier, e.g. seed=1"
            )
        parameters[key] = _parse_value(raw.strip())
    return parameters


def _parse_value(raw: str) -> Any:
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    try:
        return json.loads(raw)
    except ValueError:
        return raw


# --------------------------------------------------------------------------------------------
# Running


def run_notebooks(
    paths: Sequence[Path],
    output_dir: Path,
    fast: bool = False,
    solutions: bool = False,
    parameters: Mapping[str, Any] | None = None,
    kernel_name: str = "python3",
    timeout: float | None = None,
    progress: bool = True,
    jobs: int = 1,
    html: bool = True,
) -> list[RunResult]:
    """Execute each notebook (each in its own folder) and export it to HTML.

    Papermill gets ``fast`` and ``solutions`` plus ``parameters`` (which win on conflicts).
    A failing notebook does not stop the others. ``timeout`` limits each cell, in seconds.
    ``jobs`` > 1 runs that many notebooks at once, each in its own process with one CPU thread
    per kernel (``OMP_NUM_THREADS=1``); models that several notebooks need are trained once (the
    cache's per-key lock makes the others wait, then load). Results come back in ``paths`` order.
    """
    from tqdm.auto import tqdm

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer (notebooks run at once), got {jobs!r}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    merged = {"fast": bool(fast), "solutions": bool(solutions), **dict(parameters or {})}
    paths = [Path(p) for p in paths]
    bar = tqdm(total=len(paths), desc="notebooks", unit="nb", disable=not progress)
    workers = training_workers(min(jobs, len(paths)), merged["fast"])
    if jobs == 1 or len(paths) <= 1:
        results = []
        for path in paths:
            bar.set_postfix_str(path.stem)
            result = run_notebook(path, output_dir, merged, kernel_name, timeout, html, workers)
            results.append(result)
            bar.update(1)
            if progress:
                bar.write(result.describe())
        bar.close()
        return results

    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no forked copies of torch's thread pools
    done: dict[int, RunResult] = {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(jobs, len(paths)), mp_context=context,
                                                initializer=_one_thread_per_kernel) as pool:
        futures = {pool.submit(run_notebook, path, output_dir, merged, kernel_name, timeout, html, workers): i
                   for i, path in enumerate(paths)}
        for future in concurrent.futures.as_completed(futures):
            i = futures[future]
            try:
                done[i] = future.result()
            except Exception as error:  # the worker process itself died
                done[i] = RunResult(name=paths[i].stem, source=paths[i], status=STATUS_FAILED, duration=0.0,
                                    error_name=type(error).__name__, error_value=str(error))
            bar.update(1)
            if progress:
                bar.write(done[i].describe())
    bar.close()
    return [done[i] for i in range(len(paths))]


class _NoHtml(Exception):
    """Internal: HTML export was not asked for (``labkd warm``)."""


def _one_thread_per_kernel() -> None:
    """Worker set-up of ``run_notebooks(jobs > 1)``: kernels started from here use one thread."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


def run_notebook(
    path: Path,
    output_dir: Path,
    parameters: Mapping[str, Any] | None = None,
    kernel_name: str = "python3",
    timeout: float | None = None,
    html: bool = True,
    workers: int = 1,
) -> RunResult:
    """Execute one notebook into ``output_dir`` and write its HTML (unless ``html=False``);
    never raises for cell errors. ``workers``: the kernel's ``LABKD_WORKERS`` (training processes,
    :mod:`labkd.parallel`) unless the caller's environment already sets it."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    path = Path(path).resolve()
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = path.stem
    executed = output_dir / f"{stem}.ipynb"
    results_file = output_dir / f"{stem}.results.json"
    partial = output_dir / f".{stem}.partial.ipynb"
    html_path = output_dir / f"{stem}.html"
    for stale in (results_file, partial):  # never show the last run's numbers
        stale.unlink(missing_ok=True)
    params = dict(parameters or {})
    mode = ("fast" if params.get("fast") else "full") + (", solutions" if params.get("solutions") else "")
    result = RunResult(name=stem, source=path, status=STATUS_OK, duration=0.0, mode=mode)

    start = time.perf_counter()
    previous = os.environ.get(RESULTS_ENV)
    os.environ[RESULTS_ENV] = str(results_file)
    own_workers = WORKERS_ENV not in os.environ
    if own_workers:
        os.environ[WORKERS_ENV] = str(workers)
    try:
        papermill.execute_notebook(
            str(path), str(partial), parameters=dict(parameters or {}), kernel_name=kernel_name,
            cwd=str(path.parent), progress_bar=False, log_output=False, execution_timeout=timeout,
        )
    except PapermillExecutionError as error:
        result.status = STATUS_FAILED
        result.failed_cell = error.cell_index
        result.execution_count = error.exec_count
        result.error_name, result.error_value = error.ename, error.evalue
    except Exception as error:  # kernel died, timeout, unreadable notebook, ...
        result.status = STATUS_FAILED
        result.error_name, result.error_value = type(error).__name__, str(error)
    finally:
        if previous is None:
            os.environ.pop(RESULTS_ENV, None)
        else:
            os.environ[RESULTS_ENV] = previous
        if own_workers:
            os.environ.pop(WORKERS_ENV, None)
        result.duration = time.perf_counter() - start

    if partial.is_file():
        os.replace(partial, executed)
        result.executed = executed
        try:
            if not html:
                raise _NoHtml
            result.html = export_html(executed, html_path)
        except _NoHtml:
            html_path.unlink(missing_ok=True)
        except Exception as error:  # the run's verdict stands; say why there is no HTML
            result.html_error = f"{type(error).__name__}: {error}"
            html_path.unlink(missing_ok=True)
    else:  # nothing was executed: drop the previous run's copies rather than show them
        executed.unlink(missing_ok=True)
        html_path.unlink(missing_ok=True)
    try:
        result.results = read_results(results_file)
    except ValueError as error:
        result.results_error = str(error)
    return result


def read_results(path: Path) -> dict[str, Any] | None:
    """The JSON object a notebook wrote to its results file; None when there is no file.

    Raises ``ValueError`` when the file is not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path.name} is not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} holds a {type(data).__name__}; expected a JSON object")
    return data


# --------------------------------------------------------------------------------------------
# HTML


#: MathJax 3 (SVG output: fonts drawn as paths, one self-contained file) from the
#: ``django-static-mathjax`` package, copied beside the reports so equations render offline.
MATHJAX_FILE = "tex-svg.js"
MATHJAX_FOLDER = "mathjax"
#: MathJax 3 reads this before it loads: the notebook's $...$ and $$...$$ delimiters.
MATHJAX_CONFIG = (
    "<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], "
    "displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']], processEscapes: true, processEnvironments: true}, "
    "svg: {fontCache: 'global'}};</script>\n"
)


def mathjax_source() -> Path:
    """The packaged MathJax 3 script (raises ``FileNotFoundError`` naming the package if missing)."""
    try:
        import mathjax  # the django-static-mathjax distribution
    except ImportError as error:
        raise FileNotFoundError("MathJax is not installed: pip install django-static-mathjax "
                                "(a labkd dependency; run `make install`)") from error
    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5" / MATHJAX_FILE
    if not source.is_file():
        raise FileNotFoundError(f"the django-static-mathjax package has no {source}")
    return source


def install_mathjax(output_dir: Path) -> Path:
    """Copy MathJax beside the reports once (``<output_dir>/mathjax/tex-svg.js``); return its path."""
    source = mathjax_source()
    target = Path(output_dir) / MATHJAX_FOLDER / MATHJAX_FILE
    if not target.is_file() or target.stat().st_size != source.stat().st_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, source.read_text(encoding="utf-8"))
    return target


def export_html(notebook: Path, html_path: Path) -> Path:
    """Write a standalone HTML page of an executed notebook (atomic) and return its path.

    The page works from a file with no network: plotly.js is embedded once, and the equations
    are typeset by a local MathJax 3 copied into ``mathjax/`` beside the page."""
    from nbconvert import HTMLExporter

    html_path = Path(html_path)
    install_mathjax(html_path.parent)
    url = f"{MATHJAX_FOLDER}/{MATHJAX_FILE}"
    nb = nbformat.read(str(notebook), as_version=4)
    exporter = HTMLExporter(template_name="lab", mathjax_url=url)
    body, _ = exporter.from_notebook_node(prepare_for_html(nb))
    tag = f'<script src="{url}">'
    if tag not in body:
        raise ValueError(f"the HTML template did not load MathJax from {url}; cannot configure it")
    body = body.replace(tag, MATHJAX_CONFIG + tag, 1)
    # require.js (from a CDN) only serves saved widget state, which a report never has: without
    # it the page loads nothing from the network.
    body = re.sub(r'<script src="https?://[^"]*require(\.min)?\.js"[^>]*>\s*</script>', "", body)
    atomic_write_text(html_path, body)
    return html_path


def prepare_for_html(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose plotly outputs carry offline, interactive ``text/html``.

    nbconvert does not render plotly's own mimetype, and plotly's notebook renderers load
    plotly.js from a CDN. Here the first figure embeds plotly.js (hidden from require.js, which
    the page template loads) and every figure draws into its own div.
    """
    nb = copy.deepcopy(nb)
    embedded = False
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            figures = [data[PLOTLY_MIMETYPE]] if PLOTLY_MIMETYPE in data else []
            static_panel = data.get(STATIC_PANEL_MIMETYPE)
            if isinstance(static_panel, Mapping):  # a widget panel: no widget state in a report,
                figures += list(static_panel.get("figures") or [])  # so show its first drawing
                data.pop(STATIC_PANEL_MIMETYPE)
                data.pop(WIDGET_VIEW_MIMETYPE, None)
            if not figures:
                continue
            snippet = "".join(_figure_html(f) for f in figures)
            if not embedded:
                snippet = _plotlyjs_script() + snippet
                embedded = True
            data["text/html"] = snippet
            data.pop(PLOTLY_MIMETYPE, None)
    return nb


def _figure_html(figure: Mapping[str, Any]) -> str:
    import plotly.io as pio

    figure = dict(figure)
    config = figure.pop("config", None)
    return pio.to_html(
        figure, config=config, include_plotlyjs=False, full_html=False, validate=False,
        default_height="525px",
    )


def _plotlyjs_script() -> str:
    from plotly.offline import get_plotlyjs

    # plotly.js registers as an anonymous AMD module when require.js is on the page, which
    # leaves window.Plotly undefined; hide `define` while it loads.
    source = get_plotlyjs().replace("</script>", "<\\/script>")
    return (
        "<script>window.__labkdDefine = window.define; window.define = undefined;</script>\n"
        f"<script type=\"text/javascript\">{source}</script>\n"
        "<script>window.define = window.__labkdDefine;</script>\n"
    )
