"""Train the two small networks of notebook 12 (explain any output).

    python scripts/train_target_models.py [OUT_DIR] [--only NAME]   # minutes on a 2-core CPU

Writes, into cnnwidgets/assets/models/:

- shapes_segmenter.keras: an encoder-decoder that labels every pixel of a
  64x64 scene of one to three shapes (``make_scenes``) as background or one of
  the four shapes; its output is (N, 64, 64, 5), a softmax per pixel;
- shapes_regressor.keras: one trunk, two named outputs on one shape per
  image: ``shape`` (softmax over the four classes) and ``area`` (one linear
  unit: the share of the image the shape covers, in percent);
- target_metrics.json: held-out quality of both (pixel accuracy, per-class IoU
  and their mean; classification accuracy, area MAE and R^2), and the seconds
  training took.

Deterministic by seed (set_random_seed and TensorFlow's op determinism): the
numbers in the notebook come from these files.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cnnwidgets.assets.shapes import SHAPE_CLASSES, area_percent, make_scenes  # noqa: E402

DEFAULT_OUT = pathlib.Path(__file__).resolve().parents[1] / "cnnwidgets" / "assets" / "models"
SIZE = 64
K = 1 + len(SHAPE_CLASSES)  # background + shapes

# Data: seeds for training and held-out sets (the held-out seeds are the ones
# cnnwidgets.assets.target_metrics() reports; tests draw yet other seeds).
SEG_TRAIN, SEG_TEST, SEG_SEEDS = 3000, 500, (31, 32)
REG_TRAIN, REG_TEST, REG_SEEDS = 3000, 500, (41, 42)
ONE_SHAPE = dict(objects=(1, 1), radius=(0.1, 0.3))  # the regressor's images


def segmenter() -> keras.Model:
    """Encoder-decoder: two poolings down to 16x16, one bilinear upsampling back
    to 32x32 with the 32x32 encoder features joined in, per-class logits there
    (a 1x1 conv), upsampled to the input's 64x64 and a softmax over background
    + the four shapes at every pixel (an Activation layer: the logits stay
    readable for explanations)."""
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inp)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="enc1_conv")(x)
    x = keras.layers.MaxPooling2D(name="enc1_pool")(x)  # 32
    skip = keras.layers.Conv2D(24, 3, padding="same", activation="relu", name="enc2_conv")(x)
    x = keras.layers.MaxPooling2D(name="enc2_pool")(skip)  # 16
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="mid_conv1")(x)
    x = keras.layers.Conv2D(
        32, 3, padding="same", dilation_rate=2, activation="relu", name="mid_conv2"
    )(x)
    x = keras.layers.UpSampling2D(interpolation="bilinear", name="up")(x)  # 32
    x = keras.layers.Concatenate(name="join")([x, skip])
    x = keras.layers.Conv2D(24, 3, padding="same", activation="relu", name="dec_conv")(x)
    x = keras.layers.Conv2D(K, 1, name="logits")(x)
    x = keras.layers.UpSampling2D(interpolation="bilinear", name="logits_up")(x)  # 64
    out = keras.layers.Activation("softmax", name="segmentation")(x)
    return keras.Model(inp, out, name="shapes_segmenter")


def regressor() -> keras.Model:
    """A conv at full size, pool, conv-conv, pool, conv-conv, global average
    pooling, then two heads: ``shape`` (softmax over the four classes) and
    ``area`` (one linear unit)."""
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="block1_conv1")(x)
    x = keras.layers.MaxPooling2D(name="block1_pool")(x)  # 32
    for block, width in ((2, 16), (3, 32)):
        for i in (1, 2):
            x = keras.layers.Conv2D(
                width, 3, padding="same", activation="relu", name=f"block{block}_conv{i}"
            )(x)
        if block == 2:
            x = keras.layers.MaxPooling2D(name="block2_pool")(x)  # 16
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    shape = keras.layers.Dense(len(SHAPE_CLASSES), activation="softmax", name="shape")(x)
    area = keras.layers.Dense(1, name="area")(x)
    return keras.Model(inp, {"shape": shape, "area": area}, name="shapes_regressor")


def regression_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images with one shape, its class and its area in percent of the image."""
    images, seg, _ = make_scenes(n, seed=seed, size=SIZE, **ONE_SHAPE)
    return images, seg.max(axis=(1, 2)).astype(np.int64) - 1, area_percent(seg)


