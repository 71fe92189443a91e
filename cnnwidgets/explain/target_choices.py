"""What a target picker offers for one image, and what to say about each offer.

A picker (the comparator's slider, the scrubber's target menu) steps through
*choices*: the ranked classes of a classifier, the labels of a multi-label
head, the classes present in a segmentation (each as the region of the
pixels predicted as that class), the values of a regression output, or the
targets a user gave. Each choice carries its target, a label, the model's
value for it on the image (a probability, a predicted value, a mean
probability over a region) and that value as text.

Classes of a single-output classifier stay class indices (``Choice.cls``),
so the methods take them by ``classes=`` as before; every other choice is
explained through ``target=``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnwidgets.probe import Probe
from cnnwidgets.probe.targets import (
    Class,
    Labels,
    Output,
    Region,
    Regression,
    Sum,
    Target,
    as_targets,
    region_mask,
)

__all__ = [
    "Choice",
    "class_choices",
    "given_choices",
    "has_regression",
    "offered_choices",
    "region_at",
    "segmentation_output",
    "with_sign",
]


@dataclass(frozen=True, eq=False)
class Choice:
    """One target a picker offers.

    Attributes:
        key: hashable identity (the class index for classifier classes, else
            the target's key); maps are stored under it.
        target: what the maps explain.
        label: a short name ("Egyptian cat", "circle region").
        value: the model's value for it on the image (float).
        value_text: ``value`` as shown ("39.6%", "predicted 0.431").
        kind: 'class', 'label', 'region', 'value' or 'target'.
        cls: the class index of a single-output classifier's class (the
            ``classes=`` path), else None.
        mask: for a region, (H', W') bool on the segmentation output's grid.
    """

    key: Hashable
    target: Target
    label: str
    value: float
    value_text: str
    kind: str
    cls: int | None = None
    mask: np.ndarray | None = field(default=None, repr=False)


def class_choices(
    probe: Probe, raw: np.ndarray, classes: Any = None, top: int = 10
) -> list[Choice]:
    """The classes of a single-output classifier ranked by probability on the
    image ``raw`` (1, H, W, C): all of a binary head's two, else the ``top``
    most probable of ``classes`` (None: every class)."""
    probs = probe.predict(raw)[0]
    if classes is None:
        candidates = np.arange(probe.num_classes)
    else:
        candidates = np.unique(probe.resolve_classes(classes, raw)[0])
    order = candidates[np.argsort(-probs[candidates], kind="stable")]
    k = probe.num_classes if probe.head.kind == "binary" else int(top)
    return [
        Choice(
            key=int(c),
            target=Class(int(c)),
            label=probe.class_names[int(c)],
            value=float(probs[c]),
            value_text=f"{probs[c]:.1%}",
            kind="class",
            cls=int(c),
        )
        for c in order[:k]
    ]


def _output_probabilities(values: np.ndarray, activation: str | None, axis: int) -> np.ndarray:
    """Probabilities from an output's values: as given after a softmax or a
    sigmoid, a softmax over ``axis`` of values without one."""
    if activation in ("softmax", "sigmoid"):
        return values
    z = values - values.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def segmentation_output(probe: Probe) -> int | None:
    """The index of the model's first segmentation output (N, H, W, K), or None."""
    for i in range(len(probe.output_names)):
        shape = probe.output_shape(i)
        if len(shape) == 4 and shape[-1] is not None:
            return i
    return None


def _wrap(probe: Probe, index: int, target: Target) -> Target:
    return target if len(probe.output_names) == 1 else Output(probe.output_names[index], target)


def _channel_name(probe: Probe, index: int, c: int) -> str:
    if len(probe.output_names) == 1 and len(probe.class_names) > c:
        return probe.class_names[c]
    return f"class {c}"


def _region_choice(
    probe: Probe, index: int, probs: np.ndarray, c: int, mask: np.ndarray, what: str
) -> Choice:
    """A region of output ``index``: class ``c`` over ``mask`` (H', W')."""
    target = _wrap(probe, index, Region(int(c), mask))
    value = float(probs[..., c][mask].mean())
    return Choice(
        key=target.key,
        target=target,
        label=f"{what} {_channel_name(probe, index, c)}",
        value=value,
        value_text=f"p {value:.2f}",
        kind="region",
        mask=mask,
    )


def _segmentation_choices(probe: Probe, index: int, out: np.ndarray, top: int) -> list[Choice]:
    probs = _output_probabilities(out, probe.output_logits(index)[1], axis=-1)
    predicted = probs.argmax(axis=-1)
    classes, areas = np.unique(predicted, return_counts=True)
    order = classes[np.argsort(-areas, kind="stable")][:top]
    return [_region_choice(probe, index, probs, int(c), predicted == c, "all") for c in order]


