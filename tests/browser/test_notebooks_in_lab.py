"""Every widget, and the tour, in a real JupyterLab 4, in headless Chromium.

Three notebooks: the tour (what a student opens first, `make lab`), a
notebook with each cnnwidgets widget once (written here, on the demo model),
and a harness check. Every tutorial notebook is executed by nbval in the
same suite; running each again in Lab would repeat that work and add no
widget kind, so the browser's time goes to the widgets themselves.

One Lab server (on a temp copy of notebooks/), one browser, one page and one
kernel per notebook. For each notebook: Run > Run All Cells (Lab's
``notebook:run-all-cells`` command), wait until the kernel is idle with every
cell run, then check that

- no cell raised (cells tagged ``raises-exception`` excepted);
- every widget view rendered: its pictures loaded (naturalWidth > 0) and
  "Error displaying widget" appears nowhere;
- every cnnwidgets widget (a widget view with an 'image/png' beside it) shows
  a picture, and moving one of its controls (the first slider, dropdown or
  toggle button that changes anything) changes that picture;
- in the every-widget notebook, the pictures composed in the page (the
  anywidget canvas) are the kernel's ``view`` to within one level per channel,
  read back from the page, after a control move and a click in the page; hover
  shows the value under the pointer; the wheel zooms and a double click resets.
  The activation browser's grid, the comparator's panels (per method row the
  legend and one canvas drawing the pinned and slider panels, put together as
  ``view`` lays them out) and the filter gallery's page are checked; a gallery
  page move and a comparator scale-mode change repaint while the kernel is
  busy (no round trip), and the page move sends no picture.

Screenshots go to tests/browser/artifacts/ (git-ignored). A harness notebook
written here (a minimal ViewWidget with a slider) runs beside the real ones,
so the test proves itself even before any tutorial notebook exists.

The last test is Notebook 7's (kept in this file so that ``make test``'s
xdist workers, which take whole files, start one server for both). The
session's server (conftest.py's ``lab_server``, started as ``jupyter lab``)
also serves Notebook 7's own page, ``/notebooks/<path>``, from the
``notebook`` server extension. A small notebook written here shows the
activation browser on the demo model; the test opens it in a new page of the
session's browser, runs it from Notebook 7's menu bar (Run > Run All Cells),
and checks that the page is Notebook 7's, no cell raised and the widget
rendered; the canvas painted a picture that is not blank and equal to the
kernel's ``view`` (within one level per channel); the channel box (jslinked)
moves the selection ring in the page and the new pixels are ``view`` after
the move; a click on a tile selects its channel in the kernel. Lab's tests
cover every widget, hover, zoom and reset; Notebook 7's checks what differs
there: its page, shell, menus and widget manager set-up.
"""

from __future__ import annotations

import pathlib
import textwrap
import time

import numpy as np
import pytest
from labdriver import (
    WIDGET_CELLS,
    LabPage,
    Notebook7Page,
    assert_same_picture,
    kernel_picture,
    settle_kernel,
    wait_painted,
    write_notebook,
)

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCRATCH = "_scratch_view_widget.ipynb"
EVERY_WIDGET = "_every_widget.ipynb"
NOTEBOOK_NAMES = ["00_tour.ipynb", EVERY_WIDGET, SCRATCH]

RUN_TIMEOUT = 600  # s for Run All Cells: kernel start + TensorFlow import on 2 busy cores
PICTURE_TIMEOUT = 60  # s for a widget's pictures to load / to change after a control moved
MAX_CONTROLS = 3  # controls tried per widget before calling it unresponsive


@pytest.fixture(scope="module")
def context(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1400})
    ctx.set_default_timeout(60_000)
    yield ctx
    ctx.close()


def changed(before: list[dict], after: list[dict]) -> bool:
    loaded = all(p["complete"] and p["width"] > 0 for p in after)
    return loaded and [p["src"] for p in after] != [p["src"] for p in before]


