"""Autodiff on Keras's torch backend: ``torch.autograd`` in eager mode.

The builders of :mod:`cnnwidgets.gradients` (see there for the interface).
Every function runs the Keras graph eagerly, so it reads the weights at call
time (training between calls is seen) and keeps nothing computed from them.

- Gradients with respect to a layer's tensor use the functional graph split
  at that layer (:meth:`Probe.split`): ``act = below(x)`` under
  ``torch.no_grad`` (nothing below the layer is differentiated), then
  scores = ``above(x, act)`` and ``torch.autograd.grad`` in ``act``. The K
  scores share that one forward pass: K backward passes through the
  recorded graph (``retain_graph``), as the TensorFlow tape does (one
  vmapped pass, ``is_grads_batched``, measured no faster on CPU).
- Guided backprop and the deconvnet: while our forward pass runs, a
  thread-local ``TorchFunctionMode`` answers every ``relu`` / ``relu6``
  call (Keras's ``ops.relu`` / ``ops.relu6`` are ``torch.nn.functional``'s;
  its hard sigmoid / swish are rebuilt from relu6, as TensorFlow builds them)
  with a ``torch.autograd.Function`` twin whose backward is the rule's. The
  user's model, Keras's functions and other threads (a widget's background
  job, a training loop) are untouched; leaving the block is the restore.

Why eager, not ``torch.compile``: :func:`traced_once` returns the function as
it is. Measured on MobileNetV2 (alpha 0.35, 96 x 96, one image, two shared CPU
cores, torch 2.13 CPU): ``torch.compile`` of the model's forward pass alone
took 78 s to warm, hit dynamo's recompile limit in Keras's own layer hooks
(``_setattr_hook``, per-layer ``forward`` on each new shape) and then ran at
86 ms a call, slower than the eager forward pass (about 50 ms); the eager
Grad-CAM function (forward, split, K=10 backward passes) runs in about 56 ms
and costs nothing to warm, so the first map is as quick as the tenth. Most
of an eager call is Keras's Python dispatch per layer, which a compiler that
breaks its graph at every layer does not remove.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from cnnwidgets import gradients
from cnnwidgets.probe import Probe

# ------------------------------------------------------------------- ReLU rules


def _guided(y, g, upper):
    # Pass a gradient only where the forward unit was active AND the gradient is positive.
    active = y > 0 if upper is None else (y > 0) & (y < upper)
    return torch.where(active, torch.clamp(g, min=0), torch.zeros_like(g))


def _deconv(y, g, upper):
    # Zeiler and Fergus: ReLU applied to the backward signal, ignoring the forward mask.
    return torch.clamp(g, min=0)


def _rule_relu(backward: Callable, upper: float | None) -> Callable:
    """A ReLU (``upper``: ReLU6) whose backward pass is ``backward(y, g, upper)``."""

    class RuleReLU(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return torch.clamp(x, min=0) if upper is None else torch.clamp(x, 0, upper)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(output)

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return backward(y, g, upper)

    RuleReLU.__name__ = f"{backward.__name__.strip('_')}_relu{'' if upper is None else '6'}"
    return RuleReLU.apply


#: rule -> {'relu': twin, 'relu6': twin}
RELU_TWINS = {
    "guided": {"relu": _rule_relu(_guided, None), "relu6": _rule_relu(_guided, 6.0)},
    "deconvnet": {"relu": _rule_relu(_deconv, None), "relu6": _rule_relu(_deconv, 6.0)},
}

#: torch functions -> how the rule's twins ({'relu', 'relu6'}) compute them.
#: Keras calls ``torch.nn.functional.relu`` / ``relu6``; ``torch.relu`` and
#: ``Tensor.relu`` are caught so a torch layer wrapped in Keras gets the rule
#: too (TensorFlow's rule catches every Relu op the same way). Keras's
#: ``hard_sigmoid`` / ``hard_swish`` are fused torch ops, while TensorFlow and
#: JAX build them from relu6, whose rule then applies inside them: the same
#: composition here (MobileNetV3's activations).
_RULED = {
    F.relu: lambda twins, x: twins["relu"](x),
    torch.relu: lambda twins, x: twins["relu"](x),
    torch.Tensor.relu: lambda twins, x: twins["relu"](x),
    F.relu6: lambda twins, x: twins["relu6"](x),
    F.hardsigmoid: lambda twins, x: twins["relu6"](x + 3.0) / 6.0,
    F.hardswish: lambda twins, x: x * (twins["relu6"](x + 3.0) / 6.0),
}


class _ReluRule(TorchFunctionMode):
    """Inside this block, on this thread, torch's ReLUs are the rule's twins."""

    def __init__(self, rule: str):
        super().__init__()
        self.twins = RELU_TWINS[rule]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        ruled = _RULED.get(func)
        if ruled is not None:
            return ruled(self.twins, args[0])
        return func(*args, **(kwargs or {}))


def with_rule(rule: str | None):
    """A context in which the forward pass records the ReLU backward ``rule``
    (None: a context that changes nothing)."""
    if rule is None:
        return torch.enable_grad()
    return _ReluRule(rule)


# ---------------------------------------------------------- compiled functions


def traced_once(fn: Callable, signature: Sequence[tuple[tuple, str]]) -> Callable:
    """``fn`` itself: on torch every function runs eagerly (see the module docstring)."""
    return fn


def _tensor(x: np.ndarray) -> torch.Tensor:
    """float32 numpy -> a torch tensor on Keras's device."""
    return keras.ops.convert_to_tensor(np.asarray(x, np.float32))


