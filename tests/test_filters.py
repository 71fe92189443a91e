"""Kernel weights and their pictures (cnnwidgets.explain.filters)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import cnnwidgets as cw
from cnnwidgets.explain.filters import filter_weights, kernel_layers, kernel_pictures, top_patches
from cnnwidgets.explain.receptive_field import receptive_field


def test_filter_weights_is_a_copy_of_the_kernel(shapes_model, shapes_probe):
    k = filter_weights(shapes_model, "block1_conv1")
    ref = shapes_model.get_layer("block1_conv1").kernel.numpy()
    assert k.shape == (3, 3, 3, 16) and k.dtype == np.float32
    np.testing.assert_array_equal(k, ref)
    k[...] = 0  # a copy: the model is untouched
    np.testing.assert_array_equal(shapes_model.get_layer("block1_conv1").kernel.numpy(), ref)
    assert cw.filter_weights is filter_weights
    assert filter_weights(shapes_probe, "block3_conv2").shape == (3, 3, 64, 64)


def test_first_layer_pictures_are_the_kernels_in_colour(shapes_probe):
    k = filter_weights(shapes_probe, "block1_conv1")
    pics = kernel_pictures(k)
    assert pics.shape == (16, 3, 3, 3) and pics.dtype == np.uint8
    m = np.abs(k).max()
    # Invert the symmetric mapping: every pixel is its weight, up to rounding.
    back = (pics.astype(np.float32) - 127.5) / 127.5 * m
    np.testing.assert_allclose(back, k.transpose(3, 0, 1, 2), atol=m / 127.5)
    zero = kernel_pictures(np.zeros((3, 3, 3, 2), np.float32))
    assert (zero == 128).all()


def test_deeper_layers_are_grey_tiles_per_input_channel(shapes_probe):
    k = filter_weights(shapes_probe, "block2_conv1")
    pics = kernel_pictures(k, scale="filter")
    assert pics.shape == (32, 16, 3, 3) and pics.dtype == np.uint8
    m = np.abs(k).max(axis=(0, 1, 2))  # per filter
    back = (pics.astype(np.float32) - 127.5) / 127.5 * m[:, None, None, None]
    np.testing.assert_allclose(back, k.transpose(3, 2, 0, 1), atol=m.max() / 127.5)
    assert pics.reshape(32, -1).max(axis=1).min() >= 254 or pics.min() <= 1
    with pytest.raises(ValueError, match="3 input channels"):
        kernel_pictures(k, rgb=True)


def test_layers_without_a_kernel_are_refused_with_the_conv_layers(shapes_probe):
    with pytest.raises(ValueError, match="block1_conv1"):
        filter_weights(shapes_probe, "block1_pool")
    with pytest.raises(ValueError, match="no 2-D convolution kernel"):
        filter_weights(shapes_probe, "predictions")
    with pytest.raises(ValueError, match="closest"):
        filter_weights(shapes_probe, "block1_cnv1")
    assert kernel_layers(shapes_probe)[0] == "block1_conv1"
    assert len(kernel_layers(shapes_probe)) == 6


def test_depthwise_and_separable_kernels():
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 3))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(inp)
    x = keras.layers.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")(x)
    x = keras.layers.Conv2DTranspose(2, 3, name="tr")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x))
    dw = filter_weights(model, "dw")
    assert dw.shape == (3, 3, 1, 6)
    # Output channel c * m + j applies kernel[..., c, j] to input channel c.
    x0 = np.random.default_rng(0).normal(size=(1, 12, 12, 3)).astype(np.float32)
    out = model.get_layer("dw")(x0).numpy()
    ref = (x0[0, 0:3, 0:3, 1] * dw[:, :, 0, 1 * 2 + 1]).sum() + model.get_layer("dw").bias[3]
    np.testing.assert_allclose(out[0, 0, 0, 3], ref, rtol=1e-4, atol=1e-5)
    # The separable layer equals one convolution with the combined kernel.
    sep = filter_weights(model, "sep")
    assert sep.shape == (3, 3, 6, 5)
    x1 = np.random.default_rng(1).normal(size=(1, 5, 5, 6)).astype(np.float32)
    got = model.get_layer("sep")(x1).numpy()[0, 0, 0]
    ref = np.einsum("hwc,hwco->o", x1[0, :3, :3], sep) + model.get_layer("sep").bias.numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="transposed"):
        filter_weights(model, "tr")


def test_top_patches_are_crops_around_the_strongest_unit(shapes_probe, shapes_images):
    images = shapes_images[0]
    crops, values, boxes = top_patches(shapes_probe, "block2_conv1", images, 3, k=4)
    assert crops.dtype == np.uint8 and crops.shape[0] == 4 and crops.shape[-1] == 3
    assert (np.diff(values) <= 0).all()
    act = shapes_probe.activations(images, "block2_conv1")["block2_conv1"][..., 3]
    assert values[0] == pytest.approx(act.max())
    t, l, b, r = boxes[0]
    assert 0 <= t < b <= 64 and 0 <= l < r <= 64


def test_top_patches_fall_back_where_the_receptive_field_is_not_defined():
    """After an UpSampling2D a unit has no receptive field (receptive_field raises
    ValueError): top_patches still crops, around the input pixels under the unit
    (one unit = input size / map size pixels, three such cells wide)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.UpSampling2D(2)(x)  # 32 x 32: half a pixel per unit
    x = keras.layers.Conv2D(5, 3, padding="same", name="after_up")(x)
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    probe = cw.Probe(keras.Model(inp, out))
    with pytest.raises(ValueError, match="not defined"):
        receptive_field(probe, "after_up")
    images = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    crops, values, boxes = top_patches(probe, "after_up", images, 2, k=3)
    assert crops.shape == (3, 8, 8, 3) and crops.dtype == np.uint8
    act = probe.activations(images, "after_up")["after_up"][..., 2]  # (3, 32, 32)
    for i, (t, l, b, r) in zip(np.argsort(-act.reshape(3, -1).max(axis=1)), boxes):
        y, x_ = np.unravel_index(act[i].argmax(), act[i].shape)
        assert 0 <= t <= y // 2 < b <= 16 and 0 <= l <= x_ // 2 < r <= 16
