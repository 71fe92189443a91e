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
    out = render.normalize(np.full((3, 4), 7.0))
    assert np.isfinite(out).all() and (out == 0).all()
    x = np.array([[1.0, 3.0], [5.0, 9.0]])
    np.testing.assert_allclose(render.normalize(x), (x - 1) / 8)


def test_tile_places_tile_k_at_row_k_div_cols():
    rng = np.random.default_rng(0)
    maps = rng.random((7, 5, 6)).astype(np.float32)
    grid = render.tile(maps, cols=3, pad=2, scale="each", cmap="gray")
    assert grid.shape == (3 * 7 - 2, 3 * 8 - 2, 3)
    for k in range(7):
        r, c = divmod(k, 3)
        tile = grid[r * 7 : r * 7 + 5, c * 8 : c * 8 + 6]
        expected = render.apply_colormap(render.normalize(maps[k]), "gray")
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
