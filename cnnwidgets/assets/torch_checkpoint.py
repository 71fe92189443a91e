"""Read a PyTorch checkpoint in the legacy (pre-1.6, non-zip) format without torch.

A legacy ``.pth`` file is a run of pickles followed by raw bytes:

1. a magic number, the protocol version and a dict of system facts (endianness,
   C type sizes);
2. the object itself (here a state dict), whose tensors are pickled as calls of
   ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` and
   whose storages are *persistent ids*
   ``('storage', storage_type, key, location, numel, view_metadata)``;
3. the list of storage keys, in the order their bytes follow;
4. per storage: its element count as an 8-byte little-endian integer, then
   the raw little-endian elements.

The unpickler here resolves only the four names such a state dict needs
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the
storage types) to harmless stand-ins; any other global in the file is refused,
so reading a checkpoint can never run code from it.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from dataclasses import dataclass

import numpy as np

__all__ = ["LEGACY_MAGIC_NUMBER", "read_legacy_state_dict"]

#: The first pickle of every legacy torch file (``torch.serialization.MAGIC_NUMBER``).
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C

#: ``torch.<Name>Storage`` -> the numpy dtype of its elements (all little-endian).
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int
    view: tuple[str, int, int] | None  # (base key, element offset, element count) of old views


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> _TensorRef:
    # The storages' bytes come after this pickle, so a tensor is only a reference for now.
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("a tensor whose storage is not a persistent id")
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves only what a state dict of plain tensors needs; refuses any other global."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(
            f"refusing {module}.{name}: a plain state dict of tensors does not need it"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unknown storage type in {pid!r}")
        if view is not None:
            view = (str(view[0]), int(view[1]), int(view[2]))
        return _StorageRef(str(key), storage_type.dtype, int(numel), view)


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a checkpoint header")


def read_legacy_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a legacy-format PyTorch state dict, as numpy arrays.

    Returns ``{name: array}`` in the file's order, each array a C-contiguous copy
    with the tensor's shape and dtype (float32 weights, int64 counters such as
    ``num_batches_tracked`` as 0-d arrays). Raises ``ValueError`` for a file
    that is not a legacy torch checkpoint (e.g. the zip format of torch >= 1.6)
    and ``pickle.UnpicklingError`` for one that asks for anything beyond
    tensors in (ordered) dicts."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"PK":
        raise ValueError(f"{path} is a zip-format torch checkpoint; only the legacy format is read")
    stream = io.BytesIO(data)
    try:
        magic = _NoGlobals(stream).load()
    except Exception as exc:
        raise ValueError(f"{path} is not a legacy torch checkpoint: {exc}") from exc
    if magic != LEGACY_MAGIC_NUMBER:
        raise ValueError(f"{path} is not a legacy torch checkpoint (bad magic number)")
    _protocol = _NoGlobals(stream).load()
    sys_info = _NoGlobals(stream).load()
    if not sys_info.get("little_endian", True):
        raise ValueError(f"{path} was written on a big-endian machine; not supported")
    state = _StateDictUnpickler(stream).load()
    keys = _NoGlobals(stream).load()

    # Storage bytes, in the order of `keys`; record where each one's elements start.
    tensors = [t for t in state.values() if isinstance(t, _TensorRef)]
    dtypes = {
        t.storage.view[0] if t.storage.view else t.storage.key: t.storage.dtype for t in tensors
    }
    storages: dict[str, np.ndarray] = {}
    pos = stream.tell()
    for key in keys:
        (numel,) = np.frombuffer(data, "<i8", count=1, offset=pos)
        pos += 8
        dtype = dtypes.get(key, np.dtype("u1"))
        storages[key] = np.frombuffer(data, dtype, count=int(numel), offset=pos)
        pos += int(numel) * dtype.itemsize

    out: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise pickle.UnpicklingError(f"entry {name!r} is not a tensor")
        ref = value.storage
        if ref.view is not None:  # an old-style view into another storage
            base_key, start, count = ref.view
            flat = storages[base_key][start : start + count]
        else:
            flat = storages[ref.key]
        if not value.size:
            out[name] = flat[value.offset : value.offset + 1].reshape(()).copy()
            continue
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[value.offset :],
            shape=value.size,
            strides=tuple(s * item for s in value.stride),
            writeable=False,
        )
        out[name] = np.ascontiguousarray(view)
    return out
