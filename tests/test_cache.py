"""The one result cache: bounded in bytes, read-only values, owners dropped
with their probe, and no deadlock when a dropped value's finalizer calls back."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from tiny_models import random_images, tiny_cnn

import cnnwidgets as cw
from cnnwidgets.cache import ResultCache


def test_bounded_in_bytes_least_recent_out():
    cache = ResultCache(max_bytes=3 * 800)
    for k in range(5):
        cache.put(("owner", k), np.zeros(100))  # 800 bytes each
    assert [k[1] for k in cache.keys()] == [2, 3, 4] and cache.nbytes == 2400
    cache.get(("owner", 2))
    cache.put(("owner", 5), np.zeros(100))
    assert [k[1] for k in cache.keys()] == [4, 2, 5]


def test_values_are_read_only_so_callers_cannot_corrupt_them():
    cache = ResultCache()
    value = cache.put("k", {"maps": np.ones(3)})
    with pytest.raises(ValueError, match="read-only"):
        value["maps"][0] = 5


def test_a_finalizer_calling_back_during_clear_does_not_deadlock():
    cache = ResultCache()

    class Holder:
        pass

    held = Holder()
    weakref.finalize(held, cache.drop_owner, "other")
    cache.put(("other", 1), np.zeros(4))
    cache.put(("mine", 1), held)
    del held
    cache.clear()  # dropping `held` runs its finalizer, which takes the lock again
    assert len(cache) == 0


def test_a_probe_takes_its_results_with_it():
    model = tiny_cnn()
    probe = cw.Probe(model)
    probe.predict(np.zeros((16, 16, 3), np.float32))
    token = probe.result_key("x")[0]
    assert any(k[0] == token for k in cw.cache.RESULTS.keys())
    del probe
    gc.collect()
    assert not any(k[0] == token for k in cw.cache.RESULTS.keys())


def test_gradcam_without_cache_leaves_no_maps_behind():
    model = tiny_cnn()
    images = random_images(2, 16, seed=1, high=1.0)
    probe = cw.Probe(model)
    token = probe.result_key("x")[0]
    kept = cw.gradcam(probe, images, classes=[0, 1])
    again = cw.gradcam(probe, images, classes=[0, 1], cache=False)
    np.testing.assert_array_equal(kept, again)
    cams = [k for k in cw.cache.RESULTS.keys() if k[0] == token and k[1] == "cam"]
    assert len(cams) == 1  # only the cached call stored its maps
