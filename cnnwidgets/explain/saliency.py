"""Saliency maps: gradients of a class score with respect to the input pixels.

One mechanism, several backward rules and averaging schemes. Every method
first makes signed per-channel attributions (N, K, H, W, C) with
:func:`attributions`, then :func:`saliency` reduces them to one map per image
and class, (N, K, H, W) float32, the contract shared with
:func:`cnnwidgets.gradcam`.

Methods (:data:`SALIENCY_METHODS`):

- ``"vanilla"`` (Simonyan et al. 2014): the gradient of the class score; the
  map is max over colour channels of its absolute value.
- ``"smoothgrad"`` (Smilkov et al. 2017): the gradient averaged over
  ``n_samples`` copies of the input with Gaussian noise of standard deviation
  ``noise * (max - min)`` of each input; the noisy copies ride through the
  model in shared batches and the noise is fixed by ``seed`` (per image and
  sample, so the result does not depend on the batch size).
- ``"integrated"`` (Sundararajan et al. 2017): Integrated Gradients,
  ``(x - x') * mean of the gradients on the straight path from a baseline
  x' to x`` (trapezoid rule over ``steps`` intervals, batched). The map is the
  absolute value of the channel sum. Completeness, sum of attributions =
  f(x) - f(x'), is reported by :func:`integrated_gradients`.
- ``"guided"`` (Springenberg et al. 2015): guided backpropagation; a ReLU
  passes a gradient back only where its input was positive AND the gradient
  is positive.
- ``"deconvnet"`` (Zeiler and Fergus 2014): a ReLU passes back ReLU(gradient),
  whatever its forward input was.
- ``"guided-gradcam"`` (Selvaraju et al. 2017): guided backpropagation times
  the Grad-CAM map upsampled to the input.

Conventions:

- Class scores are logits, found by the Probe without touching the model
  (no "swap the softmax for a linear layer" surgery); for a one-unit sigmoid
  head the negative class is -logit, so its attributions are exactly the
  negated positive ones.
- Gradients are with respect to the MODEL INPUT, i.e. after the probe's
  ``preprocess``. With ``preprocess=None`` (the demo models rescale inside
  the graph) that is the raw pixels. Noise levels and baselines are measured
  in that space too; baselines are *built* from the raw pixels (a black raw
  image goes through ``preprocess``, so "black" means black for every
  preprocessing convention).
- The guided and deconvnet rules replace the backward pass of Relu/Relu6 ops
  only inside the gradient function (``cnnwidgets.gradients``); the user's
  model, its layers and its ordinary gradients are untouched.
- Flat gradients and constant images give zero maps, never NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnwidgets.explain.common import (
    NORMALIZE_MODES,
    MethodInfo,
    check_method,
    check_normalize,
    normalize_maps,
    prepare,
)
from cnnwidgets.explain.common import gaussian_blur as common_blur
from cnnwidgets.probe import Probe, check_batch_size
from cnnwidgets.progress import reporter

#: Names accepted by ``method``, in the order a method picker shows them.
SALIENCY_METHODS: tuple[str, ...] = (
    "vanilla",
    "smoothgrad",
    "integrated",
    "guided",
    "deconvnet",
    "guided-gradcam",
)

#: Named Integrated Gradients / perturbation baselines.
BASELINES: tuple[str, ...] = ("black", "mean", "blur")


#: What each saliency method needs (see :class:`~cnnwidgets.explain.common.MethodInfo`).
METHOD_INFO: dict[str, MethodInfo] = {
    "vanilla": MethodInfo("vanilla", "saliency", False, True),
    "smoothgrad": MethodInfo(
        "smoothgrad", "saliency", False, True, True, ("n_samples", "noise", "seed")
    ),
    "integrated": MethodInfo("integrated", "saliency", False, True, True, ("steps", "baseline")),
    "guided": MethodInfo("guided", "saliency", False, True),
    "deconvnet": MethodInfo("deconvnet", "saliency", False, True),
    # Guided backpropagation times a Grad-CAM map: it depends on the CAM layer.
    "guided-gradcam": MethodInfo("guided-gradcam", "saliency", True, True, False, ("layer",)),
}

#: Other spellings accepted by ``method`` (after dropping case, '-', '_', ' ').
ALIASES = {
    "gradient": "vanilla",
    "gradients": "vanilla",
    "integratedgradients": "integrated",
    "ig": "integrated",
    "guidedbackprop": "guided",
    "guidedbackpropagation": "guided",
    "deconv": "deconvnet",
    "guidedgradcam": "guided-gradcam",
}

__all__ = [
    "ALIASES",
    "BASELINES",
    "METHOD_INFO",
    "NORMALIZE_MODES",
    "SALIENCY_METHODS",
    "attributions",
    "gaussian_blur",
    "integrated_gradients",
    "make_baseline",
    "reduce_attributions",
    "saliency",
]


# --------------------------------------------------------------------- validation


def _check_method(method: Any) -> str:
    return check_method(method, SALIENCY_METHODS, ALIASES, "saliency")


def _check_params(n_samples: Any, noise: Any, steps: Any, batch_size: Any, normalize: Any) -> None:
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise TypeError(f"n_samples must be a positive int, got {n_samples!r}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be a positive int, got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not isinstance(noise, (int, float, np.number)) or isinstance(noise, bool):
        raise TypeError(f"noise must be a number (a fraction of the input range), got {noise!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite fraction >= 0 (e.g. 0.15), got {noise}")
    check_batch_size(batch_size)
    check_normalize(normalize)


def _check_baseline(baseline: Any) -> None:
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise ValueError(
                f"unknown baseline {baseline!r}; choose one of {BASELINES}, a number "
                "(a constant raw pixel value) or an array of raw pixels"
            )
    elif not isinstance(baseline, (int, float, np.number, np.ndarray, list, tuple)):
        raise TypeError(
            f"baseline must be one of {BASELINES}, a number or an array, got "
            f"{type(baseline).__name__}"
        )



# ---------------------------------------------------------------------- baselines


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (N, H, W, C) images over H and W, mirrored at the edges;
    float32 of the same shape (see :func:`cnnwidgets.explain.common.gaussian_blur`)."""
    return common_blur(images, sigma, edges="reflect")


