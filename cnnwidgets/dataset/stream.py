"""Explanations of a whole dataset, streamed a chunk at a time into a store.

    store = cw.explain_dataset(model, (images, labels), out="maps.zarr", boxes=boxes)
    store.column("energy_outside")        # (N, 1) share of each map outside the box
    cw.DatasetExplorer("maps.zarr", model=model)

This module checks the arguments, opens the store and picks the engine. The
per-chunk work (:mod:`cnnwidgets.dataset.chunk`: :func:`cnnwidgets.gradcam`
for the maps, ``Probe.predict`` for the scores) is the same on every engine:
in this process (``engine="local"``, :mod:`~cnnwidgets.dataset.local_engine`)
or in Ray actors (``engine="ray"``, :mod:`~cnnwidgets.dataset.ray_engine`).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import cnnwidgets
from cnnwidgets.dataset import local_engine, ray_engine, sources
from cnnwidgets.dataset.chunk import ChunkWork, RunSpec, explain_chunk
from cnnwidgets.dataset.store import DatasetStore
from cnnwidgets.explain import methods as map_methods
from cnnwidgets.explain.cam import cam_layer
from cnnwidgets.probe import Probe, as_probe, weights_digest
from cnnwidgets.probe.targets import stable_key, targets_of_call
from cnnwidgets.progress import reporter

__all__ = [
    "ENGINES",
    "CLASS_MODES",
    "RunSpec",
    "explain_chunk",
    "explain_dataset",
    "run_metadata",
]

#: Values of ``engine``: the module that runs the chunks (``check`` and ``run``).
_ENGINE_MODULES = {"local": local_engine, "ray": ray_engine}
ENGINES = tuple(_ENGINE_MODULES)

#: Named values of ``classes``; a class (index or name) or a list of them also works.
CLASS_MODES = ("predicted", "label")

_DTYPES = ("float16", "float32")


# ---------------------------------------------------------------- arguments


def _dataset_method(method: Any) -> str:
    """The canonical name of the CAM method ``explain_dataset`` runs (any
    spelling :func:`cnnwidgets.gradcam` accepts), or ValueError.

    A dataset run takes the CAM family: its methods share one forward and
    backward pass per chunk."""
    return map_methods.resolve(method, family="cam")


def _check_spec(
    probe: Probe,
    method: Any,
    layer: Any,
    classes: Any,
    dtype: Any,
    batch_size: Any,
    keep_images: Any,
    target: Any = None,
) -> RunSpec:
    method = _dataset_method(method)
    unset = classes is None or (isinstance(classes, str) and classes == "predicted")
    targets = targets_of_call(target, classes, classes_unset=unset)
    if targets is not None:
        if method == "cam":
            raise ValueError(
                "method 'cam' explains classes only (it reads the class's Dense weights); "
                "for target= use 'gradcam', 'gradcam++', 'layercam' or 'scorecam'"
            )
        for t in targets:
            t.check(probe)  # before any store is made or any model pass
    if layer is None:
        layer = cam_layer(probe) if method == "cam" else probe.last_conv_layer
    path = probe.resolve_4d(layer)
    if targets is not None:
        spec_classes: str | tuple[int, ...] = "target"
    elif isinstance(classes, str) and classes in CLASS_MODES:
        spec_classes: str | tuple[int, ...] = classes
    elif classes is None:
        spec_classes = "predicted"
    else:
        items = classes if isinstance(classes, (list, tuple, np.ndarray)) else [classes]
        if len(items) == 0:
            raise ValueError(f"classes is empty; use one of {CLASS_MODES} or a list of classes")
        try:
            spec_classes = tuple(probe.class_index(c) for c in items)
        except ValueError as exc:
            raise ValueError(f"{exc} (or classes='predicted' / 'label')") from None
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES} (maps on disk), got {dtype!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if not isinstance(keep_images, (bool, np.bool_)):
        raise TypeError(f"keep_images must be True or False, got {keep_images!r}")
    return RunSpec(method, path, spec_classes, dtype, batch_size, bool(keep_images), targets)


def _function_name(fn: Callable | None) -> str | None:
    if fn is None:
        return None
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def run_metadata(probe: Probe, spec: RunSpec, chunk: int, count: int | None) -> dict:
    """The store metadata of a run (every key of ``store.RUN_KEYS`` and more)."""
    info = probe.layer_info(spec.layer)
    if spec.targets is not None:
        k = len(spec.targets)
    else:
        k = 1 if isinstance(spec.classes, str) else len(spec.classes)
    targets = spec.targets or ()
    return {
        "method": spec.method,
        "layer": spec.layer,
        "classes": spec.classes if isinstance(spec.classes, str) else list(spec.classes),
        "k": k,
        # What each of the K maps explains with target= (None with classes), and a
        # digest of the targets that is the same in every process (resumption).
        "target": [t.describe() for t in targets] if targets else None,
        "target_key": [stable_key(t) for t in targets] if targets else None,
        "class_names": list(probe.class_names),
        "model_name": probe.model.name,
        "input_shape": [int(d) if d is not None else None for d in probe.input_shape[1:]],
        "map_shape": [int(d) for d in info.output_shape[1:3]],
        "weights_digest": weights_digest(probe.model),
        "preprocess": _function_name(probe.preprocess),
        "dtype": spec.dtype,
        "chunk": int(chunk),
        "batch_size": spec.batch_size,
        "keep_images": spec.keep_images,
        "count": count,
        "cnnwidgets_version": cnnwidgets.__version__,
    }


# ---------------------------------------------------------------- the driver


def explain_dataset(
    model: Any,
    data: Any,
    out: str | pathlib.Path,
    method: str = "gradcam",
    classes: Any = "predicted",
    layer: Any = None,
    labels: Any = None,
    boxes: Any = None,
    masks: Any = None,
    class_names: Sequence[str] | None = None,
    preprocess: Callable | None = None,
    chunk: int = 256,
    batch_size: int | None = None,
    dtype: str = "float16",
    keep_images: bool = True,
    engine: str = "local",
    workers: int = 2,
    ray_options: dict | None = None,
    overwrite: bool = False,
    progress: Any = None,
    target: Any = None,
) -> DatasetStore:
    """Class activation maps and scores of every image of a dataset, written
    to a Zarr store a chunk at a time (bounded memory, resumable).

    Args:
        model: a keras.Model (never changed) or a :class:`~cnnwidgets.Probe`.
        data: a numpy array (N, H, W, C) of raw images, a tuple (images,
            labels), a ``tf.data.Dataset`` of images, (images, labels) or
            dicts {'image', 'label', 'box', 'mask'} (batched or not), or any
            iterable of such batches.
        out: the store's path (a folder). An existing store of the same run
            is resumed: finished chunks are skipped.
        method: a CAM method, one of ``cnnwidgets.explain.cam.CAM_METHODS``.
        classes: 'predicted' (each image's top-1 class), 'label' (its true
            class), or a class (index or name) or list of K classes explained
            for every image.
        layer: the 4-D layer explained; default ``last_conv_layer``.
        labels: with numpy data: (N,) true classes.
        boxes: with numpy data: (N, 4) object boxes (top, left, bottom,
            right; bottom/right exclusive); they add the share of map energy
            inside / outside the object.
        masks: with numpy data: (N, H, W) object masks, instead of boxes.
        class_names: as for :class:`~cnnwidgets.Probe`.
        preprocess: as for :class:`~cnnwidgets.Probe`.
        chunk: images per unit of work and of resumption.
        batch_size: images per forward batch (default from the probe's
            memory budget).
        dtype: 'float16' (half the disk) or 'float32' for the stored maps.
            Each map is stored divided by its peak, the peak beside it in
            float32, so float16 keeps maps of any magnitude (raw Grad-CAM
            values below 6e-8 are common); readers get the real values.
        keep_images: store the raw images too (thumbnails in the
            :class:`~cnnwidgets.DatasetExplorer`, comparator on click).
        engine: 'local' (this process) or 'ray' (Ray Data ``map_batches``
            over actors holding the model; ``pip install "cnnwidgets[ray]"``).
        workers: Ray actors (``engine='ray'``).
        ray_options: extra Ray resources per actor, e.g. ``{"num_gpus": 1}``.
        overwrite: delete whatever is at ``out`` first.
        progress: None (a progress bar when the run is long: more than
            ``cnnwidgets.progress.AUTO_MIN_CALLS`` model calls), True (always),
            False (never) or a function ``(done, total)`` of images.
        target: instead of ``classes`` (leave it at its default): one target,
            or a list of K, explained for every image (see
            :mod:`cnnwidgets.probe.targets`), e.g.
            ``cw.targets.Output("age", cw.targets.Regression())``; every CAM
            method but ``"cam"``. The store's metadata keeps each target's
            ``describe()`` ("target") and a digest ("target_key"; a rerun with
            other targets does not resume), its ``classes`` array holds -1 and
            ``target_score`` (N, K) float32 each image's score of each target.
            ``predicted`` / ``confidence`` / ``loss`` come from the model's class
            head when it has one (else -1 / NaN). Bad targets raise a
            ValueError before any store is made. Per-image targets (a region
            of each image's own mask) are not taken: run one call per target.

    Returns:
        The :class:`~cnnwidgets.dataset.store.DatasetStore` (see its docstring
        for the layout). ``store.column("maps")`` gives the maps' real
        values at the layer's resolution, (N, K, h, w) float32; per-image
        scores beside them.

    Raises:
        StoreMismatchError: (a ValueError) ``out`` holds another run's store,
            or the data differs from what a resumed store was made from.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if not isinstance(chunk, (int, np.integer)) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    runner = _ENGINE_MODULES[engine]
    options = runner.check({"workers": workers, "ray_options": ray_options})
    if isinstance(model, Probe):
        if class_names is not None or preprocess is not None:
            raise ValueError("pass class_names and preprocess to the Probe, not here")
        probe = model
    else:
        probe = as_probe(model, class_names=class_names, preprocess=preprocess)
    spec = _check_spec(probe, method, layer, classes, dtype, batch_size, keep_images, target)
    stream = sources.chunks(data, int(chunk), labels=labels, boxes=boxes, masks=masks)
    if spec.classes == "label" and stream.labelled is False:
        raise ValueError(
            "classes='label' needs labels: pass (images, labels), labels=, or a dataset "
            "of (images, labels)"
        )
    count = stream.length
    run = run_metadata(probe, spec, int(chunk), count)
    store = DatasetStore.prepare(out, run, overwrite=overwrite)
    # Two model calls per chunk: the scores, then Grad-CAM's forward and backward pass.
    calls = None if count is None else 2 * -(-count // int(chunk))
    with reporter(progress, f"explain_dataset ({spec.method})", calls) as report:
        total = runner.run(store, stream, ChunkWork(probe, spec), report, count, options)
    store.finish(total)
    return store
