"""Targets (cw.targets): every score checked against the same score written by
hand under a plain tf.GradientTape (or, for occlusion, a plain loop), on small
random models built here. Bad targets fail with a ValueError / TypeError that
names the problem before any model pass."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from references import assert_close, reference_gradcam, tape_input_grads
from tiny_models import random_images, tiny_cnn, two_output_model

import cnnwidgets as cw
from cnnwidgets import gradients
from cnnwidgets.explain.occlusion import occlude, patch_positions
from cnnwidgets.explain.saliency import attributions

L = keras.layers
T = cw.targets


# ------------------------------------------------------------------ models


def regression_model(seed=1):
    """conv -> GAP -> Dense(1): one linear unit, a regression output."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(1, name="value")(x), name="regressor")


def segmentation_model(k=3, seed=2):
    """conv-relu, conv-relu, then a 1x1 conv with K channels and softmax 'seg'."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="c2")(x)
    out = L.Conv2D(k, 1, activation="softmax", name="seg")(x)
    return keras.Model(inp, out, name="segmenter")


@pytest.fixture(scope="module")
def images():
    return random_images(2, 16, seed=7, high=1.0)


@pytest.fixture(scope="module")
def two_heads():
    return two_output_model()


@pytest.fixture(scope="module")
def segmenter():
    return segmentation_model()


# -------------------------------------------------------------- references


def tape_layer_grads(model, layer, images, score_fn):
    """acts (N, h, w, c) and d score / d acts, by a plain GradientTape."""
    sub = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs])
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        act, outs = sub(x, training=False)
        tape.watch(act)
        score = score_fn(act, outs)
    return act.numpy(), tape.gradient(score, act).numpy()






def dense_logits(model, name, features):
    """A Dense layer's output before its activation, written out by hand."""
    layer = model.get_layer(name)
    return tf.matmul(features, layer.kernel) + layer.bias


# ------------------------------------------------------------- two outputs


def test_regression_output_of_a_two_output_model_gradcam(two_heads, images):
    target = T.Output("value", T.Regression())
    got = cw.gradcam(two_heads, images, target=target, layer="conv", resize=False, normalize=None)
    acts, grads = tape_layer_grads(two_heads, "conv", images, lambda a, outs: outs[1][:, 0])
    assert got.shape == (2, 1, 16, 16)
    assert_close(got[:, 0], reference_gradcam(acts, grads))
    assert got.max() > 0


def test_regression_output_of_a_two_output_model_saliency(two_heads, images):
    target = T.Output("value", T.Regression())
    got = attributions(two_heads, images, method="vanilla", target=target)
    want = tape_input_grads(lambda x: two_heads(x, training=False)[1][:, 0], images)
    assert_close(got[:, 0], want)
    maps = cw.saliency(two_heads, images, target=target, normalize=None)
    assert_close(maps[:, 0], np.abs(want).max(axis=-1))


def test_class_head_of_a_two_output_model_is_its_logit(two_heads, images):
    sub = keras.Model(two_heads.inputs, two_heads.get_layer("gap").output)

    def logit(x, c):
        return dense_logits(two_heads, "cls", sub(x, training=False))[:, c]

    pair = [T.Output("cls", T.Class(2)), T.Output(0, T.Class(0))]
    got = attributions(two_heads, images, target=pair)
    assert_close(got[:, 0], tape_input_grads(lambda x: logit(x, 2), images))
    assert_close(got[:, 1], tape_input_grads(lambda x: logit(x, 0), images))


def test_a_multi_output_model_refuses_classes_and_names_targets(two_heads, images):
    probe = cw.Probe(two_heads)
    assert probe.output_names == ["cls", "value"]
    with pytest.raises(ValueError, match=r"2 outputs.*Output\('cls'"):
        cw.gradcam(two_heads, images)
    with pytest.raises(ValueError, match="2 outputs"):
        probe.predict(images)
    # Layers still browse as before.
    assert probe.activations(images, "conv")["conv"].shape == (2, 16, 16, 4)