def seg_scores(model: keras.Model, images: np.ndarray, seg: np.ndarray) -> dict:
    """Pixel accuracy, IoU of every class (background first) and their mean."""
    pred = model.predict(images, batch_size=100, verbose=0).argmax(axis=-1)
    iou = {}
    for k, name in enumerate(("background",) + SHAPE_CLASSES):
        inter = np.logical_and(pred == k, seg == k).sum()
        union = np.logical_or(pred == k, seg == k).sum()
        iou[name] = round(float(inter / union), 3)
    return {
        "pixel_accuracy": round(float((pred == seg).mean()), 4),
        "iou": iou,
        "mean_iou": round(float(np.mean(list(iou.values()))), 3),
    }


def reg_scores(model: keras.Model, images, labels, areas) -> dict:
    """Class accuracy, and the area's mean absolute error (percentage points) and R^2."""
    out = model.predict(images, batch_size=100, verbose=0)
    pred = out["area"][:, 0]
    r2 = 1 - ((pred - areas) ** 2).sum() / ((areas - areas.mean()) ** 2).sum()
    return {
        "shape_accuracy": round(float((out["shape"].argmax(axis=1) == labels).mean()), 4),
        "area_mae": round(float(np.abs(pred - areas).mean()), 3),
        "area_r2": round(float(r2), 4),
    }


def train_segmenter() -> tuple[keras.Model, dict]:
    images, seg, _ = make_scenes(SEG_TRAIN, seed=SEG_SEEDS[0], size=SIZE)
    keras.utils.set_random_seed(0)
    model = segmenter()
    model.compile(keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(images, seg[..., None], batch_size=32, epochs=10, verbose=2, shuffle=True)
    test_images, test_seg, _ = make_scenes(SEG_TEST, seed=SEG_SEEDS[1], size=SIZE)
    return model, seg_scores(model, test_images, test_seg)


def train_regressor() -> tuple[keras.Model, dict]:
    images, labels, areas = regression_data(REG_TRAIN, REG_SEEDS[0])
    keras.utils.set_random_seed(0)
    model = regressor()
    model.compile(
        keras.optimizers.Adam(3e-3),
        loss={"shape": "sparse_categorical_crossentropy", "area": "mse"},
        loss_weights={"shape": 1.0, "area": 0.1},
    )
    model.fit(
        images, {"shape": labels, "area": areas[:, None]},
        batch_size=32, epochs=20, verbose=2, shuffle=True,
    )
    return model, reg_scores(model, *regression_data(REG_TEST, REG_SEEDS[1]))


def export(model: keras.Model, path: pathlib.Path) -> None:
    """Weights and architecture only (no optimizer state): a smaller file."""
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    twin.save(path)


def main(out: pathlib.Path = DEFAULT_OUT, only: str | None = None) -> None:
    """Train both models (or ``only`` one of them: each is seeded on its own, so
    it comes out as in a full run) and write their files and metrics."""
    tf.config.experimental.enable_op_determinism()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "target_metrics.json"
    metrics: dict = json.loads(path.read_text()) if only and path.exists() else {}
    jobs = {"shapes_segmenter": train_segmenter, "shapes_regressor": train_regressor}
    if only is not None and only not in jobs:
        raise SystemExit(f"--only takes one of {list(jobs)}, got {only!r}")
    for name, train in jobs.items():
        if only is not None and name != only:
            continue
        start = time.time()
        model, scores = train()
        metrics[name] = {**scores, "train_seconds": round(time.time() - start, 1)}
        export(model, out / f"{name}.keras")
        print(name, json.dumps(metrics[name]), flush=True)
    path.write_text(json.dumps({k: metrics[k] for k in jobs if k in metrics}, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument("--only", help="train one model: shapes_segmenter or shapes_regressor")
    args = parser.parse_args()
    main(args.out, args.only)
