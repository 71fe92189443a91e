"""Train the small demo CNNs shipped in cnnwidgets/assets/models/.

    python scripts/train_demo_models.py        # a few minutes on a 2-core CPU

Writes shapes_cnn.keras (softmax over the four shapes), circle_vs_square.keras
(a one-unit sigmoid head: 1 = circle, 0 = square) and metrics.json with the
held-out accuracies quoted in the README. Deterministic by seed.
"""

from __future__ import annotations

import json
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from cnnwidgets.assets.shapes import SHAPE_CLASSES, make_shapes  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[1] / "cnnwidgets" / "assets" / "models"
SIZE = 64


def trunk(name: str, head_units: int, head_activation: str) -> keras.Model:
    """VGG-like: conv-conv-pool twice, conv-conv, global average pooling, dense.

    The GAP + Dense head makes the original CAM (Zhou et al.) applicable."""
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inp)
    for block, width in ((1, 16), (2, 32), (3, 64)):
        for i in (1, 2):
            x = keras.layers.Conv2D(
                width,
                3,
                padding="same",
                activation="relu",
                kernel_initializer="he_normal",
                name=f"block{block}_conv{i}",
            )(x)
        if block < 3:
            x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(head_units, activation=head_activation, name="predictions")(x)
    return keras.Model(inp, out, name=name)


def fit(model, x, y, xv, yv, loss, epochs):
    model.compile(keras.optimizers.Adam(2e-3), loss=loss, metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=epochs, validation_data=(xv, yv), verbose=2)
    return float(model.evaluate(xv, yv, verbose=0)[1])


def export(model: keras.Model, path: pathlib.Path) -> None:
    """Save weights and architecture only: an uncompiled twin has no optimizer
    state, which keeps the shipped file about a third of the size."""
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    twin.save(path)


def main() -> None:
    keras.utils.set_random_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    metrics = {}
    start = time.time()

    x, y, _ = make_shapes(8000, seed=1, size=SIZE)
    xv, yv, _ = make_shapes(2000, seed=2, size=SIZE)
    shapes = trunk("shapes_cnn", len(SHAPE_CLASSES), "softmax")
    metrics["shapes_cnn"] = fit(shapes, x, y, xv, yv, "sparse_categorical_crossentropy", 4)
    export(shapes, OUT / "shapes_cnn.keras")

    # Circles (1) vs squares (0): the 'dogs vs cats' of the binary-head story.
    keep, keep_v = np.isin(y, (0, 1)), np.isin(yv, (0, 1))
    xb, yb = x[keep], (y[keep] == 0).astype("float32")
    xbv, ybv = xv[keep_v], (yv[keep_v] == 0).astype("float32")
    binary = trunk("circle_vs_square", 1, "sigmoid")
    metrics["circle_vs_square"] = fit(binary, xb, yb, xbv, ybv, "binary_crossentropy", 5)
    export(binary, OUT / "circle_vs_square.keras")

    metrics["train_seconds"] = round(time.time() - start, 1)
    (OUT / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
