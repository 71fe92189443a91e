"""The shipped models of notebook 12 (scripts/train_target_models.py): they load
in Keras' safe mode, they are as good as target_metrics.json says on fresh
seeded scenes, and a Region Grad-CAM on the segmenter and a Regression
saliency on the regressor equal the same score written by hand under a plain
tf.GradientTape."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from references import assert_close

import cnnwidgets as cw
from cnnwidgets.explain.saliency import attributions

T = cw.targets
# Quality floors on fresh seeds (the training script's held-out seeds are 32 and 42).
MIN_MEAN_IOU = 0.88
MIN_PIXEL_ACCURACY = 0.97
MIN_SHAPE_ACCURACY = 0.95
MIN_AREA_R2 = 0.90




@pytest.fixture(scope="module")
def segmenter():
    return cw.assets.shapes_segmenter()


@pytest.fixture(scope="module")
def regressor():
    return cw.assets.shapes_regressor()


@pytest.fixture(scope="module")
def scenes():
    return cw.assets.make_scenes(60, seed=1234)


@pytest.fixture(scope="module")
def one_shape():
    return cw.assets.make_scenes(100, seed=4321, objects=(1, 1), radius=(0.1, 0.3))


def test_models_load_in_safe_mode_with_their_documented_outputs(segmenter, regressor):
    assert segmenter.output_shape == (None, 64, 64, len(cw.assets.SEGMENT_CLASSES))
    assert cw.assets.demo_class_names("shapes_segmenter") == list(cw.assets.SEGMENT_CLASSES)
    probe = cw.Probe(regressor)
    assert sorted(probe.output_names) == ["area", "shape"]
    metrics = cw.assets.target_metrics()
    assert metrics["shapes_segmenter"]["mean_iou"] >= MIN_MEAN_IOU
    assert metrics["shapes_regressor"]["area_r2"] >= MIN_AREA_R2


def test_segmenter_quality_on_fresh_scenes(segmenter, scenes):
    images, seg, _ = scenes
    pred = segmenter.predict(images, verbose=0).argmax(axis=-1)
    ious = []
    for k in range(len(cw.assets.SEGMENT_CLASSES)):
        union = np.logical_or(pred == k, seg == k).sum()
        ious.append(np.logical_and(pred == k, seg == k).sum() / union)
    assert np.mean(ious) >= MIN_MEAN_IOU, ious
    assert (pred == seg).mean() >= MIN_PIXEL_ACCURACY


def test_regressor_quality_on_fresh_shapes(regressor, one_shape):
    images, seg, _ = one_shape
    out = regressor.predict(images, verbose=0)
    area = cw.assets.area_percent(seg)
    pred = out["area"][:, 0]
    r2 = 1 - ((pred - area) ** 2).sum() / ((area - area.mean()) ** 2).sum()
    assert r2 >= MIN_AREA_R2
    assert (out["shape"].argmax(axis=1) == seg.max(axis=(1, 2)) - 1).mean() >= MIN_SHAPE_ACCURACY


def test_region_gradcam_equals_the_tape_on_the_region_logit(segmenter, scenes):
    """Grad-CAM of the clicked shape's region at `dec_conv`: the mean over the
    region of the channel's logit (the softmax input, upsampled), by hand."""
    images = scenes[0][:3].astype(np.float32)
    pred = segmenter.predict(images, verbose=0)
    ys, xs = np.nonzero(pred[0].argmax(-1) > 0)
    y, x = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
    cls = int(pred[0, y, x].argmax())
    mask = T.region_mask(pred[0], y, x)
    got = cw.gradcam(
        segmenter, images, target=T.Region(cls, mask), layer="dec_conv", resize=False,
        normalize=None,
    )

    sub = keras.Model(
        segmenter.inputs,
        [segmenter.get_layer("dec_conv").output, segmenter.get_layer("logits_up").output],
    )
    weights = tf.constant(mask / mask.sum(), tf.float32)
    with tf.GradientTape() as tape:
        acts, logits = sub(tf.constant(images), training=False)
        tape.watch(acts)
        score = tf.reduce_sum(logits[..., cls] * weights, axis=(1, 2))
    grads = tape.gradient(score, acts).numpy()
    acts = acts.numpy()
    want = np.maximum(np.einsum("nhwc,nc->nhw", acts, grads.mean(axis=(1, 2))), 0.0)
    assert got.shape == (3, 1, 32, 32)
    assert want[0].max() > 0  # the clicked region has evidence to show
    assert_close(got[:, 0], want)


@pytest.mark.parametrize("sign", [+1, -1])
def test_regression_saliency_equals_the_tape_on_the_area(regressor, one_shape, sign):
    images = one_shape[0][:3].astype(np.float32)
    target = T.Output("area", T.Regression(sign=sign))
    got = cw.saliency(regressor, images, target=target, normalize=None)
    signed = attributions(regressor, images, target=target)
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        area = regressor(x, training=False)["area"][:, 0]
        score = sign * area
    grads = tape.gradient(score, x).numpy()
    assert_close(signed[:, 0], grads)
    assert_close(got[:, 0], np.abs(grads).max(axis=-1))