def move_one_control(lab: LabPage, item: dict, label: str) -> str | None:
    """Move controls of one widget until its picture changes; returns what
    worked, or None (with what was tried in lab.console)."""
    output = item["locator"]
    controls = lab.controls(output)
    tried = []
    for k in range(min(controls.count(), MAX_CONTROLS)):
        before = lab.wait_pictures_loaded(output, timeout=PICTURE_TIMEOUT)
        action = lab.move(controls.nth(k))
        if not action:
            tried.append(f"control {k}: could not be moved")
            continue
        deadline = time.monotonic() + PICTURE_TIMEOUT
        while time.monotonic() < deadline:
            if changed(before, lab.pictures(output)):
                lab.screenshot(f"{label}-after", output)
                return action
            time.sleep(0.5)
        tried.append(f"control {k}: {action}, picture unchanged after {PICTURE_TIMEOUT} s")
    lab.console.append(f"{label}: " + ("; ".join(tried) or "no slider, dropdown or toggle"))
    return None


def test_the_widget_notebook_shows_every_widget():
    import cnnwidgets as cw

    shown = " ".join(WIDGET_CELLS)
    widgets = [
        n
        for n in dir(cw)
        if n.endswith(("Comparator", "Browser", "Gallery", "Scrubber", "Overview", "Explorer"))
    ]
    assert len(widgets) == 6
    assert all(f"cw.{n}(" in shown for n in widgets), widgets


@pytest.mark.timeout(RUN_TIMEOUT + 600)
@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_in_lab(lab_server, context, name):
    page = context.new_page()
    lab = LabPage(page, lab_server["base"], lab_server["token"], name)
    try:
        lab.open()
        state = lab.run_all(timeout=RUN_TIMEOUT)
        lab.screenshot("ran")
        assert not state["errors"], f"{name}: cells raised in Lab: {state['errors']}"
        assert state["pending"] == 0, f"{name}: {state['pending']} cells did not run"

        items = lab.widget_outputs()
        if name == SCRATCH:
            assert [i["static"] for i in items] == [True], items
        if name == EVERY_WIDGET:
            assert sum(i["static"] for i in items) == len(WIDGET_CELLS) - 1, items
        problems = []
        for n, item in enumerate(items):
            label = f"widget{n}-cell{item['cell']}"
            item["locator"].scroll_into_view_if_needed()
            pictures = lab.wait_pictures_loaded(item["locator"], timeout=PICTURE_TIMEOUT)
            broken = [p["src"][:60] for p in pictures if not (p["complete"] and p["width"] > 0)]
            if broken:
                problems.append(f"{label}: pictures did not load: {broken}")
            if item["static"] and not any(p["widget"] for p in pictures):
                problems.append(f"{label}: a cnnwidgets widget shows no picture")
            lab.screenshot(label, item["locator"])
        errors = lab.error_texts()
        assert not errors, f"{name}: {errors}"
        assert not problems, f"{name}: {problems}"

        for n, item in enumerate(items):
            if not item["static"]:
                continue  # plain ipywidgets (a slider of its own, ...): rendering is enough
            label = f"widget{n}-cell{item['cell']}"
            if move_one_control(lab, item, label) is None:
                problems.append(f"{label}: no control changed its picture")
        lab.screenshot("moved")
        assert not lab.error_texts(), f"{name}: {lab.error_texts()}"
        assert not problems, f"{name}: {problems}\n" + "\n".join(lab.console[-20:])
        if name == EVERY_WIDGET:
            check_browser_canvas(lab)
            check_comparator_canvas(lab)
            check_gallery_canvas(lab)
    finally:
        lab.shutdown_kernels()
        page.close()


