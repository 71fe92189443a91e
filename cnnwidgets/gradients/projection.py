"""Autodiff projection of one hidden channel to the input (guided backprop).

The gradient-based twin of the deconvnet in :mod:`cnnwidgets.explain.deconvnet`:
the gradient of one channel's activation (its strongest unit, or its mean)
with respect to the model input, with ReLU backward rules swapped by
``gradient_override_map`` ('guided' by default). It works on any
differentiable model, residual or batch-normalized ones included.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from cnnwidgets.gradients import (
    RELU_OVERRIDES,
    RELU_RULES,
    compiled,
    input_signature,
    traced_once,
)
from cnnwidgets.probe import Probe


def _projection_fn(
    probe: Probe, layer: str, keep: str, rule: str | None, shape: tuple
) -> Callable:
    def build():
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

        specs = (tf.TensorSpec(shape, tf.float32), tf.TensorSpec((), tf.int32))
        return traced_once(fn, specs)

    return compiled(probe, ("projection", layer, keep, rule, shape), build)


def channel_input_gradients(
    probe: Probe,
    x: np.ndarray,
    layer: str,
    channel: int,
    keep: str = "map",
    relu_rule: str | None = "guided",
    batch_size: int | None = None,
) -> np.ndarray:
    """Gradient of one channel's activation with respect to the model input.

    Args:
        probe: the model's Probe.
        x: preprocessed inputs, (N, H, W, C) float32.
        layer: a 4-D layer path.
        channel: channel index in that layer.
        keep: 'map' (the channel's spatial mean) or 'max' (its strongest unit).
        relu_rule: 'guided' (default), 'deconvnet' or None (plain gradient).

    Returns:
        (N, H, W, C) float32. Images are independent, so the gradient of the
        batch sum is each image's own gradient.
    """
    if relu_rule not in (None,) + RELU_RULES:
        raise ValueError(f"relu_rule must be None or one of {RELU_RULES}, got {relu_rule!r}")
    if keep not in ("map", "max"):
        raise ValueError(f"keep must be 'map' or 'max', got {keep!r}")
    fn = _projection_fn(probe, probe.resolve(layer), keep, relu_rule, input_signature(x))
    bs = batch_size or max(1, probe.batch_size(per_sample_factor=3.0))
    out = []
    for s in range(0, len(x), bs):
        g = fn(tf.constant(x[s : s + bs], tf.float32), tf.constant(int(channel), tf.int32))
        out.append(g.numpy())
    return np.nan_to_num(np.concatenate(out)).astype(np.float32)
