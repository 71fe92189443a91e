"""The names of the 1,000 ImageNet-1k classes, in the classifiers' output order.

Read from ``data/imagenet_classes.txt``, shipped with the package (one name
per line; written by ``scripts/make_imagenet_classes.py`` from the WordNet
lemmas timm bundles): class ``i`` of an ImageNet classifier such as
:func:`cnnwidgets.assets.pretrained` is line ``i``.
"""

from __future__ import annotations

import functools
import pathlib

__all__ = ["IMAGENET_CLASSES_FILE", "imagenet_class_names"]

IMAGENET_CLASSES_FILE = pathlib.Path(__file__).parent / "data" / "imagenet_classes.txt"


@functools.lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    return tuple(IMAGENET_CLASSES_FILE.read_text(encoding="utf-8").splitlines())


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names as a new list of str, index = class id.

    A class is named by its first WordNet lemma ("tabby" for "tabby, tabby
    cat", 281); the two names shared by two classes say which one they are
    ("crane (bird)" 134, "crane (machine)" 517, "maillot (tights)" 638,
    "maillot (tank suit)" 639), so every name is unique."""
    return list(_names())
