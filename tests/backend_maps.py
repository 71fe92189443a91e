"""Every public map function on a few models, saved to one .npz: run once per
Keras backend (``python tests/backend_maps.py MODELS_DIR OUT.npz``, with
KERAS_BACKEND set by the caller) and compare the files (tests/test_backends.py).

The models are .keras files written by the test process, so every backend
loads the same weights."""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np


def images_for(shape, n=2, seed=0):
    """Raw pixels (n, H, W, C) uint8, the same in every process."""
    return np.random.default_rng(seed).integers(0, 256, (n,) + tuple(shape), dtype=np.uint8)


def maps_of(name: str, model, full: bool) -> dict[str, np.ndarray]:
    """{function/method: array} for one model. ``full``: every public function;
    else the two gradient paths (the graph split at a layer: Grad-CAM; the
    guided ReLU rule: guided backprop), as JAX compiles each function per
    model for seconds (torch runs eagerly, but the applications share this list)."""
    import cnnwidgets as cw
    from cnnwidgets.explain import methods

    shape = tuple(model.input_shape[1:])
    x = images_for(shape)
    probe = cw.Probe(model)
    layer = probe.last_conv_layer
    if not full:
        out = {m: methods.explain(probe, x, classes=[0, 1], method=m, layer=layer,
                                  normalize=None) for m in ("gradcam", "guided")}
        return {f"{name}:{k}": np.asarray(v, np.float32) for k, v in out.items()}
    out = {"predict": probe.predict(x), "activations": probe.activations(x, layer)[layer]}
    classes = [0, 1]
    for m in methods.MAP_METHODS:
        if m == "scorecam" and not full:
            continue
        opts = {"n_samples": 4} if m == "smoothgrad" else {}
        opts.update({"steps": 8} if m == "integrated" else {})
        try:
            out[m] = methods.explain(probe, x, classes=classes, method=m, layer=layer,
                                     normalize=None, **opts)
        except ValueError as exc:  # e.g. plain CAM on a layer not feeding the pooling
            out[m] = np.zeros(0)
            print(f"{name}: {m} skipped ({exc})")
    out["occlusion"] = cw.occlusion(probe, x, classes=classes, patch=8, stride=8)
    out["occlusion-mean"] = cw.occlusion(probe, x[:1], classes=classes, patch=12, stride=6,
                                         fill="mean")
    out["maximize-pixel"] = cw.maximize(probe, layer, [0, 1], size=shape[0], steps=8,
                                        param="pixel").astype(np.float32)
    # Two steps, no random warps (TensorFlow's gradient of its projective warp is
    # the inverse warp of the gradient, not the exact adjoint that JAX and torch
    # take: 14 grey levels apart after one step). Adam moves every spectrum element
    # by about lr whatever the size of its gradient, and from the near-flat start
    # most are tiny, so float rounding grows step by step: torch's and TensorFlow's
    # gradients agree to 1e-6 at the same point, yet their images part from the
    # third step on (25 grey levels after 8 steps on the demo model).
    out["maximize-fourier"] = cw.maximize(probe, layer, [0], size=shape[0], steps=2,
                                          jitter=0).astype(np.float32)
    out["reconstruct-gradient"] = cw.reconstruct(probe, x, layer, 1, method="gradient")
    if full:
        out["reconstruct-deconvnet"] = cw.reconstruct(probe, x, layer, 1, method="deconvnet")
        with tempfile.TemporaryDirectory() as tmp:
            store = cw.explain_dataset(probe, images_for(shape, 6, seed=3), os.path.join(tmp, "s"),
                                       classes=[0, 1], chunk=4, dtype="float32")
            out["explain_dataset"] = np.asarray(store.column("maps"))
        top = cw.top_activations(probe, images_for(shape, 6, seed=4), layer, k=2)
        out["top_activations"] = np.asarray(top.values, np.float32)
        comparator = cw.GradCAMComparator(model, x[0], classes=[0, 1])
        comparator.wait()
        comparator.class_slider.value = comparator.class_slider.max
        comparator.wait()
        out["comparator-view"] = comparator.view.astype(np.float32)
        comparator.close()
    return {f"{name}:{k}": np.asarray(v, np.float32) for k, v in out.items()}


def main(models_dir: str, out_path: str) -> None:
    import keras

    import cnnwidgets as cw

    t0 = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    for fname in sorted(os.listdir(models_dir)):
        t = time.perf_counter()
        model = keras.models.load_model(os.path.join(models_dir, fname), compile=False)
        arrays.update(maps_of(fname.removesuffix(".keras"), model, full=False))
        print(f"{fname}: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    demo = cw.assets.demo_model("shapes_cnn")
    arrays.update(maps_of("shapes_cnn", demo, full=True))
    print(f"shapes_cnn: {time.perf_counter() - t:.1f} s")
    np.savez(out_path, **arrays)
    print(f"{keras.backend.backend()}: {len(arrays)} arrays in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