def _vector_choices(probe: Probe, index: int, out: np.ndarray, top: int, sign: int) -> list[Choice]:
    """Choices of an (N, K) or (N,) output of a model that is not a
    single-output classifier: classes after a softmax, labels after a
    sigmoid, values of a linear output."""
    activation = probe.output_logits(index)[1]
    values = out.reshape(-1)
    name = probe.output_names[index]
    if activation in ("softmax", "sigmoid") and values.size > 1:
        make = Class if activation == "softmax" else Labels
        kind = "class" if activation == "softmax" else "label"
        order = np.argsort(-values, kind="stable")[:top]
        return [
            Choice(
                key=(target := _wrap(probe, index, make(int(c)))).key,
                target=target,
                label=f"{name}: {kind} {int(c)}",
                value=float(values[c]),
                value_text=f"{values[c]:.1%}",
                kind=kind,
            )
            for c in order
        ]
    if activation == "sigmoid":  # one unit: the positive class and 1 - p
        p = float(values[0])
        return [
            Choice(
                key=(target := _wrap(probe, index, Class(c))).key,
                target=target,
                label=f"{name}: {'positive' if c else 'negative'}",
                value=q,
                value_text=f"{q:.1%}",
                kind="class",
            )
            for c, q in sorted(((1, p), (0, 1.0 - p)), key=lambda cq: -cq[1])
        ]
    return [
        _value_choice(_wrap(probe, index, Regression(j, sign)), name, j, float(values[j]), sign)
        for j in range(min(values.size, top))
    ]


def _value_choice(target: Target, output_name: str, j: int, value: float, sign: int) -> Choice:
    unit = "" if j == 0 else f" {j}"
    direction = "raise" if sign > 0 else "lower"
    return Choice(
        key=target.key,
        target=target,
        label=f"{direction} {output_name}{unit}",
        value=value,
        value_text=f"predicted {value:.4g}",
        kind="value",
    )


def offered_choices(probe: Probe, raw: np.ndarray, top: int = 10, sign: int = 1) -> list[Choice]:
    """What a picker offers on the image ``raw`` (1, H, W, C) for a model that
    is not a single-output classifier: for each output in turn, its
    segmentation regions (largest first), classes or labels (most probable
    first) or values (regression, raised with ``sign=+1``, lowered with -1),
    at most ``top`` per output. A single-output classifier gets
    :func:`class_choices`."""
    if probe.head.kind != "none":
        return class_choices(probe, raw, None, top)
    outputs = probe.outputs(raw)
    choices: list[Choice] = []
    for i, out in enumerate(outputs):
        out = out[0]
        if out.ndim == 3:
            choices += _segmentation_choices(probe, i, out, top)
        elif out.ndim <= 1:
            choices += _vector_choices(probe, i, out, top, sign)
    if not choices:
        shapes = [tuple(probe.output_shape(i)) for i in range(len(outputs))]
        raise ValueError(
            f"found nothing to explain in outputs of shapes {shapes}; give targets= "
            "(cw.targets.Class, Labels, Regression, Region, Output or a function)"
        )
    return choices


def given_choices(probe: Probe, raw: np.ndarray, targets: Any) -> list[Choice]:
    """The targets a user gave, in their order, each with its value on ``raw``."""
    targets = as_targets(targets)
    values = probe.target_scores(raw, list(targets))[0]
    return [
        Choice(
            key=t.key,
            target=t,
            label=t.describe(),
            value=float(v),
            value_text=f"value {v:.4g}",
            kind="value" if _regressions(t) else "target",
        )
        for t, v in zip(targets, values)
    ]


def _regressions(target: Target) -> bool:
    if isinstance(target, Regression):
        return True
    if isinstance(target, Output):
        return _regressions(target.inner)
    if isinstance(target, Sum):
        return any(_regressions(t) for _, t in target.terms)
    return False


def has_regression(choices: Sequence[Choice]) -> bool:
    """True when some choice explains a predicted value (a sign toggle applies)."""
    return any(_regressions(c.target) for c in choices)


def with_sign(target: Target, sign: int) -> Target:
    """``target`` with each Regression in it raising (+1) or lowering (-1) its value."""
    if isinstance(target, Regression):
        return Regression(target.index, sign)
    if isinstance(target, Output):
        return Output(target.which, with_sign(target.inner, sign))
    if isinstance(target, Sum):
        return Sum([(w, with_sign(t, sign)) for w, t in target.terms])
    return target


def region_at(probe: Probe, raw: np.ndarray, y: float, x: float) -> Choice:
    """The region a click at input pixel (y, x) picks on a segmentation
    output: the connected area of the class predicted under the click
    (:func:`~cnnwidgets.probe.targets.region_mask` on the output's grid).

    Raises ValueError when the model has no segmentation output or the
    click lies outside the image."""
    index = segmentation_output(probe)
    if index is None:
        shapes = [tuple(probe.output_shape(i)) for i in range(len(probe.output_names))]
        raise ValueError(
            "a click picks a region of a segmentation output (N, H, W, K); this model has "
            f"outputs of shapes {shapes}"
        )
    h, w = raw.shape[1:3]
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(f"pixel ({y:.0f}, {x:.0f}) lies outside the {h}x{w} image")
    out = probe.outputs(raw)[index][0]
    probs = _output_probabilities(out, probe.output_logits(index)[1], axis=-1)
    gh, gw = probs.shape[:2]
    gy, gx = min(int(y * gh / h), gh - 1), min(int(x * gw / w), gw - 1)
    mask = region_mask(probs, gy, gx)
    c = int(probs[gy, gx].argmax())
    return _region_choice(probe, index, probs, c, mask, "clicked")
