"""Train the small demo CNNs shipped in cnnwidgets/assets/models/.

    python scripts/train_demo_models.py [OUT_DIR]   # about 10 minutes on a 2-core CPU

Writes shapes_cnn.keras (softmax over the four shapes), circle_vs_square.keras
(a one-unit sigmoid head: 1 = circle, 0 = square) and metrics.json with the
held-out numbers quoted in the README. Deterministic by seed.

The shapes model also sees two-object images (``make_pairs``) with the target
split 0.5 / 0.5 between the two classes. Trained on single shapes only, it put
both objects of a pair in its top two in 57 % of held-out pairs, and its
Grad-CAM peaks fell inside the right object's box in only 69 %: a model that
never had to find two things does not keep them apart.
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

from cnnwidgets.assets.shapes import SHAPE_CLASSES, make_pairs, make_shapes  # noqa: E402

DEFAULT_OUT = pathlib.Path(__file__).resolve().parents[1] / "cnnwidgets" / "assets" / "models"
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


def fit(model, x, y, xv, yv, loss, epochs) -> float:
    model.compile(keras.optimizers.Adam(2e-3), loss=loss, metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=epochs, validation_data=(xv, yv), verbose=2)
    return float(model.evaluate(xv, yv, verbose=0)[1])


def soft_targets(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(N,) or (N, 2) int labels -> (N, n_classes) float32 targets summing to 1."""
    labels = labels.reshape(len(labels), -1)
    targets = np.zeros((len(labels), n_classes), np.float32)
    np.put_along_axis(targets, labels, 1.0 / labels.shape[1], axis=1)
    return targets


def pair_scores(model: keras.Model, n: int = 500, seed: int = 5) -> dict:
    """Held-out two-object numbers: both classes in the top two, and the Grad-CAM
    pointing game (peak inside the right object's box)."""
    import cnnwidgets as cw
    from cnnwidgets.explain.metrics import pointing_game

    images, labels, boxes = make_pairs(n, seed=seed, size=SIZE)
    probe = cw.Probe(model)
    top2 = np.argsort(-probe.predict(images), axis=1)[:, :2]
    both = float(np.mean((np.sort(top2, 1) == np.sort(labels, 1)).all(axis=1)))
    maps = cw.gradcam(probe, images, classes=labels)
    pointing = pointing_game(maps, boxes)
    return {"pairs_both_in_top2": both, "pairs_gradcam_pointing": pointing}


def export(model: keras.Model, path: pathlib.Path) -> None:
    """Save weights and architecture only: an uncompiled twin has no optimizer
    state, which keeps the shipped file about a third of the size."""
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    twin.save(path)


def main(out: pathlib.Path = DEFAULT_OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    metrics = {}
    start = time.time()
    n_classes = len(SHAPE_CLASSES)

    x, y, _ = make_shapes(8000, seed=1, size=SIZE)
    xv, yv, _ = make_shapes(2000, seed=2, size=SIZE)
    xp, yp, _ = make_pairs(4000, seed=3, size=SIZE)
    xpv, ypv, _ = make_pairs(500, seed=4, size=SIZE)

    keras.utils.set_random_seed(0)
    shapes = trunk("shapes_cnn", n_classes, "softmax")
    x_all = np.concatenate([x, xp])
    t_all = np.concatenate([soft_targets(y, n_classes), soft_targets(yp, n_classes)])
    order = np.random.default_rng(0).permutation(len(x_all))
    fit(
        shapes,
        x_all[order],
        t_all[order],
        np.concatenate([xv, xpv]),
        np.concatenate([soft_targets(yv, n_classes), soft_targets(ypv, n_classes)]),
        "categorical_crossentropy",
        6,
    )
    metrics["shapes_cnn"] = float(np.mean(shapes.predict(xv, verbose=0).argmax(1) == yv))
    export(shapes, out / "shapes_cnn.keras")
    metrics.update(pair_scores(shapes))

    # Circles (1) vs squares (0): the 'dogs vs cats' of the binary-head story.
    # Single shapes only: the binary story is about a one-unit head, not pairs.
    keras.utils.set_random_seed(1)
    keep, keep_v = np.isin(y, (0, 1)), np.isin(yv, (0, 1))
    xb, yb = x[keep], (y[keep] == 0).astype("float32")
    xbv, ybv = xv[keep_v], (yv[keep_v] == 0).astype("float32")
    binary = trunk("circle_vs_square", 1, "sigmoid")
    metrics["circle_vs_square"] = fit(binary, xb, yb, xbv, ybv, "binary_crossentropy", 5)
    export(binary, out / "circle_vs_square.keras")

    metrics["train_seconds"] = round(time.time() - start, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
