"""Activation maximization: pictures that excite one filter (or one class) most.

    images = cw.maximize(model, "block2_conv1", filters=[0, 1, 2], steps=64)
    images.shape                                    # (3, 128, 128, 3) uint8
    cw.explain.maximize.activation_gain(model, "block2_conv1", images, [0, 1, 2])

All requested filters are optimized together, one image per filter in the
batch; each image's loss depends on that image only, and its random start and
transforms come from ``numpy.random.default_rng([seed, filter])``, so a filter
gives the same picture alone or in any batch. The gradient-ascent loop itself
lives in :mod:`cnnwidgets.gradients.ascent` (this module never imports
TensorFlow).

Input size: a model with a fixed input size (H, W) is optimized at (H, W)
(its receptive fields are tied to that size) and the result is resized to
``size`` x ``size`` for display; a fully convolutional model (input size None)
is optimized at ``size`` x ``size`` directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnwidgets import render
from cnnwidgets.cache import RESULTS
from cnnwidgets.probe import Probe, as_probe, check_batch_size
from cnnwidgets.progress import reporter

#: Default step sizes: per-pixel RMS step ('pixel'), Adam's rate ('fourier').
DEFAULT_LR = {"pixel": 0.02, "fourier": 0.1}
_SCALES = 1.0 + (np.arange(11) - 5) / 50.0
_ANGLES = np.array(list(range(-10, 11)) + [0] * 5, np.float64)


def _check_number(value: Any, name: str, low: float, integer: bool) -> Any:
    """An int (or finite float) >= low, or a TypeError / ValueError saying so."""
    kind = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if not np.isfinite(value) or value < low:
        raise ValueError(f"{name} must be a finite number >= {low}, got {value!r}")
    return int(value) if integer else float(value)


def target_of(probe: Probe, layer: Any) -> tuple[str, str]:
    """(layer path, 'class' or 'channel'): the output layer means its class logits.

    Raises ValueError (with the closest layer names) for an unknown layer."""
    path = probe.resolve(layer)
    if path == probe.head.logits_from:
        return path, "class"
    info = probe.layer_info(path)
    if len(info.output_shape) < 2 or info.output_shape[-1] is None:
        raise ValueError(
            f"layer {path!r} has output shape {info.output_shape}; pick a layer with a "
            f"channel axis, e.g. one of {probe.conv_layers[-3:]}"
        )
    return path, "channel"


def _resolve_filters(probe: Probe, path: str, target: str, filters: Any) -> list[int]:
    if target == "class":
        count = probe.num_classes
    else:
        count = int(probe.layer_info(path).output_shape[-1])
    if filters is None:
        return list(range(count))
    if isinstance(filters, (int, np.integer, str)):
        filters = [filters]
    out = []
    for f in filters:
        if target == "class":
            out.append(probe.class_index(f))
            continue
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)):
            raise TypeError(f"filters are channel indices (int), got {f!r}")
        if not 0 <= int(f) < count:
            raise ValueError(f"filter {f} out of range; layer {path!r} has {count} channels")
        out.append(int(f))
    if not out:
        raise ValueError("filters is empty; pass None for all filters of the layer")
    return out


def _input_hw(probe: Probe, size: int) -> tuple[int, int]:
    h, w = probe.input_shape[1:3]
    return (int(h or size), int(w or size))


def _channels(probe: Probe) -> int:
    c = probe.input_shape[3]
    if c not in (1, 3):
        raise ValueError(f"maximize draws 1- or 3-channel images; the model takes {c} channels")
    return int(c)


def affine_preprocess(probe: Probe) -> tuple[np.ndarray, np.ndarray] | None:
    """The probe's ``preprocess`` as a per-pixel affine map (A (C, C), b (C,)) float32.

    Optimization needs the preprocessing inside the gradient; the usual ones
    (scaling, mean subtraction, 'caffe' BGR flips) are affine per pixel and are
    measured here by calling the function on a few images. None when there is
    no preprocessing. Raises ValueError for a non-affine function."""
    if probe.preprocess is None:
        return None
    c = _channels(probe)
    probes = np.zeros((c + 1, 2, 2, c), np.float32)
    for k in range(c):
        probes[k + 1, ..., k] = 255.0
    out = probe.model_inputs(probes)
    b = out[0, 0, 0].astype(np.float32)
    a = np.stack([(out[k + 1, 0, 0] - b) / 255.0 for k in range(c)], axis=1).astype(np.float32)
    test = np.random.default_rng(0).uniform(0, 255, (1, 2, 2, c)).astype(np.float32)
    if not np.allclose(probe.model_inputs(test), test @ a.T + b, rtol=1e-3, atol=1e-3):
        raise ValueError(
            "maximize needs a preprocess function that is affine per pixel (scaling, mean "
            "subtraction, channel flips); put other preprocessing inside the model"
        )
    return a, b


def start_noise(seed: int, filt: int, hw: tuple[int, int], c: int = 3) -> np.ndarray:
    """The grey noise image (H, W, C) float32 in [0, 1] a filter's 'pixel' run starts from.

    0.5 + U(-1/16, 1/16), as in the Keras example; drawn from
    ``default_rng([seed, filt])``."""
    rng = np.random.default_rng([int(seed), int(filt)])
    return (0.5 + (rng.random((*hw, c), dtype=np.float32) - 0.5) * 0.125).astype(np.float32)


def _random_transforms(
    rng: np.random.Generator, steps: int, hw: tuple[int, int], jitter: int
) -> np.ndarray:
    """(steps, 8) float32 projective transforms: rotation, scale and translation
    about the centre (Lucid's standard transforms, jitter scaled to the image)."""
    out = np.zeros((steps, 8), np.float32)
    if jitter <= 0:
        out[:, 0] = out[:, 4] = 1.0
        return out
    s = rng.choice(_SCALES, steps)
    a = np.deg2rad(rng.choice(_ANGLES, steps))
    t = rng.integers(-jitter, jitter + 1, (steps, 2))
    cy, cx = (hw[0] - 1) / 2.0, (hw[1] - 1) / 2.0
    a0, a1 = np.cos(a) / s, -np.sin(a) / s
    b0, b1 = np.sin(a) / s, np.cos(a) / s
    out[:, 0], out[:, 1], out[:, 2] = a0, a1, cx - a0 * cx - a1 * cy + t[:, 1]
    out[:, 3], out[:, 4], out[:, 5] = b0, b1, cy - b0 * cx - b1 * cy + t[:, 0]
    return out


def _start(
    param: str, seed: int, filt: int, hw: tuple[int, int], c: int, steps: int, jitter: int
) -> tuple[np.ndarray, np.ndarray]:
    """One filter's starting variable and its (steps, 8) transforms."""
    from cnnwidgets.gradients.ascent import fourier_shape

    if param == "pixel":
        identity = _random_transforms(np.random.default_rng(0), steps, hw, 0)
        return start_noise(seed, filt, hw, c), identity
    rng = np.random.default_rng([int(seed), int(filt)])
    init = rng.normal(0.0, 0.01, fourier_shape(hw[0], hw[1], c)).astype(np.float32)
    return init, _random_transforms(rng, steps, hw, jitter)


def maximize(
    model_or_probe: Any,
    layer: Any,
    filters: int | str | Sequence[int | str] | None = None,
    size: int = 128,
    steps: int = 256,
    seed: int = 0,
    param: str = "fourier",
    lr: float | None = None,
    jitter: int | None = None,
    progress: Any = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Images that maximize each filter's mean activation (or a class logit).

    Args:
        model_or_probe: a keras.Model or a :class:`cnnwidgets.Probe`.
        layer: a layer name or path. The output layer (e.g. 'predictions')
            means the class scores on logits (never the softmax); then
            ``filters`` are classes (indices or names).
        filters: channel indices (or classes); None for all of them.
        size: side of the returned images. A model with a fixed input size is
            optimized at that size and the result resized (see module doc).
        steps: optimization steps.
        seed: the random seed; filter ``f`` uses ``default_rng([seed, f])``.
        param: 'fourier' (decorrelated Fourier basis, Adam, random jitter /
            scale / rotation; Olah et al.) or 'pixel' (normalized gradient
            ascent on the pixels from grey noise; the Keras example).
        lr: step size; default 0.1 (Adam, 'fourier'; 0.3 suits < 64 steps) or 0.02 (RMS step in
            [0, 1] pixel units, 'pixel').
        jitter: largest random shift in pixels ('fourier'; default H // 16);
            0 turns off all random transforms.
        progress: None (a bar for large jobs), True, False or ``(done, total)``; it
            may raise :class:`cnnwidgets.Cancelled` to stop (propagated).
        batch_size: images optimized together (default from the probe's
            memory budget, at most 64).

    Returns:
        (F, size, size, 3) uint8 pictures in the raw-pixel range, in the
        order of ``filters``. Results are cached per filter by (layer, filter,
        size, steps, seed, param, lr, jitter).
    """
    from cnnwidgets.gradients.ascent import check_param  # TensorFlow is loaded on first use

    probe = as_probe(model_or_probe)
    path, target = target_of(probe, layer)
    check_param(param)
    size = _check_number(size, "size", 8, integer=True)
    steps = _check_number(steps, "steps", 1, integer=True)
    seed = _check_number(seed, "seed", 0, integer=True)
    if lr is not None:
        lr = _check_number(lr, "lr", 0.0, integer=False)
        if lr == 0:
            raise ValueError("lr must be > 0 (a zero step leaves the starting noise unchanged)")
    if jitter is not None:
        jitter = _check_number(jitter, "jitter", 0, integer=True)
    batch_size = check_batch_size(batch_size)
    idx = _resolve_filters(probe, path, target, filters)
    hw = _input_hw(probe, size)
    c = _channels(probe)
    lr = float(DEFAULT_LR[param] if lr is None else lr)
    jitter = int(max(1, min(hw) // 16) if jitter is None else jitter)
    pre = affine_preprocess(probe)
    report = reporter(progress, f"maximize {path}")
    # Keys taken now, with the weights version of now (see Probe.result_key).
    keys = {
        f: probe.result_key("maximize", path, target, f, size, steps, seed, param, lr, jitter)
        for f in idx
    }
    done = {f: RESULTS.get(k) for f, k in keys.items()}
    todo = [f for f in dict.fromkeys(idx) if done[f] is None]
    bs = int(batch_size or min(64, probe.batch_size(per_sample_factor=4.0)))
    batches = [todo[i : i + bs] for i in range(0, len(todo), bs)]
    total = steps * len(batches)
    if batches:
        report(0, total)
        from cnnwidgets.gradients.ascent import ascend

        k = probe.num_classes if target == "class" else int(probe.layer_info(path).output_shape[-1])
        for b, batch in enumerate(batches):
            starts = [_start(param, seed, f, hw, c, steps, jitter) for f in batch]
            init = np.stack([s[0] for s in starts])
            transforms = np.stack([s[1] for s in starts])
            onehot = np.eye(k, dtype=np.float32)[batch]
            images, _ = ascend(
                probe,
                path,
                target,
                init,
                onehot,
                transforms,
                param,
                lr,
                hw,
                preprocess=pre,
                progress=lambda done, b=b: report(b * steps + done, total),
            )
            if not np.isfinite(images).all():
                raise ValueError(
                    f"the gradient ascent diverged (lr={lr}): the images hold NaN or infinite "
                    f"values; use a smaller lr (default {DEFAULT_LR[param]})"
                )
            pictures = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
            for f, pic in zip(batch, pictures):
                pic = render.to_rgb_uint8(pic)
                done[f] = RESULTS.put(keys[f], render.resize_image(pic, (size, size)))
    return np.stack([done[f] for f in idx])


def filter_activations(
    model_or_probe: Any, layer: Any, images: np.ndarray, filters: Sequence[int | str]
) -> np.ndarray:
    """Each image's mean activation of its own filter: (F,) float32.

    ``images`` (F, h, w, 3) raw pixels (e.g. from :func:`maximize`) are resized
    to the model's input size if it has one; image i is scored on filter i.
    For the output layer the value is the probability of class i."""
    probe = as_probe(model_or_probe)
    path, target = target_of(probe, layer)
    idx = _resolve_filters(probe, path, target, list(filters))
    images = np.asarray(images)
    if images.ndim != 4 or len(images) != len(idx):
        raise ValueError(
            f"images must be (F, h, w, C) with F = len(filters) = {len(idx)}, got {images.shape}"
        )
    h, w = probe.input_shape[1:3]
    if h is not None and images.shape[1:3] != (h, w):
        images = np.stack([render.resize_image(render.to_rgb_uint8(i), (h, w)) for i in images])
    if probe.input_shape[3] == 1 and images.shape[-1] == 3:
        images = images.astype(np.float32).mean(axis=-1, keepdims=True)
    rows = np.arange(len(idx))
    if target == "class":
        return probe.predict(images)[rows, idx].astype(np.float32)
    act = probe.activations(images, path)[path]
    means = act.reshape(len(act), -1, act.shape[-1]).mean(axis=1)
    return means[rows, idx].astype(np.float32)


def activation_gain(
    model_or_probe: Any,
    layer: Any,
    images: np.ndarray,
    filters: Sequence[int | str],
    seed: int = 0,
) -> np.ndarray:
    """How much more each filter fires on its image than on grey noise: (F,) float32.

    The ratio of :func:`filter_activations` on ``images`` to that on the grey
    noise :func:`start_noise` (seed, filter) that the 'pixel' method starts
    from (floored at 1e-6, so a filter silent on noise gives a large ratio).
    For the output layer it is the ratio of class probabilities."""
    probe = as_probe(model_or_probe)
    path, target = target_of(probe, layer)
    idx = _resolve_filters(probe, path, target, list(filters))
    hw = _input_hw(probe, np.asarray(images).shape[1])
    c = _channels(probe)
    noise = np.stack([start_noise(seed, f, hw, c) for f in idx]) * 255.0
    on_images = filter_activations(probe, path, images, idx)
    on_noise = filter_activations(probe, path, np.rint(noise).astype(np.uint8), idx)
    return (on_images / np.maximum(on_noise, 1e-6)).astype(np.float32)
