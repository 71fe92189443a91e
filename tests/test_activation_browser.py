"""ActivationBrowser driven as a user would: set controls, assert on ``view``
(pixels compared with an independent rendering of the channel) and state."""

from __future__ import annotations

import base64

import keras
import numpy as np
import pytest
from tiny_models import random_images, vgg_transfer

import cnnwidgets as cw
from cnnwidgets import render


def _expected_tile(fmap: np.ndarray, upscale: int, lo=None, hi=None) -> np.ndarray:
    """One channel drawn the plain way: min-max to [0, 1], viridis, nearest upscale."""
    fmap = fmap.astype(np.float64)
    lo = fmap.min() if lo is None else lo
    hi = fmap.max() if hi is None else hi
    unit = (fmap - lo) / (hi - lo) if hi > lo else np.zeros_like(fmap)
    return render.apply_colormap(unit).repeat(upscale, 0).repeat(upscale, 1)


def _tile_in_view(browser, k: int) -> np.ndarray:
    g = browser.grid
    th, tw = g.tile_hw
    oy, ox = browser.grid_origin
    r, c = divmod(k, g.cols)
    top, left = oy + r * (th + g.pad), ox + c * (tw + g.pad)
    return browser.view[top : top + th, left : left + tw]


@pytest.fixture(scope="module")
def browser(shapes_model, shapes_images):
    names = cw.assets.demo_class_names("shapes_cnn")
    return cw.ActivationBrowser(shapes_model, shapes_images[0][:3], class_names=names)


def test_tile_k_is_channel_k(browser, shapes_probe, shapes_images):
    browser.layer.value = "block2_conv1"
    browser.sort.value = "index"
    browser.scale.value = "channel"
    browser.image_index.value = 1
    browser.wait()
    acts = shapes_probe.activations(shapes_images[0][:3], ["block2_conv1"])["block2_conv1"][1]
    up = browser.grid.tile_hw[0] // acts.shape[0]
    assert browser.grid.tile_hw == (32 * up, 32 * up)
    for k in range(acts.shape[-1]):
        np.testing.assert_array_equal(_tile_in_view(browser, k), _expected_tile(acts[..., k], up))
    # Shared scale: every tile on the layer's [min, max], and the colour bar says so.
    browser.scale.value = "layer"
    assert (browser.grid.vmin, browser.grid.vmax) == (float(acts.min()), float(acts.max()))
    for k in (0, 7, 31):
        want = _expected_tile(acts[..., k], up, float(acts.min()), float(acts.max()))
        np.testing.assert_array_equal(_tile_in_view(browser, k), want)
    browser.scale.value = "channel"


@pytest.mark.parametrize("sort", ["mean", "max"])
def test_sort_against_plain_argsort(browser, shapes_probe, shapes_images, sort):
    browser.layer.value = "block3_conv1"
    browser.image_index.value = 0
    browser.sort.value = sort
    browser.wait()
    acts = shapes_probe.activations(shapes_images[0][:3], ["block3_conv1"])["block3_conv1"][0]
    key = acts.mean(axis=(0, 1)) if sort == "mean" else acts.max(axis=(0, 1))
    want = np.argsort(-key.astype(np.float64), kind="stable")
    np.testing.assert_array_equal(browser.grid.channels, want)
    up = browser.grid.tile_hw[0] // acts.shape[0]
    for k in (0, 1, 63):
        np.testing.assert_array_equal(
            _tile_in_view(browser, k), _expected_tile(acts[..., want[k]], up)
        )


def test_gradcam_sort_uses_channel_weights(browser, shapes_probe, shapes_images):
    from cnnwidgets.explain.cam import channel_weights

    browser.layer.value = "block3_conv2"
    browser.image_index.value = 2
    browser.sort.value = "gradcam"
    browser.sort_class.value = 1
    browser.wait()
    w = channel_weights(shapes_probe, shapes_images[0][2:3], [1], "block3_conv2")[0, 0]
    np.testing.assert_array_equal(browser.grid.channels, np.argsort(-w, kind="stable"))
    assert browser.sort_class.layout.display != "none"
    browser.sort.value = "index"
    browser.wait()


