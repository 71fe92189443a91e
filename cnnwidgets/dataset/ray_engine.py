"""``explain_dataset(..., engine="ray")``: the same per-chunk work as a Ray
Data ``map_batches`` stage over a pool of actors that each hold the model
(Ray's batch-inference pattern), writing the same store.

How it runs: the driver cuts the data into the store's chunks and puts the
unfinished ones into Ray's object store; a dataset of chunk numbers goes
through ``map_batches(ChunkExplainer, batch_size=1, concurrency=workers)``;
each actor loads the model once (from the driver's ``.keras`` bytes), checks
its weights digest against the store's, and runs
:func:`cnnwidgets.dataset.stream.explain_chunk` on one chunk per call. The
driver receives the results as they finish and writes them into the store,
so the store needs no filesystem shared with the workers, and chunks are the
same images as in the local loop: results are identical to ``engine="local"``.

On a cluster, call ``ray.init(address=...)`` first; ``workers`` actors are
spread over it, and ``ray_options={"num_gpus": 1}`` gives each actor a GPU.
Custom layers must be importable on the workers (registered Keras objects).
"""

from __future__ import annotations

import io
import pickle
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from cnnwidgets.dataset.sources import Chunk
from cnnwidgets.dataset.store import DatasetStore, weights_digest
from cnnwidgets.probe import Probe

__all__ = ["ChunkExplainer", "require_ray", "run"]


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


def model_bytes(model: Any) -> bytes:
    """The model as ``.keras`` file bytes (architecture and weights, no optimizer)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/model.keras"
        model.save(path, include_optimizer=False)
        with open(path, "rb") as f:
            return f.read()


def load_model(data: bytes) -> Any:
    """A model from :func:`model_bytes` (safe mode)."""
    import keras

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/model.keras"
        with open(path, "wb") as f:
            f.write(data)
        return keras.saving.load_model(path, compile=False)


class ChunkExplainer:
    """A Ray Data actor: holds the model, explains one chunk per batch.

    Batches are ``{"chunk": (b,) int}``; the answer is ``{"chunk": (b,) int,
    "result": (b,) bytes}``, each result the pickled dict of
    :func:`~cnnwidgets.dataset.stream.explain_chunk`."""

    def __init__(self, model: bytes, probe_args: dict, spec: Any, digest: str, sources: dict):
        import ray

        from cnnwidgets.probe import Probe

        loaded = load_model(ray.get(model) if isinstance(model, ray.ObjectRef) else model)
        if weights_digest(loaded) != digest:
            raise RuntimeError("the worker's copy of the model has other weights than the driver's")
        self.probe = Probe(loaded, **probe_args)
        self.spec = spec
        self.sources = sources  # chunk number -> ObjectRef of its Chunk

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray

        from cnnwidgets.dataset.stream import explain_chunk

        numbers = np.asarray(batch["chunk"], np.int64)
        results = []
        for number in numbers:
            chunk = ray.get(self.sources[int(number)])
            buf = io.BytesIO()
            pickle.dump(explain_chunk(self.probe, self.spec, chunk), buf, protocol=5)
            results.append(buf.getvalue())
        return {"chunk": numbers, "result": np.array(results, dtype=object)}


def run(
    probe: Probe,
    spec: Any,
    stream: Iterator[Chunk],
    store: DatasetStore,
    report: Callable[[int, int], object],
    workers: int,
    ray_options: dict,
) -> int:
    """Explain the unfinished chunks of ``stream`` on Ray actors, writing into
    ``store``; returns the number of images. See the module docstring."""
    ray = require_ray()
    todo: dict[int, Any] = {}
    starts: dict[int, tuple[int, np.ndarray]] = {}
    total = 0
    for ch, digest in store.resume(stream):
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
        compute=ray.data.ActorPoolStrategy(size=int(workers)),
        fn_constructor_kwargs={
            "model": ray.put(model_bytes(probe.model)),
            "probe_args": probe_args,
            "spec": spec,
            "digest": store.meta["weights_digest"],
            "sources": todo,
        },
        **ray_options,
    )
    for row in results.iter_rows():
        index = int(row["chunk"])
        arrays = pickle.loads(row["result"])
        start, digest = starts[index]
        store.write_chunk(index, start, arrays, digest)
        finished += len(arrays["maps"])
        report(finished, total)
    return total
