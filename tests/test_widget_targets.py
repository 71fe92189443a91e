"""Widgets pick targets beyond classes: segmentation regions (by click),
predicted values (raise / lower), given targets; checked against maps and
scores computed without the widgets."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy import ndimage

import cnnwidgets as cw
from cnnwidgets.explain.methods import explain
from cnnwidgets.explain.occlusion import occlude
from cnnwidgets.probe.targets import Class, Output, Region, Regression

SIZE = 24


@pytest.fixture(scope="module")
def models():
    """A segmenter (1x1 softmax head), a model with a class head and a value
    head (named), the value head alone, and one image."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
    seg = keras.layers.Conv2D(3, 1, activation="softmax", name="seg")(x)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    cls = keras.layers.Dense(4, activation="softmax", name="cls")(pooled)
    size = keras.layers.Dense(1, name="size")(pooled)
    image = np.random.default_rng(1).uniform(0, 255, (SIZE, SIZE, 3)).astype("float32")
    return {
        "seg": keras.Model(inp, seg, name="seg"),
        "features": keras.Model(inp, x, name="features"),
        "two": keras.Model(inp, {"cls": cls, "size": size}, name="two"),
        "value": keras.Model(inp, size, name="value"),
        "image": image,
    }


def seg_logits(models, images):
    """The segmenter's logits without cnnwidgets: features times the 1x1 kernel."""
    kernel, bias = models["seg"].get_layer("seg").get_weights()
    feats = models["features"].predict(images, verbose=0)
    return np.einsum("nhwc,ck->nhwk", feats, kernel[0, 0]) + bias


def test_segmentation_comparator_offers_predicted_classes_by_area(models):
    w = cw.GradCAMComparator(models["seg"], models["image"], methods=("gradcam",))
    predicted = models["seg"].predict(models["image"][None], verbose=0)[0].argmax(-1)
    classes, areas = np.unique(predicted, return_counts=True)
    expected = classes[np.argsort(-areas, kind="stable")]
    assert [c.target.cls for c in w.choices] == list(expected)
    for choice in w.choices:
        np.testing.assert_array_equal(choice.mask, predicted == choice.target.cls)
    assert w.sign.layout.display == "none"  # nothing to raise or lower
    assert w.picker is not None and w.view.dtype == np.uint8
    w.close()


