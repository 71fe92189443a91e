"""cw.occlusion against a plain one-patch-at-a-time loop, fills, batching and
memory bounds, the coarse-to-fine generator, cache, progress and bad input."""

from __future__ import annotations

import tracemalloc

import keras
import numpy as np
import pytest
from tiny_models import random_images, tiny_cnn

import cnnwidgets as cw
from cnnwidgets.explain.occlusion import blur, occlusion_progressive, patch_positions


@pytest.fixture(autouse=True)
def _fresh_cache():
    cw.cache.clear()
    yield
    cw.cache.clear()


def reference_loop(model, image, classes, patch, stride, fill_value, preprocess=None):
    """The plainest occlusion: one patched copy at a time through the model
    (an eager call, the path independent of the library's batched predict).

    fill_value: (C,) colour or an (H, W, C) picture to copy the patch from."""
    img = np.asarray(image, np.float32)
    h, w, _ = img.shape
    prep = preprocess or (lambda a: a)

    def starts(size):
        s = list(range(0, size - patch + 1, stride))
        return s if s[-1] == size - patch else s + [size - patch]

    base = np.asarray(model(prep(img[None].copy()), training=False))[0]
    total = np.zeros((len(classes), h, w))
    count = np.zeros((h, w))
    for y in starts(h):
        for x in starts(w):
            patched = img.copy()
            if np.ndim(fill_value) == 3:
                patched[y : y + patch, x : x + patch] = fill_value[y : y + patch, x : x + patch]
            else:
                patched[y : y + patch, x : x + patch] = fill_value
            p = np.asarray(model(prep(patched[None]), training=False))[0]
            for k, c in enumerate(classes):
                total[k, y : y + patch, x : x + patch] += base[c] - p[c]
            count[y : y + patch, x : x + patch] += 1
    # Pixels no patch covers (stride > patch) get 0.
    return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)


def test_matches_plain_loop_on_demo_model(shapes_model, shapes_probe, shapes_images):
    images = shapes_images[0][:2]
    classes = [0, 1, 2, 3]
    # stride 14 does not divide 64 - 16: the last position is moved to 48.
    maps = cw.occlusion(shapes_probe, images, classes=classes, patch=16, stride=14)
    assert maps.shape == (2, 4, 64, 64) and maps.dtype == np.float32
    for n in range(2):
        mean = images[n].astype(np.float32).mean(axis=(0, 1))
        ref = reference_loop(shapes_model, images[n], classes, 16, 14, mean)
        np.testing.assert_allclose(maps[n], ref, atol=2e-5)


def test_stride_larger_than_patch_is_refused(shapes_probe, shapes_images):
    # Such a grid leaves rows and columns no patch ever hides; their 0 would be a lie.
    with pytest.raises(ValueError, match="stride 20 is larger than patch 16"):
        cw.occlusion(shapes_probe, shapes_images[0][0], patch=16, stride=20)


def test_top1_default_and_keras_model_argument(shapes_model, shapes_images):
    image = shapes_images[0][0]
    top = int(cw.Probe(shapes_model).predict(image).argmax())
    a = cw.occlusion(shapes_model, image, patch=16, stride=16)
    b = cw.occlusion(shapes_model, image, classes=top, patch=16, stride=16)
    assert a.shape == (1, 1, 64, 64)
    np.testing.assert_array_equal(a, b)


def test_preprocess_and_fills_against_loop(rng):
    model = tiny_cnn(size=16)

    def prep(x):
        return x / 127.5 - 1.0

    probe = cw.Probe(model, preprocess=prep)
    image = rng.uniform(0, 255, (16, 16, 3)).astype(np.float32)
    for fill, value in [
        ("zero", np.zeros(3, np.float32)),
        (100, np.full(3, 100, np.float32)),
        ((10.0, 200.0, 50.0), np.array([10, 200, 50], np.float32)),
        ("mean", image.mean(axis=(0, 1))),
        ("blur", blur(image, 1.25)),
    ]:
        got = cw.occlusion(probe, image, classes=[0, 2], patch=5, stride=4, fill=fill)
        ref = reference_loop(model, image, [0, 2], 5, 4, value, preprocess=prep)
        np.testing.assert_allclose(got[0], ref, atol=1e-5, err_msg=str(fill))


