"""Train the two small CNNs of notebook 08 (the planted shortcut).

    python scripts/train_shortcut_model.py [OUT_DIR]   # about 2 minutes on a 2-core CPU

Writes, into cnnwidgets/assets/models/:

- shapes_shortcut.keras: trained on shapes that carry a class-coloured tag in
  the corner (``cnnwidgets.assets.shortcut``); it learns the tag;
- shapes_clean.keras: the same network, data and seeds without the tags;
- shortcut_metrics.json: both models' accuracy on tagged and on clean test images.

Deterministic by seed (the numbers in the notebook come from these files).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from cnnwidgets.assets.shapes import SHAPE_CLASSES  # noqa: E402
from cnnwidgets.assets.shortcut import make_shortcut_shapes  # noqa: E402

DEFAULT_OUT = pathlib.Path(__file__).resolve().parents[1] / "cnnwidgets" / "assets" / "models"
SIZE = 64
TRAIN, TEST = 6000, 1000
EPOCHS = 15


def small_cnn(name: str) -> keras.Model:
    """Conv-conv-pool twice and a conv, global average pooling, dense: 15 k weights."""
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inp)
    for block, width in ((1, 8), (2, 16)):
        for i in (1, 2):
            x = keras.layers.Conv2D(
                width, 3, padding="same", activation="relu", name=f"block{block}_conv{i}"
            )(x)
        x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="block3_conv1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(len(SHAPE_CLASSES), activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name=name)


def train(name: str, marked: bool) -> keras.Model:
    x, y, _ = make_shortcut_shapes(TRAIN, seed=11, marked=marked, size=SIZE)
    keras.utils.set_random_seed(0)
    model = small_cnn(name)
    model.compile(
        keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, batch_size=64, epochs=EPOCHS, verbose=2, shuffle=True)
    return model


def accuracy(model: keras.Model, marked: bool) -> float:
    x, y, _ = make_shortcut_shapes(TEST, seed=12, marked=marked, size=SIZE)
    return float(np.mean(model.predict(x, verbose=0, batch_size=256).argmax(axis=1) == y))


def export(model: keras.Model, path: pathlib.Path) -> None:
    """Weights and architecture only (no optimizer state): a smaller file."""
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    twin.save(path)


def main(out: pathlib.Path = DEFAULT_OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    metrics: dict = {}
    for name, marked in (("shapes_shortcut", True), ("shapes_clean", False)):
        model = train(name, marked)
        metrics[name] = {
            "tagged_test_accuracy": accuracy(model, marked=True),
            "clean_test_accuracy": accuracy(model, marked=False),
        }
        export(model, out / f"{name}.keras")
    metrics["train_seconds"] = round(time.time() - start, 1)
    (out / "shortcut_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
