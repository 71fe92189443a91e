"""Autodiff on Keras's JAX backend: ``jax.vjp`` / ``jax.grad`` in ``jax.jit``.

The builders of :mod:`cnnwidgets.gradients` (see there for the interface).
Every compiled function takes the model's variables as arguments and runs
the Keras graph inside ``keras.StatelessScope``, so it reads the weights at
call time (training between calls is seen) and holds no copy of them.

- Gradients with respect to a layer's tensor use the functional graph split
  at that layer (:meth:`Probe.split`): ``act = below(x)``, scores =
  ``above(x, act)``; ``jax.vjp`` of ``above`` in ``act``, one cotangent per
  score (vmapped), so the K scores share one forward pass.
- Guided backprop and the deconvnet: the scores function is traced to a
  jaxpr and evaluated again with every ``relu`` / ``relu6`` (Keras's
  ``ops.relu`` / ``ops.relu6``: ``jax.nn``'s custom-JVP functions) replaced by
  a ``jax.custom_vjp`` twin with the rule's backward pass, in our function
  only: the user's model and its own gradients are untouched.
- ``jax.jit`` compiles per input shape; a batch of a size not seen before is
  padded to a compiled size up to twice as large, so a function compiles for
  a handful of batch sizes, not one per remainder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import keras
import numpy as np
from jax.extend import core as jcore

from cnnwidgets import gradients
from cnnwidgets.probe import Probe

# ------------------------------------------------------------------- ReLU rules


def _rule_relu(backward: Callable, upper: float | None) -> Callable:
    @jax.custom_vjp
    def relu(x):
        y = jnp.maximum(x, 0)
        return y if upper is None else jnp.minimum(y, upper)

    def fwd(x):
        y = relu(x)
        return y, y

    def bwd(y, g):
        return (backward(y, g, upper),)

    relu.defvjp(fwd, bwd)
    return relu


def _guided(y, g, upper):
    # Pass a gradient only where the forward unit was active AND the gradient is positive.
    active = y > 0 if upper is None else (y > 0) & (y < upper)
    return jnp.where(active, jnp.maximum(g, 0), jnp.zeros_like(g))


def _deconv(y, g, upper):
    # Zeiler and Fergus: ReLU applied to the backward signal, ignoring the forward mask.
    return jnp.maximum(g, 0)


#: rule -> {'relu': twin, 'relu6': twin}
RELU_TWINS = {
    "guided": {"relu": _rule_relu(_guided, None), "relu6": _rule_relu(_guided, 6.0)},
    "deconvnet": {"relu": _rule_relu(_deconv, None), "relu6": _rule_relu(_deconv, 6.0)},
}

_CALLS = ("pjit", "jit")


def _relu_kind(eqn) -> str | None:
    """'relu' / 'relu6' for jax.nn's custom-JVP ReLUs in a jaxpr, else None."""
    if eqn.primitive.name != "custom_jvp_call":
        return None
    inner = eqn.params["call_jaxpr"].jaxpr.eqns
    if len(inner) == 1 and inner[0].primitive.name in _CALLS:
        name = inner[0].params.get("name")
        if name in ("relu", "relu6"):
            return name
    return None


def _evaluate(jaxpr, consts, args, twins: dict) -> list:
    """Evaluate a jaxpr with the ReLUs swapped for ``twins`` (nested jit calls entered)."""
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        kind = _relu_kind(eqn)
        if kind is not None:
            outs = [twins[kind](invals[eqn.params["num_consts"]])]
        elif eqn.primitive.name in _CALLS:
            closed = eqn.params["jaxpr"]
            outs = _evaluate(closed.jaxpr, closed.consts, invals, twins)
        else:
            params = eqn.primitive.get_bind_params(eqn.params)
            if isinstance(params, tuple):  # JAX < 0.7: (subfuns, params)
                outs = eqn.primitive.bind(*params[0], *invals, **params[1])
            else:
                outs = eqn.primitive.bind(*invals, **params)
            if not eqn.primitive.multiple_results:
                outs = [outs]
        for v, o in zip(eqn.outvars, outs):
            env[v] = o
    return [read(v) for v in jaxpr.outvars]


