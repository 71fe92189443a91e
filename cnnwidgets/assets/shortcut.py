"""Shapes with a planted shortcut: a small coloured tag in the top-left corner
whose colour gives the class away (a photographer's watermark on every
picture of one class; the snow behind every husky).

A model trained on tagged images can be right for the wrong reason: it reads
the tag, not the shape. Without the tags (a clean test set) its accuracy
collapses, and Grad-CAM puts the evidence on the corner, outside the object.
Plain numpy, deterministic by seed, like :mod:`cnnwidgets.assets.shapes`.
"""

from __future__ import annotations

import numpy as np

from cnnwidgets.assets.shapes import SHAPE_CLASSES, make_shapes

__all__ = ["MARK_BOX", "MARK_COLOURS", "add_marks", "make_shortcut_shapes"]

#: Tag colour of each class of SHAPE_CLASSES (RGB): circle red, square green,
#: triangle blue, cross yellow.
MARK_COLOURS = np.array([[230, 30, 30], [30, 200, 40], [40, 70, 240], [240, 220, 20]], np.uint8)

#: Where the tag sits: (top, left, bottom, right), bottom/right exclusive.
MARK_BOX = (1, 1, 9, 9)


def add_marks(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A copy of (N, H, W, 3) uint8 images with each label's tag drawn in the corner."""
    out = np.array(images, np.uint8, copy=True)
    t, l, b, r = MARK_BOX
    out[:, t:b, l:r] = MARK_COLOURS[np.asarray(labels, np.int64)][:, None, None, :]
    return out


def make_shortcut_shapes(
    n: int, seed: int = 0, marked: bool = True, size: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shapes (as :func:`~cnnwidgets.assets.make_shapes`), tagged or clean.

    Returns:
        images (n, size, size, 3) uint8, labels (n,) int64, boxes (n, 4) int32
        (the object's box; the tag is outside it unless the object covers the
        corner)."""
    images, labels, boxes = make_shapes(n, seed=seed, size=size, classes=SHAPE_CLASSES)
    if marked:
        images = add_marks(images, labels)
    return images, labels, boxes
