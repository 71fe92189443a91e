"""FilterGallery driven as a user would: controls set, then view asserted."""

from __future__ import annotations

import time

import numpy as np
import pytest

import cnnwidgets as cw
from cnnwidgets import render
from cnnwidgets.explain.filters import filter_weights, kernel_pictures
from cnnwidgets.widgets.base import BLANK_PNG
from cnnwidgets.widgets.canvas import PictureCanvas
from cnnwidgets.widgets.filter_gallery import CAPTION_HEIGHT, PENDING, FilterGallery

FAST = dict(steps=8, size=64, chunk=4, per_page=8, tile=24)


def _tile(view, k, cols, t=24):
    r, c = divmod(k, cols)
    y, x = CAPTION_HEIGHT + r * (t + 1), c * (t + 1)
    return view[y : y + t, x : x + t]


def test_weights_tiles_are_the_kernels(shapes_probe):
    g = FilterGallery(shapes_probe, **FAST)
    assert cw.FilterGallery is FilterGallery
    assert g.layer.value == "block1_conv1" and g.mode.value == "weights"
    assert [v for _, v in g.layer.options][:2] == ["block1_conv1", "block1_conv2"]
    pics = kernel_pictures(filter_weights(shapes_probe, "block1_conv1"))
    cols = g._grid_cols
    for k in (0, 5):
        expect = render.resize_image(pics[k], (24, 24), smooth=False)
        np.testing.assert_array_equal(_tile(g.view, k, cols), expect)
    assert g.page.max == 1  # 16 filters, 8 per page
    before = g.view.copy()
    g.page.value = 1
    # The selection stays (its detail too); the page shows filters 8..15.
    assert g.filter.value == 0 and g.page_filters == list(range(8, 16))
    expect = render.resize_image(pics[8], (24, 24), smooth=False)
    np.testing.assert_array_equal(_tile(g.view, 0, cols), expect)
    assert not np.array_equal(before, g.view)
    g.filter.value = 3  # a filter on another page brings its page
    assert g.page.value == 0 and g.canvas.page == 0 and g.canvas.selected == 3
    g.layer.value = "block2_conv1"  # deeper: grey tiles, one per input channel
    assert g.page.value == 0 and g.page.max == 3 and g.filter.max == 31
    tile = _tile(g.view, 0, cols)
    assert (tile[..., 0] == tile[..., 1]).all()


def test_click_selects_a_tile_and_shows_top_patches(shapes_probe, shapes_images):
    images = shapes_images[0]
    g = FilterGallery(shapes_probe, images=images, **FAST)
    assert g.click(CAPTION_HEIGHT + 25 + 5, 25 + 5) == g._grid_cols + 1
    assert g.filter.value == g._grid_cols + 1
    assert g.click(2, 2) == -1  # the caption is not a tile
    # A click in the page: the canvas sends picture pixels (the canvas sits at
    # the top left of ``view``); the tile of row 0, column 2 is picked.
    g.canvas._handle_custom_msg({"event": "click", "y": CAPTION_HEIGHT + 5.0, "x": 55.0}, [])
    assert g.filter.value == 2 and g.canvas.selected == 2
    # The grid travels in the canvas, the detail in its image; nothing else.
    assert g.image.value == BLANK_PNG
    detail = render.from_png(g.detail.value)
    grid = g.canvas.compose()
    np.testing.assert_array_equal(g.view, render.vstack([grid, detail], pad=6))
    h_with = g.view.shape[0]
    plain = FilterGallery(shapes_probe, **FAST)
    assert h_with > plain.view.shape[0] or g.view.shape[1] > plain.view.shape[1]


def test_maximize_mode_runs_in_the_background(shapes_probe):
    g = FilterGallery(shapes_probe, mode="maximize", **FAST)
    g.wait()
    assert g.progress.value == g.progress.max
    imgs = cw.maximize(shapes_probe, "block1_conv1", list(range(8)), steps=8, size=64)
    cols = g._grid_cols
    np.testing.assert_array_equal(_tile(g.view, 3, cols), render.resize_image(imgs[3], (24, 24)))
    g.mode.value = "classes"
    assert g.layer.disabled and g.count == 4
    g.wait()
    assert g.page_filters == [0, 1, 2, 3]
    assert all(g._key(f) in g._results for f in range(4))


