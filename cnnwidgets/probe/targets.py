"""Targets: which score of a model's outputs an explanation explains.

A target maps the model's outputs to one score per image, (N,) float32. It
is built once as a symbolic tensor on the Probe's flat graph with
``keras.ops``, so the same score runs inside the compiled gradient functions
(Grad-CAM, saliency) and the perturbation passes (occlusion). Nothing is done
to the user's model: logits are new tensors on the traced graph.

    import cnnwidgets as cw
    from cnnwidgets.probe.targets import Class, Labels, Output, Region, Regression, region_mask

    cw.gradcam(model, images, target=Class("cat") - Class("dog"))       # contrastive
    cw.saliency(model, images, target=Output("value", Regression(sign=-1)))
    cw.occlusion(seg_model, images, target=Region(3, region_mask(pred, y, x)))
    cw.gradcam(model, images, target=lambda outs: keras.ops.sum(outs[0], axis=-1))

Kinds:

- :class:`Class`: a class's logit as the Probe finds it (a one-unit sigmoid
  head is two classes [-z, z]); ``classes=`` is the shorthand for it.
- :class:`Labels`: one label of a multi-label (sigmoid) head, its own logit.
- :class:`Regression`: a predicted value, raised (``sign=+1``) or lowered (-1).
- :class:`Region`: a segmentation output's channel, averaged over a mask or a box.
- :class:`Output`: one output of a multi-output model, then another target.
- :class:`Box`: a detector's class score for one box before non-maximum
  suppression (the anchors that match the box, averaged).
- any callable ``outputs -> (N,)`` written with keras.ops (:class:`Function`).
- sums and scalar multiples: ``Class(a) - Class(b)``, ``0.5 * t``, ``sum(ts)``.

Every target has a hashable ``key`` (caches and compiled functions are keyed
by it), ``describe()`` (a short caption) and ``check(probe)``, which raises a
ValueError saying what is wrong before any model pass.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol

import keras
import numpy as np

from cnnwidgets.cache import array_key


class Probe(Protocol):
    """What a target reads of a :class:`cnnwidgets.Probe` (which imports this
    module, so the type is described here rather than imported)."""

    model: keras.Model
    head: Any
    input_shape: tuple
    output_names: list[str]

    def output_index(self, which: Any) -> int: ...
    def output_shape(self, index: int) -> tuple: ...
    def output_tensor(self, index: int) -> Any: ...
    def output_head(self, index: int) -> tuple[Any, Any]: ...
    def output_logits(self, index: int) -> tuple[Any, str | None]: ...
    def class_index(self, cls: Any) -> int: ...

__all__ = [
    "BOX_MATCHES",
    "Box",
    "Class",
    "Function",
    "Labels",
    "Output",
    "Region",
    "Regression",
    "Sum",
    "Target",
    "as_target",
    "as_targets",
    "box_iou",
    "decode_center_xywh",
    "region_mask",
    "stable_key",
    "target_keys",
]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _default_output(probe: Probe, output: int | None, what: str) -> int:
    """The output a target reads: the one chosen by :class:`Output`, or the
    model's only output."""
    if output is not None:
        return output
    names = probe.output_names
    if len(names) == 1:
        return 0
    raise ValueError(
        f"{what} reads one output, but model {probe.model.name!r} has {len(names)} outputs "
        f"{names}; say which: cw.targets.Output({names[0]!r}, {what})"
    )


def _output_label(probe: Probe, index: int) -> str:
    return f"output {probe.output_names[index]!r} (shape {probe.output_shape(index)})"


