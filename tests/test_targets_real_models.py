"""Targets on real model kinds, random weights, small sizes, nothing downloaded:
keras_hub's RetinaNetObjectDetector (raw per-anchor outputs, before decoding
and NMS), DeepLabV3ImageSegmenter (softmax) and a multi-label (sigmoid)
ResNetImageClassifier, all on ResNet backbones built from a config; a user
model with two named outputs and a one-unit regression model.

Each target is checked on each method family against the same score written
the plainest way: Grad-CAM and saliency against a tf.GradientTape over the
model's own layers (the detector's graph re-composed by hand), occlusion
against a plain loop over the patch positions. Every model is built once.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from references import assert_close, reference_gradcam, tape_input_grads

import cnnwidgets as cw
from cnnwidgets.explain.cam import channel_weights
from cnnwidgets.explain.occlusion import occlude, patch_positions
from cnnwidgets.explain.saliency import attributions

keras_hub = pytest.importorskip("keras_hub")

L = keras.layers
T = cw.targets
SIZE = 32




def resnet(seed):
    """The smallest ResNet keras_hub allows (64 stem filters), from a config."""
    keras.utils.set_random_seed(seed)
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16, 16, 16],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=(SIZE, SIZE, 3),
    )


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).uniform(0, 1, (2, SIZE, SIZE, 3)).astype(np.float32)


# ------------------------------------------------------------------ references


def output_layer(model):
    """The name of the inner layer that produces a nested model's output."""
    return next(layer.name for layer in model.layers if layer.output is model.output)






def check_gradcam(model_or_probe, images, target, layer, acts, grads):
    """cnnwidgets' channel weights and raw map equal the tape's, at ``layer``."""
    weights = channel_weights(model_or_probe, images, layer=layer, target=target)
    assert_close(weights[:, 0], grads.mean(axis=(1, 2)))
    assert np.abs(weights).max() > 0
    got = cw.gradcam(
        model_or_probe, images, target=target, layer=layer, resize=False, normalize=None
    )
    return assert_close(got[:, 0], reference_gradcam(acts, grads))


def loop_occlusion(score_fn, image, patch, stride):
    """(H, W) mean over covering patches of score(image) - score(patched image)."""
    h, w = image.shape[:2]
    base = float(score_fn(image[None])[0])
    total, count = np.zeros((h, w)), np.zeros((h, w))
    ys, xs = patch_positions(h, w, patch, stride)
    for y in ys:
        for x in xs:
            hidden = occlude(image, int(x), int(y), patch, fill="mean")
            total[y : y + patch, x : x + patch] += base - float(score_fn(hidden[None])[0])
            count[y : y + patch, x : x + patch] += 1
    return total / count


# -------------------------------------------------------------------- detector


@pytest.fixture(scope="module")
def detector():
    """RetinaNet: 2 pyramid levels, 9 anchors per place, 3 classes, 180 anchors at 32 px.

    The box head's last bias starts at the class prior (-4.6) in keras_hub, which
    puts every decoded box far off its anchor; it is zeroed here so that decoded
    boxes lie near their anchors, as in a trained detector."""
    enc = resnet(0)
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=enc, min_level=3, max_level=4, use_p5=False, image_shape=(SIZE, SIZE, 3)
    )
    det = keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=3, pre_logits_num_conv_layers=1
    )
    bias = det.box_head.weights[-1]
    assert bias.path.endswith("logits_layer/bias")
    bias.assign(np.zeros(bias.shape, np.float32))
    return det


def hub_anchors(det):
    """(A, 4) yxyx anchors as keras_hub's own decoder builds them."""
    levels = det.anchor_generator(np.zeros((1, SIZE, SIZE, 3), np.float32))
    return np.concatenate([np.asarray(v) for v in levels.values()], axis=0)


def numpy_iou(boxes, box):
    y0 = np.maximum(boxes[..., 0], box[0])
    x0 = np.maximum(boxes[..., 1], box[1])
    y1 = np.minimum(boxes[..., 2], box[2])
    x1 = np.minimum(boxes[..., 3], box[3])
    inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return inter / (area + (box[2] - box[0]) * (box[3] - box[1]) - inter)


