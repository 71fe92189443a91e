"""A cheap fingerprint of a model's current weights, for cache keys.

Every cached result in cnnwidgets is keyed by this version, so training,
``set_weights``, ``load_weights`` or a variable ``assign`` gives fresh results
on the next call. Hashing every weight byte would cost more than a forward
pass (VGG16 holds 528 MB), so each variable contributes the exact bytes of a
fixed sample of its elements: all of them for variables of up to
:data:`SAMPLES` elements (biases, normalization statistics, small kernels),
:data:`SAMPLES` random positions for larger ones. Changing a whole filter of a
512-filter layer is then missed with probability below 1e-3; a training step,
new weights or a re-initialized layer change every sample. The optimizer's
step counter is mixed in, so a fit step is always seen.

Reading the samples is backend work, and backend code lives in
:mod:`cnnwidgets.gradients` (one module per Keras backend), a layer above
this one. So the reader is handed down: :mod:`cnnwidgets.gradients`, on
import, installs its backend's compiled reader with :func:`use_reader`; until
then (a :class:`~cnnwidgets.probe.Probe` used on its own) the portable
:func:`numpy_reader` is used. Both read the same elements, so the version is
the same whichever reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence

import keras
import numpy as np

#: Elements sampled per variable (variables this small are read whole).
SAMPLES = 4096

#: ``reader(plan)`` -> a function of no arguments returning, for each group
#: of :func:`sample_plan`, its variables' samples concatenated (numpy, 1-D).
Reader = Callable[[list], Callable[[], list[np.ndarray]]]

_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_HELD = threading.local()  # .versions: {id(model): version} inside weights_held()


def sample_positions(shape: Sequence[int]) -> np.ndarray:
    """Flat positions, (S,) int64, of the elements sampled from a variable of
    this shape: every element up to :data:`SAMPLES`, else :data:`SAMPLES`
    positions drawn with the size as seed (the same in every process)."""
    size = int(np.prod(shape)) if len(shape) else 1
    if size <= SAMPLES:
        return np.arange(size, dtype=np.int64)
    return np.random.default_rng(size).integers(0, size, SAMPLES, dtype=np.int64)


def sample_plan(variables: Sequence) -> list[list[tuple[object, np.ndarray]]]:
    """The variables grouped by dtype (groups in order of first appearance,
    variables in model order), each with its :func:`sample_positions`.

    A reader concatenates each group's samples, so it returns one array per
    dtype rather than one per variable (NASNetMobile has 1126 variables)."""
    groups: dict[str, list] = {}
    for v in variables:
        groups.setdefault(str(v.dtype), []).append((v, sample_positions(v.shape)))
    return list(groups.values())


def numpy_reader(plan: list) -> Callable[[], list[np.ndarray]]:
    """The portable reader: each variable converted to numpy, then sampled.

    Works on every backend, but the conversion copies the whole variable
    (about 0.2 s per read for VGG16 on TensorFlow)."""

    def read() -> list[np.ndarray]:
        return [
            np.concatenate([np.asarray(keras.ops.convert_to_numpy(v.value)).reshape(-1)[idx]
                            for v, idx in group])
            for group in plan
        ]

    return read


_READER: list[Reader] = [numpy_reader]


def use_reader(reader: Reader) -> None:
    """Read the samples with ``reader`` from now on (see the module docstring).

    Models whose reader was built by another one get a new one at their next
    read; the samples, hence the versions, are the same."""
    _READER[0] = reader


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

    Costs one small compiled call (about 5 ms for VGG16 or MobileNetV2 on a
    CPU); the first call per model builds it. Reads the weights, never writes
    them. It holds the variables' identities, so it means something within
    one process only; :func:`weights_digest` is the same everywhere. Inside
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
    reader = _READER[0]
    entry = _FUNCTIONS.get(model)
    if entry is None or entry[0] != ids or entry[1] is not reader:
        entry = (ids, reader, reader(sample_plan(variables)))
        _FUNCTIONS[model] = entry
    digest = hashlib.blake2b(digest_size=12)
    for sample in entry[2]():
        digest.update(sample.dtype.str.encode())
        digest.update(np.ascontiguousarray(sample).data)
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