class Target:
    """Base class: one score per image, (N,) float32, from the model's outputs.

    Subclasses define ``key``, ``describe()``, ``_check_at(probe, output)``
    and ``_tensor_at(probe, output)``, where ``output`` is the index chosen
    by an enclosing :class:`Output` or None."""

    @property
    def key(self) -> Hashable:
        """A hashable identity: equal keys, equal scores."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short text for captions ('cat', 'cat − dog', 'value')."""
        raise NotImplementedError

    def check(self, probe: Probe) -> None:
        """Raise ValueError / TypeError if this target does not fit the probe's model.

        Reads static shapes and the traced graph only: no model pass."""
        self._check_at(probe, None)

    def tensor(self, probe: Probe) -> Any:
        """The score as a symbolic tensor (N,) on the probe's flat graph."""
        return self._tensor_at(probe, None)

    def _check_at(self, probe: Probe, output: int | None) -> None:
        raise NotImplementedError

    def _tensor_at(self, probe: Probe, output: int | None) -> Any:
        raise NotImplementedError

    # Composition: linear combinations of targets are targets.
    def __add__(self, other: Any) -> Target:
        if _is_real(other) and other == 0:  # sum() starts from 0
            return self
        return Sum(((1.0, self), (1.0, as_target(other))))

    def __radd__(self, other: Any) -> Target:
        if _is_real(other) and other == 0:
            return self
        return Sum(((1.0, as_target(other)), (1.0, self)))

    def __sub__(self, other: Any) -> Target:
        return Sum(((1.0, self), (-1.0, as_target(other))))

    def __rsub__(self, other: Any) -> Target:
        return Sum(((1.0, as_target(other)), (-1.0, self)))

    def __mul__(self, weight: Any) -> Target:
        if not _is_real(weight) or not np.isfinite(weight):
            raise TypeError(f"a target is scaled by a finite number, got {weight!r}")
        return Sum(((float(weight), self),))

    __rmul__ = __mul__

    def __truediv__(self, weight: Any) -> Target:
        if not _is_real(weight) or weight == 0 or not np.isfinite(weight):
            raise TypeError(f"a target is divided by a finite non-zero number, got {weight!r}")
        return self * (1.0 / float(weight))

    def __neg__(self) -> Target:
        return self * -1.0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class Class(Target):
    """A class's score on logits, as ``classes=`` reads it.

    Args:
        c: a class index (int) or a class name (single-output models whose
            Probe has class names). A one-unit sigmoid head is two classes:
            0 = -logit, 1 = logit.
    """

    def __init__(self, c: int | str):
        if not (_is_int(c) or isinstance(c, str)):
            raise TypeError(f"Class takes a class index (int) or name (str), got {c!r}")
        self.c = int(c) if _is_int(c) else c

    @property
    def key(self) -> Hashable:
        return ("class", self.c)

    def describe(self) -> str:
        return self.c if isinstance(self.c, str) else f"class {self.c}"

    def _index(self, probe: Probe, output: int | None) -> tuple[int, Any]:
        """(class index, (N, K) scores tensor) of the chosen output."""
        i = _default_output(probe, output, f"Class({self.c!r})")
        if len(probe.output_names) == 1:
            # The probe's own head: class names, binary heads, the 'none' message.
            return probe.class_index(self.c), probe.output_head(0)[1]
        head, scores = probe.output_head(i)
        if head.kind == "none":
            raise ValueError(
                f"{_output_label(probe, i)} is not a class vector (N, K); explain it with "
                "Regression() or Region(channel, mask)"
            )
        if isinstance(self.c, str):
            raise ValueError(
                f"class {self.c!r} given by name, but the classes of {_output_label(probe, i)} "
                "have no names; give its index"
            )
        if not 0 <= self.c < head.num_classes:
            raise ValueError(
                f"class {self.c} out of range; {_output_label(probe, i)} has "
                f"{head.num_classes} classes"
            )
        return self.c, scores

    def _check_at(self, probe: Probe, output: int | None) -> None:
        self._index(probe, output)

    def _tensor_at(self, probe: Probe, output: int | None) -> Any:
        idx, scores = self._index(probe, output)
        return scores[:, idx]


class Labels(Target):
    """One label of a multi-label (sigmoid) head: its own logit, before the
    sigmoid, with no softmax coupling to the other labels.

    Args:
        i: the label's index, or its name when the single-output model's
            Probe has class names.
    """

    def __init__(self, i: int | str):
        if not (_is_int(i) or isinstance(i, str)):
            raise TypeError(f"Labels takes a label index (int) or name (str), got {i!r}")
        self.i = int(i) if _is_int(i) else i

    @property
    def key(self) -> Hashable:
        return ("labels", self.i)

    def describe(self) -> str:
        return self.i if isinstance(self.i, str) else f"label {self.i}"

    def _resolve(self, probe: Probe, output: int | None) -> tuple[int, Any]:
        out = _default_output(probe, output, f"Labels({self.i!r})")
        shape = probe.output_shape(out)
        if len(shape) != 2 or shape[1] is None:
            raise ValueError(
                f"Labels reads one unit of an (N, L) output; {_output_label(probe, out)} is not "
                "one; for maps use Region(channel, mask)"
            )
        logits, act = probe.output_logits(out)
        if act == "softmax":
            raise ValueError(
                f"{_output_label(probe, out)} ends in a softmax, which couples its classes; "
                "Labels is for multi-label sigmoid heads: use Class(i)"
            )
        if act is None:
            raise ValueError(
                f"could not find the logits of {_output_label(probe, out)} (its activation is "
                "not a known Dense / Conv / Activation one); end the head in "
                "Dense(activation='sigmoid') or an Activation('sigmoid') layer"
            )
        if isinstance(self.i, str):
            if len(probe.output_names) != 1 or probe.head.kind != "sigmoid":
                raise ValueError(
                    f"label {self.i!r} given by name, but only a single-output sigmoid head "
                    "takes names; give the label's index"
                )
            return probe.class_index(self.i), logits
        if not 0 <= self.i < shape[1]:
            raise ValueError(
                f"label {self.i} out of range; {_output_label(probe, out)} has {shape[1]} units"
            )
        return self.i, logits

    def _check_at(self, probe: Probe, output: int | None) -> None:
        self._resolve(probe, output)

    def _tensor_at(self, probe: Probe, output: int | None) -> Any:
        idx, logits = self._resolve(probe, output)
        return logits[:, idx]


