"""A cheap fingerprint of a model's current weights, for cache keys.

Every cached result in cnnwidgets is keyed by this version, so training,
``set_weights``, ``load_weights`` or a variable ``assign`` gives fresh results
on the next call. Hashing every weight byte would cost more than a forward
pass (VGG16 holds 528 MB), so each variable contributes two random
projections of a fixed sample of its elements: all of them for variables of
up to :data:`SAMPLES` elements (biases, normalization statistics, small
kernels), :data:`SAMPLES` random positions for larger ones. Changing a whole
filter of a 512-filter layer is then missed with probability below 1e-3; a
training step, new weights or a re-initialized layer change every sample.
The optimizer's step counter is mixed in, so a fit step is always seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

#: Elements sampled per variable (variables this small are read whole).
SAMPLES = 4096

_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_HELD = threading.local()  # .versions: {id(model): version} inside weights_held()


def _positions(size: int) -> np.ndarray:
    """Fixed sample positions of a variable with ``size`` elements."""
    if size <= SAMPLES:
        return np.arange(size, dtype=np.int64)
    return np.random.default_rng(size).integers(0, size, SAMPLES, dtype=np.int64)


_PROJECTION = np.random.default_rng(12345).standard_normal((SAMPLES, 2))


def _sampler(variables: list) -> Any:
    """A function of no arguments returning (V, 2) float64 projections."""
    plan = []
    for v in variables:
        size = int(np.prod(v.shape)) if len(v.shape) else 1
        idx = _positions(size)
        plan.append((v, idx, _PROJECTION[: len(idx)]))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def project_all():
            rows = []
            for v, idx, proj in plan:
                # Gather before casting: a cast of the whole variable would copy it.
                sample = tf.cast(tf.gather(tf.reshape(v.value, [-1]), idx), tf.float64)
                rows.append(tf.linalg.matvec(tf.constant(proj.T), sample))
            if not rows:
                return tf.zeros((0, 2), tf.float64)
            return tf.stack(rows)

        compiled = tf.function(project_all, autograph=False)
        return lambda: compiled().numpy()

    def project_numpy():
        rows = [
            proj.T @ keras.ops.convert_to_numpy(v.value).astype(np.float64).reshape(-1)[idx]
            for v, idx, proj in plan
        ]
        return np.stack(rows) if rows else np.zeros((0, 2))

    return project_numpy


@contextlib.contextmanager
def weights_held() -> Iterator[None]:
    """A block that changes no weights: inside it, on this thread,
    :func:`weights_version` reads each model's weights once.

    For one redraw of a widget, which asks for the version of every result it
    looks up (a gallery page: 17 lookups, 4 ms each on MobileNetV2). Other
    threads (training, background jobs) are not affected. Nested blocks share
    the outermost one's versions."""
    if getattr(_HELD, "versions", None) is not None:
        yield
        return
    _HELD.versions = {}
    try:
        yield
    finally:
        _HELD.versions = None


def weights_version(model: keras.Model) -> str:
    """A short hex digest that changes whenever the model's weights change.

    Costs one small compiled call (about a millisecond for VGG16 on a CPU);
    the first call per model traces it. Reads the weights, never writes them.
    It holds the variables' identities, so it means something within one
    process only; :func:`weights_digest` is the same everywhere. Inside
    :func:`weights_held` it is read once per model.
    """
    held = getattr(_HELD, "versions", None)
    if held is not None:
        if id(model) not in held:
            held[id(model)] = _read_version(model)
        return held[id(model)]
    return _read_version(model)


def _read_version(model: keras.Model) -> str:
    variables = list(model.weights)
    ids = tuple(id(v) for v in variables)
    entry = _FUNCTIONS.get(model)
    if entry is None or entry[0] != ids:
        entry = (ids, _sampler(variables))
        _FUNCTIONS[model] = entry
    digest = hashlib.blake2b(digest_size=12)
    digest.update(np.ascontiguousarray(entry[1]()).tobytes())
    digest.update(repr(ids).encode())
    optimizer = getattr(model, "optimizer", None)
    iterations = getattr(optimizer, "iterations", None)
    if iterations is not None:
        digest.update(str(int(keras.ops.convert_to_numpy(iterations))).encode())
    return digest.hexdigest()


def weights_digest(model: keras.Model) -> str:
    """A digest of the bytes, shapes and dtypes of every weight of a model.

    Unlike :func:`weights_version` (cheap, sampled, and meaningful within one
    process) it reads every weight and is the same in every process that
    loads the same weights: a resumed run or a Ray worker proves with it that
    it holds the weights a store was written with. Reads, never writes."""
    digest = hashlib.blake2b(digest_size=16)
    for v in model.weights:
        arr = np.ascontiguousarray(keras.ops.convert_to_numpy(v))
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.data)
    return digest.hexdigest()
