"""Deconvnet reconstructions (Zeiler and Fergus, 2014): one hidden channel
projected back to pixel space.

``method="deconvnet"`` is the real thing, done layer by layer here with the
model's own weights (no autodiff): a forward pass records the max-pooling
switches (the argmax position inside every pooling window, computed in numpy
from the pool's input); all activations of the chosen layer but the chosen
channel are zeroed; then the signal walks back down the graph:

* MaxPooling2D: unpool, each value back to the position its switch recorded;
* ReLU (a ``Conv2D(activation="relu")``, ``ReLU`` or ``Activation("relu")``):
  rectify the backward signal (not masked by the forward pass: that is what
  distinguishes the deconvnet from the gradient and from guided backprop);
* Conv2D: transposed convolution with the layer's own kernel, bias ignored;
* Rescaling: divided by its scale, so the result is in raw-pixel units
  (the offset, like a bias, is ignored);
* Dropout, InputLayer, linear activations: passed through.

Only plain conv / ReLU / max-pool stacks have a deconvnet. Other layers
(residual ``Add``, ``Concatenate``, ``BatchNormalization``, separable or
depthwise convolutions, average pooling, ...) raise a ValueError suggesting
``method="gradient"``: a guided-backprop projection (Springenberg et al.)
computed by autodiff (:mod:`cnnwidgets.gradients.projection`), which works on
any differentiable model and, on a plain stack, differs from the deconvnet
only in also masking by the forward ReLUs.

Reconstructions are in the space of the model input, i.e. after
``preprocess``: for a preprocess that reorders channels (caffe-style BGR)
the result is in that order too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from cnnwidgets.probe import Probe, as_probe, geometry, kinds

#: Projection methods of :func:`reconstruct`.
METHODS = ("deconvnet", "gradient")
#: What to keep of the chosen channel before projecting.
KEEPS = ("max", "map")

_UNSUPPORTED_HINT = (
    'use method="gradient" (guided backpropagation), which works on any differentiable model'
)

__all__ = ["KEEPS", "METHODS", "deconvnet_path", "max_pool_switches", "reconstruct", "unpool"]


def _step_kind(layer: Any) -> str:
    """What the deconvnet does at this layer, or raise for layers it cannot invert."""
    kind = kinds.kind_of(layer)
    name = layer.name
    if kind in kinds.IDENTITY_AT_INFERENCE:
        return "pass"
    if kind == "Rescaling":
        return "rescale"
    if kind == "MaxPooling2D":
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise ValueError(f"layer {name!r}: only channels_last pooling is supported")
        return "unpool"
    if kind == "ReLU":
        cfg = layer.get_config()
        if cfg.get("negative_slope", 0.0) or cfg.get("threshold", 0.0):
            raise ValueError(f"layer {name!r} is a leaky/thresholded ReLU; {_UNSUPPORTED_HINT}")
        return "relu"
    if kind == "Activation":
        act = kinds.activation_name(layer)
        if act == "relu":
            return "relu"
        if act == "linear":
            return "pass"
        raise ValueError(
            f"layer {name!r} has activation {act!r}; the deconvnet inverts ReLU only; "
            + _UNSUPPORTED_HINT
        )
    if kind == "Conv2D":
        act = kinds.activation_name(layer)
        if act not in ("relu", "linear", None):
            raise ValueError(
                f"layer {name!r} has activation {act!r}; the deconvnet inverts ReLU only; "
                + _UNSUPPORTED_HINT
            )
        if getattr(layer, "groups", 1) != 1 or layer.data_format != "channels_last":
            raise ValueError(
                f"layer {name!r}: grouped or channels_first convolutions are not supported; "
                + _UNSUPPORTED_HINT
            )
        return "conv_relu" if act == "relu" else "conv"
    raise ValueError(
        f"the deconvnet walks back through plain Conv2D / ReLU / MaxPooling2D stacks only, "
        f"but layer {name!r} is a {kind}; {_UNSUPPORTED_HINT}"
    )


def deconvnet_path(probe: Probe, layer: str) -> list[tuple[str, str]]:
    """The layers from ``layer`` back to the model input, with what each step does.

    Returns:
        [(layer path, step)] from ``layer`` down, step one of 'pass',
        'rescale', 'unpool', 'relu', 'conv', 'conv_relu'.

    Raises:
        ValueError: naming the first layer without a deconvnet inverse (a
            merge of several inputs, BatchNorm, SeparableConv2D, ...).
    """
    path = probe.resolve_4d(layer)
    steps = []
    while path != "input":
        info = probe.layer_info(path)
        if info.is_model:  # a nested model's container entry: walk its inner layers
            raise ValueError(f"layer {path!r} is a nested model; pick a layer inside it")
        if len(info.parents) != 1:
            raise ValueError(
                f"layer {path!r} ({info.kind}) merges {len(info.parents)} inputs "
                f"{list(info.parents)}; the deconvnet needs a single chain of layers; "
                + _UNSUPPORTED_HINT
            )
        steps.append((path, _step_kind(probe.layer(path))))
        path = info.parents[0]
    return steps


def _pool_args(layer: Any) -> tuple[tuple[int, int], tuple[int, int], str]:
    window = geometry.sliding_window(layer)
    return window.kernel, window.strides, window.padding


def _pool_geometry(shape, pool, strides, padding):
    """(oh, ow, (top, bottom), (left, right)) of a pool over an (N, H, W, C) input:
    'same' pads as TensorFlow does (:mod:`cnnwidgets.probe.geometry`), anything
    else is 'valid'."""
    _, h, w, _ = shape
    mode = "same" if padding == "same" else "valid"
    rows = geometry.axis_padding(h, pool[0], strides[0], mode)
    cols = geometry.axis_padding(w, pool[1], strides[1], mode)
    return rows.out, cols.out, (rows.before, rows.after), (cols.before, cols.after)


def max_pool_switches(
    x: np.ndarray,
    pool: tuple[int, int] = (2, 2),
    strides: tuple[int, int] | None = None,
    padding: str = "valid",
) -> np.ndarray:
    """Where each max-pooling window found its maximum.

    Args:
        x: the pool's input, (N, H, W, C) float.
        pool, strides, padding: as in ``keras.layers.MaxPooling2D``.

    Returns:
        (N, oh, ow, C) int64: the flat index ``i * pool[1] + j`` of the
        maximum inside each window (first one in row-major order on ties).
    """
    strides = strides or pool
    x = np.asarray(x, np.float32)
    oh, ow, (t, b), (l_, r) = _pool_geometry(x.shape, pool, strides, padding)
    xp = np.pad(x, ((0, 0), (t, b), (l_, r), (0, 0)), constant_values=-np.inf)
    windows = np.stack(
        [
            xp[
                :,
                i : i + strides[0] * (oh - 1) + 1 : strides[0],
                j : j + strides[1] * (ow - 1) + 1 : strides[1],
            ]
            for i in range(pool[0])
            for j in range(pool[1])
        ]
    )  # (pool_h * pool_w, N, oh, ow, C)
    return np.argmax(windows, axis=0).astype(np.int64)


def unpool(
    y: np.ndarray,
    switches: np.ndarray,
    input_shape: tuple[int, ...],
    pool: tuple[int, int] = (2, 2),
    strides: tuple[int, int] | None = None,
    padding: str = "valid",
) -> np.ndarray:
    """Put each pooled value back where its window's maximum was.

    Args:
        y: (N, oh, ow, C) signal at the pool's output.
        switches: (N, oh, ow, C) from :func:`max_pool_switches`.
        input_shape: (N, H, W, C) of the pool's input.

    Returns:
        (N, H, W, C) float32, zero except at the switch positions
        (overlapping windows add up).
    """
    strides = strides or pool
    oh, ow, (t, b), (l_, r) = _pool_geometry(input_shape, pool, strides, padding)
    n, h, w, c = input_shape
    out = np.zeros((n, h + t + b, w + l_ + r, c), np.float32)
    y = np.asarray(y, np.float32)
    for i in range(pool[0]):
        for j in range(pool[1]):
            sl = (
                slice(None),
                slice(i, i + strides[0] * (oh - 1) + 1, strides[0]),
                slice(j, j + strides[1] * (ow - 1) + 1, strides[1]),
            )
            out[sl] += np.where(switches == i * pool[1] + j, y, 0.0)
    return out[:, t : t + h, l_ : l_ + w]


def _conv_transpose(y: np.ndarray, layer: Any, input_shape: tuple[int, ...]) -> np.ndarray:
    """The transpose (adjoint) of the layer's convolution, bias ignored.

    A 'valid' transposed convolution gives the full padded input frame, which
    is then cropped by the forward 'same' padding (or zero-filled where no
    'valid' window reached), so the result has exactly ``input_shape``."""
    kernel = keras.ops.convert_to_numpy(layer.kernel).astype(np.float32)  # (kh, kw, cin, cout)
    window = geometry.sliding_window(layer)
    strides, dilation = window.strides, window.dilation
    full = keras.ops.convert_to_numpy(
        keras.ops.conv_transpose(
            keras.ops.convert_to_tensor(y),
            keras.ops.convert_to_tensor(kernel),
            strides=strides,
            padding="valid",
            dilation_rate=dilation,
            data_format="channels_last",
        )
    )
    _, h, w, _ = input_shape
    pads = [
        geometry.axis_padding(n, window.effective[axis], strides[axis], window.padding).before
        for axis, n in ((0, h), (1, w))
    ]
    out = np.zeros((full.shape[0], h, w, full.shape[3]), np.float32)
    crop = full[:, pads[0] : pads[0] + h, pads[1] : pads[1] + w]
    out[:, : crop.shape[1], : crop.shape[2]] = crop
    return out


def _keep_channel(acts: np.ndarray, channel: int, keep: str) -> np.ndarray:
    """(N, h, w, C) -> the same shape, zero except channel ``channel``
    (only its strongest position per image when keep='max')."""
    signal = np.zeros_like(acts, dtype=np.float32)
    fmap = acts[..., channel]
    if keep == "map":
        signal[..., channel] = fmap
        return signal
    n = fmap.shape[0]
    flat = fmap.reshape(n, -1)
    idx = flat.argmax(axis=1)
    ys, xs = np.unravel_index(idx, fmap.shape[1:])
    signal[np.arange(n), ys, xs, channel] = flat[np.arange(n), idx]
    return signal


def reconstruct(
    model_or_probe: Any,
    images: Any,
    layer: Any,
    channel: int,
    method: str = "deconvnet",
    keep: str | None = None,
    class_names: Sequence[str] | None = None,
    preprocess: Callable | None = None,
) -> np.ndarray:
    """Project one channel of a hidden layer back to pixel space.

    Args:
        model_or_probe: a keras.Model or :class:`~cnnwidgets.Probe`.
        images: raw pixels, (H, W, C) or (N, H, W, C).
        layer: a 4-D layer (path, short name or layer object).
        channel: the channel index in that layer.
        method: 'deconvnet' (Zeiler and Fergus: switches, ReLU on the
            backward signal, transposed filters; plain conv/ReLU/max-pool
            stacks only) or 'gradient' (guided backpropagation of the kept
            activation; any differentiable model).
        keep: what of the channel is projected: 'max' (its single strongest
            activation per image, all else zeroed, as Zeiler and Fergus do)
            or 'map' (the whole channel map; for 'gradient' its mean). Default:
            'max' for 'deconvnet', 'map' for 'gradient'.
        class_names: used when a keras.Model is given.
        preprocess: used when a keras.Model is given.

    Returns:
        (N, H, W, C) float32 in model-input space (C = 3 for RGB models),
        unnormalized; zero where nothing projects (outside the receptive
        field of the kept unit, or an all-zero channel).

    Raises:
        ValueError: unknown method/keep, a non-4-D layer, a channel out of
            range, or (deconvnet) a layer on the path that has no deconvnet
            inverse, with a hint to use method='gradient'.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    keep = keep or ("max" if method == "deconvnet" else "map")
    if keep not in KEEPS:
        raise ValueError(f"keep must be one of {KEEPS}, got {keep!r}")
    probe = as_probe(model_or_probe, class_names=class_names, preprocess=preprocess)
    path = probe.resolve_4d(layer)
    channels = int(probe.layer_info(path).output_shape[-1])
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)):
        raise TypeError(f"channel must be an int, got {type(channel).__name__}")
    if not 0 <= channel < channels:
        raise ValueError(f"channel {channel} out of range; layer {path!r} has {channels} channels")
    raw = probe.check_images(images)
    if method == "gradient":
        from cnnwidgets.gradients.projection import channel_input_gradients

        return channel_input_gradients(probe, probe.model_inputs(raw), path, int(channel), keep)

    steps = deconvnet_path(probe, path)  # refuses before any forward pass
    # One forward pass records what the way back needs: the inputs of pools
    # (for the switches) and of convolutions (for their shapes).
    below = [
        probe.layer_info(p).parents[0] for p, s in steps if s in ("unpool", "conv", "conv_relu")
    ]
    wanted = [path] + [p for p in dict.fromkeys(below) if p not in ("input", path)]
    acts = probe.activations(raw, wanted)
    x = probe.model_inputs(raw)

    signal = _keep_channel(acts[path], int(channel), keep)
    for name, step in steps:
        obj = probe.layer(name)
        parent = probe.layer_info(name).parents[0]
        if step in ("relu", "conv_relu"):
            signal = np.maximum(signal, 0.0)
        if step in ("conv", "conv_relu"):
            below = x if parent == "input" else acts[parent]
            signal = _conv_transpose(signal, obj, below.shape)
        elif step == "unpool":
            below = x if parent == "input" else acts[parent]
            pool, strides, padding = _pool_args(obj)
            switches = max_pool_switches(below, pool, strides, padding)
            signal = unpool(signal, switches, below.shape, pool, strides, padding)
        elif step == "rescale":
            scale = np.asarray(obj.scale, np.float32)
            signal = signal / np.where(scale == 0, 1.0, scale)
    return np.nan_to_num(signal).astype(np.float32)