def detector_parts(det, x, watch=None):
    """The detector re-composed from its own layers: P3 features and the raw
    outputs, so a tape can watch the P3 map (the Grad-CAM layer)."""
    bb = det.backbone
    feats = bb.get_layer("backbone")(x)
    if watch is not None:
        watch(feats["P3"])
    pyramid = bb.get_layer("fpn")(feats)
    cls = [
        tf.reshape(det.classification_head(pyramid[k]), (len(x), -1, 3)) for k in ("P3", "P4")
    ]
    box = [tf.reshape(det.box_head(pyramid[k]), (len(x), -1, 4)) for k in ("P3", "P4")]
    return feats["P3"], tf.concat(box, axis=1), tf.concat(cls, axis=1)


BOX = (2.0, 4.0, 30.0, 28.0)


def test_detector_box_on_anchors_gradcam_saliency_occlusion(detector, images):
    det = detector
    probe = cw.Probe(det)
    assert probe.output_names == ["bbox_regression", "cls_logits"]
    target = T.Box(BOX, 2)
    matched = numpy_iou(hub_anchors(det), BOX) >= 0.5
    assert 0 < matched.sum() < len(matched)
    np.testing.assert_array_equal(target.matched(probe), matched)

    def score(x):
        return tf.reduce_mean(tf.boolean_mask(det(x)["cls_logits"][:, :, 2], matched, axis=1), 1)

    # Grad-CAM at the backbone's P3 map, by a tape over the re-composed graph.
    with tf.GradientTape() as tape:
        acts, _, cls = detector_parts(det, tf.constant(images), watch=tape.watch)
        s = tf.reduce_mean(tf.boolean_mask(cls[:, :, 2], matched, axis=1), 1)
    grads = tape.gradient(s, acts).numpy()
    assert_close(s, score(images))
    check_gradcam(probe, images, target, _p3_path(probe), acts.numpy(), grads)
    # Saliency: the input gradient.
    assert_close(attributions(probe, images, target=target)[:, 0], tape_input_grads(score, images))
    # Occlusion: batched (two outputs), against a plain loop.
    got = cw.occlusion(probe, images[:1], target=target, patch=16, stride=16)
    assert_close(got[0, 0], loop_occlusion(lambda x: score(x).numpy(), images[0], 16, 16))


