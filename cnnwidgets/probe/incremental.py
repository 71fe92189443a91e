"""Incremental inference for occlusion: recompute only what a patch can reach.

A patch changes a small window of the input. Through a convolution or a
pooling layer that window grows by the kernel and shrinks with the stride;
through pointwise layers (batch norm, activations, rescaling) it stays put,
and through elementwise merges (add, multiply, concatenate on channels) it
becomes the union of the merged windows. :class:`IncrementalModel` computes
every node of the model once for the unoccluded image; for a batch of
patched images it then recomputes each node only inside its changed window
(one window size per node and batch, one offset per image), reading the
unchanged surroundings from the cached activations, until the window covers
the whole map or the node has no window rule (Dense, Flatten, global
pooling, anything unknown); from there that branch runs in full, with the
model's own layer objects, as in the model. This is the incremental
inference of Nakandala et al., "Incremental and Approximate Inference for
Faster Occlusion-based Deep CNN Explanations", SIGMOD 2019 (exact variant).

Exactness is the contract: every recomputed value comes from the same
weights and the same formula as in the model; the results differ from a
plain forward pass only by float rounding. Before use the engine checks
itself on the unoccluded image: it replays every node in full from its
parents' cached activations, and recomputes every window at three patch
positions (a corner, the centre, the opposite corner) against the cached
values; any difference (an operator node with a constant operand whose call
cannot be replayed, a layer that is not what its kind says) raises
:class:`NotIncremental`, and callers fall back to plain batched passes.

Window geometry per spatial axis (kernel k after dilation, stride s,
``before`` rows of padding before the map, negative for a crop): output o
reads input rows ``o*s - before .. o*s - before + k - 1``; input rows
[a, b) reach outputs ``ceil((a + before - k + 1) / s) .. floor((b - 1 + before) / s)``.
'same' padding follows TensorFlow: ``before = max((out - 1)*s + k - in, 0) // 2``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from cnnwidgets.probe import Probe, quiet_retracing
from cnnwidgets.probe.kinds import (
    LIST_OPS,
    MERGE_LAYERS,
    MERGE_OPS,
    POINTWISE_LAYERS,
    POINTWISE_OPS,
    WINDOW_LAYERS,
)

__all__ = ["IncrementalModel", "IncrementalPlan", "NotIncremental", "plan"]

#: The plan's cost model, in multiply-adds per output value a node writes, on top of
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


class NotIncremental(ValueError):
    """The incremental engine cannot compute this model exactly; use plain passes."""


# ------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class _Axis:
    """Window geometry of one node along one spatial axis (see the module doc)."""

    k: int
    s: int
    before: int
    n_in: int
    n_out: int

    def reach(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output rows [lo, hi) changed by input rows [a, b); (0, 0) when none are."""
        lo = -((-(a + self.before - self.k + 1)) // self.s)
        hi = (b - 1 + self.before) // self.s + 1
        lo = np.clip(lo, 0, self.n_out)
        hi = np.clip(hi, 0, self.n_out)
        empty = (a >= b) | (lo >= hi)
        return np.where(empty, 0, lo), np.where(empty, 0, hi)

    def window(self, start: np.ndarray, n: int) -> tuple[np.ndarray, int]:
        """Input rows (start, length) that outputs [start, start + n) read."""
        return start * self.s - self.before, (n - 1) * self.s + self.k

    @property
    def pads(self) -> tuple[int, int]:
        """Rows of padding the cached input needs before and after for any window."""
        after = (self.n_out - 1) * self.s - self.before + self.k - self.n_in
        return max(0, self.before), max(0, after)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def _sliding_axes(layer: Any, kind: str, hw: tuple[int, int]) -> tuple[_Axis, _Axis]:
    """Geometry of a convolution / pooling / padding layer, or ValueError saying why not."""
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError("channels_first data format")
    if kind in ("ZeroPadding2D", "Cropping2D"):
        spec = layer.padding if kind == "ZeroPadding2D" else layer.cropping
        (top, bottom), (left, right) = spec
        sign = 1 if kind == "ZeroPadding2D" else -1
        return tuple(  # type: ignore[return-value]
            _Axis(1, 1, sign * b, n, n + sign * (b + e))
            for (b, e), n in (((top, bottom), hw[0]), ((left, right), hw[1]))
        )
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        ks, ss, dil = _pair(layer.pool_size), _pair(layer.strides), (1, 1)
    else:
        if getattr(layer, "quantization_mode", None):
            raise ValueError("quantized layer")
        ks, ss, dil = _pair(layer.kernel_size), _pair(layer.strides), _pair(layer.dilation_rate)
    padding = str(layer.padding).lower()
    axes = []
    for k, s, d, n in zip(ks, ss, dil, hw):
        k_eff = (k - 1) * d + 1
        if padding == "same":
            out = -(-n // s)
            before = max((out - 1) * s + k_eff - n, 0) // 2
        elif padding == "valid":
            out = (n - k_eff) // s + 1
            before = 0
        else:
            raise ValueError(f"padding {padding!r}")
        if out < 1:
            raise ValueError("input smaller than the kernel")
        axes.append(_Axis(k_eff, s, before, n, out))
    return axes[0], axes[1]


# --------------------------------------------------------------------- nodes


@dataclass
class _Node:
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
    axes: tuple[_Axis, _Axis] | None = None
    cost: float = 0.0  # multiply-adds per output position (per image for non-maps)
    channels: int = 1  # values per output position
    consumers: list[int] = field(default_factory=list)


def _kind_ok(obj: Any, kind: str) -> str:
    """'' if a pointwise / merge node works on channels only, else why not."""
    axis = getattr(obj, "axis", None)
    if kind in ("Softmax", "ops.Softmax", "ops.LogSoftmax", "Concatenate", "ops.Concatenate"):
        ok = axis in (-1, 3)
    elif kind == "BatchNormalization":
        ok = axis in (-1, 3)
    elif kind in ("LayerNormalization", "UnitNormalization", "Normalization"):
        ax = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
        ok = ax in ((-1,), (3,))
    elif kind == "PReLU":
        shared = getattr(obj, "shared_axes", None) or ()
        ok = 1 in shared and 2 in shared
    else:
        ok = True
    return "" if ok else f"{kind} over spatial axes"


def _cost(obj: Any, kind: str, channels: int) -> float:
    """Multiply-adds per output position (a rough weight for the speed-up estimate)."""
    for attr in ("kernel", "depthwise_kernel"):
        if hasattr(obj, attr) and kind in ("Conv2D", "DepthwiseConv2D", "Dense"):
            return float(np.prod(getattr(obj, attr).shape))
    if kind == "SeparableConv2D":
        return float(np.prod(obj.depthwise_kernel.shape) + np.prod(obj.pointwise_kernel.shape))
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        return float(np.prod(_pair(obj.pool_size)) * channels)
    return float(channels)


def _classify(probe: Probe, size: tuple[int, int]) -> tuple[list[_Node], int]:
    """The graph as the engine runs it, for inputs of this (H, W); and the output node."""
    nodes: list[_Node] = []
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
        channels = int(info.output_shape[-1] or 1)
        node = _Node(info.name, info.kind, obj, parents, "full")
        node.cost = _cost(obj, info.kind, channels)
        node.channels = channels
        kind = info.kind
        one_map = len(parents) == 1 and parent_hw[0] is not None and is_map
        if kind in MERGE_OPS and len(parents) != 2:
            raise NotIncremental(
                f"node {info.name!r} ({kind}) has a constant or repeated operand; its call "
                "cannot be replayed from the catalog"
            )
        if kind in MERGE_LAYERS and len(parents) < 2:
            raise NotIncremental(
                f"node {info.name!r} ({kind}) merges one tensor with itself; its call cannot "
                "be replayed from the catalog"
            )
        if one_map and kind in WINDOW_LAYERS:
            try:
                node.axes = _sliding_axes(obj, kind, parent_hw[0])
                node.mode = "window"
                node.hw = (node.axes[0].n_out, node.axes[1].n_out)
            except (ValueError, AttributeError, TypeError) as exc:
                node.why = f"no window rule ({exc})"
        elif one_map and (kind in POINTWISE_LAYERS or kind in POINTWISE_OPS):
            node.why = _kind_ok(obj, kind)
            if not node.why:
                node.mode, node.hw = "pointwise", parent_hw[0]
        elif (kind in MERGE_LAYERS or kind in MERGE_OPS or kind in LIST_OPS) and is_map:
            same = len(set(parent_hw)) == 1 and parent_hw[0] is not None
            node.why = _kind_ok(obj, kind) or ("" if same else "operands of different shapes")
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


# ----------------------------------------------------------------- regions


@dataclass
class _Region:
    """Per image of a batch: changed rows [y0, y1) and columns [x0, x1) of a map
    (all zero when nothing changed), and the box computed: (nh, nw) at (by, bx)."""

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
        return self.nh == 0

    def boxed(self, hw: tuple[int, int]) -> _Region:
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
        return hw is None or (self.nh, self.nw) == tuple(hw)


def _same_box(a: _Region, b: _Region) -> bool:
    return (
        (a.nh, a.nw) == (b.nh, b.nw)
        and not a.clean
        and bool((a.by == b.by).all() and (a.bx == b.bx).all())
    )


def _full_region(m: int, hw: tuple[int, int] | None) -> _Region:
    h, w = hw if hw is not None else (1, 1)
    z = np.zeros(m, np.int64)
    r = _Region(z, z + h, z, z + w)
    r.nh, r.nw, r.by, r.bx = h, w, z, z
    return r


def _clean_region(m: int) -> _Region:
    z = np.zeros(m, np.int64)
    return _Region(z, z, z, z)


def _propagate(node: _Node, parents: Sequence[_Region], m: int) -> _Region:
    """The changed region of a node's output from its parents' (no values involved)."""
    if all(p.clean for p in parents):
        return _clean_region(m)
    if node.mode == "full":
        return _full_region(m, node.hw)
    if node.mode == "window":
        (p,) = parents
        ay, ax = node.axes
        y0, y1 = ay.reach(p.y0, p.y1)
        x0, x1 = ax.reach(p.x0, p.x1)
        empty = (y0 >= y1) | (x0 >= x1)
        y0, y1, x0, x1 = (np.where(empty, 0, v) for v in (y0, y1, x0, x1))
        return _Region(y0, y1, x0, x1).boxed(node.hw)
    if node.mode == "pointwise":
        (p,) = parents
        r = _Region(p.y0, p.y1, p.x0, p.x1)
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
    return _Region(np.where(empty, 0, y0), y1, np.where(empty, 0, x0), x1).boxed(node.hw)


# ---------------------------------------------------------------------- plan


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


def _estimate(nodes: list[_Node], size: tuple[int, int], patch: int):
    """(plain cost, incremental cost, multiply-adds per image, first whole nodes) for one
    central patch, costs as multiply-adds plus the per-value costs above."""
    h, w = size
    y, x = (h - patch) // 2, (w - patch) // 2
    inp = _Region(*(np.array([v]) for v in (y, y + patch, x, x + patch))).boxed(size)
    regions: dict[int, _Region] = {-1: inp}
    plain = incr = macs = 0.0
    first_full: list[str] = []
    for i, node in enumerate(nodes):
        parents = [regions[p] for p in node.parents]
        r = _propagate(node, parents, 1)
        regions[i] = r
        area = float(np.prod(node.hw)) if node.hw is not None else 1.0
        whole = node.cost * area + WHOLE_VALUE_COST * area * node.channels
        plain += whole
        macs += node.cost * area
        if r.clean:
            continue
        if r.covers(node.hw):
            incr += whole
        else:
            incr += (node.cost + WINDOW_VALUE_COST * node.channels) * r.nh * r.nw
        was_partial = any(
            not p.covers(nodes[q].hw if q >= 0 else size)
            for p, q in zip(parents, node.parents)
            if not p.clean
        )
        if r.covers(node.hw) and was_partial:
            first_full.append(node.path)
    return plain, max(incr, 1.0), macs, tuple(first_full)


def plan(probe: Probe, size: tuple[int, int], patch: int) -> IncrementalPlan:
    """Whether incremental occlusion runs on this model for (H, W) images and
    this patch side, and whether it pays off (estimated speed-up >= MIN_SPEEDUP)."""
    size = (int(size[0]), int(size[1]))

    def build():
        try:
            nodes, out = _classify(probe, size)
        except NotIncremental as exc:
            return IncrementalPlan("batched", f"incremental engine unavailable: {exc}")
        plain, incr, macs, first_full = _estimate(nodes, size, int(patch))
        speedup = plain / incr
        if macs < MIN_WORK:
            return IncrementalPlan(
                "batched",
                f"the model is small ({macs / 1e6:.0f} M multiply-adds per image): the "
                "incremental engine's fixed costs outweigh its saving",
                speedup,
                first_full,
            )
        if speedup < MIN_SPEEDUP:
            return IncrementalPlan(
                "batched",
                f"estimated incremental speed-up {speedup:.2f}x is below {MIN_SPEEDUP}x "
                "(the patch reaches most of the model)",
                speedup,
                first_full,
            )
        return IncrementalPlan(
            "incremental",
            f"every node can be replayed; estimated {speedup:.2f}x faster",
            speedup,
            first_full,
        )

    return probe.cached("incremental-plan", (size, int(patch)), build, versioned=False)


# -------------------------------------------------------------------- engine


def _as_array(x: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float32)


def _apply(node: _Node, args: list) -> Any:
    """Run a node as the model does, on whole (or window) inputs, arrays or symbolic."""
    obj = node.obj
    if node.kind in MERGE_LAYERS or node.kind in LIST_OPS:
        return obj(list(args))
    if isinstance(obj, keras.layers.Layer):
        if len(args) != 1:
            raise NotIncremental(f"node {node.path!r} ({node.kind}) takes several inputs")
        return obj(args[0])
    return obj(*args)


def _call(node: _Node, args: list[np.ndarray]) -> np.ndarray:
    return _as_array(_apply(node, args))


def _window_fn(node: _Node, count: tuple[np.ndarray, np.ndarray] | None) -> Callable:
    """f(windows (M, wh, ww, C), by, bx) -> (M, nh, nw, C') for a sliding-window node
    whose windows already hold the padding ('valid' from here)."""
    layer, kind = node.obj, node.kind
    ops = keras.ops

    def finish(y):
        if getattr(layer, "use_bias", False):
            y = y + layer.bias
        act = getattr(layer, "activation", None)
        return _as_array(act(y) if act is not None else y)

    conv_ops: dict[str, Callable] = {
        "Conv2D": lambda x: ops.conv(
            x, layer.kernel, layer.strides, "valid", "channels_last", layer.dilation_rate
        ),
        "DepthwiseConv2D": lambda x: ops.depthwise_conv(
            x, layer.kernel, layer.strides, "valid", "channels_last", layer.dilation_rate
        ),
        "SeparableConv2D": lambda x: ops.separable_conv(
            x,
            layer.depthwise_kernel,
            layer.pointwise_kernel,
            layer.strides,
            "valid",
            "channels_last",
            layer.dilation_rate,
        ),
    }
    if kind in conv_ops:
        op = conv_ops[kind]
        return lambda x, by, bx: finish(op(x))
    if kind == "MaxPooling2D":
        return lambda x, by, bx: _as_array(
            ops.max_pool(x, layer.pool_size, layer.strides, "valid", "channels_last")
        )
    if kind == "AveragePooling2D":
        k = float(np.prod(_pair(layer.pool_size)))

        def average(x, by, bx):
            y = ops.average_pool(x, layer.pool_size, layer.strides, "valid", "channels_last")
            y = _as_array(y)
            if count is None:
                return y
            # 'same' averages over the real inputs only: sum over the window / their count.
            cy = count[0][by[:, None] + np.arange(y.shape[1])]
            cx = count[1][bx[:, None] + np.arange(y.shape[2])]
            return y * (k / (cy[:, :, None, None] * cx[:, None, :, None]))

        return average
    return lambda x, by, bx: x  # ZeroPadding2D, Cropping2D: the window is the answer


def _linear(layer: Any) -> bool:
    act = getattr(layer, "activation", None)
    return act is None or getattr(act, "__name__", "") == "linear"


def _folded(conv: Any, kind: str, norm: Any) -> tuple[np.ndarray, np.ndarray]:
    """A convolution's kernel and bias with the inference batch norm after it
    folded in: BN(conv(x) + c) = conv(x, kernel * a) + (c * a + b), with
    a = gamma / sqrt(variance + epsilon) and b = beta - mean * a per channel.
    New arrays from the layers' current variables; the layers are not touched."""

    def arr(v):
        return np.asarray(keras.ops.convert_to_numpy(v), np.float64)

    a = 1.0 / np.sqrt(arr(norm.moving_variance) + norm.epsilon)
    if norm.scale:
        a = a * arr(norm.gamma)
    b = -arr(norm.moving_mean) * a + (arr(norm.beta) if norm.center else 0.0)
    kernel = arr(conv.kernel)
    kernel = kernel * (a.reshape(kernel.shape[2:]) if kind == "DepthwiseConv2D" else a)
    bias = b + (arr(conv.bias) * a if conv.use_bias else 0.0)
    return kernel.astype(np.float32), bias.astype(np.float32)


@dataclass
class _State:
    region: _Region
    vals: np.ndarray | None  # (M, nh, nw, C) box, (M, ...) whole, None: as the base


class IncrementalModel:
    """Class probabilities of images that differ from one base image in a window.

    Args:
        probe: the model's Probe (its ``preprocess`` is applied as usual).
        image: the unoccluded raw image (H, W, C).
        patch: the patch side the callers will use (for the self-check and the plan).
        check: verify the engine on the base image first (see the module doc).

    Raises:
        NotIncremental: the model has a node the engine cannot replay exactly.
    """

    def __init__(self, probe: Probe, image: np.ndarray, patch: int = 16, check: bool = True):
        raw = probe.check_images(image)
        if len(raw) != 1:
            raise ValueError(f"IncrementalModel takes one base image, got {len(raw)}")
        self.probe = probe
        self.size = raw.shape[1:3]
        self.plan = plan(probe, self.size, patch)
        self.nodes, self.out = _classify(probe, self.size)
        self.base_input = probe.model_inputs(raw)[0]
        paths = [n.path for n in self.nodes]
        outs = probe.run(probe.submodel(paths), self.base_input[None], batch_size=1)
        self.base = [o[0].astype(np.float32) for o in outs]
        for node, base in zip(self.nodes, self.base):
            if node.hw is not None and base.shape[:2] != tuple(node.hw):
                raise NotIncremental(
                    f"node {node.path!r} has shape {base.shape}, expected {node.hw} x C"
                )
        self._padded: dict[tuple, np.ndarray] = {}
        self._counts = {
            i: self._same_counts(n)
            for i, n in enumerate(self.nodes)
            if n.kind == "AveragePooling2D" and n.mode == "window"
        }
        self._fns = {
            i: _window_fn(n, self._counts.get(i))
            for i, n in enumerate(self.nodes)
            if n.mode == "window"
        }
        self._tail_starts = self._starts(int(patch))
        # A linear convolution whose only reader is a batch norm runs as one
        # convolution with the norm folded in (one pass over its output less).
        self._folds: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        for i, n in enumerate(self.nodes):
            if n.mode == "window" and n.kind in ("Conv2D", "DepthwiseConv2D") and i != self.out:
                j = n.consumers[0] if len(n.consumers) == 1 else None
                if j is not None and self.nodes[j].kind == "BatchNormalization":
                    if self.nodes[j].mode == "pointwise" and _linear(n.obj):
                        self._folds[i] = (j, *_folded(n.obj, n.kind, self.nodes[j].obj))
        if check:
            self._check(int(patch))

    # ------------------------------------------------------------- public

    def bytes_per_image(self, patch: int = 16) -> int:
        """Rough peak bytes one patched image takes while a batch runs: the boxes
        alive at once (a box is dropped after its last consumer), each with an
        input window of about its size; at least what the whole-map tail takes."""
        h, w = self.size
        y, x = (h - patch) // 2, (w - patch) // 2
        inp = _Region(*(np.array([v]) for v in (y, y + patch, x, x + patch)))
        regions: dict[int, _Region] = {-1: inp.boxed(self.size)}
        remaining = {i: len(n.consumers) for i, n in enumerate(self.nodes)}
        live: dict[int, int] = {}
        peak = whole = 0
        for i, node in enumerate(self.nodes):
            r = _propagate(node, [regions[q] for q in node.parents], 1)
            regions[i] = r
            base = self.base[i]
            if r.clean:
                continue
            if r.covers(node.hw):
                live[i] = 4 * base.size
            else:
                live[i] = 4 * r.nh * r.nw * base.shape[-1]
            peak = max(peak, sum(live.values()) + live[i])
            if r.covers(node.hw):
                whole += 4 * base.size
            for q in node.parents:
                if q >= 0:
                    remaining[q] -= 1
                    if remaining[q] == 0:
                        live.pop(q, None)
        # What runs whole keeps every output like a plain pass (as Probe.batch_size counts).
        return int(max(peak, whole))

    def outputs(self, images: np.ndarray) -> np.ndarray:
        """The model's output (M, K) float32 for raw images (M, H, W, C) that differ
        from the base image anywhere (a small window pays off)."""
        raw = self.probe.check_images(images)
        x = self.probe.model_inputs(raw)
        changed = np.any(x != self.base_input[None], axis=3)  # (M, H, W)
        rows, cols = changed.any(axis=2), changed.any(axis=1)
        h, w = self.size
        y0 = np.argmax(rows, axis=1)
        y1 = h - np.argmax(rows[:, ::-1], axis=1)
        x0 = np.argmax(cols, axis=1)
        x1 = w - np.argmax(cols[:, ::-1], axis=1)
        none = ~rows.any(axis=1)
        region = _Region(*(np.where(none, 0, v).astype(np.int64) for v in (y0, y1, x0, x1)))
        return self._run(x, region.boxed(self.size))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (M, K) float32 of raw images (M, H, W, C), as
        :meth:`cnnwidgets.Probe.predict` gives them."""
        output = self.outputs(images)
        head = self.probe.head
        # The scores the probe's probabilities read: the logit of a one-unit head
        # as [-z, z]; otherwise the output itself (unused for softmax / sigmoid).
        scores = np.concatenate([-output, output], axis=1) if head.kind == "binary" else output
        return self.probe.probabilities(scores, output)

    # ------------------------------------------------------------ running

    def _run(self, x: np.ndarray, region: _Region, check: bool = False) -> np.ndarray:
        m = len(x)
        regions = {-1: region}
        for i, node in enumerate(self.nodes):
            regions[i] = _propagate(node, [regions[q] for q in node.parents], m)
        # From a node after which every node runs whole on this batch, one
        # compiled model finishes the work: the one of a central patch, or else
        # the one of every patch position (two compiled models at most).
        start = self._whole_from([regions[i] for i in range(len(self.nodes))])
        start = next((t for t in self._tail_starts if t >= start), len(self.nodes))
        states: dict[int, _State] = {-1: self._input_state(x, region)}
        remaining = {i: len(n.consumers) for i, n in enumerate(self.nodes)}
        folded: set[int] = set()
        for i, node in enumerate(self.nodes[:start]):
            if i in folded:
                continue  # computed with the convolution before it
            parents = [states[p] for p in node.parents]
            fold = self._folds.get(i)
            if fold is not None and fold[0] < start:
                j = fold[0]
                states[j] = self._compute_folded(i, node, parents[0], regions[j], m)
                folded.add(j)
                if check:
                    self._compare(j, states[j])
            else:
                states[i] = self._compute(i, node, parents, regions[i], m)
                if check:
                    self._compare(i, states[i])
            for p in node.parents:
                if p >= 0:
                    remaining[p] -= 1
                    if remaining[p] == 0 and p != self.out:
                        del states[p]
        if start < len(self.nodes):
            frontier, tail = self._tail(start)
            if all(states[q].vals is None for q in frontier):
                return np.repeat(self.base[self.out][None], m, axis=0)
            whole = [self._whole(q, states[q], m) for q in frontier]
            with quiet_retracing():
                out = tail.predict_on_batch(whole)
            final = _State(_full_region(m, None), _as_array(out))
            if check:
                self._compare(self.out, final, whole=True)
            return final.vals
        final = states[self.out]
        if final.vals is None:
            return np.repeat(self.base[self.out][None], m, axis=0)
        return final.vals

    def _whole_from(self, regions: Sequence[_Region]) -> int:
        """The first node from which every node runs whole (or unchanged)."""
        start = len(self.nodes)
        while start > 0 and (
            regions[start - 1].clean or regions[start - 1].covers(self.nodes[start - 1].hw)
        ):
            start -= 1
        return start

    def _starts(self, patch: int) -> list[int]:
        """Where the compiled tail starts for a central patch and for every position."""
        h, w = self.size
        patch = max(1, min(patch, h, w))
        n = max(h, w) - patch + 1
        t = np.arange(n)
        ys = np.r_[(h - patch) // 2, np.minimum(t, h - patch)]
        xs = np.r_[(w - patch) // 2, np.minimum(t, w - patch)]
        starts = []
        for sel in (slice(0, 1), slice(1, None)):
            regions = {-1: _Region(ys[sel], ys[sel] + patch, xs[sel], xs[sel] + patch)}
            regions[-1].boxed(self.size)
            k = len(ys[sel])
            for i, node in enumerate(self.nodes):
                regions[i] = _propagate(node, [regions[q] for q in node.parents], k)
            # Per position, not per batch: a node is whole when each position's change covers it.
            per = []
            for i, node in enumerate(self.nodes):
                r = regions[i]
                if node.hw is None or r.clean:
                    per.append(True)
                    continue
                full = ((r.y1 - r.y0) == node.hw[0]) & ((r.x1 - r.x0) == node.hw[1])
                per.append(bool((full | (r.y1 <= r.y0)).all()))
            start = len(self.nodes)
            while start > 0 and per[start - 1]:
                start -= 1
            if len(self.nodes) - start >= 2:
                starts.append(start)
        return sorted(set(starts))

    def _tail(self, start: int) -> tuple[list[int], keras.Model]:
        """The nodes from ``start`` on as one compiled model of their inputs from
        before ``start`` (the frontier); cached on the probe per start node."""
        frontier = sorted({p for node in self.nodes[start:] for p in node.parents if p < start})

        def build() -> keras.Model:
            inputs = [
                keras.Input(shape=self._base_of(q).shape, name=f"cw_frontier_{k}")
                for k, q in enumerate(frontier)
            ]
            sym: dict[int, Any] = dict(zip(frontier, inputs))
            for i in range(start, len(self.nodes)):
                node = self.nodes[i]
                sym[i] = _apply(node, [sym[p] for p in node.parents])
            return keras.Model(inputs, sym[self.out], name="cw_incremental_tail")

        key = (tuple(self.size), start)
        return frontier, self.probe.cached("incremental-tail", key, build, versioned=False)

    def _input_state(self, x: np.ndarray, r: _Region) -> _State:
        if r.clean:
            return _State(r, None)
        vals = np.empty((len(x), r.nh, r.nw, x.shape[3]), np.float32)
        for k, (by, bx) in enumerate(zip(r.by.tolist(), r.bx.tolist())):
            vals[k] = x[k, by : by + r.nh, bx : bx + r.nw]
        return _State(r, vals)

    def _compute(self, i: int, node: _Node, parents: list[_State], r: _Region, m: int) -> _State:
        if r.clean:
            return _State(r, None)
        if node.mode == "pointwise":
            return _State(r, _call(node, [parents[0].vals]))
        if r.covers(node.hw):
            whole = [self._whole(q, s, m) for q, s in zip(node.parents, parents)]
            return _State(r, _call(node, whole))
        if node.mode == "merge":
            ins = [
                s.vals if _same_box(s.region, r) and s.vals is not None
                else self._gather(q, s, r.by, r.bx, r.nh, r.nw, 0.0, (0, 0, 0, 0))
                for q, s in zip(node.parents, parents)
            ]
            return _State(r, _call(node, ins))
        return _State(r, self._fns[i](self._windows(node, parents[0], r), r.by, r.bx))

    def _windows(self, node: _Node, parent: _State, r: _Region) -> np.ndarray:
        """(M, wh, ww, C) the parent's values a sliding-window node reads for its box."""
        ay, ax = node.axes
        wy, wh = ay.window(r.by, r.nh)
        wx, ww = ax.window(r.bx, r.nw)
        pad_value = -np.inf if node.kind == "MaxPooling2D" else 0.0
        return self._gather(node.parents[0], parent, wy, wx, wh, ww, pad_value, ay.pads + ax.pads)

    def _compute_folded(self, i: int, node: _Node, parent: _State, r: _Region, m: int) -> _State:
        """The batch norm after convolution i, computed as one folded convolution."""
        if r.clean:
            return _State(r, None)
        _, kernel, bias = self._folds[i]
        layer = node.obj
        if r.covers(node.hw):
            x, padding = self._whole(node.parents[0], parent, m), layer.padding
        else:
            x, padding = self._windows(node, parent, r), "valid"
        op = keras.ops.depthwise_conv if node.kind == "DepthwiseConv2D" else keras.ops.conv
        y = op(x, kernel, layer.strides, padding, "channels_last", layer.dilation_rate)
        return _State(r, _as_array(y + bias))

    def _base_of(self, q: int) -> np.ndarray:
        return self.base_input if q < 0 else self.base[q]

    def _whole(self, q: int, s: _State, m: int) -> np.ndarray:
        """(M, ...) the parent's full output for every image."""
        base = self._base_of(q)
        if s.vals is not None and (base.ndim != 3 or s.vals.shape[1:] == base.shape):
            return s.vals
        out = np.repeat(base[None], m, axis=0)
        if s.vals is not None:
            r = s.region
            for k, (by, bx) in enumerate(zip(r.by.tolist(), r.bx.tolist())):
                out[k, by : by + r.nh, bx : bx + r.nw] = s.vals[k]
        return out

    def _gather(self, q, s: _State, wy, wx, wh: int, ww: int, pad_value: float, pads):
        """(M, wh, ww, C) windows of the parent's output at rows wy.., columns wx..
        (map coordinates; outside the map: ``pad_value``)."""
        base = self._base_of(q)
        key = (q, pad_value, pads)
        padded = self._padded.get(key)
        if padded is None:
            pb_y, pa_y, pb_x, pa_x = pads
            padded = np.pad(base, ((pb_y, pa_y), (pb_x, pa_x), (0, 0)),
                            constant_values=pad_value)
            self._padded[key] = padded
        pb_y, pb_x = pads[0], pads[2]
        out = np.empty((len(wy), wh, ww, base.shape[2]), np.float32)
        r = s.region
        box = s.vals is not None
        rows = zip(wy.tolist(), wx.tolist(), *(
            (r.by.tolist(), r.bx.tolist()) if box else ([0] * len(wy), [0] * len(wy))
        ))
        for k, (y, x, by, bx) in enumerate(rows):
            out[k] = padded[y + pb_y : y + pb_y + wh, x + pb_x : x + pb_x + ww]
            if box:
                r0, r1 = max(by, y), min(by + r.nh, y + wh)
                c0, c1 = max(bx, x), min(bx + r.nw, x + ww)
                if r0 < r1 and c0 < c1:
                    out[k, r0 - y : r1 - y, c0 - x : c1 - x] = s.vals[
                        k, r0 - by : r1 - by, c0 - bx : c1 - bx
                    ]
        return out

    def _same_counts(self, node: _Node) -> tuple[np.ndarray, np.ndarray] | None:
        """Per output row / column, how many real inputs a 'same' average reads."""
        if all(a.pads == (0, 0) for a in node.axes):
            return None
        counts = []
        for a in node.axes:
            start = np.arange(a.n_out) * a.s - a.before
            lo, hi = np.maximum(start, 0), np.minimum(start + a.k, a.n_in)
            counts.append((hi - lo).astype(np.float32))
        return counts[0], counts[1]

    # ------------------------------------------------------------- checks

    def _check(self, patch: int) -> None:
        """Replay every node whole on the cached activations, then recompute the
        windows of three patch positions on the unoccluded image: all must
        give the cached values back."""
        for i, node in enumerate(self.nodes):
            args = [self._base_of(q)[None] for q in node.parents]
            try:
                got = _call(node, args)
            except NotIncremental:
                raise
            except Exception as exc:
                raise NotIncremental(
                    f"node {node.path!r} ({node.kind}) cannot be replayed from its inputs "
                    f"({type(exc).__name__}: {str(exc)[:200]})"
                ) from exc
            self._compare(i, _State(_full_region(1, node.hw), got), whole=True)
        h, w = self.size
        p = min(patch, h, w)
        ys = np.array([0, (h - p) // 2, h - p])
        xs = np.array([0, (w - p) // 2, w - p])
        region = _Region(ys, ys + p, xs, xs + p).boxed(self.size)
        self._run(np.repeat(self.base_input[None], 3, axis=0), region, check=True)

    def _compare(self, i: int, state: _State, whole: bool = False) -> None:
        if state.vals is None:
            return
        base = self.base[i]
        r = state.region
        if base.ndim == 3 and not whole and state.vals.shape[1:3] != base.shape[:2]:
            want = np.stack([
                base[by : by + r.nh, bx : bx + r.nw]
                for by, bx in zip(r.by.tolist(), r.bx.tolist())
            ])
        else:
            want = np.broadcast_to(base[None], (len(state.vals),) + base.shape)
        node = self.nodes[i]
        if state.vals.shape != want.shape:
            raise NotIncremental(
                f"node {node.path!r} ({node.kind}) replayed to shape {state.vals.shape[1:]}, "
                f"the model gives {want.shape[1:]}"
            )
        scale = float(np.abs(base).max()) + 1e-6
        err = float(np.abs(state.vals - want).max())
        if not err <= 1e-3 * scale:
            how = "whole" if whole else "on windows"
            raise NotIncremental(
                f"node {node.path!r} ({node.kind}) replayed {how} differs from the model by "
                f"{err:.3g} (values up to {scale:.3g})"
            )
