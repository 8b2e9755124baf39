"""What every lesson does first and last: set up, load data, show a banner, time the run.

>>> data = labkd.notebook.start(dataset="mnist", fast=fast, seed=seed)
...
>>> labkd.notebook.finish()     # prints and records how long the notebook took
"""

from __future__ import annotations

import html
import platform
import time

import torch

from labkd import __version__, clock
from labkd.data import Data, load_data
from labkd.results import record
from labkd.train import default_device

_started: float | None = None


def start(dataset: str = "mnist", fast: bool = False, seed: int = 0, fallback: bool = True,
          n_train_fast: int = 2000, n_eval_fast: int = 1000, quiet: bool = False) -> Data:
    """Seed torch, pick the plotly renderer, load ``dataset`` and return it.

    In fast mode the splits are cut to ``n_train_fast`` training and ``n_eval_fast`` validation
    and test images, so the notebook runs in seconds. If the files are missing and cannot be
    downloaded, the bundled 8x8 digits are used instead and a warning banner says so.
    """
    global _started
    _started = time.perf_counter()
    clock.reset()
    torch.manual_seed(seed)
    _configure_plotly()
    return load(dataset, fast, seed, fallback, n_train_fast, n_eval_fast, quiet)


def load(dataset: str = "mnist", fast: bool = False, seed: int = 0, fallback: bool = True,
         n_train_fast: int = 2000, n_eval_fast: int = 1000, quiet: bool = False) -> Data:
    """A (second) dataset with the lesson's fast-mode cut and the same visible fallback banner as
    :func:`start`, without restarting the lesson's clock: ``fashion = notebook.load("fashion_mnist", fast)``."""
    data = load_data(dataset, fallback=fallback)
    if fast:
        data = data.subset(n_train=min(n_train_fast, len(data.train)), n_val=min(n_eval_fast, len(data.val)),
                           n_test=min(n_eval_fast, len(data.test)), seed=seed)
    if not quiet:
        _display_html(banner(data, fast))
    return data


def banner(data: Data, fast: bool) -> str:
    """HTML describing the data in use; a warning box when the lab fell back to digits."""
    sizes = f"{len(data.train):,} train / {len(data.val):,} val / {len(data.test):,} test"
    mode = "fast mode (tiny subsets: numbers are illustrative only)" if fast else "full mode"
    device = default_device()
    line = (f"<b>labkd {__version__}</b> · dataset <b>{data.name}</b> ({sizes}) · {mode} · "
            f"device {device} · torch {torch.__version__} · Python {platform.python_version()}")
    if data.fallback_reason:
        return (
            '<div style="border:2px solid #d9534f;background:#fdecea;padding:8px;border-radius:4px">'
            "<b>⚠ Using the small offline digits dataset (8×8 images) instead of the one requested.</b> "
            f"Results will differ from the lesson text. Reason: {html.escape(data.fallback_reason)}<br>{line}</div>"
        )
    return f'<div style="border-left:4px solid #5cb85c;padding:4px 8px">{line}</div>'


def finish() -> float:
    """Print and record the notebook's running time in seconds."""
    if _started is None:
        raise RuntimeError("call labkd.notebook.start(...) at the top of the notebook first")
    seconds = time.perf_counter() - _started
    used = clock.totals()
    record(notebook_seconds=round(seconds, 1), **used)
    print(f"This notebook ran in {seconds:.1f} s: {used['training_seconds']:.1f} s training "
          f"{used['models_trained']} model(s), {used['loading_seconds']:.1f} s loading {used['models_loaded']} "
          f"from the model cache.")
    return seconds


def _configure_plotly() -> None:
    import plotly.io as pio

    # JupyterLab renders this mimetype natively; `labkd run` embeds plotly.js in its HTML.
    pio.renderers.default = "plotly_mimetype"
    pio.templates.default = "plotly_white"


def _display_html(text: str) -> None:
    try:
        from IPython.display import HTML, display
    except ImportError:  # plain Python
        print(text)
        return
    display(HTML(text))
