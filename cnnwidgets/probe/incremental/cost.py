"""What incremental occlusion costs, and the one policy choosing its engine.

The time model counts multiply-adds plus a cost per value a node writes
(whole maps in a compiled pass, windows in the incremental engine's eager
calls), for one patch in the middle of the image; the memory model counts
the boxes alive at once. :func:`choose_engine` is the only place that
decides between the 'incremental' and the 'batched' engine, for
:func:`cnnwidgets.occlusion` and :func:`plan` alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnwidgets.probe import Probe, geometry, kinds
from cnnwidgets.probe.incremental.heads import target_head
from cnnwidgets.probe.incremental.propagation import (
    Node,
    NotIncremental,
    Region,
    classify,
    patch_region,
    walk,
)

__all__ = [
    "MIN_SPEEDUP",
    "MIN_WORK",
    "SETUP_PASSES",
    "WHOLE_VALUE_COST",
    "WINDOW_VALUE_COST",
    "Estimate",
    "IncrementalPlan",
    "central_patch",
    "choose_engine",
    "estimate",
    "node_cost",
    "peak_bytes",
    "plan",
]

#: The cost model, in multiply-adds per output value a node writes, on top of
#: its multiply-adds: what a plain (compiled, whole-map) pass spends on memory, and
#: what the incremental engine spends per value of a window (the eager call, copying
#: windows in and out). Fitted on a 2-core CPU to the measured incremental / batched
#: times of VGG16, ResNet50 and MobileNetV2 (224 px, patch 16): 6.1x, 1.28x, 1.0x.
WHOLE_VALUE_COST = 25.0
WINDOW_VALUE_COST = 375.0

#: Estimated speed-up below which the incremental engine is not worth it.
MIN_SPEEDUP = 1.15

#: Multiply-adds per image below which fixed costs (one eager call per node and
#: batch, the set-up per image) outweigh any saving (the demo CNNs: 40 M).
MIN_WORK = 1e9

#: Forward passes' worth of work the incremental engine's set-up costs (the
#: unpatched pass, its self-check, compiling the whole-map tail); 'auto' wants
#: the saving over the whole grid to exceed it.
SETUP_PASSES = 8


@dataclass(frozen=True)
class IncrementalPlan:
    """What the incremental engine would do for one model, image size and patch.

    Attributes:
        engine: 'incremental' (it runs and pays off) or 'batched'.
        reason: one sentence saying why.
        speedup: estimated time of plain passes over incremental ones for a
            patch in the middle of the image, from multiply-adds and values
            written (see WHOLE_VALUE_COST); 0 when the engine cannot run.
        full_from: paths of the nodes where a branch first runs in full for
            that patch (the window covered the map, or the node has no window rule).
    """

    engine: str
    reason: str
    speedup: float = 0.0
    full_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class Estimate:
    """The cost model's figures for one model, image size and central patch.

    Attributes:
        plain: cost of one plain pass (multiply-adds plus per-value costs).
        incremental: cost of one incremental pass (>= 1).
        macs: multiply-adds per image of a plain pass.
        full_from: as :attr:`IncrementalPlan.full_from`.
        unavailable: why the engine cannot run on this model ('' when it can).
    """

    plain: float = 0.0
    incremental: float = 1.0
    macs: float = 0.0
    full_from: tuple[str, ...] = ()
    unavailable: str = ""

    @property
    def speedup(self) -> float:
        """Plain over incremental cost; 0 when the engine cannot run."""
        return 0.0 if self.unavailable else self.plain / self.incremental


def node_cost(node: Node) -> float:
    """Multiply-adds per output position (per image for non-maps): a rough weight
    for the speed-up estimate."""
    obj, kind, rule = node.obj, node.kind, kinds.WINDOW_RULES.get(node.kind)
    if rule in ("conv", "depthwise") or kind in kinds.DENSE:
        for attr in ("kernel", "depthwise_kernel"):
            if hasattr(obj, attr):
                return float(np.prod(getattr(obj, attr).shape))
    if rule == "separable":
        return float(np.prod(obj.depthwise_kernel.shape) + np.prod(obj.pointwise_kernel.shape))
    if rule in ("max_pool", "average_pool"):
        return float(np.prod(geometry.pair(obj.pool_size)) * node.channels)
    return float(node.channels)


def central_patch(size: tuple[int, int], patch: int) -> Region:
    """The boxed input region of one patch in the middle of an (H, W) image."""
    h, w = size
    return patch_region(np.array([(h - patch) // 2]), np.array([(w - patch) // 2]), patch, size)


def estimate(probe: Probe, size: tuple[int, int], patch: int) -> Estimate:
    """The cost model for (H, W) = ``size`` images and a central patch of this side;
    cached on the probe (it depends on the architecture only)."""
    size = (int(size[0]), int(size[1]))

    def build() -> Estimate:
        try:
            nodes, _ = classify(probe, size)
        except NotIncremental as exc:
            return Estimate(unavailable=str(exc))
        return _estimate(nodes, size, int(patch))

    return probe.cached("incremental-estimate", (size, int(patch)), build, versioned=False)


def _estimate(nodes: Sequence[Node], size: tuple[int, int], patch: int) -> Estimate:
    total = {"plain": 0.0, "incremental": 0.0, "macs": 0.0}
    first_full: list[str] = []

    def visit(i: int, node: Node, r: Region, parents: list[Region]) -> None:
        area = float(np.prod(node.hw)) if node.hw is not None else 1.0
        cost = node_cost(node)
        whole = cost * area + WHOLE_VALUE_COST * area * node.channels
        total["plain"] += whole
        total["macs"] += cost * area
        if r.clean:
            return
        if r.covers(node.hw):
            total["incremental"] += whole
        else:
            total["incremental"] += (cost + WINDOW_VALUE_COST * node.channels) * r.nh * r.nw
        was_partial = any(
            not p.covers(nodes[q].hw if q >= 0 else size)
            for p, q in zip(parents, node.parents)
            if not p.clean
        )
        if r.covers(node.hw) and was_partial:
            first_full.append(node.path)

    walk(nodes, central_patch(size, patch), visit)
    return Estimate(
        total["plain"], max(total["incremental"], 1.0), total["macs"], tuple(first_full)
    )


def choose_engine(
    probe: Probe,
    size: tuple[int, int],
    patch: int,
    positions: int | None = None,
    engine: str = "auto",
    targets: Any = None,
) -> IncrementalPlan:
    """The engine occlusion runs on, and why: the one policy.

    Args:
        probe: the model's Probe.
        size: (H, W) of the images.
        patch: the patch side in pixels.
        positions: patch positions per image, or None to leave the set-up
            cost out (whether the engine pays off per pass only).
        engine: 'auto', 'incremental' or 'batched' (what the caller asked for).
        targets: None (class probabilities) or the targets scored (one or a
            list, :mod:`cnnwidgets.probe.targets`): they ride the engine when
            :func:`cnnwidgets.probe.incremental.heads.target_head` can cut the
            model at its output node's input (one output, one tensor into it);
            else 'batched', the reason saying why.

    Returns:
        :class:`IncrementalPlan`. 'auto' takes 'incremental' where every node
        can be replayed, the model does at least MIN_WORK multiply-adds per
        image, the estimated speed-up is at least MIN_SPEEDUP and the saving
        over ``positions`` patches exceeds SETUP_PASSES forward passes.

    Raises:
        ValueError: engine='incremental' on a model the engine cannot run on.
    """
    if engine == "batched":
        return IncrementalPlan("batched", "engine='batched' was asked for")
    if targets is not None:
        try:
            target_head(probe, targets)
        except NotIncremental as exc:
            if engine == "incremental":
                raise ValueError(
                    f"engine='incremental' cannot run these targets: {exc}; use "
                    "engine='batched' or 'auto'"
                ) from exc
            return IncrementalPlan("batched", f"targets run batched: {exc}")
    found = estimate(probe, size, patch)
    speedup = found.speedup
    if found.unavailable:
        if engine == "incremental":
            raise ValueError(
                f"engine='incremental' cannot run here: incremental engine unavailable: "
                f"{found.unavailable}; use engine='batched' or 'auto'"
            )
        return IncrementalPlan("batched", f"incremental engine unavailable: {found.unavailable}")
    if engine == "incremental":
        return IncrementalPlan(
            "incremental", "engine='incremental' was asked for", speedup, found.full_from
        )
    if found.macs < MIN_WORK:
        return IncrementalPlan(
            "batched",
            f"the model is small ({found.macs / 1e6:.0f} M multiply-adds per image): the "
            "incremental engine's fixed costs outweigh its saving",
            speedup,
            found.full_from,
        )
    if speedup < MIN_SPEEDUP:
        return IncrementalPlan(
            "batched",
            f"estimated incremental speed-up {speedup:.2f}x is below {MIN_SPEEDUP}x "
            "(the patch reaches most of the model)",
            speedup,
            found.full_from,
        )
    saved = positions * (1.0 - 1.0 / speedup) if positions is not None else None
    if saved is not None and saved < SETUP_PASSES:
        return IncrementalPlan(
            "batched",
            f"{positions} patch positions save about {saved:.1f} forward passes, less than "
            f"the incremental engine's set-up (~{SETUP_PASSES})",
            speedup,
            found.full_from,
        )
    return IncrementalPlan(
        "incremental",
        f"every node can be replayed; estimated {speedup:.2f}x faster",
        speedup,
        found.full_from,
    )


def plan(probe: Probe, size: tuple[int, int], patch: int) -> IncrementalPlan:
    """Whether incremental occlusion runs on this model for (H, W) images and
    this patch side, and whether it pays off per pass (:func:`choose_engine`
    under 'auto', set-up cost left out)."""
    return choose_engine(probe, (int(size[0]), int(size[1])), int(patch))


def peak_bytes(
    nodes: Sequence[Node], base: Sequence[np.ndarray], size: tuple[int, int], patch: int
) -> int:
    """Rough peak bytes one patched image takes while a batch runs: the float32
    boxes alive at once (a box is dropped after its last consumer), each with an
    input window of about its size; at least what the whole-map tail takes.

    Args:
        nodes: from :func:`classify`.
        base: each node's unoccluded output (its shape; (H', W', C) for maps).
        size: (H, W) of the image.
        patch: the patch side (a central patch is counted).
    """
    remaining = {i: len(n.consumers) for i, n in enumerate(nodes)}
    live: dict[int, int] = {}
    peak = [0, 0]  # most bytes alive at once; bytes of the nodes that run whole

    def visit(i: int, node: Node, r: Region, parents: list[Region]) -> None:
        if r.clean:
            return
        whole = r.covers(node.hw)
        live[i] = 4 * base[i].size if whole else 4 * r.nh * r.nw * base[i].shape[-1]
        peak[0] = max(peak[0], sum(live.values()) + live[i])
        if whole:
            peak[1] += 4 * base[i].size
        for q in node.parents:
            if q >= 0:
                remaining[q] -= 1
                if remaining[q] == 0:
                    live.pop(q, None)

    walk(nodes, central_patch(size, patch), visit)
    # What runs whole keeps every output like a plain pass (as Probe.batch_size counts).
    return int(max(peak))

