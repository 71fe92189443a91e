"""Small random models built in code and random test images, shared by the tests.

Every builder is deterministic where its docstring names a seed; the others draw
from whatever Keras seed the caller set. Layer names are part of each builder's
contract: tests look layers up by them.
"""

from __future__ import annotations

import keras
import numpy as np

L = keras.layers


def random_images(
    n: int = 2,
    size: int = 16,
    seed: int | np.random.Generator = 0,
    high: float = 255.0,
    channels: int = 3,
) -> np.ndarray:
    """`n` images of uniform noise in [0, high), float32, shape (n, size, size, channels).

    `seed` may be an int or a Generator; a Generator is used as is (and advanced),
    so a test drawing several batches from one `rng` fixture keeps its stream.
    """
    rng = np.random.default_rng(seed)
    return rng.uniform(0, high, size=(n, size, size, channels)).astype(np.float32)


def tiny_cnn(head: str = "softmax", units: int = 3, size: int = 16, seed: int = 0) -> keras.Model:
    """A small random functional CNN: conv-relu, pool, conv-relu, GAP, dense.

    Layers `conv1`, `pool1`, `conv2`, `gap`, `head` (activation `head`, `units` outputs);
    input (size, size, 3). `head="linear"` gives a model that outputs logits.
    """
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inp)
    x = L.MaxPooling2D(name="pool1")(x)
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(units, activation=head, name="head")(x)
    return keras.Model(inp, out, name=f"tiny_{head}")


def vgg_transfer(
    units: int = 2,
    head: str = "softmax",
    hidden: int | None = None,
    functional: bool = False,
    seed: int | None = None,
) -> keras.Model:
    """A transfer-learning model: a random VGG16 base (32x32x3 input, nested as `vgg16`),
    Flatten, an optional relu Dense of `hidden` units, then Dense(`units`, `head`).

    `functional=False` stacks them in a Sequential; True calls them on a new Input.
    With `seed`, Keras's random seed is set before any layer is built.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    top = [L.Flatten()]
    if hidden is not None:
        top.append(L.Dense(hidden, activation="relu"))
    top.append(L.Dense(units, activation=head))
    if not functional:
        return keras.Sequential([base] + top)
    inp = keras.Input((32, 32, 3))
    x = base(inp)
    for layer in top:
        x = layer(x)
    return keras.Model(inp, x)


def nested_base_cnn(seed: int = 0) -> keras.Model:
    """A functional model `nested` around a Sequential `base`, 16x16x3 input, 3 softmax classes.

    stem (conv) -> base[a (conv), mp (pool), b (conv)] -> gap -> head; all convs 'same'.
    """
    keras.utils.set_random_seed(seed)
    base = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            L.Conv2D(4, 3, padding="same", name="a"),
            L.MaxPooling2D(name="mp"),
            L.Conv2D(4, 3, padding="same", name="b"),
        ],
        name="base",
    )
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(3, 3, padding="same", name="stem")(inp)
    x = base(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inp, out, name="nested")


def nested_flat_cnn(seed: int = 0) -> keras.Model:
    """A functional model `nested` whose first layer is a Sequential `base`, 2 softmax classes.

    base[a (valid conv), mp (pool)] -> flat (Flatten) -> head; input 16x16x3.
    """
    keras.utils.set_random_seed(seed)
    base = keras.Sequential(
        [keras.Input((16, 16, 3)), L.Conv2D(4, 3, name="a"), L.MaxPooling2D(name="mp")],
        name="base",
    )
    inp = keras.Input((16, 16, 3))
    x = base(inp)
    x = L.Flatten(name="flat")(x)
    out = L.Dense(2, activation="softmax", name="head")(x)
    return keras.Model(inp, out, name="nested")


def residual_cnn() -> keras.Model:
    """A residual block with a linear 2-unit head, 12x12x3 input.

    c1 -> c2, add = c1 + c2, c3 (all 'same' 3x3 relu, 4 channels) -> GAP -> Dense(2).
    """
    inp = keras.Input((12, 12, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
    y = L.Conv2D(4, 3, padding="same", activation="relu", name="c2")(x)
    z = L.Add(name="add")([x, y])
    z = L.Conv2D(4, 3, padding="same", activation="relu", name="c3")(z)
    out = L.Dense(2)(L.GlobalAveragePooling2D()(z))
    return keras.Model(inp, out)


def batchnorm_cnn() -> keras.Model:
    """Conv c1 (linear) -> bn (BatchNormalization) -> relu -> GAP -> Dense(2); 12x12x3 input."""
    inp = keras.Input((12, 12, 3))
    x = L.Conv2D(4, 3, padding="same", name="c1")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    out = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def tiny_sequential() -> keras.Model:
    """An unbuilt Sequential (no Input layer): conv `c` (4, relu), GAP, Dense `out` (3, softmax).

    It gets its input shape only when first called on data.
    """
    return keras.Sequential(
        [
            L.Conv2D(4, 3, activation="relu", name="c"),
            L.GlobalAveragePooling2D(),
            L.Dense(3, activation="softmax", name="out"),
        ]
    )


def two_output_model(seed: int = 0) -> keras.Model:
    """conv -> GAP -> Dense(3, softmax) 'cls' and Dense(1) 'value'; 16x16x3 input."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    a = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(a)
    value = keras.layers.Dense(1, name="value")(a)
    return keras.Model(inp, [cls, value], name="two_heads")
