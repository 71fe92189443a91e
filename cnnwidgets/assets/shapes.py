"""A synthetic shapes data set with ground-truth boxes, deterministic by seed.

Everything here is plain numpy so that the same seed gives the same pixels on
every machine. Images are uint8 RGB, (N, size, size, 3); boxes are integer
(top, left, bottom, right) with bottom/right exclusive.
"""

from __future__ import annotations

import numpy as np

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth colour gradient plus mild noise: (size, size, 3) float32 in [0, 255]."""
    corners = rng.uniform(20, 235, size=(2, 2, 3))
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)
    top = corners[0, 0] * (1 - t[:, None]) + corners[0, 1] * t[:, None]
    bottom = corners[1, 0] * (1 - t[:, None]) + corners[1, 1] * t[:, None]
    img = top[None, :, :] * (1 - t[:, None, None]) + bottom[None, :, :] * t[:, None, None]
    img = img + rng.normal(0.0, 8.0, size=(size, size, 3))
    return img.astype(np.float32)


def shape_mask(kind: str, size: int, cy: float, cx: float, r: float) -> np.ndarray:
    """Boolean (size, size) mask of one shape centred at (cy, cx) with half-size r."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy, dx = yy - cy, xx - cx
    if kind == "circle":
        return dy**2 + dx**2 <= r**2
    if kind == "square":
        s = r * 0.85
        return (np.abs(dy) <= s) & (np.abs(dx) <= s)
    if kind == "triangle":
        # Apex at the top; the half-width grows linearly towards the base.
        rel = (dy + r) / (2 * r)
        return (rel >= 0) & (rel <= 1) & (np.abs(dx) <= rel * r)
    if kind == "cross":
        arm = r / 3
        return ((np.abs(dy) <= arm) & (np.abs(dx) <= r)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPE_CLASSES}")


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A colour at least 80 (L1 over RGB / 3) away from the local background mean."""
    mean = background.reshape(-1, 3).mean(axis=0)
    for _ in range(100):
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - mean).mean() > 80:
            return colour
    return 255.0 - mean


def _draw(img, rng, kind, cy, cx, r):
    size = img.shape[0]
    mask = shape_mask(kind, size, cy, cx, r)
    colour = _contrasting_colour(rng, img[mask])
    img[mask] = colour + rng.normal(0.0, 6.0, size=(int(mask.sum()), 3))
    ys, xs = np.nonzero(mask)
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1], dtype=np.int32)


def _finish(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_shapes(
    n: int,
    seed: int = 0,
    size: int = 64,
    classes: tuple[str, ...] = SHAPE_CLASSES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shape per image.

    Returns:
        images: (n, size, size, 3) uint8.
        labels: (n,) int64, indices into ``classes``.
        boxes: (n, 4) int32, (top, left, bottom, right).
    """
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.uint8)
    labels = rng.integers(0, len(classes), size=n)
    boxes = np.empty((n, 4), np.int32)
    for i in range(n):
        img = _background(rng, size)
        r = rng.uniform(0.1, 0.3) * size
        cy, cx = rng.uniform(r + 1, size - r - 1, size=2)
        boxes[i] = _draw(img, rng, classes[labels[i]], cy, cx, r)
        images[i] = _finish(img)
    return images, labels, boxes


