"""The one place that understands Keras graphs.

A :class:`Probe` re-traces the user's model once on a fresh ``keras.Input``,
calling the model's own layer objects (so weights are shared, nothing is
copied or changed) and descending into nested models, so that every layer,
at any depth, is a tensor of one flat functional graph. From that graph it
builds cached functional submodels from the input to any set of layers, plus
the class scores on logits. Because everything hangs off one input, the
'Graph disconnected' error of a nested base model cannot happen.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from cnnwidgets.cache import LRUCache, array_key

#: Bytes of forward-pass activations one batch may take (see ``batch_size``).
DEFAULT_MEMORY_BUDGET = 512 * 2**20

_POOLING_KINDS = {
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Dropout",
    "SpatialDropout2D",
    "ZeroPadding2D",
    "Cropping2D",
}


@dataclass(frozen=True)
class LayerInfo:
    """One entry of the layer catalog.

    Attributes:
        name: the path, 'outer/inner' for a layer inside a nested model.
        kind: the layer class name ('Conv2D', 'Functional', ...).
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


@dataclass(frozen=True)
class Head:
    """How class scores are read from the model's output.

    kind: 'softmax', 'sigmoid' (multi-label), 'binary' (one sigmoid unit,
    shown as two classes), 'linear' (the output already is logits) or
    'logprob' (no logits found; scores are log-probabilities).
    """

    kind: str
    num_classes: int
    logits_from: str


def _is_graph_model(layer: Any) -> bool:
    """True for models whose inner layers can be re-traced (Functional, Sequential)."""
    if isinstance(layer, keras.Sequential):
        return True
    return isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")


def _activation_name(layer: Any) -> str | None:
    if type(layer).__name__ == "Softmax":
        return "softmax"
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return getattr(act, "__name__", str(act))


def _linear_part(layer: Any) -> Callable | None:
    """A function computing the layer's output before its activation.

    Reads the layer's own variables; never changes the layer."""
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


class _PreActivation(keras.layers.Layer):
    """Applies a closure; the closure hides the source layer from tracking."""

    def __init__(self, fn: Callable, **kwargs):
        super().__init__(**kwargs)
        self._fn = fn

    def call(self, x):
        return self._fn(x)


