"""Autodiff on Keras's TensorFlow backend: ``tf.GradientTape`` in ``tf.function``.

The builders of :mod:`cnnwidgets.gradients` (see there for the interface).
Each returns a function over numpy arrays around one ``tf.function`` traced
once (fixed input signature, batch axis free). The guided-backprop and
deconvnet rules swap the backward rule of TensorFlow's Relu / Relu6 ops with
``gradient_override_map``, for ops built inside our functions only.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from collections.abc import Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cnnwidgets import gradients  # noqa: E402
from cnnwidgets.probe import Probe  # noqa: E402


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


def traced_once(fn: Callable, signature: Sequence[tuple[tuple, str]]) -> Callable:
    """``fn`` as a ``tf.function`` with a fixed input signature (batch axis
    free), so it is traced exactly once whatever the batch sizes.

    TensorFlow's retracing detector keys on the Python code object, so every
    compiled function built from one closure (one per probe, layer and class
    count) counts as "the same function traced again" and it logs a warning
    after a few models or layers. Each of ours is built once per key and
    traced once, which is what the detector asks for, so its warning is
    switched off for these functions alone."""
    specs = [tf.TensorSpec(shape, dtype) for shape, dtype in signature]
    out = tf.function(fn, input_signature=specs)
    if hasattr(out, "_omit_frequent_tracing_warning"):
        out._omit_frequent_tracing_warning = True
    return out


def _selected(scores, classes):
    """scores (N, K_all), classes (N, K) int -> (N, K) scores of the chosen classes."""
    return tf.gather(scores, classes, batch_dims=1)


def _zero_if_none(grad, like):
    # A score that does not depend on the tensor at all has a zero gradient,
    # which TensorFlow reports as None.
    return tf.zeros_like(like) if grad is None else grad


def _numpy_call(traced: Callable, with_classes: bool) -> Callable:
    """numpy (x, classes or None) -> tuple of numpy arrays, around a traced function."""

    def call(x, classes=None):
        args = [tf.constant(x, tf.float32)]
        if with_classes:
            args.append(tf.constant(classes, tf.int32))
        return tuple(o.numpy() for o in traced(*args))

    call.experimental_get_tracing_count = traced.experimental_get_tracing_count
    return call


def _signature(shape: tuple, k: int, targets) -> list:
    sig = [(shape, "float32")]
    return sig if targets is not None else sig + [((None, k), "int32")]


def layer_fn(probe: Probe, layer: str, targets, k: int, shape: tuple) -> Callable:
    """See :mod:`cnnwidgets.gradients`: (x, classes) -> (acts, grads, scores)."""
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

    fn = backward if targets is None else (lambda x: backward(x))
    traced = gradients.traced_once(fn, _signature(shape, k, targets))
    return _numpy_call(traced, targets is None)


def _scores_fn(probe: Probe, targets) -> Callable:
    if targets is None:
        model = probe.scores_model
        return lambda x, classes: _selected(model(x, training=False)[0], classes)
    model = probe.target_model(targets)
    return lambda x, classes: model(x, training=False)


def input_fn(probe: Probe, targets, k: int, rule: str | None, shape: tuple) -> Callable:
    """See :mod:`cnnwidgets.gradients`: (x, classes) -> (grads, scores)."""
    scores_of = _scores_fn(probe, targets)

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

    one = fn if targets is None else (lambda x: fn(x))
    traced = gradients.traced_once(one, _signature(shape, k, targets))
    return _numpy_call(traced, targets is None)


def projection_fn(
    probe: Probe, layer: str, keep: str, rule: str | None, shape: tuple
) -> Callable:
    """See :mod:`cnnwidgets.gradients.projection`: (x, channel) -> input gradients."""
    sub = probe.submodel([layer])
    overrides = RELU_OVERRIDES.get(rule, {}) if rule else {}

    def fn(x, channel):
        # The override map applies only to ops created inside this function:
        # the user's model and its own gradients are untouched.
        with tf.compat.v1.get_default_graph().gradient_override_map(overrides):
            act = sub(x, training=False)
            fmap = tf.gather(act, channel, axis=-1)  # (N, h, w)
            flat = tf.reshape(fmap, (tf.shape(fmap)[0], -1))
            if keep == "max":
                target = tf.reduce_max(flat, axis=1)
            else:
                target = tf.reduce_mean(flat, axis=1)
        grad = tf.gradients(tf.reduce_sum(target), x)[0]
        return tf.zeros_like(x) if grad is None else grad

    traced = gradients.traced_once(fn, [(shape, "float32"), ((), "int32")])

    def call(x, channel):
        return traced(tf.constant(x, tf.float32), tf.constant(int(channel), tf.int32)).numpy()

    return call


# ------------------------------------------------------- activation maximization


def _fourier_image(var, scale, hw: tuple[int, int], decorrelation: np.ndarray):
    """Spectrum (B, c, h, wf, 2) -> image (B, h, w, c) in (0, 1)."""
    spec = tf.complex(var[..., 0] * scale, var[..., 1] * scale)
    img = tf.signal.irfft2d(spec, fft_length=list(hw))
    img = tf.transpose(img, (0, 2, 3, 1)) / 4.0
    if img.shape[-1] == 3:
        img = tf.einsum("bhwc,dc->bhwd", img, decorrelation)
    return tf.sigmoid(img)


def _affine_warp(img, transforms, out_hw: tuple[int, int]):
    """Per-image projective warps (B, 8), grey (0.5) outside the picture."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=img,
        transforms=transforms,
        output_shape=tf.constant(out_hw, tf.int32),
        fill_value=tf.constant(0.5, tf.float32),
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def ascent_fns(probe: Probe, objective: Callable, param: str, hw: tuple[int, int], consts):
    """(run, evaluate) of the ascent loop; see :func:`cnnwidgets.gradients.ascent.ascend`."""
    scale = tf.constant(consts.scale)

    def to_image(var):
        return var if param == "pixel" else _fourier_image(var, scale, hw, consts.decorrelation)

    def per_image_objective(var, onehot, transform, pre_a, pre_b):
        img = to_image(var)
        if param == "fourier":
            img = _affine_warp(img, transform, hw)
        x = tf.einsum("bhwc,dc->bhwd", img * 255.0, pre_a) + pre_b
        return tf.reduce_sum(objective(x) * onehot, axis=1)  # (B,)

    @tf.function(reduce_retracing=True)
    def run(var, m, v, t0, onehot, transforms, pre_a, pre_b, lr):
        n = tf.shape(transforms)[1]
        for i in tf.range(n):
            with tf.GradientTape() as tape:
                tape.watch(var)
                loss = tf.reduce_sum(
                    per_image_objective(var, onehot, transforms[:, i], pre_a, pre_b)
                )
            g = tape.gradient(loss, var)
            if param == "pixel":
                # Normalize per image (RMS over its pixels), step up, stay a picture.
                rms = tf.sqrt(tf.reduce_mean(tf.square(g), axis=[1, 2, 3], keepdims=True))
                var = tf.clip_by_value(var + lr * g / (rms + 1e-8), 0.0, 1.0)
            else:
                # Adam (ascent): element-wise, so images stay independent.
                t = tf.cast(t0 + i + 1, tf.float32)
                m = 0.9 * m + 0.1 * g
                v = 0.999 * v + 0.001 * tf.square(g)
                mhat = m / (1.0 - tf.pow(0.9, t))
                vhat = v / (1.0 - tf.pow(0.999, t))
                var = var + lr * mhat / (tf.sqrt(vhat) + 1e-8)
        return var, m, v

    def evaluate(var, onehot, pre_a, pre_b):  # once per batch: eager is enough
        img = to_image(var)
        x = tf.einsum("bhwc,dc->bhwd", img * 255.0, pre_a) + pre_b
        return img, tf.reduce_sum(objective(x) * onehot, axis=1)

    return run, evaluate