def make_baseline(raw: np.ndarray, baseline: Any = "black") -> np.ndarray:
    """A reference image for each raw image, in RAW pixel space.

    Args:
        raw: (N, H, W, C) float32 raw pixels.
        baseline: ``"black"`` (zeros), ``"mean"`` (each image's mean colour),
            ``"blur"`` (Gaussian blur with sigma = max(H, W) / 16, as the
            blurred canvas of RISE's insertion metric), a number (a constant
            raw value), or an array of raw pixels (H, W, C) or (N, H, W, C).

    Returns:
        (N, H, W, C) float32.
    """
    _check_baseline(baseline)
    raw = np.asarray(raw, np.float32)
    if isinstance(baseline, str):
        if baseline == "black":
            return np.zeros_like(raw)
        if baseline == "mean":
            return np.broadcast_to(raw.mean(axis=(1, 2), keepdims=True), raw.shape).astype(
                np.float32
            )
        return gaussian_blur(raw, max(raw.shape[1:3]) / 16.0)
    arr = np.asarray(baseline, np.float32)
    try:
        out = np.broadcast_to(arr, raw.shape)
    except ValueError:
        raise ValueError(
            f"baseline has shape {arr.shape}; expected a number, (H, W, C) or {raw.shape}"
        ) from None
    if not np.isfinite(out).all():
        raise ValueError("baseline contains NaN or infinite values")
    return np.array(out, np.float32)


# ---------------------------------------------------------------------- gradients


