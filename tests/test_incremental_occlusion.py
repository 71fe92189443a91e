"""Incremental occlusion (cnnwidgets.probe.incremental) against plain passes.

The contract: the same maps as the batched engine within 1e-4. Each model is
also checked at the output layer against ``model.predict`` on the patched
images themselves (an independent reference), relative to how much the
outputs move between patches, so a model whose probabilities hardly change
cannot pass by accident. Patch grids always include border positions (the
last position is flush with the edge, and strides that do not divide)."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

import cnnwidgets as cw
from cnnwidgets.explain.occlusion import occlude, occlusion_progressive, patch_positions
from cnnwidgets.probe.incremental import IncrementalModel, NotIncremental, plan


def both_engines(probe, images, **kw):
    """(batched maps, incremental maps, engine reported by the incremental run)."""
    cw.cache.clear()
    plain = cw.occlusion(probe, images, engine="batched", **kw)
    cw.cache.clear()
    levels = list(occlusion_progressive(probe, images, engine="incremental", levels=1, **kw))
    cw.cache.clear()
    return plain, levels[-1].maps, levels[-1].engine


def patched_batch(image, patch, stride, fill="mean"):
    h, w = image.shape[:2]
    ys, xs = patch_positions(h, w, patch, stride)
    return np.stack([occlude(image, int(x), int(y), patch, fill) for y in ys for x in xs])


def assert_outputs_match(probe, image, patch, stride, fill="mean", rtol=1e-4):
    """IncrementalModel.outputs equals model.predict on every patched copy,
    relative to the spread of the outputs over the patches."""
    batch = patched_batch(image, patch, stride, fill)
    want = probe.model.predict(probe.model_inputs(batch), verbose=0, batch_size=64)
    model = IncrementalModel(probe, image, patch)
    got = np.concatenate([model.outputs(batch[i : i + 32]) for i in range(0, len(batch), 32)])
    spread = float(np.ptp(want, axis=0).max())
    assert spread > 0, "the patches do not change the output: the check would be empty"
    err = float(np.abs(got - want).max())
    assert err <= rtol * max(spread, float(np.abs(want).max())), (err, spread)


def calibrate_batchnorm(model, x):
    """Set every BatchNormalization's moving statistics to those of its input on
    the batch x (a randomly initialized deep net otherwise shrinks or blows up
    its activations). One eager walk through the layers in graph order, each
    BN calibrated before it runs. Changes this test's own model only."""
    probe = cw.Probe(model)
    values = {"input": np.asarray(x, np.float32)}
    for info in probe.layers:
        layer = probe.layer(info.name)
        args = [values[p] for p in info.parents]
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(args[0].mean(axis=(0, 1, 2)))
            layer.moving_variance.assign(args[0].var(axis=(0, 1, 2)) + 1e-3)
        if not isinstance(layer, keras.layers.Layer):  # a keras.ops node
            out = layer(*args)
        else:
            merge = len(args) > 1 or info.kind in ("Add", "Concatenate", "Multiply")
            out = layer(args if merge else args[0])
        values[info.name] = np.asarray(out)


# ------------------------------------------------------------ demo models


@pytest.mark.parametrize("name", ["shapes_cnn", "circle_vs_square"])
def test_demo_models_match_batched(name, shapes_images):
    model = cw.assets.demo_model(name)
    probe = cw.Probe(model, class_names=cw.assets.demo_class_names(name))
    # Low contrast keeps both models off saturation, so the maps are not all ~0.
    images = shapes_images[0][3:5] * 0.3 + 90
    classes = list(range(probe.num_classes))
    for patch, stride, fill in ((16, 8, "mean"), (12, 7, "blur"), (9, 9, 40.0)):
        plain, fast, engine = both_engines(
            probe, images, classes=classes, patch=patch, stride=stride, fill=fill
        )
        assert engine == "incremental"
        assert np.abs(plain).max() > 1e-3
        np.testing.assert_allclose(fast, plain, atol=1e-4)
    assert_outputs_match(probe, images[0], 12, 7)


