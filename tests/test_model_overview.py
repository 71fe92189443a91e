"""ModelOverview driven as a user would: pick layers, fold nested models, open
an ActivationBrowser, set a comparator's Grad-CAM layer; no browser needed."""

from __future__ import annotations

import ipywidgets as widgets
import keras
import numpy as np
import pytest
from tiny_models import nested_base_cnn

import cnnwidgets as cw
from cnnwidgets import render
from cnnwidgets.widgets import model_overview

L = keras.layers


class FakeComparator:
    """Stands in for GradCAMComparator: all the overview needs is its `layer` Dropdown."""

    def __init__(self, probe):
        self.layer = widgets.Dropdown(options=cw.widgets.base.layer_options(probe))
        self.seen = []
        self.layer.observe(lambda c: self.seen.append(c["new"]), names="value")


class FakeBrowser(widgets.VBox):
    made: list = []

    def __init__(self, model, images, layer=None):
        super().__init__()
        self.args = (model, images)
        self.layer = widgets.Dropdown(options=[layer])
        FakeBrowser.made.append(self)


def test_view_and_layer_control(shapes_model, shapes_images):
    before = shapes_model.predict_on_batch(shapes_images[0][:2].astype("float32"))
    ov = cw.ModelOverview(shapes_model)
    assert isinstance(ov, widgets.VBox)
    assert ov.layer.value == "block3_conv2"  # the last conv layer
    view = ov.view
    assert view.dtype == np.uint8 and view.ndim == 3 and view.shape[2] == 3
    # One line per layer plus input, header, title and total.
    assert view.shape[0] >= 16 * (len(shapes_model.layers) + 3)
    assert "receptive field 32 px / 4" in ov.details.value
    ov.layer.value = "block1_conv1"
    assert not np.array_equal(ov.view, view)  # the highlight moved
    assert "3 px / 1" in ov.details.value and "inputs: rescale" in ov.details.value
    # Without images or a comparator the buttons say what is missing.
    assert ov.open_browser.disabled and "images=" in ov.open_browser.tooltip
    assert ov.to_comparator.disabled
    ov.layer.value = "predictions"
    assert "not inspectable" in ov.details.value
    after = shapes_model.predict_on_batch(shapes_images[0][:2].astype("float32"))
    np.testing.assert_array_equal(before, after)


def test_static_outputs(shapes_probe, tmp_path):
    ov = cw.ModelOverview(shapes_probe)
    path = ov.save(tmp_path / "overview.png")
    np.testing.assert_array_equal(render.from_png(path.read_bytes()), ov.view)
    bundle = ov._repr_mimebundle_()
    assert "image/png" in bundle and "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/html"].startswith("<table") and "block3_conv2" in bundle["text/html"]
    assert "Total params" in bundle["text/plain"]
    assert "block2_pool" in ov.summary()


def test_nested_models_fold_and_unfold():
    ov = cw.ModelOverview(nested_base_cnn())
    assert list(ov.folds) == ["base"]
    # The default layer (base/b) sits inside the nested model, so it was opened.
    assert ov.layer.value == "base/b" and ov.expanded == ["base"]
    open_view = ov.view
    ov.layer.value = "stem"
    ov.folds["base"].value = False
    assert ov.expanded == [] and ov.view.shape[0] == open_view.shape[0] - 3 * 16
    assert ov.layer.value == "stem"
    # Picking a hidden layer unfolds its model.
    ov.layer.value = "base/mp"
    assert ov.folds["base"].value
    # Folding the model that holds the selection moves it to the next visible layer.
    ov.folds["base"].value = False
    assert ov.layer.value == "gap"
    assert "(3 layers)" in ov.folds["base"].description
    assert cw.ModelOverview(nested_base_cnn(), expanded=True, layer="stem").expanded == ["base"]


def test_opens_a_browser_with_a_stand_in(monkeypatch, shapes_probe, shapes_images):
    monkeypatch.setattr(model_overview, "_activation_browser_class", lambda: FakeBrowser)
    FakeBrowser.made.clear()
    images = shapes_images[0][:3]
    ov = cw.ModelOverview(shapes_probe, images=images, layer="block2_conv1")
    assert not ov.open_browser.disabled
    ov.open_browser.click()
    assert len(FakeBrowser.made) == 1 and ov.browser is FakeBrowser.made[0]
    assert ov.panel.children == (ov.browser,)
    assert ov.browser.args[0] is shapes_probe and ov.browser.args[1].shape == (3, 64, 64, 3)
    assert ov.browser.layer.value == "block2_conv1"
    ov.layer.value = "gap"
    assert ov.open_browser.disabled


def test_sets_the_comparator_layer(shapes_probe):
    comp = FakeComparator(shapes_probe)
    ov = cw.ModelOverview(shapes_probe, comparator=comp, layer="block2_conv2")
    assert not ov.to_comparator.disabled
    ov.to_comparator.click()
    assert comp.layer.value == "block2_conv2" and comp.seen[-1] == "block2_conv2"
    assert "block2_conv2" in ov.message.value


def test_real_activation_browser(shapes_probe, shapes_images):
    pytest.importorskip("cnnwidgets.widgets.activation_browser")
    ov = cw.ModelOverview(shapes_probe, images=shapes_images[0][:2], layer="block1_conv2")
    browser = ov._on_open_browser()
    assert browser is ov.browser and browser.layer.value == "block1_conv2"
    ov.layer.value = "block3_conv1"
    ov.open_browser.click()  # reuses the open browser
    assert ov.browser is browser and browser.layer.value == "block3_conv1"
    if hasattr(browser, "wait"):
        browser.wait()  # let its background work finish before the test ends


def test_real_comparator(shapes_probe, shapes_images):
    mod = pytest.importorskip("cnnwidgets.widgets.gradcam_comparator")
    comp = mod.GradCAMComparator(shapes_probe, shapes_images[0][0])
    comp.wait()
    ov = cw.ModelOverview(shapes_probe, comparator=comp, layer="block2_conv2")
    ov.to_comparator.click()
    comp.wait()  # its maps are recomputed in the background; let that finish
    assert comp.layer.value == "block2_conv2"


def test_bad_arguments():
    model = nested_base_cnn()
    with pytest.raises(ValueError, match="closest"):
        cw.ModelOverview(model, layer="stemm")
    with pytest.raises(ValueError, match="nested model"):
        cw.ModelOverview(model, layer="base")
    with pytest.raises(TypeError):
        cw.ModelOverview("not a model")