def test_blur_matches_scipy(rng):
    ndimage = pytest.importorskip("scipy.ndimage")
    image = rng.uniform(0, 255, (20, 24, 3)).astype(np.float32)
    ours = blur(image, 2.0)
    theirs = ndimage.gaussian_filter(image, sigma=(2.0, 2.0, 0), mode="nearest", truncate=3.0)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_occlude(rng):
    image = rng.integers(0, 256, (10, 12, 3)).astype(np.uint8)
    out = cw.occlude(image, x=2, y=3, patch=4, fill="zero")
    assert out.dtype == np.float32 and out.shape == image.shape
    assert (out[3:7, 2:6] == 0).all()
    mask = np.ones((10, 12), bool)
    mask[3:7, 2:6] = False
    np.testing.assert_array_equal(out[mask], image[mask])
    mean = cw.occlude(image, 0, 0, 3, "mean")
    np.testing.assert_allclose(mean[0, 0], image.reshape(-1, 3).mean(0), rtol=1e-6)
    assert (cw.occlude(image, 0, 0, 3, 7.5)[:3, :3] == 7.5).all()
    # x, y are the top-left corner, clipped so the patch stays inside.
    edge = cw.occlude(image, 100, 100, 4, "zero")
    assert (edge[6:, 8:] == 0).all() and (edge[:6] == image[:6]).all()
    gray = cw.occlude(image[..., 0], 1, 1, 2, "zero")
    assert gray.shape == (10, 12, 1)
    blurred = cw.occlude(image, 2, 2, 4, "blur")
    np.testing.assert_allclose(blurred[2:6, 2:6], blur(image, 1.0)[2:6, 2:6], rtol=1e-6)


def test_patch_positions_cover_the_image():
    ys, xs = patch_positions(64, 50, 16, 14)
    assert ys.tolist() == [0, 14, 28, 42, 48]
    assert xs.tolist() == [0, 14, 28, 34]
    ys, _ = patch_positions(64, 64, 16, 8)
    assert ys.tolist() == list(range(0, 49, 8))


def _counting(probe):
    """Record the size of every batch the probe predicts."""
    sizes: list[int] = []
    original = probe.predict

    def predict(images, batch_size=None, cache=True):
        sizes.append(len(images))
        return original(images, batch_size=batch_size, cache=cache)

    probe.predict = predict
    return sizes


def test_batches_bounded_by_memory_budget(rng):
    model = tiny_cnn(size=16)
    image = rng.uniform(0, 255, (16, 16, 3)).astype(np.float32)
    full = cw.occlusion(cw.Probe(model), image, classes=[0, 1, 2], patch=2, stride=1)
    probe = cw.Probe(model, memory_budget=100_000)
    sizes = _counting(probe)
    got = cw.occlusion(probe, image, classes=[0, 1, 2], patch=2, stride=1)
    # sizes[0] is the unoccluded pass; then 15 x 15 positions in budget-sized batches.
    assert 1 < max(sizes[1:]) <= probe.batch_size() and sum(sizes[1:]) == 15 * 15
    np.testing.assert_allclose(got, full, atol=1e-6)
    cw.cache.clear()
    sizes.clear()
    cw.occlusion(probe, image, classes=[0], patch=2, stride=1, batch_size=7)
    assert max(sizes[1:]) == 7


