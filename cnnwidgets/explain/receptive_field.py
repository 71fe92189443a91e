"""Receptive fields: which input pixels a unit of a layer can see.

The field of every layer is computed from the probe's flattened graph
(``LayerInfo.parents``) and the model's own layer objects, with the classic
recurrences (per spatial axis, in input pixels)::

    size_out  = size_in + (k_eff - 1) * jump_in      k_eff = dilation * (kernel - 1) + 1
    jump_out  = jump_in * stride
    start_out = start_in + ((k_eff - 1) / 2 - pad_before) * jump_in

``start`` is the centre of unit 0's field in input *pixel-index* coordinates
(the centre of pixel 0 is 0.0; a half-integer means the field has an even
size). Fields are rectangles: every value is an ``(h, w)`` tuple, so
non-square kernels and strides are supported. Sizes are theoretical: a
field may be larger than the image (deep layers, global pooling);
:func:`unit_box` clips it to the image.

Handled: Conv1D/2D, DepthwiseConv2D, SeparableConv2D (kernel, strides,
dilation, padding 'valid' / 'same' with TensorFlow's asymmetric 'same'
padding for strides > 1), Max/AveragePooling2D, ZeroPadding2D,
Cropping2D, global pooling and Flatten (the whole input), nested models
(through their inner layers), and merges (Add, Concatenate, ...: the union
of the parents' fields, i.e. the largest). Layers that keep the spatial
size (BatchNormalization, Activation, ReLU, Rescaling, Dropout, ...) are the
identity. Anything else that changes the spatial size (UpSampling2D,
Conv2DTranspose, Resizing) raises ``ValueError``.

Kernels, strides, dilations, padding and borders are read, and TensorFlow's
'same' padding computed, by :mod:`cnnwidgets.probe.geometry` (shared with
incremental occlusion and the deconvnet). Pure Python on the layers'
attributes; no TensorFlow calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cnnwidgets.probe import LayerInfo, Probe, as_probe, geometry, kinds

__all__ = [
    "ReceptiveField",
    "receptive_field",
    "receptive_fields",
    "unit_box",
    "conv_step",
    "INPUT_FIELD",
]

Pair = geometry.Pair


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of one layer's units, per axis (h, w).

    Attributes:
        size: (h, w) int, the field's extent in input pixels.
        jump: (h, w) int, input pixels between neighbouring units (the
            product of all strides so far).
        start: (h, w) float, the centre of unit (0, 0)'s field in input
            pixel-index coordinates (the centre of pixel 0 is 0.0). Unit
            (i, j) is centred at ``start + (i, j) * jump``.
    """

    size: Pair
    jump: Pair
    start: tuple[float, float]

    @property
    def is_square(self) -> bool:
        return self.size[0] == self.size[1] and self.jump[0] == self.jump[1]

    def __str__(self) -> str:
        if self.is_square:
            return f"{self.size[0]} px (jump {self.jump[0]})"
        return f"{self.size[0]}x{self.size[1]} px (jump {self.jump[0]}x{self.jump[1]})"


#: The field of the model input itself: one pixel.
INPUT_FIELD = ReceptiveField(size=(1, 1), jump=(1, 1), start=(0.0, 0.0))


def conv_step(
    rf: ReceptiveField,
    kernel: Pair,
    strides: Pair = (1, 1),
    dilation: Pair = (1, 1),
    pad_before: Pair = (0, 0),
) -> ReceptiveField:
    """The field after one sliding-window layer (convolution or pooling).

    Args:
        rf: the field of the layer's input.
        kernel, strides, dilation: (h, w) ints of the window.
        pad_before: (h, w) zero rows/columns added above/left of the input.

    Returns:
        The field of the layer's output units.
    """
    size, jump, start = [], [], []
    for a in range(2):
        k_eff = dilation[a] * (kernel[a] - 1) + 1
        size.append(rf.size[a] + (k_eff - 1) * rf.jump[a])
        jump.append(rf.jump[a] * strides[a])
        start.append(rf.start[a] + ((k_eff - 1) / 2 - pad_before[a]) * rf.jump[a])
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def _shift(rf: ReceptiveField, rows: Pair) -> ReceptiveField:
    """Move unit 0 by (dy, dx) units of the input grid (cropping > 0, padding < 0)."""
    start = tuple(rf.start[a] + rows[a] * rf.jump[a] for a in range(2))
    return ReceptiveField(rf.size, rf.jump, start)


