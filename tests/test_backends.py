"""The JAX backend gives the maps TensorFlow gives (issue 26).

Every public map function (all CAM and saliency methods, occlusion,
maximization, reconstruction, the dataset engine, top activations, a
comparator slider move) runs on the demo model and on three
keras.applications architectures (weights=None, seeded, saved to .keras so
both backends read the same weights): here on TensorFlow, in a subprocess on
JAX (tests/backend_maps.py), compared array by array. ``make test-jax`` runs
the same file; without jax installed it is skipped.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parent

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install .[jax])"
)

#: Relative tolerance: |jax - tf| <= TOL * max(1, max |tf|) per array.
TOL = 1e-4


def _maps_module():
    spec = importlib.util.spec_from_file_location("backend_maps", HERE / "backend_maps.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _applications(tmp: pathlib.Path) -> None:
    """Three architectures at 32 x 32, 10 classes, seeded random weights.

    EfficientNetB0 compiles for minutes on two cores, so `make test` (the
    suite's time budget) runs the demo model alone and `make test-jax`
    (CNNWIDGETS_FULL_MATRIX=1) the three applications too."""
    apps = keras.applications
    builds = {
        "mobilenet_v2": lambda: apps.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                                 weights=None, classes=10),
        "mobilenet_v3_small": lambda: apps.MobileNetV3Small(
            input_shape=(32, 32, 3), alpha=0.75, weights=None, classes=10),
        "efficientnet_b0": lambda: apps.EfficientNetB0(input_shape=(32, 32, 3), weights=None,
                                                       classes=10),
    }
    if not os.environ.get("CNNWIDGETS_FULL_MATRIX"):  # `make test-jax` runs all three
        builds.pop("efficientnet_b0")
        # The suite's budget: `make test` compares the demo model's every function;
        # the applications run in `make test-jax`.
        builds.clear()
    for i, (name, build) in enumerate(builds.items()):
        keras.utils.set_random_seed(i)
        build().save(tmp / "models" / f"{name}.keras")


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    here = keras.backend.backend()
    if here not in ("tensorflow", "jax"):
        pytest.skip(f"compares TensorFlow with JAX; this process runs {here}")
    other = "jax" if here == "tensorflow" else "tensorflow"
    tmp = tmp_path_factory.mktemp("backends")
    (tmp / "models").mkdir()
    _applications(tmp)
    env = dict(os.environ, KERAS_BACKEND=other, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.setdefault("JAX_PLATFORMS", "cpu")
    run = subprocess.Popen(
        [sys.executable, str(HERE / "backend_maps.py"), str(tmp / "models"),
         str(tmp / f"{other}.npz")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    _maps_module().main(str(tmp / "models"), str(tmp / f"{here}.npz"))  # meanwhile, here
    log, _ = run.communicate(timeout=900)
    assert run.returncode == 0, log[-4000:]
    print(log)
    return np.load(tmp / "tensorflow.npz"), np.load(tmp / "jax.npz")


def test_every_function_same_on_jax_as_on_tensorflow(both):
    tf_maps, jax_maps = both
    assert sorted(tf_maps.files) == sorted(jax_maps.files)
    bad = []
    for key in tf_maps.files:
        a, b = tf_maps[key], jax_maps[key]
        assert a.shape == b.shape, key
        assert np.isfinite(b).all(), key
        # uint8 pictures (maximize, the comparator view) may round one step apart
        tol = 1.0 if ("maximize" in key or "view" in key) else TOL * max(1.0, np.abs(a).max())
        diff = float(np.abs(a - b).max()) if a.size else 0.0
        print(f"{key}: max |jax - tf| = {diff:.2g}")
        if diff > tol:
            bad.append(f"{key}: max |jax - tf| = {diff:.3g} > {tol:.3g}")
    assert not bad, "\n".join(bad)
    # the maps are not all zero (a broken backend giving zeros everywhere would pass)
    assert np.abs(jax_maps["shapes_cnn:gradcam"]).max() > 0
    if "mobilenet_v2:guided" in jax_maps.files:
        assert np.abs(jax_maps["mobilenet_v2:guided"]).max() > 0


JAX_GRADCAM = r"""
import numpy as np, jax, jax.numpy as jnp, keras, cnnwidgets as cw
model = cw.assets.demo_model("shapes_cnn")
x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.float32)
got = cw.gradcam(model, x, classes=[1], resize=False, normalize=None)[:, 0]
# the plainest Grad-CAM in jax: split the Sequential at the last conv layer
layers = model.layers
cut = [l.name for l in layers].index(cw.Probe(model).last_conv_layer) + 1
values = [v.value for v in model.weights]
def below(x):
    for l in layers[1:cut]:  # after the InputLayer
        x = l(x)
    return x
def logit(a):
    for l in layers[cut:-1]:
        a = l(a)
    dense = layers[-1]
    return (a @ dense.kernel.value + dense.bias.value)[:, 1]
a = below(x)
g = jax.grad(lambda a: jnp.sum(logit(a)))(a)
w = g.mean(axis=(1, 2))
want = np.maximum(np.einsum("nhwc,nc->nhw", np.asarray(a), np.asarray(w)), 0)
err = np.abs(got - want).max() / np.abs(want).max()
print("ERR", err)
assert err < 1e-4, err
"""


def test_gradcam_on_jax_matches_a_plain_jax_grad(tmp_path):
    """Independent reference: Grad-CAM written with jax.grad on the model's layers."""
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", JAX_GRADCAM], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