def test_layer_change_updates_view_and_last_value_wins(browser):
    browser.layer.value = "block1_conv1"
    browser.wait()
    first = browser.view.copy()
    assert browser.grid.tile_hw == (64, 64) and len(browser.grid.channels) == 16
    for name in ["block1_conv2", "block2_conv2", "block3_conv1", "block2_pool"] * 5:
        browser.layer.value = name
    browser.wait()
    assert browser.layer.value == "block2_pool"
    assert len(browser.grid.channels) == 32 and browser.grid.tile_hw[0] % 16 == 0
    assert browser.view.shape != first.shape or not np.array_equal(browser.view, first)


def test_rapid_channel_changes_end_on_last_value(browser, shapes_probe, shapes_images):
    browser.layer.value = "block3_conv2"
    browser.sort.value = "index"
    browser.wait()
    values = np.random.default_rng(0).integers(0, 64, size=200)
    for v in values:
        browser.channel.value = int(v)
    browser.wait()
    last = int(values[-1])
    assert browser.channel.value == last
    assert f"channel {last}</b>" in browser.stats.value
    acts = shapes_probe.activations(shapes_images[0][:3], ["block3_conv2"])["block3_conv2"]
    fmap = acts[browser.image_index.value, ..., last]
    assert f"max {fmap.max():.4g}" in browser.stats.value
    assert f"zeros {100 * np.mean(fmap == 0):.1f} %" in browser.stats.value
    # The selected tile is ringed (red separator pixels), the tile itself untouched.
    g = browser.grid
    t, l_, b, r = g.box_of(last)
    oy, ox = browser.grid_origin
    assert tuple(browser.view[oy + b, ox + l_]) == (230, 30, 30)
    # The histogram holds the layer's and the channel's activation distributions.
    x = browser.histogram.marks[0].x
    layer_frac, chan_frac = browser.histogram.marks[0].y
    assert layer_frac.sum() == pytest.approx(1.0) and chan_frac.sum() == pytest.approx(1.0)
    edges = np.histogram_bin_edges(acts[browser.image_index.value], bins=len(x))
    counts, _ = np.histogram(fmap, bins=edges)
    np.testing.assert_allclose(chan_frac, counts / counts.sum())
    # Every bar fits the figure's ranges (a range left to the front end stayed
    # at [0, 0] in Lab: no bars, and the browser's pictures froze).
    sx, sy = browser.histogram.marks[0].scales["x"], browser.histogram.marks[0].scales["y"]
    assert sx.min <= edges[0] and sx.max >= edges[-1]
    assert sy.min == 0 and max(layer_frac.max(), chan_frac.max()) <= sy.max < 1.2 * max(
        layer_frac.max(), chan_frac.max()
    )


def test_click_selects_the_tile_under_the_pointer(browser):
    browser.layer.value = "block2_conv2"
    browser.sort.value = "max"
    browser.wait()
    g = browser.grid
    th, tw = g.tile_hw
    oy, ox = browser.grid_origin
    k = g.cols + 2  # second row, third column
    y, x = oy + th + g.pad + th // 2, ox + 2 * (tw + g.pad) + 3
    assert browser.select_at(y, x) == g.channels[k]
    assert browser.channel.value == g.channels[k]
    # The page's click message arrives in canvas pixels (the grid, below the title).
    k2 = 1
    click = {"event": "click", "y": 1.5, "x": (tw + g.pad) + 1.5}
    browser.canvas._handle_custom_msg(click, [])  # ipywidgets' dispatch of a custom message
    assert browser.channel.value == g.channels[k2]
    assert browser.canvas.item_at(1.5, (tw + g.pad) + 1.5) == g.channels[k2]
    before = browser.channel.value
    assert browser.select_at(oy + th, ox + 1) == -1  # a separator: nothing changes
    assert browser.channel.value == before
    browser.sort.value = "index"
    browser.wait()


