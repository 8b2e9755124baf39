"""What a student sees: the lessons' widgets and figures rendered in a real browser.

Headless Chromium drives JupyterLab: open a lesson, Run All, move a slider or press a button,
and check that the figure and read-out changed, that no widget failed to display and that no
cell raised. Screenshots go to ``reports/``. Runs when a Chromium binary is present
(Debian's ``chromium``; ``make test-browser`` installs it), skips with the reason otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from browser_lab import CHROMIUM_ARGS, chromium_path, copy_notebook, jupyter_lab

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
IDLE = "Python 3 (ipykernel) | Idle"
RUN_TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium binary (install Debian's 'chromium' or run 'make test-browser')")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the 'playwright' package is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def lab(tmp_path):
    """Yield a function that serves a fast-mode copy of a lesson and returns its URL."""
    served = tmp_path / "notebooks"
    served.mkdir()
    stack = []

    def open_lesson(name: str) -> str:
        copy_notebook(REPO / "notebooks" / name, served, {"fast": True})
        context = jupyter_lab(served, tmp_path / "jupyter")
        url = context.__enter__()
        stack.append(context)
        return url.format(name=name)

    yield open_lesson
    for context in reversed(stack):
        context.__exit__(None, None, None)


def run_all(page, url: str) -> None:
    """Open the notebook, wait for its kernel, Run All, and wait until the kernel is idle again."""
    page.goto(url)
    status = page.locator(".jp-StatusBar-Widget", has_text=IDLE)
    status.first.wait_for(timeout=120_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator("[data-command='runmenu:run-all']").click()
    # Busy first, then idle with every cell executed (no "[*]" prompt left).
    page.wait_for_function(
        """() => { const prompts = [...document.querySelectorAll('.jp-InputArea-prompt')].map(e => e.textContent);
                   return prompts.length > 0 && prompts.every(p => !p.includes('*') && /\\d/.test(p) || p.trim() === ''); }""",
        timeout=RUN_TIMEOUT_MS,
    )
    status.first.wait_for(timeout=RUN_TIMEOUT_MS)


def check_clean(page) -> None:
    text = page.locator(".jp-NotebookPanel").inner_text()
    assert "Error displaying widget" not in text
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert not tracebacks, tracebacks[0][:2000]


def bar_paths(page, panel: str) -> list[str]:
    return page.locator(f"{panel} .js-plotly-plot .barlayer .point path").evaluate_all(
        "paths => paths.map(p => p.getAttribute('d'))")


def screenshot(page, locator, name: str) -> Path:
    folder = REPO / "reports"
    folder.mkdir(exist_ok=True)
    path = folder / name
    locator.screenshot(path=str(path))
    return path


def test_temperature_slider_updates_bars_and_entropy(browser, lab):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    run_all(page, lab("01_soft_targets.ipynb"))
    check_clean(page)
    panel = ".labkd-soft-target-panel"
    page.locator(panel).first.scroll_into_view_if_needed()
    # widgets render asynchronously after the cell finished: wait for the read-out and the bars
    page.wait_for_function(
        "sel => { const e = document.querySelector(sel); return e && /entropy \\d/.test(e.innerText); }",
        arg=f"{panel} .labkd-entropy", timeout=30_000)
    page.locator(f"{panel} .js-plotly-plot .barlayer .point path").first.wait_for(timeout=30_000)
    before_bars, before_text = bar_paths(page, panel), page.locator(f"{panel} .labkd-entropy").first.inner_text()
    assert before_bars, "the probability plot drew no bars"
    assert re.search(r"entropy \d", before_text), before_text
    handle = page.locator(f"{panel} .labkd-temperature-slider .noUi-handle").first
    handle.focus()
    for _ in range(40):  # 40 steps of 0.01 in log10(T): T grows about 2.5 times
        handle.press("ArrowRight")
    page.wait_for_function(
        "([sel, old]) => document.querySelector(sel).innerText !== old",
        arg=[f"{panel} .labkd-entropy", before_text], timeout=20_000)
    page.wait_for_timeout(500)
    after_bars, after_text = bar_paths(page, panel), page.locator(f"{panel} .labkd-entropy").first.inner_text()
    assert after_text != before_text
    assert after_bars != before_bars, "the bars did not move with the temperature"
    shot = screenshot(page, page.locator(panel).first, "browser-01_soft_targets.png")
    assert shot.stat().st_size > 10_000
    check_clean(page)


def test_train_button_shows_progress_and_updates_plot(browser, lab):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    run_all(page, lab("04_teacher_size.ipynb"))
    check_clean(page)
    panel = ".labkd-teacher-size-panel"
    page.locator(panel).first.scroll_into_view_if_needed()
    picker = page.locator(f"{panel} .labkd-student-size select").first
    # ipywidgets writes option labels with non-breaking spaces
    options = picker.locator("option").evaluate_all("options => options.map(o => o.textContent.replace(/\\u00a0/g, ' '))")
    untrained = [i for i, o in enumerate(options) if "not trained" in o]
    if not untrained:
        pytest.fail(f"the teacher-size panel offers no untrained student size ({options}), so its Train button cannot be tested")
    plot = f"{panel} .js-plotly-plot"
    picker.select_option(index=untrained[0])
    page.locator(plot, has_text="not trained yet").first.wait_for(timeout=20_000)
    before = page.locator(plot).first.inner_html()
    button = page.locator(f"{panel} .labkd-train-button").first
    assert button.is_enabled()
    button.click()
    page.locator(f"{panel} .widget-inline-hbox progress, {panel} .progress-bar").first.wait_for(timeout=30_000)
    # Finished when the button says every run is trained and the placeholder text is gone.
    page.locator(f"{panel} .labkd-train-button", has_text="all runs trained").first.wait_for(timeout=RUN_TIMEOUT_MS)
    page.wait_for_timeout(1000)
    assert page.locator(plot, has_text="not trained yet").count() == 0
    assert page.locator(plot).first.inner_html() != before, "the plot did not change after training"
    screenshot(page, page.locator(panel).first, "browser-04_teacher_size.png")
    check_clean(page)
