"""Re-trace a Keras model into one flat functional graph.

The model's own layer and operation objects are called again on a fresh
``keras.Input`` (weights are shared; nothing is copied or changed), and
nested Functional / Sequential models are entered, so every layer and every
``keras.ops`` / operator node (``x + y``, ``keras.ops.relu``), at any depth,
becomes a named tensor hanging off one input. Submodels to any set of those
tensors then never hit 'Graph disconnected'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from cnnwidgets.probe import kinds


@dataclass(frozen=True)
class LayerInfo:
    """One entry of the layer catalog.

    Attributes:
        name: the path, 'outer/inner' for a layer inside a nested model.
        kind: the layer class name ('Conv2D', 'Functional', ...), or
            'ops.' + class name for a keras.ops / operator node ('ops.Add').
        output_shape: the output shape with the batch axis as None.
        params: number of weights (trainable and not).
        parents: paths of the layers whose outputs feed this one ('input'
            for the model input).
        is_model: True for a nested model entry (its children follow it).
    """

    name: str
    kind: str
    output_shape: tuple
    params: int
    parents: tuple[str, ...]
    is_model: bool = False

    @property
    def is_4d(self) -> bool:
        return len(self.output_shape) == 4

    @property
    def is_op(self) -> bool:
        """True for a keras.ops / operator node rather than a layer."""
        return self.kind.startswith(kinds.OPS_PREFIX)


def single_tensor(out: Any) -> Any:
    """The tensor of a one-element list / tuple / dict output, else ``out``.

    Models loaded from legacy HDF5 files (Keras 2 / tf.keras) keep their
    output as a list of one tensor."""
    if isinstance(out, dict) and len(out) == 1:
        return next(iter(out.values()))
    if isinstance(out, (list, tuple)) and len(out) == 1:
        return out[0]
    return out


class GraphTrace:
    """The flat graph of one model.

    Attributes:
        input: the fresh keras.Input every tensor hangs off.
        outputs: the model's output tensors on that input, flattened in the
            order of ``model.outputs``.
        output_names: one name per output (``model.output_names``; a dict
            output's keys are accepted too, see ``output_aliases``).
        output_aliases: {other name: index}, the keys of a dict output.
        output_producers: path of the node that produced each output.
        output: the output tensor of a single-output model (None for several).
        infos: the catalog, in graph order.
        objects: {path: the model's own layer / operation object}.
        tensors: {path: output tensor} (None for multi-output layers).
        first_input: {path: the first input tensor of that node}.
        producer_of_output: path of the node that produced ``output``.
    """

    def __init__(self, model: keras.Model, input_shape: tuple):
        self.infos: list[LayerInfo] = []
        self.objects: dict[str, Any] = {}
        self.tensors: dict[str, Any] = {}
        self.first_input: dict[str, Any] = {}
        dtype = model.inputs[0].dtype
        self.input = keras.Input(shape=input_shape[1:], dtype=dtype, name="cw_input")
        self._producer: dict[int, str] = {id(self.input): "input"}
        out = single_tensor(self._call_model(model, self.input, prefix=""))
        self.outputs: list[Any] = keras.tree.flatten(out)
        self.output_aliases: dict[str, int] = {}
        if isinstance(out, dict):
            # keras.tree.flatten orders a dict by its keys; so do the aliases.
            keys = keras.tree.flatten({k: str(k) for k in out})
            self.output_aliases = {str(k): i for i, k in enumerate(keys)}
        names = list(getattr(model, "output_names", None) or [])
        if len(names) != len(self.outputs):
            names = [f"output_{i}" for i in range(len(self.outputs))]
        self.output_names: list[str] = [str(n) for n in names]
        self.output_producers: list[str] = [
            self._producer.get(id(t), "input") for t in self.outputs
        ]
        self.output = self.outputs[0] if len(self.outputs) == 1 else None
        self.producer_of_output = self.output_producers[0]
        self.bytes_per_sample = 4 * sum(
            int(np.prod([d or 1 for d in info.output_shape[1:]])) for info in self.infos
        )

    def producer(self, tensor: Any) -> str | None:
        """The path of the node that produced this tensor of the flat graph (None if unknown)."""
        return self._producer.get(id(tensor))

    def _call_model(self, model, x, prefix: str):
        if isinstance(model, keras.Sequential):
            for layer in model.layers:
                x = self._call_node(layer, prefix, x)
            return x
        if isinstance(x, (list, tuple)) and len(x) == 1 and len(model.inputs) == 1:
            x = x[0]
        return model._run_through_graph(
            x, operation_fn=lambda op: lambda *a, **k: self._call_node(op, prefix, *a, **k)
        )

    def _call_node(self, node, prefix: str, *args, **kwargs):
        path = prefix + node.name
        if kinds.is_graph_model(node):
            arg = args[0] if len(args) == 1 else list(args)
            out = self._call_model(node, arg, prefix=path + "/")
        else:
            out = node(*args, **kwargs)
        self._record(path, node, args, kwargs, out)
        return out

    def _record(self, path: str, node, args, kwargs, out) -> None:
        flat = keras.tree.flatten((args, kwargs))
        flat_in = [t for t in flat if isinstance(t, keras.KerasTensor)]
        known = [self._producer[id(t)] for t in flat_in if id(t) in self._producer]
        parents = tuple(dict.fromkeys(known))
        # The innermost producer wins, so a nested model's output is claimed by
        # its last inner layer (recorded first), not by the container.
        for t in keras.tree.flatten(out):
            self._producer.setdefault(id(t), path)
        if path in self.objects:
            # A layer called twice (weight sharing): keep its last call.
            self.infos = [i for i in self.infos if i.name != path]
        single = single_tensor(out)
        single = None if isinstance(single, (list, tuple, dict)) else single
        self.objects[path] = node
        self.tensors[path] = single
        self.infos.append(
            LayerInfo(
                name=path,
                kind=kinds.kind_of(node),
                output_shape=tuple(single.shape) if single is not None else (),
                params=kinds.parameter_count(node),
                parents=parents,
                is_model=kinds.is_graph_model(node),
            )
        )
        self.first_input[path] = flat_in[0] if flat_in else None