def check_browser_canvas(lab: LabPage) -> None:
    """The activation browser's canvas in a real page: pixels read back equal the
    kernel's grid (``view`` holds it below the title line) before and after a
    channel move and a click; hover reads a value; wheel zoom and reset."""
    root = lab.page.locator(".cwtest-browser").first
    canvas = root.locator(".cnnwidgets-canvas").first
    root.scroll_into_view_if_needed()
    painted = wait_painted(canvas, 0)
    got = lab.canvas_pixels(canvas)
    grid = kernel_picture(lab, "browser.canvas.compose()")
    assert_same_picture(got["picture"], grid, "browser grid")
    assert_same_picture(got["screen"], grid, "browser grid on screen")
    top = int(lab.kernel("print(browser.grid_origin[0])"))
    view = kernel_picture(lab, "browser.view")
    assert_same_picture(got["picture"], view[top : top + grid.shape[0], : grid.shape[1]], "view")

    # The channel box, moved as a user would: the page redraws the ring itself.
    box = root.locator(".widget-inline-hbox input[type=number]").first
    box.focus()
    box.press("ArrowUp")
    box.press("Enter")
    wait_painted(canvas, painted)
    settle_kernel(lab)
    assert lab.kernel("print(browser.channel.value)").strip() == "1"
    got = lab.canvas_pixels(canvas)
    assert_same_picture(got["picture"], kernel_picture(lab, "browser.canvas.compose()"), "ring")

    # Hover: the readout names the channel and its value under the pointer, here
    # the first tile of the second row (the layer is the one the move above chose).
    screen = canvas.locator("canvas").first
    screen.scroll_into_view_if_needed()
    bounds = screen.bounding_box()
    th, tw, pad, cols = (int(v) for v in lab.kernel(
        "g = browser.grid; print(*g.tile_hw, g.pad, g.cols)").split())  # fmt: skip
    pick = int(lab.kernel(f"print(browser.grid.channels[{cols}])"))
    x, y = bounds["x"] + tw / 2, bounds["y"] + th + pad + th / 2
    lab.page.mouse.move(x, y)
    readout = canvas.locator(".cnnwidgets-canvas-readout")
    has_value = "(el) => el.textContent.includes('value')"
    lab.page.wait_for_function(has_value, arg=readout.element_handle())
    assert readout.inner_text().startswith(f"channel {pick} ")

    # A click selects the tile's channel in the page and in the kernel.
    painted = int(canvas.get_attribute("data-painted"))
    lab.page.mouse.click(x, y)
    wait_painted(canvas, painted)
    settle_kernel(lab)
    selected = lab.kernel("print(browser.channel.value, browser.canvas.selected)").split()
    assert selected == [str(pick)] * 2
    got = lab.canvas_pixels(canvas)
    after = kernel_picture(lab, "browser.canvas.compose()")
    assert_same_picture(got["picture"], after, "after the click")
    assert not np.array_equal(after, grid)

    # Wheel zooms about the pointer (the picture itself stays), double click resets.
    painted = int(canvas.get_attribute("data-painted"))
    lab.page.mouse.wheel(0, -300)
    painted = wait_painted(canvas, painted)
    zoomed = lab.canvas_pixels(canvas)
    assert zoomed["zoom"] > 1
    assert_same_picture(zoomed["picture"], after, "the picture under the zoom")
    assert not np.array_equal(zoomed["screen"], after)
    lab.page.mouse.dblclick(x, y)
    wait_painted(canvas, painted)
    assert lab.canvas_pixels(canvas)["zoom"] == 1
    lab.screenshot("canvas", root)


def comparator_page_view(lab: LabPage, root) -> tuple[np.ndarray, list]:
    """The comparator's panels as the page composed them, laid out as ``view``
    (rows of the legend and the canvas drawing both panels), and the canvases'
    locators."""
    from cnnwidgets import render

    canvases = root.locator(".cnnwidgets-canvas")
    n = canvases.count()
    assert n and n % 2 == 0, f"comparator: {n} canvases, expected 2 per method row"
    pictures = [lab.canvas_pixels(canvases.nth(k))["picture"] for k in range(n)]
    rows = [pictures[k : k + 2] for k in range(0, n, 2)]
    return render.panel_grid(rows, pad=6), [canvases.nth(k) for k in range(n)]


