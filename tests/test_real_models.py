"""Probe and the methods on the models people actually have: one model of
every keras.applications family (weights=None, small inputs), Keras 3 graphs
with keras.ops and operator nodes, and legacy HDF5 files with a list output."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from tiny_models import random_images

import cnnwidgets as cw

APPLICATIONS = [
    ("VGG16", 32),
    ("ResNet50", 32),
    ("ResNet50V2", 32),
    ("InceptionV3", 75),
    ("InceptionResNetV2", 75),
    ("Xception", 71),
    ("MobileNet", 32),
    ("MobileNetV2", 32),
    ("MobileNetV3Small", 32),
    ("DenseNet121", 32),
    ("NASNetMobile", 32),
    ("EfficientNetB0", 32),
    ("EfficientNetV2B0", 32),
    ("ConvNeXtTiny", 32),
]


#: Families whose graphs branch and merge, with the layer kinds that show it.
MULTI_BRANCH = {
    "MobileNetV2": {"DepthwiseConv2D", "Add"},
    "ResNet50": {"BatchNormalization", "Add"},
    "Xception": {"SeparableConv2D", "Add"},
}


def _application(name: str, size: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    return getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=3
    )


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), APPLICATIONS, ids=[a[0] for a in APPLICATIONS])
def test_every_application_family(name, size):
    model = _application(name, size)
    image = random_images(1, size, seed=0)[0]
    # Eager calls at inference: compiling Keras's predict function for one image
    # costs seconds per family (6 s on NASNetMobile) and tests nothing of ours.
    before = keras.ops.convert_to_numpy(model(image[None], training=False))
    probe = cw.Probe(model)
    assert probe.head.kind == "softmax" and probe.num_classes == 3
    probs = probe.predict(image)
    np.testing.assert_allclose(probs, before, rtol=1e-4, atol=1e-6)
    layer = probe.last_conv_layer
    acts = probe.activations(image, [layer])[layer]
    assert acts.ndim == 4 and np.isfinite(acts).all()
    maps = cw.gradcam(probe, image, classes=[0, 2], layer=layer, normalize=None)
    assert maps.shape == (1, 2, size, size) and np.isfinite(maps).all()
    if name in MULTI_BRANCH:  # what a plain conv stack does not have
        kinds = {info.kind for info in probe.layers}
        assert kinds & MULTI_BRANCH[name], (name, sorted(kinds))
    # The model is untouched: same predictions, bit for bit.
    after = keras.ops.convert_to_numpy(model(image[None], training=False))
    np.testing.assert_array_equal(after, before)


def _ops_model() -> keras.Model:
    """A Keras 3 style graph: operator arithmetic and keras.ops between layers."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    y = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    z = keras.ops.relu(x + y)
    z = keras.layers.Conv2D(6, 3, padding="same", name="c3")(z * 0.5)
    g = keras.layers.GlobalAveragePooling2D(name="gap")(z)
    logits = keras.layers.Dense(3, name="logits")(g)
    out = keras.layers.Activation("softmax", name="probs")(logits)
    return keras.Model(inp, out)


def _reference_gradcam(model, image, layer, cls):
    """The textbook Grad-CAM with a GradientTape on the user's own graph."""
    import tensorflow as tf

    outputs = [model.get_layer(layer).output, model.get_layer("logits").output]
    sub = keras.Model(model.inputs, outputs)
    with tf.GradientTape() as tape:
        act, logits = sub(image[None])
        score = logits[:, cls]
    grads = tape.gradient(score, act)[0].numpy()
    cam = np.maximum((act[0].numpy() * grads.mean(axis=(0, 1))).sum(-1), 0)
    return cam


def test_ops_and_operator_nodes_are_layers_of_the_catalog():
    model = _ops_model()
    probe = cw.Probe(model)
    kinds = {i.kind for i in probe.layers}
    assert {"ops.Add", "ops.Relu", "ops.Multiply"} <= kinds
    add = next(i for i in probe.layers if i.kind == "ops.Add")
    assert set(add.parents) == {"c1", "c2"}
    assert probe.last_conv_layer == "c3"
    image = random_images(1, 16, seed=2)[0]
    # A conv layer after the op nodes: Grad-CAM equals the textbook formula.
    for cls in range(3):
        got = cw.gradcam(probe, image, classes=cls, layer="c3", resize=False, normalize=None)
        ref = _reference_gradcam(model, image, "c3", cls)
        np.testing.assert_allclose(got[0, 0], ref, rtol=1e-4, atol=1e-6)
    # The op node itself is browsable and explainable.
    acts = probe.activations(image, [add.name])[add.name]
    c1, c2 = (probe.activations(image, ["c1", "c2"])[n] for n in ("c1", "c2"))
    np.testing.assert_allclose(acts, c1 + c2, rtol=1e-5, atol=1e-5)
    assert cw.gradcam(probe, image, layer=add.name).shape == (1, 1, 16, 16)
    assert cw.saliency(probe, image, method="guided").shape == (1, 1, 16, 16)


def test_legacy_hdf5_model_with_a_list_output(tmp_path):
    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax", name="head")(x)
    keras.Model(inp, [out]).save(tmp_path / "legacy.h5")
    model = keras.models.load_model(tmp_path / "legacy.h5")
    assert isinstance(model.output, list)  # what tripped the Probe before
    probe = cw.Probe(model)
    assert probe.head.kind == "softmax"
    image = random_images(1, 16, seed=4)[0]
    np.testing.assert_allclose(
        probe.predict(image), np.reshape(model.predict_on_batch(image[None]), (1, 3)), rtol=1e-5
    )
    assert cw.gradcam(model, image).shape == (1, 1, 16, 16)


def test_nested_base_with_ops_head():
    """A transfer-learning model: a nested base, then keras.ops in the head."""
    keras.utils.set_random_seed(5)
    base = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(32, 32, 3)
    )
    inp = keras.Input((32, 32, 3))
    f = base(inp)
    g = keras.ops.mean(f, axis=(1, 2))
    out = keras.layers.Dense(1, activation="sigmoid", name="head")(g)
    model = keras.Model(inp, out)
    probe = cw.Probe(model, class_names=["cat", "dog"])
    assert probe.head.kind == "binary"
    assert probe.last_conv_layer.startswith(base.name + "/")
    image = random_images(1, 32, seed=6)[0]
    maps = cw.gradcam(probe, image, classes=["cat", "dog"], normalize=None)
    assert maps.shape == (1, 2, 32, 32) and np.isfinite(maps).all()


def test_non_classifier_output_is_browsable_but_refused_for_classes():
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    seg = keras.layers.Conv2D(4, 1, activation="softmax", name="seg")(x)
    model = keras.Model(inp, seg)
    probe = cw.Probe(model)
    image = np.zeros((32, 32, 3), np.float32)
    assert probe.activations(image, "conv")["conv"].shape == (1, 32, 32, 4)
    for call in (
        lambda: probe.predict(image),
        lambda: cw.gradcam(model, image),
        lambda: cw.saliency(model, image),
        lambda: cw.occlusion(model, image, patch=8, stride=8),
    ):
        with pytest.raises(ValueError, match=r"not a class vector \(N, K\)"):
            call()


def test_one_linear_unit_warns_unless_named():
    inp = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inp))
    model = keras.Model(inp, keras.layers.Dense(1, name="value")(x))
    with pytest.warns(UserWarning, match="one linear unit"):
        cw.Probe(model)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probe = cw.Probe(model, class_names=["low", "high"])
    assert probe.head.kind == "binary"
