"""Fixtures of the real-browser test: Debian's chromium, one JupyterLab 4
server on a temp copy of notebooks/, one headless browser for the session.

Nothing here touches the network: the server listens on 127.0.0.1 with a
random token, news / update checks are off, and chromium runs with the
background-networking features disabled.
"""

from __future__ import annotations

import os
import shutil

import pytest
from labdriver import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    running_lab,
    write_scratch_notebook,
    write_widgets_notebook,
)

NOTEBOOKS = ROOT / "notebooks"


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        if on_ci():
            pytest.fail(f"{CHROMIUM} is missing on CI: run `make chromium` first")
        pytest.skip(f"{CHROMIUM} not installed (`make chromium` installs Debian's package)")
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory, chromium_path):
    """A JupyterLab 4 server on a temp copy of notebooks/ (+ the harness's
    scratch notebook and the every-widget notebook). Yields a dict: base url,
    token, notebook dir."""
    work = tmp_path_factory.mktemp("lab")
    nb_dir = work / "notebooks"
    if NOTEBOOKS.is_dir():
        shutil.copytree(NOTEBOOKS, nb_dir, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    else:
        nb_dir.mkdir()
    write_scratch_notebook(nb_dir / "_scratch_view_widget.ipynb")
    write_widgets_notebook(nb_dir / "_every_widget.ipynb")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with running_lab(work, ARTIFACTS / "jupyterlab.log") as server:
        yield server


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
