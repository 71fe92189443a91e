"""The one place that calls backend autodiff, behind one small interface.

Everything takes preprocessed model inputs (float32 numpy) and what to
explain, class indices (N, K) or a tuple of K targets
(:mod:`cnnwidgets.probe.targets`), and returns numpy. The work itself is
done by one module per Keras backend, chosen by Keras's own setting
(``KERAS_BACKEND``; cnnwidgets never picks one):

- :mod:`cnnwidgets.gradients.tf_backend`: ``tf.GradientTape`` in ``tf.function``;
- :mod:`cnnwidgets.gradients.jax_backend`: ``jax.vjp`` in ``jax.jit``;
- :mod:`cnnwidgets.gradients.torch_backend`: ``torch.autograd``, eager (no
  compiler: its module docstring says why).

Each backend module offers the same few builders (every one returns a
function over numpy arrays, compiled where the backend compiles, built once
per key with :func:`compiled`):

- ``layer_fn(probe, layer, targets, k, shape)``: ``fn(x, classes)`` -> the
  activations of ``layer``, the gradients of K scores with respect to them
  and the scores, for the functional graph split at that layer;
- ``input_fn(probe, targets, k, rule, shape)``: ``fn(x, classes)`` -> the
  gradients of K scores with respect to the input, and the scores; ``rule``
  swaps the ReLU backward rule ('guided', 'deconvnet') for this function only;
- ``projection_fn(probe, layer, keep, rule, shape)``: ``fn(x, channel)`` -> the
  gradient of one channel's mean or max with respect to the input;
- ``ascend(...)``: the activation-maximization loop (:mod:`.ascent`);
- ``traced_once(fn, signature)``: ``fn`` compiled for any batch size (on
  torch: ``fn`` itself).

TensorFlow is imported in ``tf_backend`` alone, JAX in ``jax_backend`` alone
and torch in ``torch_backend`` alone (checked by the import-linter contracts
in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType

import keras
import numpy as np

from cnnwidgets.probe import Probe, version
from cnnwidgets.probe.targets import Target, target_keys

#: Backward ReLU rules for guided backpropagation and the deconvnet.
RELU_RULES = ("guided", "deconvnet")

#: Keras backends with an autodiff module here.
BACKENDS = ("tensorflow", "jax", "torch")


def backend() -> ModuleType:
    """The autodiff module of Keras's current backend (imported on first use).

    Raises NotImplementedError naming the backend when there is none."""
    name = keras.backend.backend()
    if name == "tensorflow":
        from cnnwidgets.gradients import tf_backend

        return tf_backend
    if name == "jax":
        from cnnwidgets.gradients import jax_backend

        return jax_backend
    if name == "torch":
        from cnnwidgets.gradients import torch_backend

        return torch_backend
    raise NotImplementedError(
        f"cnnwidgets computes gradients on the Keras backends {BACKENDS}; this process "
        f"runs Keras on {name!r}. Set KERAS_BACKEND to one of them before importing keras."
    )


def backend_weights_reader(plan: list) -> Callable[[], list[np.ndarray]]:
    """The backend module's reader of the weights version's samples
    (``weights_reader``), or the portable numpy reader where it has none."""
    if keras.backend.backend() not in BACKENDS:  # weights still have a version there
        return version.numpy_reader(plan)
    return getattr(backend(), "weights_reader", version.numpy_reader)(plan)


# The weights version (probe/version.py) reads its samples with the backend's
# compiled reader from now on; it cannot import this package (a layer above).
version.use_reader(backend_weights_reader)


def compiled(probe: Probe, key: tuple, build: Callable[[], Callable]) -> Callable:
    """A compiled function kept with the probe (it reads the weights at run
    time, so it never goes stale and dies with the probe).

    ``key`` must name everything that shapes the graph (layer, number of
    classes, input signature): the function is built and traced once per key."""
    return probe.cached("compiled", (keras.backend.backend(),) + tuple(key), build,
                        versioned=False)


def traced_once(fn: Callable, signature: Sequence[tuple[tuple, str]]) -> Callable:
    """``fn`` compiled by the backend for arguments of these (shape, dtype)
    (batch axis None: any batch size). Every compiled function of this
    package is made here, once per key of :func:`compiled`."""
    return backend().traced_once(fn, signature)


def input_signature(x: np.ndarray) -> tuple[int | None, ...]:
    """The compiled functions' input shape: any batch size, the images' own H, W, C."""
    return (None,) + tuple(int(d) for d in x.shape[1:])


def is_targets(selection: object) -> bool:
    """True for a tuple of targets, False for class indices."""
    return isinstance(selection, tuple) and all(isinstance(t, Target) for t in selection)


def width(selection) -> int:
    """K: the number of targets or class columns."""
    return len(selection) if is_targets(selection) else int(np.shape(selection)[1])


def check_selection(probe: Probe, classes):
    """Class indices as int32 (N, K), or a tuple of targets checked on the probe."""
    if is_targets(classes):
        if not classes:
            raise ValueError("no targets given")
        for t in classes:
            t.check(probe)
        return classes
    return np.asarray(classes, np.int32)


def _batches(selection, x: np.ndarray, bs: int):
    """(start, inputs, class indices or None) per batch (targets live in the graph)."""
    classes = None if is_targets(selection) else selection
    for s in range(0, len(x), bs):
        yield s, x[s : s + bs], None if classes is None else classes[s : s + bs]


def _key(selection) -> tuple:
    return ("targets", target_keys(selection)) if is_targets(selection) else ("classes",)


def layer_gradients(
    probe: Probe,
    x: np.ndarray,
    layer: str,
    classes: np.ndarray,
    batch_size: int | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations of ``layer`` and the gradients of class scores with respect to them.

    Args:
        probe: the model's Probe.
        x: preprocessed inputs, (N, H, W, C) float32.
        layer: a layer path (see ``Probe.resolve``).
        classes: (N, K) int class indices, one row per image, or a tuple of
            K targets shared by all images (checked on the probe first).
        progress: called as ``progress(done, total)`` after each batch; it
            may raise :class:`cnnwidgets.Cancelled` to stop between batches.

    Returns:
        acts: (N, h, w, c) float32; grads: (N, K, h, w, c) float32, the
        gradient of each class score (logit) or target score w.r.t. ``acts``;
        scores: (N, K).
    """
    selection = check_selection(probe, classes)
    k = width(selection)
    path = probe.resolve(layer)
    shape = input_signature(x)
    targets = selection if is_targets(selection) else None
    impl = backend()
    fn = compiled(
        probe,
        ("layer", path, k, shape) + _key(selection),
        lambda: impl.layer_fn(probe, path, targets, k, shape),
    )
    bs = batch_size or max(1, probe.batch_size(per_sample_factor=2.0 + k))
    acts, grads, scores = [], [], []
    for s, xb, cb in _batches(selection, x, bs):
        a, g, p = fn(xb, cb)
        acts.append(a)
        grads.append(g)
        scores.append(p)
        if progress is not None:
            progress(min(s + bs, len(x)), len(x))
    return np.concatenate(acts), np.concatenate(grads), np.concatenate(scores)


