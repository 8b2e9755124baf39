"""A throwaway JupyterLab server and a headless Chromium page for the browser tests.

The server gets its own config, data, runtime and IPython folders in a temporary directory
and serves a copy of the notebooks, so nothing reaches the home folder or the repository.
It listens on 127.0.0.1 only, with a random token, and is stopped by its process id.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """The Chromium binary to drive, or None (the browser tests then skip and say why)."""
    configured = os.environ.get("LABKD_CHROMIUM")
    for candidate in ([configured] if configured else []) + list(CHROMIUM_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_notebook(source: Path, folder: Path, parameters: dict) -> Path:
    """Copy ``source`` into ``folder`` with its ``parameters`` cell set to ``parameters``."""
    nb = nbformat.read(str(source), as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source += "\n# set by the browser test\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    target = folder / source.name
    nbformat.write(nb, str(target))
    return target


@contextmanager
def jupyter_lab(root: Path, scratch: Path, timeout: float = 90.0) -> Iterator[str]:
    """Start JupyterLab serving ``root``; yield its base URL with the token; always stop it."""
    env = dict(os.environ)
    for variable in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        env[variable] = str(scratch / variable.lower())
        Path(env[variable]).mkdir(parents=True, exist_ok=True)
    # The kernel spec comes from the virtual environment, not from the scratch data folder.
    env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter")
    settings = Path(env["JUPYTER_CONFIG_DIR"]) / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    token, port = secrets.token_hex(16), free_port()
    log = open(scratch / "jupyter.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
         "--LabApp.news_url=", "--LabServerApp.workspaces_dir=" + str(scratch / "workspaces")],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {process.returncode}: {(scratch / 'jupyter.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"jupyter lab did not answer within {timeout:.0f} s")
            time.sleep(0.5)
        yield f"{url}/lab/tree/{{name}}?token={token}"
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and its kernels (its whole process group), by process id."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
