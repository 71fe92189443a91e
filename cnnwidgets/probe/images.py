"""Checks on the images given to a model, before any TensorFlow trace."""

from __future__ import annotations

from typing import Any

import numpy as np


def _channels_first_hint(shape: tuple, want_c: int | None, hw: tuple) -> str | None:
    """A message when an array looks channels-first (C, H, W) / (N, C, H, W)."""
    if want_c is None or len(shape) < 3:
        return None
    c_first, spatial = shape[-3], shape[-2:]
    if c_first == want_c and shape[-1] != want_c and (None in hw or tuple(spatial) == tuple(hw)):
        return (
            f"images have shape {shape}, which looks channels-first (C, H, W); cnnwidgets "
            f"takes channels-last images (H, W, {want_c}): use np.moveaxis(images, -3, -1) "
            f"(for a batch of grayscale images, add the channel axis: images[..., None])"
        )
    return None


def check_images(images: Any, input_shape: tuple) -> np.ndarray:
    """Validate raw images for a model with ``input_shape`` (None, H, W, C).

    Accepts (H, W), (H, W, C) or (N, H, W, C) of any real numeric dtype;
    grayscale images are repeated to three channels for an RGB model.

    Returns:
        (N, H, W, C) float32, a new array.

    Raises:
        TypeError: not numeric (strings, objects, complex numbers).
        ValueError: wrong rank, size or channels (with the fix), channels-first
            layout, empty batch, NaN or infinite values.
    """
    if hasattr(images, "numpy") and not isinstance(images, np.ndarray):
        images = images.numpy()
    try:
        arr = np.asarray(images)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(
            f"images must be an array (N, H, W, C); got {type(images).__name__}"
        ) from exc
    if np.iscomplexobj(arr):
        raise TypeError(
            f"images must be real numbers, got dtype {arr.dtype}; pass np.abs(x) or x.real"
        )
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"images must be numeric, got dtype {arr.dtype}")
    want_c = input_shape[3]
    hw = tuple(input_shape[1:3])
    hint = _channels_first_hint(arr.shape, want_c, hw)
    if hint and arr.ndim in (3, 4):
        raise ValueError(hint)
    if arr.ndim == 2:
        arr = arr[None, :, :, None]
    elif arr.ndim == 3:
        # (H, W, C) is one image; (N, H, W) is a batch of grayscale images.
        grey_batch = None not in hw and tuple(arr.shape[1:]) == hw and arr.shape[-1] != want_c
        arr = arr[..., None] if grey_batch or arr.shape[-1] not in (1, 3, 4, want_c) else arr[None]
    if arr.ndim != 4:
        raise ValueError(
            f"images have shape {np.shape(images)}; expected (H, W, C) or (N, H, W, C)"
        )
    if arr.shape[0] == 0:
        raise ValueError("images is an empty batch")
    c = arr.shape[3]
    if want_c is not None and c != want_c:
        if c == 1 and want_c == 3:
            arr = np.repeat(arr, 3, axis=3)
        else:
            fix = " (drop the alpha channel with image[..., :3])" if c == 4 and want_c == 3 else ""
            raise ValueError(f"images have {c} channels but the model expects {want_c}{fix}")
    h, w = hw
    if (h is not None and arr.shape[1] != h) or (w is not None and arr.shape[2] != w):
        raise ValueError(
            f"images are {arr.shape[1]}x{arr.shape[2]} but the model expects {h}x{w}; "
            f"resize them first, e.g. cnnwidgets.assets.resize(image, ({h}, {w}))"
        )
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("images contain NaN or infinite values (or values beyond float32)")
    return arr


def check_preprocessed(x: Any, raw: np.ndarray) -> np.ndarray:
    """Check what ``preprocess`` returned for ``raw``: same shape, finite.

    Returns:
        (N, H, W, C) float32.
    """
    try:
        out = np.asarray(x, dtype=np.float32)
    except Exception as exc:
        raise TypeError(
            f"preprocess returned {type(x).__name__}, not an array of numbers"
        ) from exc
    if out.shape != raw.shape:
        raise ValueError(
            f"preprocess changed the images' shape {raw.shape} -> {out.shape}; it must keep "
            "(N, H, W, C): resize the raw images before cnnwidgets sees them instead"
        )
    if not np.isfinite(out).all():
        raise ValueError(
            "preprocess returned NaN or infinite values; check it on the raw pixels "
            "(e.g. a division by a zero standard deviation)"
        )
    return out