class Regression(Target):
    """A predicted value: raised (``sign=+1``) or lowered (``sign=-1``).

    Args:
        index: the unit of an (N, D) output (0 for an (N,) or (N, 1) output).
        sign: +1 explains what raises the value, -1 what lowers it.
    """

    def __init__(self, index: int = 0, sign: int = +1):
        if not _is_int(index):
            raise TypeError(f"Regression index must be an int, got {index!r}")
        if index < 0:
            raise ValueError(f"Regression index must be >= 0, got {index}")
        if not _is_real(sign) or sign not in (1, -1):
            raise ValueError(f"Regression sign must be +1 or -1, got {sign!r}")
        self.index = int(index)
        self.sign = int(sign)

    @property
    def key(self) -> Hashable:
        return ("regression", self.index, self.sign)

    def describe(self) -> str:
        text = "value" if self.index == 0 else f"value {self.index}"
        return text if self.sign > 0 else f"−{text}"

    def _check_at(self, probe: Probe, output: int | None) -> None:
        out = _default_output(probe, output, "Regression()")
        shape = probe.output_shape(out)
        if len(shape) == 1 and self.index == 0:
            return
        if len(shape) != 2 or shape[1] is None:
            raise ValueError(
                f"Regression reads one value per image from an (N,) or (N, D) output; "
                f"{_output_label(probe, out)} is not one; for maps use Region(channel, mask)"
            )
        if self.index >= shape[1]:
            raise ValueError(
                f"Regression index {self.index} out of range; {_output_label(probe, out)} has "
                f"{shape[1]} values"
            )

    def _tensor_at(self, probe: Probe, output: int | None) -> Any:
        out = _default_output(probe, output, "Regression()")
        y = probe.output_tensor(out)
        value = y if len(y.shape) == 1 else y[:, self.index]
        return value if self.sign > 0 else -value


class Region(Target):
    """A segmentation output's channel averaged over a region.

    The output is (N, H, W, K); the channel is read on logits when the
    output's softmax / sigmoid can be removed (a Conv / Dense with that
    activation, or an Activation layer), else as the value.

    Args:
        cls: the channel (class) index.
        where: a boolean mask (H, W) of the output's grid (non-zero = inside),
            or a box ``(y0, x0, y1, x1)`` of output pixels, ends excluded.
            See :func:`region_mask` for the region around a clicked pixel.

    Raises:
        ValueError: an empty mask or box (here); a channel, mask shape or box
            that does not fit the output (in ``check``).
    """

    def __init__(self, cls: int, where: Any):
        if not _is_int(cls) or cls < 0:
            raise TypeError(f"Region takes a channel index (int >= 0), got {cls!r}")
        self.cls = int(cls)
        self.mask: np.ndarray | None = None
        self.box: tuple[int, int, int, int] | None = None
        if isinstance(where, (tuple, list)) and len(where) == 4 and all(map(_is_int, where)):
            y0, x0, y1, x1 = (int(v) for v in where)
            if y0 < 0 or x0 < 0 or y1 <= y0 or x1 <= x0:
                raise ValueError(
                    f"box {tuple(where)} is empty or negative; give (y0, x0, y1, x1) with "
                    "0 <= y0 < y1 and 0 <= x0 < x1 (ends excluded)"
                )
            self.box = (y0, x0, y1, x1)
        else:
            mask = np.asarray(where)
            if mask.ndim != 2 or mask.dtype.kind not in "biuf":
                raise TypeError(
                    "Region takes a mask (H, W) of booleans or a box (y0, x0, y1, x1) of ints, "
                    f"got {type(where).__name__} {getattr(mask, 'shape', '')}"
                )
            mask = mask != 0
            if not mask.any():
                raise ValueError("the region mask is empty: no pixel is inside the region")
            self.mask = mask
            self.mask.flags.writeable = False

    @property
    def key(self) -> Hashable:
        where = ("box", self.box) if self.box is not None else ("mask", array_key(self.mask))
        return ("region", self.cls, where)

    def describe(self) -> str:
        if self.box is not None:
            return f"channel {self.cls} in box {self.box}"
        return f"channel {self.cls} in {int(self.mask.sum())} px"

    def _check_at(self, probe: Probe, output: int | None) -> None:
        out = _default_output(probe, output, f"Region({self.cls}, ...)")
        shape = probe.output_shape(out)
        if len(shape) != 4:
            raise ValueError(
                f"Region reads a segmentation map (N, H, W, K); {_output_label(probe, out)} is "
                "not one; for one value per image use Class, Labels or Regression"
            )
        h, w, k = shape[1:]
        if k is not None and self.cls >= k:
            raise ValueError(
                f"Region channel {self.cls} out of range; {_output_label(probe, out)} has "
                f"{k} channels"
            )
        if self.mask is not None and h is not None and w is not None:
            if self.mask.shape != (h, w):
                raise ValueError(
                    f"region mask has shape {self.mask.shape}, but {_output_label(probe, out)} "
                    f"is {h}x{w}; give a mask of the output's grid"
                )
        if self.box is not None and h is not None and w is not None:
            y0, x0, y1, x1 = self.box
            if y1 > h or x1 > w:
                raise ValueError(
                    f"box {self.box} reaches past {_output_label(probe, out)}, which is {h}x{w}"
                )

    def _tensor_at(self, probe: Probe, output: int | None) -> Any:
        out = _default_output(probe, output, f"Region({self.cls}, ...)")
        values, _ = probe.output_logits(out)  # the value itself if no activation came off
        channel = values[..., self.cls]  # (N, H, W)
        if self.box is not None:
            y0, x0, y1, x1 = self.box
            return keras.ops.mean(channel[:, y0:y1, x0:x1], axis=(1, 2))
        weights = (self.mask / self.mask.sum()).astype(np.float32)  # mean over the mask
        return keras.ops.sum(channel * weights, axis=(1, 2))


