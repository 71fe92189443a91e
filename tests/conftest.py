"""Shared fixtures: the shipped demo models, small synthetic models of every
kind the Probe must handle, and deterministic images."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import cnnwidgets as cw  # noqa: E402


@pytest.fixture(scope="session")
def shapes_model():
    return cw.assets.demo_model("shapes_cnn")


@pytest.fixture(scope="session")
def shapes_probe(shapes_model):
    return cw.Probe(shapes_model, class_names=cw.assets.demo_class_names("shapes_cnn"))


@pytest.fixture(scope="session")
def binary_model():
    return cw.assets.demo_model("circle_vs_square")


@pytest.fixture(scope="session")
def binary_probe(binary_model):
    return cw.Probe(binary_model, class_names=cw.assets.demo_class_names("circle_vs_square"))


@pytest.fixture(scope="session")
def shapes_images():
    images, labels, boxes = cw.assets.make_shapes(8, seed=123)
    return images, labels, boxes


@pytest.fixture(scope="session")
def pair_images():
    return cw.assets.make_pairs(8, seed=321)


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


@pytest.fixture
def tiny_model():
    return tiny_cnn()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
