"""Widget state as traits: the selected layer, channel, filter and class can be
observed, set from code and linked between widgets, and a bad value is refused
before any control changes."""

from __future__ import annotations

import ipywidgets
import numpy as np
import pytest

import cnnwidgets as cw


@pytest.fixture(scope="module")
def shapes_image():
    return cw.assets.make_shapes(1, seed=5)[0][0]


def test_browser_layer_and_channel_are_traits_mirroring_the_controls(shapes_model, shapes_image):
    b = cw.ActivationBrowser(shapes_model, shapes_image[None]).wait()
    seen = []
    b.observe(lambda change: seen.append(change["new"]), "selected_channel")
    b.channel.value = 3  # as a user types it
    assert b.selected_channel == 3 and seen == [3]
    b.selected_channel = 5  # from code: the control follows and the ring moves
    b.wait()
    assert b.channel.value == 5
    top, left, bottom, right = b.grid.box_of(5)
    oy, ox = b.grid_origin
    assert tuple(b.view[oy + top - 1, ox + left]) == (230, 30, 30)
    with pytest.raises(ValueError, match="outside"):
        b.selected_channel = 10_000
    assert b.channel.value == 5 and b.selected_channel == 5
    b.selected_layer = "block2_conv1"  # a short name becomes the layer's path
    b.wait()
    assert b.layer.value == b.selected_layer == b.probe.resolve("block2_conv1")
    assert b.grid.channels.size == b.probe.layer_info(b.selected_layer).output_shape[-1]
    with pytest.raises(ValueError, match="no layer"):
        b.selected_layer = "no_such_layer"
    assert b.layer.value == b.probe.resolve("block2_conv1")
    b.close()


def test_gallery_layer_and_filter_are_traits(shapes_model):
    g = cw.FilterGallery(shapes_model).wait()
    g.selected_filter = 4
    assert g.filter.value == 4
    g.filter.value = 2
    assert g.selected_filter == 2
    with pytest.raises(ValueError, match="out of range"):
        g.selected_filter = g.count
    convs = [p for _, p in g.layer.options]
    g.selected_layer = convs[-1]
    g.wait()
    assert g.layer.value == convs[-1]
    with pytest.raises(ValueError):
        g.selected_layer = "dense"
    g.close()


def test_a_linked_scrubber_follows_the_comparator_class_slider(shapes_model, shapes_image):
    """The use the traits exist for: move the comparator's class slider and the
    occlusion scrubber explains the same class."""
    comparator = cw.GradCAMComparator(shapes_model, shapes_image).wait()
    scrubber = cw.OcclusionScrubber(shapes_model, shapes_image, patch=16, stride=16).wait()
    link = ipywidgets.link((comparator, "selected_class"), (scrubber, "selected_class"))
    for rank in (2, 3, 1):
        comparator.class_slider.value = rank
        scrubber.wait()
        cls = comparator.ranked[rank - 1]
        assert scrubber.class_.value == cls == scrubber.selected_class
        # The scrubber's map is the occlusion map of that class, computed independently.
        want = cw.occlusion(shapes_model, shapes_image[None], [cls], patch=16, stride=16)[0, 0]
        np.testing.assert_allclose(scrubber.sensitivity, want, atol=1e-5)
    link.unlink()
    comparator.close()
    scrubber.close()
    scrubber.class_.value = comparator.ranked[1]  # no link left to fire on a closed widget
