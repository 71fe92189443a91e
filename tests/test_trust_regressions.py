"""Silent-wrong pictures and deep errors found by hand: each case failed before its fix."""

from __future__ import annotations

import logging
import warnings

import keras
import numpy as np
import pytest
from tiny_models import random_images

import cnnwidgets as cw
from cnnwidgets import gradients


def _reference_layer_gradcam(model, image, layer, cls):
    """Grad-CAM the textbook way: a two-output model and a GradientTape watching the input."""
    import tensorflow as tf

    # The demo model ends in a softmax Dense: its logit is the Dense layer's linear part.
    dense = model.get_layer("predictions")
    sub = keras.Model(model.inputs, [model.get_layer(layer).output, model.get_layer("gap").output])
    x = tf.constant(image[None].astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        act, feats = sub(x)
        logit = tf.matmul(feats, dense.kernel)[:, cls] + dense.bias[cls]
    grad = tape.gradient(logit, act)
    weights = tf.reduce_mean(grad, axis=(1, 2))
    return np.maximum(np.einsum("nhwc,nc->nhw", act.numpy(), weights.numpy()), 0)[0]


def test_gradcam_at_an_input_side_layer_is_computed(shapes_model):
    """The comparator offers the Rescaling layer; Grad-CAM there raised TensorFlow's
    'None values not supported' (its output depends on no variable, so the tape
    did not record it)."""
    image = cw.assets.make_shapes(1, seed=3)[0][0]
    cls = 1
    maps = cw.gradcam(shapes_model, image, classes=cls, layer="rescale", normalize=None)
    ref = _reference_layer_gradcam(shapes_model, image, "rescale", cls)
    np.testing.assert_allclose(maps[0, 0], ref, rtol=1e-4, atol=1e-6 * ref.max())
    guided = cw.saliency(shapes_model, image, classes=cls, method="guided-gradcam", layer="rescale")
    assert np.isfinite(guided).all() and guided.max() > 0


def test_every_layer_the_comparator_offers_works(shapes_model):
    image = cw.assets.make_shapes(1, seed=4)[0][0]
    w = cw.GradCAMComparator(shapes_model, image, methods=("gradcam",), top=2).wait()
    for _label, layer in w.layer.options:
        w.layer.value = layer
        w.wait()
        assert w.status.value == "", (layer, w.status.value)
    w.close()


def _fully_convolutional(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3)(x))


def test_too_small_images_are_refused_with_the_smallest_size():
    model = _fully_convolutional()
    with pytest.raises(ValueError, match=r"2x2 .* at least 8x8"):
        cw.gradcam(model, np.zeros((2, 2, 3)))
    # the size named is the smallest that works, and it does work
    assert cw.gradcam(model, random_images(1, 8)[0], layer="conv1").shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="at least 8x8"):
        cw.gradcam(model, np.zeros((7, 30, 3)))
    assert cw.Probe(model).predict(random_images(1, 40)).shape == (1, 3)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_many_models_layers_and_batch_sizes_trace_each_function_once():
    """Four small CNNs, Grad-CAM at two layers and three batch sizes, then saliency:
    TensorFlow logged 'triggered tf.function retracing'."""
    collect = _Collect()
    logger = logging.getLogger("tensorflow")
    logger.addHandler(collect)
    try:
        for seed in range(4):
            model = _fully_convolutional(seed)
            probe = cw.Probe(model)
            for layer in ("conv1", "conv2"):
                for n in (1, 3, 5):
                    cw.gradcam(probe, random_images(n, 16, seed=n), layer=layer)
            cw.saliency(probe, random_images(2, 16))
            cw.saliency(probe, random_images(3, 16), method="guided")
            for fn in probe._structural.values():
                if hasattr(fn, "experimental_get_tracing_count"):
                    assert fn.experimental_get_tracing_count() == 1
    finally:
        logger.removeHandler(collect)
    assert not [m for m in collect.messages if "retracing" in m]


def test_compiled_functions_are_traced_once_per_signature(tiny_model):
    probe = cw.Probe(tiny_model)
    x = random_images(5, 16)
    for bs in (1, 2, 5):
        gradients.layer_gradients(probe, x, "conv2", np.zeros((5, 2), int), batch_size=bs)
    key = ("tensorflow", "layer", "conv2", 2, (None, 16, 16, 3), "classes")
    fn = probe.cached("compiled", key, lambda: None, versioned=False)
    assert fn.experimental_get_tracing_count() == 1


def test_the_linear_head_warning_names_the_users_line():
    inp = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp))
    model = keras.Model(inp, keras.layers.Dense(1)(x))
    for call in (
        lambda: cw.Probe(keras.models.clone_model(model)),
        lambda: cw.gradcam(keras.models.clone_model(model), np.zeros((16, 16, 3))),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        linear = [w for w in caught if "one linear unit" in str(w.message)]
        assert linear and all(w.filename == __file__ for w in linear), [
            (w.filename, w.lineno) for w in linear
        ]


def test_a_per_image_class_vector_is_not_read_as_classes_for_every_image(shapes_probe):
    """classes=preds.argmax(1), shape (N,), gave (N, N, H, W) maps and N times the work."""
    images = cw.assets.make_shapes(3, seed=5)[0]
    top = shapes_probe.predict(images).argmax(1)
    with pytest.raises(ValueError, match=r"classes\[:, None\]"):
        cw.gradcam(shapes_probe, images, classes=top)
    per_image = cw.gradcam(shapes_probe, images, classes=top[:, None])
    assert per_image.shape == (3, 1, 64, 64)
    np.testing.assert_array_equal(per_image, cw.gradcam(shapes_probe, images))
    shared = cw.gradcam(shapes_probe, images, classes=list(top))  # a list: shared by all
    assert shared.shape == (3, 3, 64, 64)
