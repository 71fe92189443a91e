"""Offline assets: deterministic shapes with correct boxes, bundled photos, demo models."""

from __future__ import annotations

import numpy as np
import pytest

import cnnwidgets as cw
from cnnwidgets.assets import shapes


def test_shapes_are_deterministic_and_boxes_cover_the_object():
    a = cw.assets.make_shapes(6, seed=5)
    b = cw.assets.make_shapes(6, seed=5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    images, labels, boxes = a
    assert images.dtype == np.uint8 and images.shape == (6, 64, 64, 3)
    for box in boxes:
        t, left, bottom, r = box
        assert 0 <= t < bottom <= 64 and 0 <= left < r <= 64


def test_pairs_have_two_different_classes_in_disjoint_boxes():
    images, labels, boxes = cw.assets.make_pairs(20, seed=1)
    assert (labels[:, 0] != labels[:, 1]).all()
    for a, b in boxes:
        overlap_y = min(a[2], b[2]) - max(a[0], b[0])
        overlap_x = min(a[3], b[3]) - max(a[1], b[1])
        assert overlap_y <= 0 or overlap_x <= 0


def test_shape_mask_area_matches_geometry():
    circle = shapes.shape_mask("circle", 64, 32, 32, 10)
    assert abs(circle.sum() - np.pi * 100) < 0.05 * np.pi * 100
    with pytest.raises(ValueError, match="unknown shape"):
        shapes.shape_mask("hexagon", 64, 32, 32, 10)


def test_photo_is_resized_rgb():
    img = cw.assets.photo("camera", size=(48, 32))
    assert img.shape == (48, 32, 3) and img.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown photo"):
        cw.assets.photo("no_such_photo")


@pytest.mark.parametrize("name", ["shapes_cnn", "circle_vs_square"])
def test_demo_models_reach_the_documented_accuracy(name):
    model = cw.assets.demo_model(name)
    probe = cw.Probe(model, class_names=cw.assets.demo_class_names(name))
    images, labels, _ = cw.assets.make_shapes(400, seed=99)
    if name == "circle_vs_square":
        keep = np.isin(labels, (0, 1))
        images, labels = images[keep], (labels[keep] == 0).astype(int)  # circle = 1
    acc = (probe.predict(images).argmax(axis=1) == labels).mean()
    assert acc >= 0.97
    assert cw.assets.demo_metrics()[name] >= 0.97


def test_shapes_cnn_finds_both_objects_of_a_pair():
    """The notebook's two-object story rests on this: on fresh pairs the demo
    model ranks both shapes first and second, and each class's Grad-CAM peak
    falls in that shape's ground-truth box, not in the other one."""
    from cnnwidgets.explain.metrics import pointing_game

    probe = cw.Probe(cw.assets.demo_model("shapes_cnn"))
    images, labels, boxes = cw.assets.make_pairs(60, seed=77)
    top2 = np.sort(np.argsort(-probe.predict(images), axis=1)[:, :2], axis=1)
    assert (top2 == np.sort(labels, axis=1)).all(axis=1).mean() >= 0.95
    maps = cw.gradcam(probe, images, classes=labels)
    assert pointing_game(maps, boxes) >= 0.85
    assert pointing_game(maps, boxes[:, ::-1]) <= 0.05
