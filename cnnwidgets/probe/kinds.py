"""One table of what cnnwidgets knows about Keras layer and operation kinds.

Every module that asks "what kind of layer is this?" asks here, so a new
layer kind is taught in one place. A catalog entry's ``kind`` is the layer's
class name ('Conv2D'), or 'ops.' plus the class name for a ``keras.ops`` /
operator node of a Keras 3 functional graph ('ops.Add' for ``x + y``), so an
operation never passes for the layer of the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

#: Prefix of the kind of a keras.ops / operator node.
OPS_PREFIX = "ops."

#: Layers that pool or pass values through without learning: not a CAM target.
POOLING = frozenset(
    {
        "MaxPooling2D",
        "AveragePooling2D",
        "GlobalAveragePooling2D",
        "GlobalMaxPooling2D",
        "Dropout",
        "SpatialDropout2D",
        "ZeroPadding2D",
        "Cropping2D",
    }
)

#: Layers whose output has a sliding window over their input (receptive fields).
WINDOWED = frozenset(
    {
        "Conv2D",
        "DepthwiseConv2D",
        "SeparableConv2D",
        "Conv1D",
        "DepthwiseConv1D",
        "SeparableConv1D",
        "MaxPooling2D",
        "AveragePooling2D",
        "MaxPooling1D",
        "AveragePooling1D",
    }
)

#: Layers where one output unit sees the whole input.
GLOBAL = frozenset(
    {
        "GlobalAveragePooling2D",
        "GlobalMaxPooling2D",
        "GlobalAveragePooling1D",
        "GlobalMaxPooling1D",
        "Flatten",
    }
)

#: Layers with a 2-D convolution kernel (the filter gallery's layers).
KERNEL = frozenset({"Conv2D", "DepthwiseConv2D", "SeparableConv2D"})

#: Layers that are the identity at inference time.
IDENTITY_AT_INFERENCE = frozenset(
    {"Dropout", "SpatialDropout2D", "InputLayer", "GaussianNoise", "Identity"}
)

#: Layers allowed between global pooling and the Dense layer of a plain CAM head.
CAM_PASSTHROUGH = frozenset({"Dropout", "Activation", "Softmax"})

#: Layers computed position by position (incremental occlusion calls them on a
#: window as they are).
POINTWISE_LAYERS = frozenset(
    {
        "Activation",
        "ReLU",
        "LeakyReLU",
        "ELU",
        "Softmax",
        "PReLU",
        "BatchNormalization",
        "LayerNormalization",
        "UnitNormalization",
        "Rescaling",
        "Normalization",
        "Dropout",
        "SpatialDropout2D",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
        "Identity",
        "ActivityRegularization",
    }
)

#: keras.ops nodes of one tensor computed element by element.
POINTWISE_OPS = frozenset(
    OPS_PREFIX + n
    for n in (
        "Relu",
        "Relu6",
        "Sigmoid",
        "Softplus",
        "Softsign",
        "Silu",
        "LeakyRelu",
        "HardSigmoid",
        "HardSilu",
        "Elu",
        "Selu",
        "Gelu",
        "Celu",
        "Tanh",
        "Abs",
        "Absolute",
        "Exp",
        "Log",
        "Sqrt",
        "Square",
        "Negative",
        "Clip",
        "Softmax",
        "LogSoftmax",
    )
)

#: Layers merging same-shaped maps element by element (they take a list).
MERGE_LAYERS = frozenset(
    {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"}
)

#: keras.ops nodes merging two same-shaped maps element by element.
MERGE_OPS = frozenset(
    OPS_PREFIX + n
    for n in ("Add", "Subtract", "Multiply", "Maximum", "Minimum", "Divide", "TrueDivide")
)

#: keras.ops nodes that take their inputs as one list.
LIST_OPS = frozenset({"ops.Concatenate"})

#: Layers with a sliding window whose window rule incremental occlusion knows,
#: and the rule: how a window of the layer's input becomes a window of its output
#: ('border' layers move the map's edge: the window is the answer).
WINDOW_RULES = {
    "Conv2D": "conv",
    "DepthwiseConv2D": "depthwise",
    "SeparableConv2D": "separable",
    "MaxPooling2D": "max_pool",
    "AveragePooling2D": "average_pool",
    "ZeroPadding2D": "border",
    "Cropping2D": "border",
}

#: The kinds of :data:`WINDOW_RULES`.
WINDOW_LAYERS = frozenset(WINDOW_RULES)

#: Layers that add zero rows and columns around a map (``padding`` = ((t, b), (l, r))).
PADDING_2D = frozenset({"ZeroPadding2D"})

#: Layers that cut rows and columns off a map (``cropping`` = ((t, b), (l, r))).
CROPPING_2D = frozenset({"Cropping2D"})

#: Pointwise and merge kinds working along one ``axis`` (an int): position by
#: position only when that axis is the channel axis.
CHANNEL_AXIS = frozenset(
    {
        "Softmax",
        "ops.Softmax",
        "ops.LogSoftmax",
        "Concatenate",
        "ops.Concatenate",
        "BatchNormalization",
    }
)

#: Normalizations whose ``axis`` may be a list: position by position only when
#: it is the channel axis alone.
CHANNEL_AXES = frozenset({"LayerNormalization", "UnitNormalization", "Normalization"})

#: Layers with ``shared_axes``: position by position only when both spatial axes are shared.
SHARED_AXES = frozenset({"PReLU"})

#: Dense layers (multiply-adds per output position: the size of their kernel).
DENSE = frozenset({"Dense"})

#: Inference batch norms (a linear map per channel: foldable into the convolution before).
BATCH_NORM = frozenset({"BatchNormalization"})

#: keras.ops node classes that are output activations (class name -> activation).
_OP_ACTIVATIONS = {"Softmax": "softmax", "Sigmoid": "sigmoid", "LogSoftmax": "log_softmax"}


def is_layer(obj: Any) -> bool:
    """True for a keras Layer; False for a bare keras.ops Operation node."""
    return isinstance(obj, keras.layers.Layer)


def kind_of(obj: Any) -> str:
    """The catalog kind: the class name, with 'ops.' before an operation's."""
    name = type(obj).__name__
    return name if is_layer(obj) else OPS_PREFIX + name