def _numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    if t.is_floating_point() and t.dtype != torch.float32:
        t = t.float()  # numpy has no bfloat16; float16 models give float32 maps
    return t.cpu().numpy()


def _numpy_call(fn: Callable) -> Callable:
    """numpy (x, classes or None) -> tuple of numpy arrays, around ``fn`` on tensors."""

    def call(x, classes=None):
        xt = _tensor(x)
        ct = None
        if classes is not None:
            ct = torch.as_tensor(np.asarray(classes), dtype=torch.int64, device=xt.device)
        return tuple(_numpy(o) for o in fn(xt, ct))

    return call


def _pick(scores, classes):
    """scores (N, K_all), classes (N, K) or None -> (N, K) float32."""
    scores = scores.float()
    return scores if classes is None else torch.take_along_dim(scores, classes, dim=1)


def _grad(out, wrt, grad_output=None, retain: bool = False):
    """d out / d wrt (zeros where ``out`` does not depend on ``wrt``)."""
    if not out.requires_grad:
        return torch.zeros_like(wrt)
    (g,) = torch.autograd.grad(out, wrt, grad_outputs=grad_output, retain_graph=retain,
                               allow_unused=True, materialize_grads=True)
    return g


def _columns(picked, wrt, k: int):
    """(N, K, ...) gradients of each of the K score columns of ``picked`` (N, K)
    with respect to ``wrt`` (N, ...): one backward pass per column through
    the one recorded forward pass. Images are independent (inference mode),
    so the gradient of a column's sum is each image's own gradient."""
    grads = []
    for j in range(k):
        onehot = torch.zeros_like(picked)
        onehot[:, j] = 1.0
        grads.append(_grad(picked, wrt, onehot, retain=j < k - 1))
    return torch.stack(grads, dim=1)


def layer_fn(probe: Probe, layer: str, targets, k: int, shape: tuple) -> Callable:
    """See :mod:`cnnwidgets.gradients`: (x, classes) -> (acts, grads, scores)."""
    below = probe.submodel([layer])
    above = probe.split(layer, targets=targets)

    def backward(x, classes):
        with torch.no_grad():
            act = below(x, training=False)
        act = act.detach().requires_grad_(True)
        with torch.enable_grad():
            picked = _pick(above([x, act], training=False), classes)
            grads = _columns(picked, act, k)
        return act, grads, picked

    return _numpy_call(gradients.traced_once(backward, _signature(shape, k, targets)))


