"""Where labkd keeps data, cached models and reports.

Every location has a default and an environment variable that overrides it:

========  ==========================  ================
what      default                     variable
========  ==========================  ================
datasets  ``<repo>/data``             ``LABKD_DATA``
models    ``~/.cache/labkd``          ``LABKD_CACHE``
reports   ``<repo>/reports``          ``LABKD_REPORTS``
========  ==========================  ================
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _from_env(variable: str, default: Path, must_exist: bool = False) -> Path:
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    path = Path(value).expanduser()
    if must_exist and not path.is_dir():
        raise FileNotFoundError(
            f"{variable}={value!r} does not name an existing folder. "
            f"Point {variable} at the folder that holds MNIST/raw and FashionMNIST/raw, "
            f"or unset it to use the default {default}."
        )
    return path


def data_dir() -> Path:
    """The dataset folder: ``LABKD_DATA`` if set (it must exist), else ``<repo>/data``."""
    return _from_env("LABKD_DATA", REPO_ROOT / "data", must_exist=True)


def cache_dir() -> Path:
    """The trained-model cache: ``LABKD_CACHE`` if set, else ``~/.cache/labkd``."""
    return _from_env("LABKD_CACHE", Path.home() / ".cache" / "labkd")


def reports_dir() -> Path:
    """Where executed notebooks and HTML reports go: ``LABKD_REPORTS`` or ``<repo>/reports``."""
    return _from_env("LABKD_REPORTS", REPO_ROOT / "reports")


def notebooks_dir() -> Path:
    """The course notebooks shipped with the repository."""
    return REPO_ROOT / "notebooks"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file of a unique name beside ``path``, then move it into place:
    concurrent writers never share a temporary file, and readers see the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
