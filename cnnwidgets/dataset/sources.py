"""Data adapters: any supported ``data`` becomes a stream of fixed-size chunks.

A chunk is ``chunk`` consecutive images (the last one may be shorter) with
their optional labels and regions (boxes or masks). Chunk ``i`` always holds
images ``i * chunk`` up to ``(i + 1) * chunk``, whatever batch sizes the data
came in, so the per-chunk work is the same on every run, on every engine.

Accepted ``data``:

- a numpy array (N, H, W, C) of raw images, or a tuple ``(images, labels)``
  of arrays;
- a ``tf.data.Dataset`` whose elements are images, ``(images, labels)``
  pairs or dicts with the keys below, batched or not;
- any iterable of batches: arrays (n, H, W, C), ``(images, labels)`` tuples
  or dicts ``{"image": ..., "label": ..., "box": ..., "mask": ...}``
  (plural keys work too).

At most one chunk plus the batch in hand is held at once: the stream never
reads ahead, and leftovers of a batch are copied so the batch can be freed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Chunk", "ChunkStream", "chunks", "data_length", "split_batch"]

_KEYS = {
    "image": "images",
    "images": "images",
    "label": "labels",
    "labels": "labels",
    "box": "boxes",
    "boxes": "boxes",
    "mask": "masks",
    "masks": "masks",
}


@dataclass
class Chunk:
    """One chunk of the stream.

    Attributes:
        index: chunk number; it holds images ``start`` to ``start + len(images)``.
        start: index of its first image in the whole data.
        images: (n, H, W, C) raw pixels, as given (any numeric dtype).
        labels: (n,) int64 true classes, or None.
        boxes: (n, 4) int (top, left, bottom, right; bottom/right exclusive), or None.
        masks: (n, H, W) bool object masks, or None.
    """

    index: int
    start: int
    images: np.ndarray
    labels: np.ndarray | None = None
    boxes: np.ndarray | None = None
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    return np.asarray(x)


def split_batch(batch: Any) -> dict[str, np.ndarray]:
    """One batch of any accepted form -> {'images', and maybe 'labels', 'boxes', 'masks'}.

    Raises TypeError / ValueError saying which forms work."""
    if isinstance(batch, dict):
        unknown = [k for k in batch if k not in _KEYS]
        if unknown:
            raise ValueError(
                f"batch dict has unknown keys {unknown}; use 'image', 'label', 'box', 'mask'"
            )
        parts = {_KEYS[k]: _numpy(v) for k, v in batch.items()}
        if "images" not in parts:
            raise ValueError("a batch dict needs an 'image' (or 'images') entry")
    elif isinstance(batch, (tuple, list)):
        if len(batch) != 2:
            raise ValueError(
                f"a batch tuple must be (images, labels), got {len(batch)} items; pass a dict "
                "{'image': ..., 'label': ..., 'box': ...} for boxes or masks"
            )
        parts = {"images": _numpy(batch[0]), "labels": _numpy(batch[1])}
    else:
        parts = {"images": _numpy(batch)}
    images = parts["images"]
    if images.ndim != 4:
        raise ValueError(
            f"a batch of images must be (n, H, W, C), got shape {images.shape}; batch a "
            "tf.data.Dataset of single images with ds.batch(...) or pass them unbatched"
        )
    n = len(images)
    if "labels" in parts:
        labels = parts["labels"]
        if labels.ndim == 2 and labels.shape[1] > 1:
            labels = labels.argmax(axis=1)  # one-hot targets
        labels = labels.reshape(-1)
        if len(labels) != n or not np.issubdtype(labels.dtype, np.integer):
            if len(labels) == n and np.all(np.mod(labels, 1) == 0):
                labels = labels.astype(np.int64)
            else:
                raise ValueError(
                    f"labels must be {n} integer classes (or one-hot rows), "
                    f"got shape {np.shape(parts['labels'])} dtype {labels.dtype}"
                )
        parts["labels"] = labels.astype(np.int64)
    if "boxes" in parts:
        boxes = parts["boxes"]
        if boxes.shape != (n, 4):
            raise ValueError(
                f"boxes must be (n, 4) (top, left, bottom, right), got shape {boxes.shape}"
            )
        parts["boxes"] = boxes.astype(np.int64)
    if "masks" in parts:
        masks = parts["masks"]
        if masks.ndim == 4 and masks.shape[-1] == 1:
            masks = masks[..., 0]
        if masks.shape != images.shape[:3]:
            raise ValueError(
                f"masks must be (n, H, W) like the images {images.shape[:3]}, got {masks.shape}"
            )
        parts["masks"] = masks.astype(bool)
    if "boxes" in parts and "masks" in parts:
        raise ValueError("give boxes or masks, not both")
    return parts


def _is_tf_dataset(data: Any) -> bool:
    return hasattr(data, "element_spec") and hasattr(data, "as_numpy_iterator")


def _tf_rank(data: Any) -> int:
    """Rank of the image element of a tf.data.Dataset (3: single images, 4: batches)."""
    spec = data.element_spec
    if isinstance(spec, dict):
        spec = next(spec[k] for k in spec if _KEYS.get(k) == "images")
    elif isinstance(spec, (tuple, list)):
        spec = spec[0]
    return len(spec.shape)


def data_length(data: Any) -> int | None:
    """Number of images in ``data`` when known without reading it, else None."""
    if isinstance(data, np.ndarray):
        return len(data)
    if isinstance(data, tuple) and data and isinstance(data[0], np.ndarray):
        return len(data[0])
    if _is_tf_dataset(data):
        try:
            n = int(data.cardinality())
        except Exception:
            return None
        if n < 0:  # infinite or unknown
            return None
        return n if _tf_rank(data) == 3 else None  # batched: the last batch may be short
    return None


def _numpy_parts(data: Any, labels: Any, boxes: Any, masks: Any) -> dict[str, np.ndarray]:
    if isinstance(data, tuple) and labels is not None:
        raise ValueError("labels given twice: in the (images, labels) tuple and as labels=")
    whole = {"images": data} if isinstance(data, np.ndarray) else {"images": data[0]}
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(f"a data tuple must be (images, labels), got {len(data)} items")
        whole["labels"] = data[1]
    extra = {"labels": labels, "boxes": boxes, "masks": masks}
    whole.update({k: v for k, v in extra.items() if v is not None})
    return split_batch(whole)


class ChunkStream:
    """The chunks of some data, checked before the first one is read.

    Iterate it for :class:`Chunk` objects in order. ``labelled`` is True or
    False when known up front (numpy data), None otherwise; ``length`` the
    number of images when known without reading the data."""

    def __init__(self, chunks: Iterator[Chunk], labelled: bool | None, length: int | None):
        self._chunks = chunks
        self.labelled = labelled
        self.length = length

    def __iter__(self) -> Iterator[Chunk]:
        return self._chunks


def chunks(
    data: Any,
    chunk: int,
    labels: Any = None,
    boxes: Any = None,
    masks: Any = None,
) -> ChunkStream:
    """Cut ``data`` into consecutive chunks of ``chunk`` images.

    Args:
        data: see the module docstring.
        chunk: images per chunk (the last chunk may be shorter).
        labels: (N,) true classes, for numpy ``data`` (iterables carry them
            in their batches). Numpy chunks are views (nothing is copied).
        boxes: (N, 4) object boxes, for numpy ``data``.
        masks: (N, H, W) object masks, for numpy ``data``.

    Returns:
        A :class:`ChunkStream`. Numpy data and the arguments are checked
        here, before anything is read; batches of an iterable as they come.
    """
    if not isinstance(chunk, (int, np.integer)) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    chunk = int(chunk)
    if isinstance(data, np.ndarray) or (
        isinstance(data, tuple) and data and isinstance(data[0], np.ndarray)
    ):
        parts = _numpy_parts(data, labels, boxes, masks)
        if len(parts["images"]) == 0:
            raise ValueError("data holds no images")
        n = len(parts["images"])
        return ChunkStream(_numpy_chunks(parts, chunk), "labels" in parts, n)
    if any(v is not None for v in (labels, boxes, masks)):
        raise ValueError(
            "labels=, boxes= and masks= go with numpy images; an iterable or tf.data.Dataset "
            "carries them in its batches: (images, labels) or {'image', 'label', 'box', 'mask'}"
        )
    length = data_length(data)
    if _is_tf_dataset(data):
        if _tf_rank(data) == 3:
            data = data.batch(chunk)  # single images: tf.data makes the chunks itself
        batches: Iterable = data.as_numpy_iterator()
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
        batches = data
    else:
        raise TypeError(
            f"data must be a numpy array (N, H, W, C), an (images, labels) tuple, a "
            f"tf.data.Dataset or an iterable of batches; got {type(data).__name__}"
        )
    return ChunkStream(_rechunk(batches, chunk), None, length)


def _numpy_chunks(parts: dict[str, np.ndarray], chunk: int) -> Iterator[Chunk]:
    n = len(parts["images"])
    for i, start in enumerate(range(0, n, chunk)):
        sl = slice(start, start + chunk)
        yield Chunk(i, start, **{k: v[sl] for k, v in parts.items()})


def _rechunk(batches: Iterable, chunk: int) -> Iterator[Chunk]:
    """Regroup batches of any size into chunks of ``chunk`` images."""
    pending: list[dict[str, np.ndarray]] = []
    held = 0
    index = start = 0
    keys: frozenset | None = None
    for batch in batches:
        parts = split_batch(batch)
        batch = None  # drop our reference: the caller's batch may be freed
        if keys is None:
            keys = frozenset(parts)
        elif frozenset(parts) != keys:
            raise ValueError(
                f"batches differ in what they carry: the first had {sorted(keys)}, "
                f"a later one {sorted(parts)}"
            )
        pending.append(parts)
        held += len(parts["images"])
        while held >= chunk:
            out, pending, held = _take(pending, chunk)
            yield Chunk(index, start, **out)
            out = None  # the consumer holds the chunk now; hold no second copy
            index, start = index + 1, start + chunk
    if held:
        out, pending, held = _take(pending, held)
        yield Chunk(index, start, **out)
    elif index == 0:
        raise ValueError("data holds no images")


def _take(pending: list[dict], n: int) -> tuple[dict, list[dict], int]:
    """The first n images of the pending batches, and copies of what is left."""
    keys = list(pending[0])
    joined = {k: np.concatenate([p[k] for p in pending]) for k in keys}
    out = {k: v[:n] for k, v in joined.items()}
    rest_n = len(joined["images"]) - n
    # Copy the leftover so no slice keeps a whole earlier batch alive.
    rest = [{k: v[n:].copy() for k, v in joined.items()}] if rest_n else []
    return out, rest, rest_n
