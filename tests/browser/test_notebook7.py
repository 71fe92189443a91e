"""The picture canvas in Notebook 7, in headless Chromium.

The session's server (conftest.py's ``lab_server``, started as ``jupyter lab``)
also serves Notebook 7's own page, ``/notebooks/<path>``, from the ``notebook``
server extension: no second server (under ``make test``'s xdist workers, a
worker that runs this file and not Lab's starts its own, as for any session
fixture). A small notebook written here shows the
activation browser on the demo model; the test opens it in a new page of the
session's browser, runs it from Notebook 7's menu bar (Run > Run All Cells),
and checks that

- the page is Notebook 7's (its application, not Lab's), no cell raised, and
  the widget view rendered with no "Error displaying widget";
- the canvas painted a picture that is not blank, and the picture read back
  from the page is the kernel's grid and the grid in its ``view`` (within one
  level per channel);
- the channel box, a control linked to the canvas in the page (jslink), moves
  the selection ring: the canvas repaints and its new pixels are the kernel's
  ``view`` after the move;
- a click on a tile reaches the kernel: the channel under the pointer becomes
  the kernel's channel, and the page shows the kernel's ``view`` again.

Lab's own test (test_notebooks_in_lab.py) covers every widget, hover, zoom
and reset; here the point is what differs in Notebook 7: its page, shell,
menus and widget manager set-up.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from labdriver import (
    Notebook7Page,
    assert_same_picture,
    kernel_picture,
    settle_kernel,
    wait_painted,
    write_notebook,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "_notebook7_canvas.ipynb"
RUN_TIMEOUT = 300  # s: kernel start + TensorFlow import on 2 busy cores
CELL = """\
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import cnnwidgets as cw

probe = cw.Probe(cw.assets.demo_model("shapes_cnn"),
                 class_names=cw.assets.demo_class_names("shapes_cnn"))
images, labels, boxes = cw.assets.make_pairs(1, seed=7)
browser = cw.ActivationBrowser(probe, images[:1], layer="block1_conv1")
browser.add_class("cwtest-browser")  # the checks find it by this
browser.wait()
"""


@pytest.fixture(scope="module")
def context(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1200})
    ctx.set_default_timeout(60_000)
    yield ctx
    ctx.close()


def grid_of_view(nb: Notebook7Page, shape: tuple[int, ...]) -> np.ndarray:
    """The grid's part of the kernel's ``view`` (below the title line)."""
    top, left = (int(v) for v in nb.kernel("print(*browser.grid_origin)").split())
    view = kernel_picture(nb, "browser.view")
    return view[top : top + shape[0], left : left + shape[1]]


@pytest.mark.timeout(RUN_TIMEOUT + 300)
def test_activation_browser_canvas_in_notebook7(lab_server, context):
    import nbformat

    pytest.importorskip("notebook", minversion="7")  # the test extra has it

    write_notebook(
        lab_server["dir"] / NOTEBOOK,
        [
            nbformat.v4.new_markdown_cell("The canvas in Notebook 7, for the browser test."),
            nbformat.v4.new_code_cell(textwrap.dedent(CELL)),
        ],
    )
    page = context.new_page()
    nb = Notebook7Page(page, lab_server["base"], lab_server["token"], NOTEBOOK)
    try:
        nb.open()
        app = page.evaluate("() => window.jupyterapp.name")
        assert app == "Jupyter Notebook", f"{page.url} opened {app!r}, not Notebook 7"
        assert page.locator("#main-panel .jp-Notebook").count() == 1
        state = nb.run_all(timeout=RUN_TIMEOUT)
        nb.screenshot("ran")
        assert not state["errors"], f"cells raised in Notebook 7: {state['errors']}"
        assert state["pending"] == 0, state
        items = nb.widget_outputs()
        assert [i["static"] for i in items] == [True], items

        # Rendered: a canvas with a picture on it, not a blank one.
        root = page.locator(".cwtest-browser").first
        root.scroll_into_view_if_needed()
        canvas = root.locator(".cnnwidgets-canvas").first
        painted = wait_painted(canvas, 0)
        assert not nb.error_texts(), f"{nb.error_texts()}\n" + "\n".join(nb.console[-20:])
        got = nb.canvas_pixels(canvas)
        screen = got["screen"]
        assert screen.shape[0] > 16 and screen.shape[1] > 16, screen.shape
        assert len(np.unique(screen.reshape(-1, 3), axis=0)) > 16, "the canvas is blank"
        assert (screen < 250).any(axis=-1).mean() > 0.5, "the canvas is mostly white"

        # The page's picture is the kernel's: the canvas's own, and its place in view.
        grid = kernel_picture(nb, "browser.canvas.compose()")
        assert_same_picture(got["picture"], grid, "grid")
        assert_same_picture(screen, grid, "grid on screen")
        assert_same_picture(got["picture"], grid_of_view(nb, grid.shape), "view")

        # The channel box, linked to the canvas in the page: the ring moves there.
        assert nb.kernel("print(browser.channel.value)").strip() == "0"
        box = root.locator(".widget-inline-hbox input[type=number]").first
        box.focus()
        box.press("ArrowUp")
        box.press("Enter")
        painted = wait_painted(canvas, painted)
        settle_kernel(nb)
        selected = nb.kernel("print(browser.channel.value, browser.canvas.selected)").split()
        assert selected == ["1", "1"], selected
        moved = nb.canvas_pixels(canvas)["picture"]
        assert not np.array_equal(moved, got["picture"]), "the ring did not move"
        assert_same_picture(moved, grid_of_view(nb, moved.shape), "view after the channel move")

        # A click on the first tile of the second row selects its channel in the kernel.
        geometry = nb.kernel("g = browser.grid; print(*g.tile_hw, g.pad, g.cols)")
        th, tw, pad, cols = (int(v) for v in geometry.split())
        pick = int(nb.kernel(f"print(browser.grid.channels[{cols}])"))
        assert pick != 1
        shown = canvas.locator("canvas").first
        shown.scroll_into_view_if_needed()
        bounds = shown.bounding_box()
        scale = bounds["width"] / moved.shape[1]
        x = bounds["x"] + scale * tw / 2
        y = bounds["y"] + scale * (th + pad + th / 2)
        page.mouse.click(x, y)
        wait_painted(canvas, painted)
        settle_kernel(nb)
        selected = nb.kernel("print(browser.channel.value, browser.canvas.selected)").split()
        assert selected == [str(pick)] * 2, (pick, selected)
        clicked = nb.canvas_pixels(canvas)["picture"]
        assert_same_picture(clicked, grid_of_view(nb, clicked.shape), "view after the click")
        assert not nb.error_texts(), f"{nb.error_texts()}\n" + "\n".join(nb.console[-20:])
        nb.screenshot("canvas", root)
    except BaseException:
        nb.screenshot("failed")
        raise
    finally:
        nb.shutdown_kernels()
        page.close()
