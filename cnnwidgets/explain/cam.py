"""Class activation maps: Grad-CAM and its family, one shared mechanism.

Every method here makes a map the same way,

    map[n, k] = ReLU( sum_c  W[n, k, ..., c] * A[n, :, :, c] )

where ``A`` (N, h, w, C) are the activations of a 4-D layer and ``W`` are
weights for class ``k``. A method only says how it computes ``W``: per
channel (N, K, C), or per position and channel (N, K, h, w, C) for LayerCAM.
Activations, gradients, class handling, resizing, scaling and caching are
shared (the design of pytorch-grad-cam's ``BaseCAM``).

Methods (:data:`CAM_METHODS`):

- ``"gradcam"`` (Selvaraju et al. 2017): W = gradients of the class score
  (logit) averaged over space.
- ``"gradcam++"`` (Chattopadhyay et al. 2018): W = sum over space of
  alpha * ReLU(gradient), alpha from the closed form under an exponential score.
- ``"layercam"`` (Jiang et al. 2021): W = ReLU(gradient) at each position.
- ``"scorecam"`` (Wang et al. 2020): W = the class probability of the input
  masked by each channel's upsampled, min-max scaled activation. Needs one
  forward pass per channel, batched, with progress and cancellation. With
  ``target=``: W = the target's score of the masked input minus its score of
  the all-zero input (the paper's increase of confidence; a logit or a value
  has no probability scale, and the difference ignores its offset).
- ``"cam"`` (Zhou et al. 2016): W = the Dense weights of a GAP + Dense head.

Class scores are logits, found by the Probe without touching the model. A
one-unit sigmoid head is two classes: negative = -logit, positive = logit,
and its probabilities are [1 - p, p] (never a softmax over one unit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnwidgets.cache import array_key
from cnnwidgets.explain.common import (
    NORMALIZE_MODES,
    MethodInfo,
    check_method,
    check_normalize,
    normalize_maps,
    prepare,
)
from cnnwidgets.probe import Probe, as_probe, check_batch_size, kinds
from cnnwidgets.progress import reporter

#: Names accepted by ``method``.
CAM_METHODS: tuple[str, ...] = ()  # filled by @cam_method below, in registration order

#: What each CAM method needs (see :class:`~cnnwidgets.explain.common.MethodInfo`).
METHOD_INFO: dict[str, MethodInfo] = {}

#: Other spellings accepted by ``method`` (after dropping case, '-', '_', ' ').
ALIASES: dict[str, str] = {"gradcamplusplus": "gradcam++"}


__all__ = [
    "ALIASES",
    "CAM_METHODS",
    "METHOD_INFO",
    "NORMALIZE_MODES",
    "cam_layer",
    "channel_weights",
    "gradcam",
    "normalize_maps",
    "resize_maps",
]


# ---------------------------------------------------------------- numpy helpers


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) float64 bilinear weights, half-pixel centres (as PIL / tf.image)."""
    scale = n_in / n_out
    src = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in), np.float64)
    m[np.arange(n_out), lo] += 1.0 - frac
    m[np.arange(n_out), hi] += frac
    return m


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes: (..., h, w) -> (..., H, W) float32.

    Pure numpy (two small matrix products), so non-negative maps stay
    non-negative and a zero map stays zero."""
    maps = np.asarray(maps, np.float32)
    h, w = maps.shape[-2:]
    H, W = int(size[0]), int(size[1])
    if (h, w) == (H, W):
        return maps.copy()
    rh = _interp_matrix(H, h).astype(np.float32)
    rw = _interp_matrix(W, w).astype(np.float32)
    return np.einsum("Hh,...hw,Ww->...HW", rh, maps, rw, optimize=True).astype(np.float32)


def _weighted_sum(acts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """acts (N, h, w, C), weights (N, K, C) or (N, K, h, w, C) -> ReLU maps (N, K, h, w)."""
    if weights.ndim == 3:
        maps = np.einsum("nhwc,nkc->nkhw", acts, weights, optimize=True)
    else:
        maps = np.einsum("nhwc,nkhwc->nkhw", acts, weights, optimize=True)
    return np.maximum(np.nan_to_num(maps.astype(np.float32)), 0.0)


# ------------------------------------------------------------------ the methods


@dataclass(frozen=True)
class _Request:
    probe: Probe
    raw: np.ndarray
    x: np.ndarray
    layer: str
    classes: np.ndarray | None  # (N, K) int64; None when targets are given
    method: str
    targets: tuple | None = None  # K targets shared by all images

    @property
    def selection(self) -> Any:
        """The targets, or the class indices: what the gradient functions take."""
        return self.targets if self.targets is not None else self.classes


@dataclass
class _Context:
    """What the weighting functions may use; computed on first use.

    ``acts`` (N, h, w, C) float32 come with the gradients for gradient methods
    (one forward pass shared by all K classes) or from a forward pass alone."""

    request: _Request
    progress: Callable[[int, int], object]
    batch_size: int | None = None
    _acts: np.ndarray | None = field(default=None, repr=False)
    _grads: np.ndarray | None = field(default=None, repr=False)

    # The request's fields, read as the context's own.
    probe = property(lambda self: self.request.probe)
    x = property(lambda self: self.request.x)  # preprocessed inputs (N, H, W, C) float32
    layer = property(lambda self: self.request.layer)
    classes = property(lambda self: self.request.classes)  # (N, K) int64
    method = property(lambda self: self.request.method)

    def _backward(self) -> None:
        from cnnwidgets import gradients  # the one module that calls autodiff

        # One forward pass and K backward passes above the layer, for all K classes
        # (or targets).
        self._acts, self._grads, _ = gradients.layer_gradients(
            self.probe,
            self.x,
            self.layer,
            self.request.selection,
            batch_size=self.batch_size,
            progress=self.progress,
        )

    @property
    def acts(self) -> np.ndarray:
        """(N, h, w, C) float32 activations of ``layer``."""
        if self._acts is None:
            if METHOD_INFO[self.method].needs_gradients:
                self._backward()
            else:
                sub = self.probe.submodel([self.layer])
                # A method with passes of its own reports those instead.
                per_batch = None if METHOD_INFO[self.method].own_passes else self.progress
                (acts,) = self.probe.run(sub, self.x, self.batch_size, per_batch)
                self._acts = acts.astype(np.float32)
        return self._acts

    @property
    def grads(self) -> np.ndarray:
        """(N, K, h, w, C) float32 gradients of the class logits w.r.t. ``acts``."""
        if self._grads is None:
            self._backward()
        return self._grads


_WEIGHTS: dict[str, Callable[[_Context], np.ndarray]] = {}


def cam_method(name: str, needs_gradients: bool, own_passes: bool = False) -> Callable:
    """Register a channel-weighting function as the CAM method ``name``.

    The function takes the :class:`_Context` (activations, gradients, classes)
    and returns weights (N, K, C) or (N, K, h, w, C); everything else is shared.
    ``needs_gradients``: the weights read ``ctx.grads`` (then one forward and
    K backward passes are shared with the activations). ``own_passes``: it
    runs model passes of its own and reports their progress itself."""

    def register(weights: Callable[[_Context], np.ndarray]) -> Callable:
        global CAM_METHODS
        _WEIGHTS[name] = weights
        METHOD_INFO[name] = MethodInfo(name, "cam", True, needs_gradients, own_passes)
        CAM_METHODS = tuple(_WEIGHTS)
        return weights

    return register


@cam_method("gradcam", needs_gradients=True)
def _gradcam_weights(ctx: _Context) -> np.ndarray:
    return ctx.grads.mean(axis=(2, 3))


@cam_method("gradcam++", needs_gradients=True)
def _gradcampp_weights(ctx: _Context) -> np.ndarray:
    g = ctx.grads.astype(np.float64)
    a = ctx.acts.astype(np.float64)
    g2, g3 = g**2, g**3
    total = a.sum(axis=(1, 2))[:, None, None, None, :]  # (N, 1, 1, 1, C)
    denom = 2.0 * g2 + total * g3
    alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=(denom != 0) & (g != 0))
    return (alpha * np.maximum(g, 0.0)).sum(axis=(2, 3)).astype(np.float32)


@cam_method("layercam", needs_gradients=True)
def _layercam_weights(ctx: _Context) -> np.ndarray:
    return np.maximum(ctx.grads, 0.0)


@cam_method("scorecam", needs_gradients=False, own_passes=True)
def _scorecam_weights(ctx: _Context) -> np.ndarray:
    probe, acts = ctx.probe, ctx.acts
    n, _, _, c = acts.shape
    size = ctx.x.shape[1:3]
    k = ctx.classes.shape[1] if ctx.classes is not None else 0
    # Masks: each channel upsampled to the input and min-max scaled to [0, 1].
    up = resize_maps(np.moveaxis(acts, -1, 1), size)  # (N, C, H, W)
    lo = up.min(axis=(2, 3), keepdims=True)
    span = up.max(axis=(2, 3), keepdims=True) - lo
    masks = np.where(span > 0, (up - lo) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
    bs = ctx.batch_size or probe.batch_size()
    targets = ctx.request.targets
    if targets is not None:
        # A target's score has no probability scale: a channel counts by how much
        # its masked input raises the score over the all-masked input (the paper's
        # increase of confidence, f(X * H) - f(X_b), with X_b = 0).
        k = len(targets)
        scorer = probe.target_model(targets)
        (base,) = probe.run(scorer, np.zeros_like(ctx.x[:1]), batch_size=1)
    weights = np.zeros((n, k, c), np.float32)
    total, done = n * c, 0
    ctx.progress(0, total)
    for i in range(n):
        for s in range(0, c, bs):
            m = masks[i, s : s + bs, :, :, None]
            # The mask multiplies the model input (after preprocess), as in the paper.
            batch = (ctx.x[i][None] * m).astype(np.float32)
            if targets is not None:
                (scores,) = probe.run(scorer, batch, batch_size=bs)
                weights[i, :, s : s + len(m)] = (scores - base).T
            else:
                scores, output = probe.run(probe.scores_model, batch, batch_size=bs)
                probs = probe.probabilities(scores, output)  # [1 - p, p] for a binary head
                weights[i, :, s : s + len(m)] = probs[:, ctx.classes[i]].T
            done += len(m)
            ctx.progress(done, total)
    return weights


@cam_method("cam", needs_gradients=False)
def _cam_weights(ctx: _Context) -> np.ndarray:
    kernel, sign = _cam_head(ctx.probe, ctx.layer)
    w = kernel[:, ctx.classes] * sign[ctx.classes]  # (C, N, K)
    return np.moveaxis(w, 0, -1).astype(np.float32)




def _cam_chain(probe: Probe) -> tuple[str, str]:
    """(dense path, gap path) of a GAP + Dense head, or ValueError."""
    infos = {i.name: i for i in probe.layers}
    path = probe.head.logits_from
    while infos[path].kind in kinds.CAM_PASSTHROUGH and infos[path].kind != "Dense":
        path = infos[path].parents[0]
    why = (
        "plain CAM (Zhou et al.) needs a GlobalAveragePooling2D -> Dense head; "
        f"this model's head is {' <- '.join(_head_kinds(infos, probe.head.logits_from))}. "
        "Use method='gradcam', which equals CAM on such heads and works on any head"
    )
    if infos[path].kind != "Dense":
        raise ValueError(why)
    dense = path
    path = infos[path].parents[0] if infos[path].parents else "input"
    while path in infos and infos[path].kind in {"Dropout"}:
        path = infos[path].parents[0]
    if path not in infos or infos[path].kind != "GlobalAveragePooling2D":
        raise ValueError(why)
    return dense, path


def _head_kinds(infos: dict, path: str, depth: int = 4) -> list[str]:
    kinds = []
    while path in infos and len(kinds) < depth:
        kinds.append(infos[path].kind)
        path = infos[path].parents[0] if infos[path].parents else ""
    return kinds


def cam_layer(model_or_probe: Any) -> str:
    """The layer plain CAM explains: the 4-D input of the GAP + Dense head.

    Raises ValueError when the model's head is not GAP + Dense."""
    probe = as_probe(model_or_probe)
    _, gap = _cam_chain(probe)
    return probe.layer_info(gap).parents[0]


