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


#: Test files and notebooks that take a minute or more on two cores, longest first
#: (measured with --durations). `make test` hands whole files to two workers in
#: collection order; starting the long ones first keeps both workers busy to the end
#: instead of leaving one long file alone at the tail.
SLOW_FIRST = (
    "test_real_models.py",
    "09_train_look_again.ipynb",
    "test_backends.py",
    "test_notebooks_in_lab.py",
    "11_which_map_to_trust.ipynb",
    "test_dataset_ray.py",
    "test_nbgrader_course.py",
    "test_incremental_occlusion.py",
    "10_real_photos.ipynb",
    "12_explain_any_output.ipynb",
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    # A stable sort: the order inside each file (a notebook's cells) is kept.
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    skip_tensorflow_recipes(items)



#: The tag of notebook cells that run a peer's recipe written for TensorFlow
#: (``tf.GradientTape``, as the Keras examples do) or use its results. On
#: another Keras backend (``make test-jax`` runs the notebooks on JAX) nbval
#: skips them; every other cell runs.
TENSORFLOW_RECIPE = "tensorflow-recipe"


def skip_tensorflow_recipes(items: list) -> None:
    """Mark the notebook cells tagged :data:`TENSORFLOW_RECIPE` skipped unless
    Keras runs on TensorFlow."""
    recipes = [
        item for item in items
        if TENSORFLOW_RECIPE in getattr(item, "cell", {}).get("metadata", {}).get("tags", ())
    ]
    if not recipes:
        return
    import keras

    if keras.backend.backend() == "tensorflow":
        return
    reason = f"a TensorFlow recipe; this run's Keras backend is {keras.backend.backend()}"
    for item in recipes:
        item.add_marker(pytest.mark.skip(reason=reason))
