"""A twin of a model with re-initialized weights, for the randomization check."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras


def _reseeded_config(layer: Any, seed: int) -> dict:
    """The layer's config with every random initializer given a fixed seed."""
    cfg = layer.get_config()
    for key, value in list(cfg.items()):
        if not key.endswith("_initializer") or value is None:
            continue
        init = (
            keras.initializers.deserialize(value)
            if isinstance(value, dict)
            else keras.initializers.get(value)
        )
        icfg = init.get_config()
        if "seed" in icfg:
            icfg["seed"] = int(seed)
            init = type(init).from_config(icfg)
        cfg[key] = keras.initializers.serialize(init)
    return cfg


def leaf_layers(model: Any) -> list:
    """Every layer of a model that is not itself a model with layers, in order."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out.extend(leaf_layers(layer))
        else:
            out.append(layer)
    return out


def randomized_twin(model: keras.Model, seed: int, keep_trained: Iterable[str] | None) -> Any:
    """A clone of ``model`` (new layers, new weights; the model is untouched).

    Every random initializer is seeded from ``seed`` and the layer's position,
    so the twin is deterministic and the global random state is untouched.
    Layers named in ``keep_trained`` get copies of the model's current weights.
    """
    counter = iter(range(1, 1_000_000))

    def clone(layer):
        s = int(seed) * 1_000_003 + next(counter)
        return type(layer).from_config(_reseeded_config(layer, s))

    twin = keras.models.clone_model(model, clone_function=clone, recursive=True)
    if keep_trained:
        keep = set(keep_trained)
        trained = {layer.name: layer for layer in leaf_layers(model)}
        for layer in leaf_layers(twin):
            if layer.name in keep and layer.name in trained and layer.weights:
                layer.set_weights(trained[layer.name].get_weights())
    return twin
