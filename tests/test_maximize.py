"""Activation maximization (cnnwidgets.explain.maximize + gradients.ascent)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import cnnwidgets as cw
from cnnwidgets.explain.maximize import (
    activation_gain,
    affine_preprocess,
    filter_activations,
    maximize,
)
from cnnwidgets.progress import Cancelled


def _fresh(probe):
    cw.cache.clear()
    return probe


@pytest.mark.parametrize(
    "layer, param, lr",
    [
        ("block1_conv1", "pixel", None),
        ("block2_conv1", "fourier", 0.3),
    ],
)
def test_every_filter_gains_at_least_tenfold(shapes_probe, layer, param, lr):
    filters = list(range(16))
    images = maximize(shapes_probe, layer, filters, size=64, steps=32, param=param, lr=lr)
    assert images.shape == (16, 64, 64, 3) and images.dtype == np.uint8
    gain = activation_gain(shapes_probe, layer, images, filters)
    assert gain.shape == (16,)
    assert gain.min() >= 10, np.round(gain, 1)


@pytest.mark.parametrize("param", ["fourier", "pixel"])
def test_a_batch_gives_the_images_of_single_runs(shapes_probe, param):
    filters = [0, 5, 9]
    kw = dict(size=64, steps=12, seed=3, param=param)
    batch = maximize(_fresh(shapes_probe), "block2_conv2", filters, **kw)
    for i, f in enumerate(filters):
        single = maximize(_fresh(shapes_probe), "block2_conv2", [f], **kw)[0]
        diff = np.abs(single.astype(int) - batch[i].astype(int))
        assert diff.max() <= 3 and diff.mean() < 0.1, (f, diff.max(), diff.mean())
    assert not np.array_equal(batch[0], batch[1])


def test_deterministic_by_seed_and_cached(shapes_probe):
    kw = dict(size=64, steps=8, param="fourier")
    a = maximize(_fresh(shapes_probe), "block3_conv1", [1, 2], seed=0, **kw)
    b = maximize(_fresh(shapes_probe), "block3_conv1", [1, 2], seed=0, **kw)
    c = maximize(shapes_probe, "block3_conv1", [1, 2], seed=1, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    calls = []
    again = maximize(
        shapes_probe, "block3_conv1", [2, 1], seed=0, progress=lambda d, t: calls.append(d), **kw
    )
    np.testing.assert_array_equal(again, b[::-1])
    assert calls == []  # all from the cache: no optimization step ran


def test_progress_and_cancel(shapes_probe):
    seen = []
    maximize(
        _fresh(shapes_probe),
        "block1_conv2",
        [0, 1, 2],
        size=64,
        steps=24,
        param="pixel",
        batch_size=2,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen[0] == (0, 48) and seen[-1] == (48, 48)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    def stop(done, total):
        if done >= 8:
            raise Cancelled()

    with pytest.raises(Cancelled):
        maximize(_fresh(shapes_probe), "block1_conv2", [3], size=64, steps=64, progress=stop)


def test_output_layer_maximizes_the_class_logit(shapes_probe):
    names = shapes_probe.class_names
    images = maximize(shapes_probe, "predictions", ["circle", 1], size=48, steps=24, param="pixel")
    assert images.shape == (2, 48, 48, 3)
    x = np.stack([cw.render.resize_image(i, (64, 64)) for i in images])
    logits, _ = shapes_probe.scores(x)
    noise = np.full((2, 64, 64, 3), 128, np.uint8)
    base, _ = shapes_probe.scores(noise)
    assert logits[0, 0] > base[0, 0] + 1 and logits[1, 1] > base[1, 1] + 1
    # The objective the loop optimizes is the logit itself, not the softmax.
    from cnnwidgets.gradients.ascent import _objective_fn

    fn = _objective_fn(shapes_probe, "predictions", "class")
    np.testing.assert_allclose(np.asarray(fn(x.astype(np.float32))), logits, rtol=1e-4, atol=1e-4)
    p = filter_activations(shapes_probe, "predictions", images, names[:2])
    assert ((p >= 0) & (p <= 1)).all()  # probabilities of the optimized classes


def test_bad_arguments(shapes_probe):
    with pytest.raises(ValueError, match="closest.*block2_conv1"):
        maximize(shapes_probe, "block2_conv", [0])
    with pytest.raises(ValueError, match="out of range"):
        maximize(shapes_probe, "block1_conv1", [16])
    with pytest.raises(ValueError, match="param"):
        maximize(shapes_probe, "block1_conv1", [0], param="wavelet")
    with pytest.raises(ValueError, match="unknown class"):
        maximize(shapes_probe, "predictions", ["hexagon"])


def test_model_untouched_and_sizes(shapes_model):
    x = cw.assets.make_shapes(2, seed=9)[0]
    before = shapes_model.predict_on_batch(x)
    weights = [w.copy() for w in shapes_model.get_weights()]
    out = maximize(shapes_model, "block1_conv1", [0], size=96, steps=4)
    assert out.shape == (1, 96, 96, 3)  # optimized at 64x64, shown at 96x96
    np.testing.assert_array_equal(shapes_model.predict_on_batch(x), before)
    for a, b in zip(shapes_model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)


def test_fully_convolutional_model_and_affine_preprocess():
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="out")(x))
    probe = cw.Probe(model, preprocess=lambda a: a[..., ::-1] / 127.5 - 1.0)
    a, b = affine_preprocess(probe)
    np.testing.assert_allclose(a, np.eye(3)[::-1] / 127.5, atol=1e-6)
    np.testing.assert_allclose(b, -1.0, atol=1e-6)
    out = maximize(probe, "c1", [0, 1], size=24, steps=8, param="fourier")
    assert out.shape == (2, 24, 24, 3)
    bad = cw.Probe(model, preprocess=lambda a: np.sqrt(a))
    with pytest.raises(ValueError, match="affine"):
        maximize(bad, "c1", [0], size=16, steps=2)