# ---------------------------------------------------------- one-unit regression


def test_regression_sign_negates_the_raw_gradient(images):
    model = regression_model()
    probe = cw.Probe(model, class_names=["low", "high"])  # names: no binary-head warning
    want = tape_input_grads(lambda x: model(x, training=False)[:, 0], images)
    x = probe.model_inputs(probe.check_images(images))
    up, s_up = gradients.input_gradients(probe, x, (T.Regression(),))
    down, s_down = gradients.input_gradients(probe, x, (T.Regression(sign=-1),))
    assert_close(up[:, 0], want)
    assert_close(down[:, 0], -want)
    assert_close(s_down, -s_up)
    assert_close(s_up[:, 0], model.predict(images, verbose=0)[:, 0])
    # The same through the public saliency attributions and the layer gradients.
    assert_close(attributions(probe, images, target=T.Regression(sign=-1))[:, 0], -want)
    acts, grads, _ = gradients.layer_gradients(probe, x, "conv", (T.Regression(sign=-1),))
    r_acts, r_grads = tape_layer_grads(model, "conv", images, lambda a, o: o[0][:, 0])
    assert_close(acts, r_acts)
    assert_close(grads[:, 0], -r_grads)


# --------------------------------------------------------------- segmentation


def seg_logit_score(model, images, cls, mask):
    """'c1' acts and d score / d acts, with score = mean over the mask of the
    'seg' channel's logit, c2 and the 1x1 convolution run by hand."""
    c2, seg = model.get_layer("c2"), model.get_layer("seg")
    sub = keras.Model(model.inputs, model.get_layer("c1").output)
    with tf.GradientTape() as tape:
        act = sub(tf.constant(images), training=False)
        tape.watch(act)
        feats = tf.nn.relu(tf.nn.conv2d(act, c2.kernel, 1, "SAME") + c2.bias)
        logits = tf.nn.conv2d(feats, seg.kernel, 1, "VALID") + seg.bias
        weights = tf.constant(mask / mask.sum(), tf.float32)
        score = tf.reduce_sum(logits[..., cls] * weights, axis=(1, 2))
    return act.numpy(), tape.gradient(score, act).numpy(), score.numpy()


def test_region_mask_gradcam_and_scores_match_the_hand_written_logit(segmenter, images):
    mask = np.zeros((16, 16), bool)
    mask[3:9, 4:12] = True
    mask[10, 10] = True
    target = T.Region(1, mask)
    got = cw.gradcam(segmenter, images, target=target, layer="c1", resize=False, normalize=None)
    acts, grads, score = seg_logit_score(segmenter, images, 1, mask)
    assert_close(got[:, 0], reference_gradcam(acts, grads))
    assert_close(cw.Probe(segmenter).target_scores(images, target)[:, 0], score)


def test_region_box_saliency_matches_the_hand_written_logit(segmenter, images):
    box = (2, 3, 10, 13)
    seg = segmenter.get_layer("seg")
    sub = keras.Model(segmenter.inputs, seg.input)

    def score(x):
        logits = tf.nn.conv2d(sub(x, training=False), seg.kernel, 1, "VALID") + seg.bias
        return tf.reduce_mean(logits[:, 2:10, 3:13, 0], axis=(1, 2))

    got = attributions(segmenter, images, target=T.Region(0, box))
    assert_close(got[:, 0], tape_input_grads(score, images))
    # A box equals the mask of the same pixels.
    mask = np.zeros((16, 16), bool)
    mask[2:10, 3:13] = True
    assert_close(attributions(segmenter, images, target=T.Region(0, mask)), got)


def test_region_mask_helper_takes_the_connected_region_of_the_clicked_class():
    classes = np.zeros((6, 6), int)
    classes[0:2, 0:2] = 1
    classes[4:6, 4:6] = 1  # same class, not connected
    mask = T.region_mask(classes, 1, 1)
    assert mask.dtype == bool and mask.sum() == 4 and mask[0:2, 0:2].all()
    scores = np.eye(2)[classes]  # (H, W, K) one-hot scores: argmax is the class map
    want = np.zeros((6, 6), bool)
    want[4:6, 4:6] = True
    np.testing.assert_array_equal(T.region_mask(scores, 5, 5), want)
    with pytest.raises(ValueError, match="outside"):
        T.region_mask(classes, 6, 0)


