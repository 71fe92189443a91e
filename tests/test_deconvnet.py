"""Deconvnet reconstructions against a plain-numpy loop deconvnet, against
TensorFlow autodiff with the deconvnet ReLU rule, receptive-field locality,
refusals, and the guided-backprop 'gradient' method."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_models import batchnorm_cnn, random_images, residual_cnn

import cnnwidgets as cw
from cnnwidgets.explain import deconvnet
from cnnwidgets.gradients.tf_backend import RELU_OVERRIDES

# ----------------------------------------------------------- numpy reference


def _pads(n, k, s, padding):
    if padding == "valid":
        out = (n - k) // s + 1
        return out, 0, max((out - 1) * s + k - n, 0)
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2, total - total // 2


def np_conv(x, kernel, bias, stride, padding, relu):
    """x (H, W, Ci), kernel (k, k, Ci, Co): a loop convolution."""
    h, w, _ = x.shape
    k = kernel.shape[0]
    oh, t, b = _pads(h, k, stride, padding)
    ow, l_, r = _pads(w, k, stride, padding)
    xp = np.pad(x, ((t, b), (l_, r), (0, 0)))
    out = np.zeros((oh, ow, kernel.shape[3]), np.float64)
    for i in range(oh):
        for j in range(ow):
            for o in range(kernel.shape[3]):
                patch = xp[i * stride : i * stride + k, j * stride : j * stride + k]
                out[i, j, o] = np.sum(patch * kernel[:, :, :, o]) + bias[o]
    return np.maximum(out, 0) if relu else out


def np_conv_back(g, kernel, in_shape, stride, padding):
    """Transposed convolution by scattering every output back through the kernel."""
    h, w, ci = in_shape
    k = kernel.shape[0]
    _, t, b = _pads(h, k, stride, padding)
    _, l_, r = _pads(w, k, stride, padding)
    out = np.zeros((h + t + b, w + l_ + r, ci))
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            for o in range(g.shape[2]):
                out[i * stride : i * stride + k, j * stride : j * stride + k] += (
                    g[i, j, o] * kernel[:, :, :, o]
                )
    return out[t : t + h, l_ : l_ + w]


def np_pool(x, k, s, padding):
    """Max pooling that records the (row, col) of every window's maximum."""
    h, w, c = x.shape
    oh, t, b = _pads(h, k, s, padding)
    ow, l_, r = _pads(w, k, s, padding)
    xp = np.pad(x, ((t, b), (l_, r), (0, 0)), constant_values=-np.inf)
    out = np.zeros((oh, ow, c))
    switch = {}
    for i in range(oh):
        for j in range(ow):
            for ch in range(c):
                best, where = -np.inf, None
                for di in range(k):
                    for dj in range(k):
                        v = xp[i * s + di, j * s + dj, ch]
                        if v > best:
                            best, where = v, (i * s + di - t, j * s + dj - l_)
                out[i, j, ch] = best
                switch[i, j, ch] = where
    return out, switch


def np_unpool(g, switch, in_shape):
    out = np.zeros(in_shape)
    for (i, j, ch), (y, x) in switch.items():
        out[y, x, ch] += g[i, j, ch]
    return out


