"""Property-based: whatever a user passes to the public functions and widget
constructors, the answer is a result without NaN / inf, or a ValueError /
TypeError raised by cnnwidgets itself (never a deep TensorFlow or numpy
traceback), and the model is left exactly as it was."""

from __future__ import annotations

import traceback

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tiny_models import tiny_cnn

import cnnwidgets as cw
from cnnwidgets.widgets.base import ViewWidget

SIZE = 16


@pytest.fixture(scope="module")
def models():
    return {"softmax": tiny_cnn("softmax", 3, SIZE), "binary": tiny_cnn("sigmoid", 1, SIZE, seed=1)}


def _snapshot(model, probe_images):
    return (
        [w.copy() for w in model.get_weights()],
        model.get_config(),
        np.asarray(model.predict_on_batch(probe_images)),
    )


@st.composite
def images(draw):
    """Three times in four a valid image or batch (any real dtype, grey or RGB);
    otherwise a wrong rank, size, layout, dtype or non-finite values."""
    if draw(st.integers(0, 3)) > 0:
        dtype = draw(st.sampled_from([np.uint8, np.int16, np.float32, np.float64, np.bool_]))
        channels = draw(st.sampled_from([3, 3, 1]))
        dims = draw(st.sampled_from([[SIZE, SIZE, channels], [2, SIZE, SIZE, channels]]))
        elements = st.floats(-300, 300, width=32) if np.issubdtype(dtype, np.floating) else None
        return draw(hnp.arrays(dtype, dims, elements=elements))
    dims = draw(
        st.sampled_from(
            [[SIZE], [3, SIZE, SIZE], [SIZE + 1, SIZE, 3], [2, 3, SIZE, SIZE], [0, SIZE, SIZE, 3],
             [1, 1, SIZE, SIZE, 3], [SIZE, SIZE, 4], [SIZE, SIZE, 2], [SIZE, SIZE, 3]]
        )
    )
    dtype = draw(st.sampled_from([np.float16, np.float32, np.complex64, np.uint8]))
    elements = st.floats(width=16) if dtype == np.float16 else None
    return draw(hnp.arrays(dtype, dims, elements=elements))


CLASSES = st.one_of(
    st.none(),
    st.integers(-2, 4),
    st.sampled_from(["0", "positive", "negative", "dog", ""]),
    st.lists(st.integers(-1, 3), max_size=3),
    st.just(True),
    st.just(1.5),
)
BATCH = st.one_of(st.none(), st.integers(-1, 3), st.just(np.int64(2)), st.just(2.5))
LAYER = st.one_of(st.none(), st.sampled_from(["conv1", "conv2", "pool1", "gap", "head", "nope"]))


def _calls(draw):
    """(label, function of a model) for one public entry point with drawn arguments."""
    which = draw(st.sampled_from(
        ["gradcam", "saliency", "occlusion", "predict", "activations", "maximize",
         "comparator", "scrubber", "gallery", "browser"]
    ))
    x = draw(images())
    classes, batch, layer = draw(CLASSES), draw(BATCH), draw(LAYER)
    if which == "gradcam":
        method = draw(st.sampled_from(["gradcam", "gradcam++", "layercam", "scorecam", "cam", "x"]))
        norm = draw(st.sampled_from(["map", "image", None, "max"]))
        return which, lambda m: cw.gradcam(m, x, classes, layer, method, normalize=norm,
                                           batch_size=batch)
    if which == "saliency":
        method = draw(st.sampled_from(["vanilla", "guided", "smoothgrad", "integrated", "?"]))
        return which, lambda m: cw.saliency(m, x, classes, method=method, batch_size=batch)
    if which == "occlusion":
        patch, stride = draw(st.integers(-1, SIZE + 2)), draw(st.integers(-1, SIZE + 2))
        fill = draw(st.sampled_from(["mean", "zero", "blur", 0.5, "grey", (1, 2), np.nan]))
        return which, lambda m: cw.occlusion(m, x, classes, patch, stride, fill, batch)
    if which == "predict":
        return which, lambda m: cw.probe.as_probe(m).predict(x, batch_size=batch)
    if which == "activations":
        return which, lambda m: cw.probe.as_probe(m).activations(x, layer or "conv1")
    if which == "maximize":
        filters = draw(st.one_of(st.none(), st.lists(st.integers(-1, 7), max_size=2)))
        size = draw(st.sampled_from([8, 16, 4, 12.5]))
        lr = draw(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
        return which, lambda m: cw.maximize(m, layer or "conv1", filters, size=size, steps=2,
                                            lr=lr, batch_size=batch)
    if which == "comparator":
        top = draw(st.integers(-1, 4))
        return which, lambda m: cw.GradCAMComparator(m, x, classes=classes, layer=layer, top=top)
    if which == "scrubber":
        patch, stride = draw(st.integers(-1, SIZE + 1)), draw(st.integers(-1, SIZE + 1))
        return which, lambda m: cw.OcclusionScrubber(m, x, classes=classes, patch=patch,
                                                     stride=stride)
    if which == "gallery":
        per_page, tile = draw(st.integers(-1, 20)), draw(st.integers(-1, 64))
        return which, lambda m: cw.FilterGallery(m, layer=layer, per_page=per_page, tile=tile)
    return which, lambda m: cw.ActivationBrowser(m, x, layer=layer)


def _check_result(value):
    if isinstance(value, ViewWidget):
        value.wait()
        assert np.isfinite(value.view).all()
        value.close()
        return
    arrays = value.values() if isinstance(value, dict) else [value]
    for arr in arrays:
        arr = np.asarray(arr)
        if arr.dtype.kind == "f":
            assert np.isfinite(arr).all(), "a NaN / inf result"


@pytest.mark.slow
@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_public_api_answers_or_explains(models, data):
    head = data.draw(st.sampled_from(["softmax", "binary"]))
    model = models[head]
    label, call = _calls(data.draw)
    probe_images = np.linspace(0, 1, 2 * SIZE * SIZE * 3, dtype=np.float32)
    probe_images = probe_images.reshape(2, SIZE, SIZE, 3)
    before = _snapshot(model, probe_images)
    try:
        result = call(model)
    except (ValueError, TypeError) as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1].filename
        assert "/cnnwidgets/" in where, f"{label}: {type(exc).__name__} raised in {where}: {exc}"
        assert str(exc), f"{label}: an error without a message"
        event(f"{label}: {type(exc).__name__}")
    else:
        _check_result(result)
        event(f"{label}: answered")
    weights, config, predictions = _snapshot(model, probe_images)
    assert all(np.array_equal(a, b) for a, b in zip(before[0], weights)), f"{label} changed weights"
    assert config == before[1], f"{label} changed the config"
    np.testing.assert_array_equal(predictions, before[2])
