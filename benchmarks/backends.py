"""JAX and torch against TensorFlow in one run (issue 26): Grad-CAM K=10,
saliency, occlusion and a comparator slider move, each backend in its own
subprocess (KERAS_BACKEND is read once per process); JAX and torch each when
installed. Median of warm repeats (compiles excluded and reported apart);
prints the JAX / TF and torch / TF ratios per task. The row "plain input
gradient" is the backend's own autodiff of one logit with respect to the image,
written without cnnwidgets (GradientTape in tf.function, jax.jit(jax.grad),
torch.autograd): saliency's floor on that backend.

    python benchmarks/backends.py [--repeats 5] [--torch-threads N]

``--torch-threads`` sets ``torch.set_num_threads`` in the torch process: on a
busy or CPU-limited machine torch's OpenMP threads spin waiting for each
other (two threads on two cores shared with other work ran Grad-CAM 6x slower
than one thread).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, time, numpy as np, keras, cnnwidgets as cw
model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None,
                                       classes=10)
model.load_weights(WEIGHTS)
x = np.random.default_rng(0).integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
probe = cw.Probe(model)
def gradcam(): cw.gradcam(probe, x, classes=list(range(10)), cache=False)
def saliency(): cw.saliency(probe, x, classes=[0])
def occlusion(): cw.occlusion(probe, x, classes=[0], patch=16, stride=8)
comp = cw.GradCAMComparator(model, x[0], classes=list(range(10)))
comp.wait()
def slider():
    s = comp.class_slider
    s.value = s.min if s.value != s.min else s.max
    comp.wait()
# The backend's own input gradient of one logit, written the plain way for each
# backend (no cnnwidgets): the floor under `saliency`, so the ratio splits into
# what the backend's kernels cost and what cnnwidgets adds.
xf = x.astype("float32")
if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
    @tf.function
    def _grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(model(x, training=False)[:, 0])
        return tape.gradient(y, x)
    xt = tf.constant(xf)
    def plain(): _grad(xt).numpy()
elif keras.backend.backend() == "jax":
    import jax
    def _logit(values, x):
        with keras.StatelessScope(state_mapping=list(zip(model.weights, values))):
            return model(x, training=False)[:, 0].sum()
    _grad = jax.jit(jax.grad(_logit, argnums=1))
    def plain(): np.asarray(_grad([v.value for v in model.weights], xf))
else:
    import torch
    def plain():
        xt = torch.tensor(xf, requires_grad=True)
        model(xt, training=False)[:, 0].sum().backward()
        xt.grad.numpy()
out = {}
for name, fn in [("gradcam K=10", gradcam), ("saliency", saliency),
                 ("plain input gradient", plain), ("occlusion", occlusion),
                 ("comparator slider", slider)]:
    t = time.perf_counter(); fn(); first = time.perf_counter() - t
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    out[name] = (first, float(np.median(times)))
print("RESULT" + json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch.set_num_threads in the torch process (default: torch's choice)")
    args = ap.parse_args()
    import tempfile

    weights = os.path.join(tempfile.mkdtemp(), "mnv2.weights.h5")
    build = ("import keras; keras.utils.set_random_seed(0); keras.applications.MobileNetV2("
             "input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10)"
             f".save_weights({weights!r})")
    subprocess.run([sys.executable, "-c", build], check=True, capture_output=True)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    names = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "torch"}
    backends = ["tensorflow"] + [b for b in ("jax", "torch") if importlib.util.find_spec(b)]
    results = {}
    for backend in backends:
        env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu",
                   PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
        code = f"WEIGHTS = {weights!r}\nREPEATS = {args.repeats}\n" + CHILD
        if backend == "torch" and args.torch_threads:
            code = f"import torch\ntorch.set_num_threads({args.torch_threads})\n" + code
        t = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True)
        line = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT")]
        if run.returncode or not line:
            sys.exit(f"{backend} failed:\n{run.stderr[-3000:]}")
        results[backend] = json.loads(line[0][6:])
        print(f"{backend}: {time.perf_counter() - t:.0f} s in all", flush=True)
    print(f"\nMobileNetV2 (alpha 0.35, 96 x 96, random weights), median of {args.repeats} warm "
          "runs; first call (compiles) in brackets")
    others = backends[1:]
    print(f"{'task':22}" + "".join(f" {names[b]:>18}" for b in backends)
          + "".join(f" {names[b] + ' / TF':>12}" for b in others))
    for task, (_, tf_med) in results["tensorflow"].items():
        cells = "".join(f" {results[b][task][1] * 1e3:8.1f} ms ({results[b][task][0]:4.1f} s)"
                        for b in backends)
        ratios = "".join(f" {results[b][task][1] / tf_med:11.2f}x" for b in others)
        print(f"{task:22}{cells}{ratios}")


if __name__ == "__main__":
    main()
