"""CAM family: checked against plain re-implementations of the published formulas.

The references below are written the plainest way, on a *linear-head twin*
of the model (the same architecture rebuilt from its config with the last
activation removed, weights copied), exactly as the Keras example
'Grad-CAM class activation visualization' does. They share no code with
cnnwidgets.explain.cam.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_models import random_images, tiny_cnn, vgg_transfer

import cnnwidgets as cw
from cnnwidgets import gradients
from cnnwidgets.explain import cam
from cnnwidgets.explain.cam import CAM_METHODS, channel_weights, gradcam, normalize_maps
from cnnwidgets.progress import Cancelled

# --------------------------------------------------------------- references


def linear_twin(model: keras.Model) -> keras.Model:
    """Same architecture with the last layer's activation removed; weights copied."""
    cfg = model.get_config()
    last = model.layers[-1].name
    for layer_cfg in cfg["layers"]:
        if layer_cfg["config"]["name"] == last:
            layer_cfg["config"]["activation"] = "linear"
    twin = type(model).from_config(cfg)
    twin.set_weights(model.get_weights())
    return twin


def keras_example_gradcam(twin, img, layer, cls, sign=1.0):
    """The Keras example's make_gradcam_heatmap, for one image and one class."""
    grad_model = keras.Model(twin.inputs, [twin.get_layer(layer).output, twin.output])
    with tf.GradientTape() as tape:
        last_conv_layer_output, preds = grad_model(img[None])
        class_channel = sign * preds[:, cls]
    grads = tape.gradient(class_channel, last_conv_layer_output)
    pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
    heatmap = last_conv_layer_output[0] @ pooled_grads[..., tf.newaxis]
    heatmap = tf.squeeze(heatmap)
    heatmap = tf.maximum(heatmap, 0)
    m = tf.math.reduce_max(heatmap)
    return (heatmap / m).numpy() if m > 0 else heatmap.numpy()


def acts_and_grads(twin, img, layer, cls, sign=1.0):
    grad_model = keras.Model(twin.inputs, [twin.get_layer(layer).output, twin.output])
    with tf.GradientTape() as tape:
        a, preds = grad_model(img[None])
        score = sign * preds[0, cls]
    g = tape.gradient(score, a)
    return a[0].numpy().astype(np.float64), g[0].numpy().astype(np.float64)


def plain_gradcampp(a, g):
    """Chattopadhyay et al. eq. 19 with the exponential score, per channel in a loop."""
    h, w, c = a.shape
    weights = np.zeros(c)
    for k in range(c):
        gk, ak = g[:, :, k], a[:, :, k]
        num = gk**2
        den = 2 * gk**2 + ak.sum() * gk**3
        alpha = np.where(den != 0, num / np.where(den != 0, den, 1.0), 0.0)
        weights[k] = np.sum(alpha * np.maximum(gk, 0))
    m = np.maximum(np.tensordot(a, weights, axes=([2], [0])), 0)
    return m / m.max() if m.max() > 0 else m


def plain_layercam(a, g):
    m = np.maximum((np.maximum(g, 0) * a).sum(axis=2), 0)
    return m / m.max() if m.max() > 0 else m


@pytest.fixture(scope="module")
def shapes_twin(shapes_model):
    return linear_twin(shapes_model)


# --------------------------------------------------------------- Grad-CAM


def test_gradcam_matches_keras_example(shapes_probe, shapes_twin, pair_images):
    images = pair_images[0][:3].astype("float32")
    classes = [0, 1, 2, 3]
    maps = gradcam(shapes_probe, images, classes=classes, resize=False)
    assert maps.shape == (3, 4, 16, 16) and maps.dtype == np.float32
    for i in range(3):
        for k, c in enumerate(classes):
            ref = keras_example_gradcam(shapes_twin, images[i], "block3_conv2", c)
            np.testing.assert_allclose(maps[i, k], ref, atol=1e-5)
    assert (maps.max(axis=(2, 3)) > 0).mean() > 0.5  # not a vacuous comparison


def test_gradcam_tiny_model_and_channel_weights(rng):
    model = tiny_cnn(units=5)
    twin = linear_twin(model)
    images = random_images(2, 16, rng)
    maps = gradcam(model, images, classes=[4, 1], layer="conv2", resize=False)
    for i in range(2):
        for k, c in enumerate([4, 1]):
            ref = keras_example_gradcam(twin, images[i], "conv2", c)
            np.testing.assert_allclose(maps[i, k], ref, atol=1e-5)
    w = channel_weights(cw.Probe(model), images, [4, 1], "conv2")
    assert w.shape == (2, 2, 6) and w.dtype == np.float32
    _, g = acts_and_grads(twin, images[1], "conv2", 1)
    np.testing.assert_allclose(w[1, 1], g.mean(axis=(0, 1)), rtol=1e-4, atol=1e-6)