def _cam_head(probe: Probe, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """Dense kernel (C, K_all) float32 and per-class sign (K_all,) for plain CAM."""
    dense, gap = _cam_chain(probe)
    feeds = probe.layer_info(gap).parents[0]
    if probe.resolve(layer) != feeds:
        raise ValueError(
            f"plain CAM explains the layer that feeds global average pooling, {feeds!r}, "
            f"not {layer!r}; pass layer={feeds!r} or use method='gradcam'"
        )
    kernel = np.asarray(probe.layer(dense).kernel, np.float32)
    if probe.head.kind == "binary":
        # One unit: negative class = -logit, positive = logit.
        return np.concatenate([kernel, kernel], axis=1), np.array([-1.0, 1.0], np.float32)
    return kernel, np.ones(kernel.shape[1], np.float32)


# -------------------------------------------------------------------- validation


def _check_method(method: Any) -> str:
    return check_method(method, CAM_METHODS, ALIASES, "CAM")



def _prepare(model_or_probe, images, classes, layer, method, target=None) -> _Request:
    method = _check_method(method)
    if target is not None and method == "cam":
        # CAM reads the Dense weights of a class: not defined for any score.
        raise ValueError(
            "method 'cam' explains classes only (it reads the class's Dense weights); for "
            f"target= use {[m for m in METHOD_INFO if m != 'cam']}, or give classes="
        )

    def target_layer(probe: Probe, raw: np.ndarray) -> str:
        chosen = layer
        if chosen is None:
            chosen = cam_layer(probe) if method == "cam" else probe.last_conv_layer
        path = probe.resolve_4d(chosen)
        if method == "cam":
            _cam_head(probe, path)  # validates the head and the layer before any trace
        return path

    req = prepare(model_or_probe, images, classes, checks=target_layer, target=target)
    return _Request(req.probe, req.raw, req.x, req.checked, req.classes, method, req.targets)


def _raw_maps(
    req: _Request,
    batch_size: int | None,
    progress: Callable[[int, int], object],
    cache: bool = True,
) -> np.ndarray:
    """Unscaled ReLU maps at the layer's resolution, (N, K, h, w) float32, cached
    with the model's weights version (read-only: callers make new arrays)."""
    n = len(req.x)

    def compute() -> np.ndarray:
        ctx = _Context(req, progress, batch_size)
        return _weighted_sum(ctx.acts, _WEIGHTS[req.method](ctx))

    if cache:
        if req.targets is not None:
            chosen: Any = ("targets", tuple(t.key for t in req.targets))
        else:
            chosen = array_key(req.classes)
        key = (array_key(req.raw), req.layer, chosen, req.method)
        maps = req.probe.cached("cam", key, compute)
    else:
        maps = compute()
    if not METHOD_INFO[req.method].own_passes:  # those count their passes, not images
        progress(n, n)
    return maps


# ------------------------------------------------------------------------ public


def channel_weights(
    model_or_probe: Any,
    images: Any,
    classes: Any = None,
    layer: Any = None,
    method: str = "gradcam",
    target: Any = None,
) -> np.ndarray:
    """How much each channel of ``layer`` counts for each class, by a CAM method.

    Arguments come in the order of :func:`gradcam`.

    Args:
        model_or_probe: a keras.Model (never changed) or a :class:`~cnnwidgets.Probe`.
        images: raw pixels, (H, W, C) or (N, H, W, C).
        classes: None (top-1), an int or class name, a list of them, or an
            (N, K) integer array of per-image classes.
        layer: a 4-D layer (path, short name or layer object); None for the
            default (``probe.last_conv_layer``).
        method: one of :data:`CAM_METHODS`. For ``"layercam"``, whose weights
            vary over space, this is the spatial mean of ReLU(gradient).
        target: instead of ``classes``, one target or a list of K (see
            :mod:`cnnwidgets.probe.targets`); every method but ``"cam"``.

    Returns:
        (N, K, C) float32. For gradcam, gradcam++, scorecam and cam the map is
        ReLU(sum_c weights[n, k, c] * activations[n, :, :, c]).
    """
    req = _prepare(model_or_probe, images, classes, layer, method, target)
    ctx = _Context(req, reporter(False, ""))
    w = _WEIGHTS[req.method](ctx)
    if w.ndim == 5:
        w = w.mean(axis=(2, 3))
    return np.nan_to_num(w).astype(np.float32)


def gradcam(
    model_or_probe: Any,
    images: Any,
    classes: Any = None,
    layer: Any = None,
    method: str = "gradcam",
    resize: bool = True,
    normalize: str | None = "map",
    batch_size: int | None = None,
    progress: Any = None,
    cache: bool = True,
    target: Any = None,
) -> np.ndarray:
    """Class activation maps of a Keras CNN (Grad-CAM and its family).

    Args:
        model_or_probe: a keras.Model (never changed) or a Probe.
        images: raw pixels (H, W, C) or (N, H, W, C); the probe's
            ``preprocess`` is applied inside.
        classes: None (each image's top-1 class), an int or class name, a list
            of them (K classes shared by all images), or an (N, K) int array.
        layer: a 4-D layer; default ``last_conv_layer`` (for ``"cam"``, the
            layer feeding the GAP head).
        method: one of :data:`CAM_METHODS`.
        resize: True: maps at the input size (bilinear); False: at the layer's.
        normalize: ``"map"`` (each map to [0, 1]), ``"image"`` (one scale for
            all classes of an image; see :func:`normalize_maps` to share it
            across methods too) or None (raw, non-negative).
        batch_size: images per forward batch (Score-CAM: masked inputs per batch);
            default from the probe's memory budget.
        progress: None (a bar for large jobs), True, False or ``progress(done, total)``;
            raising :class:`~cnnwidgets.Cancelled` from it stops the work.
        cache: False for maps computed once (dataset streams): they are not
            kept in :data:`cnnwidgets.cache.RESULTS`.
        target: instead of ``classes`` (giving both is a TypeError): one
            target shared by all images or a list of K, e.g.
            ``cw.targets.Output("value", cw.targets.Regression())`` or
            ``Class("cat") - Class("dog")`` (see :mod:`cnnwidgets.probe.targets`).
            Every method but plain CAM (a ValueError): gradcam, gradcam++ and
            layercam differentiate the target's score; Score-CAM weighs each
            channel by the score its masked input gains over the all-zero input.

    Returns:
        (N, K, H, W) float32, >= 0, never NaN; a map with no positive evidence
        is all zeros.
    """
    if not isinstance(resize, (bool, np.bool_)):
        raise TypeError(f"resize must be True or False, got {resize!r}")
    check_normalize(normalize)
    batch_size = check_batch_size(batch_size)
    report = reporter(progress, method if isinstance(method, str) else "cam")
    req = _prepare(model_or_probe, images, classes, layer, method, target)
    maps = _raw_maps(req, batch_size, report, cache)
    if resize:
        maps = resize_maps(maps, req.raw.shape[1:3])
    return normalize_maps(maps, normalize)