def test_large_image_is_patched_lazily():
    # 512x512 with 121 positions: materializing every patched copy would take
    # 363 MiB (50 GiB at stride 4); the lazy batches stay within a few images.
    keras.utils.set_random_seed(0)
    inp = keras.Input((512, 512, 3))
    x = keras.layers.AveragePooling2D(32)(inp)
    x = keras.layers.Conv2D(2, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))
    probe = cw.Probe(model, memory_budget=128 * 2**20)
    image = random_images(1, 512, seed=0)[0]
    sizes = _counting(probe)
    tracemalloc.start()
    try:
        maps = cw.occlusion(
            probe, image, classes=[0, 1, 2], patch=64, stride=48, engine="batched"
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert maps.shape == (1, 3, 512, 512) and np.isfinite(maps).all()
    image_bytes = image.nbytes
    assert sum(sizes[1:]) == 11 * 11
    assert max(sizes[1:]) * image_bytes * 4 <= probe.memory_budget
    assert peak < 40 * image_bytes, f"peak {peak / 2**20:.0f} MiB"


def test_coarse_to_fine(shapes_probe, shapes_images):
    image, label = shapes_images[0][1], int(shapes_images[1][1])
    classes = [label, (label + 1) % 4]  # the shape shown and one that is absent
    probe = cw.Probe(shapes_probe.model)
    sizes = _counting(probe)
    levels = list(
        occlusion_progressive(probe, image, classes=classes, patch=8, stride=4, engine="batched")
    )
    assert len(levels) >= 3
    assert [lv.final for lv in levels] == [False] * (len(levels) - 1) + [True]
    assert levels[0].done < levels[0].total / 8
    assert [lv.stride for lv in levels] == sorted((lv.stride for lv in levels), reverse=True)
    assert levels[-1].stride == 4 and levels[-1].done == levels[-1].total == 15 * 15
    assert sum(sizes[1:]) == 15 * 15  # no position computed twice
    for lv in levels:
        assert lv.maps.shape == (1, 2, 64, 64) and np.isfinite(lv.maps).all()
    cw.cache.clear()
    direct = cw.occlusion(shapes_probe, image, classes=classes, patch=8, stride=4)
    np.testing.assert_allclose(levels[-1].maps, direct, atol=1e-6)
    # The previews already resemble the final map, more so as they get finer.
    corr = [np.corrcoef(lv.maps.ravel(), levels[-1].maps.ravel())[0, 1] for lv in levels]
    assert corr[0] > 0.2 and corr[-2] > 0.6
    limited = list(
        occlusion_progressive(probe, image, classes=classes, patch=8, stride=4, levels=2)
    )
    assert len(limited) == 2


def test_cache_and_progress(shapes_probe, shapes_images):
    image = shapes_images[0][2]
    calls = []
    a = cw.occlusion(
        shapes_probe, image, patch=16, stride=16, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[0] == (0, 16) and calls[-1] == (16, 16)
    a[:] = 99  # the cache hands out copies
    probe = shapes_probe
    sizes = _counting(probe)
    try:
        b = cw.occlusion(probe, image, patch=16, stride=16)
    finally:
        del probe.predict
    assert len(sizes) <= 1  # only the top-1 class lookup, no patched passes
    assert (b != 99).any()


def test_cancel(shapes_probe, shapes_images):
    def stop(done, total):
        if done > 0:
            raise cw.Cancelled()

    with pytest.raises(cw.Cancelled):
        cw.occlusion(
            shapes_probe, shapes_images[0][3], patch=8, stride=4, batch_size=8, progress=stop
        )
    assert not [k for k in cw.cache.RESULTS.keys() if k[1] == "occlusion"]


def test_binary_head_two_classes(binary_probe, pair_images):
    image = pair_images[0][0]
    maps = cw.occlusion(binary_probe, image, classes=[0, 1], patch=16, stride=16)
    np.testing.assert_allclose(maps[0, 0], -maps[0, 1], atol=1e-6)


def test_model_unchanged(rng):
    model = tiny_cnn(size=16)
    x = rng.uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    before = model.predict(x, verbose=0)
    weights = [w.copy() for w in model.get_weights()]
    cw.occlusion(model, x, classes=[0, 1], patch=4, stride=4, fill="blur")
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"patch": 65}, "larger than the image"),
        ({"patch": 0}, "patch must be >= 1"),
        ({"stride": 0}, "stride must be >= 1"),
        ({"fill": "gray"}, "unknown fill"),
        ({"fill": (1.0, 2.0)}, "3 channels"),
        ({"classes": "hexagon"}, "unknown class"),
    ],
)
def test_bad_arguments(shapes_probe, shapes_images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cw.occlusion(shapes_probe, shapes_images[0][0], **kwargs)


def test_bad_argument_types(shapes_probe, shapes_images):
    with pytest.raises(TypeError, match="patch must be an int"):
        cw.occlusion(shapes_probe, shapes_images[0][0], patch=8.5)
    with pytest.raises(ValueError, match="larger than the image"):
        cw.occlude(np.zeros((8, 8, 3)), 0, 0, patch=9)
    with pytest.raises(ValueError, match="unknown fill"):
        cw.occlude(np.zeros((8, 8, 3)), 0, 0, patch=2, fill="noise")