def test_gradcampp_and_layercam_match_plain_formulas(shapes_probe, shapes_twin, pair_images):
    images = pair_images[0][:2].astype("float32")
    pp = gradcam(shapes_probe, images, classes=[0, 3], method="gradcam++", resize=False)
    lc = gradcam(shapes_probe, images, classes=[0, 3], method="layercam", resize=False)
    for i in range(2):
        for k, c in enumerate([0, 3]):
            a, g = acts_and_grads(shapes_twin, images[i], "block3_conv2", c)
            np.testing.assert_allclose(pp[i, k], plain_gradcampp(a, g), atol=1e-5)
            np.testing.assert_allclose(lc[i, k], plain_layercam(a, g), atol=1e-5)


def test_cam_matches_dense_weights_and_gradcam(shapes_probe, shapes_model, pair_images):
    images = pair_images[0][:2].astype("float32")
    maps = gradcam(shapes_probe, images, classes=[1, 2], method="cam", resize=False)
    acts = keras.Model(shapes_model.inputs, shapes_model.get_layer("block3_conv2").output)(images)
    kernel = shapes_model.get_layer("predictions").get_weights()[0]  # (C, classes)
    for i in range(2):
        for k, c in enumerate([1, 2]):
            ref = np.maximum(np.asarray(acts[i]) @ kernel[:, c], 0)
            ref = ref / ref.max() if ref.max() > 0 else ref
            np.testing.assert_allclose(maps[i, k], ref, atol=1e-5)
    # With GAP + Dense, Grad-CAM's weights are W / (h * w): the same normalized map.
    gc = gradcam(shapes_probe, images, classes=[1, 2], resize=False)
    np.testing.assert_allclose(maps, gc, atol=1e-4)
    assert cam.cam_layer(shapes_probe) == "block3_conv2"


def test_scorecam_matches_plain_loop(rng):
    model = tiny_cnn(units=3)
    images = random_images(2, 16, rng)
    maps = gradcam(model, images, classes=[0, 2], layer="conv2", method="scorecam", resize=False)
    sub = keras.Model(model.inputs, model.get_layer("conv2").output)
    for i in range(2):
        a = np.asarray(sub(images[i : i + 1]))[0]  # (8, 8, 6)
        for k, c in enumerate([0, 2]):
            w = []
            for ch in range(a.shape[-1]):
                up = tf.image.resize(a[None, :, :, ch : ch + 1], (16, 16), "bilinear")
                up = np.asarray(up)[0, :, :, 0]
                span = up.max() - up.min()
                mask = (up - up.min()) / span if span > 0 else np.zeros_like(up)
                w.append(float(model(images[i][None] * mask[None, :, :, None])[0, c]))
            ref = np.maximum(a @ np.asarray(w), 0)
            ref = ref / ref.max() if ref.max() > 0 else ref
            np.testing.assert_allclose(maps[i, k], ref, atol=1e-4)


