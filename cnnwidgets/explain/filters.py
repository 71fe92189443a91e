"""Convolution kernels as arrays and as pictures, and the input patches that
excite a filter most.

    k = cw.filter_weights(model, "block1_conv1")     # (3, 3, 3, 16) float32
    kernel_pictures(k).shape                         # (16, 3, 3, 3) uint8 colour patches
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from cnnwidgets import render
from cnnwidgets.explain.receptive_field import receptive_field
from cnnwidgets.probe import Probe, as_probe, kinds

#: Layer kinds whose kernels :func:`filter_weights` returns.
KERNEL_KINDS = kinds.KERNEL


def kernel_layers(probe: Probe) -> list[str]:
    """Paths of the layers with a 2-D convolution kernel, in graph order."""
    return [i.name for i in probe.layers if i.kind in KERNEL_KINDS]


def filter_weights(model_or_probe: Any, layer: Any) -> np.ndarray:
    """The kernel of a 2-D convolution layer: a float32 copy (kh, kw, cin, cout).

    - Conv2D: the kernel as stored.
    - DepthwiseConv2D: output channel ``c * m + j`` sees input channel ``c``
      only, so the kernel is returned as (kh, kw, 1, cin * m): one
      single-channel kernel per output channel.
    - SeparableConv2D: the equivalent full kernel, the depthwise kernel
      followed by the pointwise one (no non-linearity lies between them):
      (kh, kw, cin, cout).

    Raises ValueError, listing the convolution layers, for any other layer.
    """
    probe = as_probe(model_or_probe)
    path = probe.resolve(layer)
    obj = probe.layer(path)
    kind = type(obj).__name__
    convs = kernel_layers(probe)
    if kind not in KERNEL_KINDS:
        close = difflib.get_close_matches(path, convs, n=3, cutoff=0.0)
        extra = "; transposed convolutions are not supported" if kind == "Conv2DTranspose" else ""
        raise ValueError(
            f"layer {path!r} ({kind}) has no 2-D convolution kernel{extra}; "
            f"closest conv layers: {close}; all: {convs}"
        )
    if kind == "Conv2D":
        return np.array(obj.kernel.numpy(), dtype=np.float32, copy=True)
    dk = obj.kernel if kind == "DepthwiseConv2D" else obj.depthwise_kernel
    depthwise = np.asarray(dk.numpy(), np.float32)  # (kh, kw, cin, m)
    kh, kw, cin, m = depthwise.shape
    if kind == "DepthwiseConv2D":
        return depthwise.reshape(kh, kw, 1, cin * m).copy()
    pointwise = np.asarray(obj.pointwise_kernel.numpy(), np.float32)[0, 0]  # (cin * m, cout)
    full = np.einsum("hwcm,cmo->hwco", depthwise, pointwise.reshape(cin, m, -1))
    return full.astype(np.float32)


def kernel_pictures(
    kernel: np.ndarray, rgb: bool | None = None, scale: str = "layer"
) -> np.ndarray:
    """Draw a kernel (kh, kw, cin, cout) as pictures, 0 weight = grey 128.

    Values map symmetrically around zero: ``pixel = 127.5 + 127.5 * w / m``
    rounded, with ``m`` the largest |weight| of the layer (``scale='layer'``,
    filters comparable) or of each filter (``scale='filter'``).

    Args:
        kernel: (kh, kw, cin, cout) weights, e.g. from :func:`filter_weights`.
        rgb: draw each filter as one colour patch (needs cin == 3: the first
            layer of an RGB model); default: True exactly when cin == 3.

    Returns:
        rgb: (cout, kh, kw, 3) uint8 colour patches (channel order of the model
        input). Otherwise: (cout, cin, kh, kw) uint8 grey tiles, one per input
        channel.
    """
    return render.kernel_pictures(kernel, rgb=rgb, scale=scale)


def _field(probe: Probe, path: str, feature_hw: tuple[int, int]):
    """(size, jump, start, exact) of the layer's receptive field in input pixels
    (each of the first three a (y, x) float64 pair), from
    :func:`cnnwidgets.explain.receptive_field.receptive_field` where the field is
    defined; otherwise (it raises ValueError, e.g. after UpSampling2D) a
    fallback with ``exact`` False: a unit covers input / feature-map size
    pixels, and a crop of 3 such cells is taken around it."""
    try:
        rf = receptive_field(probe, path)
    except (ValueError, AttributeError, NotImplementedError):
        # ValueError: the field is not defined; the others: a layer (a custom one)
        # lacking what its kind promises. Either way the crop can still be shown.
        h, w = probe.input_shape[1:3]
        jump = np.array([h / feature_hw[0], w / feature_hw[1]], np.float64)
        return 3 * jump, jump, (jump - 1) / 2.0, False
    return (
        np.broadcast_to(np.asarray(rf.size, np.float64), (2,)),
        np.broadcast_to(np.asarray(rf.jump, np.float64), (2,)),
        np.broadcast_to(np.asarray(rf.start, np.float64), (2,)),
        True,
    )


def top_patches(
    model_or_probe: Any, layer: Any, images: np.ndarray, filt: int, k: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The input crops that excite one filter most (one per image, best first).

    For each image the strongest unit of channel ``filt`` is found, its
    receptive field is cut from the raw image (clipped at the borders) and
    resized to a common square.

    Returns:
        crops (k', s, s, 3) uint8, values (k',) float32 (the activations) and
        boxes (k', 4) int (top, left, bottom, right; bottom/right exclusive),
        with k' = min(k, number of images).
    """
    probe = as_probe(model_or_probe)
    path = probe.resolve_4d(layer)
    raw = probe.check_images(images)
    act = probe.activations(raw, path)[path][..., int(filt)]  # (N, h, w)
    n, fh, fw = act.shape
    flat = act.reshape(n, -1)
    best = flat.argmax(axis=1)
    values = flat[np.arange(n), best]
    order = np.argsort(-values, kind="stable")[:k]
    size, jump, start, _ = _field(probe, path, (fh, fw))
    H, W = raw.shape[1:3]
    side = int(max(8, min(64, round(max(size)))))
    crops, boxes = [], []
    for i in order:
        y, x = divmod(int(best[i]), fw)
        cy, cx = start[0] + jump[0] * y, start[1] + jump[1] * x
        t = int(np.clip(np.floor(cy - size[0] / 2 + 0.5), 0, H - 1))
        l = int(np.clip(np.floor(cx - size[1] / 2 + 0.5), 0, W - 1))
        b = int(np.clip(np.floor(cy + size[0] / 2 + 0.5), t + 1, H))
        r = int(np.clip(np.floor(cx + size[1] / 2 + 0.5), l + 1, W))
        crop = render.to_rgb_uint8(raw[i])[t:b, l:r]
        crops.append(render.resize_image(crop, (side, side), smooth=False))
        boxes.append((t, l, b, r))
    return (
        np.stack(crops),
        values[order].astype(np.float32),
        np.asarray(boxes, dtype=np.int64).reshape(-1, 4),
    )