def wide_cnn(middle=None) -> keras.Model:
    """96 px, 64-channel 3x3 convolutions: ~1 G multiply-adds per image, enough for
    'auto' to pick the incremental engine; ``middle`` (a layer) after the first."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((96, 96, 3))
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(inp)
    if middle is not None:
        x = middle(x)
    for _ in range(3):
        x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def test_auto_picks_incremental_where_it_pays_and_logs_it(caplog):
    probe = cw.Probe(wide_cnn())
    image = np.random.default_rng(3).uniform(0, 255, (96, 96, 3)).astype(np.float32)
    chosen = cw.occlusion_plan(probe, image, patch=16, stride=16)
    assert chosen.engine == "incremental" and chosen.speedup > 1.5, chosen
    assert "global_average_pooling2d" in chosen.full_from[0]  # global pooling runs whole
    cw.cache.clear()
    with caplog.at_level(logging.INFO, logger="cnnwidgets.occlusion"):
        levels = list(occlusion_progressive(probe, image, patch=16, stride=16, levels=1))
    assert levels[-1].engine == "incremental" and "incremental engine" in caplog.text
    # Few positions do not pay for the set-up: auto goes batched and says why.
    few = cw.occlusion_plan(probe, image, patch=48, stride=48)
    assert few.engine == "batched" and "set-up" in few.reason
    assert cw.occlusion_plan(probe, image, engine="batched").engine == "batched"
    with pytest.raises(ValueError, match="unknown engine"):
        cw.occlusion(probe, image, engine="fast")


def test_auto_keeps_small_models_batched(shapes_probe, shapes_images):
    # 40 M multiply-adds per image: one eager call per node costs more than it saves.
    chosen = cw.occlusion_plan(shapes_probe, shapes_images[0][3], patch=16, stride=8)
    assert chosen.engine == "batched" and "small" in chosen.reason
    assert chosen.speedup > 1  # it could run: it just would not pay
    levels = list(occlusion_progressive(shapes_probe, shapes_images[0][3], levels=1))
    assert levels[-1].engine in ("batched", "cached")


# ------------------------------------------------- geometry of every kind


def geometry_model(seed: int = 0) -> keras.Model:
    """Every window rule on an odd, non-square input: 'same' / 'valid', stride 2,
    dilation, asymmetric zero padding, cropping, depthwise and separable
    convolutions, max and average pooling ('same' averages count only real
    inputs), merges by layer and by operator, keras.ops nodes, rescaling and
    batch norms (alone, and after convolutions, where the engine folds them
    in), then global pooling and a linear head."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((29, 31, 3))
    x = L.Rescaling(1 / 127.5, offset=-1)(inp)
    a = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)  # 15 x 16
    b = L.Conv2D(8, 5, strides=2, padding="valid")(L.ZeroPadding2D(((1, 3), (2, 3)))(x))
    b = keras.ops.relu(b)  # 15 x 16
    m = a + b  # 15 x 16 (ops.Add)
    m = L.BatchNormalization()(m)
    c = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2)(m)  # 8 x 8
    c = L.BatchNormalization(scale=False)(c)  # folded into the depthwise kernel
    d = L.SeparableConv2D(16, 3, padding="same", dilation_rate=2, activation="tanh")(c)
    e = L.MaxPooling2D(3, strides=1, padding="same")(d)
    f = L.AveragePooling2D(3, strides=1, padding="same")(d)
    g = L.Concatenate()([e, f])
    g = L.Multiply()([g, L.Activation("sigmoid")(g)])
    g = L.Cropping2D(((1, 0), (0, 1)))(g)  # 7 x 7
    g = L.AveragePooling2D(2, padding="valid")(g)  # 3 x 3
    g = L.Conv2D(12, 2, padding="valid")(g)  # 2 x 2
    g = L.ReLU()(L.BatchNormalization(center=False)(g))  # folded into the convolution
    out = L.Dense(4)(L.GlobalAveragePooling2D()(g))
    return keras.Model(inp, out)


def test_every_window_rule_matches_the_model():
    model = geometry_model()
    image = np.random.default_rng(1).uniform(0, 255, (29, 31, 3)).astype(np.float32)
    calibrate_batchnorm(model, image[None] / 127.5 - 1)
    probe = cw.Probe(model)
    found = plan(probe, (29, 31), 5)
    assert found.speedup > 0, found.reason
    kinds = {i.kind for i in probe.layers}
    assert {"ops.Add", "ops.Relu", "DepthwiseConv2D", "SeparableConv2D"} <= kinds
    for patch, stride in ((5, 3), (2, 2), (7, 6)):
        assert_outputs_match(probe, image, patch, stride)
    plain, fast, engine = both_engines(probe, image, classes=[0, 1, 2, 3], patch=5, stride=3)
    assert engine == "incremental"
    np.testing.assert_allclose(fast, plain, atol=1e-4)