class Output(Target):
    """One output of a multi-output model, explained by another target.

    Args:
        which: the output's index or name (``model.output_names``, or a key of
            a dict output).
        inner: the target read on that output (a target or a function of a
            one-element list holding that output).
    """

    def __init__(self, which: int | str, inner: Any):
        if not (_is_int(which) or isinstance(which, str)):
            raise TypeError(f"Output takes an output index (int) or name (str), got {which!r}")
        self.which = int(which) if _is_int(which) else which
        self.inner = as_target(inner)

    @property
    def key(self) -> Hashable:
        return ("output", self.which, self.inner.key)

    def describe(self) -> str:
        return f"{self.which}: {self.inner.describe()}"

    def _check_at(self, probe: Probe, output: int | None) -> None:
        if output is not None:
            raise ValueError("Output(...) inside another Output(...): pick one output")
        self.inner._check_at(probe, probe.output_index(self.which))

    def _tensor_at(self, probe: Probe, output: int | None) -> Any:
        return self.inner._tensor_at(probe, probe.output_index(self.which))


#: Values of :class:`Box`'s ``match``.
BOX_MATCHES = ("anchors", "decoded")

#: The output names of keras_hub's detectors (RetinaNet): box deltas, class logits.
_HUB_OUTPUTS = ("bbox_regression", "cls_logits")


def box_iou(boxes: Any, box: Any) -> Any:
    """Intersection over union of boxes with one box, with ``keras.ops``.

    Args:
        boxes: (..., 4) float32 boxes (y0, x0, y1, x1), numpy or tensors.
        box: (4,) the box (y0, x0, y1, x1).

    Returns:
        (...) float32 IoU in [0, 1] (0 where both areas are empty).
    """
    ops = keras.ops
    boxes = ops.cast(boxes, "float32")
    b = ops.cast(ops.convert_to_tensor(np.asarray(box, np.float32)), "float32")
    h = ops.maximum(ops.minimum(boxes[..., 2], b[2]) - ops.maximum(boxes[..., 0], b[0]), 0.0)
    w = ops.maximum(ops.minimum(boxes[..., 3], b[3]) - ops.maximum(boxes[..., 1], b[1]), 0.0)
    inter = h * w
    area = ops.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * ops.maximum(
        boxes[..., 3] - boxes[..., 1], 0.0
    )
    union = area + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ops.maximum(union, 1e-12)


def decode_center_xywh(anchors: Any, deltas: Any) -> Any:
    """Boxes from anchors and per-anchor deltas, as keras_hub's RetinaNet decodes them.

    The deltas are (dx, dy, dw, dh) in the 'center_xywh' encoding: the box's
    centre is the anchor's centre moved by (dx, dy) anchor widths / heights,
    its size the anchor's times (exp(dw), exp(dh)); no variance scaling.

    Args:
        anchors: (A, 4) float32 anchor boxes (y0, x0, y1, x1) in input pixels.
        deltas: (N, A, 4) float32 (dx, dy, dw, dh), a tensor.

    Returns:
        (N, A, 4) float32 decoded boxes (y0, x0, y1, x1), written with ``keras.ops``.
    """
    ops = keras.ops
    a = np.asarray(anchors, np.float32)
    ah, aw = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    acy, acx = a[:, 0] + 0.5 * ah, a[:, 1] + 0.5 * aw
    cx = deltas[..., 0] * aw + acx
    cy = deltas[..., 1] * ah + acy
    w = ops.exp(deltas[..., 2]) * aw
    h = ops.exp(deltas[..., 3]) * ah
    return ops.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