def _accumulate(
    probe: Probe,
    points: Callable[[np.ndarray, np.ndarray], np.ndarray],
    weights: np.ndarray,
    classes: np.ndarray,
    shape: tuple[int, ...],
    relu_rule: str | None,
    batch_size: int | None,
    report: Callable[[int, int], object],
) -> tuple[np.ndarray, np.ndarray]:
    """sum_j weights[j] * grad f(points(i, j)) for every image i.

    ``points(ii, jj)`` builds model inputs (B, H, W, C) for image indices ii
    and sample indices jj; the (image, sample) pairs are laid end to end and
    cut into batches, so samples of several images share a batch.
    ``classes``: (N, K) int class indices, or a tuple of K targets shared by
    all images.

    Returns (N, K, H, W, C) float64 sums and the scores at every point,
    (N, S, K) float32.
    """
    from cnnwidgets import gradients  # the one package that calls autodiff

    targets = isinstance(classes, tuple)
    n, s = shape[0], len(weights)
    k = len(classes) if targets else classes.shape[1]
    bs = batch_size or max(1, probe.batch_size(per_sample_factor=2.0 + k))
    acc = np.zeros((n, k) + tuple(shape[1:]), np.float64)
    scores = np.zeros((n, s, k), np.float32)
    total = n * s
    report(0, total)
    for start in range(0, total, bs):
        idx = np.arange(start, min(start + bs, total))
        ii, jj = np.divmod(idx, s)
        batch = np.ascontiguousarray(points(ii, jj), dtype=np.float32)
        chosen = classes if targets else classes[ii]
        g, p = gradients.input_gradients(
            probe, batch, chosen, relu_rule=relu_rule, batch_size=len(idx)
        )
        weighted = g.astype(np.float64) * weights[jj][:, None, None, None, None]
        for i in np.unique(ii):
            acc[i] += weighted[ii == i].sum(axis=0)
        scores[ii, jj] = p
        report(int(idx[-1]) + 1, total)
    return acc, scores


