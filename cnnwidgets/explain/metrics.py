"""How far to trust a saliency map: sanity and faithfulness metrics.

- :func:`rank_correlation`: Spearman's rho, numpy only (ties get average ranks).
- :func:`randomization_sanity` (Adebayo et al. 2018, "Sanity Checks for
  Saliency Maps"): maps of the trained model vs the same architecture with
  re-initialized weights. A method whose maps barely change (rank correlation
  near 1) shows the picture, not what the model learned.
- :func:`deletion_auc` / :func:`insertion_auc` (Petsiuk et al. 2018, RISE):
  remove (or insert) pixels from the most salient down, in batched steps,
  and integrate the class probability (or a target's score, ``target=``)
  over the fraction of pixels changed.
  A faithful map makes deletion fall fast (low AUC) and insertion rise fast
  (high AUC).
- :func:`pointing_game` (Zhang et al. 2016): the fraction of maps whose
  maximum falls inside the object's box.

Numpy in, numpy out; forward passes go through the Probe in batches; the
user's model is never changed (randomization works on a clone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnwidgets.explain.common import prepare
from cnnwidgets.explain.saliency import make_baseline, saliency
from cnnwidgets.probe import Probe, as_probe
from cnnwidgets.probe.targets import targets_of_call
from cnnwidgets.progress import reporter

__all__ = [
    "SanityResult",
    "deletion_auc",
    "insertion_auc",
    "pointing_game",
    "randomization_sanity",
    "randomized_model",
    "rank_correlation",
    "rankdata",
]


# ---------------------------------------------------------------- correlation


def rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array, ties sharing their average rank (float64)."""
    a = np.asarray(a).ravel()
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Start index of each run of equal values.
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    ends = np.r_[starts[1:], len(a)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(a), np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else 0.0


def rank_correlation(a: Any, b: Any, batch_dims: int = 0) -> float | np.ndarray:
    """Spearman rank correlation, numpy only (average ranks for ties).

    Args:
        a: an array.
        b: an array of the same shape as ``a``.
        batch_dims: leading axes that index separate pairs; the remaining
            axes are flattened. 0: one correlation of the whole arrays.

    Returns:
        A float in [-1, 1] (batch_dims=0) or a float64 array of the leading
        shape. A constant input has no ranking: its correlation is 0, never NaN.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    if not 0 <= batch_dims < max(a.ndim, 1):
        raise ValueError(f"batch_dims must be in [0, {max(a.ndim - 1, 0)}], got {batch_dims}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("rank_correlation got NaN values")
    lead = a.shape[:batch_dims]
    fa = a.reshape((-1,) + a.shape[batch_dims:]) if batch_dims else a[None]
    fb = b.reshape((-1,) + b.shape[batch_dims:]) if batch_dims else b[None]
    out = np.array(
        [_pearson(rankdata(x), rankdata(y)) for x, y in zip(fa, fb)], np.float64
    ).reshape(lead)
    return float(out) if batch_dims == 0 else out


# ---------------------------------------------------------- randomization sanity


def randomized_model(model_or_probe: Any, seed: int = 0, layers: Any = None) -> Probe:
    """A Probe of the same architecture with re-initialized weights (the user's
    model untouched); see :meth:`cnnwidgets.Probe.randomized`."""
    return as_probe(model_or_probe).randomized(seed=seed, layers=layers)


@dataclass(frozen=True)
class SanityResult:
    """Maps of the trained and the randomized model and their agreement.

    Attributes:
        method: the saliency method.
        classes: (N, K) int64 classes explained (the trained model's choice).
        trained: (N, K, H, W) float32 maps of the trained model.
        randomized: (N, K, H, W) float32 maps of the re-initialized model.
        correlation: (N, K) float64 Spearman rank correlation of each pair.
    """

    method: str
    classes: np.ndarray
    trained: np.ndarray
    randomized: np.ndarray
    correlation: np.ndarray

    @property
    def mean(self) -> float:
        """Mean rank correlation over images and classes."""
        return float(self.correlation.mean())


def randomization_sanity(
    model_or_probe: Any,
    images: Any,
    method: str = "vanilla",
    classes: Any = None,
    seed: int = 0,
    layers: Any = None,
    **saliency_kwargs: Any,
) -> SanityResult:
    """The model-parameter randomization test of Adebayo et al. (2018).

    Maps of ``method`` from the trained model and from the same architecture
    with re-initialized weights (:func:`randomized_model`), for the same
    classes (chosen by the trained model when ``classes`` is None), and
    their Spearman rank correlation per image and class. High correlation
    means the method does not depend on what the model learned.

    Args:
        images: raw pixels (H, W, C) or (N, H, W, C).
        method: a saliency method (see ``SALIENCY_METHODS``).
        classes: as for :func:`~cnnwidgets.saliency`.
        seed: the re-initialization seed (also passed to saliency).
        layers: None (randomize all weights) or the layers to randomize.
        saliency_kwargs: further arguments of :func:`~cnnwidgets.saliency`
            (``n_samples``, ``steps``, ``baseline``, ``layer``...).

    Returns:
        A :class:`SanityResult`.
    """
    req = prepare(model_or_probe, images, classes)
    probe, raw, cls = req.probe, req.raw, req.classes
    kwargs = {"seed": seed, **saliency_kwargs}
    trained = saliency(probe, raw, cls, method=method, **kwargs)
    twin = randomized_model(probe, seed=seed, layers=layers)
    randomized = saliency(twin, raw, cls, method=method, **kwargs)
    corr = rank_correlation(trained, randomized, batch_dims=2)
    return SanityResult(method, cls, trained, randomized, corr)


# -------------------------------------------------------- deletion / insertion


def _auc_curves(
    model_or_probe: Any,
    images: Any,
    maps: Any,
    classes: Any,
    steps: int,
    baseline: Any,
    insert: bool,
    batch_size: int | None,
    progress: Any,
    target: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    targets = targets_of_call(target, classes)
    probe = as_probe(model_or_probe)
    raw = probe.check_images(images)
    n, h, w, _ = raw.shape
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 3:
        maps = maps[:, None]
    if maps.ndim != 4 or maps.shape[0] != n or maps.shape[2:] != (h, w):
        raise ValueError(
            f"maps have shape {maps.shape}; expected (N, K, H, W) = ({n}, K, {h}, {w}) "
            "or (N, H, W), as returned by saliency()"
        )
    k = maps.shape[1]
    if targets is not None:
        if len(targets) != k:
            raise ValueError(
                f"maps hold K={k} maps per image but target gives {len(targets)} targets; "
                "give one target per map"
            )
        for t in targets:
            t.check(probe)
        cls = np.tile(np.arange(k, dtype=np.int64)[None], (n, 1))  # column j: target j
    elif classes is None and k == 1:
        cls = probe.resolve_classes(None, raw)
    else:
        if classes is None:
            raise ValueError(f"maps hold K={k} classes; pass the classes they were made for")
        cls = probe.resolve_classes(classes, raw)
    if cls.shape[1] != k:
        raise ValueError(f"maps hold K={k} classes but classes gives {cls.shape[1]}")
    canvas = make_baseline(raw, baseline)
    pixels = h * w
    counts = np.round(np.arange(steps + 1) * pixels / steps).astype(np.int64)
    # Most salient first; stable on ties so the order is deterministic.
    order = np.argsort(-np.nan_to_num(maps).reshape(n, k, pixels), axis=-1, kind="stable")
    # rank[n, k, p] = position of pixel p in the order.
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(pixels)[None, None], axis=-1)

    total = n * k * (steps + 1)
    bs = batch_size or probe.batch_size()
    probs = np.zeros(total, np.float32)
    report = reporter(progress, "insertion" if insert else "deletion")
    report(0, total)
    for start in range(0, total, bs):
        idx = np.arange(start, min(start + bs, total))
        nk, t = np.divmod(idx, steps + 1)
        i, j = np.divmod(nk, k)
        changed = (rank[i, j] < counts[t][:, None]).reshape(-1, h, w, 1)
        src, dst = (canvas[i], raw[i]) if insert else (raw[i], canvas[i])
        batch = np.where(changed, dst, src)
        if targets is None:
            p = probe.predict(batch, batch_size=len(idx), cache=False)
        else:  # all K scores ride one pass; each row keeps its own map's target
            p = probe.target_scores(batch, targets, batch_size=len(idx), cache=False)
        probs[idx] = p[np.arange(len(idx)), cls[i, j]]
        report(int(idx[-1]) + 1, total)
    curves = probs.reshape(n, k, steps + 1)
    frac = counts / pixels
    auc = ((curves[..., 1:] + curves[..., :-1]) * 0.5 * np.diff(frac)).sum(axis=-1)
    return auc.astype(np.float32), curves



def deletion_auc(
    model_or_probe: Any,
    images: Any,
    maps: Any,
    classes: Any = None,
    steps: int = 32,
    baseline: Any = "black",
    batch_size: int | None = None,
    progress: Any = None,
    return_curves: bool = False,
    target: Any = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Deletion metric (Petsiuk et al. 2018): lower is more faithful.

    Pixels are replaced by the baseline (all channels at once) from the most
    salient down, ``H*W/steps`` pixels per step; after each step the class
    probability is measured (all steps of all images ride in shared batches).
    The AUC is the trapezoid integral of probability over the fraction of
    pixels removed, in [0, 1].

    Args:
        images: raw pixels (N, H, W, C) (or one (H, W, C) image).
        maps: (N, K, H, W) or (N, H, W) saliency maps (any non-negative scale).
        classes: the classes the maps were made for (as for saliency); None
            with K=1 means each image's top-1 class.
        steps: number of deletion steps (the curve has steps + 1 points).
        baseline: what removed pixels become: ``"black"`` (RISE's choice),
            ``"mean"``, ``"blur"``, a number or raw pixels.
        return_curves: also return the curves (N, K, steps + 1) float32.
        target: instead of ``classes`` (giving both is a TypeError): one
            target, or a list of K, one per map (see
            :mod:`cnnwidgets.probe.targets`); the curve is then the target's
            score in its own units (a logit, a value), not a probability, so
            the AUC is not bounded to [0, 1]: compare AUCs of one target.
            Bad targets raise a ValueError before any model pass.

    Returns:
        (N, K) float32 AUCs (and the curves).
    """
    auc, curves = _auc_curves(
        model_or_probe, images, maps, classes, steps, baseline, False, batch_size, progress,
        target,
    )
    return (auc, curves) if return_curves else auc


def insertion_auc(
    model_or_probe: Any,
    images: Any,
    maps: Any,
    classes: Any = None,
    steps: int = 32,
    baseline: Any = "blur",
    batch_size: int | None = None,
    progress: Any = None,
    return_curves: bool = False,
    target: Any = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Insertion metric (Petsiuk et al. 2018): higher is more faithful.

    Starts from the baseline (default a blurred copy, RISE's canvas) and
    puts the original pixels back from the most salient down; otherwise as
    :func:`deletion_auc` (``target=`` too). Returns (N, K) float32 AUCs (and
    the curves).
    """
    auc, curves = _auc_curves(
        model_or_probe, images, maps, classes, steps, baseline, True, batch_size, progress,
        target,
    )
    return (auc, curves) if return_curves else auc


# ------------------------------------------------------------------ pointing


def pointing_game(
    maps: Any, boxes: Any, tolerance: int = 0, return_hits: bool = False
) -> float | tuple[float, np.ndarray]:
    """Fraction of maps whose maximum falls inside the object's box.

    Args:
        maps: (N, H, W) or (N, K, H, W) maps.
        boxes: (N, 4) or (N, K, 4) integer (top, left, bottom, right) boxes,
            bottom/right exclusive (as ``cnnwidgets.assets.make_shapes``). An
            (N, 4) box is shared by the K maps of an image.
        tolerance: pixels the box is grown by on every side (Zhang et al.
            used 15 at 224 px).
        return_hits: also return the (N,) or (N, K) bool hits.

    The maximum is the first one in row-major order; a constant map has no
    maximum and counts as a miss.
    """
    maps = np.nan_to_num(np.asarray(maps, np.float64))
    boxes = np.asarray(boxes)
    if maps.ndim not in (3, 4):
        raise ValueError(f"maps must be (N, H, W) or (N, K, H, W), got {maps.shape}")
    lead = maps.shape[:-2]
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must end with (top, left, bottom, right), got {boxes.shape}")
    if boxes.shape[:-1] == lead[:1] and len(lead) == 2:
        boxes = np.broadcast_to(boxes[:, None], lead + (4,))
    if boxes.shape[:-1] != lead:
        raise ValueError(f"boxes have shape {boxes.shape}; expected {lead + (4,)}")
    w = maps.shape[-1]
    flat = maps.reshape(lead + (-1,))
    arg = flat.argmax(axis=-1)
    y, x = np.divmod(arg, w)
    top, left, bottom, right = np.moveaxis(boxes, -1, 0)
    tol = int(tolerance)
    inside = (y >= top - tol) & (y < bottom + tol) & (x >= left - tol) & (x < right + tol)
    flat_map = flat.max(axis=-1) > flat.min(axis=-1)
    hits = inside & flat_map
    score = float(hits.mean())
    return (score, hits) if return_hits else score
