"""Which image sizes a model with free height and width accepts.

A fully convolutional model (input ``(None, None, None, C)``) takes any size
in principle, but every "valid" convolution and pooling window shrinks the
picture, so too small an image fails deep inside a layer's ``call()``. Keras
can compute every output shape symbolically (no weights, no TensorFlow
kernel), which is how a size is checked here, before any model pass.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

#: The largest side tried when looking for the smallest accepted size.
LARGEST_SIDE = 4096


def shape_fits(model: keras.Model, height: int, width: int, channels: int) -> bool:
    """True when Keras can compute ``model``'s output for one (height, width,
    channels) image: every layer's output has a positive size."""
    spec = keras.KerasTensor((1, int(height), int(width), int(channels)), dtype="float32")
    try:
        outputs = model.compute_output_spec(spec)
    except (ValueError, TypeError):
        return False
    for out in keras.tree.flatten(outputs):
        if any(d is not None and d <= 0 for d in out.shape):
            return False
    return True


def smallest_side(fits: Callable[[int], bool], start: int = 1) -> int | None:
    """The smallest side s >= ``start`` with ``fits(s)``, assuming that any
    larger side fits too (true of convolutions and pooling); None when no
    side up to :data:`LARGEST_SIDE` fits."""
    hi = max(1, start)
    while not fits(hi):
        if hi >= LARGEST_SIDE:
            return None
        hi = min(2 * hi, LARGEST_SIDE)
    lo = max(1, start) - 1  # a side known not to fit (or 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def size_error(model_name: str, height: int, width: int, smallest: int | None) -> str:
    """The message for an image of ``height x width`` that ``model_name`` cannot take."""
    if smallest is None:
        return (
            f"model {model_name!r} cannot compute its output for {height}x{width} images "
            "(a layer's output would be empty); give it larger images"
        )
    return (
        f"images are {height}x{width} but model {model_name!r} needs at least "
        f"{smallest}x{smallest} pixels (smaller images leave a convolution or pooling "
        f"window with nothing to cover); resize them, e.g. "
        f"cnnwidgets.assets.resize(image, ({smallest}, {smallest}))"
    )
