"""``explain_dataset(..., engine="local")``: the chunks are explained one
after the other in this process, each written before the next is read, so
memory holds one chunk whatever the dataset's size.

Every engine module has the same two functions: ``check(options)`` (refuse bad
engine options before any store is made) and ``run(store, chunks, work,
report, count, options)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cnnwidgets.dataset.chunk import ChunkWork
from cnnwidgets.dataset.sources import Chunk
from cnnwidgets.dataset.store import DatasetStore

__all__ = ["check", "run"]


def check(options: dict[str, Any]) -> dict[str, Any]:
    """The options this engine uses: none (``workers`` and ``ray_options``
    are Ray's; they are ignored here)."""
    return {}


def run(
    store: DatasetStore,
    chunks: Iterable[Chunk],
    work: ChunkWork,
    report: Callable[[int, int], object],
    count: int | None,
    options: dict[str, Any],
) -> int:
    """Explain the chunks the store has not finished, writing each into it.

    Args:
        store: the store, opened for writing.
        chunks: the data, a chunk at a time (read lazily).
        work: what to compute for a chunk: ``work(chunk)`` -> store arrays.
        report: ``report(done, total)`` in images, after each chunk.
        count: the number of images, or None when the data does not say.
        options: from :func:`check`.

    Returns:
        The number of images seen.
    """
    seen = 0
    for ch, digest in store.resume(chunks):
        if digest is not None:  # not finished in an earlier run
            store.write_chunk(ch.index, ch.start, work(ch), digest)
        seen = ch.start + len(ch)
        report(seen, count if count is not None else seen + store.meta["chunk"])
        del ch  # free this chunk before the next one is read
    if count is None:
        report(seen, seen)  # the length is known now
    return seen
