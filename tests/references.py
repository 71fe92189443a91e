"""Plain reference computations the tests hold cnnwidgets to: written the
textbook way with a GradientTape and numpy, sharing no code with the package."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def assert_close(got, want, tol=1e-5):
    """Equal to ``tol`` relative to the reference's largest magnitude (>= 1);
    returns the largest absolute error."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= tol * scale, f"max error {err} > {tol} * {scale}"
    return err


def tape_input_grads(score_fn, images):
    """d sum(score) / d input (N, H, W, C): scores of different images are independent."""
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = score_fn(x)
    return tape.gradient(score, x).numpy()


def reference_gradcam(acts, grads):
    """(N, h, w) ReLU(sum_c mean_hw(grad) * A), the textbook formula."""
    return np.maximum(np.einsum("nhwc,nc->nhw", acts, grads.mean(axis=(1, 2))), 0.0)
