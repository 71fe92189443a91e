"""What every computation in ``explain/`` shares: preparing a request, checking
arguments, scaling maps and blurring pictures. One implementation of each."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnwidgets.cache import array_key
from cnnwidgets.probe import Probe, as_probe
from cnnwidgets.probe.targets import Target, target_keys, targets_of_call

#: Names accepted by ``normalize`` everywhere.
NORMALIZE_MODES: tuple = ("map", "image", None)


@dataclass(frozen=True)
class Prepared:
    """A validated request: the probe, the raw images (N, H, W, C) float32,
    the classes (N, K) int64 (None when targets are given), the model inputs
    (N, H, W, C) float32, what the request's own ``checks`` returned (None
    without them) and the K targets shared by all images (None for classes)."""

    probe: Probe
    raw: np.ndarray
    classes: np.ndarray | None
    x: np.ndarray
    checked: Any = None
    targets: tuple[Target, ...] | None = None

    @property
    def selection(self) -> np.ndarray | tuple[Target, ...]:
        """What the gradient functions take: the targets, or the class indices."""
        return self.targets if self.targets is not None else self.classes

    @property
    def selection_key(self) -> tuple:
        """A hashable key of the selection, for result caches."""
        if self.targets is not None:
            return ("targets", target_keys(self.targets))
        return ("classes", array_key(self.classes))


def prepare(
    model_or_probe: Any,
    images: Any,
    classes: Any = None,
    checks: Callable[[Probe, np.ndarray], Any] | None = None,
    target: Any = None,
) -> Prepared:
    """The opening steps of every explanation, in one order: a Probe,
    checked raw images, the request's own ``checks(probe, raw)`` (a layer, a
    patch size: whatever needs the model or the image size), then the classes
    or targets and the preprocessed model inputs. Classes come last because
    resolving the default (top-1) class costs a forward pass, which a bad
    argument should not; targets are checked on the graph, without one.

    ``target``: one target (all images) or a list of K (see
    :mod:`cnnwidgets.probe.targets`); giving it with ``classes`` is a TypeError."""
    targets = targets_of_call(target, classes)
    probe = as_probe(model_or_probe)
    raw = probe.check_images(images)
    checked = None if checks is None else checks(probe, raw)
    if targets is not None:
        for t in targets:
            t.check(probe)
        return Prepared(probe, raw, None, probe.model_inputs(raw), checked, targets)
    cls = probe.resolve_classes(classes, raw)
    return Prepared(probe, raw, cls, probe.model_inputs(raw), checked)


@dataclass(frozen=True)
class MethodInfo:
    """What a map method needs, so that callers handling many methods (the
    comparator, dataset streams, benchmarks) never branch on method names.

    ``family``: 'cam' (maps from a layer's channels, :func:`cnnwidgets.gradcam`)
    or 'saliency' (maps from input gradients, :func:`cnnwidgets.saliency`).
    ``uses_layer``: its maps depend on the chosen 4-D layer, so anything
    cached for it is keyed by the layer too. ``needs_gradients``: it runs
    backward passes. ``own_passes``: beyond one forward (and backward) pass
    per image it runs batches of model passes of its own (masked, noisy or
    interpolated inputs), reported by its progress. ``params``: the extra
    keyword arguments it reads."""

    name: str
    family: str
    uses_layer: bool
    needs_gradients: bool
    own_passes: bool = False
    params: tuple[str, ...] = ()


def check_int(value: Any, name: str, low: int) -> int:
    """``value`` as an int >= ``low`` (numpy integers welcome, bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def check_method(method: Any, choices: Sequence[str], aliases: Mapping[str, str], what: str) -> str:
    """The canonical name of a method given in any case, with '-', '_' or spaces."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, one of {tuple(choices)}; got {method!r}")
    m = method.lower().strip()
    if m in choices:
        return m
    key = m.replace("_", "").replace("-", "").replace(" ", "")
    for name in choices:
        if key == name.replace("-", ""):
            return name
    if key in aliases:
        return aliases[key]
    raise ValueError(f"unknown {what} method {method!r}; choose one of {tuple(choices)}")


def check_normalize(mode: Any) -> None:
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {mode!r}")


def normalize_maps(maps: np.ndarray, mode: str | None = "map") -> np.ndarray:
    """Scale non-negative maps (N, ..., H, W) for display; float32, same shape.

    Args:
        maps: (N, ..., H, W) values >= 0 (negative values are clipped to 0).
        mode: ``"map"``: each (H, W) map divided by its own maximum, to [0, 1];
            ``"image"``: everything of one image (axis 0) divided by one
            maximum, so classes (and methods, when the caller stacks them as
            (N, M, K, H, W)) share one scale; ``None``: unchanged (clipped at 0).

    An all-zero map stays zero; the result never holds NaN.
    """
    check_normalize(mode)
    maps = np.maximum(np.nan_to_num(np.asarray(maps, np.float32)), 0.0)
    if mode is None:
        return maps
    if mode == "map":
        axes = (-2, -1)
    else:
        if maps.ndim < 3:
            raise ValueError(f"'image' normalization needs (N, ..., H, W) maps, got {maps.shape}")
        axes = tuple(range(1, maps.ndim))
    peak = maps.max(axis=axes, keepdims=True)
    safe = np.where(peak > 0, peak, 1.0)
    return np.where(peak > 0, maps / safe, 0.0).astype(np.float32)


def gaussian_blur(images: np.ndarray, sigma: float, edges: str = "reflect") -> np.ndarray:
    """Separable Gaussian blur over H and W of (H, W, C) or (N, H, W, C) pixels.

    ``edges``: 'reflect' (mirror, or repeated mirroring on images smaller than
    the kernel) or 'edge' (the border pixel repeated). Returns float32 of the
    same shape; ``sigma <= 0`` returns a copy."""
    x = np.asarray(images, np.float64)
    if sigma <= 0:
        return x.astype(np.float32)
    if edges not in ("reflect", "edge"):
        raise ValueError(f"edges must be 'reflect' or 'edge', got {edges!r}")
    radius = max(1, int(np.ceil(3.0 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (0, 1) if x.ndim == 3 else (1, 2):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (radius, radius)
        mode = edges
        if edges == "reflect" and radius >= x.shape[axis]:
            mode = "symmetric"  # numpy's reflect needs radius < size
        padded = np.pad(x, pad, mode=mode)
        n = x.shape[axis]
        out = np.zeros_like(x)
        for i, w in enumerate(kernel):
            out += w * np.take(padded, np.arange(i, i + n), axis=axis)
        x = out
    return x.astype(np.float32)
