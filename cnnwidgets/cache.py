"""The one cache of computed results in cnnwidgets.

Results (maps, activations, probabilities, pictures) live in one process-wide
least-recently-used store bounded in bytes, :data:`RESULTS`. Nobody keys it by
hand: :meth:`cnnwidgets.Probe.cached` builds every key from the probe, the
kind of result, its parameters and the model's weights version, so a result
computed from other weights than the model has now is never returned.
Stored arrays are made read-only, so a caller that changes a returned array
in place gets an error instead of corrupting the cache.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

#: Default byte budget of :data:`RESULTS`.
DEFAULT_MAX_BYTES = 512 * 2**20


def array_key(arr: np.ndarray) -> str:
    """A short digest of an array's dtype, shape and bytes (equal arrays, equal keys)."""
    arr = np.ascontiguousarray(arr)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.data)
    return h.hexdigest()


def _freeze(value: Any) -> int:
    """Make the arrays inside a value read-only; returns their bytes."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
        return value.nbytes
    if isinstance(value, dict):
        return sum(_freeze(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_freeze(v) for v in value)
    return 64


class ResultCache:
    """A thread-safe LRU mapping bounded by the bytes of the arrays it holds."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = int(max_bytes)
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        # Re-entrant: dropping a value can run a finalizer (a Probe going away)
        # that calls drop_owner on this cache.
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self.misses += 1
                return default
            self._data.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: Any) -> Any:
        """Store ``value`` (its arrays become read-only) and return it."""
        size = _freeze(value)
        evicted = []  # released after the lock: their finalizers may call back
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
                evicted.append(old)
            self._data[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._data) > 1:
                _, entry = self._data.popitem(last=False)
                self._bytes -= entry[1]
                evicted.append(entry)
        del evicted
        return value

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The stored value, or ``compute()`` stored and returned."""
        sentinel = object()
        hit = self.get(key, sentinel)
        if hit is not sentinel:
            return hit
        return self.put(key, compute())

    def drop_owner(self, owner: Hashable) -> None:
        """Forget the entries whose key starts with ``owner`` (a probe that is gone)."""
        dropped = []
        with self._lock:
            for key in [k for k in self._data if isinstance(k, tuple) and k and k[0] == owner]:
                entry = self._data.pop(key)
                self._bytes -= entry[1]
                dropped.append(entry)
        del dropped

    def clear(self) -> None:
        with self._lock:
            old, self._data = self._data, OrderedDict()
            self._bytes = 0
        del old  # outside the lock: finalizers of dropped values may call back

    @property
    def nbytes(self) -> int:
        return self._bytes

    def keys(self) -> list:
        """The keys held now, least recently used first."""
        with self._lock:
            return list(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)


#: The process-wide store of every cached result.
RESULTS = ResultCache()


def clear() -> None:
    """Forget every cached result (they are recomputed on the next call)."""
    RESULTS.clear()
