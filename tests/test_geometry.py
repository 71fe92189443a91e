"""cnnwidgets.probe.geometry against the layers themselves.

The independent reference is Keras (TensorFlow) running tiny layers with
fixed weights: for random sizes, kernels, strides and dilations, 'same'
padding must give the layer's output size AND its pixel alignment (which
input pixel each output tap reads), pooling must see exactly the windows the
formula says, and incremental occlusion's window rule must contain every
output a changed input rectangle moves."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnwidgets.probe import geometry
from cnnwidgets.probe.incremental.windows import sliding_axes

SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def conv_geometry(draw):
    """(size, kernel, strides, dilation) per axis (h, w); Keras refuses strides and
    dilation both above 1, so one of them is 1 on both axes."""
    size = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    if draw(st.booleans()):
        strides, dilation = (draw(st.integers(1, 4)), draw(st.integers(1, 4))), (1, 1)
    else:
        strides, dilation = (1, 1), (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return size, kernel, strides, dilation


def coded_image(h: int, w: int) -> np.ndarray:
    """(1, h, w, 1) float32 whose pixel (i, j) holds (i + 1) * 100 + j + 1: every
    pixel its own value, and 0 (the padding) is no pixel's."""
    i, j = np.mgrid[:h, :w]
    return ((i + 1) * 100 + j + 1).astype(np.float32)[None, :, :, None]


def tap_conv(kernel, strides, dilation, size) -> keras.layers.Conv2D:
    """A 'same' Conv2D with one output channel per kernel tap (a, b), whose kernel
    is 1 at that tap and 0 elsewhere: channel a * kw + b copies the pixel the tap reads."""
    kh, kw = kernel
    layer = keras.layers.Conv2D(
        kh * kw, kernel, strides=strides, dilation_rate=dilation, padding="same",
        use_bias=False,
    )
    layer.build((1, *size, 1))
    taps = np.zeros((kh, kw, 1, kh * kw), np.float32)
    for a in range(kh):
        for b in range(kw):
            taps[a, b, 0, a * kw + b] = 1.0
    layer.set_weights([taps])
    return layer