def test_dense_layers_are_bar_strips(browser, shapes_probe, shapes_images):
    labels = [label for label, _ in browser.layer.options]
    assert any("predictions" in s and "[bars]" in s for s in labels)
    assert labels.index(next(s for s in labels if "[bars]" in s)) > labels.index(
        next(s for s in labels if "block3_conv2" in s)
    )
    browser.layer.value = "gap"
    browser.wait()
    g = browser.grid
    assert g.kind == "bars" and len(g.channels) == 64
    gap = shapes_probe.activations(shapes_images[0][:3], ["gap"])["gap"][browser.image_index.value]
    assert g.vmax == pytest.approx(float(gap.max()))
    oy, ox = browser.grid_origin
    h, bw = g.tile_hw
    tallest = int(np.argmax(gap))
    col = browser.view[oy : oy + h, ox + tallest * (bw + g.pad)]
    assert np.count_nonzero(np.any(col != 255, axis=-1)) == h


def test_bad_layer_names(shapes_model, shapes_images):
    with pytest.raises(ValueError, match="closest.*block2_conv1"):
        cw.ActivationBrowser(shapes_model, shapes_images[0][:1], layer="block2_conv9")
    b = cw.ActivationBrowser(shapes_model, shapes_images[0][:1], layer="block1_pool")
    assert b.image_index.layout.display == "none"  # one image: no picker
    assert b.layer.value == "block1_pool"


def test_nested_model_layers():
    model = vgg_transfer(units=2, head="softmax", seed=0)
    images = random_images(2, 32, seed=0)
    before = model.predict_on_batch(images)
    b = cw.ActivationBrowser(model, images, layer="block4_conv3")
    assert b.layer.value == "vgg16/block4_conv3"
    assert any(label.startswith("vgg16 / block1_conv1") for label, _ in b.layer.options)
    assert len(b.grid.channels) == 256 and b.grid.cols == 16
    probe = cw.Probe(model)
    acts = probe.activations(images, ["vgg16/block4_conv3"])["vgg16/block4_conv3"][0]
    up = b.grid.tile_hw[0] // acts.shape[0]
    for k in (0, 100, 255):
        np.testing.assert_array_equal(_tile_in_view(b, k), _expected_tile(acts[..., k], up))
    b.layer.value = "vgg16/block1_conv2"
    b.wait()
    assert len(b.grid.channels) == 64
    np.testing.assert_array_equal(model.predict_on_batch(images), before)


