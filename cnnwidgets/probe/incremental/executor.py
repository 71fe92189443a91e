"""The incremental engine itself: compute only what a patch can reach.

:class:`IncrementalModel` computes every node of the model once for the
unoccluded image; for a batch of patched images it then recomputes each node
only inside its changed window (:mod:`.propagation`: one window size per node
and batch, one offset per image), reading the unchanged surroundings from the
cached activations, until the window covers the whole map or the node has no
window rule; from there that branch runs in full, with the model's own layer
objects, in one compiled model of the frontier (the tail).

Before use the engine checks itself on the unoccluded image (see the package
doc); any difference raises :class:`NotIncremental`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import keras
import numpy as np

from cnnwidgets.probe import Probe, geometry, kinds, quiet_retracing
from cnnwidgets.probe.incremental.cost import peak_bytes
from cnnwidgets.probe.incremental.propagation import (
    Node,
    NotIncremental,
    Region,
    classify,
    full_region,
    patch_region,
    same_box,
    walk,
)

__all__ = ["IncrementalModel"]


def _as_array(x: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float32)


def _apply(node: Node, args: list) -> Any:
    """Run a node as the model does, on whole (or window) inputs, arrays or symbolic."""
    obj = node.obj
    if node.kind in kinds.MERGE_LAYERS or node.kind in kinds.LIST_OPS:
        return obj(list(args))
    if isinstance(obj, keras.layers.Layer):
        if len(args) != 1:
            raise NotIncremental(f"node {node.path!r} ({node.kind}) takes several inputs")
        return obj(args[0])
    return obj(*args)


def _call(node: Node, args: list[np.ndarray]) -> np.ndarray:
    return _as_array(_apply(node, args))


def _window_fn(node: Node, count: tuple[np.ndarray, np.ndarray] | None) -> Callable:
    """f(windows (M, wh, ww, C), by, bx) -> (M, nh, nw, C') for a sliding-window node
    whose windows already hold the padding ('valid' from here)."""
    layer, rule = node.obj, kinds.WINDOW_RULES[node.kind]
    ops = keras.ops

    def finish(y):
        if getattr(layer, "use_bias", False):
            y = y + layer.bias
        act = getattr(layer, "activation", None)
        return _as_array(act(y) if act is not None else y)

    conv_ops: dict[str, Callable] = {
        "conv": lambda x: ops.conv(
            x, layer.kernel, layer.strides, "valid", "channels_last", layer.dilation_rate
        ),
        "depthwise": lambda x: ops.depthwise_conv(
            x, layer.kernel, layer.strides, "valid", "channels_last", layer.dilation_rate
        ),
        "separable": lambda x: ops.separable_conv(
            x,
            layer.depthwise_kernel,
            layer.pointwise_kernel,
            layer.strides,
            "valid",
            "channels_last",
            layer.dilation_rate,
        ),
    }
    if rule in conv_ops:
        op = conv_ops[rule]
        return lambda x, by, bx: finish(op(x))
    if rule == "max_pool":
        return lambda x, by, bx: _as_array(
            ops.max_pool(x, layer.pool_size, layer.strides, "valid", "channels_last")
        )
    if rule == "average_pool":
        k = float(np.prod(geometry.pair(layer.pool_size)))

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
    return lambda x, by, bx: x  # a border: the window is the answer


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
    # A depthwise kernel (kh, kw, C, m) scales per output channel c * m + j.
    depthwise = kinds.WINDOW_RULES.get(kind) == "depthwise"
    kernel = kernel * (a.reshape(kernel.shape[2:]) if depthwise else a)
    bias = b + (arr(conv.bias) * a if conv.use_bias else 0.0)
    return kernel.astype(np.float32), bias.astype(np.float32)


def _same_counts(node: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """Per output row / column, how many real inputs a 'same' average reads
    ((H',) and (W',) float32); None when no window reaches the padding."""
    if all(a.pads == (0, 0) for a in node.axes):
        return None
    return node.axes[0].real_counts(), node.axes[1].real_counts()


@dataclass
class _State:
    region: Region
    vals: np.ndarray | None  # (M, nh, nw, C) box, (M, ...) whole, None: as the base


class IncrementalModel:
    """Class probabilities of images that differ from one base image in a window.

    Args:
        probe: the model's Probe (its ``preprocess`` is applied as usual).
        image: the unoccluded raw image (H, W, C).
        patch: the patch side the callers will use (for the self-check and the
            compiled tails).
        check: verify the engine on the base image first (see the module doc).
        output: the catalog path of the node whose values :meth:`outputs`
            gives (default: the class head's node); nodes after it are not
            computed. Targets stop at the output node's input
            (:func:`cnnwidgets.probe.incremental.heads.target_head`).

    Raises:
        NotIncremental: the model has a node the engine cannot replay exactly.
    """

    def __init__(
        self,
        probe: Probe,
        image: np.ndarray,
        patch: int = 16,
        check: bool = True,
        output: str | None = None,
    ):
        raw = probe.check_images(image)
        if len(raw) != 1:
            raise ValueError(f"IncrementalModel takes one base image, got {len(raw)}")
        self.probe = probe
        self.size = raw.shape[1:3]
        self.nodes, self.out = classify(probe, self.size)
        if output is not None:
            # Stop at this node: what comes after it is not computed.
            paths = [n.path for n in self.nodes]
            if output not in paths:
                raise NotIncremental(f"node {output!r} is not one the engine computes")
            self.out = paths.index(output)
            self.nodes = [
                replace(n, consumers=[c for c in n.consumers if c <= self.out])
                for n in self.nodes[: self.out + 1]
            ]
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
            i: _same_counts(n)
            for i, n in enumerate(self.nodes)
            if n.mode == "window" and kinds.WINDOW_RULES[n.kind] == "average_pool"
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
            conv = n.mode == "window" and kinds.WINDOW_RULES[n.kind] in ("conv", "depthwise")
            if conv and i != self.out:
                j = n.consumers[0] if len(n.consumers) == 1 else None
                if j is not None and self.nodes[j].kind in kinds.BATCH_NORM:
                    if self.nodes[j].mode == "pointwise" and _linear(n.obj):
                        self._folds[i] = (j, *_folded(n.obj, n.kind, self.nodes[j].obj))
        if check:
            self._check(int(patch))

    # ------------------------------------------------------------- public

    def bytes_per_image(self, patch: int = 16) -> int:
        """Rough peak bytes one patched image takes while a batch runs
        (:func:`cnnwidgets.probe.incremental.cost.peak_bytes`)."""
        return peak_bytes(self.nodes, self.base, self.size, patch)

    def outputs(self, images: np.ndarray) -> np.ndarray:
        """The output node's values (M, ...) float32 (the model's output (M, K), or
        the ``output`` node's) for raw images (M, H, W, C) that differ from the
        base image anywhere (a small window pays off)."""
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
        region = Region(*(np.where(none, 0, v).astype(np.int64) for v in (y0, y1, x0, x1)))
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

    def _run(self, x: np.ndarray, region: Region, check: bool = False) -> np.ndarray:
        m = len(x)
        regions = walk(self.nodes, region)
        # From a node after which every node runs whole on this batch, one
        # compiled model finishes the work: the one of a central patch, or else
        # the one of every patch position (two compiled models at most).
        start = self._whole_from(regions)
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
            final = _State(full_region(m, None), _as_array(out))
            if check:
                self._compare(self.out, final, whole=True)
            return final.vals
        final = states[self.out]
        if final.vals is None:
            return np.repeat(self.base[self.out][None], m, axis=0)
        # A map computed in a window (an output node that is a convolution, or the
        # cut of a target head) goes out whole: the window pasted into the base.
        return self._whole(self.out, final, m)

    def _whole_from(self, regions: Sequence[Region]) -> int:
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
            regions = walk(self.nodes, patch_region(ys[sel], xs[sel], patch, self.size))
            # Per position, not per batch: a node is whole when each position's change covers it.
            per = []
            for node, r in zip(self.nodes, regions):
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

        key = (tuple(self.size), start, self.nodes[self.out].path)
        return frontier, self.probe.cached("incremental-tail", key, build, versioned=False)

    def _input_state(self, x: np.ndarray, r: Region) -> _State:
        if r.clean:
            return _State(r, None)
        vals = np.empty((len(x), r.nh, r.nw, x.shape[3]), np.float32)
        for k, (by, bx) in enumerate(zip(r.by.tolist(), r.bx.tolist())):
            vals[k] = x[k, by : by + r.nh, bx : bx + r.nw]
        return _State(r, vals)

    def _compute(self, i: int, node: Node, parents: list[_State], r: Region, m: int) -> _State:
        if r.clean:
            return _State(r, None)
        if node.mode == "pointwise":
            return _State(r, _call(node, [parents[0].vals]))
        if r.covers(node.hw):
            whole = [self._whole(q, s, m) for q, s in zip(node.parents, parents)]
            return _State(r, _call(node, whole))
        if node.mode == "merge":
            ins = [
                s.vals if same_box(s.region, r) and s.vals is not None
                else self._gather(q, s, r.by, r.bx, r.nh, r.nw, 0.0, (0, 0, 0, 0))
                for q, s in zip(node.parents, parents)
            ]
            return _State(r, _call(node, ins))
        return _State(r, self._fns[i](self._windows(node, parents[0], r), r.by, r.bx))

    def _windows(self, node: Node, parent: _State, r: Region) -> np.ndarray:
        """(M, wh, ww, C) the parent's values a sliding-window node reads for its box."""
        ay, ax = node.axes
        wy, wh = ay.window(r.by, r.nh)
        wx, ww = ax.window(r.bx, r.nw)
        # Max pooling never picks its padding; everything else reads zeros there.
        pad_value = -np.inf if kinds.WINDOW_RULES[node.kind] == "max_pool" else 0.0
        return self._gather(node.parents[0], parent, wy, wx, wh, ww, pad_value, ay.pads + ax.pads)

    def _compute_folded(self, i: int, node: Node, parent: _State, r: Region, m: int) -> _State:
        """The batch norm after convolution i, computed as one folded convolution."""
        if r.clean:
            return _State(r, None)
        _, kernel, bias = self._folds[i]
        layer = node.obj
        if r.covers(node.hw):
            x, padding = self._whole(node.parents[0], parent, m), layer.padding
        else:
            x, padding = self._windows(node, parent, r), "valid"
        depthwise = kinds.WINDOW_RULES[node.kind] == "depthwise"
        op = keras.ops.depthwise_conv if depthwise else keras.ops.conv
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
            self._compare(i, _State(full_region(1, node.hw), got), whole=True)
        h, w = self.size
        p = min(patch, h, w)
        ys = np.array([0, (h - p) // 2, h - p])
        xs = np.array([0, (w - p) // 2, w - p])
        region = patch_region(ys, xs, p, self.size)
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