def test_segmentation_model_refuses_classes_but_takes_regions(segmenter, images):
    with pytest.raises(ValueError, match=r"not a class vector \(N, K\)"):
        cw.saliency(segmenter, images)
    occ = cw.occlusion(segmenter, images[:1], target=T.Region(0, (0, 0, 8, 8)), patch=8, stride=8)
    assert occ.shape == (1, 1, 16, 16) and np.isfinite(occ).all()


# ----------------------------------------------------------------- multi-label


def test_labels_reads_one_sigmoid_logit_without_coupling(images):
    model = tiny_cnn(head="sigmoid", units=4)
    sub = keras.Model(model.inputs, model.get_layer("gap").output)

    def logit(x):
        return dense_logits(model, "head", sub(x, training=False))[:, 2]

    got = attributions(model, images, target=T.Labels(2))
    assert_close(got[:, 0], tape_input_grads(logit, images))
    with pytest.raises(ValueError, match="softmax.*Class"):
        T.Labels(0).check(cw.Probe(tiny_cnn(head="softmax")))


# ----------------------------------------------------------------- composition


def test_contrastive_class_difference_matches_the_reference_map(images):
    model = tiny_cnn(head="softmax", units=3)

    def contrast(act, outs):
        gap = tf.reduce_mean(act, axis=(1, 2))
        logits = dense_logits(model, "head", gap)
        return logits[:, 0] - logits[:, 2]

    target = T.Class(0) - T.Class(2)
    got = cw.gradcam(model, images, target=target, layer="conv2", resize=False, normalize=None)
    acts, grads = tape_layer_grads(model, "conv2", images, contrast)
    assert_close(got[:, 0], reference_gradcam(acts, grads))
    # Class(c) is exactly classes=c, and the difference is linear.
    a = attributions(model, images, target=[T.Class(0), T.Class(2), target, 0.5 * target])
    assert_close(a[:, 0], attributions(model, images, classes=0)[:, 0])
    assert_close(a[:, 2], a[:, 0] - a[:, 1])
    assert_close(a[:, 3], 0.5 * a[:, 2])
    assert target.describe() == "class 0 − class 2"


def test_a_callable_target_matches_the_tape(two_heads, images):
    def energy(outputs):
        return keras.ops.sum(outputs[0] ** 2, axis=-1) + 3.0 * outputs[1][:, 0]

    def reference(x):
        cls, value = two_heads(x, training=False)
        return tf.reduce_sum(cls**2, axis=-1) + 3.0 * value[:, 0]

    got = attributions(two_heads, images, method="vanilla", target=energy)
    assert_close(got[:, 0], tape_input_grads(reference, images))
    assert T.as_target(energy).describe() == "energy"
    # Inside Output the function gets that output alone.
    inner = T.Output("value", lambda outs: -outs[0][:, 0])
    want = tape_input_grads(lambda x: -two_heads(x, training=False)[1][:, 0], images)
    assert_close(attributions(two_heads, images, target=inner)[:, 0], want)


def test_targets_compile_once_per_key(monkeypatch, images):
    model = tiny_cnn(head="softmax", units=3, seed=4)
    probe = cw.Probe(model)
    builds = []
    real = gradients.traced_once
    monkeypatch.setattr(gradients, "traced_once", lambda *a: builds.append(1) or real(*a))
    for _ in range(2):  # new but equal targets: same key, no new build
        cw.gradcam(probe, images, target=T.Class(1) - T.Class(0), cache=False)
        cw.saliency(probe, images, target=T.Class(1) - T.Class(0))
    assert len(builds) == 2
    assert T.Class(1) - T.Class(0) == T.Class(1) - T.Class(0)


# ------------------------------------------------------------------ bad targets


