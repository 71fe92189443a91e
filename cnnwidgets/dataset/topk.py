"""The images that drive each channel most, over a whole dataset, streamed.

For every channel of a 4-D layer, the k images whose strongest unit of that
channel is highest, with the unit's receptive field cut out of the image:
the "top 9 patches per feature map" figure of Zeiler and Fergus (2014).
One pass over the data, a chunk at a time; only the running top k (values,
indices, boxes and small patches) is kept between chunks.

    top = cw.top_activations(model, images, "block2_conv1", k=9)
    top.patches[c]     # (9, s, s, 3) uint8: what excites channel c most
    cw.FilterGallery(model, layer="block2_conv1", mode="dataset", dataset_examples=top)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnwidgets import render
from cnnwidgets.dataset import sources
from cnnwidgets.explain.receptive_field import receptive_field, unit_box
from cnnwidgets.probe import Probe, as_probe
from cnnwidgets.progress import reporter

__all__ = ["TopActivations", "top_activations"]

#: Largest side of a stored patch; larger receptive fields are scaled down.
MAX_PATCH = 64


@dataclass
class TopActivations:
    """Per channel, the k images that excite it most, best first.

    Attributes:
        layer: the layer's path.
        channels: (C,) int64 channel numbers (rows of every array below).
        values: (C, k) float32 activation of the channel's strongest unit;
            -inf in unused slots (fewer than k images).
        indices: (C, k) int64 index of the image in the data; -1 when unused.
        positions: (C, k, 2) int64 (row, column) of that unit in the layer's grid.
        boxes: (C, k, 4) int64 its receptive field in the image (top, left,
            bottom, right; bottom/right exclusive; clipped to the image).
        patches: (C, k, s, s, 3) uint8 the image inside the box, resized
            (nearest) to s x s, s = min(receptive field, 64).
        images: (C, k, H, W, 3) uint8 whole images, when asked for.
        count: number of images seen.
    """

    layer: str
    channels: np.ndarray
    values: np.ndarray
    indices: np.ndarray
    positions: np.ndarray
    boxes: np.ndarray
    patches: np.ndarray
    images: np.ndarray | None
    count: int

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    def row(self, channel: int) -> int:
        """Row of ``channel`` in the arrays (ValueError if it was not collected)."""
        hits = np.flatnonzero(self.channels == int(channel))
        if not len(hits):
            raise ValueError(
                f"channel {channel} was not collected; collected: {self.channels[:10]}..."
            )
        return int(hits[0])

    def __repr__(self) -> str:
        return (
            f"TopActivations({self.layer!r}, {len(self.channels)} channels, k={self.k}, "
            f"{self.count} images)"
        )


def _unit_maxima(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, h, w, C) activations -> max over space (n, C) and its (row, col) (n, C, 2)."""
    n, h, w, c = acts.shape
    flat = acts.reshape(n, h * w, c)
    arg = flat.argmax(axis=1)  # first maximum in row-major order
    values = np.take_along_axis(flat, arg[:, None, :], axis=1)[:, 0, :]
    return values.astype(np.float32), np.stack(np.divmod(arg, w), axis=-1).astype(np.int64)


class _RunningTopK:
    """The best k images per channel so far, as (k, C) slot arrays, best first."""

    def __init__(self, k: int, c: int, side: int, image_hw: tuple[int, int] | None):
        self.k, self.c, self.side = k, c, side
        self.values = np.full((k, c), -np.inf, np.float32)
        self.indices = np.full((k, c), -1, np.int64)
        self.positions = np.zeros((k, c, 2), np.int64)
        self.boxes = np.zeros((k, c, 4), np.int64)
        self.patches = np.zeros((k, c, side, side, 3), np.uint8)
        self.images = None if image_hw is None else np.zeros((k, c) + image_hw + (3,), np.uint8)

    def add(self, start: int, raw: np.ndarray, vals: np.ndarray, pos: np.ndarray, box_of) -> None:
        """Merge a chunk: raw images (n, H, W, C) starting at data index ``start``,
        their per-channel maxima (n, C) at unit positions (n, C, 2); ``box_of(i, j)``
        gives a unit's receptive field in the image."""
        k, c, n = self.k, self.c, len(raw)
        # Candidates: the running top k, then this chunk (later images lose ties).
        cand_v = np.concatenate([self.values, vals])
        cand_i = np.concatenate([self.indices, start + np.arange(n)[:, None].repeat(c, axis=1)])
        order = np.lexsort((cand_i, -cand_v), axis=0)[:k]  # (k, c) rows of the candidates
        fresh = order >= k  # slots won by this chunk's images
        kept = np.minimum(order, k - 1)  # for slots kept from before
        cols = np.arange(c)[None, :]
        self.values = np.take_along_axis(cand_v, order, axis=0)
        self.indices = np.take_along_axis(cand_i, order, axis=0)
        self.positions = np.where(
            fresh[..., None],
            np.take_along_axis(pos, np.clip(order - k, 0, n - 1)[..., None], axis=0),
            np.take_along_axis(self.positions, kept[..., None], axis=0),
        )
        self.boxes = self.boxes[kept, cols]
        self.patches = self.patches[kept, cols]
        if self.images is not None:
            self.images = self.images[kept, cols]
        for slot, col in zip(*np.nonzero(fresh)):
            picture = render.to_rgb_uint8(raw[int(order[slot, col] - k)])
            t, l, b, r = box_of(*(int(v) for v in self.positions[slot, col]))
            self.boxes[slot, col] = (t, l, b, r)
            self.patches[slot, col] = render.resize_image(
                picture[t:b, l:r], (self.side, self.side), smooth=False
            )
            if self.images is not None:
                self.images[slot, col] = picture


