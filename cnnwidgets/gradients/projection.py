"""Autodiff projection of one hidden channel to the input (guided backprop).

The gradient-based twin of the deconvnet in :mod:`cnnwidgets.explain.deconvnet`:
the gradient of one channel's activation (its strongest unit, or its mean)
with respect to the model input, with the ReLU backward rules swapped
('guided' by default) by the backend module (``projection_fn``). It works on
any differentiable model, residual or batch-normalized ones included.
"""

from __future__ import annotations

import numpy as np

from cnnwidgets.gradients import backend, check_rule, compiled, input_signature
from cnnwidgets.probe import Probe


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
    check_rule(relu_rule)
    if keep not in ("map", "max"):
        raise ValueError(f"keep must be 'map' or 'max', got {keep!r}")
    path = probe.resolve(layer)
    shape = input_signature(x)
    impl = backend()
    fn = compiled(
        probe,
        ("projection", path, keep, relu_rule, shape),
        lambda: impl.projection_fn(probe, path, keep, relu_rule, shape),
    )
    bs = batch_size or max(1, probe.batch_size(per_sample_factor=3.0))
    out = [fn(x[s : s + bs], int(channel)) for s in range(0, len(x), bs)]
    return np.nan_to_num(np.concatenate(out)).astype(np.float32)
