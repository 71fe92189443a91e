"""Shared fixtures: the shipped demo models, small synthetic models of every
kind the Probe must handle, and deterministic images."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from tiny_models import tiny_cnn  # noqa: E402

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


@pytest.fixture
def tiny_model():
    return tiny_cnn()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
