"""DatasetExplorer driven as a user would: controls set, cells and thumbnails
clicked, then ``view`` and the state asserted. Also: a million-image store
opens by reading its metadata and one page."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from tiny_models import random_images, tiny_cnn

import cnnwidgets as cw
from cnnwidgets import render
from cnnwidgets.dataset.sources import Chunk
from cnnwidgets.dataset.store import DatasetStore
from cnnwidgets.dataset.stream import RunSpec, explain_chunk, run_metadata
from cnnwidgets.explain.cam import normalize_maps
from cnnwidgets.widgets.dataset_explorer import DatasetExplorer
from cnnwidgets.widgets.gradcam_comparator import GradCAMComparator

NAMES = cw.assets.demo_class_names("shapes_cnn")
TILE, COLS, PER_PAGE = 48, 4, 8
CAPTION, TITLE, PAD = 16, 18, 2


@pytest.fixture(scope="module")
def shortcut():
    return cw.Probe(cw.assets.demo_model("shapes_shortcut"), class_names=NAMES)


@pytest.fixture(scope="module")
def store(shortcut, tmp_path_factory):
    # Clean images for a model that learned the corner tags: many mistakes.
    images, labels, boxes = cw.assets.make_shortcut_shapes(48, seed=12, marked=False)
    path = tmp_path_factory.mktemp("explorer") / "clean.zarr"
    return cw.explain_dataset(
        shortcut, (images, labels), out=path, boxes=boxes, chunk=16, progress=False
    )


def explorer(store, **kwargs):
    return DatasetExplorer(store.path, per_page=PER_PAGE, cols=COLS, tile=TILE, **kwargs)


def tile_of(view, k):
    r, c = divmod(k, COLS)
    y, x = TITLE + r * (TILE + CAPTION + PAD), c * (TILE + PAD)
    return view[y : y + TILE + CAPTION, x : x + TILE]


def expected_tile(store, row):
    data = store.rows([row])
    heat = normalize_maps(data["maps"][:, :1].astype(np.float32), "map")[0, 0]
    pred, label = int(data["predicted"][0]), int(data["labels"][0])
    border = (40, 170, 60) if pred == label else (220, 40, 40)
    text = f"{row} {NAMES[pred][:8]} {data['confidence'][0]:.2f}"
    box = tuple(int(v) for v in data["boxes"][0])
    return render.thumbnail(data["images"][0], heat, TILE, 0.5, "jet", box, border, text)


def test_grid_shows_the_store_in_order(store):
    ex = explorer(store)
    assert cw.DatasetExplorer is DatasetExplorer
    assert ex.count == 48 and ex.page_slider.max == 5
    np.testing.assert_array_equal(ex.page_rows, np.arange(8))
    for k in (0, 5):
        np.testing.assert_array_equal(tile_of(ex.view, k), expected_tile(store, k))
    assert ex.view.shape == (TITLE + 2 * (TILE + CAPTION) + PAD, COLS * TILE + 3 * PAD, 3)
    ex.page_slider.value = 2
    assert ex.page == 2
    np.testing.assert_array_equal(ex.page_rows, np.arange(16, 24))
    np.testing.assert_array_equal(tile_of(ex.view, 0), expected_tile(store, 16))
    assert "accuracy" in ex.status.value


def test_sort_and_filters_as_a_user_would(store):
    ex = explorer(store)
    before = ex.view.copy()
    ex.sort.value = "loss"
    assert ex.sort_by == "loss" and ex.page == 0
    loss = store.column("loss")
    np.testing.assert_array_equal(ex.page_rows, np.argsort(-loss, kind="stable")[:8])
    np.testing.assert_array_equal(tile_of(ex.view, 0), expected_tile(store, ex.page_rows[0]))
    assert not np.array_equal(before, ex.view)
    ex.order.value = False
    assert ex.descending is False
    np.testing.assert_array_equal(ex.page_rows, np.argsort(loss, kind="stable")[:8])

    ex.sort.value = "energy_outside"
    outside = store.column("energy_outside")[:, 0]
    np.testing.assert_array_equal(ex.page_rows, np.argsort(outside, kind="stable")[:8])

    labels, predicted = store.column("labels"), store.column("predicted")
    ex.show_filter.value = "mistakes"
    assert ex.show == "mistakes" and ex.count == int(np.sum(labels != predicted)) > 0
    rows = ex.page_rows
    assert (labels[rows] != predicted[rows]).all()
    ex.show_filter.value = "correct"
    assert ex.count == int(np.sum(labels == predicted))
    ex.show_filter.value = "all"
    ex.true_filter.value = 2
    assert ex.true_class == 2 and ex.count == int(np.sum(labels == 2))
    assert (labels[ex.page_rows] == 2).all()
    ex.predicted_filter.value = 0
    assert ex.count == int(np.sum((labels == 2) & (predicted == 0)))
    assert "true triangle" in ex.title and "predicted circle" in ex.title


def test_confusion_matrix_click_filters_the_grid(store):
    ex = explorer(store)
    labels, predicted = store.column("labels"), store.column("predicted")
    expect = np.zeros((4, 4), int)
    np.add.at(expect, (labels, predicted), 1)
    np.testing.assert_array_equal(ex.confusion.color, expect)
    true, pred = np.unravel_index(np.argmax(expect - np.diag(np.diag(expect))), expect.shape)
    mark = ex.confusion
    # A click in the front end, through bqplot's own message dispatch.
    msg = {
        "event": "element_click",
        "data": {"data": 1, "index": 0, "rowNum": int(true), "columnNum": int(pred)},
    }
    mark._handle_custom_msgs(mark, msg, [])
    assert (ex.true_class, ex.predicted_class) == (true, pred)
    assert ex.true_filter.value == true and ex.predicted_filter.value == pred
    assert ex.count == expect[true, pred]
    rows = ex.page_rows
    assert (labels[rows] == true).all() and (predicted[rows] == pred).all()


def test_click_opens_a_thumbnail_in_the_comparator(store, shortcut):
    ex = explorer(store, model=shortcut)
    y, x = TITLE + TILE + CAPTION + PAD + 10, TILE + PAD + 10  # row 1, column 1: tile 5
    assert ex.click(y, x) == 5 and ex.selected == 5
    assert isinstance(ex.comparator, GradCAMComparator)
    assert ex.detail.children == (ex.comparator,)
    np.testing.assert_array_equal(ex.comparator._raw[0], store.rows([5])["images"][0])
    assert ex.comparator.layer.value == store.meta["layer"]
    # A mouse click on the bqplot picture: data coordinates, y pointing up.
    h = ex.view.shape[0]
    data = {"click_x": 10.0, "click_y": h - (TITLE + 10.0)}
    ex.picture.mark._handle_custom_msgs(
        ex.picture.mark, {"event": "element_click", "data": data}, []
    )
    assert ex.selected == 0
    np.testing.assert_array_equal(ex.comparator._raw[0], store.rows([0])["images"][0])
    assert ex.click(2, 2) == -1  # the title band
    ex.close()
    assert ex.comparator is None


def test_without_a_model_the_widget_says_so(store):
    ex = explorer(store)
    ex.click(TITLE + 5, 5)
    assert ex.selected == 0 and ex.comparator is None
    assert "pass model=" in ex.message.value


def test_a_million_image_store_opens_with_metadata_and_one_page(
    shapes_probe, tmp_path, monkeypatch
):
    zarr_storage = pytest.importorskip("zarr.storage")
    if not hasattr(zarr_storage, "LocalStore"):
        pytest.skip("counts reads through Zarr 3's LocalStore")
    n, chunk = 1_000_000, 256
    spec = RunSpec("gradcam", shapes_probe.last_conv_layer, "predicted")
    path = tmp_path / "big.zarr"
    big = DatasetStore.prepare(path, run_metadata(shapes_probe, spec, chunk, n))
    images, labels, boxes = cw.assets.make_shapes(chunk, seed=3)
    first = Chunk(0, 0, images, labels, boxes)
    big.write_chunk(0, 0, explain_chunk(shapes_probe, spec, first), np.zeros(16, np.uint8))
    big.finish(n)  # only the first chunk was computed; the rest reads as empty rows
    keys = []
    real_get = zarr_storage.LocalStore.get

    async def counting_get(self, key, *args, **kwargs):
        keys.append(key)
        return await real_get(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr_storage.LocalStore, "get", counting_get)
    ex = DatasetExplorer(path, per_page=PER_PAGE, cols=COLS, tile=TILE)
    assert ex.count == n and ex.page_slider.max == n // PER_PAGE - 1
    metadata = ("zarr.json", ".zgroup", ".zattrs", ".zarray", ".zmetadata")
    data_keys = [k for k in keys if not k.endswith(metadata)]
    assert data_keys, keys
    # Chunk keys end in their grid position: row block 0 of each array, nothing else.
    assert all(k.split("/c/")[1].split("/")[0] == "0" for k in data_keys), data_keys
    assert len(data_keys) <= 12
    np.testing.assert_array_equal(ex.page_rows, np.arange(PER_PAGE))


def test_partial_and_unlabelled_stores(shapes_probe, tmp_path):
    images = cw.assets.make_shapes(20, seed=8)[0]

    def broken():
        yield images[:10]
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError):
        cw.explain_dataset(shapes_probe, broken(), out=tmp_path / "p", chunk=8, progress=False)
    ex = DatasetExplorer(tmp_path / "p", per_page=PER_PAGE, cols=COLS, tile=TILE)
    assert ex.count == 8  # the finished chunk only
    assert "partial" in ex.status.value
    assert [v for _, v in ex.sort.options] == ["index", "confidence"]  # no labels: no loss
    assert ex.true_filter.disabled and ex.confusion_figure.title == "no labels"


def test_thumbnail_drawing():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = 200
    plain = render.thumbnail(image, size=64)
    np.testing.assert_array_equal(plain, render.resize_image(image, (64, 64)))
    framed = render.thumbnail(image, size=64, border=(220, 40, 40))
    assert (framed[:2] == (220, 40, 40)).all() and (framed[:, -2:] == (220, 40, 40)).all()
    np.testing.assert_array_equal(framed[2:-2, 2:-2], plain[2:-2, 2:-2])
    boxed = render.thumbnail(image, size=64, box=(4, 4, 12, 12))  # x2: pixels 8..23
    assert (boxed[8, 8:24] == 255).all() and (boxed[23, 8:24] == 255).all()
    assert (boxed[9:23, 9:23] == plain[9:23, 9:23]).all()
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1.0
    hot = render.thumbnail(image, heat, size=64, alpha=1.0, cmap="gray")
    assert hot[0, 0].min() > 200 and hot[63, 63].max() < 10  # the map alone, resized
    captioned = render.thumbnail(image, size=64, text="3 circle 0.99")
    assert captioned.shape == (80, 64, 3)
    np.testing.assert_array_equal(captioned[16:], plain)
    assert render.blank_tile(10).shape == (10, 10, 3)


def scaled_head(model, factor):
    """A copy of ``model`` with its Dense head (kernel, bias) times ``factor``:
    Grad-CAM maps ``factor`` times the original's (all zero for 0)."""
    copy = keras.models.clone_model(model)
    weights = model.get_weights()
    copy.set_weights(weights[:-2] + [w * factor for w in weights[-2:]])
    return copy


