"""JupyterLab starts on a copy of the notebooks and serves them (loopback only, token required).

All of Jupyter's and IPython's folders point into a temporary folder: nothing is written to home.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import write_notebook

STARTUP_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _wait_until_up(url: str, token: str, server: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            status, body = _get(url, token)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            status, body = 0, b""
        if status == 200:
            return json.loads(body)
        time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer {url} within {STARTUP_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_jupyter_lab_serves_the_notebooks(repo_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "notebooks"
    shutil.copytree(repo_root / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    write_notebook(root / "zz_scratch.ipynb", ["print('hello')"])  # so the listing is never empty
    expected = sorted(p.name for p in root.glob("*.ipynb"))

    env = dict(os.environ)
    for variable in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        env[variable] = str(tmp_path / variable.lower())
    port, token = _free_port(), secrets.token_hex(24)
    log = tmp_path / "jupyter-lab.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}", "--allow-root",
    ]
    with open(log, "wb") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        listing = _wait_until_up(f"{base}/api/contents", token, server, log)
        assert sorted(item["name"] for item in listing["content"] if item["type"] == "notebook") == expected

        assert _get(f"{base}/api/contents", token=None)[0] == 403, "the server must require the token"
        status, body = _get(f"{base}/api/kernelspecs", token)
        assert status == 200 and "python3" in json.loads(body)["kernelspecs"]
        status, body = _get(f"{base}/lab", token)
        assert status == 200 and b"JupyterLab" in body
        assert list((tmp_path / "jupyter_runtime_dir").glob("jpserver-*.json")), "runtime files went elsewhere"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