def check_comparator_canvas(lab: LabPage) -> None:
    """The comparator's canvases in a real page: the panels read back equal the
    kernel's ``view`` before and after a class-slider move and a scale-mode
    change (both drawn by the page alone, the scale while the kernel is busy),
    hover reads the map value under the pointer, a click on the slider's panel
    pins its class."""
    root = lab.page.locator(".cwtest-comparator").first
    root.scroll_into_view_if_needed()
    canvases = root.locator(".cnnwidgets-canvas")
    pair = canvases.nth(1)  # the first row's pinned and slider panels
    painted = wait_painted(pair, 0)
    settle_kernel(lab)
    page, _ = comparator_page_view(lab, root)
    assert_same_picture(page, kernel_picture(lab, "comparator.view"), "comparator")

    # The class slider, one key press: the page picks the next map itself.
    before = int(lab.kernel("print(comparator.class_slider.value)"))
    handle = root.locator(".noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")
    painted = wait_painted(pair, painted)
    settle_kernel(lab)
    assert int(lab.kernel("print(comparator.class_slider.value)")) == before + 1
    page, _ = comparator_page_view(lab, root)
    after = kernel_picture(lab, "comparator.view")
    assert_same_picture(page, after, "comparator after a slider move")

    # The scale mode ('one scale per method'), chosen while the kernel is busy:
    # the page redraws the panels and the legend from what it holds.
    scale = root.locator(".widget-dropdown select").filter(
        has=lab.page.locator("option", has_text="one scale per method")
    )
    start = keep_kernel_busy(lab, 8)
    scale.first.select_option(index=1)
    painted = wait_painted(pair, painted, timeout=5)
    assert_drawn_while_busy(lab, start, time.time(), "the scale mode")
    assert lab.kernel("print(comparator.normalize.value, end='')") == "method"
    page, _ = comparator_page_view(lab, root)
    scaled = kernel_picture(lab, "comparator.view")
    assert_same_picture(page, scaled, "comparator, one scale per method")
    assert not np.array_equal(scaled, after)

    # Hover over the slider's panel (the second, below its caption line): the
    # target and the map value under the pointer.
    screen = pair.locator("canvas").first
    bounds = screen.bounding_box()
    shape = "c = comparator.panels.children[1]; print(c.image_shape[1] * c.upscale)"
    width = int(lab.kernel(shape))
    x = bounds["x"] + width + 6 + width / 2
    y = bounds["y"] + 16 + (bounds["height"] - 16) / 2
    lab.page.mouse.move(x, y)
    readout = pair.locator(".cnnwidgets-canvas-readout")
    has_value = "(el) => el.textContent.includes('map ')"
    lab.page.wait_for_function(has_value, arg=readout.element_handle())
    name = lab.kernel("print(comparator.probe.class_names[comparator.selected_class])").strip()
    assert readout.inner_text().startswith(f"gradcam: {name} "), readout.inner_text()

    # A click on the slider's panel pins its class; the first panel follows.
    painted = int(pair.get_attribute("data-painted"))
    lab.page.mouse.click(x, y)
    wait_painted(pair, painted)
    settle_kernel(lab)
    pinned, selected = lab.kernel(
        "print(comparator.pinned.value, comparator.selected_class)"
    ).split()
    assert pinned == selected
    page, _ = comparator_page_view(lab, root)
    assert_same_picture(page, kernel_picture(lab, "comparator.view"), "comparator after a click")
    lab.screenshot("comparator-canvas", root)


# Run code in the page's kernel without waiting for it (the kernel stays busy).
BUSY_JS = """
(code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  kernel.requestExecute({code, silent: true, store_history: false});
}
"""


def keep_kernel_busy(lab: LabPage, seconds: float) -> float:
    """Start ``seconds`` of sleep in the kernel (it handles no widget message
    meanwhile) without waiting for it; returns the wall time just after."""
    code = f"import time as _t\n_cw_busy = [_t.time()]\n_t.sleep({seconds})\n"
    code += "_cw_busy.append(_t.time())"
    lab.page.evaluate(BUSY_JS, code)
    time.sleep(1.0)  # the request reaches the kernel and the sleep starts
    return time.time()


def assert_drawn_while_busy(lab: LabPage, moved: float, drawn: float, what: str) -> None:
    """The page drew between the move (wall time ``moved``) and ``drawn``, both
    inside the kernel's sleep: it needed no answer from the kernel."""
    settle_kernel(lab)
    began, ended = (float(t) for t in lab.kernel("print(*_cw_busy)").split())
    assert began < moved and drawn < ended, (
        f"{what}: drawn at {drawn:.2f}, the kernel slept {began:.2f}..{ended:.2f}"
    )