def test_changing_layer_cancels_the_running_job(shapes_probe):
    g = FilterGallery(shapes_probe, mode="maximize", **dict(FAST, steps=400, chunk=8))
    job = g._job
    time.sleep(0.5)
    g.layer.value = "block1_conv2"
    assert job.cancelled
    job.join(60)
    assert not job.running and job.error is None
    assert g._job is not job
    g.mode.value = "weights"  # back to weights: nothing left running
    assert g._job.cancelled
    g._job.join(60)
    assert not g._job.running


def test_bad_layer_names_the_closest(shapes_probe):
    with pytest.raises(ValueError, match="block2_conv1"):
        FilterGallery(shapes_probe, layer="block2_cnv1")
    with pytest.raises(ValueError, match="no 2-D convolution kernel"):
        FilterGallery(shapes_probe, layer="block1_pool")
    with pytest.raises(ValueError, match="mode"):
        FilterGallery(shapes_probe, mode="gradients")


def test_pages_are_drawn_in_the_page_from_tiles_sent_once(shapes_probe):
    """The canvas holds every tile of the layer (one PNG atlas) and each page's
    caption line: a page move sends no picture; what the canvas composes,
    rebuilt from its synced state as a saved notebook holds it, is ``view``'s grid."""
    g = FilterGallery(shapes_probe, layer="block2_conv1", **FAST)
    canvas = g.canvas
    assert canvas.mode == "tiles" and canvas.maps_format == "png"
    assert canvas.maps_shape == [32, 24, 24, 3] and canvas.per_page == 8
    pics = kernel_pictures(filter_weights(shapes_probe, "block2_conv1"))
    atlas = render.from_png(canvas.maps).reshape(32, 24, 24, 3)
    for f in (0, 17, 31):
        want = render.tile(pics[f].astype(np.float32) / 255.0, scale=None, cmap="gray", pad=1)
        np.testing.assert_array_equal(atlas[f], render.resize_image(want, (24, 24), smooth=False))
    sent = []
    for name in ("maps", "captions", "orders"):
        canvas.observe(lambda change: sent.append(change["name"]), name)
    g.detail.observe(lambda change: sent.append("detail"), "value")
    for page in (1, 3, 2):
        g.page.value = page
        assert canvas.page == page and canvas.page_items() == list(range(8 * page, 8 * page + 8))
        h, w = canvas.compose().shape[:2]
        grid = g.view[:h, :w]
        np.testing.assert_array_equal(grid, canvas.compose())
        title = render.caption(np.zeros((0, grid.shape[1], 3), np.uint8),
                               f"block2_conv1: weights, page {page + 1}/4")  # fmt: skip
        np.testing.assert_array_equal(grid[:CAPTION_HEIGHT], title)
    assert sent == []
    # The page moved by the page itself (a jslinked slider): the kernel's canvas
    # hears it and ``view`` follows, with nothing sent back.
    canvas.page = 0
    w = canvas.compose().shape[1]
    np.testing.assert_array_equal(g.view[:CAPTION_HEIGHT, :w], canvas.compose()[:CAPTION_HEIGHT])
    # The selection ring: filter 2 on page 0, drawn by the page (ring of 1 px).
    g.page.value = 0
    g.filter.value = 2
    box = canvas.box_of(2)
    assert box == (CAPTION_HEIGHT, 2 * 25, CAPTION_HEIGHT + 24, 2 * 25 + 24)
    assert tuple(g.view[box[0] + 5, box[1] - 1]) == render.SELECTION
    state = {k: getattr(canvas, k) for k in canvas.traits(sync=True) if not k.startswith("_")}
    again = PictureCanvas.from_state(state)
    np.testing.assert_array_equal(again.compose(), canvas.compose())
    again.close()
    g.close()


def test_maximize_pages_compute_in_the_kernel_and_show_pending_tiles(shapes_probe):
    g = FilterGallery(shapes_probe, mode="maximize", **FAST)
    g.wait()
    atlas = render.from_png(g.canvas.maps).reshape(16, 24, 24, 3)
    assert (atlas[8:] == PENDING).all() and not (atlas[:8] == PENDING).all()
    g.page.value = 1  # drawn grey at once in the page; the kernel computes them
    assert g._job is not None
    g.wait()
    atlas = render.from_png(g.canvas.maps).reshape(16, 24, 24, 3)
    assert not (atlas[8:] == PENDING).all(axis=(1, 2, 3)).any()
    imgs = cw.maximize(shapes_probe, "block1_conv1", [9], steps=8, size=64)
    want = render.resize_image(imgs[0], (24, 24))
    np.testing.assert_array_equal(_tile(g.view, 1, g._grid_cols), want)
    g.close()