def make_pairs(
    n: int,
    seed: int = 0,
    size: int = 64,
    classes: tuple[str, ...] = SHAPE_CLASSES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two shapes of different classes per image, side by side without overlap:
    the 'cat and dog in one picture' of the Grad-CAM tutorials, with known answers.

    Returns:
        images: (n, size, size, 3) uint8.
        labels: (n, 2) int64, the two classes.
        boxes: (n, 2, 4) int32, the box of each object in the order of ``labels``.
    """
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty((n, 2), np.int64)
    boxes = np.empty((n, 2, 4), np.int32)
    for i in range(n):
        img = _background(rng, size)
        labels[i] = rng.choice(len(classes), size=2, replace=False)
        r = rng.uniform(0.12, 0.18) * size
        # One object in each half, along a random axis, so the boxes never overlap.
        horizontal = rng.random() < 0.5
        for j in range(2):
            lo = r + 1 + j * size / 2
            hi = (j + 1) * size / 2 - r - 1
            along = rng.uniform(lo, max(lo, hi))
            across = rng.uniform(r + 1, size - r - 1)
            cy, cx = (across, along) if horizontal else (along, across)
            boxes[i, j] = _draw(img, rng, classes[labels[i, j]], cy, cx, r)
        images[i] = _finish(img)
    return images, labels, boxes


def _place(rng: np.random.Generator, size: int, radii: np.ndarray) -> list[tuple[float, float]]:
    """Centres for shapes of half-sizes ``radii`` that keep 2 px apart and off the border.

    Shapes that find no free place in 200 tries are left out."""
    centres: list[tuple[float, float, float]] = []
    for r in radii:
        for _ in range(200):
            cy, cx = rng.uniform(r + 1, size - r - 1, size=2)
            if all((cy - y) ** 2 + (cx - x) ** 2 >= (r + q + 2) ** 2 for y, x, q in centres):
                centres.append((cy, cx, r))
                break
    return [(cy, cx) for cy, cx, _ in centres]


def make_scenes(
    n: int,
    seed: int = 0,
    size: int = 64,
    objects: tuple[int, int] = (1, 3),
    radius: tuple[float, float] = (0.08, 0.2),
    classes: tuple[str, ...] = SHAPE_CLASSES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Several shapes per image, apart from each other, with every pixel's answer:
    the ground truth of segmentation (which class is here?) and of size
    regression (how much of the image does the shape cover?).

    Args:
        n: number of images.
        seed: the only source of randomness; the same seed, the same pixels.
        size: image side in pixels.
        objects: (least, most) shapes per image, both included; classes may repeat.
        radius: (least, most) half-size of a shape, as a fraction of ``size``.
        classes: the shapes drawn, in label order.

    Returns:
        images: (n, size, size, 3) uint8.
        segmentation: (n, size, size) uint8 class map: 0 = background,
            1 + k = ``classes[k]``.
        instances: (n, size, size) uint8 object map: 0 = background, j = the
            j-th shape of the image (1-based).
    """
    lo, hi = (int(v) for v in objects)
    if not 1 <= lo <= hi:
        raise ValueError(f"objects must be (least, most) with 1 <= least <= most, got {objects}")
    if not 0 < radius[0] <= radius[1] < 0.5:
        raise ValueError(f"radius must be (least, most) fractions in (0, 0.5), got {radius}")
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.uint8)
    segmentation = np.zeros((n, size, size), np.uint8)
    instances = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        img = _background(rng, size)
        count = int(rng.integers(lo, hi + 1))
        kinds = rng.integers(0, len(classes), size=count)
        radii = np.sort(rng.uniform(*radius, size=count) * size)[::-1]  # big ones first
        for j, (cy, cx) in enumerate(_place(rng, size, radii)):
            mask = shape_mask(classes[kinds[j]], size, cy, cx, radii[j])
            colour = _contrasting_colour(rng, img[mask])
            img[mask] = colour + rng.normal(0.0, 6.0, size=(int(mask.sum()), 3))
            segmentation[i][mask] = 1 + kinds[j]
            instances[i][mask] = 1 + j
        images[i] = _finish(img)
    return images, segmentation, instances


def area_percent(segmentation: np.ndarray) -> np.ndarray:
    """(N,) float32: the share of each image the shapes cover, in percent of its
    pixels, from a (N, H, W) class map (0 = background) as :func:`make_scenes` gives."""
    seg = np.asarray(segmentation)
    return (100.0 * (seg > 0).mean(axis=(-2, -1))).astype(np.float32)