def _p3_path(probe):
    """The catalog path of the feature extractor's P3 map (4x4 at 32 px)."""
    paths = [
        i.name
        for i in probe.layers
        if i.name.startswith("retina_net_backbone/backbone/")
        and i.output_shape[1:3] == (SIZE // 8, SIZE // 8)
    ]
    return paths[-1]


def test_detector_box_on_decoded_boxes_matches_keras_decoding(detector, images):
    det = detector
    out = det(images)
    # The box of the strongest class-0 anchor of image 0, decoded as keras_hub does:
    # what the detector reports for it before NMS.
    decoded = keras.utils.bounding_boxes.decode_deltas_to_boxes(
        anchors=hub_anchors(det),
        boxes_delta=out["bbox_regression"],
        anchor_format="yxyx",
        box_format="yxyx",
        encoded_format="center_xywh",
        image_shape=(SIZE, SIZE, 3),
    )
    decoded = np.asarray(decoded)
    best = int(np.asarray(out["cls_logits"])[0, :, 0].argmax())
    box = tuple(float(v) for v in decoded[0, best])
    target = T.Box(box, 0, match="decoded")
    mask = (numpy_iou(decoded, box) >= 0.5).astype(np.float32)  # (N, A)
    assert mask[0, best] == 1 and mask.sum() > 1
    scores = cw.Probe(det).target_scores(images, target)[:, 0]
    logits = np.asarray(out["cls_logits"])[:, :, 0]
    want = (logits * mask).sum(1) / np.maximum(mask.sum(1), 1)
    assert_close(scores, want)

    def score(x):  # the match held constant, as the target's gradient does
        return tf.reduce_sum(det(x)["cls_logits"][:, :, 0] * mask, 1) / np.maximum(mask.sum(1), 1)

    got = attributions(det, images, target=target)[:, 0]
    assert_close(got, tape_input_grads(score, images))


def test_box_checks_before_any_model_pass(detector, images, monkeypatch):
    probe = cw.Probe(detector)
    monkeypatch.setattr(cw.Probe, "run", lambda *a, **k: pytest.fail("a model pass ran"))
    with pytest.raises(ValueError, match="class 3 out of range.*3 classes"):
        cw.gradcam(probe, images, target=T.Box(BOX, 3))
    with pytest.raises(ValueError, match=r"no anchor matches box.*IoU >= 0.5.*lower iou="):
        cw.saliency(probe, images, target=T.Box((0, 0, 2, 2), 0))
    with pytest.raises(ValueError, match="outside the 32x32 input"):
        cw.occlusion(probe, images, target=T.Box((40, 40, 50, 50), 0))
    with pytest.raises(ValueError, match="176 anchors.*has 180"):
        cw.saliency(probe, images, target=T.Box(BOX, 0, anchors=hub_anchors(detector)[:176]))
    with pytest.raises(ValueError, match="inside.*Output|not inside Output"):
        cw.saliency(probe, images, target=T.Output("cls_logits", T.Box(BOX, 0)))
    with pytest.raises(ValueError, match="is empty"):
        T.Box((5, 5, 5, 9), 0)
    with pytest.raises(ValueError, match="match must be one of"):
        T.Box(BOX, 0, match="nms")


def test_box_on_a_plain_user_model_with_its_own_anchors(images):
    """A user detector: (A, 4) boxes straight out (decode = identity) and
    (A, C) sigmoid scores, anchors given; the score is read on logits."""
    keras.utils.set_random_seed(5)
    inp = keras.Input((SIZE, SIZE, 3))
    f = L.Conv2D(8, 3, strides=8, padding="same", activation="relu", name="feat")(inp)  # 4x4
    boxes = L.Reshape((16, 4), name="boxes")(L.Conv2D(4, 1, name="box_conv")(f))
    scores = L.Reshape((16, 2), name="scores")(L.Conv2D(2, 1, name="cls_conv")(f))
    scores = L.Activation("sigmoid", name="probs")(scores)
    model = keras.Model(inp, [boxes, scores], name="user_detector")
    ys, xs = np.meshgrid(np.arange(4) * 8.0, np.arange(4) * 8.0, indexing="ij")
    anchors = np.stack([ys, xs, ys + 16, xs + 16], -1).reshape(16, 4).astype(np.float32)
    target = T.Box((0, 0, 16, 16), 1, anchors=anchors)
    matched = numpy_iou(anchors, (0, 0, 16, 16)) >= 0.5
    pre = keras.Model(inp, model.get_layer("scores").output)

    def score(x):  # the logits: the sigmoid's input
        return tf.reduce_mean(tf.boolean_mask(pre(x)[:, :, 1], matched, axis=1), 1)

    assert_close(attributions(model, images, target=target)[:, 0], tape_input_grads(score, images))
    decoded = T.Box((0, 0, 16, 16), 1, anchors=anchors, match="decoded", decode=lambda a, d: d)
    assert cw.Probe(model).target_scores(images, decoded).shape == (2, 1)


# ---------------------------------------------------------------- segmentation


@pytest.fixture(scope="module")
def segmenter():
    """DeepLabV3 (ASPP on P4, x8 upsampling) with a softmax over 3 classes."""
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=resnet(1),
        spatial_pyramid_pooling_key="P4",
        upsampling_size=8,
        dilation_rates=[1, 2],
        image_shape=(SIZE, SIZE, 3),
    )
    return keras_hub.models.DeepLabV3ImageSegmenter(
        backbone=backbone, num_classes=3, activation="softmax"
    )


