"""Small random CNNs built in code, for tests that need a model of a given head."""

from __future__ import annotations

import keras


def tiny_cnn(head: str = "softmax", units: int = 3, size: int = 16, seed: int = 0) -> keras.Model:
    """A small random functional CNN: conv-relu, pool, conv-relu, GAP, dense."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(units, activation=head, name="head")(x)
    return keras.Model(inp, out, name=f"tiny_{head}")