def _smooth_gradients(
    probe: Probe,
    x: np.ndarray,
    classes: np.ndarray,
    n_samples: int,
    noise: float,
    seed: int,
    relu_rule: str | None,
    batch_size: int | None,
    report: Callable[[int, int], object],
) -> np.ndarray:
    """Mean gradient over noisy copies: (N, K, H, W, C) float32."""
    span = (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3))).astype(np.float64)
    sigma = noise * span  # (N,)

    def points(ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
        out = np.empty((len(ii),) + x.shape[1:], np.float32)
        for b, (i, j) in enumerate(zip(ii, jj)):
            # One generator per (seed, image, sample): the noise does not depend
            # on how the samples are cut into batches.
            rng = np.random.default_rng([int(seed), int(i), int(j)])
            eps = rng.standard_normal(x.shape[1:]) if sigma[i] > 0 else 0.0
            out[b] = x[i] + sigma[i] * eps
        return out

    weights = np.full(n_samples, 1.0 / n_samples)
    acc, _ = _accumulate(probe, points, weights, classes, x.shape, relu_rule, batch_size, report)
    return acc.astype(np.float32)


def _path_attributions(
    probe: Probe,
    x: np.ndarray,
    base: np.ndarray,
    classes: np.ndarray,
    steps: int,
    batch_size: int | None,
    report: Callable[[int, int], object],
) -> tuple[np.ndarray, dict]:
    """Integrated Gradients on preprocessed inputs x and baselines base (N, H, W, C)."""
    alphas = np.linspace(0.0, 1.0, steps + 1)
    # Trapezoid rule: the mean gradient on the path is sum_j w_j grad(x' + a_j (x - x')).
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] = 0.5 / steps
    diff = (x - base).astype(np.float32)

    def points(ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
        return base[ii] + alphas[jj].astype(np.float32)[:, None, None, None] * diff[ii]

    mean_grad, scores = _accumulate(
        probe, points, weights, classes, x.shape, None, batch_size, report
    )
    attr = mean_grad * diff[:, None].astype(np.float64)  # (N, K, H, W, C)
    f_x, f_base = scores[:, -1], scores[:, 0]  # (N, K) logits at the path's ends
    total = attr.sum(axis=(2, 3, 4))
    delta = (f_x - f_base).astype(np.float64)
    gap = total - delta
    scale = np.maximum(np.abs(delta), 1e-12)
    report_ = {
        "sum": total.astype(np.float32),
        "delta": delta.astype(np.float32),
        "score": f_x.astype(np.float32),
        "baseline_score": f_base.astype(np.float32),
        "gap": gap.astype(np.float32),
        "relative_gap": np.where(np.abs(delta) > 1e-12, np.abs(gap) / scale, 0.0).astype(
            np.float32
        ),
        "steps": int(steps),
    }
    return attr.astype(np.float32), report_


def integrated_gradients(
    model_or_probe: Any,
    images: Any,
    classes: Any = None,
    baseline: Any = "black",
    steps: int = 64,
    batch_size: int | None = None,
    progress: Any = None,
    target: Any = None,
) -> tuple[np.ndarray, dict]:
    """Integrated Gradients attributions with their completeness report.

    Args:
        model_or_probe: a keras.Model (never changed) or a Probe.
        images: raw pixels (H, W, C) or (N, H, W, C).
        classes: None (top-1), an int or class name, a list of them, or an
            (N, K) int array of per-image classes.
        baseline: see :func:`make_baseline` (built from raw pixels, then
            preprocessed like the images).
        steps: intervals of the trapezoid rule on the straight path (steps + 1
            gradient evaluations per image, batched).
        target: instead of ``classes``, one target or a list of K (see
            :mod:`cnnwidgets.probe.targets`); the report is then in the
            targets' scores.

    Returns:
        attributions: (N, K, H, W, C) float32 in model-input space,
            ``(x - x') * mean gradient of the class logit along the path``.
        report: dict of (N, K) float32 arrays: ``sum`` (sum of attributions),
            ``delta`` (f(x) - f(x'), logits), ``score`` f(x), ``baseline_score``
            f(x'), ``gap`` (sum - delta) and ``relative_gap`` (|gap| / |delta|,
            0 where delta is 0), plus ``steps``. Completeness says gap -> 0 as
            steps grow.
    """
    _check_params(1, 0.0, steps, batch_size, None)
    _check_baseline(baseline)
    req = prepare(model_or_probe, images, classes, target=target)
    probe, raw, cls, x = req.probe, req.raw, req.selection, req.x
    base = probe.model_inputs(make_baseline(raw, baseline))
    return _path_attributions(
        probe, x, base, cls, int(steps), batch_size, reporter(progress, "integrated")
    )


def _guided_gradcam_weights(
    probe: Probe, raw: np.ndarray, classes: Any, layer: Any, batch_size: int | None
) -> np.ndarray:
    """Grad-CAM maps (N, K, H, W) in [0, 1] at the input size, for class
    indices (N, K) or a tuple of K targets."""
    from cnnwidgets.explain.cam import gradcam  # lazy: the CAM family lives there

    targets = isinstance(classes, tuple)
    return gradcam(
        probe,
        raw,
        classes=None if targets else classes,
        target=classes if targets else None,
        layer=layer,
        method="gradcam",
        resize=True,
        normalize="map",
        batch_size=batch_size,
    )


def attributions(
    model_or_probe: Any,
    images: Any,
    classes: Any = None,
    method: str = "vanilla",
    *,
    n_samples: int = 25,
    noise: float = 0.15,
    steps: int = 64,
    baseline: Any = "black",
    layer: Any = None,
    batch_size: int | None = None,
    progress: Any = None,
    seed: int = 0,
    return_info: bool = False,
    target: Any = None,
) -> np.ndarray | tuple[np.ndarray, dict]:
    """Signed per-channel attributions of a saliency method, before reduction.

    Args:
        model_or_probe: a keras.Model (never changed) or a Probe.
        images: raw pixels (H, W, C) or (N, H, W, C).
        classes: None (top-1), an int or class name, a list of them, or an
            (N, K) int array.
        method: one of :data:`SALIENCY_METHODS`.
        n_samples: smoothgrad: noisy copies per image.
        noise: smoothgrad: noise standard deviation as a fraction of each
            input's range (max - min of the model input); 0 gives vanilla.
        steps: integrated: trapezoid intervals along the path.
        baseline: integrated: ``"black"``, ``"mean"``, ``"blur"``, a number or
            raw pixels (see :func:`make_baseline`).
        layer: guided-gradcam: the Grad-CAM layer (default: last conv layer).
        batch_size: model inputs per gradient batch; default from the probe's
            memory budget. Results do not depend on it.
        progress: None (a bar for large jobs), True, False or ``(done, total)``;
            raising :class:`~cnnwidgets.Cancelled` from it stops the work.
        seed: smoothgrad noise seed.
        return_info: also return a dict with ``classes`` (N, K) int64 (None
            with targets), ``targets`` (the K targets, or None), ``method``
            and, for integrated, the completeness report of
            :func:`integrated_gradients`.
        target: instead of ``classes`` (giving both is a TypeError): one
            target shared by all images or a list of K (see
            :mod:`cnnwidgets.probe.targets`); every method takes it.

    Returns:
        (N, K, H, W, C) float32: gradients of the class logit (or target
        score) w.r.t. the model input (vanilla, guided, deconvnet), their mean
        over noisy copies (smoothgrad), Integrated Gradients attributions (integrated) or guided
        backpropagation times the upsampled Grad-CAM map (guided-gradcam).
    """
    method = _check_method(method)
    _check_params(n_samples, noise, steps, batch_size, None)
    _check_baseline(baseline)

    def layer_fits(probe: Probe, raw: np.ndarray) -> None:
        if method == "guided-gradcam" and layer is not None:
            probe.resolve_4d(layer)  # a bad layer fails before any model pass

    req = prepare(model_or_probe, images, classes, checks=layer_fits, target=target)
    # cls: (N, K) class indices or a tuple of K targets; both ride the same paths.
    probe, raw, cls, x = req.probe, req.raw, req.selection, req.x
    report = reporter(progress, method)
    info: dict = {"classes": req.classes, "targets": req.targets, "method": method}

    if method in ("vanilla", "guided", "deconvnet"):
        rule = None if method == "vanilla" else method
        one = np.ones(1)
        acc, _ = _accumulate(
            probe, lambda ii, jj: x[ii], one, cls, x.shape, rule, batch_size, report
        )
        attr = acc.astype(np.float32)
    elif method == "smoothgrad":
        attr = _smooth_gradients(
            probe, x, cls, int(n_samples), float(noise), seed, None, batch_size, report
        )
    elif method == "integrated":
        base = probe.model_inputs(make_baseline(raw, baseline))
        attr, info["completeness"] = _path_attributions(
            probe, x, base, cls, int(steps), batch_size, report
        )
    else:  # guided-gradcam
        one = np.ones(1)
        acc, _ = _accumulate(
            probe, lambda ii, jj: x[ii], one, cls, x.shape, "guided", batch_size, report
        )
        cam = _guided_gradcam_weights(probe, raw, cls, layer, batch_size)
        attr = (acc * cam[..., None]).astype(np.float32)
    attr = np.nan_to_num(attr, nan=0.0, posinf=0.0, neginf=0.0)
    return (attr, info) if return_info else attr


def reduce_attributions(attr: np.ndarray, method: str = "vanilla") -> np.ndarray:
    """(N, K, H, W, C) attributions -> (N, K, H, W) non-negative float32 maps.

    Integrated Gradients: |sum over channels| (a pixel's share of
    f(x) - f(x')); every other method: max over channels of |value|
    (Simonyan et al.)."""
    attr = np.nan_to_num(np.asarray(attr, np.float32))
    if _check_method(method) == "integrated":
        return np.abs(attr.sum(axis=-1)).astype(np.float32)
    return np.abs(attr).max(axis=-1).astype(np.float32)


def saliency(
    model_or_probe: Any,
    images: Any,
    classes: Any = None,
    method: str = "vanilla",
    normalize: str | None = "map",
    *,
    return_info: bool = False,
    **options: Any,
) -> np.ndarray | tuple[np.ndarray, dict]:
    """Saliency maps of a Keras CNN: where the class score is sensitive to the pixels.

    Args:
        model_or_probe: a keras.Model (never changed) or a Probe.
        images: raw pixels (H, W, C) or (N, H, W, C); the probe's
            ``preprocess`` is applied inside and gradients are taken with
            respect to its output (the model input).
        classes: None (each image's top-1 class), an int or class name, a list
            of them (K classes shared by all images), or an (N, K) int array.
        method: one of :data:`SALIENCY_METHODS`.
        normalize: ``"map"`` (each map to [0, 1]), ``"image"`` (one scale for
            the K maps of an image) or None (raw magnitudes, logit units per
            model-input unit; for integrated, logit units).
        return_info: also return a dict with ``classes`` (N, K) int64,
            ``method`` and, for integrated, ``completeness`` (see
            :func:`integrated_gradients`).
        **options: the method's options, as in :func:`attributions` (one list,
            one place): ``n_samples``, ``noise``, ``seed`` (smoothgrad),
            ``steps``, ``baseline`` (integrated), ``layer`` (guided-gradcam),
            ``batch_size``, ``progress`` and ``target`` (all: one target or a
            list of K instead of ``classes``, see :mod:`cnnwidgets.probe.targets`).

    Returns:
        (N, K, H, W) float32, >= 0, never NaN (zero where gradients vanish),
        and the info dict when ``return_info``.
    """
    method = _check_method(method)
    check_normalize(normalize)
    attr, info = attributions(
        model_or_probe, images, classes, method, return_info=True, **options
    )
    maps = normalize_maps(reduce_attributions(attr, method), normalize)
    return (maps, info) if return_info else maps
