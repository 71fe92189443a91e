"""Keeps the benchmark's reference honest: the Keras-example Grad-CAM written
in benchmarks/peers.py must give the same maps as cw.gradcam. No timing here."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

import cnnwidgets as cw

PEERS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("cnnwidgets_benchmark_peers", PEERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_keras_example_gradcam_matches_cw(peers, shapes_model):
    pytest.importorskip("cnnwidgets.explain.cam")
    probe = cw.Probe(shapes_model)
    layer = probe.last_conv_layer
    logits_model = peers.without_softmax(shapes_model)
    images, _, _ = cw.assets.make_pairs(3, seed=7)
    classes = list(range(probe.num_classes))
    for image in images:
        ours = cw.gradcam(probe, image, classes=classes, layer=layer, resize=False)[0]
        ref = peers.keras_example_gradcam_classes(image, logits_model, layer, classes)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
        assert ours.max() > 0  # not a trivially-equal pair of zero maps


def test_without_softmax_leaves_the_model_alone(peers, shapes_model):
    images, _, _ = cw.assets.make_shapes(2, seed=3)
    before = shapes_model.predict(images, verbose=0)
    peers.without_softmax(shapes_model)
    after = shapes_model.predict(images, verbose=0)
    np.testing.assert_array_equal(before, after)
    np.testing.assert_allclose(before.sum(axis=1), 1.0, atol=1e-5)


def test_occlusion_floor_images(peers):
    image = np.zeros((32, 32, 3), np.float32)
    batch = peers.patched_images(image, patch=16, stride=8)
    assert batch.shape == (9, 32, 32, 3)
    # Every patch grey, everything else untouched.
    assert np.all(batch.reshape(9, -1).max(axis=1) == 127.5)
    assert np.all((batch == 127.5).reshape(9, -1).sum(axis=1) == 16 * 16 * 3)
    assert peers.patch_positions(20, 16, 8) == [0, 4]


def test_matplotlib_grid_draws(peers):
    pytest.importorskip("matplotlib")
    acts = np.random.default_rng(0).random((6, 6, 5)).astype(np.float32)
    picture = peers.matplotlib_grid(acts)
    assert picture.ndim == 3 and picture.shape[2] == 3 and picture.dtype == np.uint8
