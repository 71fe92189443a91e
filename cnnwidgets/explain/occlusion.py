"""Occlusion sensitivity: hide a patch, measure how much the class probability drops.

For every patch position on a regular grid the image is copied with that
square replaced by a fill (the image's mean colour, zeros, a constant or a
blurred copy), the patched copies go through the model in batches sized to
the probe's memory budget, and the drop in probability (unoccluded minus
occluded; positive = the patch held evidence for the class) is averaged over
the positions that cover each pixel.

Patched images are made lazily, one batch at a time, in one reusable buffer:
for each slot only the previous patch is restored and the new one painted, so
memory is ``batch x image`` whatever the number of positions, and the numpy
work per position is ``patch**2`` pixels, not the whole image.

The positions are ``range(0, H - patch + 1, stride)`` plus ``H - patch`` when
the last stride falls short (the same across the width), so every pixel is
covered and every patch lies fully inside the image.

Two engines compute the patched images' probabilities or target scores (``engine=``):
'batched' runs every patched copy through the whole model; 'incremental'
(:mod:`cnnwidgets.probe.incremental`) computes the unpatched activations once and
recomputes each layer only inside the window the patch can reach, equal to
'batched' up to float rounding. 'auto' (the default) takes 'incremental'
where every node of the model can be replayed and the estimated saving pays
for its fixed costs (models of >= 1 G multiply-adds per image, enough patch
positions; the one policy is :func:`cnnwidgets.probe.incremental.choose_engine`);
:func:`occlusion_plan` says which engine a call would use and why, and
each call logs the engine it ran on the ``cnnwidgets.occlusion`` logger (INFO).

``occlusion_progressive`` visits the same grid coarse to fine (every 2**k-th
position first), yielding a complete preview map after each level; its last
map equals :func:`occlusion` exactly, and no position is computed twice.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from cnnwidgets.cache import RESULTS, array_key
from cnnwidgets.explain.common import check_int, gaussian_blur, prepare
from cnnwidgets.probe import Probe, as_probe
from cnnwidgets.probe.incremental import (
    IncrementalModel,
    IncrementalPlan,
    NotIncremental,
    choose_engine,
    target_head,
)
from cnnwidgets.probe.targets import as_targets
from cnnwidgets.progress import reporter

__all__ = [
    "ENGINES",
    "FILLS",
    "OcclusionLevel",
    "occlude",
    "occlusion",
    "occlusion_plan",
    "occlusion_progressive",
    "patch_positions",
    "blur",
]

#: Named fills; a number, or one number per channel, also works.
FILLS = ("mean", "zero", "blur")

#: How the patched images are computed (see the module doc).
ENGINES = ("auto", "incremental", "batched")

_LOG = logging.getLogger("cnnwidgets.occlusion")


class OcclusionLevel(NamedTuple):
    """One step of :func:`occlusion_progressive`.

    Attributes:
        maps: (N, K, H, W) float32 sensitivity maps from the positions computed so far.
        stride: the grid spacing of this level in pixels (the requested stride at the end).
        done: patch positions computed so far, per image.
        total: patch positions of the full grid, per image.
        final: True for the last level, whose maps equal :func:`occlusion`.
        engine: what computed the maps: 'incremental', 'batched' or 'cached'.
    """

    maps: np.ndarray
    stride: int
    done: int
    total: int
    final: bool
    engine: str = "batched"


# ------------------------------------------------------------------ checks


def _check_geometry(patch: Any, stride: Any, height: int, width: int) -> tuple[int, int]:
    patch = check_int(patch, "patch", 1)
    stride = check_int(stride, "stride", 1)
    if patch > min(height, width):
        raise ValueError(
            f"patch {patch} is larger than the image ({height}x{width}); "
            f"use patch <= {min(height, width)}"
        )
    if stride > patch:
        raise ValueError(
            f"stride {stride} is larger than patch {patch}: the pixels between patches would "
            f"never be hidden and their sensitivity would read 0; use stride <= {patch}"
        )
    return patch, stride


def _check_fill(fill: Any, channels: int) -> Any:
    """Normalize ``fill`` to 'mean', 'blur' or a (C,) float32 array."""
    if isinstance(fill, str):
        if fill == "zero":
            return np.zeros(channels, np.float32)
        if fill in FILLS:
            return fill
        raise ValueError(f"unknown fill {fill!r}; use one of {list(FILLS)} or a number")
    if isinstance(fill, bool):
        raise TypeError("fill must be 'mean', 'zero', 'blur', a number or one number per channel")
    if isinstance(fill, numbers.Real):
        value = np.full(channels, float(fill), np.float32)
    else:
        try:
            value = np.asarray(fill, np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise TypeError(
                "fill must be 'mean', 'zero', 'blur', a number or one number per channel, "
                f"got {type(fill).__name__}"
            ) from None
        if value.size != channels:
            raise ValueError(f"fill has {value.size} values but the image has {channels} channels")
    if not np.isfinite(value).all():
        raise ValueError("fill must be finite")
    return value


def _check_engine(engine: Any) -> str:
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use one of {list(ENGINES)}")
    return engine


def occlusion_plan(
    model_or_probe: Any,
    images: Any,
    patch: int = 16,
    stride: int = 8,
    engine: str = "auto",
    target: Any = None,
) -> IncrementalPlan:
    """Which engine :func:`occlusion` would use for these arguments, and why.

    Returns:
        :class:`cnnwidgets.probe.incremental.IncrementalPlan` with ``engine``
        ('incremental' or 'batched'), ``reason`` (one sentence), ``speedup``
        (estimated time of plain passes over incremental ones for a central
        patch; 0 when the incremental engine cannot run) and
        ``full_from`` (nodes where a branch first runs whole). The incremental
        engine also checks itself on each image before use and falls back to
        'batched' under 'auto' if that check fails (logged).

        ``target``: as for :func:`occlusion` (the targets' own check runs first).

    Raises:
        ValueError: bad patch / stride / engine / target, or
            engine='incremental' on a model or targets it cannot run on (the
            message says which node and why).
    """
    probe = as_probe(model_or_probe)
    raw = probe.check_images(images)
    h, w = raw.shape[1:3]
    ys, xs = patch_positions(h, w, patch, stride)
    targets = None if target is None else as_targets(target)
    return choose_engine(
        probe, (h, w), int(patch), len(ys) * len(xs), _check_engine(engine), targets
    )


def _fill_key(fill: Any) -> Any:
    return fill if isinstance(fill, str) else tuple(float(v) for v in fill)


def patch_positions(
    height: int, width: int, patch: int, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-left rows and columns of the patch grid.

    Returns:
        ys: (ny,) int64 rows ``0, stride, ...`` plus ``height - patch`` if the
            last stride falls short; xs: (nx,) int64 columns, likewise. Every
            pixel is covered by at least one patch.
    """
    patch, stride = _check_geometry(patch, stride, height, width)

    def starts(size: int) -> np.ndarray:
        s = list(range(0, size - patch + 1, stride))
        if s[-1] != size - patch:
            s.append(size - patch)
        return np.asarray(s, np.int64)

    return starts(height), starts(width)


# ------------------------------------------------------------------- fills


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (H, W, C) or (N, H, W, C) pixels over H and W, the border
    pixels repeated; float32 of the same shape (the 'blur' fill)."""
    return gaussian_blur(image, sigma, edges="edge")


def _blur_sigma(patch: int) -> float:
    return max(1.0, patch / 4.0)


def _fill_source(raw: np.ndarray, fill: Any, patch: int) -> np.ndarray:
    """What a patch is painted with, per image: (N, 1, 1, C) constant or (N, H, W, C) picture."""
    if isinstance(fill, str) and fill == "mean":
        return raw.mean(axis=(1, 2), keepdims=True, dtype=np.float64).astype(np.float32)
    if isinstance(fill, str) and fill == "blur":
        return blur(raw, _blur_sigma(patch))
    return np.broadcast_to(np.asarray(fill, np.float32), (len(raw), 1, 1, raw.shape[3]))


def _paint(dst: np.ndarray, source: np.ndarray, y: int, x: int, patch: int) -> None:
    """dst[y:y+p, x:x+p] = the fill; ``source`` is (1, 1, C) or (H, W, C)."""
    if source.shape[0] == 1:
        dst[y : y + patch, x : x + patch] = source[0, 0]
    else:
        dst[y : y + patch, x : x + patch] = source[y : y + patch, x : x + patch]


def occlude(image: np.ndarray, x: int, y: int, patch: int = 16, fill: Any = "mean") -> np.ndarray:
    """The image with one square hidden: what :func:`occlusion` feeds the model.

    Args:
        image: raw pixels (H, W) or (H, W, C), any numeric dtype.
        x: column of the patch's TOP-LEFT corner; y: its row. Both are clipped
            so the patch lies inside the image.
        patch: side of the square in pixels (<= min(H, W)).
        fill: 'mean' (the image's mean colour), 'zero', 'blur' (a Gaussian-blurred
            copy, sigma = max(1, patch / 4)), a number or one number per channel.

    Returns:
        (H, W, C) float32 copy (C = 1 for a 2-D image) with rows y:y+patch and
        columns x:x+patch replaced.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"occlude takes one image (H, W) or (H, W, C), got shape {img.shape}")
    h, w, c = img.shape
    patch, _ = _check_geometry(patch, 1, h, w)
    x = check_int(x, "x", -(2**62))
    y = check_int(y, "y", -(2**62))
    fill_ = _check_fill(fill, c)
    out = img.astype(np.float32)  # a copy
    x = min(max(x, 0), w - patch)
    y = min(max(y, 0), h - patch)
    source = _fill_source(out[None], fill_, patch)[0]
    _paint(out, source, y, x, patch)
    return out


