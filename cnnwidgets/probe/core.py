"""The Probe: one model's catalog, submodels, class scores and cached results."""

from __future__ import annotations

import contextlib
import difflib
import itertools
import logging
import weakref
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

import keras
import numpy as np

from cnnwidgets import cache
from cnnwidgets.cache import array_key
from cnnwidgets.probe import kinds
from cnnwidgets.probe.head import (
    Head,
    find_head,
    not_a_classifier,
    output_logits,
    probabilities,
    several_outputs,
)
from cnnwidgets.probe.images import check_images, check_preprocessed
from cnnwidgets.probe.randomize import leaf_layers, randomized_twin
from cnnwidgets.probe.sizes import shape_fits, size_error, smallest_side
from cnnwidgets.probe.targets import Target, as_targets, target_keys
from cnnwidgets.probe.trace import GraphTrace, LayerInfo
from cnnwidgets.probe.version import weights_version

T = TypeVar("T")

#: Bytes of forward-pass activations one batch may take (see ``batch_size``).
DEFAULT_MEMORY_BUDGET = 512 * 2**20

_TOKENS = itertools.count()


def check_batch_size(batch_size: Any, name: str = "batch_size") -> int | None:
    """None, or a positive integer (numpy integers included) as an int."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int or None, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"{name} must be a positive int or None, got {batch_size!r}")
    return int(batch_size)


class Probe:
    """Inspect a Keras image model without changing it.

    Args:
        model: a built Keras model with one image input (N, H, W, C) and one
            class-vector output (N, K): Functional (keras.ops and operator
            nodes included), Sequential (also one built by calling it on
            data), either with nested models inside, or a model loaded from
            a legacy HDF5 file.
        class_names: optional names of the classes. For a one-unit sigmoid
            head give two: [negative, positive].
        preprocess: optional function applied to a float32 copy of the raw
            pixels (N, H, W, C) before the model, e.g.
            ``keras.applications.vgg16.preprocess_input``. It must keep the
            shape. Pictures are drawn from the raw pixels.
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
        shape = tuple(inputs[0].shape)
        if len(shape) != 4:
            raise ValueError(
                f"model input has shape {shape}; cnnwidgets needs image models with "
                "(batch, height, width, channels) inputs"
            )
        if preprocess is not None and not callable(preprocess):
            raise TypeError("preprocess must be a function of a (N, H, W, C) float32 array")
        if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, np.integer)):
            raise TypeError(f"memory_budget must be a number of bytes, got {memory_budget!r}")
        if memory_budget < 1:
            raise ValueError(f"memory_budget must be positive, got {memory_budget}")

        self.model = model
        self.preprocess = preprocess
        self.memory_budget = int(memory_budget)
        self.input_shape: tuple = (None,) + shape[1:]
        self._token = next(_TOKENS)
        self._trace = GraphTrace(model, self.input_shape)
        self._names_given = class_names is not None
        if len(self._trace.outputs) == 1:
            self.head, self._scores = find_head(self._trace, model.name, self._names_given)
        else:
            # Several outputs: classes= would be ambiguous; targets pick an output.
            self.head, self._scores = Head("none", 0, self._trace.output_producers[0]), None
        self.class_names = self._check_class_names(class_names)
        self._submodels: dict[tuple, keras.Model] = {}
        self._structural: dict[tuple, Any] = {}
        # Results of a probe nobody holds any more are dropped with it.
        weakref.finalize(self, cache.RESULTS.drop_owner, self._token)

    def require_classes(self) -> None:
        """Raise a ValueError saying what works when the model is not a classifier."""
        if self.head.kind == "none":
            if self._trace.output is None:
                n = len(self.output_names)
                raise ValueError(
                    several_outputs(
                        self.model.name,
                        self.output_names,
                        [self.output_shape(i) for i in range(n)],
                        [self.output_logits(i)[1] for i in range(n)],
                    )
                )
            raise ValueError(
                not_a_classifier(
                    self.model.name, tuple(self._trace.output.shape), self.output_logits(0)[1]
                )
            )

    def _check_class_names(self, names):
        k = self.head.num_classes
        if self.head.kind == "none":
            if names is not None:
                return self._segmentation_names(names)
            return []
        if names is None:
            if self.head.kind == "binary":
                return ["negative", "positive"]
            return [str(i) for i in range(k)]
        if isinstance(names, str):
            raise TypeError("class_names must be a list of names, not one string")
        names = [str(n) for n in names]
        if len(names) != k:
            hint = " ([negative, positive] for a one-unit sigmoid head)" if k == 2 else ""
            raise ValueError(
                f"class_names has {len(names)} names but the model has {k} classes{hint}"
            )
        return names

    def _segmentation_names(self, names: Any) -> list[str]:
        """Names of a single segmentation output's channels (N, H, W, K): the
        classes its regions are labelled with; any other non-class output refuses names."""
        shape = tuple(self._trace.output.shape) if self._trace.output is not None else ()
        if len(shape) != 4 or shape[-1] is None:
            self.require_classes()
        if isinstance(names, str):
            raise TypeError("class_names must be a list of names, not one string")
        names = [str(n) for n in names]
        if len(names) != shape[-1]:
            raise ValueError(
                f"class_names has {len(names)} names but the segmentation output has "
                f"{shape[-1]} channels"
            )
        return names

    # ---------------------------------------------------------------- catalog

    @property
    def layers(self) -> list[LayerInfo]:
        """Every layer and operation node in graph order, nested ones as 'outer/inner'."""
        return list(self._trace.infos)

    @property
    def conv_layers(self) -> list[str]:
        """Names of layers with 4-D (N, H, W, C) outputs (nested model containers excluded)."""
        return [i.name for i in self._trace.infos if i.is_4d and not i.is_model]

    @property
    def last_conv_layer(self) -> str:
        """The default CAM layer: the last 4-D layer with spatial extent that is not
        pooling, nor the head of a segmentation output (its channels are the class
        scores themselves, whose Grad-CAM says nothing about where the evidence is)."""
        heads = self._segmentation_heads()
        for info in reversed(self._trace.infos):
            if not info.is_4d or info.is_model or info.kind in kinds.POOLING:
                continue
            if info.name in heads:
                continue
            h, w = info.output_shape[1:3]
            if (h is None or h > 1) or (w is None or w > 1):
                return info.name
        raise ValueError("the model has no 4-D layer to explain")

    def _segmentation_heads(self) -> set[str]:
        """Paths of the layers that make a 4-D output's class scores: the output's
        producer, and the layer under it when the producer is an activation alone."""
        trace, heads = self._trace, set()
        for tensor, path in zip(trace.outputs, trace.output_producers):
            if len(tensor.shape) != 4:
                continue
            heads.add(path)
            node = trace.objects.get(path)
            if (
                type(node).__name__ in ("Activation", "Softmax", "ReLU")
                and path in trace.first_input
            ):
                below = trace.producer(trace.first_input[path])
                if below is not None:
                    heads.add(below)
        return heads

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def layer_info(self, name: Any) -> LayerInfo:
        path = self.resolve(name)
        return next(i for i in self._trace.infos if i.name == path)

    def layer(self, name: Any) -> Any:
        """The model's own layer (or keras.ops node) at this path; read it, never change it."""
        return self._trace.objects[self.resolve(name)]

    def tensor(self, name: Any) -> Any:
        """The symbolic output of this path in the probe's flat graph (None if it has several)."""
        return self._trace.tensors[self.resolve(name)]

    def resolve(self, name: Any) -> str:
        """The full path of a layer given its path, its unique short name or the object.

        Raises ValueError listing the closest names when nothing matches."""
        objects = self._trace.objects
        if isinstance(name, keras.Operation) and not isinstance(name, str):
            for path, obj in objects.items():
                if obj is name:
                    return path
            raise ValueError(f"layer {name.name!r} is not part of model {self.model.name!r}")
        if not isinstance(name, str):
            raise TypeError(f"a layer is given by its name (str), got {type(name).__name__}")
        if name in objects:
            return name
        short = [p for p in objects if p.rsplit("/", 1)[-1] == name]
        if len(short) == 1:
            return short[0]
        if len(short) > 1:
            raise ValueError(f"layer name {name!r} is ambiguous; use one of {short}")
        close = difflib.get_close_matches(name, list(objects), n=5, cutoff=0.4)
        hint = f"; closest: {close}" if close else f"; layers: {list(objects)[:12]}..."
        raise ValueError(f"model {self.model.name!r} has no layer {name!r}{hint}")

    def resolve_4d(self, name: Any) -> str:
        """Like :meth:`resolve`, and the layer must output (N, H, W, C)."""
        path = self.resolve(name)
        info = self.layer_info(path)
        if not info.is_4d or info.is_model:
            close = difflib.get_close_matches(path, self.conv_layers, n=3, cutoff=0.0)
            what = "a nested model" if info.is_model else f"output shape {info.output_shape}"
            raise ValueError(
                f"layer {path!r} has {what}, not (N, H, W, C); pick a convolutional layer "
                f"such as {close}"
            )
        return path

    # -------------------------------------------------------------- submodels

    def submodel(
        self,
        layer_names: Iterable[str] | str,
        scores: bool = False,
        targets: Sequence[Target] | None = None,
    ) -> keras.Model:
        """A cached keras.Model from the model input to these layers' outputs.

        With ``scores=True`` the class scores (N, K) on logits are appended as
        the last output; with ``targets`` (K :mod:`~cnnwidgets.probe.targets`)
        their scores (N, K) float32 are. Works for layers inside nested models
        and for keras.ops nodes."""
        if isinstance(layer_names, str):
            layer_names = [layer_names]
        paths = tuple(self.resolve(n) for n in layer_names)
        if targets is not None:
            if scores:
                raise TypeError("give scores=True or targets, not both")
            targets = as_targets(targets)
            key = (paths, "targets", target_keys(targets))
            if key not in self._submodels:
                outputs = [self._trace.tensors[p] for p in paths]
                if any(t is None for t in outputs):
                    raise ValueError("these layers have several outputs; pick single-output ones")
                outputs.append(self.target_tensor(targets))
                self._submodels[key] = keras.Model(self._trace.input, outputs, name="cw_submodel")
            return self._submodels[key]
        key = (paths, scores)
        if key not in self._submodels:
            tensors = self._trace.tensors
            missing = [p for p in paths if tensors[p] is None]
            if missing:
                raise ValueError(
                    f"layers {missing} have several outputs; pick a single-output layer"
                )
            outputs = [tensors[p] for p in paths]
            if scores:
                self.require_classes()
                outputs.append(self._scores)
            self._submodels[key] = keras.Model(self._trace.input, outputs, name="cw_submodel")
        return self._submodels[key]

    def split(self, layer: Any, targets: Sequence[Target] | None = None) -> keras.Model:
        """The graph above a layer: a cached keras.Model [model input, this
        layer's output] -> class scores (N, K) on logits, or the targets'
        scores (N, K). The input stays an input for paths that bypass the
        layer (skip connections), so gradients in the layer's output are
        those a tape watching that tensor gives."""
        path = self.resolve(layer)
        tensor = self._trace.tensors[path]
        if tensor is None:
            raise ValueError(f"layer {path!r} has several outputs; pick a single-output layer")
        if targets is None:
            self.require_classes()
            key = ((path,), "split")
            out = self._scores
        else:
            targets = as_targets(targets)
            key = ((path,), "split", target_keys(targets))
            out = None
        if key not in self._submodels:
            if out is None:
                out = self.target_tensor(targets)
            self._submodels[key] = keras.Model(
                [self._trace.input, tensor], out, name="cw_split"
            )
        return self._submodels[key]

    @property
    def scores_model(self) -> keras.Model:
        """keras.Model: images -> [class scores (N, K) on logits, model output]."""
        self.require_classes()
        key = ((), "scores+output")
        if key not in self._submodels:
            self._submodels[key] = keras.Model(
                self._trace.input, [self._scores, self._trace.output], name="cw_scores"
            )
        return self._submodels[key]

    # ------------------------------------------------------ outputs, targets

    @property
    def output_names(self) -> list[str]:
        """The name of each model output, in the order of ``model.outputs``."""
        return list(self._trace.output_names)

    def output_index(self, which: Any) -> int:
        """The position of an output given by index or name (a dict output's key too).

        Raises ValueError naming the outputs when nothing matches."""
        names = self._trace.output_names
        n = len(names)
        if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
            if not -n <= which < n:
                raise ValueError(
                    f"output {int(which)} out of range; model {self.model.name!r} has {n} "
                    f"output{'s' if n > 1 else ''} {names}"
                )
            return int(which) % n
        if isinstance(which, str):
            if which in names:
                return names.index(which)
            if which in self._trace.output_aliases:
                return self._trace.output_aliases[which]
            known = names + list(self._trace.output_aliases)
            close = difflib.get_close_matches(which, known, n=3, cutoff=0.4)
            hint = f"; closest: {close}" if close else ""
            raise ValueError(
                f"model {self.model.name!r} has no output {which!r}; its outputs are {names}{hint}"
            )
        raise TypeError(f"an output is given by index (int) or name (str), got {which!r}")

    def output_shape(self, index: int) -> tuple:
        """The static shape of output ``index``, batch axis None."""
        return tuple(self._trace.outputs[index].shape)

    def output_tensor(self, index: int) -> Any:
        """Output ``index`` as a symbolic tensor of the probe's flat graph."""
        return self._trace.outputs[index]

    def output_head(self, index: int) -> tuple[Head, Any]:
        """The class head of output ``index`` and its (N, K) scores tensor on
        logits (None with Head kind 'none'). For a single-output model this is
        ``(probe.head, the class scores)``."""
        if self._trace.output is not None:
            return self.head, self._scores
        return self.cached(
            "output_head",
            (index,),
            lambda: find_head(self._trace, self.model.name, True, index),
            versioned=False,
        )

    def output_logits(self, index: int) -> tuple[Any, str | None]:
        """Output ``index`` before its softmax / sigmoid and the activation removed
        (see :func:`cnnwidgets.probe.head.output_logits`); built once."""
        return self.cached(
            "output_logits", (index,), lambda: output_logits(self._trace, index), versioned=False
        )

    def target_tensor(self, targets: Sequence[Target]) -> Any:
        """The scores of K targets on the probe's flat graph, (N, K) float32,
        built once per tuple of target keys. Targets are checked first."""
        targets = as_targets(targets)

        def build() -> Any:
            for t in targets:
                t.check(self)
            cols = [keras.ops.cast(t.tensor(self), "float32") for t in targets]
            return keras.ops.stack(cols, axis=1)

        return self.cached("target_tensor", target_keys(targets), build, versioned=False)

    def target_model(self, targets: Sequence[Target]) -> keras.Model:
        """keras.Model: preprocessed images (N, H, W, C) -> target scores (N, K) float32."""
        targets = as_targets(targets)
        key = ((), "targets", target_keys(targets))
        if key not in self._submodels:
            self._submodels[key] = keras.Model(
                self._trace.input, self.target_tensor(targets), name="cw_targets"
            )
        return self._submodels[key]

    def target_scores(
        self,
        images: Any,
        targets: Any,
        batch_size: int | None = None,
        cache: bool = True,
    ) -> np.ndarray:
        """Scores of targets on raw images: (N, K) float32 (read-only when cached).

        ``targets``: one target or a list of K (see :mod:`cnnwidgets.probe.targets`).
        ``cache=False`` for throw-away batches (occluded copies)."""
        targets = as_targets(targets)
        raw = self.check_images(images)
        batch_size = check_batch_size(batch_size)
        for t in targets:
            t.check(self)

        def compute() -> np.ndarray:
            model = self.target_model(targets)
            (scores,) = self.run(model, self.model_inputs(raw), batch_size)
            return scores.astype(np.float32)

        if not cache:
            return compute()
        return self.cached("target_scores", (array_key(raw), target_keys(targets)), compute)

    def outputs(self, images: Any, batch_size: int | None = None) -> list[np.ndarray]:
        """The model's outputs on raw images, in ``output_names`` order: a list
        of float32 arrays, each (N, ...) as the model gives it (read-only, cached)."""
        raw = self.check_images(images)
        batch_size = check_batch_size(batch_size)
        key = ((), "outputs")

        def compute() -> tuple[np.ndarray, ...]:
            if key not in self._submodels:
                self._submodels[key] = keras.Model(
                    self._trace.input, list(self._trace.outputs), name="cw_outputs"
                )
            out = self.run(self._submodels[key], self.model_inputs(raw), batch_size)
            return tuple(np.asarray(o, np.float32) for o in out)

        return list(self.cached("outputs", (array_key(raw),), compute))

    def pre_activation(self, name: Any) -> Callable | None:
        """A function giving this Dense / Conv layer's output before its activation
        (reading its current variables), or None for other kinds."""
        return kinds.linear_part(self.layer(name))

    def randomized(self, seed: int = 0, layers: Iterable[Any] | None = None) -> Probe:
        """A Probe of the same architecture with re-initialized weights.

        Built with ``keras.models.clone_model`` (new layer objects, new
        weights), every random initializer seeded from ``seed`` and the layer's
        position, so the result is deterministic; this model is never changed.
        Class names and preprocess are kept.

        Args:
            seed: initializer seed.
            layers: None (re-initialize everything) or names of the layers to
                re-initialize; the others get copies of the current trained
                weights (e.g. the top layers only, for Adebayo et al.'s
                cascading test).
        """
        names = (
            None
            if layers is None
            else frozenset(self.resolve(n).rsplit("/", 1)[-1] for n in layers)
        )

        def build() -> Probe:
            keep = None
            if names is not None:
                keep = [la.name for la in leaf_layers(self.model) if la.name not in names]
            return Probe(
                randomized_twin(self.model, seed, keep),
                class_names=self.class_names if self._names_given else None,
                preprocess=self.preprocess,
                memory_budget=self.memory_budget,
            )

        # A twin that keeps trained layers follows the model's weights.
        return self.cached("randomized", (int(seed), names), build, versioned=names is not None)

    # --------------------------------------------------------- weights, cache

    def weights_version(self) -> str:
        """A digest of the model's current weights (see :mod:`cnnwidgets.probe.version`)."""
        return weights_version(self.model)

    def cached(
        self, kind: str, key: Hashable, compute: Callable[[], T], versioned: bool = True
    ) -> T:
        """The one way results are cached in cnnwidgets.

        The value of ``compute()`` is stored in :data:`cnnwidgets.cache.RESULTS`
        under this probe, ``kind`` (a name for the kind of result), ``key``
        (a tuple of its inputs and parameters) and, unless ``versioned=False`` (things
        that depend on the architecture only, like receptive fields or
        compiled functions, kept on the probe itself), the model's current
        weights version. Arrays in the stored value become read-only."""
        if not versioned:
            local = (kind, key)
            if local not in self._structural:
                self._structural[local] = compute()
            return self._structural[local]
        return cache.RESULTS.get_or_compute(self.result_key(kind, *key), compute)

    def result_key(self, kind: str, *parts: Hashable) -> tuple:
        """The key of a result in :data:`cnnwidgets.cache.RESULTS` for the
        weights the model has now; for work that stores its result itself
        (take the key before computing, so weights changed meanwhile never
        label an older result as current)."""
        return (self._token, kind, parts, self.weights_version())

    # ----------------------------------------------------------------- images

    def check_images(self, images: Any) -> np.ndarray:
        """Validate raw images and return them as float32 (N, H, W, C).

        Accepts (H, W), (H, W, C) or (N, H, W, C); grayscale images are
        repeated to three channels for an RGB model. A model with free height
        and width refuses images too small for its layers, saying the
        smallest size it takes."""
        raw = check_images(images, self.input_shape)
        if None in self.input_shape[1:3]:
            self._check_size(raw.shape[1], raw.shape[2], raw.shape[3])
        return raw

    def _check_size(self, height: int, width: int, channels: int) -> None:
        def fits(h: int, w: int) -> bool:
            key = (h, w, channels)
            return self.cached("size", key, lambda: shape_fits(self.model, *key), versioned=False)

        if fits(height, width):
            return
        # The size is to blame only if some larger size works; otherwise the
        # model's own error says more than a guess would.
        side = smallest_side(lambda s: fits(s, s), start=min(height, width))
        if side is not None:
            raise ValueError(size_error(self.model.name, height, width, side))

    def model_inputs(self, raw: np.ndarray) -> np.ndarray:
        """Apply ``preprocess`` to a copy of validated raw images: (N, H, W, C) float32."""
        if self.preprocess is None:
            return raw
        return check_preprocessed(self.preprocess(np.array(raw, dtype=np.float32, copy=True)), raw)

    # ---------------------------------------------------------------- forward

    def batch_size(self, per_sample_factor: float = 1.0) -> int:
        """Images per forward batch so activations stay within ``memory_budget``."""
        per = max(1.0, self._trace.bytes_per_sample * per_sample_factor)
        return int(np.clip(self.memory_budget // per, 1, 256))

    def run(
        self,
        model: keras.Model,
        x: np.ndarray,
        batch_size: int | None = None,
        progress: Callable[[int, int], object] | None = None,
    ) -> list[np.ndarray]:
        """Run a submodel on preprocessed inputs in batches; returns its outputs as arrays.

        ``progress(done, total)`` is called after every batch (and may raise
        :class:`cnnwidgets.Cancelled` to stop between batches)."""
        bs = check_batch_size(batch_size) or self.batch_size()
        chunks: list[list[np.ndarray]] = []
        for start in range(0, len(x), bs):
            with quiet_retracing():
                out = model.predict_on_batch(x[start : start + bs])
            chunks.append(list(out) if isinstance(out, (list, tuple)) else [out])
            if progress is not None:
                progress(min(start + bs, len(x)), len(x))
        return [np.concatenate(parts, axis=0) for parts in zip(*chunks)]

    def scores(
        self, images: Any, batch_size: int | None = None, cache: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class scores on logits and probabilities, both (N, K) float32 (read-only).

        ``cache=False`` for throw-away batches (occluded copies, masked inputs)."""
        self.require_classes()
        raw = self.check_images(images)
        batch_size = check_batch_size(batch_size)

        def compute():
            scores, output = self.run(self.scores_model, self.model_inputs(raw), batch_size)
            return scores.astype(np.float32), self.probabilities(scores, output)

        if not cache:
            return compute()
        return self.cached("scores", (array_key(raw),), compute)

    def probabilities(self, scores: np.ndarray, output: np.ndarray) -> np.ndarray:
        """(N, K) float32 probabilities from scores and raw output of :attr:`scores_model`;
        a one-unit sigmoid head gives [1 - p, p]."""
        return probabilities(self.head, scores, output)

    def predict(self, images: Any, batch_size: int | None = None, cache: bool = True) -> np.ndarray:
        """Class probabilities (N, K) float32; a one-unit sigmoid head gives [1 - p, p]."""
        return self.scores(images, batch_size, cache)[1].copy()

    def activations(
        self, images: Any, layers: Iterable[str] | str, batch_size: int | None = None
    ) -> dict[str, np.ndarray]:
        """{layer path: (N, ...) float32 outputs} for one batched pass over all layers.

        The arrays are shared with the cache and read-only; copy before changing them."""
        raw = self.check_images(images)
        batch_size = check_batch_size(batch_size)
        names = [layers] if isinstance(layers, str) else list(layers)
        paths = tuple(self.resolve(n) for n in names)

        def compute():
            outs = self.run(self.submodel(paths), self.model_inputs(raw), batch_size)
            return dict(zip(paths, (o.astype(np.float32) for o in outs)))

        hit = self.cached("activations", (array_key(raw), paths), compute)
        # Answer with the names as asked, so {'block5_conv3': ...} works for nested paths.
        return {n: hit[p] for n, p in zip(names, paths)}

    # ---------------------------------------------------------------- classes

    def class_index(self, cls: Any) -> int:
        """Index of a class given as an int or a class name."""
        self.require_classes()
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
        self.require_classes()
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
        if isinstance(classes, np.ndarray) and classes.ndim == 1 and n > 1 and len(classes) == n:
            # preds.argmax(1) reads as "these N classes for every image": N times the
            # work and (N, N, H, W) maps. Ask which was meant instead of guessing.
            raise ValueError(
                f"classes is a 1-D array of {n} entries for {n} images: one class per image, "
                f"or {n} classes for every image? For one class per image pass an (N, 1) "
                "array, e.g. classes[:, None]; for the same classes on every image pass a list"
            )
        if isinstance(classes, (list, tuple, np.ndarray)):
            if len(classes) == 0:
                raise ValueError("classes is empty; pass None for the top prediction")
            idx = [self.class_index(c) for c in classes]
        else:
            idx = [self.class_index(classes)]
        return np.tile(np.asarray(idx, np.int64)[None, :], (n, 1))

    def __repr__(self) -> str:
        try:
            last = repr(self.last_conv_layer)
        except ValueError:
            last = None
        return (
            f"Probe({self.model.name!r}, {len(self._trace.infos)} layers, head={self.head.kind}, "
            f"classes={self.num_classes}, last_conv_layer={last})"
        )


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def as_probe(model_or_probe: Any, class_names=None, preprocess=None) -> Probe:
    """Return the probe itself, or a shared Probe for a keras.Model.

    Probes of a model live as long as the model does (one per combination of
    class names and preprocess)."""
    if isinstance(model_or_probe, Probe):
        if class_names is not None or preprocess is not None:
            raise ValueError(
                "class_names and preprocess belong to the Probe: pass them to "
                "cw.Probe(model, class_names=..., preprocess=...), or pass the model here"
            )
        return model_or_probe
    if not isinstance(model_or_probe, keras.Model):
        raise TypeError(
            f"expected a keras.Model or cnnwidgets.Probe, got {type(model_or_probe).__name__}"
        )
    per_model = _PROBES.setdefault(model_or_probe, {})
    key = (tuple(class_names) if class_names is not None else None, preprocess)
    probe = per_model.get(key)
    if probe is None:
        probe = Probe(model_or_probe, class_names=class_names, preprocess=preprocess)
        per_model[key] = probe
    return probe


class _RetracingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_RETRACING_FILTER = _RetracingFilter()


@contextlib.contextmanager
def quiet_retracing():
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
