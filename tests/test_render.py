"""render: colour maps, tiling geometry, overlays, PNG round trips."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

import cnnwidgets as cw
from cnnwidgets import render


def test_colormap_lut_matches_matplotlib():
    import matplotlib

    lut = render.colormap_lut("jet")
    ref = np.round(matplotlib.colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255)
    np.testing.assert_array_equal(lut, ref.astype(np.uint8))
    with pytest.raises(ValueError, match="unknown colour map"):
        render.colormap_lut("no-such-map")


def test_normalize_constant_is_zero_not_nan():
    out = render.min_max_scale(np.full((3, 4), 7.0))
    assert np.isfinite(out).all() and (out == 0).all()
    x = np.array([[1.0, 3.0], [5.0, 9.0]])
    np.testing.assert_allclose(render.min_max_scale(x), (x - 1) / 8)


def test_tile_places_tile_k_at_row_k_div_cols():
    rng = np.random.default_rng(0)
    maps = rng.random((7, 5, 6)).astype(np.float32)
    grid = render.tile(maps, cols=3, pad=2, scale="each", cmap="gray")
    assert grid.shape == (3 * 7 - 2, 3 * 8 - 2, 3)
    for k in range(7):
        r, c = divmod(k, 3)
        tile = grid[r * 7 : r * 7 + 5, c * 8 : c * 8 + 6]
        expected = render.apply_colormap(render.min_max_scale(maps[k]), "gray")
        np.testing.assert_array_equal(tile, expected)
        assert render.tile_at(r * 7 + 2, c * 8 + 3, (5, 6), cols=3, pad=2) == k
    # separators are not tiles
    assert render.tile_at(5, 0, (5, 6), cols=3, pad=2) == -1


def test_tile_is_fast_for_512_channels():
    maps = np.random.default_rng(0).random((512, 14, 14)).astype(np.float32)
    render.tile(maps)  # warm the colour table
    start = time.perf_counter()
    grid = render.tile(maps)
    elapsed = time.perf_counter() - start
    assert grid.shape == (23 * 15 - 1, 23 * 15 - 1, 3)
    # Not a timing assertion on speed goals (benchmarks/ does that); a sanity bound only.
    assert elapsed < 1.0


def test_overlay_blends_with_given_opacity():
    img = np.zeros((4, 4, 3), np.uint8)
    heat = np.ones((2, 2), np.float32)
    out = render.overlay(img, heat, alpha=0.5, cmap="gray")
    np.testing.assert_array_equal(out, np.full((4, 4, 3), 128, np.uint8))


@pytest.mark.parametrize("level", [0, 1, 6])
@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (9, 1, 3), (33, 50, 3)])
def test_png_levels_decode_exactly_with_pillow(level, shape):
    # Random bytes make the row differences wrap around modulo 256.
    img = np.random.default_rng(sum(shape) + level).integers(0, 256, shape, dtype=np.uint8)
    data = render.to_png(img, compress_level=level)
    with Image.open(io.BytesIO(data)) as png:
        png.verify()
    with Image.open(io.BytesIO(data)) as png:
        assert png.mode == "RGB" and png.size == (shape[1], shape[0])
        np.testing.assert_array_equal(np.asarray(png), img)


def test_fast_png_is_about_as_small_as_pillows():
    photo = cw.assets.photo("chelsea", 128)
    grid = render.tile(np.random.default_rng(0).random((16, 20, 20)))
    for picture in (photo, grid):
        fast = render.to_png(picture, compress_level=1)
        buf = io.BytesIO()
        Image.fromarray(render.to_rgb_uint8(picture)).save(buf, format="PNG", compress_level=1)
        assert len(fast) <= 1.3 * len(buf.getvalue())


def test_png_round_trip_and_rgb_conversion():
    img = (np.arange(48).reshape(4, 4, 3) * 5).astype(np.uint8)
    np.testing.assert_array_equal(render.from_png(render.to_png(img)), img)
    gray = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    rgb = render.to_rgb_uint8(gray)
    assert rgb.shape == (4, 4, 3) and rgb[-1, -1, 0] == 255 and rgb[0, 0, 0] == 0


def test_value_grid_shared_range_versus_one_range_per_map():
    maps = np.stack([np.zeros((2, 3)), np.full((2, 3), 2.0), np.arange(6.0).reshape(2, 3)])
    lut = render.colormap_lut("gray")[:, 0]
    own = render.value_grid(maps, cols=3, pad=1, cmap="gray")
    shared = render.value_grid(maps, lo=0.0, hi=4.0, cols=3, pad=1, cmap="gray", upscale=2)
    assert own.shape == (2, 3 * 4 - 1, 3) and shared.shape == (4, 3 * 7 - 1, 3)
    # Own range: a constant map is the bottom colour; the ramp spans the whole table.
    np.testing.assert_array_equal(own[:, 4:7, 0], lut[0])
    assert own[0, 8, 0] == lut[0] and own[1, 10, 0] == lut[255]
    # Shared [0, 4]: the constant 2 sits halfway, 4 and 5 clip to the top.
    np.testing.assert_array_equal(shared[:, 7:13, 0], lut[128])
    ramp = shared[::2, 14::2, 0]  # undo the 2x enlargement
    expected = lut[(np.clip(np.arange(6.0).reshape(2, 3) / 4.0, 0, 1) * 255 + 0.5).astype(int)]
    np.testing.assert_array_equal(ramp, expected)
    with pytest.raises(ValueError, match="both lo and hi"):
        render.value_grid(maps, lo=0.0)


def test_bars_rise_from_the_zero_line():
    lut = render.colormap_lut("viridis")
    pic = render.bars(np.array([-1.0, 0.0, 3.0]), -1.0, 3.0, height=8, bar_width=2, pad=1)
    assert pic.shape == (8, 3 * 3 - 1, 3)
    # zero sits a quarter up the strip: row 8 - 2 = 6 is the black zero line (across the bars)
    np.testing.assert_array_equal(pic[6, [0, 1, 3, 4, 6, 7]], 0)
    neg, pos = pic[:, 0, :], pic[:, 6, :]
    assert (neg[7] == lut[0]).all() and (neg[:6] == render.SEPARATOR).all()  # below zero only
    assert (pos[:6] == lut[255]).all() and (pos[7] == render.SEPARATOR).all()  # above zero only
    assert (pic[:, 2] == render.SEPARATOR).all()  # pad column between bars


def test_kernel_pictures_map_zero_to_grey_and_extremes_to_black_white():
    k = np.zeros((1, 2, 3, 2), np.float32)
    k[0, 0, :, 0], k[0, 1, :, 0] = -2.0, 2.0
    k[0, 0, 0, 1] = 0.5
    rgb = render.kernel_pictures(k)
    assert rgb.shape == (2, 1, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], [[0, 0, 0], [255, 255, 255]])
    assert rgb[1, 0, 0, 0] == round(127.5 + 127.5 * 0.25) and rgb[1, 0, 1, 0] == 128
    per_filter = render.kernel_pictures(k, scale="filter")
    assert per_filter[1, 0, 0, 0] == 255  # the filter's own largest weight
    grey = render.kernel_pictures(k, rgb=False)
    assert grey.shape == (2, 3, 1, 2)
    with pytest.raises(ValueError, match="rgb=True needs 3"):
        render.kernel_pictures(np.zeros((3, 3, 2, 4)), rgb=True)
    with pytest.raises(ValueError, match="'layer' or 'filter'"):
        render.kernel_pictures(k, scale="all")


def test_shrink_maps_averages_blocks_and_partial_edge_blocks():
    maps = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    out = render.shrink_maps(maps, 3)
    assert out.shape == (2, 2, 3)
    assert out[1, 0, 0] == maps[1, :3, :3].mean()
    assert out[0, 1, 2] == maps[0, 3:, 6:].mean()  # a 2 x 1 edge block
    np.testing.assert_array_equal(render.shrink_maps(np.full((1, 5, 7), 4.5), 2), 4.5)
    with pytest.raises(ValueError, match="factor"):
        render.shrink_maps(maps, 0)