def check_gallery_canvas(lab: LabPage) -> None:
    """The filter gallery's page in a real page: the canvas equals the kernel's
    grid (the top of ``view``); a page move is drawn by the page while the
    kernel is busy (no round trip) and sends no picture; a click selects a tile
    in the page and the kernel, and the detail follows."""
    root = lab.page.locator(".cwtest-gallery").first
    root.scroll_into_view_if_needed()
    canvas = root.locator(".cnnwidgets-canvas").first
    painted = wait_painted(canvas, 0)
    settle_kernel(lab)
    got = lab.canvas_pixels(canvas)
    grid = kernel_picture(lab, "gallery.canvas.compose()")
    assert_same_picture(got["picture"], grid, "gallery page")
    view = kernel_picture(lab, "gallery.view")
    h, w = grid.shape[:2]
    assert_same_picture(got["picture"], view[:h, :w], "gallery view")
    page = int(lab.kernel("print(gallery.page.value)"))
    lab.kernel(
        "_cw_sent = []\n"
        "for _n in ('maps', 'captions', 'image'):\n"
        "    gallery.canvas.observe(lambda c: _cw_sent.append(c['name']), _n)\n"
        "gallery.detail.observe(lambda c: _cw_sent.append('detail'), 'value')"
    )

    # The page slider, one key press, with the kernel busy for 8 s: the page
    # redraws the next page on its own, long before the kernel could answer.
    handle = root.locator(".widget-slider .noUi-handle").first
    handle.scroll_into_view_if_needed()
    start = keep_kernel_busy(lab, 8)
    handle.focus()
    handle.press("ArrowRight" if page == 0 else "ArrowLeft")
    painted = wait_painted(canvas, painted, timeout=5)
    moved = lab.canvas_pixels(canvas)
    assert_drawn_while_busy(lab, start, time.time(), "the gallery page")
    assert int(lab.kernel("print(gallery.page.value, end='')")) == 1 - page
    assert lab.kernel("print(_cw_sent, end='')") == "[]"
    after = kernel_picture(lab, "gallery.canvas.compose()")
    assert_same_picture(moved["picture"], after, "gallery after a page move")
    assert not np.array_equal(after, grid)
    view = kernel_picture(lab, "gallery.view")
    assert_same_picture(moved["picture"], view[: after.shape[0], : after.shape[1]], "view")

    # A click on the second tile: selected in the page (ring) and in the kernel,
    # whose detail image follows.
    screen = canvas.locator("canvas").first
    bounds = screen.bounding_box()
    tile = int(lab.kernel("print(gallery.tile_px, end='')"))
    scale = bounds["width"] / after.shape[1]
    x = bounds["x"] + (tile + 1 + tile / 2) * scale
    y = bounds["y"] + (16 + tile / 2) * scale
    want = int(lab.kernel("print(gallery.canvas.page_items()[1], end='')"))
    lab.page.mouse.click(x, y)
    wait_painted(canvas, painted)
    settle_kernel(lab)
    selected = lab.kernel("print(gallery.filter.value, gallery.canvas.selected)").split()
    assert selected == [str(want)] * 2
    got = lab.canvas_pixels(canvas)
    view = kernel_picture(lab, "gallery.view")
    clicked = kernel_picture(lab, "gallery.canvas.compose()")
    assert_same_picture(got["picture"], clicked, "gallery after a click")
    assert_same_picture(got["picture"], view[: clicked.shape[0], : clicked.shape[1]], "view")
    assert lab.kernel("print(_cw_sent, end='')") == "['detail']"
    lab.screenshot("gallery-canvas", root)


# ---------------------------------------------------------------- Notebook 7

NOTEBOOK7 = "_notebook7_canvas.ipynb"
NOTEBOOK7_CELL = """\
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
        lab_server["dir"] / NOTEBOOK7,
        [
            nbformat.v4.new_markdown_cell("The canvas in Notebook 7, for the browser test."),
            nbformat.v4.new_code_cell(textwrap.dedent(NOTEBOOK7_CELL)),
        ],
    )
    page = context.new_page()
    nb = Notebook7Page(page, lab_server["base"], lab_server["token"], NOTEBOOK7)
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
