"""OcclusionScrubber driven as a user would: sliders, clicks, menus; assertions
on its state and on ``view``."""

from __future__ import annotations

import numpy as np
import pytest

import cnnwidgets as cw


@pytest.fixture
def scrubber(shapes_probe, shapes_images):
    s = cw.OcclusionScrubber(shapes_probe, shapes_images[0][0], patch=16, stride=16)
    s.wait()
    return s


def test_builds_and_draws(scrubber, shapes_probe, shapes_images):
    image = shapes_images[0][0]
    assert scrubber.x.value == scrubber.y.value == 24  # centred
    assert scrubber.x.max == scrubber.y.max == 48
    assert scrubber.class_.value == int(shapes_probe.predict(image).argmax())
    view = scrubber.view
    assert view.dtype == np.uint8 and view.ndim == 3 and view.shape[1] > 2 * 64
    assert scrubber.progress.value == scrubber.progress.max
    assert scrubber.map_stride == 16
    cw.cache.clear()
    expected = cw.occlusion(
        shapes_probe, image, classes=[scrubber.class_.value], patch=16, stride=16
    )
    np.testing.assert_allclose(scrubber.sensitivity, expected[0, 0], atol=1e-6)
    assert "image/png" in scrubber._repr_mimebundle_()


def test_live_pass_follows_sliders(scrubber, shapes_probe, shapes_images):
    image = shapes_images[0][0]
    scrubber.x.value, scrubber.y.value = 8, 40
    want = cw.occlude(image, 8, 40, 16, "mean")
    np.testing.assert_array_equal(scrubber.occluded, want)
    probs = shapes_probe.predict(want)[0]
    np.testing.assert_allclose(scrubber.probabilities, probs, atol=1e-6)
    c = scrubber.class_.value
    base = shapes_probe.predict(image)[0]
    assert scrubber.drop == pytest.approx(float(base[c] - probs[c]), abs=1e-6)
    top = np.argsort(-probs)[: scrubber.top_k]
    assert list(scrubber.bars.x) == [shapes_probe.class_names[i] for i in top]
    np.testing.assert_allclose(scrubber.bars.y[1], probs[top], atol=1e-6)
    np.testing.assert_allclose(scrubber.bars.y[0], base[top], atol=1e-6)
    assert "drop" in scrubber.status.value


def test_rapid_moves_end_on_last_value(scrubber, shapes_images):
    rng = np.random.default_rng(0)
    moves = rng.integers(0, 49, size=(200, 2))
    for x, y in moves:
        scrubber.x.value = int(x)
        scrubber.y.value = int(y)
    last = tuple(int(v) for v in moves[-1])
    assert (scrubber.x.value, scrubber.y.value) == last
    np.testing.assert_array_equal(
        scrubber.occluded, cw.occlude(shapes_images[0][0], *last, 16, "mean")
    )
    after = scrubber.view.copy()
    scrubber.move(0, 0)
    assert not np.array_equal(scrubber.view, after)
    scrubber.move(*last)  # cached position: the same picture again
    np.testing.assert_array_equal(scrubber.view, after)


def test_click_centres_patch(scrubber):
    scrubber.click(10.0, 30.0)  # row 10, column 30, as every widget's click(y, x)
    assert (scrubber.x.value, scrubber.y.value) == (22, 2)
    # A front-end click, as bqplot dispatches it: data coordinates with y up
    # (row 60 of 64 is y = 4); the patch is clipped at the border.
    mark = scrubber.image_mark
    mark._handle_custom_msgs(
        mark, {"event": "element_click", "data": {"click_x": 63.0, "click_y": 4.0}}, []
    )
    assert (scrubber.x.value, scrubber.y.value) == (48, 48)