def with_rule(fn: Callable, rule: str | None) -> Callable:
    """``fn`` (one array in, one out) with the ReLU backward ``rule`` (None: unchanged)."""
    if rule is None:
        return fn
    twins = RELU_TWINS[rule]

    def swapped(x):
        closed = jax.make_jaxpr(fn)(x)
        return _evaluate(closed.jaxpr, closed.consts, [x], twins)[0]

    return swapped


# ---------------------------------------------------------- compiled functions


def _variables(probe: Probe, *models) -> list:
    """Every variable the graphs read: the model's and the submodels' (shared)."""
    seen: dict[int, object] = {}
    for m in (probe.model,) + models:
        for v in m.weights:
            seen.setdefault(id(v), v)
    return list(seen.values())


def _stateless(variables: list, fn: Callable) -> Callable:
    """fn(*args) as f(values, *args): Keras variables read as the traced ``values``."""

    def f(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(*args)

    return f


def traced_once(fn: Callable, signature: Sequence[tuple[tuple, str]]) -> Callable:
    """``fn`` under ``jax.jit`` (the signature is checked by the callers' padding)."""
    return jax.jit(fn)


class _Batched:
    """numpy in, numpy out around a jitted ``fn(values, x, *rest)``, with the
    batch padded to a size already compiled (at most twice the batch)."""

    def __init__(self, jitted: Callable, variables: list, batched_rest: Sequence[bool]):
        self.jitted = jitted
        self.variables = variables
        self.batched_rest = tuple(batched_rest)
        self.sizes: set[int] = set()

    def _size(self, n: int) -> int:
        if n in self.sizes:
            return n
        fits = [s for s in self.sizes if n <= s <= 2 * n]
        size = min(fits) if fits else n
        self.sizes.add(size)
        return size

    def __call__(self, x, *rest):
        n = len(x)
        size = self._size(n)
        pad = size - n

        def padded(a):
            a = np.asarray(a)
            return np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) if pad else a

        args = [padded(np.asarray(x, np.float32))]
        for r, batched in zip(rest, self.batched_rest):
            args.append(padded(r) if batched and r is not None else r)
        values = [v.value for v in self.variables]
        outs = self.jitted(values, *args)
        outs = outs if isinstance(outs, tuple) else (outs,)
        res = tuple(np.asarray(o)[:n] if o.ndim and o.shape[0] == size else np.asarray(o)
                    for o in outs)
        return res if len(res) > 1 else res[0]


def _pick(scores, classes):
    return scores if classes is None else jnp.take_along_axis(scores, classes, axis=1)


def _columns(vjp: Callable, picked, k: int):
    """(N, K, ...) gradients of each of the K score columns, from one vjp."""
    eye = jnp.eye(k, dtype=picked.dtype)
    cotangents = jnp.broadcast_to(eye[:, None, :], (k,) + tuple(picked.shape))
    grads = jax.vmap(lambda ct: vjp(ct)[0])(cotangents)
    return jnp.moveaxis(grads, 0, 1)


def layer_fn(probe: Probe, layer: str, targets, k: int, shape: tuple) -> Callable:
    """See :mod:`cnnwidgets.gradients`: (x, classes) -> (acts, grads, scores)."""
    below = probe.submodel([layer])
    above = probe.split(layer, targets=targets)

    def backward(x, classes):
        act = below(x, training=False)

        def scores(a):
            return _pick(keras.ops.cast(above([x, a], training=False), "float32"), classes)

        picked, vjp = jax.vjp(scores, act)
        return act, _columns(vjp, picked, k), picked

    variables = _variables(probe, below, above)
    jitted = gradients.traced_once(_stateless(variables, backward), [(shape, "float32")])
    return _Batched(jitted, variables, [True])