def test_paging_a_2048_channel_layer(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(2048, 1, activation="relu", name="wide")(inp)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    image = random_images(1, 4, seed=1)[0]
    b = cw.ActivationBrowser(model, image, layer="wide", per_page=256)
    assert b.page.max == 7 and b.page.layout.display != "none"
    assert len(b.grid.channels) == 256
    acts = cw.Probe(model).activations(image, ["wide"])["wide"][0]
    b.channel.value = 1500  # the page follows the channel
    assert b.page.value == 5
    np.testing.assert_array_equal(b.grid.channels, np.arange(1280, 1536))
    k = 1500 - 1280
    up = b.grid.tile_hw[0] // 4
    np.testing.assert_array_equal(_tile_in_view(b, k), _expected_tile(acts[..., 1500], up))
    b.page.value = 7
    np.testing.assert_array_equal(b.grid.channels, np.arange(1792, 2048))
    # The static picture travels with the widget and save() writes exactly ``view``.
    path = b.save(tmp_path / "browser.png")
    np.testing.assert_array_equal(render.from_png(path.read_bytes()), b.view)
    png = base64.b64decode(b._repr_mimebundle_()["image/png"])
    np.testing.assert_array_equal(render.from_png(png), b.view)


def _shown_parts(browser):
    title = render.from_png(browser.title_image.value)
    side = render.from_png(browser.side_image.value)
    return title, side


def test_view_is_the_parts_shown_and_a_channel_move_sends_no_maps(shapes_model):
    """The front end gets the title line and the side panel as pictures and the
    grid as the canvas's maps; ``view`` must be exactly them laid out, the grid
    as the canvas composes it (ring included). Moving the channel must not send
    the maps again, only the selection (that is what keeps the move cheap)."""
    images = cw.assets.make_shapes(1, seed=3)[0]
    b = cw.ActivationBrowser(shapes_model, images, layer="block2_conv1").wait()
    sent = []
    b.canvas.observe(lambda change: sent.append(change["name"]), names=["maps", "selected"])
    for channel in (0, 5, 11):
        b.channel.value = channel
        b.wait()
        title, side = _shown_parts(b)
        view = b.view
        grid = b.canvas.compose()
        h, w = grid.shape[:2]
        gap = view.shape[1] - w - side.shape[1]
        assert gap >= 0 and title.shape[1] == view.shape[1]
        np.testing.assert_array_equal(view[: title.shape[0]], title)
        below = view[title.shape[0] :]
        np.testing.assert_array_equal(below[: side.shape[0], w + gap :], side)
        # The grid drawn from the maps sent, plus the ring around the selected tile.
        want = render.ring(b.grid.picture, b.grid.box_of(channel), b.grid.pad)
        np.testing.assert_array_equal(below[:h, :w], want)
        np.testing.assert_array_equal(grid, want)
        assert b.canvas.selected == channel
        assert b.canvas.box_of(channel) == b.grid.box_of(channel)
    assert "maps" not in sent and sent.count("selected") == 2  # 0 was already selected
    b.close()


def test_a_big_layer_grid_is_averaged_down_to_the_grid_side():
    """64 maps of 96 x 96 make an 8 x 8 grid of 775 px; with grid_side=400 the
    tiles are 2 x 2 block means of the maps (checked against numpy)."""
    inputs = keras.Input((96, 96, 3))
    x = keras.layers.Conv2D(64, 3, padding="same", name="wide")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    images = random_images(1, 96, seed=4)
    b = cw.ActivationBrowser(model, images, grid_side=400).wait()
    assert b.grid.tile_hw == (48, 48)
    assert max(b.grid.picture.shape[:2]) <= 400
    acts = cw.Probe(model).activations(images, ["wide"])["wide"][0]
    means = acts.reshape(48, 2, 48, 2, 64).mean(axis=(1, 3))
    np.testing.assert_array_equal(_tile_in_view(b, 7), _expected_tile(means[..., 7], 1))
    full = cw.ActivationBrowser(model, images, grid_side=None).wait()
    assert full.grid.tile_hw == (96, 96)
    with pytest.raises(ValueError, match="grid_side"):
        cw.ActivationBrowser(model, images, grid_side=8)
    b.close()
    full.close()


def test_after_one_new_layer_every_layer_is_shown_without_a_model_pass(shapes_model):
    """The first layer change runs one pass for every layer of the image; later
    changes build no submodel and show the same numbers as a direct pass."""
    probe = cw.Probe(shapes_model)
    images = cw.assets.make_shapes(2, seed=8)[0]
    b = cw.ActivationBrowser(probe, images).wait()
    built = []
    submodel = probe.submodel
    probe.submodel = lambda paths: built.append(paths) or submodel(paths)
    paths = [p for _, p in b.layer.options]
    others = [p for p in paths if p != b.layer.value]
    b.layer.value = others[0]
    b.wait()
    assert len(built) == 1 and set(built[0]) == set(paths)
    for path in others[1:4]:
        b.layer.value = path
        b.wait()
        want = cw.Probe(shapes_model).activations(images[:1], [path])[path][0]
        got = b._data[b._key()]["acts"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert len(built) == 1
    b.close()
