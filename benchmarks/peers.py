"""The peers cnnwidgets is measured against, each written the way its users write it.

Everything here is a *baseline*: the plainest or the most common way to get
the same picture, so that ``benchmarks/run.py`` can time cnnwidgets beside it
and ``tests/test_benchmarks_smoke.py`` can check the numbers agree.

- :func:`keras_example_gradcam`: the formula of the Keras example 'Grad-CAM
  class activation visualization' (one forward + backward pass per class,
  eager, the gradient model built inside the call as the example does).
- :func:`tfkerasvis_gradcam`: tf-keras-vis's ``Gradcam`` with one score
  target per batch element over a tiled input.
- :func:`tfexplain_occlusion`: tf-explain's ``OcclusionSensitivity``.
- :func:`patched_images` / :func:`occlusion_floor`: one batched
  ``model.predict`` over the occluded images, the least any occlusion
  implementation can do.
- :func:`matplotlib_grid`: an activation grid drawn with ``plt.subplots`` and
  one ``imshow`` per channel, as keract and the tutorials draw it, rendered
  to an RGB array with the Agg canvas.

The peers are imported lazily so that a missing one only skips its figure.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# --------------------------------------------------------------------- Grad-CAM


def without_softmax(model: keras.Model) -> keras.Model:
    """A copy of ``model`` whose last layer has no activation (scores are logits).

    The Keras example does ``model.layers[-1].activation = None`` on the model
    itself; here it is done on a clone so the user's model is left alone."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    clone.layers[-1].activation = None
    return clone


def keras_example_gradcam(
    img_array: np.ndarray, model: keras.Model, last_conv_layer_name: str, pred_index=None
) -> np.ndarray:
    """Grad-CAM heatmap of one class for one image, as in the Keras example.

    Args:
        img_array: (1, H, W, C) model inputs.
        model: the model with logits as output (see :func:`without_softmax`).
        last_conv_layer_name: the layer whose activations are weighted.
        pred_index: the class; None for the top prediction.

    Returns:
        (h, w) float32 heatmap: ReLU of the gradient-weighted channel sum,
        divided by its maximum (zeros where the maximum is not positive).
    """
    # The example builds the gradient model on every call.
    grad_model = keras.Model(
        model.inputs, [model.get_layer(last_conv_layer_name).output, model.output]
    )
    with tf.GradientTape() as tape, warnings.catch_warnings():
        # Keras 3 warns that a bare array is not the [input] list; the call is the example's.
        warnings.filterwarnings("ignore", message="The structure of `inputs`")
        last_conv_layer_output, preds = grad_model(img_array)
        if pred_index is None:
            pred_index = tf.argmax(preds[0])
        class_channel = preds[:, pred_index]
    grads = tape.gradient(class_channel, last_conv_layer_output)
    pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
    last_conv_layer_output = last_conv_layer_output[0]
    heatmap = last_conv_layer_output @ pooled_grads[..., tf.newaxis]
    heatmap = tf.squeeze(heatmap, axis=-1)
    heatmap = tf.maximum(heatmap, 0)
    top = tf.reduce_max(heatmap)
    # The example divides by the maximum; a flat map would give NaN there.
    heatmap = tf.where(top > 0, heatmap / tf.where(top > 0, top, 1.0), 0.0)
    return heatmap.numpy().astype(np.float32)


def keras_example_gradcam_classes(
    image: np.ndarray, model: keras.Model, layer: str, classes
) -> np.ndarray:
    """The Keras example called once per class: (K, h, w) float32."""
    batch = np.asarray(image, np.float32)[None]
    return np.stack([keras_example_gradcam(batch, model, layer, int(c)) for c in classes])


def tfkerasvis_gradcam_object(model: keras.Model):
    """tf-keras-vis's Gradcam with its ReplaceToLinear modifier (it clones the model)."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

    return Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)


def tfkerasvis_gradcam(gradcam, image: np.ndarray, layer: str, classes) -> np.ndarray:
    """Maps of K classes for one image with tf-keras-vis: the image is tiled K
    times and ``CategoricalScore`` gives one class per batch element, so all K
    ride on one forward and one backward pass. Returns (K, H, W) float32."""
    from tf_keras_vis.utils.scores import CategoricalScore

    classes = [int(c) for c in classes]
    tiled = np.repeat(np.asarray(image, np.float32)[None], len(classes), axis=0)
    cam = gradcam(
        CategoricalScore(classes), tiled, penultimate_layer=layer, seek_penultimate_conv_layer=False
    )
    return np.asarray(cam, np.float32).reshape(len(classes), *tiled.shape[1:3])


# -------------------------------------------------------------------- occlusion


def tfexplain_occlusion(
    model: keras.Model, image: np.ndarray, class_index: int, patch: int, batch_size=None
) -> np.ndarray:
    """tf-explain's sensitivity map (1 - p(class) per patch, stride = patch),
    resized to the image: (H, W) float."""
    from tf_explain.core.occlusion_sensitivity import OcclusionSensitivity

    explainer = OcclusionSensitivity(batch_size=batch_size)
    # tf-explain calls model.predict with its progress bar on; keep it off the report.
    with contextlib.redirect_stdout(io.StringIO()):
        return explainer.get_sensitivity_map(model, np.asarray(image), int(class_index), patch)


def patch_positions(size: int, patch: int, stride: int) -> list[int]:
    """Top-left offsets along one axis: every stride, the last patch flush with the edge."""
    last = max(size - patch, 0)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def patched_images(image: np.ndarray, patch: int, stride: int, fill: float = 127.5) -> np.ndarray:
    """(P, H, W, C) float32 copies of ``image``, each with one patch set to ``fill``."""
    image = np.asarray(image, np.float32)
    h, w = image.shape[:2]
    ys, xs = patch_positions(h, patch, stride), patch_positions(w, patch, stride)
    out = np.repeat(image[None], len(ys) * len(xs), axis=0)
    for i, (y, x) in enumerate((y, x) for y in ys for x in xs):
        out[i, y : y + patch, x : x + patch] = fill
    return out


def occlusion_floor(model: keras.Model, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """One batched ``model.predict`` over already occluded images: (P, K)."""
    return model.predict(batch, batch_size=batch_size, verbose=0)


# ------------------------------------------------------------------------ grids


def matplotlib_grid(acts: np.ndarray, cols: int | None = None, tile_inches: float = 0.5):
    """Draw (h, w, C) activations as a grid of C subplots, one ``imshow`` each,
    axes off (as keract's ``display_activations`` and the tutorials do), and
    return the rendered (H, W, 3) uint8 picture from the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    acts = np.asarray(acts)
    n = acts.shape[-1]
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    fig = Figure(figsize=(cols * tile_inches, rows * tile_inches), dpi=72)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(acts[:, :, k], cmap="viridis", interpolation="nearest")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
