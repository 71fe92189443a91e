"""Layer geometry: how a sliding-window or border layer maps input rows to output rows.

The one home of TensorFlow's padding arithmetic and of reading a layer's
window (kernel, strides, dilation, padding) and border (zero padding,
cropping). Receptive fields, incremental occlusion and the deconvnet all ask
here, so the three agree on where every output unit looks.

Per spatial axis, with ``k_eff = (kernel - 1) * dilation + 1``, an input of
``n`` rows and stride ``s``, output row ``o`` reads input rows
``o*s - before + j*dilation`` for ``j`` in ``0 .. kernel - 1``, where
``before`` is the rows of padding added before the map:

- 'valid': ``out = (n - k_eff) // s + 1`` and ``before = 0``;
- 'same' (TensorFlow's rule): ``out = ceil(n / s)``, the padding in total is
  ``max((out - 1)*s + k_eff - n, 0)``, and the smaller half goes before
  (``before = total // 2``), so for an odd total the extra row goes after;
- 'causal' (1-D convolutions): ``before = k_eff - 1``, ``out = ceil(n / s)``.

Pure Python on the layer's attributes; no TensorFlow calls.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

from cnnwidgets.probe import kinds

__all__ = [
    "PADDINGS",
    "AxisPadding",
    "Pair",
    "Window",
    "axis_padding",
    "border",
    "effective_kernel",
    "is_channels_last",
    "pair",
    "same_padding",
    "sliding_window",
]

Pair = tuple[int, int]

#: Padding modes :func:`axis_padding` knows.
PADDINGS = ("valid", "same", "causal")


class AxisPadding(NamedTuple):
    """One spatial axis of a sliding window over an input of known or unknown size.

    Attributes:
        out: output rows (int), or None when the input size is unknown.
        before: padding rows added before the input (int >= 0).
        after: padding rows added after the input (int >= 0), or None when the
            input size is unknown.
    """

    out: int | None
    before: int
    after: int | None


class Window(NamedTuple):
    """A sliding-window layer's window, per axis (h, w).

    Attributes:
        kernel: (h, w) int taps (the pool size for pooling layers).
        strides: (h, w) int.
        dilation: (h, w) int, (1, 1) for pooling layers.
        padding: 'valid', 'same' or 'causal', lower case.
    """

    kernel: Pair
    strides: Pair
    dilation: Pair
    padding: str

    @property
    def effective(self) -> Pair:
        """(h, w) extent of the dilated kernel in input rows/columns."""
        return (
            effective_kernel(self.kernel[0], self.dilation[0]),
            effective_kernel(self.kernel[1], self.dilation[1]),
        )


def pair(value: Any, n_spatial: int = 2) -> Pair:
    """A Keras size argument as an (h, w) pair of ints.

    Args:
        value: an int (the same on both axes) or a sequence of ints (h, w); a
            1-element sequence is a 1-D layer's width when ``n_spatial`` is 1
            (height 1), and both axes otherwise.
        n_spatial: spatial axes of the layer (1 for Conv1D / pooling 1D, else 2).

    Returns:
        (h, w) ints.
    """
    if isinstance(value, numbers.Integral):
        return int(value), int(value)
    v = tuple(int(x) for x in value)
    if len(v) == 1:
        return (1, v[0]) if n_spatial == 1 else (v[0], v[0])
    return v[0], v[1]


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """Input rows a dilated kernel spans: ``(kernel - 1) * dilation + 1``."""
    return (int(kernel) - 1) * int(dilation) + 1


def same_padding(n: int | None, k_eff: int, stride: int) -> AxisPadding:
    """TensorFlow's 'same' padding along one axis.

    Args:
        n: input rows, or None when unknown: the padding before is then the one
            for any multiple of the stride (where it does not depend on ``n``).
        k_eff: the dilated kernel's extent (:func:`effective_kernel`).
        stride: the window's step.

    Returns:
        :class:`AxisPadding` with ``out = ceil(n / stride)``, ``before`` the
        smaller half of the total padding and ``after`` the rest.
    """
    if n is None:
        # For n a multiple of s, (out - 1)*s - n = -s: the total no longer depends on n.
        return AxisPadding(None, max(k_eff - stride, 0) // 2, None)
    out = -(-int(n) // stride)
    total = max((out - 1) * stride + k_eff - int(n), 0)
    return AxisPadding(out, total // 2, total - total // 2)


def axis_padding(n: int | None, k_eff: int, stride: int, padding: str) -> AxisPadding:
    """Output size and padding of one axis of a sliding window (see the module doc).

    Args:
        n: input rows, or None when unknown.
        k_eff: the dilated kernel's extent (:func:`effective_kernel`).
        stride: the window's step.
        padding: 'valid', 'same' or 'causal' (any case).

    Returns:
        :class:`AxisPadding`. For 'valid', ``out`` may be < 1 (the input is
        smaller than the kernel); callers decide what that means.

    Raises:
        ValueError: another padding mode.
    """
    mode = str(padding).lower()
    if mode == "same":
        return same_padding(n, k_eff, stride)
    if mode == "valid":
        if n is None:
            return AxisPadding(None, 0, None)
        out = (int(n) - k_eff) // stride + 1
        # What a last window would need past the input; <= 0 for 'valid', so 0.
        after = max((out - 1) * stride + k_eff - int(n), 0)
        return AxisPadding(out, 0, after)
    if mode == "causal":
        if n is None:
            return AxisPadding(None, k_eff - 1, None)
        return AxisPadding(-(-int(n) // stride), k_eff - 1, 0)
    raise ValueError(f"padding {padding!r}; known: {list(PADDINGS)}")


def sliding_window(layer: Any) -> Window:
    """The window of a convolution or pooling layer, read from its attributes.

    Pooling layers (``pool_size``) have no dilation; strides left unset are the
    pool size, as Keras does. 1-D layers (one-element sizes) have height 1.

    Returns:
        :class:`Window` with (h, w) pairs and the lower-case padding mode.

    Raises:
        AttributeError: the layer has no ``kernel_size`` / ``pool_size``.
    """
    pool = getattr(layer, "pool_size", None)
    size = pool if pool is not None else layer.kernel_size
    n_spatial = 1 if not isinstance(size, numbers.Integral) and len(size) == 1 else 2
    kernel = pair(size, n_spatial)
    strides = pair(getattr(layer, "strides", None) or size, n_spatial)
    dilation = (1, 1) if pool is not None else pair(layer.dilation_rate, n_spatial)
    return Window(kernel, strides, dilation, str(layer.padding).lower())


def border(layer: Any) -> tuple[Pair, Pair]:
    """Rows and columns a border layer adds around a map, negative where it cuts.

    Returns:
        ((top, bottom), (left, right)) ints: the ``padding`` of a
        ZeroPadding2D, minus the ``cropping`` of a Cropping2D.

    Raises:
        ValueError: a layer of another kind.
    """
    kind = kinds.kind_of(layer)
    if kind in kinds.PADDING_2D:
        spec, sign = layer.padding, 1
    elif kind in kinds.CROPPING_2D:
        spec, sign = layer.cropping, -1
    else:
        raise ValueError(f"{kind} is not a padding or cropping layer")
    (top, bottom), (left, right) = spec
    return (sign * int(top), sign * int(bottom)), (sign * int(left), sign * int(right))


def is_channels_last(layer: Any) -> bool:
    """True unless the layer says its maps are channels_first (NCHW)."""
    return getattr(layer, "data_format", "channels_last") != "channels_first"