def test_segmentation_region_gradcam_saliency_occlusion(segmenter, images):
    seg = segmenter
    head = seg.get_layer("segmentation_output")
    assert not head.use_bias
    bb_name = seg.layers[1].name
    features = keras.Model(seg.inputs, seg.get_layer(bb_name).output)
    # Inference references call the model with training=False: keras_hub's ASPP
    # layer has no `training` argument, so an eager seg(x) runs its batch norms in
    # training mode (batch statistics, and it moves their averages).
    np.testing.assert_array_equal(cw.Probe(seg).outputs(images)[0], seg.predict(images, verbose=0))
    pred = np.asarray(seg(images[:1], training=False))[0]
    mask = T.region_mask(pred, 10, 12)
    cls = int(pred[10, 12].argmax())
    target = T.Region(cls, mask)
    weights = tf.constant(mask / mask.sum(), tf.float32)

    def from_features(f):  # the softmax's input: the 1x1 convolution by hand
        logits = tf.nn.conv2d(f, head.kernel, 1, "VALID")
        return tf.reduce_sum(logits[..., cls] * weights, axis=(1, 2))

    probe = cw.Probe(seg)
    with tf.GradientTape() as tape:
        acts = features(tf.constant(images), training=False)
        tape.watch(acts)
        s = from_features(acts)
    grads = tape.gradient(s, acts).numpy()
    layer = f"{bb_name}/{output_layer(seg.get_layer(bb_name))}"
    check_gradcam(probe, images, target, layer, acts.numpy(), grads)

    def score(x):
        return from_features(features(x, training=False))

    assert_close(probe.target_scores(images, target)[:, 0], score(images))
    assert_close(attributions(probe, images, target=target)[:, 0], tape_input_grads(score, images))
    got = cw.occlusion(probe, images[:1], target=target, patch=16, stride=16)
    assert_close(got[0, 0], loop_occlusion(lambda x: score(x).numpy(), images[0], 16, 16))


# ------------------------------------------------------------------ multi-label


@pytest.fixture(scope="module")
def multilabel():
    return keras_hub.models.ResNetImageClassifier(
        backbone=resnet(2), num_classes=4, activation="sigmoid"
    )


def test_multilabel_labels_gradcam_saliency_occlusion(multilabel, images):
    clf = multilabel
    probe = cw.Probe(clf, class_names=["a", "b", "c", "d"])
    assert probe.head.kind == "sigmoid"
    bb_name = clf.backbone.name
    features = keras.Model(clf.inputs, clf.get_layer(bb_name).output)
    dense = clf.output_dense

    def from_features(f):  # pooling and the Dense by hand, before the sigmoid
        return (tf.matmul(tf.reduce_mean(f, axis=(1, 2)), dense.kernel) + dense.bias)[:, 2]

    with tf.GradientTape() as tape:
        acts = features(tf.constant(images), training=False)
        tape.watch(acts)
        s = from_features(acts)
    grads = tape.gradient(s, acts).numpy()
    layer = f"{bb_name}/{output_layer(clf.backbone)}"
    target = T.Labels("c")
    check_gradcam(probe, images, target, layer, acts.numpy(), grads)

    def score(x):
        return from_features(features(x, training=False))

    assert_close(attributions(probe, images, target=target)[:, 0], tape_input_grads(score, images))
    got = cw.occlusion(probe, images[:1], target=target, patch=16, stride=16)
    assert_close(got[0, 0], loop_occlusion(lambda x: score(x).numpy(), images[0], 16, 16))


# ------------------------------------------------------- user models: two heads