class Box(Target):
    """A detector's score for one box before non-maximum suppression.

    A detector such as keras_hub's ``RetinaNetObjectDetector`` outputs, per
    anchor (A of them), class logits (N, A, C) and box deltas (N, A, 4); the
    boxes it reports come from those after decoding and NMS. This target is
    the mean logit of class ``cls`` over the anchors that match ``box``: an
    anchor matches when the IoU of its box with ``box`` is at least ``iou``.

    Which box of an anchor is compared (``match``):

    - ``"anchors"`` (default): the anchor's own box, as the detector's
      training assigns anchors to an object (RetinaNet: IoU >= 0.5). The
      matched set is known before any model pass (no match is a ValueError
      then) and is the same on every image and every occluded copy, so the
      score is a fixed average of logits: gradients are exact and an
      occlusion map shows how a patch changes the logits of the anchors
      responsible for that box.
    - ``"decoded"``: the box the model predicts from the anchor (anchor plus
      its deltas, ``decode``), on each image and each occluded copy: the
      anchors whose predictions NMS would merge into ``box``, as
      pytorch-grad-cam's box targets match. The match is held constant
      under differentiation (a step function of the deltas); an image where
      no decoded box matches scores 0, which can only be seen after a pass.

    Args:
        box: (y0, x0, y1, x1) in input pixels (rows, then columns; floats
            welcome), y1 > y0 and x1 > x0. keras_hub's ``"yxyx"`` format.
        cls: the class index, 0 <= cls < C.
        iou: the IoU threshold in (0, 1]; 0.5 by default (RetinaNet's
            foreground threshold).
        match: ``"anchors"`` or ``"decoded"`` (see above).
        anchors: (A, 4) anchor boxes (y0, x0, y1, x1) in input pixels, in the
            order of the outputs' anchor axis; None reads the model's own
            ``anchor_generator`` (keras_hub detectors) for its input size.
        decode: for ``match="decoded"``, ``decode(anchors (A, 4) ndarray,
            deltas (N, A, 4) tensor) -> (N, A, 4)`` boxes (y0, x0, y1, x1)
            written with ``keras.ops``; None: :func:`decode_center_xywh`
            (keras_hub's RetinaNet).
        outputs: (box deltas output, class scores output), each a name or an
            index; None: keras_hub's ``("bbox_regression", "cls_logits")``,
            else the model's two 3-D outputs (N, A, 4) and (N, A, C) told
            apart by their last axis (a model with one 3-D output: that is
            the class scores, enough for ``match="anchors"``).

    The class scores are read on logits: a softmax / sigmoid ending the
    class output comes off (keras_hub's ``cls_logits`` already are logits).
    """

    def __init__(
        self,
        box: Sequence[float],
        cls: int,
        iou: float = 0.5,
        match: str = "anchors",
        anchors: Any = None,
        decode: Callable | None = None,
        outputs: tuple[int | str, int | str] | None = None,
    ):
        try:
            values = np.asarray(box, np.float64).reshape(-1)
        except (TypeError, ValueError):
            values = None
        if values is None or values.size != 4 or not np.isfinite(values).all():
            raise TypeError(f"Box takes a box (y0, x0, y1, x1) of 4 finite numbers, got {box!r}")
        y0, x0, y1, x1 = (float(v) for v in values)
        if y1 <= y0 or x1 <= x0:
            raise ValueError(
                f"box {tuple(values.tolist())} is empty; give (y0, x0, y1, x1) in input pixels "
                "with y1 > y0 and x1 > x0 (keras_hub's 'yxyx')"
            )
        if not _is_int(cls) or cls < 0:
            raise TypeError(f"Box takes a class index (int >= 0), got {cls!r}")
        if not _is_real(iou) or not 0 < iou <= 1:
            raise ValueError(f"iou must be a number in (0, 1], got {iou!r}")
        if match not in BOX_MATCHES:
            raise ValueError(f"match must be one of {BOX_MATCHES}, got {match!r}")
        if decode is not None and not callable(decode):
            raise TypeError(f"decode must be a function of (anchors, deltas), got {decode!r}")
        if outputs is not None:
            if not (isinstance(outputs, (tuple, list)) and len(outputs) == 2):
                raise TypeError(
                    "outputs takes (box deltas output, class scores output), names or indices; "
                    f"got {outputs!r}"
                )
            outputs = tuple(int(o) if _is_int(o) else o for o in outputs)
        self.box = (y0, x0, y1, x1)
        self.cls = int(cls)
        self.iou = float(iou)
        self.match = match
        self.anchors: np.ndarray | None = None
        if anchors is not None:
            a = np.asarray(anchors, np.float32)
            if a.ndim != 2 or a.shape[1] != 4 or len(a) == 0:
                raise ValueError(
                    f"anchors must be (A, 4) boxes (y0, x0, y1, x1), got shape {a.shape}"
                )
            self.anchors = a
            self.anchors.flags.writeable = False
        self.decode = decode
        self.outputs = outputs
        self._model_anchors: dict[tuple, np.ndarray] = {}

    @property
    def key(self) -> Hashable:
        anchors = "model" if self.anchors is None else array_key(self.anchors)
        decode = None if self.decode is None else _Identity(self.decode)
        return ("box", self.box, self.cls, self.iou, self.match, anchors, decode, self.outputs)

    def describe(self) -> str:
        y0, x0, y1, x1 = (f"{v:g}" for v in self.box)
        return f"class {self.cls} in box ({y0}, {x0}, {y1}, {x1})"

    # ------------------------------------------------------------ resolving

    def _outputs(self, probe: Probe) -> tuple[int | None, int]:
        """(index of the box deltas output or None, index of the class scores output)."""
        if self.outputs is not None:
            deltas, scores = (probe.output_index(o) for o in self.outputs)
        else:
            names = probe.output_names
            if all(n in names for n in _HUB_OUTPUTS):
                deltas, scores = (names.index(n) for n in _HUB_OUTPUTS)
            else:
                three = [i for i in range(len(names)) if len(probe.output_shape(i)) == 3]
                fours = [i for i in three if probe.output_shape(i)[2] == 4]
                others = [i for i in three if probe.output_shape(i)[2] != 4]
                if len(three) == 1:
                    deltas, scores = None, three[0]
                elif len(three) == 2 and len(fours) == 1 and len(others) == 1:
                    deltas, scores = fours[0], others[0]
                else:
                    shapes = {n: probe.output_shape(i) for i, n in enumerate(names)}
                    raise ValueError(
                        "Box reads a detector's per-anchor outputs, box deltas (N, A, 4) and "
                        f"class scores (N, A, C); could not tell them apart among {shapes}: "
                        "name them with Box(..., outputs=(deltas, scores))"
                    )
        shape = probe.output_shape(scores)
        if len(shape) != 3:
            raise ValueError(
                f"Box reads per-anchor class scores (N, A, C); {_output_label(probe, scores)} "
                "is not one"
            )
        if deltas is not None and (len(probe.output_shape(deltas)) != 3 or
                                   probe.output_shape(deltas)[2] != 4):
            raise ValueError(
                f"Box reads per-anchor box deltas (N, A, 4); {_output_label(probe, deltas)} "
                "is not one"
            )
        if deltas is None and self.match == "decoded":
            raise ValueError(
                "Box(match='decoded') decodes the per-anchor box deltas (N, A, 4), but the "
                "model has no such output; name it with outputs=(deltas, scores) or use "
                "match='anchors'"
            )
        return deltas, scores

    def anchor_boxes(self, probe: Probe) -> np.ndarray:
        """The anchors: (A, 4) float32 (y0, x0, y1, x1) in input pixels.

        ``anchors=`` as given, or the model's ``anchor_generator`` (keras_hub)
        run for the model's input size (no model pass: it reads a shape)."""
        if self.anchors is not None:
            return self.anchors
        model = probe.model
        gen = getattr(model, "anchor_generator", None)
        if gen is None:
            raise ValueError(
                f"model {model.name!r} has no anchor_generator (a keras_hub detector has one); "
                "give the anchors: Box(box, cls, anchors=(A, 4) boxes (y0, x0, y1, x1))"
            )
        h, w, c = probe.input_shape[1:]
        if h is None or w is None:
            raise ValueError(
                f"model {model.name!r} takes images of any size, and its anchors depend on "
                "the size; give them: Box(box, cls, anchors=...) for your image size"
            )
        key = (int(h), int(w), id(gen))
        if key not in self._model_anchors:
            levels = gen(np.zeros((1, int(h), int(w), int(c or 3)), np.float32))
            a = keras.ops.concatenate(list(levels.values()), axis=0)
            fmt = getattr(gen, "bounding_box_format", "yxyx")
            if fmt != "yxyx":
                a = keras.utils.bounding_boxes.convert_format(
                    a, source=fmt, target="yxyx", height=int(h), width=int(w)
                )
            self._model_anchors[key] = np.asarray(keras.ops.convert_to_numpy(a), np.float32)
        return self._model_anchors[key]

    def matched(self, probe: Probe) -> np.ndarray:
        """(A,) bool: the anchors whose own box matches (``match='anchors'``)."""
        anchors = self.anchor_boxes(probe)
        iou = np.asarray(keras.ops.convert_to_numpy(box_iou(anchors, self.box)))
        return iou >= self.iou

    def _check_at(self, probe: Probe, output: int | None) -> None:
        if output is not None:
            raise ValueError(
                "Box reads two outputs of a detector (box deltas and class scores); give "
                "them with Box(..., outputs=(deltas, scores)), not inside Output()"
            )
        deltas, scores = self._outputs(probe)
        _, a, c = probe.output_shape(scores)
        if c is not None and self.cls >= c:
            raise ValueError(
                f"class {self.cls} out of range; {_output_label(probe, scores)} has {c} classes"
            )
        h, w = probe.input_shape[1:3]
        y0, x0, y1, x1 = self.box
        if h is not None and w is not None and (y0 >= h or x0 >= w or y1 <= 0 or x1 <= 0):
            raise ValueError(
                f"box {self.box} lies outside the {h}x{w} input; give (y0, x0, y1, x1) in "
                "input pixels"
            )
        anchors = self.anchor_boxes(probe)
        if a is not None and len(anchors) != a:
            raise ValueError(
                f"{len(anchors)} anchors, but {_output_label(probe, scores)} has {a}; give "
                "one anchor per row of the outputs, in their order"
            )
        if self.match == "anchors":
            iou = np.asarray(keras.ops.convert_to_numpy(box_iou(anchors, self.box)))
            if not (iou >= self.iou).any():
                best = int(iou.argmax())
                raise ValueError(
                    f"no anchor matches box {self.box} at IoU >= {self.iou:g}: the closest, "
                    f"anchor {best} {tuple(np.round(anchors[best], 1).tolist())}, has IoU "
                    f"{iou[best]:.2f}; lower iou=, or check that the box is (y0, x0, y1, x1) "
                    "in input pixels"
                )

    def _tensor_at(self, probe: Probe, output: int | None) -> Any:
        ops = keras.ops
        deltas, scores = self._outputs(probe)
        logits, _ = probe.output_logits(scores)  # the output itself if nothing came off
        logit = ops.cast(logits[:, :, self.cls], "float32")  # (N, A)
        anchors = self.anchor_boxes(probe)
        if self.match == "anchors":
            m = self.matched(probe).astype(np.float32)
            return ops.sum(logit * (m / m.sum()), axis=1)
        decode = self.decode or decode_center_xywh
        boxes = decode(anchors, ops.cast(probe.output_tensor(deltas), "float32"))
        m = ops.stop_gradient(ops.cast(box_iou(boxes, self.box) >= self.iou, "float32"))
        return ops.sum(logit * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)


