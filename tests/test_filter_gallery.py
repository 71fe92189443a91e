"""FilterGallery driven as a user would: controls set, then view asserted."""

from __future__ import annotations

import time

import numpy as np
import pytest

import cnnwidgets as cw
from cnnwidgets import render
from cnnwidgets.explain.filters import filter_weights, kernel_pictures
from cnnwidgets.widgets.base import BLANK_PNG
from cnnwidgets.widgets.filter_gallery import _CAPTION, FilterGallery

FAST = dict(steps=8, size=64, chunk=4, per_page=8, tile=24)


def _tile(view, k, cols, t=24):
    r, c = divmod(k, cols)
    y, x = _CAPTION + r * (t + 1), c * (t + 1)
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
    assert g.filter.value == 8 and g.page_filters == list(range(8, 16))
    expect = render.resize_image(pics[8], (24, 24), smooth=False)
    np.testing.assert_array_equal(_tile(g.view, 0, cols), expect)
    assert not np.array_equal(before, g.view)
    g.layer.value = "block2_conv1"  # deeper: grey tiles, one per input channel
    assert g.page.value == 0 and g.page.max == 3 and g.filter.max == 31
    tile = _tile(g.view, 0, cols)
    assert (tile[..., 0] == tile[..., 1]).all()


def test_click_selects_a_tile_and_shows_top_patches(shapes_probe, shapes_images):
    images = shapes_images[0]
    g = FilterGallery(shapes_probe, images=images, **FAST)
    assert g.click(_CAPTION + 25 + 5, 25 + 5) == g._grid_cols + 1
    assert g.filter.value == g._grid_cols + 1
    assert g.click(2, 2) == -1  # the caption is not a tile
    # A mouse click in the front end: bqplot reports data coordinates, which
    # are view pixels with y pointing up; the tile of row 0, column 2 is picked.
    mark = g.picture.mark
    # The clickable figure shows ``view``, and only it carries the PNG.
    np.testing.assert_array_equal(render.from_png(g.picture.png), g.view)
    assert g.image.value == BLANK_PNG
    h = g.view.shape[0]
    data = {"click_x": 2 * 25 + 5, "click_y": h - (_CAPTION + 5)}
    mark._handle_custom_msgs(mark, {"event": "element_click", "data": data}, [])
    assert g.filter.value == 2
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