def test_patch_stride_fill_and_class_controls(scrubber, shapes_probe, shapes_images):
    image = shapes_images[0][0]
    scrubber.move(48, 48)
    scrubber.patch.value = 24
    assert scrubber.x.max == 40 and scrubber.x.value == 40 and scrubber.y.value == 40
    scrubber.wait()
    assert scrubber.sensitivity is not None and scrubber.map_stride == 16
    scrubber.stride.value = 8
    scrubber.wait()
    assert scrubber.map_stride == 8
    scrubber.fill.value = "zero"
    assert (scrubber.occluded[40:64, 40:64] == 0).all()
    scrubber.wait()
    other = (scrubber.class_.value + 1) % shapes_probe.num_classes
    scrubber.class_.value = other
    scrubber.wait()
    cw.cache.clear()
    want = cw.occlusion(shapes_probe, image, classes=other, patch=24, stride=8, fill="zero")
    np.testing.assert_allclose(scrubber.sensitivity, want[0, 0], atol=1e-6)
    base = shapes_probe.predict(image)[0]
    assert scrubber.drop == pytest.approx(
        float(base[other] - scrubber.probabilities[other]), abs=1e-6
    )
    # Back to settings seen before: the map comes from the widget's cache at once.
    scrubber.patch.value = 16
    scrubber.stride.value = 16
    scrubber.fill.value = "mean"
    scrubber.class_.value = int(base.argmax())
    scrubber.wait()
    assert scrubber.map_stride == 16


def test_classes_list_restricts_menu(shapes_model, shapes_images):
    names = cw.assets.demo_class_names("shapes_cnn")
    s = cw.OcclusionScrubber(
        shapes_model, shapes_images[0][1], classes=["cross", "circle"], class_names=names
    )
    assert [label for label, _ in s.class_.options] == ["cross", "circle"]
    assert s.class_.value == names.index("cross")
    s.wait()


def test_bad_arguments(shapes_probe, shapes_images):
    image = shapes_images[0][0]
    with pytest.raises(ValueError, match="larger than the image"):
        cw.OcclusionScrubber(shapes_probe, image, patch=80)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        cw.OcclusionScrubber(shapes_probe, image, stride=0)
    with pytest.raises(ValueError, match="unknown fill"):
        cw.OcclusionScrubber(shapes_probe, image, fill="noise")
    with pytest.raises(ValueError, match="one image"):
        cw.OcclusionScrubber(shapes_probe, shapes_images[0][:2])


def test_map_panel_is_composed_by_the_canvas_and_style_sends_no_map(scrubber, shapes_images):
    """The map panel is the map's colour indices over the photo, enlarged, the
    patch framed, under its caption; opacity, colour map and the outline are
    drawn by the page: moving them sends no map."""
    from cnnwidgets import render

    image = render.to_rgb_uint8(shapes_images[0][0])
    sens, s = scrubber.sensitivity, scrubber._scale
    sent = []
    for canvas in (scrubber.map_canvas, scrubber.legend_canvas):
        canvas.observe(lambda change: sent.append(change["name"]), ["maps", "image", "captions"])
    scrubber.opacity.value, scrubber.cmap.value = 0.7, "viridis"
    scrubber.move(8, 40)
    assert sent == []
    heat = render.colour_index(sens / sens.max())
    panel = render.enlarge(render.overlay_index(image, heat, 0.7, "viridis"), s)
    panel = render.frame(panel, (40 * s, 8 * s, 56 * s, 24 * s), 2)
    text = f"drop, max {float(sens.max()):.2f} (stride 16)"
    panel = render.caption(panel, text)
    left = scrubber._left
    view = scrubber.view
    np.testing.assert_array_equal(
        view[:, left.shape[1] + 4 : left.shape[1] + 4 + panel.shape[1]], panel
    )
    # The frame is the one render.outline draws.
    box = (40 * s, 8 * s, 56 * s, 24 * s)
    plain = render.enlarge(image, s)
    np.testing.assert_array_equal(render.frame(plain, box, 2), render.outline(plain, box, width=2))
    # A click on the map panel centres the patch there (image pixels).
    scrubber.map_canvas.click(16 + 10 * s, 30 * s)
    assert (scrubber.x.value, scrubber.y.value) == (22, 2)