def is_graph_model(obj: Any) -> bool:
    """True for models whose inner layers can be re-traced (Functional, Sequential)."""
    if isinstance(obj, keras.Sequential):
        return True
    return isinstance(obj, keras.Model) and hasattr(obj, "_nodes_by_depth")


def activation_name(obj: Any) -> str | None:
    """The output activation of a layer or op node ('relu', 'softmax', ...) or None."""
    name = type(obj).__name__
    if not is_layer(obj):
        return _OP_ACTIVATIONS.get(name)
    if name == "Softmax":
        return "softmax"
    act = getattr(obj, "activation", None)
    if act is None:
        return None
    return getattr(act, "__name__", str(act))


def linear_part(layer: Any) -> Callable | None:
    """A function computing a Dense / Conv layer's output before its activation.

    It reads the layer's own variables at call time (so it follows training)
    and never changes the layer; None for other kinds."""
    kind = type(layer).__name__
    if kind == "Dense":

        def dense(x):
            y = keras.ops.matmul(x, layer.kernel)
            return y + layer.bias if layer.use_bias else y

        return dense
    if kind in ("Conv1D", "Conv2D", "Conv3D") and hasattr(layer, "convolution_op"):

        def conv(x):
            y = layer.convolution_op(x, layer.kernel)
            return y + layer.bias if layer.use_bias else y

        return conv
    return None


def parameter_count(obj: Any) -> int:
    """Number of weights a layer holds (0 for an operation node)."""
    weights = getattr(obj, "weights", None) or []
    total = 0
    for w in weights:
        n = 1
        for d in w.shape:
            n *= int(d)
        total += n
    return total