@pytest.fixture(scope="module")
def two_heads():
    """Named outputs: 'cls' Dense(3, softmax) and 'value' Dense(1)."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((SIZE, SIZE, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inp)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    a = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(
        inp, [L.Dense(3, activation="softmax", name="cls")(a), L.Dense(1, name="value")(a)]
    )


def test_two_named_outputs_gradcam_saliency_occlusion(two_heads, images):
    model = two_heads
    cls_layer = model.get_layer("cls")
    sub = keras.Model(model.inputs, [model.get_layer("conv2").output, model.outputs])
    target = T.Output("value", T.Regression(sign=-1))
    with tf.GradientTape() as tape:
        acts, (_, value) = sub(tf.constant(images))
        tape.watch(acts)
        s = -value[:, 0]
    check_gradcam(model, images, target, "conv2", acts.numpy(), tape.gradient(s, acts).numpy())
    gap = keras.Model(model.inputs, model.get_layer("gap").output)

    def logit1(x):
        return (tf.matmul(gap(x), cls_layer.kernel) + cls_layer.bias)[:, 1]

    got = attributions(model, images, target=T.Output("cls", T.Class(1)))[:, 0]
    assert_close(got, tape_input_grads(logit1, images))
    occ = cw.occlusion(model, images[:1], target=target, patch=16, stride=8)
    want = loop_occlusion(lambda x: -model(x)[1].numpy()[:, 0], images[0], 16, 8)
    assert_close(occ[0, 0], want)


# ------------------------------------------------------ user models: regression


@pytest.fixture(scope="module")
def regressor():
    """conv-pool-conv-GAP-Dense(1): one linear unit."""
    keras.utils.set_random_seed(6)
    inp = keras.Input((SIZE, SIZE, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inp)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(1, name="value")(x), name="regressor")


def test_regression_gradcam_saliency_and_incremental_occlusion(regressor, images):
    model = regressor
    probe = cw.Probe(model, class_names=["low", "high"])
    sub = keras.Model(model.inputs, [model.get_layer("conv2").output, model.output])
    with tf.GradientTape() as tape:
        acts, value = sub(tf.constant(images))
        tape.watch(acts)
        s = value[:, 0]
    grads = tape.gradient(s, acts).numpy()
    check_gradcam(probe, images, T.Regression(), "conv2", acts.numpy(), grads)

    def score(x):
        return model(x)[:, 0]

    grads = attributions(probe, images, target=T.Regression())[:, 0]
    assert_close(grads, tape_input_grads(score, images))
    want = loop_occlusion(lambda x: score(x).numpy(), images[0], 8, 4)
    for engine in ("incremental", "batched"):
        got = cw.occlusion(
            cw.Probe(model), images[:1], target=T.Regression(), patch=8, stride=4, engine=engine
        )
        assert_close(got[0, 0], want)


# ------------------------------------------------------------------ widgets


def test_comparator_on_deeplab_offers_regions_and_a_click_picks_one(segmenter, images):
    """The widget on keras_hub's segmenter: its regions are the predicted classes, a
    click picks the connected region, and the panel's map is cw.gradcam's."""
    image = images[0]
    w = cw.GradCAMComparator(segmenter, image, methods=("gradcam",))
    pred = segmenter.predict(image[None], verbose=0)[0].argmax(-1)
    assert sorted(c.target.cls for c in w.choices) == sorted(np.unique(pred))
    picked = w.click(10, 12)
    w.wait()
    np.testing.assert_array_equal(picked.mask, T.region_mask(pred, 10, 12))
    want = cw.gradcam(segmenter, image, target=picked.target, layer=w.layer.value, normalize=None)
    assert_close(w.raw_map("gradcam"), np.maximum(want[0, 0], 0))
    w.close()


def test_comparator_and_scrubber_follow_a_box_of_retinanet(detector, images):
    image, target = images[0], T.Box(BOX, 2)
    w = cw.GradCAMComparator(detector, image, targets=[target], methods=("vanilla",))
    w.wait()
    # The widget's wiring: its map is cw.saliency's (itself checked against a tape above).
    want = cw.saliency(detector, image, target=target, method="vanilla", normalize=None)
    assert_close(w.raw_map("vanilla"), want[0, 0])
    w.close()
    s = cw.OcclusionScrubber(detector, image, targets=target, patch=16, stride=16)
    s.move(0, 0)
    s.wait()
    scores = cw.Probe(detector).target_scores
    hidden = occlude(image, 0, 0, 16, "mean")
    drop = scores(image[None], target)[0, 0] - scores(hidden[None], target)[0, 0]
    assert s.drop == pytest.approx(float(drop), abs=1e-5)
    s.close()
