"""The on-disk store of a dataset's explanations: a Zarr group, its layout,
its metadata and what makes a run resumable.

Layout (N images, K explained classes per image, (h, w) the layer's grid)::

    out/                    group; attrs["cnnwidgets"] holds the metadata below
      maps        (N, K, h, w)  float16 | float32   maps at the layer's resolution, each
                                          divided by its peak (largest |value|: 1)
      map_scale   (N, K)        float32   each map's peak: real map = maps * map_scale
      classes     (N, K)        int32     the class each map explains (-1: a target)
      predicted   (N,)          int32     top-1 class (-1: the model has no class head)
      confidence  (N,)          float32   its probability (NaN without a class head)
      class_prob  (N, K)        float32   probability of each explained class
      target_score (N, K)       float32   each target's score, instead (target=)
      labels      (N,)          int32     true class, -1 where none was given
      loss        (N,)          float32   -log p(true class), NaN without a label
      energy_inside, energy_outside (N, K) float32   share of map energy in / out
                                          of the object (only with boxes or masks)
      boxes       (N, 4)        int32     object boxes (only when given as boxes)
      images      (N, H, W, C)  uint8 | float32   the raw images (keep_images=True)
      done        (chunks,)     uint8     1 once every array of a chunk is written
      digest      (chunks, 16)  uint8     a digest of each chunk's images
      confusion   (C, C)        int64     true x predicted counts (when complete)

Work goes a chunk of images at a time and a chunk's ``done`` flag is written
last, so a run that stops (an error, a killed kernel) leaves whole chunks
behind and a rerun computes only the others. A rerun must be the same run:
the same method, layer, classes, weights (a digest of their bytes) and
parameters, or :class:`StoreMismatchError` says what differs; and the same
images, checked chunk by chunk against the stored digests.

Maps are kept as a shape of peak 1 and a float32 scale because raw Grad-CAM
values are often far below float16's smallest number (6e-8: untrained models,
saturated sigmoid heads, deep nets), and a float16 store of raw values would
hold zeros. Readers get the real values: ``column("maps")`` and ``rows(...)``
multiply them back (float32); ``stored=True`` reads the arrays as they are on
disk. Stores of the first format (raw maps, no ``map_scale``) are still read
(their maps as stored), never resumed.

Per-image arrays are chunked by the work chunk; images and maps in smaller
row blocks, so reading one page of thumbnails out of a million images reads
a few small files.
"""

from __future__ import annotations

import hashlib
import pathlib
import shutil
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from cnnwidgets.probe import weights_digest  # noqa: F401  (part of the store's API)

__all__ = [
    "FORMAT",
    "READABLE_FORMATS",
    "RUN_KEYS",
    "DatasetStore",
    "StoreMismatchError",
    "images_digest",
    "weights_digest",
]

#: Written into every store; a store of another format is not resumed.
FORMAT = "cnnwidgets.dataset/2"

#: Formats this version reads: 1 kept raw maps in the store's dtype (float16
#: lost maps below 6e-8 to zeros), without ``map_scale``.
READABLE_FORMATS = ("cnnwidgets.dataset/1", FORMAT)

#: Metadata that must match for a run to resume into an existing store.
RUN_KEYS = (
    "format",
    "method",
    "layer",
    "classes",
    "target_key",
    "class_names",
    "input_shape",
    "map_shape",
    "weights_digest",
    "preprocess",
    "dtype",
    "chunk",
    "batch_size",
    "keep_images",
)

#: Per-image arrays, in the order the explorer reads them.
ROW_ARRAYS = (
    "predicted",
    "confidence",
    "labels",
    "loss",
    "classes",
    "class_prob",
    "target_score",
    "energy_inside",
    "energy_outside",
    "boxes",
    "maps",
    "map_scale",
    "images",
)

_FLAGS_BLOCK = 4096  # chunks per block of the done / digest arrays
_ROW_BYTES = 256 * 1024  # target size of one block of images or maps


class StoreMismatchError(ValueError):
    """A run asked to resume into a store written by a different run."""


def images_digest(images: np.ndarray) -> np.ndarray:
    """(16,) uint8 digest of a chunk's images: their dtype, shape and bytes as
    given (so resuming needs the same images in the same dtype)."""
    arr = np.ascontiguousarray(np.asarray(images))
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.data)
    return np.frombuffer(h.digest(), np.uint8).copy()