# ------------------------------------------------------------------ engine


class _Occluder:
    """Drops in probability (classes) or in target score (targets) for sets of
    patch positions of one image batch."""

    def __init__(
        self,
        probe: Probe,
        raw,
        cls,
        patch,
        stride,
        fill,
        batch_size,
        total_calls,
        engine="auto",
        targets=None,
    ):
        self.probe = probe
        self.raw = raw
        self.cls = cls  # (N, K) int64, or None with targets
        self.targets = targets  # K targets shared by all images, or None
        self.patch = patch
        n, h, w, _ = raw.shape
        self.ys, self.xs = patch_positions(h, w, patch, stride)
        if targets is None:
            probs = probe.predict(raw)  # (N, Kall)
            self.base = np.take_along_axis(probs, cls, axis=1)  # (N, K)
        else:
            self.base = probe.target_scores(raw, targets)  # (N, K)
        self.source = _fill_source(raw, fill, patch)
        per_image = len(self.ys) * len(self.xs)
        self.asked = engine
        self.plan = choose_engine(probe, (h, w), patch, per_image, engine, targets)
        self.engine = self.plan.engine
        self._incremental: tuple[int, IncrementalModel] | None = None
        self.batch_size = batch_size
        if batch_size is not None:
            bs = check_int(batch_size, "batch_size", 1)
        else:
            # The probe's activation budget, and the patched buffer itself (plus
            # the probe's copies of it) within the same budget.
            image_bytes = 4 * int(np.prod(raw.shape[1:]))
            bs = min(probe.batch_size(), max(1, probe.memory_budget // (4 * image_bytes)))
        self.batch = int(max(1, min(bs, per_image)))
        k = len(targets) if targets is not None else cls.shape[1]
        self.drops = np.zeros((n, k, len(self.ys), len(self.xs)), np.float32)
        self.done_mask = np.zeros((len(self.ys), len(self.xs)), bool)
        self.report = total_calls
        self.done = 0
        self.total = n * per_image

    def compute(self, index_pairs: np.ndarray) -> None:
        """Fill ``self.drops`` at grid indices (M, 2) = (iy, ix) for every image."""
        p = self.patch
        for n in range(len(self.raw)):
            image = self.raw[n]
            predict, batch = self._predictor(n)
            buf = np.repeat(image[None], min(batch, len(index_pairs)), axis=0)
            prev: list[tuple[int, int] | None] = [None] * len(buf)
            for start in range(0, len(index_pairs), batch):
                chunk = index_pairs[start : start + batch]
                for slot, (iy, ix) in enumerate(chunk):
                    if prev[slot] is not None:  # undo the last patch of this slot
                        py, px = prev[slot]
                        buf[slot, py : py + p, px : px + p] = image[py : py + p, px : px + p]
                    y, x = int(self.ys[iy]), int(self.xs[ix])
                    _paint(buf[slot], self.source[n], y, x, p)
                    prev[slot] = (y, x)
                scores = predict(buf[: len(chunk)])
                if self.targets is None:
                    scores = scores[:, self.cls[n]]  # (m, K) of the image's classes
                drop = self.base[n][None, :] - scores  # (m, K)
                self.drops[n][:, chunk[:, 0], chunk[:, 1]] = drop.T
                self.done += len(chunk)
                self.report(self.done, self.total)
        self.done_mask[index_pairs[:, 0], index_pairs[:, 1]] = True

    def _predictor(self, n: int):
        """(function of patched raw images (M, H, W, C) -> probabilities (M, Kall)
        or target scores (M, K), batch size) for image n, on the engine of the plan."""
        if self.engine == "incremental":
            try:
                cut, head = (None, None)
                if self.targets is not None:
                    # Stop at the output node's input; the target head scores it.
                    cut, head = target_head(self.probe, self.targets)
                if self._incremental is None or self._incremental[0] != n:
                    self._incremental = None  # one image's cached activations at a time
                    model = IncrementalModel(self.probe, self.raw[n], self.patch, output=cut)
                    self._incremental = (n, model)
                model = self._incremental[1]
                if self.batch_size is not None:
                    batch = check_int(self.batch_size, "batch_size", 1)
                else:
                    per = max(1, model.bytes_per_image(self.patch))
                    batch = int(np.clip(self.probe.memory_budget // per, 1, 64))
                if head is None:
                    return model.predict, batch

                def scored(images: np.ndarray) -> np.ndarray:
                    (scores,) = self.probe.run(head, model.outputs(images), len(images))
                    return scores.astype(np.float32)

                return scored, batch
            except NotIncremental as exc:
                if self.asked == "incremental":
                    raise ValueError(
                        f"engine='incremental' cannot run here: {exc}; use engine='batched' "
                        "or 'auto'"
                    ) from exc
                _LOG.info("occlusion: incremental engine unavailable (%s); batched passes", exc)
                self.engine = "batched"
                self.plan = IncrementalPlan("batched", f"self-check failed: {exc}")

        def batched(images: np.ndarray) -> np.ndarray:
            if self.targets is not None:
                return self.probe.target_scores(
                    images, self.targets, batch_size=len(images), cache=False
                )
            return self.probe.predict(images, batch_size=len(images), cache=False)

        return batched, self.batch

    def maps(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(N, K, H, W) float32 map from the drops computed at grid rows x cols.

        Drops at the grid positions not computed yet are linearly interpolated
        from the computed ones (separably, in pixel coordinates); then each
        drop is spread over its patch and averaged per pixel. With every
        position computed this is the exact occlusion map."""
        h, w = self.raw.shape[1:3]
        ay = _cover(self.ys, self.patch, h) @ _interp(self.ys, rows)  # (H, m_rows)
        ax = _cover(self.xs, self.patch, w) @ _interp(self.xs, cols)  # (W, m_cols)
        d = self.drops[:, :, rows][:, :, :, cols].astype(np.float64)
        total = np.einsum("hi,nkij,wj->nkhw", ay, d, ax, optimize=True)
        cy = _cover(self.ys, self.patch, h).sum(axis=1)
        cx = _cover(self.xs, self.patch, w).sum(axis=1)
        count = cy[:, None] * cx[None, :]
        out = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        return out.astype(np.float32)


def _cover(starts: np.ndarray, patch: int, size: int) -> np.ndarray:
    """(size, n) float64 indicator: pixel row/column r lies in patch j."""
    r = np.arange(size)[:, None]
    return ((r >= starts[None, :]) & (r < starts[None, :] + patch)).astype(np.float64)


def _interp(starts: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """(n, m) float64 weights: linear interpolation of all n grid positions from
    the m positions ``subset`` (sorted indices, first and last included)."""
    n, m = len(starts), len(subset)
    weights = np.zeros((n, m))
    known = starts[subset].astype(np.float64)
    for i, pos in enumerate(starts.astype(np.float64)):
        j = int(np.clip(np.searchsorted(known, pos, side="right") - 1, 0, m - 1))
        if j == m - 1 or known[j] == pos:
            weights[i, j] = 1.0
        else:
            t = (pos - known[j]) / (known[j + 1] - known[j])
            weights[i, j], weights[i, j + 1] = 1.0 - t, t
    return weights


def _prepare(model_or_probe, images, classes, patch, stride, fill, target=None):
    def geometry(probe: Probe, raw: np.ndarray) -> tuple[int, int, Any]:
        h, w, c = raw.shape[1:]
        return (*_check_geometry(patch, stride, h, w), _check_fill(fill, c))

    req = prepare(model_or_probe, images, classes, checks=geometry, target=target)
    probe, raw = req.probe, req.raw
    patch, stride, fill_ = req.checked
    key = probe.result_key(
        "occlusion",
        array_key(raw),
        req.selection_key,
        patch,
        stride,
        _fill_key(fill_),
    )
    return req, patch, stride, fill_, key


def occlusion(
    model_or_probe: Any,
    images: Any,
    classes: Any = None,
    patch: int = 16,
    stride: int = 8,
    fill: Any = "mean",
    batch_size: int | None = None,
    progress: Any = None,
    engine: str = "auto",
    target: Any = None,
) -> np.ndarray:
    """Occlusion sensitivity maps at input resolution.

    Args:
        model_or_probe: a keras.Model or a :class:`cnnwidgets.Probe` (its
            ``preprocess`` is applied to every patched image).
        images: raw pixels (H, W, C) or (N, H, W, C); patches are painted on
            the raw pixels, before ``preprocess``.
        classes: None (each image's top-1 class), an int, a class name, or a list (K classes).
        patch: side of the square in pixels (1 <= patch <= min(H, W)).
        stride: step between patch positions in pixels (>= 1); the last
            position is moved back to the border, so every pixel is covered.
        fill: 'mean' (the image's mean colour), 'zero', 'blur' (Gaussian-blurred
            copy of the image, sigma = max(1, patch / 4)), a number or one
            number per channel, in raw-pixel units.
        batch_size: patched images per forward pass (default: the probe's
            memory budget). Patched images are made lazily per batch.
        progress: None (a bar for large jobs), True, False or ``(done, total)`` that
            may raise :class:`cnnwidgets.Cancelled` to stop.
        engine: 'auto' (default), 'incremental' (recompute only the window
            each patch reaches; same maps up to float rounding) or 'batched'
            (every patched copy through the whole model). See
            :func:`occlusion_plan` for the choice 'auto' makes and why.
        target: instead of ``classes`` (giving both is a TypeError): one
            target shared by all images or a list of K (see
            :mod:`cnnwidgets.probe.targets`); the map is then the drop of the
            target's score, score(image) - score(patched image), in the
            score's own units (logits for Class). Targets ride the
            incremental engine on single-output models (it stops at the output
            node's input and a compiled target head scores the recomputed
            values); on models with several outputs (detectors, two heads)
            they run batched, and ``engine='incremental'`` raises a ValueError
            saying why (see :func:`occlusion_plan`).

    Returns:
        (N, K, H, W) float32: at each pixel, the mean over the patches covering
        it of P(class | image) - P(class | image with the patch hidden) (or of
        the target's score drop). All K classes come from the same forward
        passes. Results are cached.

    Raises:
        ValueError: patch larger than the image, stride < 1, unknown fill, bad
            class, unknown engine, or engine='incremental' on a model it cannot
            run on.
    """
    final = None
    for level in occlusion_progressive(
        model_or_probe,
        images,
        classes,
        patch,
        stride,
        fill,
        batch_size,
        progress,
        levels=1,
        engine=engine,
        target=target,
    ):
        final = level.maps
    assert final is not None
    return final


def occlusion_progressive(
    model_or_probe: Any,
    images: Any,
    classes: Any = None,
    patch: int = 16,
    stride: int = 8,
    fill: Any = "mean",
    batch_size: int | None = None,
    progress: Any = None,
    levels: int | None = None,
    engine: str = "auto",
    target: Any = None,
) -> Iterator[OcclusionLevel]:
    """Coarse-to-fine occlusion: yields complete, successively finer maps.

    Level k (coarsest first) adds the grid positions whose row and column
    indices are multiples of 2**k (the last row/column is always included),
    so the first map costs about 1/4**k of the passes. At a coarse level the
    drops of the positions not computed yet are linearly interpolated from
    their computed neighbours, so every preview is a full map of the same
    patch size; the last level is exactly
    :func:`occlusion` (and is cached as its result). Arguments as
    :func:`occlusion`; ``levels`` caps the number of levels (default: as many
    as keep >= 3 positions per axis on the coarsest level).

    Yields:
        :class:`OcclusionLevel` with maps (N, K, H, W) float32.
    """
    engine = _check_engine(engine)
    req, patch, stride, fill_, key = _prepare(
        model_or_probe, images, classes, patch, stride, fill, target
    )
    probe, raw, cls = req.probe, req.raw, req.classes
    if levels is not None:
        levels = check_int(levels, "levels", 1)
    report = reporter(progress, "occlusion")
    hit = RESULTS.get(key)
    ys, xs = patch_positions(raw.shape[1], raw.shape[2], patch, stride)
    total = len(ys) * len(xs)
    if hit is not None:
        report(len(raw) * total, len(raw) * total)
        yield OcclusionLevel(hit.copy(), stride, total, total, True, "cached")
        return

    occ = _Occluder(
        probe, raw, cls, patch, stride, fill_, batch_size, report, engine, req.targets
    )
    _LOG.info("occlusion: %s engine (%s)", occ.engine, occ.plan.reason)
    report(0, occ.total)
    ny, nx = len(ys), len(xs)
    coarsest = 0
    while min(-(-ny // 2 ** (coarsest + 1)), -(-nx // 2 ** (coarsest + 1))) >= 3:
        coarsest += 1
    if levels is not None:
        coarsest = min(coarsest, levels - 1)
    for k in range(coarsest, -1, -1):
        step = 2**k
        rows = np.unique(np.r_[np.arange(0, ny, step), ny - 1])
        cols = np.unique(np.r_[np.arange(0, nx, step), nx - 1])
        grid = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
        todo = grid[~occ.done_mask[grid[:, 0], grid[:, 1]]]
        if len(todo):
            occ.compute(todo)
        level_stride = stride * step
        maps = occ.maps(rows, cols)
        if k == 0:
            RESULTS.put(key, maps)
            maps = maps.copy()
        yield OcclusionLevel(
            maps, level_stride, len(rows) * len(cols), total, k == 0, occ.engine
        )