def test_a_click_picks_the_connected_region_and_the_panels_follow(models):
    w = cw.GradCAMComparator(models["seg"], models["image"], methods=("gradcam", "vanilla"))
    predicted = models["seg"].predict(models["image"][None], verbose=0)[0].argmax(-1)
    # A pixel of the least frequent class: its connected piece is a real choice.
    classes, counts = np.unique(predicted, return_counts=True)
    rare = classes[np.argmin(counts)]
    y, x = map(int, np.argwhere(predicted == rare)[0])
    picked = w.click(y + 0.4, x + 0.4)
    w.wait()
    labels, _ = ndimage.label(predicted == predicted[y, x])
    reference = labels == labels[y, x]
    np.testing.assert_array_equal(picked.mask, reference)
    assert w.class_slider.value == 1 and w.selected_target == picked.target
    target = Region(int(predicted[y, x]), reference)
    for method in ("gradcam", "vanilla"):
        expected = explain(
            models["seg"], models["image"], method=method, target=target, normalize=None
        )[0, 0]
        np.testing.assert_allclose(w.raw_map(method), np.maximum(expected, 0), atol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        w.click(SIZE + 3, 0)
    w.close()


def test_regression_values_show_the_prediction_and_the_sign_flips_the_map(models):
    image = models["image"]
    w = cw.GradCAMComparator(models["two"], image, methods=("gradcam",))
    labels = [c.label for c in w.choices]
    assert labels[-1] == "raise size" and len(labels) == 5  # 4 classes, then the value
    w.class_slider.value = 5
    w.wait()
    predicted = float(models["two"].predict(image[None], verbose=0)["size"][0, 0])
    assert f"{predicted:.4g}" in w.class_label.value
    assert w.sign.layout.display != "none"
    raised = w.raw_map("gradcam")
    w.sign.value = -1
    w.wait()
    assert w.selected_target == Output("size", Regression(sign=-1))
    lowered = w.raw_map("gradcam")
    for sign, shown in ((1, raised), (-1, lowered)):
        ref = cw.gradcam(
            models["two"], image, target=Output("size", Regression(sign=sign)), normalize=None
        )[0, 0]
        np.testing.assert_allclose(shown, ref, atol=1e-5)
    assert "lower size" in w.class_label.value
    w.close()


def test_given_targets_are_offered_in_order_contrastive_included(models):
    two, image = models["two"], models["image"]
    contrast = Output("cls", Class(0)) - Output("cls", Class(1))
    w = cw.GradCAMComparator(
        two, image, targets=[contrast, Output("size", Regression())], methods=("gradcam",)
    )
    assert w.choices[0].target == contrast and w.choices[1].kind == "value"
    w.class_slider.value = 1
    w.wait()
    ref = cw.gradcam(two, image, target=contrast, normalize=None)[0, 0]
    np.testing.assert_allclose(w.raw_map("gradcam"), ref, atol=1e-5)
    out = two.predict(image[None], verbose=0)
    probs = out["cls"][0]
    # The contrast's value is the logit difference: log p0 - log p1 of a softmax.
    assert w.choices[0].value == pytest.approx(np.log(probs[0]) - np.log(probs[1]), rel=1e-4)
    with pytest.raises(TypeError, match="not both"):
        cw.GradCAMComparator(two, image, targets=[contrast], classes=[0])
    w.close()


def test_scrubber_follows_a_region_score_with_and_without_the_patch(models):
    seg, image = models["seg"], models["image"]
    s = cw.OcclusionScrubber(seg, image, patch=6, stride=6)
    s.wait()
    choice = s._choices[s.class_.options[1][1]]
    s.class_.value = choice.key
    s.click(8, 8)
    s.wait()
    occluded = occlude(image, s.x.value, s.y.value, 6, "mean")
    c, mask = choice.target.cls, choice.mask
    before, after = (
        seg_logits(models, im[None])[0, ..., c][mask].mean() for im in (image, occluded)
    )
    assert s.drop == pytest.approx(before - after, rel=1e-4, abs=1e-4)
    assert s.selected_target == choice.target
    assert s.sensitivity is not None and s.sensitivity.shape == (SIZE, SIZE)
    s.close()


def test_scrubber_on_a_value_shows_the_predicted_value_drop(models):
    value, image = models["value"], models["image"]
    with pytest.warns(UserWarning, match="linear unit"):
        s = cw.OcclusionScrubber(value, image, patch=6, stride=6, targets=Regression())
    s.move(6, 12)
    s.wait()
    occluded = occlude(image, 6, 12, 6, "mean")
    before, after = (float(value.predict(im[None], verbose=0)[0, 0]) for im in (image, occluded))
    assert s.drop == pytest.approx(before - after, rel=1e-4, abs=1e-5)
    assert "value" in s.status.value
    s.close()


def test_a_click_on_a_classifier_comparator_says_what_it_needs(models, shapes_probe):
    w = cw.GradCAMComparator(shapes_probe, np.zeros((64, 64, 3), np.float32))
    assert w.picker is None
    with pytest.raises(ValueError, match="segmentation output"):
        w.click(3, 3)
    w.close()


def test_the_refusal_of_classes_names_a_target_that_fits_each_output(models):
    import re

    with pytest.raises(ValueError) as refused:
        cw.gradcam(models["two"], models["image"], classes=0)
    hints = re.findall(r"cw\.targets\.Output\('(\w+)', cw\.targets\.(\w+)\(", str(refused.value))
    assert dict(hints) == {"cls": "Class", "size": "Regression"}
    # Each hint, written as the message writes it, runs.
    for name, kind in hints:
        inner = Class(0) if kind == "Class" else Regression()
        cw.gradcam(models["two"], models["image"], target=Output(name, inner))
    with pytest.raises(ValueError, match=r"target=cw\.targets\.Region\(channel"):
        cw.gradcam(models["seg"], models["image"], classes=0)
