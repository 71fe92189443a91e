"""Receptive fields: hand-computed values and the gradient support of single units."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_models import random_images

import cnnwidgets as cw
from cnnwidgets.explain.receptive_field import (
    INPUT_FIELD,
    ReceptiveField,
    conv_step,
    receptive_fields,
    unit_box,
)

L = keras.layers


def _seq(size, *layers, name="stack"):
    inp = keras.Input((size, size, 3))
    x = inp
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x, name=name)


def _gradient_box(model, path, i, j, x):
    """Bounding box (top, left, bottom, right) of the input pixels whose gradient
    on unit (i, j) of ``path`` (its most active channel) is non-zero; plain GradientTape."""
    probe = cw.Probe(model)
    sub = probe.submodel([path])
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = sub(xt, training=False)
        unit = out[0, i, j, int(tf.argmax(out[0, i, j]))]
    g = np.abs(tape.gradient(unit, xt).numpy()[0]).sum(axis=-1)
    ys, xs = np.nonzero(g > 0)
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


# ------------------------------------------------------------------ hand values


def test_vgg16_block5_conv3_is_196_pixels():
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(224, 224, 3))
    rf = cw.receptive_field(vgg, "block5_conv3")
    assert isinstance(rf, ReceptiveField)
    assert rf.size == (196, 196) and rf.jump == (16, 16) and rf.start == (7.5, 7.5)
    assert cw.receptive_field(vgg, "block1_conv1").size == (3, 3)
    assert cw.receptive_field(vgg, "block1_pool").size == (6, 6)
    assert cw.receptive_field(vgg, "block3_conv3").size == (40, 40)
    assert cw.receptive_field(vgg, "block5_pool").size == (212, 212)
    assert str(rf) == "196 px (jump 16)"


def test_demo_model_fields(shapes_probe):
    want = {
        "rescale": (1, 1, 0.0),
        "block1_conv1": (3, 1, 0.0),
        "block1_conv2": (5, 1, 0.0),
        "block1_pool": (6, 2, 0.5),
        "block2_conv2": (14, 2, 0.5),
        "block2_pool": (16, 4, 1.5),
        "block3_conv2": (32, 4, 1.5),
    }
    fields = receptive_fields(shapes_probe)
    for name, (size, jump, start) in want.items():
        rf = fields[name]
        assert rf.size == (size, size) and rf.jump == (jump, jump), name
        assert rf.start == (start, start), name
    # One GAP unit sees every block3 unit: 32 + 15 * 4 = 92 px.
    assert fields["gap"].size == (92, 92)
    assert fields["predictions"] == fields["gap"]


@pytest.mark.parametrize(
    "layers, size, jump, start",
    [
        # 3x3 valid twice: 1 + 2 + 2 = 5, centred on pixel 2.
        ([L.Conv2D(1, 3), L.Conv2D(1, 3)], 5, 1, 2.0),
        # 3x3 stride 2 valid then 3x3: 3 + 2 * 2 = 7.
        ([L.Conv2D(1, 3, strides=2), L.Conv2D(1, 3)], 7, 2, 3.0),
        # dilation 2: effective 5x5.
        ([L.Conv2D(1, 3, dilation_rate=2)], 5, 1, 2.0),
        # 2x2 pool, 3x3 conv: 2 + 2 * 2 = 6, jump 2.
        ([L.MaxPooling2D(2), L.Conv2D(1, 3)], 6, 2, 2.5),
        # 'same' 3x3 pads one pixel before: unit 0 is centred on pixel 0.
        ([L.Conv2D(1, 3, padding="same"), L.Conv2D(1, 3, padding="same")], 5, 1, 0.0),
        # 'same' 3x3 stride 2 on an even input pads 0 before and 1 after (TensorFlow).
        ([L.Conv2D(1, 3, strides=2, padding="same")], 3, 2, 1.0),
        # 7x7 stride 2 'same' on 16 px: total pad 5, 2 before (ResNet stem).
        ([L.Conv2D(1, 7, strides=2, padding="same")], 7, 2, 1.0),
        # Zero padding moves unit 0 up-left; cropping moves it down-right.
        ([L.ZeroPadding2D(2), L.Conv2D(1, 3)], 3, 1, -1.0),
        ([L.Cropping2D(3), L.Conv2D(1, 3)], 3, 1, 4.0),
        # Depthwise and separable convolutions slide windows like Conv2D.
        ([L.DepthwiseConv2D(5), L.SeparableConv2D(2, 3, strides=2)], 7, 2, 3.0),
        # Identity layers change nothing.
        (
            [L.Rescaling(0.5), L.Conv2D(1, 3), L.BatchNormalization(), L.ReLU(), L.Dropout(0.5)],
            3,
            1,
            1.0,
        ),
    ],
)
def test_small_stacks(layers, size, jump, start):
    model = _seq(16, *layers)
    rf = cw.receptive_field(model, model.layers[-1].name)
    assert rf.size == (size, size)
    assert rf.jump == (jump, jump)
    assert rf.start == (start, start)


def test_rectangular_kernels_hw():
    model = _seq(16, L.Conv2D(1, (3, 5), strides=(1, 2), name="c"), L.Conv2D(1, 3, name="d"))
    rf = cw.receptive_field(model, "d")
    assert rf.size == (5, 9)
    assert rf.jump == (1, 2)
    assert not rf.is_square
    assert str(rf) == "5x9 px (jump 1x2)"


def test_conv_step_is_the_textbook_recurrence():
    rf = conv_step(INPUT_FIELD, (3, 3), (2, 2))
    assert rf == ReceptiveField((3, 3), (2, 2), (1.0, 1.0))
    rf = conv_step(rf, (3, 3), (1, 1), (2, 2), (2, 2))  # dilated 'same'
    assert rf.size == (3 + 4 * 2, 3 + 4 * 2) and rf.start == (1.0, 1.0)


def test_nested_model_and_container():
    inner = keras.Sequential(
        [keras.Input((14, 14, 4)), L.Conv2D(4, 3, name="a"), L.MaxPooling2D(name="mp")],
        name="inner",
    )
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(4, 3, name="c0")(inp)
    x = inner(x)
    x = L.Conv2D(2, 3, name="after")(x)
    out = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    probe = cw.Probe(model)
    assert cw.receptive_field(probe, "inner/a").size == (5, 5)
    assert cw.receptive_field(probe, "mp").size == (6, 6)  # short names resolve
    # The nested model's own row carries the field of its output layer.
    assert cw.receptive_field(probe, "inner") == cw.receptive_field(probe, "inner/mp")
    assert cw.receptive_field(probe, "after").size == (6 + 2 * 2, 6 + 2 * 2)


def test_residual_merge_takes_the_union():
    inp = keras.Input((16, 16, 3))
    a = L.Conv2D(3, 3, padding="same", name="a1")(inp)
    a = L.Conv2D(3, 3, padding="same", name="a2")(a)
    merged = L.Add(name="add")([a, inp])  # identity shortcut
    model = keras.Model(inp, merged)
    rf = cw.receptive_field(model, "add")
    assert rf.size == (5, 5) and rf.jump == (1, 1) and rf.start == (0.0, 0.0)

    # A downsampling block: 3x3/2 + 3x3 on the main path, 1x1/2 on the shortcut.
    x = L.Conv2D(4, 3, strides=2, padding="same", name="m1")(inp)
    x = L.Conv2D(4, 3, padding="same", name="m2")(x)
    s = L.Conv2D(4, 1, strides=2, name="short")(inp)
    y = L.Concatenate(name="cat")([x, s])
    rf = cw.receptive_field(keras.Model(inp, y), "cat")
    # main path: pixels -2..4 around unit 0 (centre 1); shortcut: pixel 0 only.
    assert rf.size == (7, 7) and rf.jump == (2, 2) and rf.start == (1.0, 1.0)


def test_unit_box_clips_to_the_image():
    rf = ReceptiveField((32, 32), (4, 4), (1.5, 1.5))
    assert unit_box(rf, 0, 0, (64, 64)) == (0, 0, 18, 18)
    assert unit_box(rf, 8, 8, (64, 64)) == (18, 18, 50, 50)
    assert unit_box(rf, 15, 15, (64, 64)) == (46, 46, 64, 64)
    assert unit_box(INPUT_FIELD, 3, 5, (8, 8)) == (3, 5, 4, 6)
    rect = ReceptiveField((3, 5), (1, 2), (1.0, 2.0))
    assert unit_box(rect, 2, 1, (16, 16)) == (2, 2, 5, 7)


def test_bad_layers_say_what_is_wrong():
    model = _seq(16, L.Conv2D(1, 3, name="c"), L.UpSampling2D(name="up"), L.Conv2D(1, 3, name="d"))
    assert cw.receptive_field(model, "c").size == (3, 3)
    with pytest.raises(ValueError, match="UpSampling2D"):
        cw.receptive_field(model, "d")
    with pytest.raises(ValueError, match="closest"):
        cw.receptive_field(model, "cc")


def test_model_is_not_changed(shapes_model, shapes_images):
    before = shapes_model.predict_on_batch(shapes_images[0][:2].astype("float32"))
    json_before = shapes_model.to_json()
    receptive_fields(shapes_model)
    assert shapes_model.to_json() == json_before
    after = shapes_model.predict_on_batch(shapes_images[0][:2].astype("float32"))
    np.testing.assert_array_equal(before, after)


# ------------------------------------------------------------------ empirical


def _linear_zoo():
    """A linear (no ReLU, average pooling) graph with every rule in it, so a unit's
    input gradient is non-zero on exactly its whole field."""
    keras.utils.set_random_seed(7)
    init = keras.initializers.RandomUniform(0.1, 1.0)
    conv = dict(kernel_initializer=init, bias_initializer="zeros")
    inp = keras.Input((40, 40, 3))
    x = L.Conv2D(2, 3, padding="same", name="c1", **conv)(inp)
    x = L.Conv2D(2, 3, strides=2, padding="same", name="c2", **conv)(x)  # asymmetric pad
    x = L.ZeroPadding2D(((1, 0), (2, 1)), name="zp")(x)
    x = L.AveragePooling2D(2, name="pool")(x)
    x = L.Conv2D(2, 3, dilation_rate=2, padding="same", name="dil", **conv)(x)
    x = L.Cropping2D(((1, 0), (0, 1)), name="crop")(x)
    y = L.Conv2D(2, (3, 1), padding="same", name="tall", **conv)(x)
    z = L.Conv2D(2, 1, name="one", **conv)(x)
    out = L.Add(name="add")([y, z])
    return keras.Model(inp, out)


@pytest.mark.parametrize(
    "layer, i, j", [("c1", 5, 7), ("c2", 0, 0), ("c2", 6, 3), ("pool", 4, 5), ("add", 3, 4)]
)
def test_gradient_is_zero_outside_the_field(layer, i, j):
    model = _linear_zoo()
    x = random_images(1, 40, seed=0, high=1.0)
    rf = cw.receptive_field(model, layer)
    box = unit_box(rf, i, j, (40, 40))
    assert _gradient_box(model, layer, i, j, x) == box


def test_demo_model_gradient_support_inside_field(shapes_model, shapes_images):
    x = shapes_images[0][:1].astype("float32")
    rf = cw.receptive_field(shapes_model, "block3_conv2")
    for i, j in [(0, 0), (7, 9), (15, 15)]:
        top, left, bottom, right = _gradient_box(shapes_model, "block3_conv2", i, j, x)
        bt, bl, bb, br = unit_box(rf, i, j, (64, 64))
        assert bt <= top and bl <= left and bottom <= bb and right <= br
