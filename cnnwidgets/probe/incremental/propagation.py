"""The graph as the incremental engine runs it, and how a changed region travels it.

:func:`classify` turns the probe's catalog into :class:`Node` s, each with a
mode: 'window' (a sliding-window rule, :mod:`.windows`), 'pointwise' (the
region stays put), 'merge' (elementwise over same-shaped parents: the union
of their regions) or 'full' (no window rule: it runs whole, as in the model).
:func:`walk` is the one loop that carries a batch's changed input region
through the nodes (:func:`propagate` per node); the cost model and the
executor each say what they do per node. No values are involved here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnwidgets.probe import Probe, kinds
from cnnwidgets.probe.incremental.windows import Axis, sliding_axes

__all__ = [
    "Node",
    "NotIncremental",
    "Region",
    "channel_only",
    "classify",
    "clean_region",
    "full_region",
    "patch_region",
    "propagate",
    "same_box",
    "walk",
]


class NotIncremental(ValueError):
    """The incremental engine cannot compute this model exactly; use plain passes."""


# --------------------------------------------------------------------- nodes


@dataclass
class Node:
    """One catalog entry as the engine runs it.

    mode: 'window' (a sliding-window rule), 'pointwise', 'merge' (elementwise
    over same-shaped parents) or 'full' (run whole, as in the model)."""

    path: str
    kind: str
    obj: Any
    parents: tuple[int, ...]  # indices of earlier nodes; -1 is the model input
    mode: str
    why: str = ""
    hw: tuple[int, int] | None = None  # spatial size of the output, None if not a map
    axes: tuple[Axis, Axis] | None = None
    channels: int = 1  # values per output position
    consumers: list[int] = field(default_factory=list)


def channel_only(obj: Any, kind: str) -> str:
    """'' if a pointwise / merge node works on channels only, else why not."""
    axis = getattr(obj, "axis", None)
    if kind in kinds.CHANNEL_AXIS:
        ok = axis in (-1, 3)
    elif kind in kinds.CHANNEL_AXES:
        ax = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
        ok = ax in ((-1,), (3,))
    elif kind in kinds.SHARED_AXES:
        shared = getattr(obj, "shared_axes", None) or ()
        ok = 1 in shared and 2 in shared
    else:
        ok = True
    return "" if ok else f"{kind} over spatial axes"


def classify(probe: Probe, size: tuple[int, int]) -> tuple[list[Node], int]:
    """The graph as the engine runs it, for inputs of this (H, W); and the output node.

    Raises:
        NotIncremental: a node the engine cannot replay from the catalog.
    """
    nodes: list[Node] = []
    index: dict[str, int] = {"input": -1}
    hws: dict[int, tuple[int, int] | None] = {-1: size}
    for info in probe.layers:
        if info.is_model:
            continue  # its inner layers are in the catalog; its output is the last one's
        missing = [p for p in info.parents if p not in index]
        if missing or not info.parents:
            why = (
                f"its input {missing[0]!r} comes later in the graph (a layer called twice)"
                if missing
                else "it has no input from the image"
            )
            raise NotIncremental(f"node {info.name!r} ({info.kind}): {why}")
        if not info.output_shape:
            raise NotIncremental(f"node {info.name!r} ({info.kind}) has several outputs")
        obj = probe.layer(info.name)
        parents = tuple(index[p] for p in info.parents)
        parent_hw = [hws[p] for p in parents]
        is_map = len(info.output_shape) == 4
        node = Node(info.name, info.kind, obj, parents, "full")
        node.channels = int(info.output_shape[-1] or 1)
        kind = info.kind
        one_map = len(parents) == 1 and parent_hw[0] is not None and is_map
        if kind in kinds.MERGE_OPS and len(parents) != 2:
            raise NotIncremental(
                f"node {info.name!r} ({kind}) has a constant or repeated operand; its call "
                "cannot be replayed from the catalog"
            )
        if kind in kinds.MERGE_LAYERS and len(parents) < 2:
            raise NotIncremental(
                f"node {info.name!r} ({kind}) merges one tensor with itself; its call cannot "
                "be replayed from the catalog"
            )
        if one_map and kind in kinds.WINDOW_LAYERS:
            try:
                node.axes = sliding_axes(obj, kind, parent_hw[0])
                node.mode = "window"
                node.hw = (node.axes[0].n_out, node.axes[1].n_out)
            except (ValueError, AttributeError, TypeError) as exc:
                node.why = f"no window rule ({exc})"
        elif one_map and (kind in kinds.POINTWISE_LAYERS or kind in kinds.POINTWISE_OPS):
            node.why = channel_only(obj, kind)
            if not node.why:
                node.mode, node.hw = "pointwise", parent_hw[0]
        elif (
            kind in kinds.MERGE_LAYERS or kind in kinds.MERGE_OPS or kind in kinds.LIST_OPS
        ) and is_map:
            same = len(set(parent_hw)) == 1 and parent_hw[0] is not None
            node.why = channel_only(obj, kind) or ("" if same else "operands of different shapes")
            if not node.why:
                node.mode, node.hw = "merge", parent_hw[0]
        else:
            node.why = "needs its whole input" if not is_map else "no window rule"
        if node.mode == "full":
            node.hw = tuple(info.output_shape[1:3]) if is_map else None
            if node.hw is not None and None in node.hw:
                node.hw = None  # a map of unknown size: its consumers run whole as well
        static = info.output_shape[1:3] if is_map else None
        if node.mode != "full" and static is not None and None not in static:
            if tuple(static) != node.hw:
                node.mode, node.why = "full", "window geometry not understood"
                node.hw = tuple(static)
        index[info.name] = len(nodes)
        hws[len(nodes)] = node.hw
        for p in parents:
            if p >= 0:
                nodes[p].consumers.append(len(nodes))
        nodes.append(node)
    out = index.get(probe.head.logits_from)
    if out is None or out < 0:
        raise NotIncremental("the model's output node is not in the catalog")
    return nodes, out


# ------------------------------------------------------------------- regions


@dataclass
class Region:
    """Per image of a batch: changed rows [y0, y1) and columns [x0, x1) of a map
    ((M,) int64 each, all zero when nothing changed), and the box computed:
    (nh, nw) at (by, bx), one size for the batch, (M,) int64 offsets."""

    y0: np.ndarray
    y1: np.ndarray
    x0: np.ndarray
    x1: np.ndarray
    nh: int = 0
    nw: int = 0
    by: np.ndarray | None = None
    bx: np.ndarray | None = None

    @property
    def clean(self) -> bool:
        """Nothing changed in any image."""
        return self.nh == 0

    def boxed(self, hw: tuple[int, int]) -> Region:
        """Fix one box size for the batch (the largest change) and each image's offset,
        moved inward so the box lies inside the map (it still holds the change)."""
        self.nh = int((self.y1 - self.y0).max(initial=0))
        self.nw = int((self.x1 - self.x0).max(initial=0))
        if self.nh == 0 or self.nw == 0:
            self.nh = self.nw = 0
            return self
        self.by = np.minimum(self.y0, hw[0] - self.nh)
        self.bx = np.minimum(self.x0, hw[1] - self.nw)
        return self

    def covers(self, hw: tuple[int, int] | None) -> bool:
        """The box is the whole map (always, for a node that is not a map)."""
        return hw is None or (self.nh, self.nw) == tuple(hw)


def same_box(a: Region, b: Region) -> bool:
    """Both regions changed, in boxes of the same size at the same offsets."""
    return (
        (a.nh, a.nw) == (b.nh, b.nw)
        and not a.clean
        and bool((a.by == b.by).all() and (a.bx == b.bx).all())
    )


def full_region(m: int, hw: tuple[int, int] | None) -> Region:
    """The whole map (1 x 1 for a node that is not a map) changed in each of m images."""
    h, w = hw if hw is not None else (1, 1)
    z = np.zeros(m, np.int64)
    r = Region(z, z + h, z, z + w)
    r.nh, r.nw, r.by, r.bx = h, w, z, z
    return r


def clean_region(m: int) -> Region:
    """Nothing changed in any of m images."""
    z = np.zeros(m, np.int64)
    return Region(z, z, z, z)


def patch_region(
    ys: np.ndarray, xs: np.ndarray, patch: int, size: tuple[int, int]
) -> Region:
    """The boxed input region of square patches of side ``patch`` with top-left
    corners at rows ``ys`` and columns ``xs`` ((M,) ints), on (H, W) = ``size`` images."""
    ys, xs = np.asarray(ys), np.asarray(xs)
    return Region(ys, ys + patch, xs, xs + patch).boxed(size)


def propagate(node: Node, parents: Sequence[Region], m: int) -> Region:
    """The changed region of a node's output from its parents' (no values involved)."""
    if all(p.clean for p in parents):
        return clean_region(m)
    if node.mode == "full":
        return full_region(m, node.hw)
    if node.mode == "window":
        (p,) = parents
        ay, ax = node.axes
        y0, y1 = ay.reach(p.y0, p.y1)
        x0, x1 = ax.reach(p.x0, p.x1)
        empty = (y0 >= y1) | (x0 >= x1)
        y0, y1, x0, x1 = (np.where(empty, 0, v) for v in (y0, y1, x0, x1))
        return Region(y0, y1, x0, x1).boxed(node.hw)
    if node.mode == "pointwise":
        (p,) = parents
        r = Region(p.y0, p.y1, p.x0, p.x1)
        r.nh, r.nw, r.by, r.bx = p.nh, p.nw, p.by, p.bx
        return r
    # merge: the union of the parents' changes
    big = np.iinfo(np.int64).max
    live = [(p, p.y1 > p.y0) for p in parents]
    y0 = np.min([np.where(e, p.y0, big) for p, e in live], axis=0)
    x0 = np.min([np.where(e, p.x0, big) for p, e in live], axis=0)
    y1 = np.max([np.where(e, p.y1, 0) for p, e in live], axis=0)
    x1 = np.max([np.where(e, p.x1, 0) for p, e in live], axis=0)
    empty = y1 == 0
    return Region(np.where(empty, 0, y0), y1, np.where(empty, 0, x0), x1).boxed(node.hw)


#: What a caller of :func:`walk` does at each node: (index, node, its region,
#: its parents' regions in the order of ``node.parents``).
Visit = Callable[[int, Node, Region, list[Region]], None]


def walk(nodes: Sequence[Node], start: Region, visit: Visit | None = None) -> list[Region]:
    """Carry a batch's changed input region through the graph, in graph order.

    Args:
        nodes: from :func:`classify`.
        start: the changed region of the model input (M images), boxed.
        visit: called at each node once its region is known (see :data:`Visit`).

    Returns:
        The changed region of every node's output, in the order of ``nodes``.
    """
    m = len(start.y0)
    regions: dict[int, Region] = {-1: start}
    for i, node in enumerate(nodes):
        parents = [regions[q] for q in node.parents]
        regions[i] = propagate(node, parents, m)
        if visit is not None:
            visit(i, node, regions[i], parents)
    return [regions[i] for i in range(len(nodes))]
