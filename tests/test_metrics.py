"""Sanity and faithfulness metrics against hand-computed small cases and scipy."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import scipy.stats
from tiny_models import tiny_cnn

import cnnwidgets as cw
from cnnwidgets.explain import metrics

# ----------------------------------------------------------- rank correlation


def test_rank_correlation_matches_scipy(rng):
    for _ in range(5):
        a = rng.normal(size=50)
        b = a + rng.normal(size=50)
        want = scipy.stats.spearmanr(a, b).statistic
        assert metrics.rank_correlation(a, b) == pytest.approx(want, abs=1e-12)
    # Ties get average ranks, as in scipy.
    a = rng.integers(0, 4, size=(6, 7)).astype(float)
    b = rng.integers(0, 3, size=(6, 7)).astype(float)
    want = scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic
    assert metrics.rank_correlation(a, b) == pytest.approx(want, abs=1e-12)
    np.testing.assert_allclose(metrics.rankdata(a.ravel()), scipy.stats.rankdata(a.ravel()))
    # batch_dims: one correlation per leading index.
    maps_a, maps_b = rng.normal(size=(3, 2, 5, 5)), rng.normal(size=(3, 2, 5, 5))
    got = metrics.rank_correlation(maps_a, maps_b, batch_dims=2)
    assert got.shape == (3, 2)
    for i in range(3):
        for k in range(2):
            ref = scipy.stats.spearmanr(maps_a[i, k].ravel(), maps_b[i, k].ravel()).statistic
            assert got[i, k] == pytest.approx(ref, abs=1e-12)


def test_rank_correlation_hand_cases():
    assert metrics.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert metrics.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = (0, 0, 1, -1): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert metrics.rank_correlation([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    assert metrics.rank_correlation([5, 5, 5], [1, 2, 3]) == 0.0  # constant: 0, not NaN
    with pytest.raises(ValueError, match="same shape"):
        metrics.rank_correlation([1, 2], [1, 2, 3])


# --------------------------------------------------------------- pointing game


def test_pointing_game_hand_cases():
    maps = np.zeros((4, 6, 6))
    maps[0, 1, 1] = 1.0  # inside box (0, 0, 3, 3)
    maps[1, 4, 4] = 1.0  # outside
    maps[2, 3, 3] = 1.0  # just outside (bottom/right exclusive); inside with tolerance 1
    # maps[3] is constant: no maximum, a miss
    boxes = np.array([[0, 0, 3, 3]] * 4)
    score, hits = metrics.pointing_game(maps, boxes, return_hits=True)
    assert score == 0.25 and hits.tolist() == [True, False, False, False]
    assert metrics.pointing_game(maps, boxes, tolerance=1) == 0.5
    # (N, K, H, W) maps with one box per image, or one box per map.
    two = np.stack([maps[:2], maps[:2][::-1]], axis=1)  # (2, 2, 6, 6)
    score, hits = metrics.pointing_game(two, boxes[:2], return_hits=True)
    assert hits.tolist() == [[True, False], [False, True]]
    per_map = np.array([[[0, 0, 3, 3], [3, 3, 6, 6]], [[0, 0, 3, 3], [3, 3, 6, 6]]])
    assert metrics.pointing_game(two, per_map) == 0.5
    with pytest.raises(ValueError, match="boxes"):
        metrics.pointing_game(maps, boxes[:2])


# --------------------------------------------------------- deletion / insertion


def _mean_model(w=4.0, b=-2.0):
    """p = sigmoid(w * mean(x) + b) on 2x2 one-channel images: a hand-checkable model."""
    inp = keras.Input((2, 2, 1))
    gap = keras.layers.GlobalAveragePooling2D()(inp)
    dense = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inp, dense(gap))
    dense.set_weights([np.array([[w]], np.float32), np.array([b], np.float32)])
    return model


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_deletion_and_insertion_auc_by_hand():
    probe = cw.Probe(_mean_model())
    image = np.array([[[1.0], [0.5]], [[0.25], [0.0]]], np.float32)[None]  # (1, 2, 2, 1)
    order_map = np.array([[[0.1, 0.9], [0.5, 0.2]]])  # order: (0,1), (1,0), (1,1), (0,0)
    # Deletion to black: one pixel per step, removed in saliency order.
    kept = [image.ravel().copy()]
    for flat in (1, 2, 3, 0):
        nxt = kept[-1].copy()
        nxt[flat] = 0.0
        kept.append(nxt)
    curve = _sigmoid(4.0 * np.array([k.mean() for k in kept]) - 2.0)
    want = np.trapezoid(curve, dx=0.25)
    auc, curves = metrics.deletion_auc(
        probe, image, order_map, classes=[1], steps=4, return_curves=True
    )
    np.testing.assert_allclose(curves[0, 0], curve, rtol=1e-5)
    assert auc.shape == (1, 1) and auc[0, 0] == pytest.approx(want, rel=1e-5)
    # The negative class of a binary head is 1 - p.
    neg = metrics.deletion_auc(probe, image, order_map, classes=[0], steps=4)
    assert neg[0, 0] == pytest.approx(1.0 - want, rel=1e-5)

    # Insertion onto a constant canvas of 0.5, two steps of two pixels.
    canvas = np.full(4, 0.5)
    step1 = canvas.copy()
    step1[[1, 2]] = image.ravel()[[1, 2]]
    points = [canvas, step1, image.ravel()]
    curve = _sigmoid(4.0 * np.array([p.mean() for p in points]) - 2.0)
    auc = metrics.insertion_auc(probe, image, order_map, classes=[1], steps=2, baseline=0.5)
    assert auc[0, 0] == pytest.approx(np.trapezoid(curve, dx=0.5), rel=1e-5)


def test_auc_batching_and_classes(shapes_probe, shapes_images):
    images = shapes_images[0][:2]
    maps = cw.saliency(shapes_probe, images, classes=[0, 1])
    a = metrics.deletion_auc(shapes_probe, images, maps, classes=[0, 1], steps=8)
    b = metrics.deletion_auc(shapes_probe, images, maps, classes=[0, 1], steps=8, batch_size=5)
    assert a.shape == (2, 2) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert ((a >= 0) & (a <= 1)).all()
    with pytest.raises(ValueError, match="K=2"):
        metrics.deletion_auc(shapes_probe, images, maps, steps=8)
    with pytest.raises(ValueError, match="maps have shape"):
        metrics.insertion_auc(shapes_probe, images, maps[:, :, :32], classes=[0, 1])


# --------------------------------------------------------- randomization test


def test_randomized_model_is_a_deterministic_clone():
    model = tiny_cnn(head="softmax", units=3, size=12, seed=4)
    before = [w.copy() for w in model.get_weights()]
    twin = metrics.randomized_model(model, seed=1)
    assert twin.model is not model
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    new = twin.model.get_weights()
    kernels = [i for i, w in enumerate(before) if w.ndim > 1]
    assert all(not np.allclose(before[i], new[i]) for i in kernels)
    again = metrics.randomized_model(cw.Probe(model), seed=1).model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(new, again))
    other = metrics.randomized_model(model, seed=2).model.get_weights()
    assert not np.allclose(new[kernels[0]], other[kernels[0]])
    # Cascading: only the head re-initialized; the rest copies the trained weights.
    top = metrics.randomized_model(model, seed=1, layers=["head"]).model
    assert np.array_equal(
        top.get_layer("conv1").get_weights()[0], model.get_layer("conv1").get_weights()[0]
    )
    assert not np.allclose(
        top.get_layer("head").get_weights()[0], model.get_layer("head").get_weights()[0]
    )


def test_randomization_sanity(rng):
    model = tiny_cnn(head="linear", units=3, size=12, seed=5)
    x = rng.uniform(0, 255, size=(2, 12, 12, 3)).astype(np.float32)
    pred = model.predict_on_batch(x)
    res = metrics.randomization_sanity(model, x, "vanilla", classes=[0, 1], seed=3)
    assert res.trained.shape == res.randomized.shape == (2, 2, 12, 12)
    assert res.correlation.shape == (2, 2) and res.classes.tolist() == [[0, 1], [0, 1]]
    ref = [
        [
            scipy.stats.spearmanr(res.trained[i, k].ravel(), res.randomized[i, k].ravel()).statistic
            for k in range(2)
        ]
        for i in range(2)
    ]
    np.testing.assert_allclose(res.correlation, ref, atol=1e-12)
    assert (res.correlation < 0.99).all()
    np.testing.assert_allclose(res.trained, cw.saliency(model, x, classes=[0, 1]))
    np.testing.assert_array_equal(pred, model.predict_on_batch(x))  # the user's model untouched
    again = metrics.randomization_sanity(model, x, "vanilla", classes=[0, 1], seed=3)
    np.testing.assert_array_equal(res.correlation, again.correlation)
    # The same model as "randomized" would correlate perfectly: the metric measures change.
    assert metrics.rank_correlation(res.trained, res.trained, batch_dims=2) == pytest.approx(
        np.ones((2, 2))
    )