def top_activations(
    model: Any,
    data: Any,
    layer: Any,
    k: int = 9,
    channels: Sequence[int] | None = None,
    keep_images: bool = False,
    chunk: int = 256,
    batch_size: int | None = None,
    class_names: Sequence[str] | None = None,
    preprocess: Callable | None = None,
    progress: Any = None,
) -> TopActivations:
    """Per channel of ``layer``, the k images and patches that drive it most.

    Args:
        model: a keras.Model (never changed) or a :class:`~cnnwidgets.Probe`.
        data: raw images in any form :func:`cnnwidgets.explain_dataset`
            takes (numpy, tf.data.Dataset, iterable of batches); labels are ignored.
        layer: a 4-D layer (path or short name).
        k: images per channel.
        channels: the channels to collect (default all).
        keep_images: also keep each top image whole, (C, k, H, W, 3) uint8.
        chunk: images per step of the stream (memory holds one chunk's activations).
        batch_size: images per forward batch.
        class_names: as for :class:`~cnnwidgets.Probe`.
        preprocess: as for :class:`~cnnwidgets.Probe`.
        progress: None (a bar when the pass is long), True, False or a
            function ``(done, total)`` of images.

    Returns:
        :class:`TopActivations`. An image counts once per channel (its
        strongest unit); ties keep the earlier image.
    """
    probe = model if isinstance(model, Probe) else as_probe(model, class_names, preprocess)
    path = probe.resolve_4d(layer)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    n_channels = int(probe.layer_info(path).output_shape[-1])
    chans = (
        np.arange(n_channels) if channels is None else np.asarray(channels, np.int64).reshape(-1)
    )
    if chans.size == 0 or chans.min() < 0 or chans.max() >= n_channels:
        raise ValueError(f"channels must be indices in [0, {n_channels}) of layer {path!r}")
    rf = receptive_field(probe, path)
    image_hw = tuple(int(d) for d in probe.input_shape[1:3])
    side = int(np.clip(max(rf.size), 8, MAX_PATCH))
    sub = probe.submodel([path])
    top = _RunningTopK(k, len(chans), side, image_hw if keep_images else None)
    stream = sources.chunks(data, chunk)
    count = stream.length
    calls = None if count is None else -(-count // chunk)
    seen = 0
    with reporter(progress, f"top_activations ({path})", calls) as report:
        for ch in stream:
            raw = probe.check_images(ch.images)
            (acts,) = probe.run(sub, probe.model_inputs(raw), batch_size)
            vals, pos = _unit_maxima(acts[..., chans])
            top.add(ch.start, raw, vals, pos, lambda i, j: unit_box(rf, i, j, image_hw))
            seen = ch.start + len(raw)
            report(seen, count if count is not None else seen + chunk)
            del ch, raw, acts
        if count is None:
            report(seen, seen)  # the length is known now

    def by_channel(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(np.swapaxes(a, 0, 1))

    return TopActivations(
        layer=path,
        channels=chans,
        values=by_channel(top.values),
        indices=by_channel(top.indices),
        positions=by_channel(top.positions),
        boxes=by_channel(top.boxes),
        patches=by_channel(top.patches),
        images=by_channel(top.images),
        count=seen,
    )
