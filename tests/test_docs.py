"""The documentation builds with MkDocs --strict (warnings are errors), from the
committed sources only: no network, notebooks rendered from their committed
outputs, the API reference from the docstrings, a picture on every widget page."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")
pytest.importorskip("mkdocs_jupyter")

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# widget class -> its module, page and picture name
WIDGETS = {
    "GradCAMComparator": "gradcam_comparator",
    "ActivationBrowser": "activation_browser",
    "FilterGallery": "filter_gallery",
    "OcclusionScrubber": "occlusion_scrubber",
    "ModelOverview": "model_overview",
    "DatasetExplorer": "dataset_explorer",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    # the build must not reach any server: point every proxy at a closed port
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env[var] = "http://127.0.0.1:9"
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "WARNING" not in run.stderr, run.stderr[-4000:]
    return out


@pytest.mark.slow
def test_every_notebook_is_a_page_with_its_outputs(site):
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    for nb in notebooks:
        page = site / "notebooks" / nb.stem / "index.html"
        assert page.exists(), nb.name
        html = page.read_text()
        # committed outputs, not re-executed: the static PNGs of widgets and figures
        assert "data:image/png;base64" in html, nb.name
        assert "Error displaying widget" not in html


@pytest.mark.slow
def test_widget_pages_show_their_pictures(site):
    for name, module in WIDGETS.items():
        png = DOCS / "img" / f"{module}.png"
        assert png.exists(), f"{png.name}: run scripts/make_doc_pictures.py"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size < 200_000, "keep committed pictures small"
        html = (site / "widgets" / module / "index.html").read_text()
        assert f'src="../../img/{png.name}"' in html
        assert f'id="cnnwidgets.widgets.{module}.{name}"' in html  # its reference


@pytest.mark.slow
def test_api_reference_comes_from_the_docstrings(site):
    from cnnwidgets.explain import cam

    html = (site / "api" / "cam" / "index.html").read_text()
    assert 'id="cnnwidgets.explain.cam.gradcam"' in html
    # a sentence of gradcam's docstring made it to the page
    first = cam.gradcam.__doc__.strip().splitlines()[0]
    assert first.rstrip(".") in html
    for page in ["probe", "saliency", "occlusion", "filters", "layers", "metrics", "widgets",
                 "render", "assets", "progress"]:
        assert (site / "api" / page / "index.html").exists(), page


def test_nav_lists_every_page_and_notebook():
    text = (ROOT / "mkdocs.yml").read_text()
    for md in DOCS.rglob("*.md"):
        assert str(md.relative_to(DOCS)) in text, md
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        assert f"notebooks/{nb.name}" in text, nb.name