def ascend(fns, init, onehot, transforms, lr, preprocess, chunk, progress):
    """Run the loop of :func:`ascent_fns` in chunks of steps; numpy in and out."""
    run, evaluate = fns
    pre_a = tf.constant(preprocess[0], tf.float32)
    pre_b = tf.constant(preprocess[1], tf.float32)
    var = tf.constant(init, tf.float32)
    m = tf.zeros_like(var)
    v = tf.zeros_like(var)
    oh = tf.constant(onehot, tf.float32)
    lr_t = tf.constant(lr, tf.float32)
    steps = transforms.shape[1]
    for s in range(0, steps, chunk):
        part = tf.constant(transforms[:, s : s + chunk], tf.float32)
        var, m, v = run(var, m, v, tf.constant(s, tf.int32), oh, part, pre_a, pre_b, lr_t)
        if progress is not None:
            progress(min(s + chunk, steps))
    img, value = evaluate(var, oh, pre_a, pre_b)
    return img.numpy(), value.numpy()


def weights_reader(plan: list) -> Callable[[], list[np.ndarray]]:
    """The weights version's reader (:mod:`cnnwidgets.probe.version`): one
    ``tf.function`` gathering every variable's sampled elements in place.

    ``ResourceGatherNd`` reads the samples straight from each variable's
    buffer (no copy of the variable, one op per variable): tracing it costs
    2.7 s for NASNetMobile's 1126 variables (10 s with a read, reshape, gather,
    cast and product per variable), and a read 5-25 ms afterwards."""
    groups = []
    for group in plan:
        rows = []
        for v, idx in group:
            var = v.value
            if not (hasattr(var, "handle") and var.shape.rank):
                # a scalar (ResourceGatherNd needs a vector at least) or not a
                # resource variable: read it whole
                rows.append((var, tf.constant(idx), None))
                continue
            where = np.stack(np.unravel_index(idx, tuple(var.shape)), 1)
            rows.append((var, tf.constant(where), var.dtype))
        groups.append(rows)

    def gather_all():
        out = []
        for rows in groups:
            parts = [
                tf.gather(tf.reshape(var, [-1]), where) if dtype is None
                else tf.raw_ops.ResourceGatherNd(resource=var.handle, indices=where, dtype=dtype)
                for var, where, dtype in rows
            ]
            out.append(tf.concat(parts, 0))
        return out

    compiled = traced_once(gather_all, [])
    return lambda: [t.numpy() for t in compiled()]
