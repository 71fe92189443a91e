"""Train, look, train more, look again: every cached path follows the weights.

Each check computes a result, changes the weights the way users do
(model.fit, set_weights, load_weights, a variable assign), and compares the
next result with the same call on an independent fresh copy of the model
holding the new weights (so no cache can be shared with it)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from tiny_models import random_images, tiny_cnn

import cnnwidgets as cw

# Small pixel values keep the random tiny model out of softmax saturation.
HIGH = 1.0


def _fresh_twin(model: keras.Model) -> keras.Model:
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def _train(model: keras.Model) -> None:
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
    x = random_images(8, seed=9, high=HIGH)
    y = keras.utils.to_categorical(np.arange(8) % 3, 3)
    model.fit(x, y, epochs=2, verbose=0)


def _set_weights(model):
    rng = np.random.default_rng(1)
    noisy = [w + rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in model.get_weights()]
    model.set_weights(noisy)


def _load_weights(model, tmp_path):
    other = tiny_cnn(seed=42)
    other.save_weights(tmp_path / "other.weights.h5")
    model.load_weights(tmp_path / "other.weights.h5")


def _assign_one_filter(model):
    kernel = model.get_layer("conv2").kernel
    value = np.array(kernel)
    value[..., 2] = np.abs(value[..., 2]) * 3.0
    kernel.assign(value)


CHANGES = {
    "fit": lambda m, p: _train(m),
    "set_weights": lambda m, p: _set_weights(m),
    "load_weights": _load_weights,
    "assign_one_filter": lambda m, p: _assign_one_filter(m),
}

CALLS = {
    "predict": lambda m, x: cw.probe.as_probe(m).predict(x),
    "activations": lambda m, x: cw.probe.as_probe(m).activations(x, "conv2")["conv2"],
    "gradcam": lambda m, x: cw.gradcam(m, x, classes=[0, 1, 2], normalize=None),
    "gradcam++": lambda m, x: cw.gradcam(m, x, classes=[0, 1, 2], method="gradcam++"),
    "scorecam": lambda m, x: cw.gradcam(m, x, classes=[1], method="scorecam", normalize=None),
    "saliency": lambda m, x: cw.saliency(m, x, classes=[0, 2], normalize=None),
    "occlusion": lambda m, x: cw.occlusion(m, x, classes=[0, 2], patch=4, stride=4),
    "maximize": lambda m, x: cw.maximize(m, "conv2", filters=[0, 2], size=16, steps=4),
}


@pytest.mark.parametrize("change", list(CHANGES))
@pytest.mark.parametrize("call", list(CALLS))
def test_results_follow_the_weights(call, change, tmp_path):
    model = tiny_cnn(seed=0)
    x = random_images(high=HIGH)
    before = np.array(CALLS[call](model, x))
    np.testing.assert_array_equal(CALLS[call](model, x), before)  # cached, and equal
    CHANGES[change](model, tmp_path)
    after = np.array(CALLS[call](model, x))
    reference = np.array(CALLS[call](_fresh_twin(model), x))
    np.testing.assert_allclose(after, reference, rtol=1e-4, atol=1e-5)
    assert not np.allclose(after, before), "the new weights must change the result"


def test_version_changes_with_weights_and_is_stable_without(tmp_path):
    model = tiny_cnn(seed=0)
    v0 = cw.weights_version(model)
    assert cw.weights_version(model) == v0
    cw.probe.as_probe(model).predict(random_images(high=HIGH))  # inference changes nothing
    assert cw.weights_version(model) == v0
    _assign_one_filter(model)
    assert cw.weights_version(model) != v0


def test_comparator_redraws_from_new_weights():
    model = tiny_cnn(seed=0)
    image = random_images(1, high=HIGH)[0]
    widget = cw.GradCAMComparator(model, image, methods=["gradcam"])
    widget.wait()
    before = widget.view.copy()
    _train(model)
    assert widget.class_slider.value == 2
    widget.class_slider.value = 1  # the next interaction
    widget.wait()
    fresh = cw.GradCAMComparator(_fresh_twin(model), image, methods=["gradcam"])
    fresh.class_slider.value = 1
    fresh.wait()
    np.testing.assert_allclose(widget.probabilities, fresh.probabilities, rtol=1e-5)
    np.testing.assert_array_equal(widget.view, fresh.view)
    assert not np.array_equal(widget.view, before)
    widget.close()
    fresh.close()


def test_browser_and_scrubber_redraw_from_new_weights():
    model = tiny_cnn(seed=0)
    images = random_images(2, high=HIGH)
    browser = cw.ActivationBrowser(model, images)
    browser.wait()
    scrubber = cw.OcclusionScrubber(model, images[0], patch=4, stride=4)
    scrubber.wait()
    _set_weights(model)
    browser.scale.value = "layer"
    browser.wait()
    scrubber.x.value = 3
    scrubber.wait()
    twin = _fresh_twin(model)
    ref_browser = cw.ActivationBrowser(twin, images)
    ref_browser.scale.value = browser.scale.value
    ref_browser.wait()
    np.testing.assert_array_equal(browser.view, ref_browser.view)
    ref_scrubber = cw.OcclusionScrubber(twin, images[0], patch=4, stride=4)
    ref_scrubber.class_.value = scrubber.class_.value  # the user's choice stays
    ref_scrubber.x.value = 3
    ref_scrubber.wait()
    np.testing.assert_allclose(scrubber.probabilities, ref_scrubber.probabilities, rtol=1e-5)
    np.testing.assert_array_equal(scrubber.view, ref_scrubber.view)
    for w in (browser, scrubber, ref_browser, ref_scrubber):
        w.close()


def test_gallery_redraws_kernels_from_new_weights():
    model = tiny_cnn(seed=0)
    gallery = cw.FilterGallery(model, layer="conv2", per_page=2)
    gallery.wait()
    before = gallery.view.copy()
    _set_weights(model)
    gallery.page.value = 1  # the next interaction
    gallery.page.value = 0
    gallery.wait()
    reference = cw.FilterGallery(_fresh_twin(model), layer="conv2", per_page=2)
    reference.wait()
    np.testing.assert_array_equal(gallery.view, reference.view)
    assert not np.array_equal(gallery.view, before)
    gallery.close()
    reference.close()


def test_weights_held_reads_once_per_model_and_only_on_its_thread():
    """Inside weights_held() the version is read once per model on this thread;
    outside, and on other threads, every call reads the weights again."""
    import threading

    from cnnwidgets.probe import version

    model = tiny_cnn(seed=5)
    before = version.weights_version(model)
    seen = {}
    with version.weights_held():
        assert version.weights_version(model) == before
        first = model.layers[1].kernel
        first.assign(first.numpy() + 1.0)  # a change the block promised not to make
        assert version.weights_version(model) == before  # held: not read again
        worker = threading.Thread(target=lambda: seen.update(v=version.weights_version(model)))
        worker.start()
        worker.join()
    assert seen["v"] != before  # another thread reads the weights
    assert version.weights_version(model) == seen["v"] != before  # after the block too


def test_backend_reader_reads_the_samples_the_portable_reader_reads():
    """The version is the same whichever reader reads it (the gradients package
    installs its backend's compiled reader; a Probe on its own uses numpy), and
    both see a change to one sampled element of a variable larger than SAMPLES."""
    from cnnwidgets import gradients
    from cnnwidgets.probe import version

    class Scaled(keras.layers.Layer):  # a scalar weight, and an int one
        def build(self, shape):
            self.gain = self.add_weight(shape=(), initializer="ones", name="gain")
            self.steps = self.add_weight(shape=(2,), initializer="zeros", dtype="int32",
                                         trainable=False, name="steps")

        def call(self, x):
            return x * self.gain

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(40, 3, name="c")(inputs)  # 1080 weights
    x = Scaled(name="s")(keras.layers.Flatten()(x))
    outputs = keras.layers.Dense(3, name="d")(x)  # 7200 weights: sampled
    model = keras.Model(inputs, outputs)
    plan = version.sample_plan(model.weights)
    backend_samples = gradients.backend().weights_reader(plan)()
    portable_samples = version.numpy_reader(plan)()
    assert [a.dtype for a in backend_samples] == [np.float32, np.int32]
    for a, b in zip(backend_samples, portable_samples, strict=True):
        np.testing.assert_array_equal(a, b)
    gain = model.get_layer("s").gain
    before = cw.weights_version(model)
    gain.assign(2.0)  # the scalar is read too
    assert cw.weights_version(model) != before
    kernel = model.get_layer("d").kernel
    sampled = int(version.sample_positions(kernel.shape)[7])
    before = cw.weights_version(model)
    try:
        version.use_reader(version.numpy_reader)
        assert cw.weights_version(model) == before
    finally:
        version.use_reader(gradients.backend_weights_reader)
    flat = kernel.numpy().reshape(-1)
    flat[sampled] += 1e-3
    kernel.assign(flat.reshape(kernel.shape))
    after = cw.weights_version(model)
    assert after != before
    try:
        version.use_reader(version.numpy_reader)
        assert cw.weights_version(model) == after
    finally:
        version.use_reader(gradients.backend_weights_reader)