def _scores_fn(probe: Probe, targets) -> tuple[Callable, keras.Model]:
    if targets is None:
        model = probe.scores_model
        return (lambda x: model(x, training=False)[0]), model
    model = probe.target_model(targets)
    return (lambda x: model(x, training=False)), model


def input_fn(probe: Probe, targets, k: int, rule: str | None, shape: tuple) -> Callable:
    """See :mod:`cnnwidgets.gradients`: (x, classes) -> (grads, scores)."""
    scores_of, model = _scores_fn(probe, targets)

    def backward(x, classes):
        def scores(x):
            return _pick(keras.ops.cast(scores_of(x), "float32"), classes)

        picked, vjp = jax.vjp(with_rule(scores, rule), x)
        return _columns(vjp, picked, k), picked

    variables = _variables(probe, model)
    jitted = gradients.traced_once(_stateless(variables, backward), [(shape, "float32")])
    return _Batched(jitted, variables, [True])


def projection_fn(
    probe: Probe, layer: str, keep: str, rule: str | None, shape: tuple
) -> Callable:
    """See :mod:`cnnwidgets.gradients.projection`: (x, channel) -> input gradients."""
    sub = probe.submodel([layer])

    def grad(x, channel):
        def target(x):
            act = sub(x, training=False)
            fmap = jnp.take(act, channel, axis=-1)
            flat = fmap.reshape(fmap.shape[0], -1)
            per_image = flat.max(axis=1) if keep == "max" else flat.mean(axis=1)
            return jnp.sum(per_image)

        return jax.grad(with_rule(target, rule))(x)

    variables = _variables(probe, sub)
    jitted = gradients.traced_once(_stateless(variables, grad), [(shape, "float32")])
    batched = _Batched(jitted, variables, [False])
    return lambda x, channel: batched(x, np.int32(channel))


# ------------------------------------------------------- activation maximization


def _fourier_image(var, scale, hw: tuple[int, int], decorrelation: np.ndarray):
    """Spectrum (B, c, h, wf, 2) -> image (B, h, w, c) in (0, 1)."""
    spec = (var[..., 0] * scale) + 1j * (var[..., 1] * scale)
    img = jnp.fft.irfft2(spec, s=hw, axes=(-2, -1)).astype(jnp.float32)
    img = jnp.transpose(img, (0, 2, 3, 1)) / 4.0
    if img.shape[-1] == 3:
        img = jnp.einsum("bhwc,dc->bhwd", img, decorrelation)
    return jax.nn.sigmoid(img)


def projective_warp(img, transforms, fill: float = 0.5):
    """Per-image projective warps, bilinear, ``fill`` outside the picture.

    img (B, H, W, C); transforms (B, 8) map an output pixel (x, y) to the
    source pixel ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k) with
    k = c0 x + c1 y + 1, as TensorFlow's ImageProjectiveTransformV3 does."""
    _, h, w, _ = img.shape
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                          indexing="ij")

    def one(image, t):
        k = t[6] * xs + t[7] * ys + 1.0
        sx = (t[0] * xs + t[1] * ys + t[2]) / k
        sy = (t[3] * xs + t[4] * ys + t[5]) / k
        x0, y0 = jnp.floor(sx), jnp.floor(sy)

        def read(yy, xx):
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            yi = jnp.clip(yy, 0, h - 1).astype(jnp.int32)
            xi = jnp.clip(xx, 0, w - 1).astype(jnp.int32)
            return jnp.where(inside[..., None], image[yi, xi], fill)

        top = (x0 + 1 - sx)[..., None] * read(y0, x0) + (sx - x0)[..., None] * read(y0, x0 + 1)
        bottom = (x0 + 1 - sx)[..., None] * read(y0 + 1, x0) + (sx - x0)[..., None] * read(
            y0 + 1, x0 + 1
        )
        out = (y0 + 1 - sy)[..., None] * top + (sy - y0)[..., None] * bottom
        return jnp.where((k == 0)[..., None], fill, out)

    return jax.vmap(one)(img, transforms)


