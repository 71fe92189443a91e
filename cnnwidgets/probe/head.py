"""Find a classifier's class scores on logits, without touching the model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from cnnwidgets.probe import kinds
from cnnwidgets.probe.callsite import warn_user
from cnnwidgets.probe.trace import GraphTrace


@dataclass(frozen=True)
class Head:
    """How class scores are read from the model's output.

    kind: 'softmax', 'sigmoid' (multi-label), 'binary' (one sigmoid unit,
    shown as two classes), 'linear' (the output already is logits),
    'logprob' (no logits found; scores are log-probabilities) or 'none' (the
    output is not a class vector, e.g. a feature extractor or a segmentation
    map: layers can be browsed, classes cannot be explained).
    num_classes: K, the width of the score vector (2 for 'binary').
    logits_from: path of the output node the scores were read under.
    activation: the output activation ('softmax', 'sigmoid', 'linear' or None).
    """

    kind: str
    num_classes: int
    logits_from: str
    activation: str | None = None


class PreActivation(keras.layers.Layer):
    """Applies a closure; the closure hides the source layer from tracking,
    so the user's layer gains no new parent or tracked reference."""

    def __init__(self, fn: Callable, **kwargs):
        super().__init__(**kwargs)
        self._fn = fn

    def call(self, x):
        return self._fn(x)


def binary_scores(logit: Any) -> Any:
    """One sigmoid unit is two classes: negative = -logit, positive = logit."""
    return keras.ops.concatenate([-logit, logit], axis=-1)


def fitting_target(name: str | None, shape: tuple, activation: str | None) -> str:
    """The cw.targets expression that explains an output of this shape and
    activation (inside ``Output(name, ...)`` when ``name`` is given)."""
    if len(shape) == 4:
        inner = "Region(channel, mask_or_box)"
    elif len(shape) == 2 and shape[1] not in (None, 1) and activation == "sigmoid":
        inner = "Labels(0)"
    elif len(shape) == 2 and activation in ("softmax", "sigmoid"):
        inner = "Class(0)"
    else:
        inner = "Regression()"
    inner = f"cw.targets.{inner}"
    return inner if name is None else f"cw.targets.Output({name!r}, {inner})"


def not_a_classifier(model_name: str, shape: tuple, activation: str | None = None) -> str:
    """Why a model with this output has no classes to explain, and what works."""
    return (
        f"model {model_name!r} outputs shape {shape}, not a class vector (N, K), so it has no "
        "classes for classes= or predict(). Explain it with a target instead, e.g. "
        f"target={fitting_target(None, shape, activation)} (cw.targets lists them); the "
        "comparator and the scrubber offer its targets themselves. Layers, activations, "
        "filters and receptive fields work on any model."
    )


def several_outputs(
    model_name: str, names: list[str], shapes: list[tuple], activations: list[str | None]
) -> str:
    """Why ``classes=`` cannot be used on a multi-output model, and what works: a
    target that fits each output."""
    fits = ", ".join(fitting_target(n, s, a) for n, s, a in zip(names, shapes, activations))
    return (
        f"model {model_name!r} has {len(names)} outputs {names}, so classes= is ambiguous. "
        f"Explain one output with a target: {fits}; or pass keras.Model(model.inputs, "
        "model.outputs[i])"
    )


def _logits_name(index: int, what: str) -> str:
    # Layer names must be unique in one keras.Model; the first output keeps
    # the historical name.
    return f"cw_{what}" if index == 0 else f"cw_{what}_{index}"


def find_head(
    trace: GraphTrace, model_name: str, names_given: bool, index: int = 0
) -> tuple[Head, Any]:
    """Locate the logits tensor of output ``index`` (the only one by default);
    returns the Head and the (N, K) scores tensor (None for an output that is
    not a class vector: Head kind 'none')."""
    final = trace.output_producers[index]
    output = trace.outputs[index]
    node = trace.objects.get(final)
    act = kinds.activation_name(node) if node is not None else None
    shape = tuple(output.shape)
    if len(shape) != 2 or shape[1] is None:
        return Head("none", 0, final, act), None
    units = int(output.shape[-1])
    if act in ("softmax", "sigmoid"):
        logits = None
        if type(node).__name__ in ("Activation", "Softmax", "Sigmoid"):
            logits = trace.first_input[final]
        else:
            linear = kinds.linear_part(node)
            if linear is not None:
                logits = PreActivation(linear, name=_logits_name(index, "logits"))(
                    trace.first_input[final]
                )
        if logits is not None:
            kind = act if (act == "softmax" or units > 1) else "binary"
            scores = binary_scores(logits) if kind == "binary" else logits
            return Head(kind, 2 if kind == "binary" else units, final, act), scores
    elif act in ("linear", None) and node is not None and type(node).__name__ != "Lambda":
        if units == 1:
            if not names_given:
                warn_user(
                    f"model {model_name!r} ends in one linear unit; cnnwidgets reads it as the "
                    "logit of a binary classifier (classes [negative, positive] = [-z, z]). If it "
                    "is a regression output, the maps show what raises the predicted value. Pass "
                    "class_names=[negative, positive] to say it is a classifier and silence this."
                )
            return Head("binary", 2, final, "linear"), binary_scores(output)
        return Head("linear", units, final, "linear"), output
    warn_user(
        f"could not find the logits under the output node {final!r}; class scores are "
        "log-probabilities, which makes gradients of one class depend on the others"
    )
    scores = keras.ops.log(keras.ops.clip(output, 1e-12, 1.0))
    return Head("logprob", units, final, act), scores


def output_logits(trace: GraphTrace, index: int) -> tuple[Any, str | None]:
    """Output ``index`` before its softmax / sigmoid, found without touching the model.

    Returns (tensor, activation): the tensor of the output's shape before the
    activation and the activation's name ('softmax', 'sigmoid'; 'linear' when
    the output has none), or (the output itself, None) when an activation
    could not be removed (a Lambda, an unknown activation)."""
    final = trace.output_producers[index]
    output = trace.outputs[index]
    node = trace.objects.get(final)
    act = kinds.activation_name(node) if node is not None else None
    if act in ("softmax", "sigmoid"):
        if type(node).__name__ in ("Activation", "Softmax", "Sigmoid"):
            return trace.first_input[final], act
        linear = kinds.linear_part(node)
        if linear is not None:
            pre = PreActivation(linear, name=_logits_name(index, "pre_activation"))
            return pre(trace.first_input[final]), act
        return output, None
    if act in ("linear", None) and node is not None and type(node).__name__ != "Lambda":
        return output, "linear"
    return output, None


def probabilities(head: Head, scores: np.ndarray, output: np.ndarray) -> np.ndarray:
    """Class probabilities (N, K) float32 from scores (N, K) and the model output.

    A binary head gives [1 - p, p]; a linear head gets a softmax."""
    if head.kind == "binary":
        if head.activation == "sigmoid":
            p = output[:, :1].astype(np.float64)
        else:
            p = 1.0 / (1.0 + np.exp(-np.clip(scores[:, 1:2].astype(np.float64), -80, 80)))
        return np.concatenate([1.0 - p, p], axis=1).astype(np.float32)
    if head.kind == "linear":
        z = scores - scores.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return output.astype(np.float32)
