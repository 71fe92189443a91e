"""top_activations: the streaming per-channel top-k against a brute-force
numpy reference, receptive-field patches, and the FilterGallery mode it feeds."""

from __future__ import annotations

import numpy as np
import pytest

import cnnwidgets as cw
from cnnwidgets import render
from cnnwidgets.explain.receptive_field import receptive_field, unit_box
from cnnwidgets.widgets.filter_gallery import FilterGallery

LAYER = "block2_conv1"


@pytest.fixture(scope="module")
def images():
    return cw.assets.make_shapes(45, seed=31)[0]


def brute_force(probe, images, layer, k):
    """Per channel: every image's strongest unit, all images sorted, the first k."""
    acts = probe.activations(images, layer)[layer]
    n, h, w, c = acts.shape
    out = []
    for ch in range(c):
        entries = []
        for idx in range(n):
            a = acts[idx, :, :, ch]
            i, j = np.unravel_index(np.argmax(a), a.shape)
            entries.append((-float(a[i, j]), idx, int(i), int(j)))
        entries.sort(key=lambda e: (e[0], e[1]))
        out.append(entries[:k])
    return out


def test_streaming_top_k_equals_brute_force(shapes_probe, images):
    top = cw.top_activations(shapes_probe, images, LAYER, k=5, chunk=8, progress=False)
    ref = brute_force(shapes_probe, images, LAYER, 5)
    assert top.layer == LAYER and top.count == 45 and top.k == 5
    assert top.values.shape == (32, 5) and top.patches.shape[:2] == (32, 5)
    for ch, entries in enumerate(ref):
        np.testing.assert_array_equal(top.indices[ch], [e[1] for e in entries])
        np.testing.assert_allclose(top.values[ch], [-e[0] for e in entries], rtol=1e-5)
        np.testing.assert_array_equal(top.positions[ch], [(e[2], e[3]) for e in entries])
    assert (np.diff(top.values, axis=1) <= 0).all()


def test_patches_are_the_receptive_fields_of_the_units(shapes_probe, images):
    top = cw.top_activations(
        shapes_probe, images, LAYER, k=3, chunk=16, keep_images=True, progress=False
    )
    rf = receptive_field(shapes_probe, LAYER)
    side = top.patches.shape[2]
    assert side == min(64, max(rf.size))
    for ch in (0, 7, 31):
        for slot in range(3):
            idx = top.indices[ch, slot]
            i, j = top.positions[ch, slot]
            box = unit_box(rf, i, j, (64, 64))
            np.testing.assert_array_equal(top.boxes[ch, slot], box)
            t, l, b, r = box
            crop = images[idx, t:b, l:r]
            expect = render.resize_image(crop, (side, side), smooth=False)
            np.testing.assert_array_equal(top.patches[ch, slot], expect)
            np.testing.assert_array_equal(top.images[ch, slot], images[idx])
            cy, cx = rf.start[0] + i * rf.jump[0], rf.start[1] + j * rf.jump[1]
            assert t <= cy < b and l <= cx < r  # the unit sees its own centre


def test_chunking_ties_short_data_and_channel_subsets(shapes_probe, images):
    a = cw.top_activations(shapes_probe, images, LAYER, k=4, chunk=7, progress=False)
    b = cw.top_activations(shapes_probe, images, LAYER, k=4, chunk=100, progress=False)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.patches, b.patches)
    twice = np.concatenate([images[:3], images[:3]])  # equal values: the earlier image wins
    tied = cw.top_activations(shapes_probe, twice, LAYER, k=2, chunk=4, progress=False)
    # Each image's twin ties with it; the original comes first, its copy second.
    assert (tied.indices[:, 0] < 3).all()
    np.testing.assert_array_equal(tied.indices[:, 1], tied.indices[:, 0] + 3)
    np.testing.assert_array_equal(tied.values[:, 0], tied.values[:, 1])
    short = cw.top_activations(shapes_probe, images[:2], LAYER, k=4, progress=False)
    assert (short.indices[:, 2:] == -1).all() and np.isneginf(short.values[:, 2:]).all()
    some = cw.top_activations(shapes_probe, images, LAYER, k=4, channels=[5, 2], progress=False)
    np.testing.assert_array_equal(some.channels, [5, 2])
    np.testing.assert_array_equal(some.indices, a.indices[[5, 2]])
    assert some.row(2) == 1
    batches = [images[s : s + 10] for s in range(0, 45, 10)]
    streamed = cw.top_activations(shapes_probe, iter(batches), LAYER, k=4, chunk=16, progress=False)
    np.testing.assert_array_equal(streamed.indices, a.indices)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k=0), "k must be a positive int"),
        (dict(channels=[99]), "channels must be indices"),
        (dict(layer="gap"), r"not \(N, H, W, C\)"),
        (dict(layer="block9"), "has no layer"),
    ],
)
def test_bad_arguments(shapes_probe, images, kwargs, match):
    args = dict(layer=LAYER, k=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cw.top_activations(shapes_probe, images[:4], progress=False, **args)


def test_filter_gallery_dataset_mode(shapes_probe, images):
    top = cw.top_activations(shapes_probe, images, LAYER, k=4, progress=False)
    g = FilterGallery(shapes_probe, mode="dataset", dataset_examples=top, per_page=8, tile=24)
    assert g.mode.value == "dataset" and g.layer.value == LAYER and g.layer.disabled
    assert "dataset" in g.mode.options
    # The first tile is channel 0's four patches, tiled 2x2 and scaled to the tile.
    mosaic = render.tile(top.patches[0], pad=1)
    expect = render.resize_image(mosaic, (24, 24), smooth=False)
    np.testing.assert_array_equal(g.view[16 : 16 + 24, :24], expect)
    before = g.view.copy()
    g.page.value = 1  # channels 8..15; the selection stays
    assert g.page_filters[0] == 8 and g.filter.value == 0
    assert not np.array_equal(before, g.view)
    g.mode.value = "weights"
    assert not g.layer.disabled and g.layer.value == LAYER
    with pytest.raises(ValueError, match="needs dataset_examples"):
        FilterGallery(shapes_probe, mode="dataset")