@SETTINGS
@given(conv_geometry())
def test_same_padding_is_where_conv2d_looks(geom):
    size, kernel, strides, dilation = geom
    layer = tap_conv(kernel, strides, dilation, size)
    x = coded_image(*size)
    got = np.asarray(layer(x))[0]  # (oh, ow, kh * kw)
    window = geometry.sliding_window(layer)
    assert window == geometry.Window(kernel, strides, dilation, "same")
    rows, cols = (
        geometry.axis_padding(size[a], window.effective[a], strides[a], "same") for a in range(2)
    )
    assert got.shape[:2] == (rows.out, cols.out)
    assert rows.out == -(-size[0] // strides[0]) and cols.out == -(-size[1] // strides[1])
    # Padding is split with the smaller half before; together it fits the last window.
    for pad, n, a in ((rows, size[0], 0), (cols, size[1], 1)):
        assert 0 <= pad.before <= pad.after <= pad.before + 1
        assert (pad.out - 1) * strides[a] + window.effective[a] <= n + pad.before + pad.after
    want = np.zeros_like(got)
    padded = np.pad(x[0, :, :, 0], ((rows.before, rows.after + 20), (cols.before, cols.after + 20)))
    for a in range(kernel[0]):
        for b in range(kernel[1]):
            ys = np.arange(rows.out) * strides[0] + a * dilation[0]
            xs = np.arange(cols.out) * strides[1] + b * dilation[1]
            want[:, :, a * kernel[1] + b] = padded[np.ix_(ys, xs)]
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(
    size=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    pool=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    strides=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    kind=st.sampled_from(["max", "average"]),
    seed=st.integers(0, 2**16),
)
def test_same_pooling_sees_the_windows_the_formula_says(size, pool, strides, kind, seed):
    cls = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
    layer = cls(pool, strides=strides, padding="same")
    # Distinct values in random order: a window one row off has another maximum.
    x = np.random.default_rng(seed).permutation(size[0] * size[1]).astype(np.float32)
    x = x.reshape(1, *size, 1)
    got = np.asarray(layer(x))[0, :, :, 0]
    window = geometry.sliding_window(layer)
    assert window == geometry.Window(pool, strides, (1, 1), "same")
    rows, cols = (geometry.same_padding(size[a], pool[a], strides[a]) for a in range(2))
    assert got.shape == (rows.out, cols.out)
    want = np.zeros_like(got)
    reduce = np.max if kind == "max" else np.mean
    for oy in range(rows.out):
        y0 = oy * strides[0] - rows.before
        for ox in range(cols.out):
            x0 = ox * strides[1] - cols.before
            # TensorFlow pools over the real pixels only (padding is neither max nor counted).
            cells = x[0, max(y0, 0) : y0 + pool[0], max(x0, 0) : x0 + pool[1], 0]
            want[oy, ox] = reduce(cells)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@SETTINGS
@given(geom=conv_geometry(), data=st.data())
def test_window_rule_reaches_every_output_a_change_moves(geom, data):
    """windows.Axis.reach (built from geometry) against a convolution: the outputs
    that change when an input rectangle changes lie inside the reached rows and
    columns, and for undilated kernels they are exactly those."""
    size, kernel, strides, dilation = geom
    layer = keras.layers.Conv2D(
        1, kernel, strides=strides, dilation_rate=dilation, padding="same", use_bias=False,
        kernel_initializer="ones",
    )
    y0 = data.draw(st.integers(0, size[0] - 1))
    y1 = data.draw(st.integers(y0 + 1, size[0]))
    x0 = data.draw(st.integers(0, size[1] - 1))
    x1 = data.draw(st.integers(x0 + 1, size[1]))
    base = np.zeros((1, *size, 1), np.float32)
    changed = base.copy()
    changed[0, y0:y1, x0:x1] = 1.0
    moved = np.asarray(layer(changed))[0, :, :, 0] != np.asarray(layer(base))[0, :, :, 0]
    ay, ax = sliding_axes(layer, "Conv2D", size)
    (lo_y,), (hi_y,) = ay.reach(np.array([y0]), np.array([y1]))
    (lo_x,), (hi_x,) = ax.reach(np.array([x0]), np.array([x1]))
    inside = np.zeros_like(moved)
    inside[lo_y:hi_y, lo_x:hi_x] = True
    assert not (moved & ~inside).any()
    if dilation == (1, 1):
        np.testing.assert_array_equal(moved, inside)


# ------------------------------------------------------------- plain cases


def test_pair_reads_keras_sizes():
    assert geometry.pair(3) == (3, 3)
    assert geometry.pair(np.int64(2)) == (2, 2)
    assert geometry.pair((2, 5)) == (2, 5)
    assert geometry.pair([4]) == (4, 4)
    assert geometry.pair((4,), n_spatial=1) == (1, 4)  # a 1-D layer: width only


def test_unknown_size_pads_as_for_a_multiple_of_the_stride():
    for k in range(1, 8):
        for s in range(1, 5):
            known = geometry.same_padding(3 * s, k, s)
            assert geometry.same_padding(None, k, s).before == known.before


def test_valid_and_causal_match_keras_output_sizes():
    x = np.zeros((1, 11, 2), np.float32)
    for k, s, d, padding in ((3, 2, 1, "valid"), (4, 1, 2, "causal"), (3, 3, 1, "causal")):
        layer = keras.layers.Conv1D(1, k, strides=s, dilation_rate=d, padding=padding)
        window = geometry.sliding_window(layer)
        assert window == geometry.Window((1, k), (1, s), (1, d), padding)
        pad = geometry.axis_padding(11, window.effective[1], s, padding)
        assert layer(x).shape[1] == pad.out
    with pytest.raises(ValueError, match="padding"):
        geometry.axis_padding(5, 3, 1, "full")


def test_pool_strides_default_to_the_pool_size():
    window = geometry.sliding_window(keras.layers.MaxPooling2D((2, 3)))
    assert window == geometry.Window((2, 3), (2, 3), (1, 1), "valid")
    assert geometry.sliding_window(keras.layers.AveragePooling1D(3)).kernel == (1, 3)


def test_border_is_padding_minus_cropping():
    x = np.zeros((1, 7, 9, 1), np.float32)
    pad = keras.layers.ZeroPadding2D(((1, 2), (3, 0)))
    crop = keras.layers.Cropping2D(((2, 1), (0, 4)))
    assert geometry.border(pad) == ((1, 2), (3, 0))
    assert geometry.border(crop) == ((-2, -1), (0, -4))
    for layer in (pad, crop):
        (t, b), (left, r) = geometry.border(layer)
        assert layer(x).shape[1:3] == (7 + t + b, 9 + left + r)
    with pytest.raises(ValueError, match="not a padding or cropping"):
        geometry.border(keras.layers.ReLU())


def test_channels_first_is_told_apart():
    assert geometry.is_channels_last(keras.layers.Conv2D(1, 3))
    assert not geometry.is_channels_last(keras.layers.Conv2D(1, 3, data_format="channels_first"))
    assert geometry.is_channels_last(keras.layers.ReLU())  # no data format: channels last