def input_gradients(
    probe: Probe,
    x: np.ndarray,
    classes: np.ndarray,
    relu_rule: str | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of class scores (logits) with respect to the model input.

    Args:
        x: preprocessed inputs, (N, H, W, C) float32.
        classes: (N, K) int class indices, or a tuple of K targets.
        relu_rule: None (true gradient), 'guided' or 'deconvnet'.
        progress: as in :func:`layer_gradients`.

    Returns:
        grads: (N, K, H, W, C) float32; scores: (N, K) float32.
    """
    check_rule(relu_rule)
    selection = check_selection(probe, classes)
    k = width(selection)
    shape = input_signature(x)
    targets = selection if is_targets(selection) else None
    impl = backend()
    fn = compiled(
        probe,
        ("input", k, relu_rule, shape) + _key(selection),
        lambda: impl.input_fn(probe, targets, k, relu_rule, shape),
    )
    bs = batch_size or max(1, probe.batch_size(per_sample_factor=2.0 + k))
    grads, scores = [], []
    for s, xb, cb in _batches(selection, x, bs):
        g, p = fn(xb, cb)
        grads.append(g)
        scores.append(p)
        if progress is not None:
            progress(min(s + bs, len(x)), len(x))
    return np.concatenate(grads), np.concatenate(scores)


def check_rule(relu_rule: str | None) -> None:
    """A ValueError unless ``relu_rule`` is None or one of :data:`RELU_RULES`."""
    if relu_rule not in (None,) + RELU_RULES:
        raise ValueError(f"relu_rule must be None or one of {RELU_RULES}, got {relu_rule!r}")
