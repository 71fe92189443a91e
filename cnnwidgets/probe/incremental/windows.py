"""Window geometry of one node along one spatial axis, for incremental occlusion.

Per spatial axis (kernel k after dilation, stride s, ``before`` rows of
padding before the map, negative for a crop): output o reads input rows
``o*s - before .. o*s - before + k - 1``; input rows [a, b) reach outputs
``ceil((a + before - k + 1) / s) .. floor((b - 1 + before) / s)``. The
padding itself is :mod:`cnnwidgets.probe.geometry`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnwidgets.probe import geometry, kinds

__all__ = ["Axis", "sliding_axes"]


@dataclass(frozen=True)
class Axis:
    """Window geometry of one node along one spatial axis (see the module doc).

    Attributes:
        k: kernel extent after dilation (1 for padding / cropping).
        s: stride.
        before: rows of padding before the map (negative: rows cropped).
        n_in, n_out: rows of the node's input and output.
    """

    k: int
    s: int
    before: int
    n_in: int
    n_out: int

    def reach(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output rows [lo, hi) changed by input rows [a, b), per image (M,) int64;
        (0, 0) where none are."""
        lo = -((-(a + self.before - self.k + 1)) // self.s)
        hi = (b - 1 + self.before) // self.s + 1
        lo = np.clip(lo, 0, self.n_out)
        hi = np.clip(hi, 0, self.n_out)
        empty = (a >= b) | (lo >= hi)
        return np.where(empty, 0, lo), np.where(empty, 0, hi)

    def window(self, start: np.ndarray, n: int) -> tuple[np.ndarray, int]:
        """Input rows (start (M,) int64, length) that outputs [start, start + n) read."""
        return start * self.s - self.before, (n - 1) * self.s + self.k

    @property
    def pads(self) -> tuple[int, int]:
        """Rows of padding the cached input needs before and after for any window."""
        after = (self.n_out - 1) * self.s - self.before + self.k - self.n_in
        return max(0, self.before), max(0, after)

    def real_counts(self) -> np.ndarray:
        """(n_out,) float32: per output row, the input rows its window reads that lie
        inside the map (what a 'same' average divides by)."""
        start = np.arange(self.n_out) * self.s - self.before
        lo, hi = np.maximum(start, 0), np.minimum(start + self.k, self.n_in)
        return (hi - lo).astype(np.float32)


def sliding_axes(layer: Any, kind: str, hw: tuple[int, int]) -> tuple[Axis, Axis]:
    """(rows, columns) geometry of a convolution / pooling / border layer on an
    input of ``hw`` = (H, W), or ValueError saying why there is none."""
    if not geometry.is_channels_last(layer):
        raise ValueError("channels_first data format")
    if kinds.WINDOW_RULES.get(kind) == "border":
        # A border adds (or, negative, cuts) rows: a 1-row window shifted by `before`.
        return tuple(  # type: ignore[return-value]
            Axis(1, 1, b, n, n + b + e) for (b, e), n in zip(geometry.border(layer), hw)
        )
    if getattr(layer, "quantization_mode", None):
        raise ValueError("quantized layer")
    window = geometry.sliding_window(layer)
    if window.padding not in ("same", "valid"):
        raise ValueError(f"padding {window.padding!r}")
    axes = []
    for k_eff, s, n in zip(window.effective, window.strides, hw):
        pad = geometry.axis_padding(n, k_eff, s, window.padding)
        if pad.out < 1:
            raise ValueError("input smaller than the kernel")
        axes.append(Axis(k_eff, s, pad.before, n, pad.out))
    return axes[0], axes[1]
