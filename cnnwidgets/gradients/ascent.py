"""Activation maximization: the compiled gradient-ascent loop.

:func:`ascend` optimizes a batch of images, one per target (a channel of a
layer, or a class logit), all at once: every image's loss depends on that
image only, and every random choice (starting point, jitter, scale, rotation)
comes in from the caller per image, so image ``i`` of a batch is the image a
batch of one would give. ``cnnwidgets.explain.maximize`` prepares those
arrays with numpy. The objective is written with ``keras.ops`` here; the loop
itself (autodiff, Adam, the image warps) is the backend module's
``ascent_fns`` / ``ascend`` (:func:`cnnwidgets.gradients.backend`).

Two parameterizations:

- ``'pixel'``: the image itself in [0, 1], plain gradient ascent with the
  gradient normalized per image (the Keras example 'Visualizing what
  convnets learn'), clipped to [0, 1] after each step.
- ``'fourier'``: a scaled Fourier spectrum per colour channel, decorrelated
  colour and a sigmoid (Olah et al., 'Feature Visualization', Distill 2017),
  optimized with Adam through random jitter / scale / rotation transforms.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import keras
import numpy as np

from cnnwidgets.gradients import backend, compiled
from cnnwidgets.probe import Probe

#: How the optimized images are parameterized: the pixels themselves, or a
#: scaled Fourier spectrum (Lucid's decorrelated space).
PARAMS = ("pixel", "fourier")


def check_param(param: str) -> str:
    """``param`` if it names a parameterization in :data:`PARAMS`, else a ValueError."""
    if param not in PARAMS:
        raise ValueError(f"param must be one of {PARAMS}, got {param!r}")
    return param

#: Square root of the colour correlation of ImageNet (Lucid's constant),
#: columns scaled so the largest has unit norm.
_COLOR_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32
)
COLOR_DECORRELATION = _COLOR_SVD_SQRT / np.max(np.linalg.norm(_COLOR_SVD_SQRT, axis=0))

#: Weight of the pre-activation mean added to the activation mean, so a unit
#: silent on the starting image still has a gradient.
LEAK = 0.1

#: Steps run inside one compiled call between progress reports.
STEP_CHUNK = 8


def fourier_shape(h: int, w: int, c: int) -> tuple[int, int, int, int]:
    """Shape of one image's spectrum variable: (c, h, w // 2 + 1, 2) (real, imaginary)."""
    return (c, h, w // 2 + 1, 2)


def fourier_scale(h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
    """(h, w // 2 + 1) float32 weights that give the spectrum a 1/f fall-off."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power
    return (scale * np.sqrt(h * w)).astype(np.float32)


def _objective_fn(probe: Probe, layer: str, target: str) -> Callable:
    """x (B, H, W, C) model inputs -> (B, K) per-channel spatial means of the target.

    ``target='class'``: the class scores on logits (never the softmax).
    ``target='channel'``: the layer's channels; for Conv2D / Dense layers with
    a non-linear activation, mean(activation(z)) + LEAK * mean(z) with z the
    pre-activation (computed from the layer's own kernel, the layer untouched),
    so a unit silent on the starting image still has a gradient (Olah et al.
    optimize pre-ReLU units for the same reason)."""
    if target == "class":
        sub = probe.submodel([], scores=True)
        return lambda x: sub(x, training=False)
    obj = probe.layer(layer)
    info = probe.layer_info(layer)
    act = getattr(obj, "activation", None)
    linear = probe.pre_activation(layer)
    if (
        linear is None
        or act is None
        or getattr(act, "__name__", "") == "linear"
        or len(info.parents) != 1
    ):
        sub = probe.submodel([layer])
        return lambda x: _spatial_mean(sub(x, training=False))
    parent = info.parents[0]
    below = None if parent == "input" else probe.submodel([parent])

    def leaky(x):
        z = linear(x if below is None else below(x, training=False))
        return _spatial_mean(act(z)) + LEAK * _spatial_mean(z)

    return leaky


def _spatial_mean(y):
    axes = list(range(1, len(y.shape) - 1))
    return keras.ops.mean(y, axis=axes) if axes else y


def _step_fn(
    probe: Probe, layer: str, target: str, param: str, hw: tuple[int, int], c: int
):
    consts = SimpleNamespace(scale=fourier_scale(*hw), decorrelation=COLOR_DECORRELATION)
    impl = backend()
    return compiled(
        probe,
        ("ascent", layer, target, param, hw, c),
        lambda: impl.ascent_fns(probe, _objective_fn(probe, layer, target), param, hw, consts),
    )


def ascend(
    probe: Probe,
    layer: str,
    target: str,
    init: np.ndarray,
    onehot: np.ndarray,
    transforms: np.ndarray,
    param: str,
    lr: float,
    hw: tuple[int, int],
    preprocess: tuple[np.ndarray, np.ndarray] | None = None,
    progress: Callable[[int], object] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run gradient ascent on a batch of images, one target per image.

    Args:
        probe: the model's Probe.
        layer: a resolved layer path ('channel' targets) or the head layer ('class').
        target: 'channel' (mean of one channel of ``layer``) or 'class' (one logit).
        init: starting variables, (B, H, W, C) images in [0, 1] for 'pixel',
            (B, C, H, W // 2 + 1, 2) spectra for 'fourier'; float32.
        onehot: (B, K) float32, row i selects image i's channel or class.
        transforms: (B, steps, 8) float32 projective transforms (output pixel
            -> source pixel) applied before the model at each step ('fourier').
        param: 'pixel' or 'fourier'.
        lr: step size (per-pixel RMS step for 'pixel', Adam's rate for 'fourier').
        hw: (H, W) of the optimized images (the model's input size).
        preprocess: (A (C, C), b (C,)) float32: model input = A @ raw + b per
            pixel, raw pixels in 0-255; None is the identity.
        progress: called with the number of steps done after every chunk of
            steps; it may raise ``Cancelled`` to stop.

    Returns:
        images (B, H, W, C) float32 in [0, 1] and the objective on them (B,) float32.
    """
    check_param(param)
    c = int(init.shape[-1] if param == "pixel" else init.shape[1])
    fns = _step_fn(probe, layer, target, param, tuple(hw), c)
    if preprocess is None:
        preprocess = (np.eye(c, dtype=np.float32), np.zeros(c, np.float32))
    return backend().ascend(fns, init, onehot, transforms, lr, preprocess, STEP_CHUNK, progress)