@pytest.fixture
def no_model_pass(monkeypatch):
    """Any model pass (forward batch or a compiled gradient function) fails loudly."""

    def boom(*args, **kwargs):
        raise AssertionError("a model pass ran before the arguments were checked")

    monkeypatch.setattr(cw.Probe, "run", boom)
    monkeypatch.setattr(gradients, "traced_once", boom)


@pytest.mark.parametrize(
    "target, match",
    [
        (T.Output(5, T.Regression()), r"output 5 out of range.*\['cls', 'value'\]"),
        (T.Output("valeu", T.Regression()), r"no output 'valeu'.*closest: \['value'\]"),
        (T.Output("value", T.Regression(1)), "Regression index 1 out of range"),
        (T.Output("cls", T.Class(3)), "class 3 out of range"),
        (T.Output("cls", T.Class("cat")), "no names"),
        (T.Class(0), r"2 outputs.*Output\('cls', Class\(0\)\)"),
        (T.Output("value", T.Region(0, (0, 0, 2, 2))), "segmentation map"),
        (T.Output("cls", T.Labels(0)), "softmax"),
        (T.Output("value", T.Output(0, T.Class(0))), "inside another Output"),
        (lambda outs: outs[0], r"returned shape \(None, 3\)"),
    ],
)
def test_bad_targets_fail_before_any_model_pass(two_heads, images, no_model_pass, target, match):
    for call in (cw.gradcam, cw.saliency, cw.occlusion):
        with pytest.raises(ValueError, match=match):
            call(two_heads, images, target=target)


def test_bad_region_and_arguments_fail_before_any_model_pass(segmenter, images, no_model_pass):
    with pytest.raises(ValueError, match="mask is empty"):
        T.Region(0, np.zeros((16, 16), bool))
    with pytest.raises(ValueError, match="box .* is empty"):
        T.Region(0, (4, 4, 4, 8))
    with pytest.raises(ValueError, match=r"mask has shape \(8, 8\).*16x16"):
        cw.gradcam(segmenter, images, target=T.Region(0, np.ones((8, 8), bool)))
    with pytest.raises(ValueError, match="channel 3 out of range"):
        cw.saliency(segmenter, images, target=T.Region(3, (0, 0, 4, 4)))
    with pytest.raises(ValueError, match="reaches past"):
        cw.saliency(segmenter, images, target=T.Region(0, (0, 0, 4, 17)))
    with pytest.raises(TypeError, match="classes= or target=, not both"):
        cw.gradcam(segmenter, images, classes=0, target=T.Region(0, (0, 0, 4, 4)))
    with pytest.raises(ValueError, match="'cam' explains classes only"):
        cw.gradcam(segmenter, images, method="cam", target=T.Region(0, (0, 0, 4, 4)))
    with pytest.raises(TypeError, match=r"classes=3 or target=cw.targets.Class\(3\)"):
        cw.saliency(segmenter, images, target=3)
    with pytest.raises(ValueError, match="sign must be"):
        T.Regression(sign=2)


# -------------------------------------------------------------------- occlusion


def test_occlusion_with_a_regression_target_equals_a_plain_loop(images):
    model = regression_model()
    image = images[0]
    patch, stride = 6, 4
    got = cw.occlusion(
        cw.Probe(model, class_names=["low", "high"]),
        image,
        target=T.Regression(),
        patch=patch,
        stride=stride,
        fill="mean",
    )
    base = float(model(image[None], training=False)[0, 0])
    total = np.zeros((16, 16))
    count = np.zeros((16, 16))
    ys, xs = patch_positions(16, 16, patch, stride)
    for y in ys:
        for x in xs:
            hidden = occlude(image, int(x), int(y), patch, fill="mean")
            drop = base - float(model(hidden[None], training=False)[0, 0])
            total[y : y + patch, x : x + patch] += drop
            count[y : y + patch, x : x + patch] += 1
    assert got.shape == (1, 1, 16, 16)
    assert_close(got[0, 0], total / count)
    assert np.abs(got).max() > 0
