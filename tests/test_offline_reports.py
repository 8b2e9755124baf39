"""Reports work offline: equations typeset by a local MathJax, and every widget panel shows at
least its first drawing as a static plotly figure (a report has no kernel and no widget state).

The unit tests check the HTML; the browser test opens a generated report from a file with
every network request blocked and looks at what a reader sees.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from labkd import runner
from labkd.widgets import STATIC_PANEL_MIMETYPE

PANELS = 2
NOTEBOOK_SOURCE = [
    nbformat.v4.new_markdown_cell("# Report\n\nThe soft-target loss is $T^2\\,\\mathrm{KL}(p\\,\\|\\,q)$ and\n\n"
                                  "$$q_i = \\frac{\\exp(z_i/T)}{\\sum_j \\exp(z_j/T)}$$"),
    nbformat.v4.new_code_cell(
        "import ipywidgets as w\nimport plotly.graph_objects as go\nfrom labkd.widgets import Panel, figure_widget\n"
        "class Demo(Panel):\n"
        "    def __init__(self, k):\n"
        "        self.figure = figure_widget(go.Figure(go.Bar(x=['a', 'b'], y=[1, k])))\n"
        "        self.slider = w.IntSlider(value=k)\n"
        "        self.widget = w.VBox([self.slider, self.figure])\n"
        "    def update(self):\n"
        "        self.figure.data[0].y = [1, self.slider.value]\n"
        "display(Demo(2))"),
    nbformat.v4.new_code_cell("Demo(3)"),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("offline-report")
    source = folder / "src" / "01_demo.ipynb"
    source.parent.mkdir()
    nb = nbformat.v4.new_notebook(cells=NOTEBOOK_SOURCE)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(source))
    result = runner.run_notebook(source, folder / "reports", parameters={})
    assert result.ok, result.error_value
    assert result.html is not None, result.html_error
    return result.html


def test_panel_outputs_carry_a_static_copy_of_their_figures(report: Path) -> None:
    executed = nbformat.read(str(report.with_suffix(".ipynb")), as_version=4)
    bundles = [o["data"] for c in executed.cells for o in c.get("outputs", []) if "data" in o]
    panels = [b for b in bundles if STATIC_PANEL_MIMETYPE in b]
    assert len(panels) == PANELS
    for bundle in panels:
        assert "application/vnd.jupyter.widget-view+json" in bundle, "the live widget must still be displayed"
        figure = bundle[STATIC_PANEL_MIMETYPE]["figures"][0]
        assert figure["data"][0]["type"] == "bar"


def test_html_loads_mathjax_from_beside_the_report_and_configures_dollar_math(report: Path) -> None:
    page = report.read_text()
    assert '<script src="mathjax/tex-svg.js">' in page
    assert not re.search(r"<script[^>]+src=\"https?:", page), "the page must not load scripts from the network"
    config = page.index("window.MathJax = {tex: {inlineMath: [['$', '$']")
    assert config < page.index('<script src="mathjax/tex-svg.js">'), "MathJax 3 reads its config before it loads"
    script = report.parent / "mathjax" / "tex-svg.js"
    assert script.is_file() and script.stat().st_size > 100_000


def test_html_draws_each_panel_as_a_plotly_figure_not_an_empty_widget(report: Path) -> None:
    page = report.read_text()
    assert page.count('class="plotly-graph-div"') == PANELS
    assert 'type="application/vnd.jupyter.widget-view+json">' not in page, "an empty widget view is left"
    assert STATIC_PANEL_MIMETYPE not in page


def test_prepare_for_html_keeps_plain_widget_outputs_alone() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("w")])
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", data={
        "text/plain": "IntSlider()", "application/vnd.jupyter.widget-view+json": view})]
    out = runner.prepare_for_html(nb)
    assert out.cells[0].outputs[0]["data"]["application/vnd.jupyter.widget-view+json"] == view


def test_missing_mathjax_package_is_named(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_mathjax(name, *args, **kwargs):
        if name == "mathjax":
            raise ImportError("no module named mathjax")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mathjax)
    with pytest.raises(FileNotFoundError, match="django-static-mathjax"):
        runner.mathjax_source()


@pytest.mark.browser
@pytest.mark.slow
def test_report_renders_offline_in_a_browser(report: Path) -> None:
    """With every non-file request aborted: MathJax output and no raw $ in the text, and one
    drawn plotly figure per panel."""
    from browser_lab import CHROMIUM_ARGS, chromium_path

    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium binary (install Debian's 'chromium' or run 'make test-browser')")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the 'playwright' package is not installed")
    blocked: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()

            def guard(route) -> None:
                if route.request.url.startswith(("file:", "data:", "blob:")):
                    route.continue_()
                else:
                    blocked.append(route.request.url)
                    route.abort()

            page.route("**/*", guard)
            page.goto(report.as_uri())
            page.wait_for_selector("mjx-container", timeout=60_000)
            page.wait_for_function("document.querySelectorAll('.plotly-graph-div .main-svg').length >= 2",
                                   timeout=60_000)
            assert page.locator("mjx-container").count() >= 2
            text = page.locator(".jp-RenderedMarkdown").first.inner_text()
            assert "$" not in text, f"raw LaTeX left in the page: {text!r}"
            assert page.locator(".plotly-graph-div").count() == PANELS
            page.screenshot(path=str(report.with_name("offline-report.png")), full_page=True)
        finally:
            browser.close()
    assert json.dumps(blocked)  # whatever was blocked, the page rendered without it