def test_scorecam_progress_and_cancel(shapes_probe, pair_images):
    img = pair_images[0][5]
    seen = []
    gradcam(
        shapes_probe,
        img,
        classes=[0],
        method="scorecam",
        batch_size=16,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen[0] == (0, 64) and seen[-1] == (64, 64) and len(seen) == 5

    calls = []

    def stop(done, total):
        calls.append(done)
        if done >= 16:
            raise Cancelled()

    with pytest.raises(Cancelled):
        gradcam(
            shapes_probe,
            pair_images[0][6],
            classes=[1],
            method="scorecam",
            batch_size=16,
            progress=stop,
        )
    assert calls == [0, 16]


# --------------------------------------------------------------- binary heads


def test_binary_negative_class_is_gradcam_of_minus_logit(binary_probe, binary_model):
    images, _, _ = cw.assets.make_pairs(2, seed=7, classes=("square", "circle"))
    images = images.astype("float32")
    twin = linear_twin(binary_model)
    layer = binary_probe.last_conv_layer
    maps = gradcam(binary_probe, images, classes=["square", "circle"], resize=False)
    for i in range(2):
        neg = keras_example_gradcam(twin, images[i], layer, 0, sign=-1.0)
        pos = keras_example_gradcam(twin, images[i], layer, 0, sign=1.0)
        np.testing.assert_allclose(maps[i, 0], neg, atol=1e-5)
        np.testing.assert_allclose(maps[i, 1], pos, atol=1e-5)
        # The naive recipe: gradient of p = sigmoid(logit) of the single unit
        # (argmax over one unit is always 0) explains the positive class only.
        grad_model = keras.Model(
            binary_model.inputs, [binary_model.get_layer(layer).output, binary_model.output]
        )
        with tf.GradientTape() as tape:
            a, p = grad_model(images[i][None])
            score = p[:, 0]
        g = tape.gradient(score, a)
        naive = np.maximum(np.asarray(a[0]) @ np.asarray(tf.reduce_mean(g, axis=(0, 1, 2))), 0)
        naive = naive / naive.max() if naive.max() > 0 else naive
        np.testing.assert_allclose(naive, maps[i, 1], atol=1e-4)
        assert np.abs(naive - maps[i, 0]).max() > 0.2


def test_binary_scorecam_uses_one_minus_p(binary_probe, binary_model):
    img = cw.assets.make_pairs(1, seed=3, classes=("square", "circle"))[0][0]
    w = channel_weights(binary_probe, img, ["square", "circle"], method="scorecam")
    assert w.shape[:2] == (1, 2)
    np.testing.assert_allclose(w[0, 0] + w[0, 1], 1.0, atol=1e-5)  # [1 - p, p], no softmax


def test_cam_on_binary_gap_head(binary_probe):
    img = cw.assets.make_pairs(1, seed=4, classes=("square", "circle"))[0]
    c = gradcam(binary_probe, img, classes=["square", "circle"], method="cam")
    g = gradcam(binary_probe, img, classes=["square", "circle"], method="gradcam")
    np.testing.assert_allclose(c, g, atol=1e-4)


# --------------------------------------------------------------- nested models


def test_layer_inside_nested_model():
    model = vgg_transfer(units=1, head="sigmoid", seed=1)
    base = model.layers[0]
    img = random_images(2, 32, seed=1)
    before = np.asarray(model(img))
    maps = gradcam(model, img, classes=[0, 1], layer="vgg16/block4_conv3", resize=False)
    assert maps.shape == (2, 2, 4, 4)
    # Reference: split the model by hand at the layer (no Probe involved).
    lower = keras.Model(base.inputs, base.get_layer("block4_conv3").output)
    dense = model.layers[-1]
    for i in range(2):
        a = lower(img[i : i + 1])
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(a)
            x = base.get_layer("block4_pool")(a)
            for name in ("block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"):
                x = base.get_layer(name)(x)
            logit = tf.matmul(tf.reshape(x, (1, -1)), dense.kernel) + dense.bias
            neg, pos = -logit[0, 0], logit[0, 0]
        for k, t in enumerate([neg, pos]):
            g = tape.gradient(t, a)
            ref = np.maximum(np.asarray(a[0]) @ np.asarray(tf.reduce_mean(g[0], axis=(0, 1))), 0)
            ref = ref / ref.max() if ref.max() > 0 else ref
            np.testing.assert_allclose(maps[i, k], ref, atol=1e-5)
    assert maps.max() > 0
    np.testing.assert_array_equal(np.asarray(model(img)), before)  # model untouched
    with pytest.raises(ValueError, match="GlobalAveragePooling2D"):
        gradcam(model, img, method="cam")


# --------------------------------------------------------------- batching, cache


def test_k_classes_share_one_forward_pass(shapes_probe, pair_images, monkeypatch):
    calls = []
    real = gradients.layer_gradients

    def counting(probe, x, layer, classes, batch_size=None, progress=None):
        calls.append(np.asarray(classes).shape)
        return real(probe, x, layer, classes, batch_size=batch_size)

    monkeypatch.setattr(gradients, "layer_gradients", counting)
    images = pair_images[0][:2]
    maps = gradcam(
        shapes_probe, images, classes=[0, 1, 2, 3], method="gradcam++", layer="block3_conv1"
    )
    assert maps.shape == (2, 4, 64, 64)
    assert calls == [(2, 4)]  # one forward pass, four backward passes, all images
    gradcam(
        shapes_probe,
        images,
        classes=[0, 1, 2, 3],
        method="gradcam++",
        layer="block3_conv1",
        normalize="image",
    )
    assert len(calls) == 1  # cached: the same maps, re-scaled


def test_normalize_modes(shapes_probe, pair_images):
    images = pair_images[0][:2]
    raw = gradcam(shapes_probe, images, classes=[0, 1, 2, 3], normalize=None)
    per_map = gradcam(shapes_probe, images, classes=[0, 1, 2, 3], normalize="map")
    per_img = gradcam(shapes_probe, images, classes=[0, 1, 2, 3], normalize="image")
    peaks = raw.max(axis=(2, 3))
    assert raw.min() >= 0 and not np.allclose(peaks[peaks > 0], 1.0)  # not rescaled
    for i in range(2):
        np.testing.assert_allclose(per_img[i], raw[i] / raw[i].max(), rtol=1e-5, atol=1e-7)
        for k in range(4):
            if peaks[i, k] > 0:
                np.testing.assert_allclose(per_map[i, k], raw[i, k] / peaks[i, k], atol=1e-6)
    # Sharing one scale across methods: stack (N, M, K, H, W) and normalize once.
    other = gradcam(shapes_probe, images, classes=[0, 1, 2, 3], method="layercam", normalize=None)
    both = normalize_maps(np.stack([raw, other], axis=1), "image")
    assert np.allclose(both.max(axis=(1, 2, 3, 4)), 1.0)
    ratio = both[:, 1] / both[:, 0].max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(
        ratio, other / raw.max(axis=(1, 2, 3), keepdims=True), rtol=1e-4, atol=1e-6
    )


def test_resize_matches_tf_bilinear(rng):
    small = rng.uniform(0, 1, (2, 3, 4, 5)).astype("float32")
    ours = cam.resize_maps(small, (16, 20))
    ref = tf.image.resize(np.moveaxis(small.reshape(6, 4, 5), 0, -1), (16, 20), "bilinear")
    np.testing.assert_allclose(
        ours.reshape(6, 16, 20), np.moveaxis(np.asarray(ref), -1, 0), atol=1e-5
    )


# --------------------------------------------------------------- degenerate input


@pytest.mark.parametrize("method", CAM_METHODS)
@pytest.mark.parametrize("value", [0, 128])
def test_constant_images_give_no_nan(shapes_probe, method, value):
    img = np.full((64, 64, 3), value, np.uint8)
    for normalize in ("map", "image", None):
        maps = gradcam(shapes_probe, img, classes=[0, 1, 2, 3], method=method, normalize=normalize)
        assert maps.shape == (1, 4, 64, 64)
        assert np.isfinite(maps).all() and maps.min() >= 0
        if normalize is not None:
            assert maps.max() <= 1.0 + 1e-6


def test_flat_gradients_give_zero_maps(rng):
    model = tiny_cnn(units=3)
    flat = keras.models.clone_model(model)
    flat.set_weights([np.zeros_like(w) if w.ndim == 2 else w for w in model.get_weights()])
    for method in CAM_METHODS:
        x = random_images(1, 16, rng)
        maps = gradcam(flat, x, classes=[0, 1], method=method, layer="conv2")
        assert np.isfinite(maps).all()
        if method != "scorecam":  # Score-CAM's weights are probabilities (1/3 each)
            assert np.all(maps == 0)


# --------------------------------------------------------------- validation


def test_bad_input_is_rejected_before_any_trace(shapes_probe, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("computed gradients for bad input")

    monkeypatch.setattr(gradients, "layer_gradients", boom)
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="gradcam\\+\\+"):
        gradcam(shapes_probe, img, method="gradcam+")
    with pytest.raises(TypeError):
        gradcam(shapes_probe, img, method=3)
    with pytest.raises(ValueError, match="not \\(N, H, W, C\\)"):
        gradcam(shapes_probe, img, layer="gap")
    with pytest.raises(ValueError, match="closest"):
        gradcam(shapes_probe, img, layer="block3_conv9")
    with pytest.raises(ValueError, match="normalize"):
        gradcam(shapes_probe, img, normalize="max")
    with pytest.raises(TypeError, match="resize"):
        gradcam(shapes_probe, img, resize="yes")
    with pytest.raises(ValueError, match="block3_conv2"):
        gradcam(shapes_probe, img, method="cam", layer="block2_conv1")
    with pytest.raises(ValueError, match="expects 64x64"):
        gradcam(shapes_probe, np.zeros((32, 32, 3)))
    with pytest.raises(ValueError, match="unknown class"):
        gradcam(shapes_probe, img, classes="hexagon")
    with pytest.raises(ValueError, match="normalize"):
        normalize_maps(np.ones((1, 2, 2)), "all")


def test_model_is_not_mutated(shapes_model, pair_images):
    img = pair_images[0][:2].astype("float32")
    before = np.asarray(shapes_model(img))
    weights = [w.copy() for w in shapes_model.get_weights()]
    for method in ("gradcam", "cam"):
        gradcam(shapes_model, img, classes=[0, 1], method=method)
    np.testing.assert_array_equal(np.asarray(shapes_model(img)), before)
    for a, b in zip(weights, shapes_model.get_weights()):
        np.testing.assert_array_equal(a, b)