def _tiny(kind: str) -> keras.Model:
    keras.utils.set_random_seed(3)
    if kind == "same-valid":
        inp = keras.Input((10, 10, 2))
        x = keras.layers.Rescaling(0.5, offset=-1.0, name="rescale")(inp)
        x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv1")(x)
        x = keras.layers.MaxPooling2D(2, name="pool1")(x)
        x = keras.layers.Conv2D(4, 3, padding="valid", activation="relu", name="conv2")(x)
    else:  # strided 'same' conv on an odd size, overlapping 'same' pooling
        inp = keras.Input((9, 9, 2))
        x = keras.layers.Rescaling(0.5, offset=-1.0, name="rescale")(inp)
        x = keras.layers.Conv2D(3, 3, strides=2, padding="same", activation="relu", name="conv1")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
        x = keras.layers.Conv2D(4, 2, padding="valid", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    return keras.Model(inp, out)


def np_deconvnet(model, image, channel, keep, spec):
    """Zeiler and Fergus written out with loops on one (H, W, C) image."""
    (k1, b1), (k2, b2) = (model.get_layer(n).get_weights() for n in ("conv1", "conv2"))
    s1, pk, ps, pp = spec
    x = image.astype(np.float64) * 0.5 - 1.0
    a1 = np_conv(x, k1, b1, s1, "same", relu=True)
    p1, switch = np_pool(a1, pk, ps, pp)
    a2 = np_conv(p1, k2, b2, 1, "valid", relu=True)
    g = np.zeros_like(a2)
    if keep == "map":
        g[..., channel] = a2[..., channel]
    else:
        y, x_ = np.unravel_index(np.argmax(a2[..., channel]), a2.shape[:2])
        g[y, x_, channel] = a2[y, x_, channel]
    g = np_conv_back(np.maximum(g, 0), k2, p1.shape, 1, "valid")
    g = np_unpool(g, switch, a1.shape)
    g = np_conv_back(np.maximum(g, 0), k1, x.shape, s1, "same")
    return g / 0.5, a2


SPECS = {"same-valid": (1, 2, 2, "valid"), "strided-same": (2, 3, 2, "same")}


@pytest.mark.parametrize("kind", list(SPECS))
@pytest.mark.parametrize("keep", ["max", "map"])
def test_deconvnet_matches_numpy_loops(kind, keep):
    model = _tiny(kind)
    size = model.input_shape[1]
    images = random_images(3, size, seed=5, high=4.0, channels=2)
    before = model.predict_on_batch(images)
    for channel in range(4):
        got = cw.reconstruct(model, images, "conv2", channel, keep=keep)
        assert got.shape == images.shape and got.dtype == np.float32
        for n in range(3):
            want, a2 = np_deconvnet(model, images[n], channel, keep, SPECS[kind])
            scale = max(np.abs(want).max(), 1e-6)
            np.testing.assert_allclose(got[n], want, atol=1e-4 * scale, rtol=1e-4)
    # The user's model is untouched.
    np.testing.assert_array_equal(model.predict_on_batch(images), before)


def test_max_unit_projects_inside_its_receptive_field():
    model = _tiny("same-valid")
    images = random_images(2, 10, seed=7, high=4.0, channels=2)
    probe = cw.Probe(model)
    acts = probe.activations(images, ["conv2"])["conv2"]
    for channel in range(4):
        rec = cw.reconstruct(probe, images, "conv2", channel, keep="max")
        for n in range(2):
            if acts[n, ..., channel].max() <= 0:
                assert not rec[n].any()  # a silent channel projects nothing
                continue
            i, j = np.unravel_index(np.argmax(acts[n, ..., channel]), (3, 3))
            # conv2 (3x3 valid) at (i, j) <- pool rows i..i+2 <- conv1 rows 2i..2i+5
            # <- input rows 2i-1..2i+6 (3x3 'same' conv).
            inside = np.zeros((10, 10), bool)
            inside[max(2 * i - 1, 0) : 2 * i + 7, max(2 * j - 1, 0) : 2 * j + 7] = True
            energy = (rec[n] ** 2).sum(axis=-1)
            assert energy[inside].sum() > 0
            assert energy[~inside].sum() == 0


def test_demo_model_agrees_with_autodiff_deconvnet_rule(shapes_probe, shapes_images):
    """The deconvnet equals the gradient of sum(stop(A_c) * A_c) with the ReLU
    backward rule replaced by ReLU of the signal (TF's MaxPoolGrad routes by
    the same switches), apart from the Rescaling: we divide by its scale,
    the gradient multiplies by it."""
    images = shapes_images[0][:3]
    layer, channel = "block3_conv2", 5
    got = cw.reconstruct(shapes_probe, images, layer, channel, keep="map")
    sub = shapes_probe.submodel([layer])
    x = tf.constant(shapes_probe.model_inputs(shapes_probe.check_images(images)))

    @tf.function
    def autodiff(x):
        with tf.compat.v1.get_default_graph().gradient_override_map(RELU_OVERRIDES["deconvnet"]):
            a = sub(x)[..., channel]
            target = tf.reduce_sum(tf.stop_gradient(a) * a)
        return tf.gradients(target, x)[0]

    scale = float(shapes_probe.layer("rescale").scale)
    want = autodiff(x).numpy() / scale**2
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_demo_model_receptive_field_and_energy(shapes_probe, shapes_images):
    images = shapes_images[0][:4]
    layer = "block2_conv2"
    acts = shapes_probe.activations(images, [layer])[layer]
    channel = int(acts.max(axis=(0, 1, 2)).argmax())
    rec = cw.reconstruct(shapes_probe, images, layer, channel)  # keep='max'
    for n in range(4):
        i, j = np.unravel_index(np.argmax(acts[n, ..., channel]), acts.shape[1:3])
        # Two 3x3 convs at 32x32 (+-2), 2x2 pool, two 3x3 convs at 64x64 (+-2).
        inside = np.zeros((64, 64), bool)
        inside[max(2 * i - 6, 0) : 2 * i + 8, max(2 * j - 6, 0) : 2 * j + 8] = True
        energy = (rec[n] ** 2).sum(axis=-1)
        assert energy.sum() > 0
        assert energy[~inside].sum() == 0


@pytest.mark.parametrize(
    "build, layer, culprit",
    [(residual_cnn, "c3", "add"), (batchnorm_cnn, "relu", "bn")],
)
def test_unsupported_layers_refused_and_gradient_method_works(build, layer, culprit):
    model = build()
    images = random_images(2, 12, seed=0)
    with pytest.raises(ValueError, match=rf"{culprit}.*method=\"gradient\""):
        cw.reconstruct(model, images, layer, 0)
    rec = cw.reconstruct(model, images, layer, 0, method="gradient")
    assert rec.shape == images.shape and np.isfinite(rec).all()


def test_gradient_method_is_guided_backprop_of_channel_mean():
    """On one conv+ReLU layer, guided backprop of the channel mean is the kernel
    scattered from the active positions (upstream gradient 1/(h*w) > 0)."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 2))
    a = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(a)))
    images = np.random.default_rng(2).normal(size=(2, 8, 8, 2)).astype("float32")
    kernel, bias = model.get_layer("conv").get_weights()
    got = cw.reconstruct(model, images, "conv", 1, method="gradient")
    for n in range(2):
        act = np_conv(images[n].astype(np.float64), kernel, bias, 1, "same", relu=True)
        g = np.zeros_like(act)
        g[..., 1] = (act[..., 1] > 0) / 64.0
        want = np_conv_back(g, kernel, (8, 8, 2), 1, "same")
        np.testing.assert_allclose(got[n], want, atol=1e-6)


def test_bad_arguments():
    model = _tiny("same-valid")
    images = np.zeros((1, 10, 10, 2), np.float32)
    with pytest.raises(ValueError, match="out of range"):
        cw.reconstruct(model, images, "conv2", 4)
    with pytest.raises(ValueError, match="closest"):
        cw.reconstruct(model, images, "conv3", 0)
    with pytest.raises(ValueError, match="not \\(N, H, W, C\\)"):
        cw.reconstruct(model, images, model.layers[-1].name, 0)
    with pytest.raises(ValueError, match="method must be"):
        cw.reconstruct(model, images, "conv2", 0, method="lrp")
    # A constant image gives zeros (or finite values), never NaN.
    assert np.isfinite(cw.reconstruct(model, images, "conv2", 0)).all()
    path = deconvnet.deconvnet_path(cw.Probe(model), "conv2")
    assert [s for _, s in path] == ["conv_relu", "unpool", "conv_relu", "rescale"]
