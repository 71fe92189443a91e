"""target= in Score-CAM, deletion / insertion and explain_dataset, each against
a plain loop over the same score; bad targets fail before any model pass."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from tiny_models import random_images, two_output_model

import cnnwidgets as cw
from cnnwidgets.explain.metrics import deletion_auc, insertion_auc

L = keras.layers
T = cw.targets


@pytest.fixture(scope="module")
def model():
    return two_output_model()


@pytest.fixture(scope="module")
def images():
    return random_images(2, 16, seed=7, high=1.0)


def value(model, x):
    return np.asarray(model(x, training=False)[1])[:, 0]


def test_scorecam_with_a_target_weighs_channels_by_the_score_gain(model, images):
    target = T.Output("value", T.Regression())
    got = cw.gradcam(model, images, target=target, method="scorecam", layer="conv",
                     resize=False, normalize=None)
    acts = np.asarray(keras.Model(model.inputs, model.get_layer("conv").output)(images))
    base = value(model, np.zeros_like(images[:1]))[0]
    want = np.zeros((2, 16, 16))
    for n in range(2):
        for c in range(acts.shape[-1]):
            m = acts[n, :, :, c]
            span = m.max() - m.min()
            mask = (m - m.min()) / span if span > 0 else np.zeros_like(m)
            w = value(model, images[n : n + 1] * mask[None, :, :, None])[0] - base
            want[n] += w * m
    np.testing.assert_allclose(got[:, 0], np.maximum(want, 0), atol=1e-5)
    with pytest.raises(ValueError, match="'cam' explains classes only"):
        cw.gradcam(model, images, target=target, method="cam")


def test_deletion_and_insertion_with_a_target_follow_its_score(model, images):
    target = T.Output("value", T.Regression(sign=-1))
    maps = cw.saliency(model, images, target=target)
    steps = 4
    for fn, insert in ((deletion_auc, False), (insertion_auc, True)):
        auc, curves = fn(model, images, maps, target=target, steps=steps, baseline=0.0,
                         return_curves=True)
        order = np.argsort(-maps[:, 0].reshape(2, -1), axis=1, kind="stable")
        for n in range(2):
            for t in range(steps + 1):
                keep = np.zeros(256, bool)
                keep[order[n, : int(round(t * 256 / steps))]] = True
                keep = keep.reshape(16, 16, 1)
                x = np.where(keep, images[n], 0.0) if insert else np.where(keep, 0.0, images[n])
                assert abs(curves[n, 0, t] + value(model, x[None].astype(np.float32))[0]) < 1e-5
        frac = np.linspace(0, 1, steps + 1)
        np.testing.assert_allclose(auc[:, 0], np.trapezoid(curves[:, 0], frac, axis=-1),
                                   rtol=1e-5, atol=1e-6)


def test_metrics_refuse_bad_targets_before_any_model_pass(model, images, monkeypatch, tmp_path):
    maps = np.ones((2, 1, 16, 16), np.float32)
    monkeypatch.setattr(cw.Probe, "run", lambda *a, **k: pytest.fail("a model pass ran"))
    with pytest.raises(ValueError, match="Regression index 1 out of range"):
        deletion_auc(model, images, maps, target=T.Output("value", T.Regression(1)))
    with pytest.raises(ValueError, match="K=1 maps per image but target gives 2"):
        insertion_auc(model, images, maps, target=[T.Output("value", T.Regression())] * 2)
    with pytest.raises(TypeError, match="not both"):
        deletion_auc(model, images, maps, classes=0, target=T.Output("value", T.Regression()))
    with pytest.raises(TypeError, match="not both"):
        cw.explain_dataset(model, images, out=tmp_path / "s.zarr", classes=[0, 0],
                           target=T.Output("value", T.Regression()), progress=False)
    assert not (tmp_path / "s.zarr").exists()


def test_explain_dataset_with_a_target(model, images, tmp_path):
    target = T.Output("value", T.Regression())
    store = cw.explain_dataset(model, images, out=tmp_path / "s.zarr", target=target,
                               layer="conv", dtype="float32", chunk=1, progress=False)
    assert store.meta["target"] == ["value: value"]
    assert store.meta["classes"] == "target" and len(store.meta["target_key"][0]) == 32
    want = cw.gradcam(model, images, target=target, layer="conv", resize=False,
                      normalize=None)
    np.testing.assert_allclose(store.column("maps"), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(store.column("target_score")[:, 0], value(model, images),
                               rtol=1e-5)
    assert (store.column("predicted") == -1).all() and (store.column("classes") == -1).all()
    # The same run resumes; another target does not.
    cw.explain_dataset(model, images, out=tmp_path / "s.zarr", target=target, layer="conv",
                       dtype="float32", chunk=1, progress=False)
    with pytest.raises(ValueError, match="target_key"):
        cw.explain_dataset(model, images, out=tmp_path / "s.zarr", layer="conv",
                           target=T.Output("value", T.Regression(sign=-1)),
                           dtype="float32", chunk=1, progress=False)
    with pytest.raises(ValueError, match="no output 'valeu'"):
        cw.explain_dataset(model, images, out=tmp_path / "t.zarr",
                           target=T.Output("valeu", T.Regression()), progress=False)
    assert not (tmp_path / "t.zarr").exists()
