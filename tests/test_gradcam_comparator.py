"""GradCAMComparator: controls set as a user would, asserted on ``view`` and state."""

from __future__ import annotations

import numpy as np
import pytest

import cnnwidgets as cw
from cnnwidgets import gradients, render
from cnnwidgets.explain.cam import CAM_METHODS, gradcam, normalize_maps
from cnnwidgets.widgets.gradcam_comparator import GradCAMComparator


@pytest.fixture(scope="module")
def pair():
    images, labels, boxes = cw.assets.make_pairs(3, seed=11)
    return images


@pytest.fixture
def widget(shapes_probe, pair):
    return GradCAMComparator(shapes_probe, pair[0], methods=("gradcam",))


def expected_view(
    probe, image, pinned, cls, methods, mode="map", opacity=0.4, cmap="jet", plain=False
):
    """The picture built from scratch: cw.gradcam maps and the pure renderer,
    each row led by its legend (the method, its colour bar and what it means).
    Each panel is what the page's canvas composes: the map as 256 colour
    indices of its own [0, peak] (render.colour_index), drawn on the mode's
    scale by render.rescale_index (in raw mode a map above 1 by its raw
    indices), over the photo (render.overlay_index), enlarged, captioned.
    ``plain``: the textbook scales instead (each map divided by the mode's
    scale, then quantized once), which the page matches to one colour index."""
    probs = probe.predict(image)[0]
    maps, caps, peaks = [], [], []
    for m in methods:
        raw = gradcam(probe, image, classes=[pinned, cls], method=m, normalize=None)
        maps.append(raw[0])
        caps.append(
            [
                f"{what}: {probe.class_names[c]} {probs[c]:.1%}"
                for c, what in ((pinned, "pinned"), (cls, "slider"))
            ]
        )
        every = gradcam(
            probe, image, classes=list(range(probe.num_classes)), method=m, normalize=None
        )
        peaks.append(float(every.max()))
    maps = np.stack(maps)  # (M, 2, H, W) raw, >= 0
    own = normalize_maps(maps, "map")  # each map divided by its own peak
    index = render.colour_index(own)
    for i, row in enumerate(maps):
        for j, heat in enumerate(row):
            top = float(heat.max())
            scale = {"map": top, "method": peaks[i], "raw": 1.0}[mode]
            if plain or (mode == "raw" and top > 1):  # raw above 1: sent as raw indices
                index[i, j] = render.colour_index(np.clip(heat / scale, 0, 1) if top else heat)
            elif top > 0:
                index[i, j] = render.rescale_index(index[i, j], top / scale)
    height = 16 + image.shape[0] * max(1, 192 // max(image.shape[:2]))
    meaning = {
        "map": "each map divided by its own peak",
        "method": "raw value, one scale for the row",
        "raw": "raw value, clipped at 1",
    }[mode]
    legends = [
        render.legend(m, 0.0, peak if mode == "method" else 1.0, meaning, cmap, height)
        for m, peak in zip(methods, peaks)
    ]
    photo = render.to_rgb_uint8(image)
    factor = max(1, 192 // max(image.shape[:2]))
    rows = [
        [legend]
        + [
            render.caption(
                render.enlarge(render.overlay_index(photo, q, opacity, cmap), factor), text
            )
            for q, text in zip(row, row_caps)
        ]
        for legend, row, row_caps in zip(legends, index, caps)
    ]
    return render.panel_grid(rows)


def test_initial_state_ranks_classes_by_probability(widget, shapes_probe, pair):
    probs = shapes_probe.predict(pair[0])[0]
    assert widget.ranked == list(np.argsort(-probs, kind="stable"))
    assert widget.class_slider.min == 1 and widget.class_slider.max == 4
    assert widget.pinned.value == int(np.argmax(probs))
    assert widget.layer.value == "block3_conv2"
    assert set(CAM_METHODS) <= set(widget.methods.options)
    cls = widget.selected_class
    assert shapes_probe.class_names[cls] in widget.class_label.value
    assert f"{probs[cls]:.2%}" in widget.class_label.value
    np.testing.assert_allclose(widget.bars.y, probs[widget.ranked], rtol=1e-6)
    assert list(widget.bars.x) == [shapes_probe.class_names[c] for c in widget.ranked]
    view = widget.view
    assert view.dtype == np.uint8 and view.ndim == 3
    ref = expected_view(shapes_probe, pair[0], widget.pinned.value, cls, ["gradcam"])
    np.testing.assert_array_equal(view, ref)


def test_slider_costs_no_model_pass(widget, shapes_probe, monkeypatch):
    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the slider ran the model")

    monkeypatch.setattr(gradients, "layer_gradients", forbidden)
    monkeypatch.setattr(gradients, "input_gradients", forbidden)
    monkeypatch.setattr(shapes_probe, "run", forbidden)
    views = []
    for rank in (1, 2, 3, 4, 3):
        widget.class_slider.value = rank
        views.append(widget.view.copy())
    widget.opacity.value = 0.7
    widget.cmap.value = "viridis"
    widget.normalize.value = "method"
    assert calls == []
    assert not np.array_equal(views[0], views[1])


def test_rapid_slider_moves_end_on_last_value(shapes_probe, pair):
    w = GradCAMComparator(shapes_probe, pair[1], methods=("gradcam", "layercam"))
    rng = np.random.default_rng(0)
    for v in rng.integers(1, 5, size=200):
        w.class_slider.value = int(v)
    w.class_slider.value = 3
    w.wait()
    ref = expected_view(shapes_probe, pair[1], w.pinned.value, w.ranked[2], ["gradcam", "layercam"])
    np.testing.assert_array_equal(w.view, ref)
    fresh = GradCAMComparator(shapes_probe, pair[1], methods=("gradcam", "layercam"))
    fresh.class_slider.value = 3
    np.testing.assert_array_equal(w.view, fresh.view)


def test_bar_click_selects_class(widget):
    widget._on_bar_click(widget.bars, {"event": "element_click", "data": {"index": 3}})
    assert widget.class_slider.value == 4
    assert widget.selected_class == widget.ranked[3]
    assert list(widget.bars.selected) == [3]
    widget._on_bar_click(widget.bars, {"event": "element_click", "data": {"index": 99}})
    assert widget.class_slider.value == 4


def test_methods_layer_pinned_and_scale(widget, shapes_probe, pair):
    widget.methods.value = ("gradcam", "gradcam++")
    widget.wait()
    one_row = expected_view(
        shapes_probe, pair[0], widget.pinned.value, widget.selected_class, ["gradcam"]
    )
    assert widget.view.shape[0] > 1.8 * one_row.shape[0]
    np.testing.assert_array_equal(
        widget.view,
        expected_view(
            shapes_probe,
            pair[0],
            widget.pinned.value,
            widget.selected_class,
            ["gradcam", "gradcam++"],
        ),
    )
    for mode in ("method", "raw"):
        widget.normalize.value = mode
        args = (shapes_probe, pair[0], widget.pinned.value, widget.selected_class)
        ref = expected_view(*args, ["gradcam", "gradcam++"], mode=mode)
        np.testing.assert_array_equal(widget.view, ref)
        # Against the textbook scale (quantized once): one colour index at most,
        # i.e. at most one step of the jet table, at 40 % opacity.
        plain = expected_view(*args, ["gradcam", "gradcam++"], mode=mode, plain=True)
        step = np.abs(np.diff(render.colormap_lut("jet").astype(int), axis=0)).max()
        assert np.abs(widget.view.astype(int) - plain.astype(int)).max() <= 0.4 * step + 1
    widget.normalize.value = "map"
    widget.pinned.value = widget.ranked[3]
    widget.wait()
    assert "pinned: " + shapes_probe.class_names[widget.ranked[3]] in _captions(widget)
    widget.layer.value = "block3_conv1"
    widget.wait()
    ref = gradcam(
        shapes_probe, pair[0], classes=[widget.pinned.value], layer="block3_conv1", normalize=None
    )[0, 0]
    stored = widget._store[("block3_conv1", "gradcam", widget.pinned.value)]
    np.testing.assert_allclose(stored, ref, rtol=1e-5, atol=1e-6)


def _captions(widget):
    # The captions of the panels shown now.
    return " ".join(text for row in widget.captions for text in row)


def test_cam_on_wrong_layer_is_reported_not_raised(widget):
    widget.methods.value = ("gradcam", "cam")
    widget.wait()
    assert widget.status.value == ""
    widget.layer.value = "block2_conv2"
    widget.wait()
    assert "GlobalAveragePooling" in widget.status.value or "feeds" in widget.status.value


def test_binary_head_shows_both_classes_and_note(binary_probe):
    img = cw.assets.make_pairs(1, seed=5, classes=("square", "circle"))[0][0]
    w = GradCAMComparator(binary_probe, img)
    assert sorted(w.ranked) == [0, 1] and w.class_slider.max == 2
    assert "1 - p" in w.note.value
    probs = binary_probe.predict(img)[0]
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-6)
    w.pinned.value = 0  # square: the negative logit
    w.class_slider.value = w.ranked.index(1) + 1  # circle
    np.testing.assert_allclose(
        w._store[(w.layer.value, "gradcam", 0)],
        gradcam(binary_probe, img, classes=[0], normalize=None)[0, 0],
        rtol=1e-5,
        atol=1e-6,
    )
    assert not np.allclose(
        w._store[(w.layer.value, "gradcam", 0)], w._store[(w.layer.value, "gradcam", 1)]
    )
    # The view carries the note as its title line; the panels follow below.
    panels = expected_view(binary_probe, img, 0, 1, ["gradcam"])
    np.testing.assert_array_equal(w.view[-panels.shape[0] :], panels)


def test_render_panels_is_pure_and_places_panels():
    img = np.full((8, 8, 3), 100, np.uint8)
    maps = np.zeros((2, 2, 8, 8), np.float32)
    maps[1, 1] = 1.0
    caps = [["a", "b"], ["c", "d"]]
    clear = render.heatmap_grid(img, maps, caps, opacity=0.0, panel_size=16)
    # Two rows of two 16x16 panels, each under a 16-pixel caption, 6-pixel gaps.
    assert clear.shape == (2 * (16 + 16) + 6, 2 * 16 + 6, 3)
    np.testing.assert_array_equal(clear[16:32, 0:16], 100)
    full = render.heatmap_grid(img, maps, caps, opacity=1.0, cmap="gray", panel_size=16)
    np.testing.assert_array_equal(full[16:32, 0:16], 0)  # map 0 -> black
    np.testing.assert_array_equal(full[32 + 6 + 16 :, 22:38], 255)  # map 1 -> white
    again = render.heatmap_grid(img, maps, caps, opacity=1.0, cmap="gray", panel_size=16)
    np.testing.assert_array_equal(full, again)
    with pytest.raises(ValueError):
        render.heatmap_grid(img, maps, [["a"]])


def test_png_repr_save_and_no_mutation(shapes_model, pair, tmp_path):
    x = pair[2].astype("float32")[None]
    before = np.asarray(shapes_model(x))
    w = GradCAMComparator(
        shapes_model,
        pair[2],
        class_names=cw.assets.demo_class_names(),
        methods=("gradcam", "layercam"),
        top=3,
    )
    assert w.class_slider.max == 3 and len(w.bars.x) == 3
    assert "image/png" in w._repr_mimebundle_()
    # What the front end composes (per row a legend canvas and one canvas
    # drawing both panels, from the buffers they received) is exactly ``view``.
    cells = [c.compose() for c in w.panels.children]
    assert len(cells) == 4 and w.panels.layout.grid_template_columns.count("max-content") == 2
    np.testing.assert_array_equal(render.panel_grid([cells[:2], cells[2:]]), w.view)
    photo = render.from_png(w.panels.children[1].image)  # the photo travels losslessly
    np.testing.assert_array_equal(photo, render.to_rgb_uint8(pair[2]))
    noisy = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    np.testing.assert_array_equal(render.from_png(render.to_png(noisy)), noisy)
    path = w.save(tmp_path / "v.png")
    np.testing.assert_array_equal(render.from_png(path.read_bytes()), w.view)
    np.testing.assert_array_equal(np.asarray(shapes_model(x)), before)


def test_bad_arguments(shapes_probe, pair):
    with pytest.raises(ValueError, match="unknown map method"):
        GradCAMComparator(shapes_probe, pair[0], methods=("gradcam", "nope"))
    with pytest.raises(ValueError, match="one image"):
        GradCAMComparator(shapes_probe, pair[:2])
    with pytest.raises(ValueError, match="not \\(N, H, W, C\\)"):
        GradCAMComparator(shapes_probe, pair[0], layer="gap")
    with pytest.raises(ValueError, match="top"):
        GradCAMComparator(shapes_probe, pair[0], top=0)


def test_selected_class_is_a_linkable_trait(shapes_probe, pair):
    import ipywidgets

    widget = GradCAMComparator(shapes_probe, pair[0], layout=ipywidgets.Layout(width="600px"))
    assert widget.layout.width == "600px"  # constructor kwargs reach the VBox
    seen = []
    widget.observe(lambda change: seen.append(change["new"]), "selected_class")
    widget.class_slider.value = 3
    assert seen[-1] == widget.selected_class == widget.ranked[2]
    box = ipywidgets.IntText()
    ipywidgets.link((widget, "selected_class"), (box, "value"))
    box.value = widget.ranked[0]
    assert widget.class_slider.value == 1
    with pytest.raises(Exception, match="not on the slider"):
        widget.selected_class = 99
    widget.close()


def test_browser_only_controls_send_no_maps(shapes_model):
    """Slider, pinned (among the offered targets), opacity and colour map change
    only what the canvases draw, and so does the scale mode: no map, image or
    caption is sent again, and the page's traits (map picked, opacity, colour
    table, variant) follow the controls."""
    image = cw.assets.make_shapes(1, seed=2)[0][0]
    w = GradCAMComparator(shapes_model, image, methods=("gradcam", "gradcam++"), top=3).wait()
    sent = []
    for row in w._rows:
        for canvas in row:
            canvas.observe(
                lambda change: sent.append(change["name"]), ["maps", "image", "captions"]
            )
    legend, pair = w.panels.children[:2]
    first = w.view.copy()
    start = w.class_slider.value
    other = 3 if start != 3 else 1
    w.class_slider.value = other
    w.wait()
    assert pair.second_shown == other and pair.map_in(1) == w.ranked.index(w.selected_class)
    moved = w.view.copy()
    assert not np.array_equal(moved, first)
    w.pinned.value = w.ranked[1]
    w.wait()
    assert pair.map_in(0) == 1 and pair.shown == w.pinned.index
    w.opacity.value = 0.2
    w.cmap.value = "viridis"
    assert sent == []
    assert pair.opacity == 0.2 and pair.cmap_name == legend.cmap_name == "viridis"
    # The legend's colour bar follows the colour map in the page too.
    vmax, meaning = 1.0, "each map divided by its own peak"
    height = legend.image_shape[0]
    np.testing.assert_array_equal(
        legend.compose(), render.legend("gradcam", 0.0, vmax, meaning, "viridis", height)
    )
    # The scale mode too: the page picks each map's gain and the legend's frame.
    peak = w._row_peak("gradcam")
    meanings = {
        "map": (1.0, "each map divided by its own peak"),
        "method": (peak, "raw value, one scale for the row"),
        "raw": (1.0, "raw value, clipped at 1"),
    }
    for mode in ("method", "raw", "map"):
        w.normalize.value = mode
        assert all(c.variant == w.normalize.index for c in (legend, pair))
        vmax, meaning = meanings[mode]
        np.testing.assert_array_equal(
            legend.compose(), render.legend("gradcam", 0.0, vmax, meaning, "viridis", height)
        )
    assert sent == []
    w.pinned.value = w.ranked[0]
    w.opacity.value, w.cmap.value = 0.4, "jet"
    w.class_slider.value = other
    np.testing.assert_array_equal(w.view, moved)
    # A class outside the offered ones needs its maps: computed, then sent.
    outside = next(c for _, c in w.pinned.options if c not in w.ranked)
    w.pinned.value = outside
    w.wait()
    assert "maps" in sent and pair.map_in(0) == len(w.ranked)
    w.close()


def test_an_all_zero_map_says_so_in_its_caption():
    """With every head weight negative, each class's Grad-CAM weights are
    negative on non-negative activations, so every map is ReLU(<0) = 0: the
    panel must say that, not show a bare photo as if it were a map."""
    from tiny_models import random_images, tiny_cnn

    model = tiny_cnn(head="linear", units=3, seed=2)
    kernel = model.get_layer("head").kernel
    kernel.assign(-np.abs(kernel.numpy()) - 0.1)
    image = random_images(1, 16, seed=1)[0]
    maps = cw.gradcam(model, image[None], classes=[0, 1, 2], layer="conv2", normalize=None)
    assert not maps.any()  # the premise, from the plain function
    w = GradCAMComparator(model, image, layer="conv2", top=3).wait()
    captions = w.captions[0]  # the row's (pinned, slider) captions
    assert len(captions) == 2 and all(t.endswith("| map all zero") for t in captions)
    w.close()


def test_every_panel_follows_the_layer_as_a_fresh_widget_would(shapes_model, pair):
    """Guided Grad-CAM depends on the CAM layer too: after a layer change every
    panel equals the panel of a widget built at the new layer (it was stale)."""
    methods = ("gradcam", "guided-gradcam")
    w = GradCAMComparator(shapes_model, pair[0], methods=methods, top=3).wait()
    before = w.view.copy()
    w.layer.value = "block2_conv2"
    w.wait()
    fresh = GradCAMComparator(
        shapes_model, pair[0], methods=methods, layer="block2_conv2", top=3
    ).wait()
    np.testing.assert_array_equal(w.view, fresh.view)
    # and the guided Grad-CAM row did change (it is not the same picture twice)
    half = before.shape[0] // 2
    assert not np.array_equal(before[half:], w.view[half:])
    for widget in (w, fresh):
        widget.close()


def test_aliases_are_accepted_as_everywhere_else(shapes_model, pair):
    w = GradCAMComparator(shapes_model, pair[0], methods=("Grad-CAM++", "IG"), top=2).wait()
    assert w.methods.value == ("gradcam++", "integrated")
    w.close()
    with pytest.raises(ValueError, match="unknown map method"):
        GradCAMComparator(shapes_model, pair[0], methods=("gradcam", "nope"))


def test_one_canvas_draws_both_panels_of_a_row(shapes_model, pair):
    """The pinned and slider panels of a method row come from one transfer (one
    photo, one set of maps, both panels' captions) in one canvas; a click on its
    second panel (the slider's) pins the slider's class, one on the first does not."""
    w = GradCAMComparator(shapes_model, pair[0], top=3).wait()
    legend, both = w.panels.children
    assert both.panels == 2 and both.panel_gap == 6
    k = len(dict.fromkeys(w.ranked + [w.pinned.value]))
    assert both.maps_shape[0] >= k and len(both.labels) == both.maps_shape[0]
    assert render.from_png(both.captions).shape[0] == 2 * k * 16  # pinned's, then slider's
    h, w_ = both.image_shape
    up = both.upscale
    np.testing.assert_array_equal(
        both.compose(),
        render.hstack([both.compose()[:, : w_ * up], both.compose()[:, w_ * up + 6 :]], pad=6),
    )
    w.class_slider.value = 2
    pinned = w.pinned.value
    both.click(16 + 5, 5)  # first panel: nothing
    assert w.pinned.value == pinned
    both.click(16 + 5, w_ * up + 6 + 5)  # second panel: pin the slider's class
    assert w.pinned.value == w.selected_class != pinned
    w.close()