def test_tiny_maps_are_drawn_and_zero_maps_say_so(tmp_path):
    model = tiny_cnn(seed=3)
    images = random_images(8, 16, seed=5)
    tiny = scaled_head(model, 1e-9)  # raw maps ~1e-9: below float16's range
    store = cw.explain_dataset(tiny, images, out=tmp_path / "tiny", chunk=8, progress=False)
    ex = DatasetExplorer(store.path, per_page=8, cols=COLS, tile=TILE)
    ref = cw.gradcam(tiny, images, resize=False, normalize=None)
    assert 0 < ref.max() < 6e-8 and (ref.max(axis=(1, 2, 3)) > 0).all()
    heat = normalize_maps(ref[:, :1], "map")[:, 0]
    names = store.class_names
    for k in range(8):
        pred, conf = int(store.column("predicted")[k]), store.column("confidence")[k]
        text = f"{k} {names[pred][:8]} {conf:.2f}"
        assert ex.captions[k] == text
        drawn = tile_of(ex.view, k).astype(int)
        want = render.thumbnail(images[k], heat[k], TILE, 0.5, "jet", None, (150, 150, 150), text)
        blank = render.thumbnail(
            images[k], np.zeros_like(heat[k]), TILE, 0.5, "jet", None, (150, 150, 150), text
        )
        # float16 keeps 11 bits of the map: a colour level moves here and there.
        assert np.abs(drawn - want).mean() < 0.1, k
        assert np.abs(drawn - blank).mean() > 3, k  # a map, not a uniform wash
    assert "all zero" not in ex.title

    # A head of zeros: no evidence anywhere, every map zero. Said, not drawn blank silently.
    flat = scaled_head(model, 0.0)
    assert cw.gradcam(flat, images, resize=False, normalize=None).max() == 0
    zeros = cw.explain_dataset(flat, images, out=tmp_path / "zero", chunk=8, progress=False)
    ex = DatasetExplorer(zeros.path, per_page=8, cols=COLS, tile=TILE)
    assert ex.captions == [f"{k} map all zero" for k in range(8)]
    assert "8 maps on this page all zero" in ex.title
    assert not np.isnan(zeros.column("maps")).any() and zeros.column("maps").max() == 0