def _union(fields: list[ReceptiveField]) -> ReceptiveField:
    """A merge's units see the union of what their inputs see (per axis)."""
    if len(fields) == 1:
        return fields[0]
    size, jump, start = [], [], []
    for a in range(2):
        lo = min(f.start[a] - (f.size[a] - 1) / 2 for f in fields)
        hi = max(f.start[a] + (f.size[a] - 1) / 2 for f in fields)
        size.append(int(round(hi - lo)) + 1)
        jump.append(max(f.jump[a] for f in fields))
        start.append((lo + hi) / 2)
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def _spatial(shape: tuple) -> tuple[Any, Any] | None:
    """(h, w) of an (N, H, W, C) shape, (1, W) of (N, W, C); None otherwise."""
    if len(shape) == 4:
        return shape[1], shape[2]
    if len(shape) == 3:
        return 1, shape[1]
    return None


def _layer_field(layer: Any, kind: str, rf: ReceptiveField, in_hw, out_hw) -> ReceptiveField:
    """The field of a single-input layer's output given its input field."""
    if not geometry.is_channels_last(layer):
        raise ValueError(f"layer {layer.name!r} is channels_first; only NHWC models are supported")
    if kind in kinds.WINDOWED:
        window = geometry.sliding_window(layer)
        if window.padding not in geometry.PADDINGS:
            raise ValueError(
                f"layer {layer.name!r} has unsupported padding {window.padding!r}"
            )
        hw = in_hw or (None, None)
        pad = tuple(
            geometry.axis_padding(hw[a], window.effective[a], window.strides[a], window.padding)
            .before
            for a in range(2)
        )
        return conv_step(rf, window.kernel, window.strides, window.dilation, pad)
    if kind in kinds.PADDING_2D or kind in kinds.CROPPING_2D:
        # Unit 0 moves up / left by the rows added before (down / right by those cut).
        (top, _), (left, _) = geometry.border(layer)
        return _shift(rf, (-top, -left))
    if kind in kinds.GLOBAL:
        # One output unit sees every input unit: a window as large as the input.
        if in_hw is None:  # already a vector: nothing spatial left to pool
            return rf
        if None in in_hw:
            raise ValueError(f"layer {layer.name!r}: global field needs a known input size")
        kernel = (int(in_hw[0]), int(in_hw[1]))
        return conv_step(rf, kernel, kernel)
    if in_hw is not None and out_hw is not None and tuple(in_hw) != tuple(out_hw):
        raise ValueError(
            f"layer {layer.name!r} ({kind}) changes the spatial size {tuple(in_hw)} -> "
            f"{tuple(out_hw)} in a way receptive fields are not defined for here"
        )
    return rf  # BatchNormalization, Activation, Rescaling, Dropout, Dense on vectors, ...


def _shape_of(probe: Probe, name: str) -> tuple:
    if name == "input":
        return tuple(probe.input_shape)
    return tuple(probe.layer_info(name).output_shape)


def _container_output(probe: Probe, info: LayerInfo, infos: list[LayerInfo]) -> str:
    """The inner layer whose output is the nested model's output."""
    target = probe.tensor(info.name)
    prefix = info.name + "/"
    children = [i.name for i in infos if i.name.startswith(prefix) and not i.is_model]
    for child in reversed(children):
        if target is not None and probe.tensor(child) is target:
            return child
    if not children:
        raise ValueError(f"nested model {info.name!r} has no layers")
    return children[-1]