def _signature(shape: tuple, k: int, targets) -> list:
    sig = [(shape, "float32")]
    return sig if targets is not None else sig + [((None, k), "int64")]


def _scores_fn(probe: Probe, targets) -> Callable:
    if targets is None:
        model = probe.scores_model
        return lambda x: model(x, training=False)[0]
    model = probe.target_model(targets)
    return lambda x: model(x, training=False)


def input_fn(probe: Probe, targets, k: int, rule: str | None, shape: tuple) -> Callable:
    """See :mod:`cnnwidgets.gradients`: (x, classes) -> (grads, scores)."""
    scores_of = _scores_fn(probe, targets)

    def backward(x, classes):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            with with_rule(rule):
                picked = _pick(scores_of(x), classes)
            grads = _columns(picked, x, k)
        return grads, picked

    return _numpy_call(gradients.traced_once(backward, _signature(shape, k, targets)))


def projection_fn(
    probe: Probe, layer: str, keep: str, rule: str | None, shape: tuple
) -> Callable:
    """See :mod:`cnnwidgets.gradients.projection`: (x, channel) -> input gradients."""
    sub = probe.submodel([layer])

    def grad(x, channel):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            with with_rule(rule):
                act = sub(x, training=False)
                flat = act[..., channel].reshape(act.shape[0], -1)
                # amax splits the gradient evenly between tied maxima, as
                # TensorFlow's reduce_max and JAX's max do.
                per_image = torch.amax(flat, dim=1) if keep == "max" else flat.mean(dim=1)
            return _grad(per_image.sum(), x)

    traced = gradients.traced_once(grad, [(shape, "float32"), ((), "int32")])
    return lambda x, channel: _numpy(traced(_tensor(x), int(channel)))


# ------------------------------------------------------- activation maximization


def _fourier_image(var, scale, hw: tuple[int, int], decorrelation):
    """Spectrum (B, c, h, wf, 2) -> image (B, h, w, c) in (0, 1)."""
    spec = torch.complex(var[..., 0] * scale, var[..., 1] * scale)
    img = torch.fft.irfft2(spec, s=hw, dim=(-2, -1))
    img = img.permute(0, 2, 3, 1) / 4.0
    if img.shape[-1] == 3:
        img = torch.einsum("bhwc,dc->bhwd", img, decorrelation)
    return torch.sigmoid(img)


def projective_warp(img, transforms, fill: float = 0.5):
    """Per-image projective warps, bilinear, ``fill`` outside the picture.

    img (B, H, W, C); transforms (B, 8) map an output pixel (x, y) to the
    source pixel ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k) with
    k = c0 x + c1 y + 1, as TensorFlow's ImageProjectiveTransformV3 does."""
    b, h, w, _ = img.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=img.dtype, device=img.device),
        torch.arange(w, dtype=img.dtype, device=img.device),
        indexing="ij",
    )
    t = [transforms[:, i, None, None] for i in range(8)]  # each (B, 1, 1)
    k = t[6] * xs + t[7] * ys + 1.0
    sx = (t[0] * xs + t[1] * ys + t[2]) / k
    sy = (t[3] * xs + t[4] * ys + t[5]) / k
    x0, y0 = torch.floor(sx), torch.floor(sy)
    batch = torch.arange(b, device=img.device)[:, None, None]

    def read(yy, xx):
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        yi = torch.clamp(yy, 0, h - 1).long()
        xi = torch.clamp(xx, 0, w - 1).long()
        return torch.where(inside[..., None], img[batch, yi, xi], fill)

    wx1, wx0 = (sx - x0)[..., None], (x0 + 1 - sx)[..., None]
    wy1, wy0 = (sy - y0)[..., None], (y0 + 1 - sy)[..., None]
    top = wx0 * read(y0, x0) + wx1 * read(y0, x0 + 1)
    bottom = wx0 * read(y0 + 1, x0) + wx1 * read(y0 + 1, x0 + 1)
    out = wy0 * top + wy1 * bottom
    return torch.where((k == 0)[..., None], fill, out)


