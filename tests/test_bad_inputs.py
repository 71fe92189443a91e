"""Inputs users really pass by mistake get a clear ValueError / TypeError
that says what was wrong and what would work, before any TensorFlow trace."""

from __future__ import annotations

import numpy as np
import pytest

import cnnwidgets as cw


@pytest.fixture(scope="module")
def image():
    return cw.assets.make_shapes(1, seed=8)[0][0]  # (64, 64, 3) uint8


def test_channels_first_images_are_refused(shapes_probe, image):
    chw = np.moveaxis(image, -1, 0)  # (3, 64, 64): once read as three grey images
    with pytest.raises(ValueError, match="channels-first.*np.moveaxis"):
        cw.gradcam(shapes_probe, chw)
    with pytest.raises(ValueError, match="channels-first"):
        shapes_probe.predict(np.stack([chw, chw]))
    grey = image[..., 0]
    assert shapes_probe.predict(grey[None, ..., None]).shape == (1, 4)  # the way that works


def test_complex_and_text_images_are_refused(shapes_probe, image):
    with pytest.raises(TypeError, match="real numbers"):
        shapes_probe.predict(image.astype(np.complex64))
    with pytest.raises(TypeError, match="numeric"):
        shapes_probe.predict(np.full((64, 64, 3), "a"))


def test_preprocess_that_breaks_the_images_is_named(shapes_model, image):
    nan_probe = cw.Probe(shapes_model, preprocess=lambda x: x * np.nan)
    with pytest.raises(ValueError, match="preprocess returned NaN"):
        nan_probe.predict(image)
    with pytest.raises(ValueError, match="preprocess returned NaN"):
        cw.gradcam(nan_probe, image)
    crop = cw.Probe(shapes_model, preprocess=lambda x: x[:, :32, :32])
    with pytest.raises(ValueError, match="preprocess changed the images' shape"):
        crop.predict(image)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -1.0, 0.0])
def test_maximize_refuses_steps_that_cannot_work(shapes_probe, lr):
    with pytest.raises(ValueError, match="lr must"):
        cw.maximize(shapes_probe, "block1_conv1", filters=[0], size=16, steps=2, lr=lr)


def test_maximize_refuses_odd_sizes(shapes_probe):
    with pytest.raises(TypeError, match="size must be an int"):
        cw.maximize(shapes_probe, "block1_conv1", filters=[0], size=16.5, steps=2)
    with pytest.raises(ValueError, match="steps must"):
        cw.maximize(shapes_probe, "block1_conv1", filters=[0], size=16, steps=0)


def test_numpy_integers_are_integers(shapes_probe, image):
    two = np.int64(2)
    assert cw.gradcam(shapes_probe, image, batch_size=two).shape == (1, 1, 64, 64)
    assert cw.saliency(shapes_probe, image, batch_size=two).shape == (1, 1, 64, 64)
    assert cw.occlusion(shapes_probe, image, patch=np.int32(16), stride=np.int64(16),
                        batch_size=two).shape == (1, 1, 64, 64)
    assert shapes_probe.predict(image, batch_size=two).shape == (1, 4)
    with pytest.raises(TypeError, match="batch_size"):
        shapes_probe.predict(image, batch_size=2.0)
    with pytest.raises(ValueError, match="batch_size"):
        cw.gradcam(shapes_probe, image, batch_size=0)


@pytest.mark.parametrize(("argument", "value"), [("per_page", 0), ("tile", 0), ("per_page", -3)])
def test_filter_gallery_sizes(shapes_model, argument, value):
    with pytest.raises(ValueError, match=f"{argument} must be >="):
        cw.FilterGallery(shapes_model, **{argument: value})


def test_every_listed_photo_loads():
    for name in cw.assets.PHOTOS:
        photo = cw.assets.photo(name, size=32)
        assert photo.shape == (32, 32, 3) and photo.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown photo"):
        cw.assets.photo("motorcycle")


def test_class_names_with_a_probe_are_refused_the_same_everywhere(shapes_probe, image):
    makers = [
        lambda **k: cw.ActivationBrowser(shapes_probe, image, **k),
        lambda **k: cw.FilterGallery(shapes_probe, **k),
        lambda **k: cw.GradCAMComparator(shapes_probe, image, **k),
        lambda **k: cw.OcclusionScrubber(shapes_probe, image, **k),
        lambda **k: cw.ModelOverview(shapes_probe, **k),
    ]
    for make in makers:
        with pytest.raises(ValueError, match="belong to the Probe"):
            make(class_names=["a", "b", "c", "d"])
