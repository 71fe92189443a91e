"""Targets on the incremental engine: what the engine computes for them.

The engine recomputes the values of one node for each patched image. A
target's score is a function of the model's outputs (and of their logits,
the output node's input before its softmax or sigmoid), so for targets the
engine stops one node early, at the input of the output node (the cut), and
a small compiled model, the target head, runs the output node and the
target's score on the cut's values: (M, ...) cut values -> (M, K) scores.

A target rides the engine when the model has one output, its output node
reads one tensor, and the score reads nothing but what follows from it;
otherwise :func:`target_head` raises :class:`NotIncremental` saying why, and
:func:`cnnwidgets.probe.incremental.choose_engine` picks the batched engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from cnnwidgets.probe import Probe
from cnnwidgets.probe.incremental.propagation import NotIncremental
from cnnwidgets.probe.targets import Target, as_targets, target_keys

__all__ = ["output_cut", "target_head"]


def output_cut(probe: Probe) -> str:
    """The catalog path of the one tensor the model's output node reads.

    Raises:
        NotIncremental: several outputs, or an output node that reads the image
            itself, several tensors or a nested model's output.
    """
    n = len(probe.output_names)
    if n != 1:
        raise NotIncremental(
            f"the model has {n} outputs and the incremental engine recomputes one node's "
            "values; targets over several outputs run batched"
        )
    out = probe.output_tensor(0)
    producer = next(
        (i for i in reversed(probe.layers) if not i.is_model and probe.tensor(i.name) is out),
        None,
    )
    if producer is None:
        raise NotIncremental("the model's output node is not a layer of the catalog")
    if len(producer.parents) != 1 or producer.parents[0] == "input":
        raise NotIncremental(
            f"the output node {producer.name!r} reads {list(producer.parents)}, not one "
            "tensor computed from the image"
        )
    cut = producer.parents[0]
    if probe.layer_info(cut).is_model:
        raise NotIncremental(f"the output node reads a nested model's output {cut!r}")
    return cut


def target_head(probe: Probe, targets: Sequence[Target] | Any) -> tuple[str, keras.Model]:
    """(cut path, target head): the head maps the cut node's values (M, ...)
    float32 to the K targets' scores (M, K) float32; built once per probe and
    tuple of target keys.

    Raises:
        NotIncremental: the model or the targets cannot ride the engine (why).
        ValueError: a target that does not fit the model (its own check).
    """
    targets = as_targets(targets)
    cut = output_cut(probe)
    scores = probe.target_tensor(targets)  # checks the targets first

    def build() -> keras.Model:
        try:
            return keras.Model(probe.tensor(cut), scores, name="cw_target_head")
        except Exception as exc:  # noqa: BLE001 - Keras says why the graph does not cut
            raise NotIncremental(
                f"the targets read more than the output node's input {cut!r} "
                f"({type(exc).__name__}: {str(exc)[:160]})"
            ) from exc

    head = probe.cached("incremental-target-head", (cut, target_keys(targets)), build,
                        versioned=False)
    return cut, head
