"""The one place that calls backend autodiff (TensorFlow's GradientTape today).

Everything takes preprocessed model inputs (float32 numpy) and what to
explain, class indices (N, K) or a tuple of K targets
(:mod:`cnnwidgets.probe.targets`), and returns numpy. A JAX or torch
backend would add its twin of these few functions here and nowhere else.
Sub-modules of this package hold the autodiff of particular methods (e.g.
optimization loops).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from collections.abc import Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cnnwidgets.probe import Probe  # noqa: E402
from cnnwidgets.probe.targets import Target, target_keys  # noqa: E402

#: Backward ReLU rules for guided backpropagation and the deconvnet.
RELU_RULES = ("guided", "deconvnet")


@tf.RegisterGradient("CnnwidgetsGuidedRelu")
def _guided_relu_grad(op, grad):
    # Pass a gradient only where the forward unit was active AND the gradient is positive.
    return tf.where(op.outputs[0] > 0, tf.nn.relu(grad), tf.zeros_like(grad))


@tf.RegisterGradient("CnnwidgetsDeconvRelu")
def _deconv_relu_grad(op, grad):
    # Zeiler and Fergus: ReLU applied to the backward signal, ignoring the forward mask.
    return tf.nn.relu(grad)


@tf.RegisterGradient("CnnwidgetsGuidedRelu6")
def _guided_relu6_grad(op, grad):
    y = op.outputs[0]
    return tf.where((y > 0) & (y < 6), tf.nn.relu(grad), tf.zeros_like(grad))


@tf.RegisterGradient("CnnwidgetsDeconvRelu6")
def _deconv_relu6_grad(op, grad):
    return tf.nn.relu(grad)


#: For each ReLU rule, TensorFlow op types -> the registered backward rule to use.
RELU_OVERRIDES = {
    "guided": {"Relu": "CnnwidgetsGuidedRelu", "Relu6": "CnnwidgetsGuidedRelu6"},
    "deconvnet": {"Relu": "CnnwidgetsDeconvRelu", "Relu6": "CnnwidgetsDeconvRelu6"},
}


def compiled(probe: Probe, key: tuple, build: Callable[[], Callable]) -> Callable:
    """A compiled function kept with the probe (it reads the weights at run
    time, so it never goes stale and dies with the probe).

    ``key`` must name everything that shapes the graph (layer, number of
    classes, input signature): the function is built and traced once per key."""
    return probe.cached("compiled", key, build, versioned=False)


def traced_once(fn: Callable, signature: Sequence[tf.TensorSpec]) -> Callable:
    """``fn`` compiled with a fixed input signature (batch axis free), so it is
    traced exactly once whatever the batch sizes.

    TensorFlow's retracing detector keys on the Python code object, so every
    compiled function built from one closure (one per probe, layer and class
    count) counts as "the same function traced again" and it logs a warning
    after a few models or layers. Each of ours is built once per key and
    traced once, which is what the detector asks for, so its warning is
    switched off for these functions alone."""
    out = tf.function(fn, input_signature=list(signature))
    if hasattr(out, "_omit_frequent_tracing_warning"):
        out._omit_frequent_tracing_warning = True
    return out


def input_signature(x: np.ndarray) -> tuple[int | None, ...]:
    """The compiled functions' input shape: any batch size, the images' own H, W, C."""
    return (None,) + tuple(int(d) for d in x.shape[1:])


def is_targets(selection: object) -> bool:
    """True for a tuple of targets, False for class indices."""
    return isinstance(selection, tuple) and all(isinstance(t, Target) for t in selection)


def _width(selection) -> int:
    return len(selection) if is_targets(selection) else int(np.shape(selection)[1])


def _batches(selection, x: np.ndarray, bs: int):
    """(start, the compiled function's arguments) per batch: the inputs, and
    the batch's class indices on the class path (targets live in the graph)."""
    for s in range(0, len(x), bs):
        args = [tf.constant(x[s : s + bs])]
        if not is_targets(selection):
            args.append(tf.constant(np.asarray(selection, np.int32)[s : s + bs]))
        yield s, args


def _selected(scores, classes):
    """scores (N, K_all), classes (N, K) int -> (N, K) scores of the chosen classes."""
    return tf.gather(scores, classes, batch_dims=1)


def _layer_grad_fn(probe: Probe, layer: str, selection, shape: tuple) -> Callable:
    k = _width(selection)
    targets = selection if is_targets(selection) else None

    def build():
        if targets is None:
            sub = probe.submodel([layer], scores=True)
        else:
            # The K targets' scores (N, K) are part of the submodel's graph.
            sub = probe.submodel([layer], targets=targets)

        def backward(x, classes=None):
            with tf.GradientTape(persistent=True) as tape:
                # Watch the input: a layer whose output depends on no variable
                # (Rescaling, an input-side keras.ops node) is otherwise not
                # recorded, and its gradient comes back as None.
                tape.watch(x)
                act, scores = sub(x, training=False)
                picked = scores if classes is None else _selected(scores, classes)
                columns = [picked[:, j] for j in range(k)]
            # One backward pass per score through the layers above `layer` only;
            # the forward pass is shared by all K scores.
            grads = [_zero_if_none(tape.gradient(t, act), act) for t in columns]
            return act, tf.stack(grads, axis=1), picked

        specs = _specs(shape, k)
        if targets is None:
            return traced_once(backward, specs)
        return traced_once(lambda x: backward(x), specs[:1])

    if targets is None:
        return compiled(probe, ("layer", layer, k, shape), build)
    return compiled(probe, ("layer-targets", layer, target_keys(targets), shape), build)


def _specs(shape: tuple, k: int) -> tuple[tf.TensorSpec, tf.TensorSpec]:
    return tf.TensorSpec(shape, tf.float32), tf.TensorSpec((None, k), tf.int32)


def _zero_if_none(grad, like):
    # A score that does not depend on the tensor at all has a zero gradient,
    # which TensorFlow reports as None.
    return tf.zeros_like(like) if grad is None else grad


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
    selection = _check_selection(probe, classes)
    k = _width(selection)
    fn = _layer_grad_fn(probe, probe.resolve(layer), selection, input_signature(x))
    bs = batch_size or max(1, probe.batch_size(per_sample_factor=2.0 + k))
    acts, grads, scores = [], [], []
    for s, args in _batches(selection, x, bs):
        a, g, p = fn(*args)
        acts.append(a.numpy())
        grads.append(g.numpy())
        scores.append(p.numpy())
        if progress is not None:
            progress(min(s + bs, len(x)), len(x))
    return np.concatenate(acts), np.concatenate(grads), np.concatenate(scores)


def _input_grad_fn(probe: Probe, selection, rule: str | None, shape: tuple) -> Callable:
    k = _width(selection)
    targets = selection if is_targets(selection) else None

    def build():
        if targets is None:
            model = probe.scores_model

            def scores_of(x, classes):
                return _selected(model(x, training=False)[0], classes)

        else:
            model = probe.target_model(targets)

            def scores_of(x, classes):
                return model(x, training=False)

        if rule is None:

            def fn(x, classes=None):
                with tf.GradientTape(persistent=True) as tape:
                    tape.watch(x)
                    picked = scores_of(x, classes)
                    columns = [picked[:, j] for j in range(k)]
                grads = [_zero_if_none(tape.gradient(t, x), x) for t in columns]
                return tf.stack(grads, axis=1), picked

        else:
            overrides = RELU_OVERRIDES[rule]

            def fn(x, classes=None):
                # gradient_override_map swaps the ReLU backward rule for ops built
                # here only; the user's layers and their gradients are untouched.
                with tf.compat.v1.get_default_graph().gradient_override_map(overrides):
                    picked = scores_of(x, classes)
                grads = [_zero_if_none(tf.gradients(picked[:, j], x)[0], x) for j in range(k)]
                return tf.stack(grads, axis=1), picked

        specs = _specs(shape, k)
        if targets is None:
            return traced_once(fn, specs)
        return traced_once(lambda x: fn(x), specs[:1])

    if targets is None:
        return compiled(probe, ("input", k, rule, shape), build)
    return compiled(probe, ("input-targets", target_keys(targets), rule, shape), build)


def _check_selection(probe: Probe, classes):
    """Class indices as int32 (N, K), or a tuple of targets checked on the probe."""
    if is_targets(classes):
        if not classes:
            raise ValueError("no targets given")
        for t in classes:
            t.check(probe)
        return classes
    return np.asarray(classes, np.int32)


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
    if relu_rule not in (None,) + RELU_RULES:
        raise ValueError(f"relu_rule must be None or one of {RELU_RULES}, got {relu_rule!r}")
    selection = _check_selection(probe, classes)
    k = _width(selection)
    fn = _input_grad_fn(probe, selection, relu_rule, input_signature(x))
    bs = batch_size or max(1, probe.batch_size(per_sample_factor=2.0 + k))
    grads, scores = [], []
    for s, args in _batches(selection, x, bs):
        g, p = fn(*args)
        grads.append(g.numpy())
        scores.append(p.numpy())
        if progress is not None:
            progress(min(s + bs, len(x)), len(x))
    return np.concatenate(grads), np.concatenate(scores)
