"""What the weights version in every cache key costs, against one forward pass.

    .venv/bin/python benchmarks/freshness.py

Builds VGG16 (weights=None, 224 px, no download), then times
``cnnwidgets.weights_version`` (the check every cached result pays) and one
single-image ``predict_on_batch``, medians of 20 and 5 runs, and prints the
ratio. The issue's budget is 5 % of a forward pass.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import cnnwidgets as cw  # noqa: E402


def median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    model = keras.applications.VGG16(weights=None)
    image = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    first = median_seconds(lambda: cw.weights_version(model), 1)
    version = median_seconds(lambda: cw.weights_version(model), 20)
    model.predict_on_batch(image)
    forward = median_seconds(lambda: model.predict_on_batch(image), 5)
    params = model.count_params()
    print(f"VGG16, {params / 1e6:.1f} M parameters, {len(model.weights)} variables")
    print(f"weights_version: first call {first * 1e3:.0f} ms (traces), then {version * 1e3:.2f} ms")
    print(f"forward pass, 1 image 224 px: {forward * 1e3:.0f} ms")
    print(f"version check / forward pass: {version / forward:.1%}")


if __name__ == "__main__":
    main()
