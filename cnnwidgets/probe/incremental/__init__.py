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

One idea per module:

- :mod:`.windows`: window geometry of a node along one axis (which output
  rows an input change reaches, which input rows an output box reads);
- :mod:`.propagation`: the graph as the engine runs it (each node's mode)
  and the one walk carrying a changed region through it;
- :mod:`.cost`: the time and memory model, and :func:`choose_engine`, the
  one policy choosing between the incremental and the batched engine;
- :mod:`.executor`: :class:`IncrementalModel`, which computes the windows;
- :mod:`.heads`: targets on the engine: the cut at the output node's input
  and the compiled target head that scores its values.
"""

from cnnwidgets.probe.incremental.cost import (
    MIN_SPEEDUP,
    MIN_WORK,
    SETUP_PASSES,
    WHOLE_VALUE_COST,
    WINDOW_VALUE_COST,
    IncrementalPlan,
    choose_engine,
    plan,
)
from cnnwidgets.probe.incremental.executor import IncrementalModel
from cnnwidgets.probe.incremental.heads import output_cut, target_head
from cnnwidgets.probe.incremental.propagation import NotIncremental

__all__ = [
    "MIN_SPEEDUP",
    "MIN_WORK",
    "SETUP_PASSES",
    "WHOLE_VALUE_COST",
    "WINDOW_VALUE_COST",
    "IncrementalModel",
    "IncrementalPlan",
    "NotIncremental",
    "choose_engine",
    "output_cut",
    "plan",
    "target_head",
]
