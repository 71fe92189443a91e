"""The JAX and torch backends give the maps TensorFlow gives (issue 26).

Every public map function (all CAM and saliency methods, occlusion,
maximization, reconstruction, the dataset engine, top activations, a
comparator slider move) runs on the demo model and on three
keras.applications architectures (weights=None, seeded, saved to .keras so
every backend reads the same weights): in this process on TensorFlow, in a
subprocess on the other backend (tests/backend_maps.py), compared array by
array. The other backend is a parameter (jax, torch); `make test` installs
both (on CI a missing one fails, elsewhere it is skipped). ``make test-jax`` /
``make test-torch`` run the same file from the other side (this process on
JAX or torch, TensorFlow in the subprocess).
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

#: The backends compared with TensorFlow, and how to install each.
OTHERS = {"jax": "pip install .[jax]", "torch": "pip install .[torch]"}

#: Relative tolerance: |other - tf| <= TOL * max |tf| per array (maps of random-weight
#: networks peak near 1e-12, so a floor of 1 would pass anything there).
TOL = 1e-4


def missing(name: str) -> bool:
    """True where ``name`` is not installed, outside CI: `make test` installs both
    backends (the test extra), so on CI a missing one fails instead of skipping."""
    on_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return importlib.util.find_spec(name) is None and not on_ci


def _installed(name: str):
    return pytest.param(name, marks=pytest.mark.skipif(
        missing(name), reason=f"{name} is not installed ({OTHERS[name]})"))


def _maps_module():
    spec = importlib.util.spec_from_file_location("backend_maps", HERE / "backend_maps.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _applications(tmp: pathlib.Path) -> None:
    """Three architectures at 32 x 32, 10 classes, seeded random weights.

    EfficientNetB0 compiles for minutes on JAX on two cores, so `make test`
    (the suite's time budget) runs the demo model alone and `make test-jax` /
    `make test-torch` (CNNWIDGETS_FULL_MATRIX=1) the three applications too."""
    apps = keras.applications
    builds = {
        "mobilenet_v2": lambda: apps.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                                 weights=None, classes=10),
        "mobilenet_v3_small": lambda: apps.MobileNetV3Small(
            input_shape=(32, 32, 3), alpha=0.75, weights=None, classes=10),
        "efficientnet_b0": lambda: apps.EfficientNetB0(input_shape=(32, 32, 3), weights=None,
                                                       classes=10),
    }
    if not os.environ.get("CNNWIDGETS_FULL_MATRIX"):
        # The suite's budget: `make test` compares the demo model's every function;
        # the applications run in `make test-jax` and `make test-torch`.
        builds.clear()
    for i, (name, build) in enumerate(builds.items()):
        keras.utils.set_random_seed(i)
        build().save(tmp / "models" / f"{name}.keras")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """The .keras files every process reads (written here, once per module)."""
    tmp = tmp_path_factory.mktemp("backends")
    (tmp / "models").mkdir()
    _applications(tmp)
    return tmp


@pytest.fixture(scope="module", params=[_installed(name) for name in OTHERS])
def both(request):
    """(TensorFlow's maps, the other backend's maps, its name) for the parameter's
    backend. This process's maps are computed once, while the first subprocess runs."""
    other = request.param
    here = keras.backend.backend()
    if here not in ("tensorflow", other):
        pytest.skip(f"compares TensorFlow with {other}; this process runs {here}")
    tmp = request.getfixturevalue("models_dir")
    there = "tensorflow" if here == other else other
    env = dict(os.environ, KERAS_BACKEND=there, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.setdefault("JAX_PLATFORMS", "cpu")
    run = subprocess.Popen(
        [sys.executable, str(HERE / "backend_maps.py"), str(tmp / "models"),
         str(tmp / f"{there}.npz")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    mine = tmp / f"{here}.npz"
    if not mine.exists():  # meanwhile, here (once per module)
        _maps_module().main(str(tmp / "models"), str(mine))
    log, _ = run.communicate(timeout=1800)
    assert run.returncode == 0, log[-4000:]
    print(log)
    return np.load(tmp / "tensorflow.npz"), np.load(tmp / f"{other}.npz"), other


def test_every_function_same_as_on_tensorflow(both):
    tf_maps, other_maps, other = both
    assert sorted(tf_maps.files) == sorted(other_maps.files)
    bad = []
    for key in tf_maps.files:
        a, b = tf_maps[key], other_maps[key]
        assert a.shape == b.shape, key
        assert np.isfinite(b).all(), key
        # uint8 pictures (maximize, the comparator view) may round one step apart
        peak = float(np.abs(a).max()) if a.size else 0.0
        tol = 1.0 if ("maximize" in key or "view" in key) else TOL * peak
        diff = float(np.abs(a - b).max()) if a.size else 0.0
        print(f"{key}: max |{other} - tf| = {diff:.2g} ({diff / peak if peak else 0:.1g} of "
              f"the peak)")
        if diff > tol:
            bad.append(f"{key}: max |{other} - tf| = {diff:.3g} > {tol:.3g}")
    assert not bad, "\n".join(bad)
    # the maps are not all zero (a broken backend giving zeros everywhere would pass)
    assert np.abs(other_maps["shapes_cnn:gradcam"]).max() > 0
    if "mobilenet_v2:guided" in other_maps.files:
        assert np.abs(other_maps["mobilenet_v2:guided"]).max() > 0


# The plainest Grad-CAM on each backend: split the Sequential demo model at its
# last conv layer by hand, differentiate one logit with the backend's own autodiff.
GRADCAM_PREAMBLE = r"""
import numpy as np, keras, cnnwidgets as cw
model = cw.assets.demo_model("shapes_cnn")
x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.float32)
got = cw.gradcam(model, x, classes=[1], resize=False, normalize=None)[:, 0]
layers = model.layers
cut = [l.name for l in layers].index(cw.Probe(model).last_conv_layer) + 1
def below(x):
    for l in layers[1:cut]:  # after the InputLayer
        x = l(x)
    return x
def logit(a):
    for l in layers[cut:-1]:
        a = l(a)
    dense = layers[-1]
    return (a @ dense.kernel.value + dense.bias.value)[:, 1]
"""

PLAIN_GRAD = {
    "jax": r"""
import jax, jax.numpy as jnp
a = below(x)
g = jax.grad(lambda a: jnp.sum(logit(a)))(a)
a, g = np.asarray(a), np.asarray(g)
""",
    "torch": r"""
import torch
a = below(torch.as_tensor(x)).detach().requires_grad_(True)
(g,) = torch.autograd.grad(logit(a).sum(), a)
a, g = a.detach().numpy(), g.numpy()
""",
}

GRADCAM_CHECK = r"""
want = np.maximum(np.einsum("nhwc,nc->nhw", a, g.mean(axis=(1, 2))), 0)
err = np.abs(got - want).max() / np.abs(want).max()
print("ERR", err)
assert err < 1e-4, err
"""


@pytest.mark.parametrize("other", [_installed(name) for name in OTHERS])
def test_gradcam_matches_the_backends_plain_autodiff(other, tmp_path):
    """Independent reference: Grad-CAM written with jax.grad / torch.autograd on
    the model's layers."""
    env = dict(os.environ, KERAS_BACKEND=other, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    code = GRADCAM_PREAMBLE + PLAIN_GRAD[other] + GRADCAM_CHECK
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]


@pytest.mark.skipif(missing("torch"), reason="torch is not installed (pip install .[torch])")
def test_torch_projective_warp_is_tensorflows_with_the_exact_gradient():
    """The warp of the Fourier maximization: TensorFlow's ImageProjectiveTransformV3
    forward; its gradient is the exact adjoint (TensorFlow's own gradient is the
    inverse warp, which the backend matrix therefore avoids: jitter=0 there)."""
    import tensorflow as tf
    import torch

    from cnnwidgets.gradients.torch_backend import projective_warp

    rng = np.random.default_rng(0)
    img = rng.random((3, 12, 10, 3))
    transforms = []
    for angle, scale, shift, tilt in [(0.3, 0.9, (1.5, -2.0), 0.0), (-0.2, 1.2, (0.0, 3.0), 0.0),
                                      (0.1, 1.0, (-1.0, 0.5), 0.01)]:
        c, s = np.cos(angle) / scale, np.sin(angle) / scale
        transforms.append([c, -s, shift[0], s, c, shift[1], tilt, -tilt])
    transforms = np.asarray(transforms)
    want = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.constant(img, tf.float32), transforms=tf.constant(transforms, tf.float32),
        output_shape=tf.constant((12, 10), tf.int32), fill_value=tf.constant(0.5, tf.float32),
        interpolation="BILINEAR", fill_mode="CONSTANT").numpy()
    got = projective_warp(torch.tensor(img, dtype=torch.float32),
                          torch.tensor(transforms, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    t64 = torch.tensor(transforms)
    assert torch.autograd.gradcheck(lambda im: projective_warp(im, t64),
                                    torch.tensor(img, requires_grad=True))


TORCH_RULES_AND_WEIGHTS = r"""
import threading
import numpy as np, keras, cnnwidgets as cw
from cnnwidgets import gradients
model = cw.assets.demo_model("shapes_cnn")
probe = cw.Probe(model)
x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.float32)
classes = np.array([[0, 1], [2, 3]])
before = keras.ops.convert_to_numpy(model(x, training=False))
plain, _ = gradients.input_gradients(probe, x, classes)
# The guided rule stays in its own call and thread: plain gradients computed by
# another thread meanwhile are the plain ones.
other, stop = [], threading.Event()
def plain_loop():
    while not stop.is_set():
        other.append(gradients.input_gradients(probe, x, classes)[0])
worker = threading.Thread(target=plain_loop)
worker.start()
guided = [gradients.input_gradients(probe, x, classes, relu_rule="guided")[0] for _ in range(4)]
stop.set()
worker.join()
assert other and all(np.array_equal(g, plain) for g in other), "the rule leaked to a thread"
assert not np.allclose(guided[0], plain)
assert all(np.array_equal(g, guided[0]) for g in guided)
assert np.array_equal(gradients.input_gradients(probe, x, classes)[0], plain)
# the user's model is untouched: same predictions, bit for bit
assert np.array_equal(keras.ops.convert_to_numpy(model(x, training=False)), before)
# new weights are read at the next call (nothing cached from the old ones)
layer = probe.last_conv_layer
acts, grads, _ = gradients.layer_gradients(probe, x, layer, classes)
for v in model.trainable_variables:
    v.assign(keras.ops.convert_to_numpy(v) * 1.1)
acts2, grads2, _ = gradients.layer_gradients(probe, x, layer, classes)
fresh = gradients.layer_gradients(cw.Probe(model), x, layer, classes)
assert not np.allclose(grads2, grads)
np.testing.assert_allclose(acts2, fresh[0], rtol=1e-5, atol=1e-6)
np.testing.assert_allclose(grads2, fresh[1], rtol=1e-5, atol=1e-7)
print("OK")
"""


@pytest.mark.skipif(missing("torch"), reason="torch is not installed (pip install .[torch])")
def test_torch_relu_rule_stays_in_its_call_and_new_weights_are_read(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-c", TORCH_RULES_AND_WEIGHTS], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "OK" in run.stdout, (run.stdout + run.stderr)[-4000:]