class _Identity:
    """Hashes and compares a callable by identity, holding it so its id is not
    reused while a cache holds the key."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable):
        self.fn = fn

    def __hash__(self) -> int:
        return id(self.fn)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.fn is self.fn


class Function(Target):
    """Any function of the outputs, written with ``keras.ops``.

    Args:
        fn: ``fn(outputs) -> (N,)``, where ``outputs`` is the list of the
            model's output tensors (one element, the chosen output, inside
            :class:`Output`). An (N, 1) result is taken as (N,). It is called
            on symbolic tensors once, when the scores are built.
        name: the caption (default: the function's name).

    The key is the function's identity: the same function object, the same
    cached results.
    """

    def __init__(self, fn: Callable, name: str | None = None):
        if not callable(fn):
            raise TypeError(f"Function takes a callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    @property
    def key(self) -> Hashable:
        return ("function", _Identity(self.fn))

    def describe(self) -> str:
        return self.name

    def _check_at(self, probe: Probe, output: int | None) -> None:
        self._tensor_at(probe, output)

    def _tensor_at(self, probe: Probe, output: int | None) -> Any:
        indices = range(len(probe.output_names)) if output is None else [output]
        outputs = [probe.output_tensor(i) for i in indices]
        try:
            score = self.fn(outputs)
        except Exception as exc:  # noqa: BLE001 - any error of user code, reported with advice
            raise TypeError(
                f"target function {self.name!r} failed on the model's symbolic outputs "
                f"({type(exc).__name__}: {exc}); write it with keras.ops on the list of "
                "output tensors, returning one score per image (N,)"
            ) from exc
        shape = getattr(score, "shape", None)
        if shape is None or not hasattr(score, "dtype"):
            raise TypeError(
                f"target function {self.name!r} returned {type(score).__name__}, not a tensor; "
                "build the score with keras.ops on the outputs it is given"
            )
        shape = tuple(shape)
        if len(shape) == 2 and shape[1] == 1:
            return score[:, 0]
        if len(shape) != 1:
            raise ValueError(
                f"target function {self.name!r} returned shape {shape}; it must give one score "
                "per image, (N,)"
            )
        return score


class Sum(Target):
    """A weighted sum of targets, ``sum_j w_j * t_j`` (what ``+``, ``-`` and
    ``*`` on targets make).

    Args:
        terms: (weight, target) pairs; nested sums are flattened.
    """

    def __init__(self, terms: Sequence[tuple[float, Any]]):
        flat: list[tuple[float, Target]] = []
        for weight, target in terms:
            if not _is_real(weight) or not np.isfinite(weight):
                raise TypeError(f"a target's weight must be a finite number, got {weight!r}")
            target = as_target(target)
            if isinstance(target, Sum):
                flat.extend((float(weight) * w, t) for w, t in target.terms)
            else:
                flat.append((float(weight), target))
        if not flat:
            raise ValueError("a sum of targets needs at least one target")
        self.terms: tuple[tuple[float, Target], ...] = tuple(flat)

    @property
    def key(self) -> Hashable:
        return ("sum", tuple((w, t.key) for w, t in self.terms))

    def describe(self) -> str:
        parts = []
        for j, (w, t) in enumerate(self.terms):
            sign = "−" if w < 0 else "+"
            mag = abs(w)
            text = t.describe() if mag == 1 else f"{mag:g}×{t.describe()}"
            if j == 0:
                parts.append(text if w >= 0 else f"−{text}")
            else:
                parts.append(f" {sign} {text}")
        return "".join(parts)

    def _check_at(self, probe: Probe, output: int | None) -> None:
        for _, t in self.terms:
            t._check_at(probe, output)

    def _tensor_at(self, probe: Probe, output: int | None) -> Any:
        total = None
        for w, t in self.terms:
            term = t._tensor_at(probe, output)
            term = term if w == 1 else term * w
            total = term if total is None else total + term
        return total


def as_target(obj: Any) -> Target:
    """A target as it is, a callable wrapped as :class:`Function`; else TypeError."""
    if isinstance(obj, Target):
        return obj
    if callable(obj):
        return Function(obj)
    hint = ""
    if _is_int(obj) or isinstance(obj, str):
        hint = f"; for a class use classes={obj!r} or target=cw.targets.Class({obj!r})"
    raise TypeError(
        "a target is cw.targets.Class, Labels, Regression, Region, Output, Box (or a sum of "
        f"them) or a function of the outputs, got {type(obj).__name__}{hint}"
    )


def as_targets(target: Any) -> tuple[Target, ...]:
    """One target (shared by all images) or a list of K: a tuple of K targets."""
    if isinstance(target, (list, tuple)):
        if len(target) == 0:
            raise ValueError("target is an empty list; give one target or a list of them")
        return tuple(as_target(t) for t in target)
    return (as_target(target),)


def targets_of_call(
    target: Any, classes: Any, classes_unset: bool | None = None
) -> tuple[Target, ...] | None:
    """The targets of a call that takes ``classes=`` or ``target=``: None
    when ``target`` is None, else :func:`as_targets`. Both given is a
    TypeError; ``classes_unset`` overrides ``classes is None`` as the test
    for "classes not given" (a call whose default is a string)."""
    if target is None:
        return None
    if not (classes is None if classes_unset is None else classes_unset):
        raise TypeError(
            "give classes= or target=, not both (classes=c is the shorthand for "
            "target=cw.targets.Class(c))"
        )
    return as_targets(target)


def target_keys(targets: Sequence[Target]) -> tuple:
    """The keys of K targets, for caches and compiled functions."""
    return tuple(t.key for t in targets)


def stable_key(target: Target) -> str:
    """A digest of a target's key that is the same in every process (for
    on-disk stores): functions count by their module and qualified name.

    Returns:
        A 32-character hex string."""

    def plain(obj: Any) -> Any:
        if isinstance(obj, _Identity):
            fn = obj.fn
            return ("fn", getattr(fn, "__module__", "?"), getattr(fn, "__qualname__", repr(fn)))
        if isinstance(obj, tuple):
            return tuple(plain(o) for o in obj)
        return obj

    text = repr(plain(as_target(target).key))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def region_mask(prediction: Any, y: int, x: int) -> np.ndarray:
    """The connected region of the predicted class around a clicked pixel.

    Args:
        prediction: a class map (H, W) of ints, or scores (H, W, K) (its
            argmax over K is taken), e.g. one image of a segmentation output.
        y: the clicked pixel's row.
        x: the clicked pixel's column.

    Returns:
        (H, W) bool: the 4-connected pixels of the clicked pixel's class that
        are joined to it (input to :class:`Region`).
    """
    from scipy import ndimage  # scikit-image's own dependency; loaded on use

    pred = np.asarray(prediction)
    if pred.ndim == 3:
        pred = pred.argmax(axis=-1)
    if pred.ndim != 2:
        raise ValueError(f"prediction must be (H, W) classes or (H, W, K) scores, got {pred.shape}")
    if not (_is_int(y) and _is_int(x)):
        raise TypeError(f"the pixel is given by int row and column, got ({y!r}, {x!r})")
    h, w = pred.shape
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(f"pixel ({y}, {x}) lies outside the {h}x{w} prediction")
    labels, _ = ndimage.label(pred == pred[y, x])
    return labels == labels[y, x]
