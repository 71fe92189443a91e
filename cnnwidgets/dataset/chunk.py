"""The per-chunk work of :func:`cnnwidgets.explain_dataset`: one chunk of
images in, the arrays to store out. Every engine (``local_engine``,
``ray_engine``) runs exactly this, so their stores are identical.

Maps are stored so that any magnitude survives: raw Grad-CAM values are often
far below float16's smallest number (6e-8: untrained models, saturated
sigmoid heads, deep nets), so each map is divided by its peak (largest
absolute value) before it is cast to the store's dtype, and the peak is kept
beside it in float32. ``maps * map_scale`` gives the real values back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnwidgets.dataset.scores import box_masks, cross_entropy, energy_inside
from cnnwidgets.dataset.sources import Chunk
from cnnwidgets.explain.cam import gradcam
from cnnwidgets.probe import Probe
from cnnwidgets.probe.targets import Target

__all__ = ["ChunkWork", "RunSpec", "explain_chunk", "scale_maps"]


@dataclass(frozen=True)
class RunSpec:
    """What each chunk's work needs besides the model: picklable, so Ray
    actors get the same instructions as the local loop.

    ``classes``: 'predicted', 'label', a tuple of class indices, or 'target'
    with ``targets``: the K targets explained for every image."""

    method: str
    layer: str
    classes: str | tuple[int, ...]
    dtype: str = "float16"
    batch_size: int | None = None
    keep_images: bool = True
    targets: tuple[Target, ...] | None = None


@dataclass(frozen=True)
class ChunkWork:
    """The work an engine runs on every chunk: ``work(chunk)`` is
    :func:`explain_chunk` with this probe and spec. An engine that runs it
    elsewhere (Ray) ships ``probe.model`` and ``spec`` and builds its own."""

    probe: Probe
    spec: RunSpec

    def __call__(self, chunk: Chunk) -> dict[str, np.ndarray]:
        return explain_chunk(self.probe, self.spec, chunk)


def scale_maps(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each map divided by its peak, and the peaks: what the store keeps.

    Args:
        maps: (n, K, h, w) raw maps.

    Returns:
        ``(unit, scale)``: (n, K, h, w) float32 maps whose largest absolute
        value is 1 (an all-zero map stays zero), and (n, K) float32 peaks;
        ``unit * scale[..., None, None]`` is ``maps``. Cast ``unit`` to float16
        and it keeps 11 significant bits of every map, whatever its magnitude.
    """
    maps = np.asarray(maps, np.float32)
    scale = np.abs(maps).max(axis=(2, 3))
    safe = np.where(scale > 0, scale, 1.0)[..., None, None]
    # Divide in float64: a peak among float32's smallest numbers divides exactly.
    unit = (maps.astype(np.float64) / safe).astype(np.float32)
    return unit, scale.astype(np.float32)


def _classes(spec: RunSpec, predicted: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """(n, K) int64 classes each image's maps explain."""
    n = len(predicted)
    if spec.classes == "predicted":
        return predicted[:, None].astype(np.int64)
    if spec.classes == "label":
        if labels is None:
            raise ValueError(
                "classes='label' needs labels: pass (images, labels), labels=, or a dataset "
                "of (images, labels)"
            )
        return labels[:, None].astype(np.int64)
    return np.tile(np.asarray(spec.classes, np.int64)[None, :], (n, 1))


def explain_chunk(probe: Probe, spec: RunSpec, chunk: Chunk) -> dict[str, np.ndarray]:
    """Maps and scores of one chunk of images.

    Args:
        probe: the model's Probe.
        spec: method, layer, classes and storage options.
        chunk: n raw images with optional labels, boxes or masks.

    Returns:
        {store array name: (n, ...) array}: ``maps`` (n, K, h, w) in
        ``spec.dtype``, the Grad-CAM family maps at the layer's resolution,
        each divided by its peak, and ``map_scale`` (n, K) float32 those
        peaks (:func:`scale_maps`); ``classes`` (n, K) int32 (-1 with
        targets), ``predicted`` (n,) int32, ``confidence`` (n,) float32
        (-1 / NaN for a model without a class head), ``class_prob`` (n, K)
        float32 (with classes) or ``target_score`` (n, K) float32 (with
        targets), ``labels`` (n,) int32 (-1 without), ``loss`` (n,)
        float32 (NaN without labels), and with boxes or masks
        ``energy_inside`` / ``energy_outside`` (n, K) float32 (and ``boxes``
        (n, 4) int32); ``images`` with ``spec.keep_images``.
    """
    raw = probe.check_images(chunk.images)
    n = len(raw)
    labels = chunk.labels
    # A model without a class head (segmentation, regression, several outputs)
    # is explained by targets only: nothing is predicted.
    has_head = spec.targets is None or (len(probe.output_names) == 1 and probe.num_classes > 0)
    if has_head:
        probs = probe.predict(raw, batch_size=spec.batch_size, cache=False)  # throw-away
        predicted = probs.argmax(axis=1)
        if labels is not None and (labels.min() < 0 or labels.max() >= probe.num_classes):
            raise ValueError(
                f"labels must be class indices in [0, {probe.num_classes}); images "
                f"{chunk.start}..{chunk.start + n - 1} have labels "
                f"{labels.min()}..{labels.max()}"
            )
    if spec.targets is None:
        classes = _classes(spec, predicted, labels)
        chosen: dict = {"classes": classes}
    else:
        classes = np.full((n, len(spec.targets)), -1, np.int64)
        chosen = {"target": list(spec.targets)}
    maps = gradcam(
        probe,
        raw,
        layer=spec.layer,
        method=spec.method,
        resize=False,
        normalize=None,
        batch_size=spec.batch_size,
        cache=False,  # each chunk is seen once: keep memory flat
        **chosen,
    )
    unit, scale = scale_maps(maps)
    out = {
        "maps": unit.astype(spec.dtype),
        "map_scale": scale,
        "classes": classes.astype(np.int32),
        "labels": (np.full(n, -1) if labels is None else labels).astype(np.int32),
    }
    if has_head:
        out["predicted"] = predicted.astype(np.int32)
        out["confidence"] = probs.max(axis=1).astype(np.float32)
        out["loss"] = cross_entropy(probs, labels)
    else:
        out["predicted"] = np.full(n, -1, np.int32)
        out["confidence"] = np.full(n, np.nan, np.float32)
        out["loss"] = np.full(n, np.nan, np.float32)
    if spec.targets is None:
        out["class_prob"] = np.take_along_axis(probs, classes, axis=1).astype(np.float32)
    else:
        out["target_score"] = probe.target_scores(
            raw, spec.targets, batch_size=spec.batch_size, cache=False
        )
    masks = chunk.masks
    if chunk.boxes is not None:
        out["boxes"] = chunk.boxes.astype(np.int32)
        masks = box_masks(chunk.boxes, raw.shape[1:3])
    if masks is not None:
        # From float32 maps of peak 1: a share is the same at any scale, and
        # sums of maps near float32's smallest numbers would lose it.
        inside = energy_inside(unit, masks)
        any_energy = unit.reshape(n, unit.shape[1], -1).max(axis=2) > 0
        out["energy_inside"] = inside
        out["energy_outside"] = np.where(any_energy, 1.0 - inside, 0.0).astype(np.float32)
    if spec.keep_images:
        images = np.asarray(chunk.images)
        out["images"] = images if images.dtype == np.uint8 else raw
    return out
