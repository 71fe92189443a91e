"""Per-image scores stored beside the maps: confidence, loss, and the share
of a map's energy that falls inside the object (box or mask).

Numpy in, numpy out. Energy is measured at the input's resolution: the map
(at the layer's resolution) is resized bilinearly, as it is when drawn over
the image, and compared with the object's pixels. A map that points at a
shortcut (a corner mark, the snow behind the husky) has most of its energy
outside the object.
"""

from __future__ import annotations

import numpy as np

from cnnwidgets.explain.cam import resize_maps

__all__ = ["box_masks", "cross_entropy", "energy_inside"]

#: Probabilities are clipped here before the log, so a sure mistake has a finite loss.
EPS = 1e-7


def cross_entropy(probs: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """-log p(true class) per image: (N, K_all) probabilities, (N,) labels -> (N,) float32.

    NaN where there is no label (``labels`` None, or a label < 0)."""
    probs = np.asarray(probs, np.float32)
    n = len(probs)
    if labels is None:
        return np.full(n, np.nan, np.float32)
    labels = np.asarray(labels, np.int64)
    known = labels >= 0
    p = probs[np.arange(n), np.where(known, labels, 0)]
    loss = -np.log(np.clip(p.astype(np.float64), EPS, 1.0))
    return np.where(known, loss, np.nan).astype(np.float32)


def box_masks(boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(N, 4) boxes (top, left, bottom, right; bottom/right exclusive) -> (N, H, W) bool."""
    boxes = np.asarray(boxes, np.int64)
    h, w = int(hw[0]), int(hw[1])
    rows = np.arange(h)[None, :, None]
    cols = np.arange(w)[None, None, :]
    t, l, b, r = (boxes[:, i, None, None] for i in range(4))
    return (rows >= t) & (rows < b) & (cols >= l) & (cols < r)


def energy_inside(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's energy inside the object.

    Args:
        maps: (N, K, h, w) non-negative maps at any resolution.
        masks: (N, H, W) bool object pixels at the input's resolution.

    Returns:
        (N, K) float32 in [0, 1]: sum(map * mask) / sum(map) with the map
        resized to (H, W). An all-zero map (no evidence anywhere) scores 0.
    """
    maps = np.maximum(np.asarray(maps, np.float32), 0.0)
    masks = np.asarray(masks, bool)
    if maps.ndim != 4 or masks.ndim != 3 or len(maps) != len(masks):
        raise ValueError(
            f"need maps (N, K, h, w) and masks (N, H, W); got {maps.shape}, {masks.shape}"
        )
    up = resize_maps(maps, masks.shape[1:])  # (N, K, H, W)
    total = up.sum(axis=(2, 3), dtype=np.float64)
    inside = (up * masks[:, None]).sum(axis=(2, 3), dtype=np.float64)
    share = np.divide(inside, total, out=np.zeros_like(total), where=total > 0)
    return np.clip(share, 0.0, 1.0).astype(np.float32)