def _row_block(chunk: int, row_bytes: int) -> int:
    """The largest divisor of ``chunk`` whose rows fit in one block (>= 1)."""
    best = 1
    for d in range(1, chunk + 1):
        if chunk % d == 0 and d * row_bytes <= _ROW_BYTES:
            best = d
    return best


def _create(group: Any, name: str, shape: tuple, chunks: tuple, dtype: Any, fill: Any) -> Any:
    """An array in the group, with the Zarr 3 API or the Zarr 2 one."""
    if hasattr(group, "create_array"):
        return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill)
    return group.create_dataset(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill)


def _fill(dtype: np.dtype) -> Any:
    if np.issubdtype(dtype, np.floating):
        return np.nan
    return -1 if np.issubdtype(dtype, np.signedinteger) else 0


class DatasetStore:
    """A store made by :func:`cnnwidgets.explain_dataset`, opened for reading
    (``DatasetStore(path)``) or, by the run itself, for writing.

    ``len(store)`` is the number of image rows; ``store.meta`` the metadata
    (method, layer, classes, class_names, chunk, count, complete, summary, ...);
    ``column(name)`` reads one per-image array whole, ``rows(indices, names)``
    reads some rows of several.
    """

    def __init__(self, path: str | pathlib.Path, _group: Any = None):
        import zarr

        self.path = pathlib.Path(path)
        if _group is None:
            if not (self.path / "zarr.json").exists() and not (self.path / ".zgroup").exists():
                raise FileNotFoundError(
                    f"no dataset store at {str(self.path)!r}; make one with "
                    "cnnwidgets.explain_dataset(model, data, out=path)"
                )
            _group = zarr.open_group(str(self.path), mode="r")
        self._group = _group
        meta = dict(_group.attrs).get("cnnwidgets")
        if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
            raise ValueError(
                f"{str(self.path)!r} is not a cnnwidgets dataset store ({FORMAT}); "
                "make one with cnnwidgets.explain_dataset(model, data, out=path)"
            )
        self.meta: dict = meta

    # ------------------------------------------------------------ writing

    @classmethod
    def prepare(cls, path: str | pathlib.Path, run: dict, overwrite: bool = False) -> DatasetStore:
        """Open ``path`` to write the run described by ``run`` (metadata with
        every key of :data:`RUN_KEYS`): a new store, or the same run's store to
        resume. Raises :class:`StoreMismatchError` if the store there was
        written by another run, or if the path holds something else."""
        import zarr

        path = pathlib.Path(path)
        run = dict(run, format=FORMAT)
        if overwrite and path.exists():
            shutil.rmtree(path)
        exists = path.exists() and any(path.iterdir())
        if exists:
            try:
                old = cls(path)
            except (ValueError, FileNotFoundError) as exc:
                raise StoreMismatchError(
                    f"{str(path)!r} exists and is not a cnnwidgets dataset store; pick another "
                    "out= path (or overwrite=True to delete it)"
                ) from exc
            if old.meta.get("format") != FORMAT:
                raise StoreMismatchError(
                    f"the store at {str(path)!r} has format {old.meta.get('format')!r}, written "
                    f"by an older cnnwidgets (raw maps, which float16 turns to zeros below 6e-8); "
                    f"this version writes {FORMAT!r} and does not resume it: pass another out= "
                    "path, or overwrite=True to start this store again"
                )
            diff = [k for k in RUN_KEYS if old.meta.get(k) != run.get(k)]
            if diff:
                what = "; ".join(
                    f"{k}: stored {old.meta.get(k)!r}, this run {run.get(k)!r}" for k in diff
                )
                raise StoreMismatchError(
                    f"the store at {str(path)!r} was written by a different run ({what}). "
                    "Resuming would mix two runs' results: pass another out= path, or "
                    "overwrite=True to start this store again"
                )
            group = zarr.open_group(str(path), mode="a")
            store = cls(path, group)
            store._update(count=run.get("count") or old.meta.get("count"))
            return store
        group = zarr.open_group(str(path), mode="w")
        meta = dict(run)
        meta.update(format=FORMAT, complete=False, summary=None)
        group.attrs["cnnwidgets"] = meta
        return cls(path, group)

    def _update(self, **values: Any) -> None:
        meta = dict(self.meta)
        meta.update(values)
        self._group.attrs["cnnwidgets"] = meta
        self.meta = meta

    def _flags(self, n_chunks: int) -> tuple[Any, Any]:
        """The done and digest arrays, created or grown to ``n_chunks`` entries."""
        if "done" not in self._group:
            _create(self._group, "done", (n_chunks,), (_FLAGS_BLOCK,), "uint8", 0)
            _create(self._group, "digest", (n_chunks, 16), (_FLAGS_BLOCK, 16), "uint8", 0)
        done, digest = self._group["done"], self._group["digest"]
        if done.shape[0] < n_chunks:
            done.resize((n_chunks,))
            digest.resize((n_chunks, 16))
        return done, digest

    def done_chunks(self) -> np.ndarray:
        """(chunks,) bool: which chunks are finished."""
        if "done" not in self._group:
            return np.zeros(0, bool)
        return np.asarray(self._group["done"][:], bool)

    def resume(self, chunks: Iterable[Any]) -> Iterator[tuple[Any, np.ndarray | None]]:
        """Each chunk (a :class:`~cnnwidgets.dataset.sources.Chunk`) with the
        (16,) uint8 digest of its images to write it under, or None when the
        store has it finished already: then its images were checked to be the
        ones it was made from (:class:`StoreMismatchError` if not)."""
        done = self.done_chunks()
        for ch in chunks:
            digest = images_digest(ch.images)
            if ch.index < len(done) and done[ch.index]:
                self.check_digest(ch.index, digest)
                yield ch, None
            else:
                yield ch, digest

    def check_digest(self, index: int, digest: np.ndarray) -> None:
        """Raise StoreMismatchError if finished chunk ``index`` held other images."""
        stored = np.asarray(self._group["digest"][index], np.uint8)
        if not np.array_equal(stored, digest):
            chunk = self.meta["chunk"]
            raise StoreMismatchError(
                f"images {index * chunk} to {(index + 1) * chunk - 1} differ from the ones "
                f"the store at {str(self.path)!r} was made from (is the data shuffled on each "
                "pass, e.g. a tf.data shuffle?). Pass the same data in the same order, "
                "another out= path, or overwrite=True"
            )

    def _row_array(self, name: str, value: np.ndarray, rows: int) -> Any:
        if name not in self._group:
            chunk = int(self.meta["chunk"])
            tail = value.shape[1:]
            row_bytes = int(np.prod(tail, dtype=np.int64)) * value.dtype.itemsize
            block = _row_block(chunk, row_bytes) if name in ("images", "maps") else chunk
            _create(
                self._group, name, (rows,) + tail, (block,) + tail, value.dtype, _fill(value.dtype)
            )
        arr = self._group[name]
        if arr.shape[0] < rows:
            arr.resize((rows,) + tuple(arr.shape[1:]))
        return arr

    def write_chunk(
        self, index: int, start: int, arrays: dict[str, np.ndarray], digest: np.ndarray
    ) -> None:
        """Write one chunk's per-image arrays at rows ``start:start + n``, then mark it done."""
        n = len(arrays["maps"])
        count = self.meta.get("count")
        rows = max(int(count or 0), start + n)
        for name, value in arrays.items():
            if name not in ROW_ARRAYS:
                raise ValueError(f"unknown store array {name!r}")
            self._row_array(name, np.asarray(value), rows)[start : start + n] = value
        chunk = int(self.meta["chunk"])
        done, digests = self._flags(-(-rows // chunk))
        digests[index] = digest
        done[index] = 1  # last: the chunk counts as finished only when all of it is written
        changes: dict[str, Any] = {}
        if self.meta.get("rows", 0) < rows:
            changes["rows"] = rows
        if "has_labels" not in self.meta and "labels" in arrays:
            changes["has_labels"] = bool((np.asarray(arrays["labels"]) >= 0).any())
        if changes:
            self._update(**changes)

    def finish(self, count: int) -> None:
        """Mark the run complete and write its summary (accuracy, mean loss,
        confusion matrix), so a reader need not scan the per-image arrays."""
        for name in ROW_ARRAYS:
            if name in self._group and self._group[name].shape[0] != count:
                arr = self._group[name]
                arr.resize((count,) + tuple(arr.shape[1:]))
        k_all = len(self.meta["class_names"])
        predicted = self.column("predicted")
        labels = self.column("labels")
        known = (labels >= 0) & (predicted >= 0)  # no class head: nothing predicted
        summary: dict[str, Any] = {"count": int(count), "labelled": int(known.sum())}
        if known.any():
            confusion = np.zeros((k_all, k_all), np.int64)
            np.add.at(confusion, (labels[known], predicted[known]), 1)
            if "confusion" in self._group:
                del self._group["confusion"]
            _create(self._group, "confusion", confusion.shape, confusion.shape, "int64", 0)
            self._group["confusion"][:] = confusion
            summary["accuracy"] = float(np.trace(confusion) / known.sum())
            summary["mean_loss"] = float(np.nanmean(self.column("loss")[known]))
        if "energy_outside" in self._group:
            summary["mean_energy_outside"] = float(np.nanmean(self.column("energy_outside")))
        self._update(count=int(count), rows=int(count), complete=True, summary=summary)

    # ------------------------------------------------------------ reading

    def __len__(self) -> int:
        return int(self.meta.get("count") or self.meta.get("rows") or 0)

    def __contains__(self, name: str) -> bool:
        return name in self._group

    def __repr__(self) -> str:
        state = "complete" if self.meta.get("complete") else "partial"
        return (
            f"DatasetStore({str(self.path)!r}, {len(self)} images, {self.meta['method']} on "
            f"{self.meta['layer']!r}, {state})"
        )

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete"))

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def arrays(self) -> list[str]:
        """Names of the per-image arrays this store holds."""
        return [name for name in ROW_ARRAYS if name in self._group]

    def column(self, name: str, stored: bool = False) -> np.ndarray:
        """One per-image array, every row: (N, ...).

        ``maps`` comes with its real values, (N, K, h, w) float32 (the stored
        maps times ``map_scale``); with ``stored=True`` every array is read as
        it is on disk."""
        return self._read([name], None, stored)[name]

    def rows(self, indices: Any, names: Any = None, stored: bool = False) -> dict[str, np.ndarray]:
        """{name: array of these rows, in the order given} for per-image arrays.

        ``maps`` comes with its real values, (n, K, h, w) float32, as in
        :meth:`column`; ``stored=True`` reads every array as it is on disk."""
        idx = np.asarray(indices, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(
                f"row indices must be in [0, {len(self)}), got {idx.min()}..{idx.max()}"
            )
        return self._read(self.arrays if names is None else list(names), idx, stored)

    def _read(self, names: list[str], idx: np.ndarray | None, stored: bool) -> dict:
        """Rows ``idx`` (None: all, as one slice) of the named arrays; real maps
        unless ``stored``."""
        for name in names:
            if name not in self._group:
                raise KeyError(f"the store has no {name!r} array; it has {self.arrays}")
        real = "maps" in names and not stored
        # A first-format store has no scale: its maps are stored at their real values.
        scaled = real and "map_scale" in self._group
        wanted = names + ["map_scale"] if scaled and "map_scale" not in names else names
        out = {}
        for name in wanted:
            arr = self._group[name]
            if idx is None:
                out[name] = np.asarray(arr[: len(self)])
            elif idx.size == 0:
                out[name] = np.zeros((0,) + tuple(arr.shape[1:]), arr.dtype)
            else:
                order = np.argsort(idx, kind="stable")  # Zarr reads sorted rows
                got = np.asarray(arr.oindex[idx[order]])
                result = np.empty_like(got)
                result[order] = got
                out[name] = result
        if real:
            maps = out["maps"].astype(np.float32)
            if scaled:
                maps *= out["map_scale"][..., None, None]
            out["maps"] = maps
        return {name: out[name] for name in names}

    def finished(self) -> np.ndarray:
        """(N,) bool: rows whose chunk is written (all True in a complete store)."""
        n = len(self)
        if self.complete:
            return np.ones(n, bool)
        chunk = int(self.meta["chunk"])
        done = self.done_chunks()
        rows = np.zeros(-(-n // chunk) * chunk, bool)
        flags = np.zeros(-(-n // chunk), bool)
        flags[: len(done)] = done[: len(flags)]
        rows[:] = np.repeat(flags, chunk)
        return rows[:n]

    def confusion(self) -> np.ndarray | None:
        """(C, C) int64 counts, true class x predicted class; None without labels.

        Read from the summary of a complete store; counted from the finished
        rows' labels and predictions in a partial one."""
        if self.complete:
            return np.asarray(self._group["confusion"][:]) if "confusion" in self._group else None
        labels, predicted = self.column("labels"), self.column("predicted")
        known = (labels >= 0) & (predicted >= 0) & self.finished()
        if not known.any():
            return None
        k_all = len(self.class_names)
        confusion = np.zeros((k_all, k_all), np.int64)
        np.add.at(confusion, (labels[known], predicted[known]), 1)
        return confusion
