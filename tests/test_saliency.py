"""Saliency family: each method against a plain reference (finite differences,
hand-written backward rules, a GradientTape on the logit) and invariants
(Integrated Gradients completeness, SmoothGrad at zero noise)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_models import random_images, tiny_cnn

import cnnwidgets as cw
from cnnwidgets.explain import saliency as sal
from cnnwidgets.progress import Cancelled


@pytest.fixture(scope="module")
def linear_head():
    """tiny_cnn with a linear (logit) head."""
    return cw.Probe(tiny_cnn(head="linear", units=3, size=12, seed=3))


# ------------------------------------------------------------------ contract


def test_methods_shapes_dtype_and_range(linear_head, rng):
    x = random_images(2, 12, rng)
    assert sal.SALIENCY_METHODS == (
        "vanilla",
        "smoothgrad",
        "integrated",
        "guided",
        "deconvnet",
        "guided-gradcam",
    )
    for method in sal.SALIENCY_METHODS:
        maps = cw.saliency(linear_head, x, classes=[0, 2], method=method, n_samples=3, steps=4)
        assert maps.shape == (2, 2, 12, 12) and maps.dtype == np.float32, method
        assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1, method
    one = cw.saliency(linear_head, x[0], method="vanilla")  # a single (H, W, C) image
    assert one.shape == (1, 1, 12, 12)


def test_vanilla_matches_finite_differences(rng):
    """Central differences in float64 on a tiny CNN with a linear head."""
    old = keras.config.dtype_policy(), keras.config.floatx()
    keras.config.set_dtype_policy("float64")  # the layers
    keras.config.set_floatx("float64")  # keras.Input
    try:
        model = tiny_cnn(head="linear", units=3, size=8, seed=1)
    finally:
        keras.config.set_dtype_policy(old[0])
        keras.config.set_floatx(old[1])
    assert model.inputs[0].dtype == "float64"
    probe = cw.Probe(model)
    x = rng.uniform(0, 1, size=(1, 8, 8, 3)).astype(np.float32)
    attr = sal.attributions(probe, x, classes=[0, 2], method="vanilla")  # (1, 2, 8, 8, 3)

    x64 = x.astype(np.float64)
    eps = 1e-5
    basis = np.eye(x64.size).reshape((-1,) + x64.shape[1:]) * eps
    # Call the model on float64 tensors (predict() would cast to float32).
    plus = model(tf.constant(x64 + basis)).numpy()
    minus = model(tf.constant(x64 - basis)).numpy()
    assert plus.dtype == np.float64
    fd = ((plus - minus) / (2 * eps)).T.reshape(3, 8, 8, 3)
    np.testing.assert_allclose(attr[0], fd[[0, 2]], rtol=1e-4, atol=1e-6)
    maps = cw.saliency(probe, x, classes=[0, 2], method="vanilla", normalize=None)
    np.testing.assert_allclose(maps[0], np.abs(fd[[0, 2]]).max(axis=-1), rtol=1e-4, atol=1e-6)


def test_smoothgrad_zero_noise_is_vanilla_and_seeded(linear_head, rng):
    x = random_images(3, 12, rng)
    vanilla = sal.attributions(linear_head, x, classes=[1], method="vanilla")
    smooth0 = sal.attributions(linear_head, x, classes=[1], method="smoothgrad", noise=0.0)
    np.testing.assert_allclose(smooth0, vanilla, rtol=1e-5, atol=1e-7)

    kw = dict(classes=[1], method="smoothgrad", noise=0.2, n_samples=5)
    a = cw.saliency(linear_head, x, seed=7, **kw)
    b = cw.saliency(linear_head, x, seed=7, batch_size=4, **kw)  # other batching
    c = cw.saliency(linear_head, x, seed=8, **kw)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a, c)
    assert not np.allclose(a, cw.saliency(linear_head, x, classes=[1], method="vanilla"))


def test_smoothgrad_is_the_mean_over_noisy_copies(linear_head, rng):
    """A loop over the noisy copies, one gradient at a time."""
    x = random_images(1, 12, rng)
    n, noise, seed = 4, 0.1, 3
    got = sal.attributions(
        linear_head, x, classes=[0], method="smoothgrad", noise=noise, n_samples=n, seed=seed
    )
    sigma = noise * (x.max() - x.min())
    ref = np.zeros_like(got)
    for j in range(n):
        eps = np.random.default_rng([seed, 0, j]).standard_normal(x.shape[1:])
        noisy = (x[0] + sigma * eps).astype(np.float32)[None]
        ref += sal.attributions(linear_head, noisy, classes=[0], method="vanilla") / n
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------ integrated grads


def test_integrated_gradients_completeness_on_demo_cnn(shapes_probe, shapes_images):
    images, labels = shapes_images[0][:2], shapes_images[1][:2]
    attr, rep = sal.integrated_gradients(shapes_probe, images, steps=128)
    assert attr.shape == (2, 1, 64, 64, 3) and attr.dtype == np.float32
    scores, _ = shapes_probe.scores(images)
    black, _ = shapes_probe.scores(np.zeros_like(images))
    top = scores.argmax(axis=1)
    np.testing.assert_array_equal(top, labels)  # the trained model gets these right
    want = (scores - black)[np.arange(2), top][:, None]
    np.testing.assert_allclose(rep["delta"], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rep["sum"], attr.sum(axis=(2, 3, 4)), rtol=1e-4, atol=1e-4)
    assert (np.abs(rep["sum"] - rep["delta"]) <= 0.02 * np.abs(rep["delta"])).all()
    assert (rep["relative_gap"] < 0.02).all()
    _, rep = sal.integrated_gradients(shapes_probe, images[:1], baseline="mean", steps=128)
    assert (rep["relative_gap"] < 0.02).all()


def test_integrated_gradients_baselines_and_map(linear_head, rng):
    x = random_images(2, 12, rng)
    for baseline in ("black", "blur"):
        _, rep = sal.integrated_gradients(linear_head, x, baseline=baseline, steps=128)
        assert (rep["relative_gap"] < 0.02).all(), baseline
    maps, info = cw.saliency(
        linear_head, x, method="integrated", steps=16, normalize=None, return_info=True
    )
    attr = sal.attributions(linear_head, x, method="integrated", steps=16)
    np.testing.assert_allclose(maps, np.abs(attr.sum(axis=-1)), rtol=1e-5, atol=1e-7)
    assert info["completeness"]["sum"].shape == (2, 1)
    np.testing.assert_array_equal(sal.make_baseline(x, 128.0), np.full_like(x, 128.0))
    mean = sal.make_baseline(x, "mean")
    np.testing.assert_allclose(mean[:, 0, 0], x.mean(axis=(1, 2)), rtol=1e-5)
    blur = sal.make_baseline(x, "blur")
    assert blur.shape == x.shape and blur.std() < x.std()
    np.testing.assert_allclose(blur.mean(), x.mean(), rtol=0.02)


# ------------------------------------------------------ guided and deconvnet


def _one_relu_model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((5, 5, 2))
    h = keras.layers.Conv2D(3, 3, activation="relu", bias_initializer="random_normal")(inp)
    out = keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(h))
    return keras.Model(inp, out)


def _hand_backward(model, x, cls, rule):
    """d logit[cls] / d x by hand: dense -> relu rule -> transposed convolution."""
    conv = model.layers[1]
    kernel, bias = (np.asarray(w, np.float64) for w in conv.get_weights())
    dense_w = np.asarray(model.get_layer("logits").kernel, np.float64)
    xi = x.astype(np.float64)
    z = np.zeros((3, 3, 3))
    for i in range(3):
        for j in range(3):
            z[i, j] = np.einsum("abc,abco->o", xi[i : i + 3, j : j + 3], kernel) + bias
    g = dense_w[:, cls].reshape(3, 3, 3)  # d logit / d relu output
    if rule == "vanilla":
        g = g * (z > 0)
    elif rule == "guided":
        g = np.maximum(g, 0) * (z > 0)
    else:  # deconvnet: ReLU on the backward signal, forward mask ignored
        g = np.maximum(g, 0)
    dx = np.zeros_like(xi)
    for i in range(3):
        for j in range(3):
            dx[i : i + 3, j : j + 3] += np.einsum("abco,o->abc", kernel, g[i, j])
    return dx, z


def test_guided_and_deconvnet_follow_their_relu_rules(rng):
    model = _one_relu_model()
    probe = cw.Probe(model)
    x = rng.normal(size=(1, 5, 5, 2)).astype(np.float32)
    got = {
        m: sal.attributions(probe, x, classes=[0, 1], method=m)[0]
        for m in ("vanilla", "guided", "deconvnet")
    }
    for k in (0, 1):
        for rule in ("vanilla", "guided", "deconvnet"):
            want, z = _hand_backward(model, x[0], k, rule)
            np.testing.assert_allclose(got[rule][k], want, rtol=1e-4, atol=1e-5)
        # The case is informative: units both on and off, upstream signs both ways.
        assert (z > 0).any() and (z <= 0).any()
        assert not np.allclose(got["guided"][k], got["vanilla"][k])
        assert not np.allclose(got["deconvnet"][k], got["guided"][k])


def test_guided_gradcam_is_guided_times_upsampled_gradcam(linear_head, rng):
    x = random_images(2, 12, rng)
    guided = sal.attributions(linear_head, x, classes=[0, 1], method="guided")
    cam = cw.gradcam(linear_head, x, classes=[0, 1], layer="conv2", normalize="map")
    got = sal.attributions(linear_head, x, classes=[0, 1], method="guided-gradcam", layer="conv2")
    np.testing.assert_allclose(got, guided * cam[..., None], rtol=1e-5, atol=1e-7)
    maps = cw.saliency(
        linear_head, x, classes=[0, 1], method="guided-gradcam", layer="conv2", normalize=None
    )
    np.testing.assert_allclose(maps, np.abs(got).max(axis=-1), rtol=1e-5, atol=1e-7)


# -------------------------------------------------------------- binary heads


def test_binary_head_negative_class_is_minus_logit(rng):
    model = tiny_cnn(head="sigmoid", units=1, size=12, seed=2)
    probe = cw.Probe(model)
    x = random_images(2, 12, rng)
    attr = sal.attributions(probe, x, classes=[0, 1], method="vanilla")
    np.testing.assert_allclose(attr[:, 0], -attr[:, 1], rtol=1e-6, atol=1e-8)

    # Independent reference: the logit rebuilt from the Dense weights, on a tape.
    head = model.get_layer("head")
    features = keras.Model(model.inputs, model.get_layer("gap").output)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        logit = tf.matmul(features(xt), head.kernel) + head.bias
        neg = -tf.reduce_sum(logit)
    np.testing.assert_allclose(attr[:, 0], tape.gradient(neg, xt).numpy(), rtol=1e-4, atol=1e-6)
    for method in ("integrated", "smoothgrad"):
        a = sal.attributions(probe, x, classes=[0, 1], method=method, steps=8, n_samples=2)
        np.testing.assert_allclose(a[:, 0], -a[:, 1], rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------ normalization


def test_normalize_modes_and_degenerate_inputs(linear_head, rng):
    x = random_images(2, 12, rng)
    raw = cw.saliency(linear_head, x, classes=[0, 1], normalize=None)
    per_map = cw.saliency(linear_head, x, classes=[0, 1], normalize="map")
    per_image = cw.saliency(linear_head, x, classes=[0, 1], normalize="image")
    np.testing.assert_allclose(per_map.max(axis=(2, 3)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(per_image.max(axis=(1, 2, 3)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(per_map, raw / raw.max(axis=(2, 3), keepdims=True), rtol=1e-5)
    # A model whose gradient is exactly zero: zero maps, never NaN.
    inp = keras.Input((12, 12, 3))
    flat = keras.layers.Dense(2, kernel_initializer="zeros")(
        keras.layers.GlobalAveragePooling2D()(inp)
    )
    dead = cw.Probe(keras.Model(inp, flat))
    const = np.full((1, 12, 12, 3), 7.0, np.float32)
    for method in ("vanilla", "smoothgrad", "integrated", "guided", "deconvnet"):
        for norm in ("map", "image", None):
            m = cw.saliency(dead, const, classes=[0], method=method, normalize=norm, steps=4)
            assert np.isfinite(m).all() and not m.any(), (method, norm)
    const_maps = cw.saliency(linear_head, np.zeros((1, 12, 12, 3)), method="smoothgrad")
    assert np.isfinite(const_maps).all()


# ---------------------------------------------------------- safety and input


def test_model_is_never_changed(linear_head, rng):
    model = linear_head.model
    x = random_images(2, 12, rng)
    before = [w.copy() for w in model.get_weights()]
    activations = [getattr(layer, "activation", None) for layer in model.layers]
    pred = model.predict_on_batch(x)
    for method in sal.SALIENCY_METHODS:
        cw.saliency(model, x, method=method, n_samples=2, steps=2)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    np.testing.assert_array_equal(pred, model.predict_on_batch(x))
    assert activations == [getattr(layer, "activation", None) for layer in model.layers]


def test_bad_arguments_raise_clear_errors(linear_head, rng):
    x = random_images(1, 12, rng)
    with pytest.raises(ValueError, match="unknown saliency method.*vanilla"):
        cw.saliency(linear_head, x, method="saliency++")
    with pytest.raises(ValueError, match="normalize"):
        cw.saliency(linear_head, x, normalize="global")
    with pytest.raises(ValueError, match="noise"):
        cw.saliency(linear_head, x, method="smoothgrad", noise=-0.1)
    with pytest.raises(ValueError, match="steps"):
        cw.saliency(linear_head, x, method="integrated", steps=0)
    with pytest.raises(ValueError, match="baseline"):
        cw.saliency(linear_head, x, method="integrated", baseline="white")
    with pytest.raises(ValueError, match="closest"):
        cw.saliency(linear_head, x, method="guided-gradcam", layer="conv3")
    with pytest.raises(ValueError, match="expects 12x12"):
        cw.saliency(linear_head, random_images(1, 16, rng))
    assert sal._check_method("Guided_GradCAM") == "guided-gradcam"
    assert sal._check_method("IG") == "integrated"


def test_per_image_classes_progress_and_cancel(linear_head, rng):
    x = random_images(2, 12, rng)
    per_image = cw.saliency(linear_head, x, classes=np.array([[0], [2]]))
    one = cw.saliency(linear_head, x[:1], classes=[0])[0]
    two = cw.saliency(linear_head, x[1:], classes=[2])[0]
    np.testing.assert_allclose(per_image[0], one, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(per_image[1], two, rtol=1e-5, atol=1e-6)
    calls = []
    cw.saliency(
        linear_head,
        x,
        method="smoothgrad",
        n_samples=3,
        batch_size=2,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[0] == (0, 6) and calls[-1] == (6, 6)

    def stop(done, total):
        if done:
            raise Cancelled

    with pytest.raises(Cancelled):
        cw.saliency(linear_head, x, method="integrated", steps=8, batch_size=2, progress=stop)
