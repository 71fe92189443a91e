"""Explanations of a whole dataset, streamed a chunk at a time into a store.

    store = cw.explain_dataset(model, (images, labels), out="maps.zarr", boxes=boxes)
    store.column("energy_outside")        # (N, 1) share of each map outside the box
    cw.DatasetExplorer("maps.zarr", model=model)

The per-chunk work (:func:`explain_chunk`) calls the public functions
(:func:`cnnwidgets.gradcam` for the maps, ``Probe.predict`` for the scores)
and is the same on every engine: in this process (``engine="local"``) or in
Ray actors (``engine="ray"``, :mod:`cnnwidgets.dataset.ray_engine`).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import cnnwidgets
from cnnwidgets.dataset import sources
from cnnwidgets.dataset.scores import box_masks, cross_entropy, energy_inside
from cnnwidgets.dataset.store import DatasetStore
from cnnwidgets.explain.cam import CAM_METHODS, cam_layer, gradcam
from cnnwidgets.probe import Probe, as_probe, weights_digest
from cnnwidgets.progress import reporter

__all__ = ["ENGINES", "CLASS_MODES", "RunSpec", "explain_chunk", "explain_dataset"]

#: Values of ``engine``.
ENGINES = ("local", "ray")

#: Named values of ``classes``; a class (index or name) or a list of them also works.
CLASS_MODES = ("predicted", "label")

_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class RunSpec:
    """What each chunk's work needs besides the model: picklable, so Ray
    actors get the same instructions as the local loop.

    ``classes``: 'predicted', 'label' or a tuple of class indices."""

    method: str
    layer: str
    classes: str | tuple[int, ...]
    dtype: str = "float16"
    batch_size: int | None = None
    keep_images: bool = True


def explain_chunk(probe: Probe, spec: RunSpec, chunk: sources.Chunk) -> dict[str, np.ndarray]:
    """Maps and scores of one chunk of images.

    Args:
        probe: the model's Probe.
        spec: method, layer, classes and storage options.
        chunk: n raw images with optional labels, boxes or masks.

    Returns:
        {store array name: (n, ...) array}: ``maps`` (n, K, h, w) in
        ``spec.dtype`` (unscaled Grad-CAM family maps at the layer's
        resolution), ``classes`` (n, K) int32, ``predicted`` (n,) int32,
        ``confidence`` (n,) float32, ``class_prob`` (n, K) float32, ``labels``
        (n,) int32 (-1 without), ``loss`` (n,) float32 (NaN without labels),
        and with boxes or masks ``energy_inside`` / ``energy_outside``
        (n, K) float32 (and ``boxes`` (n, 4) int32); ``images`` with
        ``spec.keep_images``.
    """
    raw = probe.check_images(chunk.images)
    n = len(raw)
    probs = probe.predict(raw, batch_size=spec.batch_size, cache=False)  # a throw-away batch
    predicted = probs.argmax(axis=1)
    labels = chunk.labels
    if labels is not None and (labels.min() < 0 or labels.max() >= probe.num_classes):
        raise ValueError(
            f"labels must be class indices in [0, {probe.num_classes}); images "
            f"{chunk.start}..{chunk.start + n - 1} have labels {labels.min()}..{labels.max()}"
        )
    if spec.classes == "predicted":
        classes = predicted[:, None]
    elif spec.classes == "label":
        if labels is None:
            raise ValueError(
                "classes='label' needs labels: pass (images, labels), labels=, or a dataset "
                "of (images, labels)"
            )
        classes = labels[:, None]
    else:
        classes = np.tile(np.asarray(spec.classes, np.int64)[None, :], (n, 1))
    classes = classes.astype(np.int64)
    maps = gradcam(
        probe,
        raw,
        classes=classes,
        layer=spec.layer,
        method=spec.method,
        resize=False,
        normalize=None,
        batch_size=spec.batch_size,
        cache=False,  # each chunk is seen once: keep memory flat
    )
    out = {
        "maps": maps.astype(spec.dtype),
        "classes": classes.astype(np.int32),
        "predicted": predicted.astype(np.int32),
        "confidence": probs.max(axis=1).astype(np.float32),
        "class_prob": np.take_along_axis(probs, classes, axis=1).astype(np.float32),
        "labels": (np.full(n, -1) if labels is None else labels).astype(np.int32),
        "loss": cross_entropy(probs, labels),
    }
    masks = chunk.masks
    if chunk.boxes is not None:
        out["boxes"] = chunk.boxes.astype(np.int32)
        masks = box_masks(chunk.boxes, raw.shape[1:3])
    if masks is not None:
        inside = energy_inside(maps, masks)
        any_energy = maps.reshape(n, maps.shape[1], -1).max(axis=2) > 0
        out["energy_inside"] = inside
        out["energy_outside"] = np.where(any_energy, 1.0 - inside, 0.0).astype(np.float32)
    if spec.keep_images:
        images = np.asarray(chunk.images)
        out["images"] = images if images.dtype == np.uint8 else raw
    return out


# ---------------------------------------------------------------- arguments


def _check_spec(
    probe: Probe,
    method: Any,
    layer: Any,
    classes: Any,
    dtype: Any,
    batch_size: Any,
    keep_images: Any,
) -> RunSpec:
    if not isinstance(method, str) or method.lower() not in CAM_METHODS:
        raise ValueError(f"method must be one of {CAM_METHODS}, got {method!r}")
    method = method.lower()
    if layer is None:
        layer = cam_layer(probe) if method == "cam" else probe.last_conv_layer
    path = probe.resolve_4d(layer)
    if isinstance(classes, str) and classes in CLASS_MODES:
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
    return RunSpec(method, path, spec_classes, dtype, batch_size, bool(keep_images))


def _function_name(fn: Callable | None) -> str | None:
    if fn is None:
        return None
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def run_metadata(probe: Probe, spec: RunSpec, chunk: int, count: int | None) -> dict:
    """The store metadata of a run (every key of ``store.RUN_KEYS`` and more)."""
    info = probe.layer_info(spec.layer)
    k = 1 if isinstance(spec.classes, str) else len(spec.classes)
    return {
        "method": spec.method,
        "layer": spec.layer,
        "classes": spec.classes if isinstance(spec.classes, str) else list(spec.classes),
        "k": k,
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

    Returns:
        The :class:`~cnnwidgets.dataset.store.DatasetStore` (see its docstring
        for the layout). Maps are stored unscaled at the layer's resolution,
        (N, K, h, w); per-image scores beside them.

    Raises:
        StoreMismatchError: (a ValueError) ``out`` holds another run's store,
            or the data differs from what a resumed store was made from.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if not isinstance(chunk, (int, np.integer)) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    if engine == "ray":
        from cnnwidgets.dataset import ray_engine

        ray_engine.require_ray()
        if not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        if ray_options is not None and not isinstance(ray_options, dict):
            raise TypeError(f"ray_options must be a dict of actor resources, got {ray_options!r}")
    if isinstance(model, Probe):
        if class_names is not None or preprocess is not None:
            raise ValueError("pass class_names and preprocess to the Probe, not here")
        probe = model
    else:
        probe = as_probe(model, class_names=class_names, preprocess=preprocess)
    spec = _check_spec(probe, method, layer, classes, dtype, batch_size, keep_images)
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
        if engine == "ray":
            total = ray_engine.run(probe, spec, stream, store, report, workers, ray_options or {})
        else:
            total = _run_local(probe, spec, stream, store, report, count)
    store.finish(total)
    return store


def _run_local(probe, spec, stream, store, report, count) -> int:
    seen = 0
    for ch, digest in store.resume(stream):
        if digest is not None:  # not finished in an earlier run
            store.write_chunk(ch.index, ch.start, explain_chunk(probe, spec, ch), digest)
        seen = ch.start + len(ch)
        report(seen, count if count is not None else seen + store.meta["chunk"])
        del ch  # free this chunk before the next one is read
    if count is None:
        report(seen, seen)  # the length is known now
    return seen
