"""pyproject.toml, environment.yml, .gitignore, the Makefile and .ci/run agree with each other."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


def _pyproject(repo_root: Path) -> dict:
    return tomllib.loads((repo_root / "pyproject.toml").read_text(encoding="utf-8"))


def _pyproject_requirements(repo_root: Path) -> list[str]:
    project = _pyproject(repo_root)["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["dev"]]


def _conda_env(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "environment.yml").read_text(encoding="utf-8"))


def _conda_pip_requirements(env: dict) -> list[str]:
    lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(lists) == 1, f"environment.yml needs exactly one `pip:` list, found {len(lists)}"
    return lists[0]


def _by_name(requirements: list[str], where: str) -> dict[str, Requirement]:
    parsed: dict[str, Requirement] = {}
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name not in parsed, f"{where} lists {name} twice"
        parsed[name] = requirement
    return parsed


def test_conda_pip_list_matches_pyproject(repo_root: Path) -> None:
    expected = _by_name(_pyproject_requirements(repo_root), "pyproject.toml")
    actual = _by_name(_conda_pip_requirements(_conda_env(repo_root)), "environment.yml")
    assert sorted(actual) == sorted(expected), "environment.yml and pyproject.toml name different packages"
    for name, requirement in expected.items():
        assert actual[name].specifier == requirement.specifier, (
            f"{name}: environment.yml says {actual[name].specifier}, pyproject.toml {requirement.specifier}"
        )
        assert actual[name].extras == requirement.extras, f"{name}: extras differ"


def test_conda_env_is_python_311_with_pip(repo_root: Path) -> None:
    env = _conda_env(repo_root)
    assert env["name"] == "labkd"
    plain = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in plain
    assert "pip" in plain
    requires_python = _pyproject(repo_root)["project"]["requires-python"]
    assert Requirement(f"python{requires_python}").specifier.contains(Version("3.11")), (
        f"requires-python {requires_python!r} excludes the conda env's Python 3.11"
    )


def test_every_dependency_has_a_version_and_torch_is_pinned(repo_root: Path) -> None:
    requirements = _by_name(_pyproject_requirements(repo_root), "pyproject.toml")
    unversioned = [name for name, r in requirements.items() if not r.specifier]
    assert not unversioned, f"no version specifier for: {', '.join(unversioned)}"
    for name in ("torch", "torchvision"):
        specs = list(requirements[name].specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{name} must be pinned with ==, got {specs}"


def test_pyproject_declares_the_cli_and_markers(repo_root: Path) -> None:
    pyproject = _pyproject(repo_root)
    assert pyproject["project"]["scripts"]["labkd"] == "labkd.cli:main"
    markers = " ".join(pyproject["tool"]["pytest"]["ini_options"]["markers"])
    for marker in ("notebook:", "browser:", "slow:"):
        assert marker in markers


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_gitignore_keeps_datasets_and_outputs_out(repo_root: Path) -> None:
    if subprocess.run(["git", "rev-parse"], cwd=repo_root, capture_output=True).returncode:
        pytest.skip("not a git work tree")
    ignored = [
        ".venv/bin/python", "data/MNIST/raw/train-images-idx3-ubyte", "data/anything.zip",
        "reports/index.html", "notebooks/executed/01.ipynb", "labkd/__pycache__/cli.cpython-311.pyc",
        "notebooks/.ipynb_checkpoints/x-checkpoint.ipynb", "labkd.egg-info/PKG-INFO",
        ".pytest_cache/README.md", ".cache/labkd/model.pt",
    ]
    kept = ["data/README.md", "labkd/cli.py", "notebooks/00_start_here.ipynb", "Makefile", ".ci/run"]
    check = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin", "-v", "-n"], cwd=repo_root,
        input="\n".join(ignored + kept) + "\n", capture_output=True, text=True,
    )
    verdict = {}
    for line in check.stdout.splitlines():
        source, _, path = line.partition("\t")
        verdict[path] = bool(source.strip(":")) and not source.split(":")[-1].startswith("!")
    for path in ignored:
        assert verdict.get(path), f".gitignore should ignore {path}"
    for path in kept:
        assert not verdict.get(path), f".gitignore must not ignore {path}"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_target(repo_root: Path) -> None:
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=repo_root,
                         capture_output=True, text=True, check=True).stdout
    for target in ("install", "lab", "test", "test-browser", "report", "report-fast", "clean"):
        assert f"make {target} " in out, f"`make help` does not list {target}"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_install_is_guarded_by_a_stamp(repo_root: Path) -> None:
    # A dry run with a brand-new PY would create the venv and install into it once.
    plan = subprocess.run(["make", "-n", "--no-print-directory", "install", "VENV=/nonexistent/venv"],
                          cwd=repo_root, capture_output=True, text=True)
    makefile = (repo_root / "Makefile").read_text(encoding="utf-8")
    assert "$(STAMP): pyproject.toml" in makefile
    commands = plan.stdout
    assert commands.count("pip install -e '.[dev]'") == 1, commands
    assert "-m venv" in commands and "touch" in commands, commands


def test_ci_script_is_strict_bash(repo_root: Path) -> None:
    script = repo_root / ".ci" / "run"
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert "make test" in text
    subprocess.run(["bash", "-n", str(script)], check=True)