def ascent_fns(probe: Probe, objective: Callable, param: str, hw: tuple[int, int], consts):
    """(run, evaluate) of the ascent loop; see :func:`cnnwidgets.gradients.ascent.ascend`."""
    scale = _tensor(consts.scale)
    decorrelation = _tensor(consts.decorrelation)

    def to_image(var):
        return var if param == "pixel" else _fourier_image(var, scale, hw, decorrelation)

    def value(var, onehot, pre_a, pre_b, transform=None):
        img = to_image(var)
        if transform is not None:
            img = projective_warp(img, transform)
        x = torch.einsum("bhwc,dc->bhwd", img * 255.0, pre_a) + pre_b
        return img, (objective(x).float() * onehot).sum(dim=1)

    def run(var, m, v, t0: int, onehot, transforms, pre_a, pre_b, lr: float):
        for i in range(transforms.shape[1]):
            var = var.detach().requires_grad_(True)
            with torch.enable_grad():
                t = transforms[:, i] if param == "fourier" else None
                loss = value(var, onehot, pre_a, pre_b, t)[1].sum()
                g = _grad(loss, var)
            with torch.no_grad():
                if param == "pixel":
                    # Normalize per image (RMS over its pixels), step up, stay a picture.
                    rms = torch.sqrt(torch.mean(g * g, dim=(1, 2, 3), keepdim=True))
                    var = torch.clamp(var + lr * g / (rms + 1e-8), 0.0, 1.0)
                else:
                    # Adam (ascent): element-wise, so images stay independent.
                    step = float(t0 + i + 1)
                    m = 0.9 * m + 0.1 * g
                    v = 0.999 * v + 0.001 * g * g
                    mhat = m / (1.0 - 0.9**step)
                    vhat = v / (1.0 - 0.999**step)
                    var = var + lr * mhat / (torch.sqrt(vhat) + 1e-8)
        return var.detach(), m, v

    def evaluate(var, onehot, pre_a, pre_b):
        with torch.no_grad():
            return value(var, onehot, pre_a, pre_b)

    return gradients.traced_once(run, []), evaluate


def ascend(fns, init, onehot, transforms, lr, preprocess, chunk, progress):
    """Run the loop of :func:`ascent_fns` in chunks of steps; numpy in and out."""
    run, evaluate = fns
    pre_a, pre_b = _tensor(preprocess[0]), _tensor(preprocess[1])
    var = _tensor(init)
    m = torch.zeros_like(var)
    v = torch.zeros_like(var)
    oh = _tensor(onehot)
    steps = transforms.shape[1]
    for s in range(0, steps, chunk):
        part = _tensor(transforms[:, s : s + chunk])
        var, m, v = run(var, m, v, s, oh, part, pre_a, pre_b, float(lr))
        if progress is not None:
            progress(min(s + chunk, steps))
    img, out = evaluate(var, oh, pre_a, pre_b)
    return _numpy(img), _numpy(out)


def weights_reader(plan: list) -> Callable[[], list[np.ndarray]]:
    """The weights version's reader (:mod:`cnnwidgets.probe.version`): each
    variable's samples gathered by torch (no copy of the whole variable),
    then one group's samples concatenated in numpy. The value is read at
    every call."""

    def read() -> list[np.ndarray]:
        with torch.no_grad():
            return [
                np.concatenate([
                    v.value.detach().reshape(-1)[torch.from_numpy(idx)].cpu().numpy()
                    for v, idx in group
                ])
                for group in plan
            ]

    return read