class Probe:
    """Inspect a Keras image model without changing it.

    Args:
        model: a built Keras model with one image input (N, H, W, C):
            Functional, Sequential (also one built by calling it on data),
            or either with nested models inside.
        class_names: optional names of the classes. For a one-unit sigmoid
            head give two: [negative, positive].
        preprocess: optional function applied to a float32 copy of the raw
            pixels (N, H, W, C) before the model, e.g.
            ``keras.applications.vgg16.preprocess_input``. Pictures are drawn
            from the raw pixels.
        memory_budget: bytes of activations one batch may use.
    """

    def __init__(
        self,
        model: keras.Model,
        class_names: Sequence[str] | None = None,
        preprocess: Callable[[np.ndarray], Any] | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ):
        if isinstance(model, Probe):
            raise TypeError("model is already a Probe; pass probe.model or use the probe itself")
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"expected a keras.Model, got {type(model).__name__}; load one with "
                "keras.saving.load_model(path) or build it with keras.Sequential / keras.Model"
            )
        try:
            inputs = model.inputs
        except (AttributeError, ValueError):
            inputs = None
        if not inputs:
            raise ValueError(
                f"model {model.name!r} has no defined inputs: build it first, for example by "
                "calling it once on a batch of images, or start it with keras.Input(shape)"
            )
        if len(inputs) != 1:
            raise ValueError(
                f"model {model.name!r} has {len(inputs)} inputs; cnnwidgets explains "
                "single-input image models only. Wrap the image branch in its own model."
            )
        if len(model.outputs) != 1:
            raise ValueError(
                f"model {model.name!r} has {len(model.outputs)} outputs; pass a model with "
                "one classification output, e.g. keras.Model(model.inputs, model.outputs[0])"
            )
        shape = tuple(inputs[0].shape)
        if len(shape) != 4:
            raise ValueError(
                f"model input has shape {shape}; cnnwidgets needs image models with "
                "(batch, height, width, channels) inputs"
            )
        if preprocess is not None and not callable(preprocess):
            raise TypeError("preprocess must be a function of a (N, H, W, C) float32 array")

        self.model = model
        self.preprocess = preprocess
        self.memory_budget = int(memory_budget)
        self.input_shape: tuple = (None,) + shape[1:]
        self._layer_objects: dict[str, Any] = {}
        self._tensors: dict[str, Any] = {}
        self._infos: list[LayerInfo] = []
        self._inputs_of: dict[str, Any] = {}
        self._submodels: dict[tuple, keras.Model] = {}
        self._activation_cache = LRUCache(maxsize=16)
        self._trace()
        self.head = self._find_head()
        self.class_names = self._check_class_names(class_names)
        self._names_given = class_names is not None

    # ------------------------------------------------------------------ graph

    def _trace(self) -> None:
        """Re-call every layer on a fresh Input, recording each output by path."""
        self._input = keras.Input(
            shape=self.input_shape[1:], dtype=self.model.inputs[0].dtype, name="cw_input"
        )
        self._producer: dict[int, str] = {id(self._input): "input"}
        self._output = self._call_model(self.model, self._input, prefix="")
        self._bytes_per_sample = 4 * sum(
            int(np.prod([d or 1 for d in info.output_shape[1:]])) for info in self._infos
        )

    def _call_model(self, model, x, prefix: str):
        if isinstance(model, keras.Sequential):
            for layer in model.layers:
                x = self._call_layer(layer, prefix, x)
            return x
        return model._run_through_graph(
            x, operation_fn=lambda op: lambda *a, **k: self._call_layer(op, prefix, *a, **k)
        )

    def _call_layer(self, layer, prefix: str, *args, **kwargs):
        path = prefix + layer.name
        if _is_graph_model(layer):
            arg = args[0] if len(args) == 1 else list(args)
            out = self._call_model(layer, arg, prefix=path + "/")
        else:
            out = layer(*args, **kwargs)
        self._record(path, layer, args, out)
        return out

    def _record(self, path: str, layer, args, out) -> None:
        flat_in = keras.tree.flatten(args)
        parents = tuple(self._producer[id(t)] for t in flat_in if id(t) in self._producer)
        # The innermost producer wins, so a nested model's output is claimed by
        # its last inner layer (recorded first), not by the container.
        for t in keras.tree.flatten(out):
            self._producer.setdefault(id(t), path)
        if path in self._layer_objects:
            # A layer called twice (weight sharing): keep its last call.
            self._infos = [i for i in self._infos if i.name != path]
        single = out if not isinstance(out, (list, tuple, dict)) else None
        shape = tuple(single.shape) if single is not None else ()
        self._layer_objects[path] = layer
        self._tensors[path] = single
        self._infos.append(
            LayerInfo(
                name=path,
                kind=type(layer).__name__,
                output_shape=shape,
                params=int(sum(np.prod(w.shape) for w in layer.weights)),
                parents=parents,
                is_model=_is_graph_model(layer),
            )
        )
        self._inputs_of[path] = flat_in[0] if flat_in else None

    def _find_head(self) -> Head:
        """Locate the logits tensor without touching the model."""
        final = self._producer.get(id(self._output))
        layer = self._layer_objects.get(final)
        act = _activation_name(layer) if layer is not None else None
        units = int(self._output.shape[-1])
        logits = None
        if act in ("softmax", "sigmoid"):
            kind = type(layer).__name__
            if kind in ("Activation", "Softmax"):
                logits = self._inputs_of[final]
            else:
                linear = _linear_part(layer)
                if linear is not None:
                    logits = _PreActivation(linear, name="cw_logits")(self._inputs_of[final])
            if logits is not None:
                head_kind = act if (act == "softmax" or units > 1) else "binary"
                self._scores = self._binary_scores(logits) if head_kind == "binary" else logits
                return Head(head_kind, 2 if head_kind == "binary" else units, final)
        elif act in ("linear", None) and layer is not None and type(layer).__name__ != "Lambda":
            if units == 1:
                self._scores = self._binary_scores(self._output)
                return Head("binary", 2, final)
            self._scores = self._output
            return Head("linear", units, final)
        warnings.warn(
            f"could not find the logits under the output layer {final!r}; class scores are "
            "log-probabilities, which makes gradients of one class depend on the others",
            stacklevel=3,
        )
        self._scores = keras.ops.log(keras.ops.clip(self._output, 1e-12, 1.0))
        return Head("logprob", units, final)

    @staticmethod
    def _binary_scores(logit):
        # One sigmoid unit is two classes: negative = -logit, positive = logit.
        return keras.ops.concatenate([-logit, logit], axis=-1)

    def _check_class_names(self, names):
        k = self.head.num_classes
        if names is None:
            if self.head.kind == "binary":
                return ["negative", "positive"]
            return [str(i) for i in range(k)]
        names = [str(n) for n in names]
        if len(names) != k:
            hint = " ([negative, positive] for a one-unit sigmoid head)" if k == 2 else ""
            raise ValueError(
                f"class_names has {len(names)} names but the model has {k} classes{hint}"
            )
        return names

    # ---------------------------------------------------------------- catalog

    @property
    def layers(self) -> list[LayerInfo]:
        """Every layer in graph order, nested ones as 'outer/inner'."""
        return list(self._infos)

    @property
    def conv_layers(self) -> list[str]:
        """Names of layers with 4-D (N, H, W, C) outputs (nested model containers excluded)."""
        return [i.name for i in self._infos if i.is_4d and not i.is_model]

    @property
    def last_conv_layer(self) -> str:
        """The default CAM layer: the last 4-D layer with spatial extent that is not pooling."""
        for info in reversed(self._infos):
            h, w = info.output_shape[1:3] if info.is_4d else (0, 0)
            spatial = (h is None or h > 1) or (w is None or w > 1)
            if info.is_4d and not info.is_model and spatial and info.kind not in _POOLING_KINDS:
                return info.name
        raise ValueError("the model has no 4-D layer to explain")

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def layer_info(self, name: str) -> LayerInfo:
        path = self.resolve(name)
        return next(i for i in self._infos if i.name == path)

    def layer(self, name: str):
        """The model's own layer object at this path (read it, never change it)."""
        return self._layer_objects[self.resolve(name)]

    def resolve(self, name: Any) -> str:
        """The full path of a layer given its path, its unique short name or the object.

        Raises ValueError listing the closest names when nothing matches."""
        if isinstance(name, keras.layers.Layer):
            for path, obj in self._layer_objects.items():
                if obj is name:
                    return path
            raise ValueError(f"layer {name.name!r} is not part of model {self.model.name!r}")
        if not isinstance(name, str):
            raise TypeError(f"a layer is given by its name (str), got {type(name).__name__}")
        if name in self._layer_objects:
            return name
        short = [p for p in self._layer_objects if p.rsplit("/", 1)[-1] == name]
        if len(short) == 1:
            return short[0]
        if len(short) > 1:
            raise ValueError(f"layer name {name!r} is ambiguous; use one of {short}")
        close = difflib.get_close_matches(name, list(self._layer_objects), n=5, cutoff=0.4)
        hint = f"; closest: {close}" if close else f"; layers: {list(self._layer_objects)[:12]}..."
        raise ValueError(f"model {self.model.name!r} has no layer {name!r}{hint}")

    def resolve_4d(self, name: Any) -> str:
        path = self.resolve(name)
        if not self.layer_info(path).is_4d:
            close = difflib.get_close_matches(path, self.conv_layers, n=3, cutoff=0.0)
            raise ValueError(
                f"layer {path!r} has output shape {self.layer_info(path).output_shape}, not "
                f"(N, H, W, C); pick a convolutional layer such as {close}"
            )
        return path

    # -------------------------------------------------------------- submodels

    def submodel(self, layer_names: Iterable[str] | str, scores: bool = False) -> keras.Model:
        """A cached keras.Model from the model input to these layers' outputs.

        With ``scores=True`` the class scores (N, K) on logits are appended as
        the last output. Works for layers inside nested models."""
        if isinstance(layer_names, str):
            layer_names = [layer_names]
        paths = tuple(self.resolve(n) for n in layer_names)
        key = (paths, scores)
        if key not in self._submodels:
            missing = [p for p in paths if self._tensors[p] is None]
            if missing:
                raise ValueError(
                    f"layers {missing} have several outputs; pick a single-output layer"
                )
            outputs = [self._tensors[p] for p in paths]
            if scores:
                outputs.append(self._scores)
            self._submodels[key] = keras.Model(self._input, outputs, name="cw_submodel")
        return self._submodels[key]

    @property
    def scores_model(self) -> keras.Model:
        """keras.Model: images -> [class scores (N, K) on logits, model output]."""
        key = ((), "scores+output")
        if key not in self._submodels:
            self._submodels[key] = keras.Model(
                self._input, [self._scores, self._output], name="cw_scores"
            )
        return self._submodels[key]

    # ----------------------------------------------------------------- images

    def check_images(self, images: Any) -> np.ndarray:
        """Validate raw images and return them as float32 (N, H, W, C).

        Accepts (H, W), (H, W, C) or (N, H, W, C); grayscale images are
        repeated to three channels for an RGB model."""
        if hasattr(images, "numpy") and not isinstance(images, np.ndarray):
            images = images.numpy()
        try:
            arr = np.asarray(images)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(
                f"images must be an array (N, H, W, C); got {type(images).__name__}"
            ) from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"images must be numeric, got dtype {arr.dtype}")
        want_c = self.input_shape[3]
        if arr.ndim == 2:
            arr = arr[None, :, :, None]
        elif arr.ndim == 3:
            # (H, W, C) is one image; (N, H, W) is a batch of grayscale images.
            if arr.shape[-1] in (1, 3, 4) or arr.shape[-1] == want_c:
                arr = arr[None]
            else:
                arr = arr[..., None]
        if arr.ndim != 4:
            raise ValueError(
                f"images have shape {np.shape(images)}; expected (H, W, C) or (N, H, W, C)"
            )
        if arr.shape[0] == 0:
            raise ValueError("images is an empty batch")
        c = arr.shape[3]
        if want_c is not None and c != want_c:
            if c == 1 and want_c == 3:
                arr = np.repeat(arr, 3, axis=3)
            else:
                hint = (
                    " (drop the alpha channel with image[..., :3])"
                    if c == 4 and want_c == 3
                    else ""
                )
                raise ValueError(f"images have {c} channels but the model expects {want_c}{hint}")
        h, w = self.input_shape[1:3]
        if (h is not None and arr.shape[1] != h) or (w is not None and arr.shape[2] != w):
            raise ValueError(
                f"images are {arr.shape[1]}x{arr.shape[2]} but the model expects {h}x{w}; "
                f"resize them first, e.g. cnnwidgets.assets.resize(image, ({h}, {w}))"
            )
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ValueError("images contain NaN or infinite values")
        return arr

    def model_inputs(self, raw: np.ndarray) -> np.ndarray:
        """Apply ``preprocess`` to a copy of validated raw images: (N, H, W, C) float32."""
        if self.preprocess is None:
            return raw
        out = self.preprocess(np.array(raw, dtype=np.float32, copy=True))
        return np.asarray(out, dtype=np.float32)

    # ---------------------------------------------------------------- forward

    def batch_size(self, per_sample_factor: float = 1.0) -> int:
        """Images per forward batch so activations stay within ``memory_budget``."""
        per = max(1.0, self._bytes_per_sample * per_sample_factor)
        return int(np.clip(self.memory_budget // per, 1, 256))

    def run(
        self, model: keras.Model, x: np.ndarray, batch_size: int | None = None
    ) -> list[np.ndarray]:
        """Run a submodel on preprocessed inputs in batches; returns its outputs as arrays."""
        bs = batch_size or self.batch_size()
        chunks: list[list[np.ndarray]] = []
        for start in range(0, len(x), bs):
            with _quiet_retracing():
                out = model.predict_on_batch(x[start : start + bs])
            chunks.append(list(out) if isinstance(out, (list, tuple)) else [out])
        return [np.concatenate(parts, axis=0) for parts in zip(*chunks)]

    def scores(self, images: Any, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Class scores on logits and probabilities, both (N, K) float32."""
        x = self.model_inputs(self.check_images(images))
        scores, output = self.run(self.scores_model, x, batch_size)
        return scores.astype(np.float32), self._probabilities(scores, output)

    def _probabilities(self, scores: np.ndarray, output: np.ndarray) -> np.ndarray:
        kind = self.head.kind
        if kind == "binary":
            if self._activation_of_head() == "sigmoid":
                p = output[:, :1].astype(np.float32)
            else:
                p = 1.0 / (1.0 + np.exp(-scores[:, 1:2]))
            return np.concatenate([1.0 - p, p], axis=1).astype(np.float32)
        if kind == "linear":
            z = scores - scores.max(axis=1, keepdims=True)
            e = np.exp(z)
            return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return output.astype(np.float32)

    def _activation_of_head(self) -> str | None:
        return _activation_name(self._layer_objects[self.head.logits_from])

    def predict(self, images: Any, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities (N, K) float32; a one-unit sigmoid head gives [1 - p, p]."""
        return self.scores(images, batch_size)[1]

    def activations(
        self, images: Any, layers: Iterable[str] | str, batch_size: int | None = None
    ) -> dict[str, np.ndarray]:
        """{layer path: (N, ...) float32 outputs} for one batched pass over all layers."""
        raw = self.check_images(images)
        names = [layers] if isinstance(layers, str) else list(layers)
        paths = tuple(self.resolve(n) for n in names)
        key = (array_key(raw), paths)
        hit = self._activation_cache.get(key)
        if hit is None:
            outs = self.run(self.submodel(paths), self.model_inputs(raw), batch_size)
            hit = dict(zip(paths, (o.astype(np.float32) for o in outs)))
            self._activation_cache.put(key, hit)
        # Answer with the names as asked, so {'block5_conv3': ...} works for nested paths.
        return {n: hit[p] for n, p in zip(names, paths)}

    def class_index(self, cls: Any) -> int:
        """Index of a class given as an int or a class name."""
        if isinstance(cls, (int, np.integer)) and not isinstance(cls, bool):
            if not 0 <= cls < self.num_classes:
                raise ValueError(
                    f"class {cls} out of range; the model has {self.num_classes} classes"
                )
            return int(cls)
        if isinstance(cls, str):
            if cls in self.class_names:
                return self.class_names.index(cls)
            if not self._names_given and self.head.kind != "binary":
                raise ValueError(
                    f"class {cls!r} given by name, but the model's classes have no names; "
                    "use an index, or name them: cw.Probe(model, class_names=[...])"
                )
            close = difflib.get_close_matches(cls, self.class_names, n=3)
            raise ValueError(f"unknown class {cls!r}; closest: {close or self.class_names[:10]}")
        raise TypeError(f"a class is an int index or a name, got {type(cls).__name__}")

    def resolve_classes(self, classes: Any, raw: np.ndarray) -> np.ndarray:
        """(N, K) int class indices: None is each image's top-1 prediction;
        an int or name is shared by all images; a list gives K classes; an
        (N, K) integer array gives each image its own classes."""
        n = len(raw)
        if isinstance(classes, np.ndarray) and classes.ndim == 2:
            if not np.issubdtype(classes.dtype, np.integer):
                raise TypeError("a 2-D classes array must hold integer class indices (N, K)")
            if classes.shape[0] != n or classes.shape[1] == 0:
                raise ValueError(f"classes has shape {classes.shape}; expected ({n}, K)")
            if classes.min() < 0 or classes.max() >= self.num_classes:
                raise ValueError(f"class indices must be in [0, {self.num_classes})")
            return classes.astype(np.int64)
        if classes is None:
            top = self.predict(raw).argmax(axis=1)
            return top[:, None].astype(np.int64)
        if isinstance(classes, (list, tuple, np.ndarray)):
            if len(classes) == 0:
                raise ValueError("classes is empty; pass None for the top prediction")
            idx = [self.class_index(c) for c in classes]
        else:
            idx = [self.class_index(classes)]
        return np.tile(np.asarray(idx, np.int64)[None, :], (n, 1))

    def __repr__(self) -> str:
        return (
            f"Probe({self.model.name!r}, {len(self._infos)} layers, head={self.head.kind}, "
            f"classes={self.num_classes}, last_conv_layer={self.last_conv_layer!r})"
        )


def as_probe(model_or_probe: Any, class_names=None, preprocess=None) -> Probe:
    """Return the probe itself, or a cached Probe for a keras.Model."""
    if isinstance(model_or_probe, Probe):
        return model_or_probe
    if not isinstance(model_or_probe, keras.Model):
        raise TypeError(
            f"expected a keras.Model or cnnwidgets.Probe, got {type(model_or_probe).__name__}"
        )
    key = (id(model_or_probe), tuple(class_names) if class_names else None, id(preprocess))
    probe = _PROBES.get(key)
    if probe is None or probe.model is not model_or_probe:
        probe = Probe(model_or_probe, class_names=class_names, preprocess=preprocess)
        _PROBES.put(key, probe)
    return probe


_PROBES = LRUCache(maxsize=8)


class _RetracingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_RETRACING_FILTER = _RetracingFilter()


@contextlib.contextmanager
def _quiet_retracing():
    """Drop TensorFlow's 'triggered tf.function retracing' warning while a
    submodel runs. Every submodel gets its own predict function, traced once;
    TensorFlow counts those traces together (they share Keras' code) and, after
    five layers browsed, warns about a retracing loop that is not one."""
    logger = logging.getLogger("tensorflow")
    logger.addFilter(_RETRACING_FILTER)
    try:
        yield
    finally:
        logger.removeFilter(_RETRACING_FILTER)
