"""explain.features: channel order, statistics and the layer picture, against
plain numpy written the long way."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cnnwidgets import render
from cnnwidgets.explain import features


def _acts(rng, h=5, w=4, c=7):
    a = rng.normal(size=(h, w, c)).astype(np.float32)
    return np.maximum(a, 0)  # ReLU-like, with exact zeros


@pytest.mark.parametrize("sort", ["mean", "max"])
def test_channel_order_matches_plain_argsort(rng, sort):
    a = _acts(rng, c=33)
    key = [(a[:, :, k].mean() if sort == "mean" else a[:, :, k].max()) for k in range(a.shape[2])]
    # Largest first; a Python sort on (-value, index) is the plain reference with stable ties.
    expected = [k for _, k in sorted((-float(v), k) for k, v in enumerate(key))]
    np.testing.assert_array_equal(features.channel_order(a, sort), expected)


def test_channel_order_index_gradcam_and_ties(rng):
    a = _acts(rng)
    np.testing.assert_array_equal(features.channel_order(a, "index"), np.arange(7))
    w = np.array([0.1, 3.0, -1.0, 3.0, 0.0, 2.0, np.nan], np.float32)
    np.testing.assert_array_equal(features.channel_order(a, "gradcam", w), [1, 3, 5, 0, 4, 2, 6])
    zeros = np.zeros((3, 3, 4), np.float32)
    np.testing.assert_array_equal(features.channel_order(zeros, "max"), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="needs weights"):
        features.channel_order(a, "gradcam")
    with pytest.raises(ValueError, match="sort must be one of"):
        features.channel_order(a, "median")
    with pytest.raises(ValueError, match="index the batch"):
        features.channel_order(a[None], "mean")


def test_channel_stats_and_zero_fraction(rng):
    a = _acts(rng, c=6)
    a[:, :, 2] = 0.0
    s = features.channel_stats(a)
    for k in range(6):
        m = a[:, :, k]
        assert s["mean"][k] == pytest.approx(m.mean(), rel=1e-6)
        assert s["max"][k] == m.max()
        assert s["zero_fraction"][k] == pytest.approx(np.count_nonzero(m == 0) / m.size)
    assert s["zero_fraction"][2] == 1.0
    batch = np.stack([a, a * 2])
    assert features.zero_channel_fraction(batch) == pytest.approx(1 / 6)
    dense = np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 3.0]], np.float32)
    assert features.zero_channel_fraction(dense) == pytest.approx(1 / 3)


def test_layer_picture_tile_k_is_channel_order_k(rng):
    a = _acts(rng, h=6, w=5, c=10)
    order = features.channel_order(a, "mean")
    pic = features.layer_picture(a, order, scale="channel", upscale=3, pad=1)
    th, tw = pic.tile_hw
    assert (th, tw) == (18, 15) and pic.cols == 4
    for k in range(10):
        ch = order[k]
        m = a[:, :, ch]
        span = m.max() - m.min()
        unit = (m - m.min()) / span if span > 0 else np.zeros_like(m)
        want = render.apply_colormap(unit).repeat(3, 0).repeat(3, 1)
        r, c = divmod(k, 4)
        got = pic.picture[r * (th + 1) : r * (th + 1) + th, c * (tw + 1) : c * (tw + 1) + tw]
        np.testing.assert_array_equal(got, want)
        # Clicking the middle of tile k selects channel order[k].
        assert pic.index_at(r * (th + 1) + th // 2, c * (tw + 1) + tw // 2) == ch
    assert pic.index_at(th, 0) == -1  # a separator row
    assert pic.box_of(order[5]) == (1 * 19, 1 * 16, 1 * 19 + 18, 1 * 16 + 15)


def test_layer_scale_is_shared_over_the_whole_layer(rng):
    a = _acts(rng, c=20) * np.arange(1, 21, dtype=np.float32)  # very different ranges
    pic = features.layer_picture(a, scale="layer", per_page=8, page=1, upscale=1)
    assert (pic.vmin, pic.vmax) == (float(a.min()), float(a.max()))
    np.testing.assert_array_equal(pic.channels, np.arange(8, 16))
    m = a[:, :, 8]
    want = render.apply_colormap((m - a.min()) / (a.max() - a.min()))
    np.testing.assert_array_equal(pic.picture[:5, :4], want)
    each = features.layer_picture(a, scale="channel", per_page=8, page=1, upscale=1)
    assert (each.vmin, each.vmax) == (0.0, 1.0)


def test_paging_2048_channels_fast():
    rng = np.random.default_rng(1)
    a = rng.random((7, 7, 2048), dtype=np.float32)
    assert features.num_pages(2048, 256) == 8
    assert features.page_of(1500, 256) == 5
    seen = []
    for page in range(8):
        pic = features.layer_picture(a, page=page, per_page=256)
        assert pic.cols == 16 and len(pic.channels) == 256
        seen.extend(pic.channels.tolist())
    assert seen == list(range(2048))
    with pytest.raises(ValueError, match="8 page"):
        features.layer_picture(a, page=8, per_page=256)
    big = rng.random((14, 14, 512), dtype=np.float32)
    t = time.perf_counter()
    pic = features.layer_picture(big, per_page=512)
    assert time.perf_counter() - t < 5.0  # generous: milliseconds in practice
    assert pic.picture.shape == (23 * 29 - 1, 23 * 29 - 1, 3)


def test_bar_strip_heights_follow_values():
    v = np.array([0.0, 1.0, 0.5, 0.25], np.float32)
    pic = features.layer_picture(v)  # a 2-D layer's units become bars
    assert pic.kind == "bars" and pic.vmin == 0.0 and pic.vmax == 1.0
    h, bw = pic.tile_hw
    for k, value in enumerate(v):
        col = pic.picture[:, k * (bw + 1)]
        filled = np.count_nonzero(np.any(col != render.SEPARATOR, axis=-1))
        assert filled == pytest.approx(value * h, abs=1)
        assert pic.index_at(h - 1, k * (bw + 1) + bw // 2) == k
    # Separator columns between bars stay white.
    assert np.all(pic.picture[:, bw] == render.SEPARATOR)
    # Negative values hang below a zero line.
    neg = features.bar_strip(np.array([-1.0, 1.0], np.float32), height=20, bar_width=3)
    assert (neg.vmin, neg.vmax) == (-1.0, 1.0)
    lower = np.any(neg.picture[11:, 1] != render.SEPARATOR, axis=-1)
    upper = np.any(neg.picture[:9, 5] != render.SEPARATOR, axis=-1)
    assert lower.all() and upper.all()
    assert not np.any(neg.picture[:9, 1] != render.SEPARATOR)