def test_whole_image_preprocess_and_batches_of_images(shapes_model, shapes_images):
    """A preprocess that is not pixel by pixel (per-image standardization) changes
    every pixel, so the engine runs whole maps and is still exact; several images
    and classes at once."""

    def standardize(x):
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        return (x - mean) / (x.std(axis=(1, 2, 3), keepdims=True) + 1e-3) * 60 + 120

    probe = cw.Probe(shapes_model, preprocess=standardize)
    images = shapes_images[0][:3]
    plain, fast, engine = both_engines(probe, images, classes=[0, 3], patch=16, stride=12)
    assert engine == "incremental"
    np.testing.assert_allclose(fast, plain, atol=1e-4)


# ------------------------------------------------------------ fallbacks


def test_unreplayable_node_falls_back_and_says_which():
    # x * 2.0: the catalog records the node with one input; its call cannot be replayed.
    keras.utils.set_random_seed(0)
    inp = keras.Input((20, 20, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = x * 2.0
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    probe = cw.Probe(keras.Model(inp, out))
    image = np.random.default_rng(0).uniform(0, 255, (20, 20, 3)).astype(np.float32)
    chosen = cw.occlusion_plan(probe, image, patch=4, stride=2)
    assert chosen.engine == "batched" and "ops.Multiply" in chosen.reason
    with pytest.raises(ValueError, match="ops.Multiply"):
        cw.occlusion(probe, image, patch=4, stride=2, engine="incremental")
    levels = list(occlusion_progressive(probe, image, patch=4, stride=2, levels=1))
    assert levels[-1].engine == "batched"


class ReLU(keras.layers.Layer):
    """Named like a pointwise layer, but subtracts the spatial mean: not pointwise."""

    def call(self, x):
        return keras.ops.relu(x - keras.ops.mean(x, axis=(1, 2), keepdims=True))


def test_self_check_catches_a_layer_that_is_not_what_its_kind_says(caplog):
    probe = cw.Probe(wide_cnn(middle=ReLU()))
    image = np.random.default_rng(0).uniform(0, 255, (96, 96, 3)).astype(np.float32)
    assert cw.occlusion_plan(probe, image, patch=16, stride=16).engine == "incremental"
    with pytest.raises(NotIncremental, match="re_lu.*on windows"):
        IncrementalModel(probe, image, 16)
    cw.cache.clear()
    with caplog.at_level(logging.INFO, logger="cnnwidgets.occlusion"):
        levels = list(occlusion_progressive(probe, image, patch=16, stride=16, levels=1))
    assert levels[-1].engine == "batched"
    assert "incremental engine unavailable" in caplog.text
    cw.cache.clear()
    np.testing.assert_allclose(
        levels[-1].maps, cw.occlusion(probe, image, patch=16, stride=16, engine="batched")
    )
    with pytest.raises(ValueError, match="re_lu"):
        cw.cache.clear()
        cw.occlusion(probe, image, patch=16, stride=16, engine="incremental")


def test_dense_on_a_map_and_global_pooling_run_whole():
    keras.utils.set_random_seed(0)
    inp = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Dense(5, activation="relu", name="per_pixel")(x)  # no window rule here
    x = keras.layers.Conv2D(6, 3, padding="same")(x)
    out = keras.layers.Dense(3)(keras.layers.GlobalMaxPooling2D()(x))
    probe = cw.Probe(keras.Model(inp, out))
    image = np.random.default_rng(2).uniform(0, 255, (24, 24, 3)).astype(np.float32)
    found = plan(probe, (24, 24), 4)
    assert found.full_from[0] == "per_pixel"
    assert_outputs_match(probe, image, 4, 3)


# ------------------------------------------------------- keras.applications


APPS = {
    "vgg16": ("VGG16", "vgg16", 32),
    "resnet50": ("ResNet50", "resnet50", 40),
    "mobilenetv2": ("MobileNetV2", "mobilenet_v2", 40),
}


@pytest.fixture(scope="module")
def photo():
    return cw.assets.photo("chelsea")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(APPS))
def test_applications_match_batched(name, photo):
    cls_name, module, size = APPS[name]
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, cls_name)(
        weights=None, input_shape=(size, size, 3), classes=5, classifier_activation=None
    )
    preprocess = getattr(keras.applications, module).preprocess_input
    image = cw.assets.resize(photo, (size, size)).astype(np.float32)
    others = np.random.default_rng(0).uniform(0, 255, (7, size, size, 3)).astype(np.float32)
    calibrate_batchnorm(model, preprocess(np.concatenate([image[None], others])))
    probe = cw.Probe(model, preprocess=preprocess)
    assert_outputs_match(probe, image, 8, 5)
    plain, fast, engine = both_engines(probe, image, classes=[0, 1, 2, 3, 4], patch=8, stride=5)
    assert engine == "incremental"
    assert np.abs(plain).max() > 1e-3
    np.testing.assert_allclose(fast, plain, atol=1e-4)
