"""Explanations over many images: streamed in bounded memory into an on-disk
Zarr store, resumable, on this machine or on a Ray cluster.

- :mod:`~cnnwidgets.dataset.sources`: data adapters (numpy, tf.data, iterables) -> chunks;
- :mod:`~cnnwidgets.dataset.scores`: per-image confidence, loss, energy inside the object;
- :mod:`~cnnwidgets.dataset.store`: the store's layout, metadata and resumption;
- :mod:`~cnnwidgets.dataset.chunk`: the per-chunk work (one chunk of images -> store arrays);
- :mod:`~cnnwidgets.dataset.stream`: :func:`explain_dataset`: arguments, store, engine;
- :mod:`~cnnwidgets.dataset.local_engine`: the chunks one after the other, in this process;
- :mod:`~cnnwidgets.dataset.ray_engine`: the same work as a Ray Data stage;
- :mod:`~cnnwidgets.dataset.topk`: :func:`top_activations`, streaming per-channel top-k.

No ipywidgets here; the explorer widget lives in ``cnnwidgets.widgets``.
"""

from cnnwidgets.dataset.store import DatasetStore, StoreMismatchError
from cnnwidgets.dataset.stream import explain_dataset
from cnnwidgets.dataset.topk import TopActivations, top_activations

__all__ = [
    "DatasetStore",
    "StoreMismatchError",
    "TopActivations",
    "explain_dataset",
    "top_activations",
]
