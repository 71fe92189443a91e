"""Every map method in one table: the CAM family and the saliency family.

Each family declares its methods where they are computed
(:data:`cnnwidgets.explain.cam.METHOD_INFO`,
:data:`cnnwidgets.explain.saliency.METHOD_INFO`); this module puts them side
by side so that code handling many methods (the comparator, dataset streams,
benchmarks) asks what a method *needs* instead of testing its name::

    from cnnwidgets.explain import methods

    info = methods.info("Guided Grad-CAM")   # any spelling either family accepts
    info.uses_layer                          # True: its maps follow the CAM layer
    maps = methods.explain(model, image, classes=[3, 5], method="smoothgrad")
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnwidgets.explain import cam, saliency
from cnnwidgets.explain.common import MethodInfo, check_method

#: Every method, CAM family first, in the order a method picker shows them.
METHODS: dict[str, MethodInfo] = {**cam.METHOD_INFO, **saliency.METHOD_INFO}

#: The names of :data:`METHODS`.
MAP_METHODS: tuple[str, ...] = tuple(METHODS)

#: The families and the function that computes each one's maps.
FAMILIES: tuple[str, ...] = ("cam", "saliency")

__all__ = ["FAMILIES", "MAP_METHODS", "METHODS", "MethodInfo", "explain", "info", "resolve"]


def resolve(method: Any, family: str | None = None) -> str:
    """The canonical name of ``method`` in any spelling either family accepts
    ('Grad-CAM++', 'guided_gradcam', 'IG', ...); with ``family``, only that
    family's methods are accepted."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    names = [n for n, i in METHODS.items() if family in (None, i.family)]
    aliases = {a: n for a, n in {**cam.ALIASES, **saliency.ALIASES}.items() if n in names}
    what = "map" if family is None else {"cam": "CAM", "saliency": "saliency"}[family]
    return check_method(method, names, aliases, what)


def info(method: Any) -> MethodInfo:
    """What ``method`` needs (see :class:`~cnnwidgets.explain.common.MethodInfo`)."""
    return METHODS[resolve(method)]


def explain(
    model_or_probe: Any,
    images: Any,
    classes: Any = None,
    method: str = "gradcam",
    layer: Any = None,
    normalize: str | None = "map",
    **options: Any,
) -> np.ndarray:
    """Maps of any method, (N, K, H, W) float32 at the input size, >= 0.

    Arguments as in :func:`cnnwidgets.gradcam` and :func:`cnnwidgets.saliency`;
    ``layer`` is passed to the methods whose maps depend on it
    (``info(method).uses_layer``) and ignored by the others, so one call
    serves a list of mixed methods. ``options``: the family's own keyword
    arguments (``batch_size``, ``progress``, ``n_samples``, ``steps``, ...)."""
    spec = info(method)
    if spec.family == "cam":
        return cam.gradcam(
            model_or_probe,
            images,
            classes,
            layer=layer,
            method=spec.name,
            normalize=normalize,
            **options,
        )
    if spec.uses_layer:
        options["layer"] = layer
    return saliency.saliency(
        model_or_probe, images, classes, method=spec.name, normalize=normalize, **options
    )