def ascent_fns(probe: Probe, objective: Callable, param: str, hw: tuple[int, int], consts):
    """(run, evaluate) of the ascent loop; see :func:`cnnwidgets.gradients.ascent.ascend`."""
    scale = np.asarray(consts.scale)
    variables = _variables(probe)

    def to_image(var):
        return var if param == "pixel" else _fourier_image(var, scale, hw, consts.decorrelation)

    def value(values, var, onehot, pre_a, pre_b, transform=None):
        img = to_image(var)
        if transform is not None:
            img = projective_warp(img, transform)
        x = jnp.einsum("bhwc,dc->bhwd", img * 255.0, pre_a) + pre_b
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            obj = objective(x)
        return img, jnp.sum(obj * onehot, axis=1)

    def run(values, var, m, v, t0, onehot, transforms, pre_a, pre_b, lr):
        def step(i, state):
            var, m, v = state

            def loss(var):
                t = transforms[:, i] if param == "fourier" else None
                return jnp.sum(value(values, var, onehot, pre_a, pre_b, t)[1])

            g = jax.grad(loss)(var)
            if param == "pixel":
                # Normalize per image (RMS over its pixels), step up, stay a picture.
                rms = jnp.sqrt(jnp.mean(jnp.square(g), axis=(1, 2, 3), keepdims=True))
                return jnp.clip(var + lr * g / (rms + 1e-8), 0.0, 1.0), m, v
            # Adam (ascent): element-wise, so images stay independent.
            t = (t0 + i + 1).astype(jnp.float32)
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * jnp.square(g)
            mhat = m / (1.0 - jnp.power(0.9, t))
            vhat = v / (1.0 - jnp.power(0.999, t))
            return var + lr * mhat / (jnp.sqrt(vhat) + 1e-8), m, v

        return jax.lax.fori_loop(0, transforms.shape[1], step, (var, m, v))

    return gradients.traced_once(run, []), jax.jit(value), variables


def ascend(fns, init, onehot, transforms, lr, preprocess, chunk, progress):
    """Run the loop of :func:`ascent_fns` in chunks of steps; numpy in and out."""
    run, value, variables = fns
    pre_a = jnp.asarray(preprocess[0], jnp.float32)
    pre_b = jnp.asarray(preprocess[1], jnp.float32)
    var = jnp.asarray(init, jnp.float32)
    m = jnp.zeros_like(var)
    v = jnp.zeros_like(var)
    oh = jnp.asarray(onehot, jnp.float32)
    lr_t = jnp.float32(lr)
    steps = transforms.shape[1]
    for s in range(0, steps, chunk):
        values = [w.value for w in variables]
        part = jnp.asarray(transforms[:, s : s + chunk], jnp.float32)
        var, m, v = run(values, var, m, v, jnp.int32(s), oh, part, pre_a, pre_b, lr_t)
        if progress is not None:
            progress(min(s + chunk, steps))
    img, out = value([w.value for w in variables], var, oh, pre_a, pre_b)
    return np.asarray(img), np.asarray(out)


def weights_reader(plan: list) -> Callable[[], list[np.ndarray]]:
    """The weights version's reader (:mod:`cnnwidgets.probe.version`).

    A JAX array on the CPU is seen by numpy without a copy, so the samples
    are gathered in numpy: 5 ms a read for MobileNetV2, 20 ms for
    NASNetMobile, with nothing to compile (a ``jax.jit`` gather took 0.8-3 s
    to build and saved a few ms a read). The value is read at every call:
    an assignment replaces a JAX variable's array."""

    def read() -> list[np.ndarray]:
        return [np.concatenate([np.asarray(v.value).reshape(-1)[idx] for v, idx in group])
                for group in plan]

    return read
