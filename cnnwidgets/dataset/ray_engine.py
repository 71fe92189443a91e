"""``explain_dataset(..., engine="ray")``: the same per-chunk work as a Ray
Data ``map_batches`` stage over a pool of actors that each hold the model
(Ray's batch-inference pattern), writing the same store.

How it runs: the driver cuts the data into the store's chunks and puts the
unfinished ones into Ray's object store; a dataset of chunk numbers goes
through ``map_batches(ChunkExplainer, batch_size=1, concurrency=workers)``;
each actor loads the model once (from the driver's ``.keras`` bytes), checks
its weights digest against the store's, and runs the same
:class:`~cnnwidgets.dataset.chunk.ChunkWork` as the local engine on one chunk
per call. The
driver receives the results as they finish and writes them into the store,
so the store needs no filesystem shared with the workers, and chunks are the
same images as in the local loop: results are identical to ``engine="local"``.

On a cluster, call ``ray.init(address=...)`` first; ``workers`` actors are
spread over it, and ``ray_options={"num_gpus": 1}`` gives each actor a GPU.
Custom layers must be importable on the workers (registered Keras objects).

Same two functions as :mod:`~cnnwidgets.dataset.local_engine`: ``check`` and ``run``.
Ray itself is imported on first use only (a heavy, optional package).
"""

from __future__ import annotations

import io
import pickle
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np

from cnnwidgets.dataset.chunk import ChunkWork, RunSpec
from cnnwidgets.dataset.sources import Chunk
from cnnwidgets.dataset.store import DatasetStore, weights_digest
from cnnwidgets.probe import Probe

__all__ = ["ChunkExplainer", "check", "require_ray", "run"]


def require_ray() -> Any:
    """Import ray (with Ray Data), or raise ImportError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            'engine="ray" needs Ray Data: pip install "cnnwidgets[ray]" '
            '(or pip install "ray[data]>=2.9")'
        ) from exc
    return ray


def check(options: dict[str, Any]) -> dict[str, Any]:
    """``{"workers": int, "ray_options": dict}`` checked (and Ray importable),
    before any store is made."""
    require_ray()
    workers, ray_options = options.get("workers", 2), options.get("ray_options")
    if not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if ray_options is not None and not isinstance(ray_options, dict):
        raise TypeError(f"ray_options must be a dict of actor resources, got {ray_options!r}")
    return {"workers": int(workers), "ray_options": dict(ray_options or {})}


def model_bytes(model: Any) -> bytes:
    """The model as ``.keras`` file bytes (architecture and weights, no optimizer)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/model.keras"
        model.save(path, include_optimizer=False)
        with open(path, "rb") as f:
            return f.read()


def load_model(data: bytes) -> Any:
    """A model from :func:`model_bytes` (safe mode)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/model.keras"
        with open(path, "wb") as f:
            f.write(data)
        return keras.saving.load_model(path, compile=False)


class ChunkExplainer:
    """A Ray Data actor: holds the model, explains one chunk per batch.

    Batches are ``{"chunk": (b,) int}``; the answer is ``{"chunk": (b,) int,
    "result": (b,) bytes}``, each result the pickled store arrays of
    :class:`~cnnwidgets.dataset.chunk.ChunkWork` (the local engine's work)."""

    def __init__(self, model: bytes, probe_args: dict, spec: RunSpec, digest: str, sources: dict):
        ray = require_ray()
        loaded = load_model(ray.get(model) if isinstance(model, ray.ObjectRef) else model)
        if weights_digest(loaded) != digest:
            raise RuntimeError("the worker's copy of the model has other weights than the driver's")
        self.work = ChunkWork(Probe(loaded, **probe_args), spec)
        self.sources = sources  # chunk number -> ObjectRef of its Chunk

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ray = require_ray()
        numbers = np.asarray(batch["chunk"], np.int64)
        results = []
        for number in numbers:
            chunk = ray.get(self.sources[int(number)])
            buf = io.BytesIO()
            pickle.dump(self.work(chunk), buf, protocol=5)
            results.append(buf.getvalue())
        return {"chunk": numbers, "result": np.array(results, dtype=object)}


def run(
    store: DatasetStore,
    chunks: Iterable[Chunk],
    work: ChunkWork,
    report: Callable[[int, int], object],
    count: int | None,
    options: dict[str, Any],
) -> int:
    """Explain the chunks the store has not finished on Ray actors, writing
    each into the store as it comes back. See the module docstring.

    Args:
        store: the store, opened for writing.
        chunks: the data, a chunk at a time (all read first, into Ray's object store).
        work: what to compute for a chunk; its probe's model and its spec go to the actors.
        report: ``report(done, total)`` in images, after each chunk.
        count: the number of images, or None (known once the chunks are read).
        options: from :func:`check`: ``workers`` and ``ray_options``.

    Returns:
        The number of images seen.
    """
    ray = require_ray()
    probe = work.probe
    todo: dict[int, Any] = {}
    starts: dict[int, tuple[int, np.ndarray]] = {}
    total = 0
    for ch, digest in store.resume(chunks):
        if digest is not None:
            # The object store holds (and may spill) the chunks; the driver only one.
            todo[ch.index] = ray.put(ch)
            starts[ch.index] = (ch.start, digest)
        total = ch.start + len(ch)
        del ch
    finished = total - sum(min(store.meta["chunk"], total - s) for s, _ in starts.values())
    report(finished, total)
    if not todo:
        return total
    probe_args = {"class_names": probe.class_names, "preprocess": probe.preprocess}
    ds = ray.data.from_items([{"chunk": i} for i in sorted(todo)])
    results = ds.map_batches(
        ChunkExplainer,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=options["workers"]),
        fn_constructor_kwargs={
            "model": ray.put(model_bytes(probe.model)),
            "probe_args": probe_args,
            "spec": work.spec,
            "digest": store.meta["weights_digest"],
            "sources": todo,
        },
        **options["ray_options"],
    )
    for row in results.iter_rows():
        index = int(row["chunk"])
        arrays = pickle.loads(row["result"])
        start, digest = starts[index]
        store.write_chunk(index, start, arrays, digest)
        finished += len(arrays["maps"])
        report(finished, total)
    return total
