"""Probe: layer catalog, submodels, logits, binary heads, no mutation, bad input."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_models import random_images, tiny_cnn, tiny_sequential, vgg_transfer

import cnnwidgets as cw
from cnnwidgets import gradients


def _snapshot(model):
    return (
        [w.copy() for w in model.get_weights()],
        [getattr(layer, "activation", None) for layer in model.layers],
        model.to_json(),
    )


# ----------------------------------------------------------------- model kinds


@pytest.mark.parametrize("functional", [False, True])
def test_nested_transfer_model_submodel_and_gradients(functional, rng):
    model = vgg_transfer(units=1, head="sigmoid", hidden=8, functional=functional)
    probe = cw.Probe(model, class_names=["cat", "dog"])
    assert probe.last_conv_layer == "vgg16/block5_conv3"
    assert "vgg16/block1_conv1" in probe.conv_layers
    assert probe.head.kind == "binary"
    x = random_images(2, 32, rng)
    # The layer inside the nested base and the class scores come from one submodel:
    # no 'Graph disconnected'.
    sub = probe.submodel(["block5_conv3"], scores=True)
    act, scores = sub.predict_on_batch(x)
    direct = keras.Model(
        model.layers[0].input if not functional else model.layers[1].input,
        (model.layers[0] if not functional else model.layers[1]).get_layer("block5_conv3").output,
    )
    np.testing.assert_allclose(act, direct.predict_on_batch(x), rtol=1e-5, atol=1e-5)
    p = model.predict_on_batch(x)[:, 0]
    logit = np.log(p / (1 - p))
    np.testing.assert_allclose(scores[:, 1], logit, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(scores[:, 0], -scores[:, 1], rtol=0, atol=0)
    acts, grads, picked = gradients.layer_gradients(
        probe, x, "block5_conv3", np.array([[0, 1]] * 2)
    )
    assert grads.shape == (2, 2, 2, 2, 512)
    # negative = -logit, so its gradient is exactly the negated positive one
    np.testing.assert_allclose(grads[:, 0], -grads[:, 1], atol=1e-7)


def test_sequential_built_by_calling_on_data(rng):
    model = tiny_sequential()
    x = random_images(3, 16, rng)
    model(x)  # no Input layer: built by a call with batch 3
    probe = cw.Probe(model)
    assert probe.input_shape == (None, 16, 16, 3)
    np.testing.assert_allclose(probe.predict(x[:1]), model.predict_on_batch(x[:1]), atol=1e-6)
    assert probe.conv_layers == ["c"]


def test_activations_match_direct_model(shapes_model, shapes_probe, shapes_images):
    images = shapes_images[0]
    got = shapes_probe.activations(images, ["block1_conv1", "block3_conv2"])
    for name in got:
        direct = keras.Model(shapes_model.inputs, shapes_model.get_layer(name).output)
        np.testing.assert_allclose(
            got[name], direct.predict_on_batch(images.astype("float32")), rtol=1e-5, atol=1e-5
        )


# ---------------------------------------------------------------------- logits


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_logits_equal_linear_twin(head, rng):
    model = tiny_cnn(head=head, units=3)
    twin = tiny_cnn(head="linear", units=3)
    twin.set_weights(model.get_weights())
    probe = cw.Probe(model)
    x = random_images(2, 16, rng)
    scores, probs = probe.scores(x)
    np.testing.assert_allclose(scores, twin.predict_on_batch(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probs, model.predict_on_batch(x), atol=1e-7)


def test_separate_softmax_activation_layer(rng):
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    z = keras.layers.Dense(3, name="logits")(x)
    out = keras.layers.Activation("softmax")(z)
    model = keras.Model(inp, out)
    probe = cw.Probe(model)
    x = random_images(2, 16, rng)
    scores, _ = probe.scores(x)
    np.testing.assert_allclose(scores, keras.Model(inp, z).predict_on_batch(x), atol=1e-6)


def test_no_logits_falls_back_to_log_probabilities(rng):
    inp = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp))
    out = keras.layers.Lambda(lambda t: keras.ops.softmax(t * 2.0))(keras.layers.Dense(3)(x))
    model = keras.Model(inp, out)
    with pytest.warns(UserWarning, match="log-probabilities"):
        probe = cw.Probe(model)
    assert probe.head.kind == "logprob"
    x = random_images(2, 16, rng) / 255.0  # keep the softmax away from saturation
    scores, probs = probe.scores(x)
    np.testing.assert_allclose(scores, np.log(model.predict_on_batch(x)), atol=1e-5)


def test_binary_head_predict_and_names(binary_model, binary_probe, pair_images):
    images = pair_images[0]
    probs = binary_probe.predict(images)
    p = binary_model.predict_on_batch(images.astype("float32"))[:, 0]
    np.testing.assert_allclose(probs[:, 1], p, atol=1e-7)
    np.testing.assert_allclose(probs[:, 0], 1 - p, atol=1e-7)
    assert binary_probe.class_names == ["square", "circle"]
    with pytest.raises(ValueError, match="negative, positive"):
        cw.Probe(binary_model, class_names=["a", "b", "c"])


# ------------------------------------------------------------------ no mutation


def test_model_is_never_mutated(rng):
    model = tiny_cnn(head="sigmoid", units=1)
    x = random_images(2, 16, rng)
    before_pred = model.predict_on_batch(x)
    before = _snapshot(model)
    probe = cw.Probe(model)
    probe.predict(x)
    probe.activations(x, probe.conv_layers)
    gradients.layer_gradients(probe, x, "conv2", np.array([[0, 1]] * 2))
    gradients.input_gradients(probe, x, np.array([[1]] * 2), relu_rule="guided")
    after = _snapshot(model)
    for a, b in zip(before[0], after[0]):
        np.testing.assert_array_equal(a, b)
    assert before[1] == after[1]
    assert before[2] == after[2]
    np.testing.assert_array_equal(before_pred, model.predict_on_batch(x))
    # and the model still trains/behaves like a plain Keras model
    assert model.get_layer("head").activation.__name__ == "sigmoid"


# -------------------------------------------------------------------- bad input


def test_unknown_layer_lists_closest(shapes_probe):
    with pytest.raises(ValueError, match="closest.*block3_conv2"):
        shapes_probe.resolve("block3_conv")


def test_non_4d_layer_refused_for_maps(shapes_probe):
    with pytest.raises(ValueError, match="not \\(N, H, W, C\\)"):
        shapes_probe.resolve_4d("predictions")


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (np.zeros((64, 64, 4)), ValueError, "4 channels"),
        (np.zeros((32, 32, 3)), ValueError, "expects 64x64"),
        (np.zeros((1, 1, 64, 64, 3)), ValueError, "expected"),
        (np.array(["a"]), TypeError, "numeric"),
        (np.full((64, 64, 3), np.nan), ValueError, "NaN"),
    ],
)
def test_bad_images(shapes_probe, bad, exc, match):
    with pytest.raises(exc, match=match):
        shapes_probe.predict(bad)


def test_grayscale_image_is_accepted(shapes_probe, shapes_images):
    gray = shapes_images[0][0].mean(axis=2)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    np.testing.assert_allclose(shapes_probe.predict(gray), shapes_probe.predict(rgb), atol=1e-7)


def test_bad_models():
    with pytest.raises(TypeError, match="keras.Model"):
        cw.Probe("model.keras")
    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    two = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(ValueError, match="2 inputs"):
        cw.Probe(two)
    vec = keras.Input((10,))
    with pytest.raises(ValueError, match="height, width, channels"):
        cw.Probe(keras.Model(vec, keras.layers.Dense(2)(vec)))
    with pytest.raises(ValueError, match="no defined inputs"):
        cw.Probe(keras.Sequential([keras.layers.Dense(2)]))


def test_unknown_class_name(shapes_probe, shapes_images):
    with pytest.raises(ValueError, match="closest"):
        shapes_probe.resolve_classes("circel", shapes_images[0])


def test_preprocess_is_applied_on_a_copy(rng):
    model = tiny_cnn()
    x = random_images(2, 16, rng)
    keep = x.copy()

    def prep(a):
        a -= 100.0  # in place, as keras.applications preprocessors do
        return a

    probe = cw.Probe(model, preprocess=prep)
    np.testing.assert_allclose(probe.predict(x), model.predict_on_batch(keep - 100.0), atol=1e-6)
    np.testing.assert_array_equal(x, keep)


def test_gradients_match_plain_tape(rng):
    model = tiny_cnn(head="softmax")
    twin = tiny_cnn(head="linear")
    twin.set_weights(model.get_weights())
    probe = cw.Probe(model)
    x = random_images(2, 16, rng)
    grads, _ = gradients.input_gradients(probe, x, np.array([[2, 0]] * 2))
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        z = twin(xt)[:, 2]
    np.testing.assert_allclose(grads[:, 0], tape.gradient(z, xt).numpy(), rtol=1e-4, atol=1e-6)


def test_class_name_without_names_says_how_to_name_them(shapes_model, shapes_images):
    probe = cw.Probe(shapes_model)
    with pytest.raises(ValueError, match="class_names="):
        probe.resolve_classes("circle", shapes_images[0])


def test_browsing_every_layer_does_not_warn_of_retracing(shapes_model, shapes_images, caplog):
    """One predict function per submodel is traced once each; TensorFlow would
    call that a retracing loop after five layers. The warning is dropped only
    while our submodels run: the logger is left as it was."""
    probe = cw.Probe(shapes_model)
    logger = logging.getLogger("tensorflow")
    filters_before = list(logger.filters)
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for info in probe.layers:
            probe.activations(shapes_images[0][:2], [info.name])
    assert len(probe.layers) > 5
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
    assert logger.filters == filters_before