def receptive_fields(model_or_probe: Any) -> dict[str, ReceptiveField | None]:
    """The field of every layer, in one pass over the graph.

    Returns:
        {layer path: ReceptiveField, or None where it is not defined (a
        layer changing the spatial size in a way the rules above do not
        cover, and everything it feeds)}. Non-spatial layers (Dense after
        global pooling) carry the field of the whole input they see.
    """
    probe = as_probe(model_or_probe)
    fields, _ = probe.cached("receptive_fields", (), lambda: _trace_fields(probe), versioned=False)
    return dict(fields)


def _trace_fields(probe: Probe) -> tuple[dict[str, ReceptiveField | None], dict[str, str]]:
    """(fields, why each undefined one is undefined), one pass over the graph."""
    infos = probe.layers
    fields: dict[str, ReceptiveField | None] = {"input": INPUT_FIELD}
    errors: dict[str, str] = {}
    for info in infos:
        if info.is_model:
            continue
        parent_fields = [fields.get(p) for p in info.parents]
        if not parent_fields or any(f is None for f in parent_fields):
            fields[info.name] = None
            continue
        rf = _union(parent_fields)  # several parents: a merge (Add, Concatenate, ...)
        if len(info.parents) == 1:
            in_shape = _shape_of(probe, info.parents[0])
            try:
                rf = _layer_field(
                    probe.layer(info.name),
                    info.kind,
                    rf,
                    _spatial(in_shape),
                    _spatial(info.output_shape),
                )
            except ValueError as exc:
                errors[info.name] = str(exc)
                rf = None
        fields[info.name] = rf
    for info in infos:
        if info.is_model:
            fields[info.name] = fields.get(_container_output(probe, info, infos))
    fields.pop("input")
    return fields, errors


def receptive_field(model_or_probe: Any, layer: Any) -> ReceptiveField:
    """The receptive field of a layer's units, in input pixels.

    Args:
        model_or_probe: a keras.Model or a cnnwidgets.Probe.
        layer: a layer path ('base/block5_conv3'), its unique short name, or
            the layer object.

    Returns:
        ReceptiveField with (h, w) ``size``, ``jump`` and ``start``; e.g.
        VGG16's block5_conv3 has size (196, 196), jump (16, 16), start (7.5, 7.5).

    Raises:
        ValueError: unknown layer (the message lists the closest names), or
            a layer whose field is not defined (e.g. after UpSampling2D).
    """
    probe = as_probe(model_or_probe)
    path = probe.resolve(layer)
    rf = receptive_fields(probe).get(path)
    if rf is None:
        _, errors = probe.cached(
            "receptive_fields", (), lambda: _trace_fields(probe), versioned=False
        )
        why = errors.get(path) or "; ".join(f"{k}: {v}" for k, v in errors.items())
        raise ValueError(f"the receptive field of {path!r} is not defined: {why}")
    return rf


def unit_box(
    rf: ReceptiveField, i: int, j: int, image_hw: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The input pixels unit (i, j) sees, clipped to the image.

    Args:
        rf: the layer's field (:func:`receptive_field`).
        i, j: the unit's row and column in the layer's (h, w) grid.
        image_hw: (H, W) of the model input.

    Returns:
        (top, left, bottom, right) ints, bottom/right exclusive, as used by
        ``cnnwidgets.render.outline``. Empty (top == bottom) if the field
        lies wholly in the padding.
    """
    box = []
    for a, idx in enumerate((i, j)):
        centre = rf.start[a] + idx * rf.jump[a]
        first = math.ceil(centre - (rf.size[a] - 1) / 2 - 1e-9)
        last = first + rf.size[a]  # exclusive
        n = int(image_hw[a])
        lo, hi = min(max(first, 0), n), min(max(last, 0), n)
        box.append((lo, hi))
    (top, bottom), (left, right) = box
    return int(top), int(left), int(bottom), int(right)
