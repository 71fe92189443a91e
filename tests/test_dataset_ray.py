"""explain_dataset(engine="ray"): Ray Data actors on this machine (2 workers)
give exactly the single-process store, resume it, and refuse what they should.

One Ray instance for the module (its start-up is the slow part); shut down at the end.
"""

from __future__ import annotations

import numpy as np
import pytest

import cnnwidgets as cw
from cnnwidgets.dataset.store import DatasetStore

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")


@pytest.fixture(scope="module")
def local_ray():
    # Ray gives its node 30 s to start; on a loaded two-core machine that can pass
    # (seen once with five processes busy), so a failed start is retried once.
    options = dict(
        num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    try:
        ray.init(**options)
    except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception on this time-out
        if "timed out during startup" not in str(exc):
            raise
        ray.shutdown()
        ray.init(**options)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def data():
    return cw.assets.make_shapes(60, seed=41)


def test_ray_store_equals_the_local_store_and_resumes(local_ray, shapes_model, data, tmp_path):
    images, labels, boxes = data
    common = dict(boxes=boxes, chunk=16, progress=False)
    local = cw.explain_dataset(shapes_model, (images, labels), out=tmp_path / "local", **common)
    seen = []
    on_ray = cw.explain_dataset(
        shapes_model,
        (images, labels),
        out=tmp_path / "ray",
        engine="ray",
        workers=2,
        **dict(common, progress=lambda d, t: seen.append((d, t))),
    )
    assert on_ray.complete and len(on_ray) == 60 and seen[-1] == (60, 60)
    assert on_ray.arrays == local.arrays
    for name in local.arrays:
        np.testing.assert_array_equal(on_ray.column(name), local.column(name), err_msg=name)
    assert on_ray.meta["summary"] == local.meta["summary"]

    # Resume on Ray from a store a local run left half done: only the rest is sent.
    def broken():
        for s in range(0, 60, 10):
            if s == 40:
                raise RuntimeError("stopped")
            yield {
                "image": images[s : s + 10],
                "label": labels[s : s + 10],
                "box": boxes[s : s + 10],
            }

    with pytest.raises(RuntimeError):
        cw.explain_dataset(shapes_model, broken(), out=tmp_path / "half", chunk=16, progress=False)
    assert DatasetStore(tmp_path / "half").done_chunks().tolist() == [True, True]
    progress = []
    resumed = cw.explain_dataset(
        shapes_model,
        (images, labels),
        out=tmp_path / "half",
        boxes=boxes,
        chunk=16,
        engine="ray",
        progress=lambda d, t: progress.append(d),
    )
    assert progress[0] == 32  # the finished chunks counted at once, not recomputed
    for name in local.arrays:
        np.testing.assert_array_equal(resumed.column(name), local.column(name), err_msg=name)


def test_ray_takes_iterables_and_checks_workers(local_ray, shapes_model, data, tmp_path):
    images = data[0][:24]
    batches = [images[s : s + 5] for s in range(0, 24, 5)]
    local = cw.explain_dataset(shapes_model, images, out=tmp_path / "l", chunk=8, progress=False)
    on_ray = cw.explain_dataset(
        shapes_model,
        iter(batches),
        out=tmp_path / "r",
        chunk=8,
        engine="ray",
        workers=1,
        progress=False,
    )
    np.testing.assert_array_equal(on_ray.column("maps"), local.column("maps"))
    with pytest.raises(ValueError, match="workers must be a positive int"):
        cw.explain_dataset(
            shapes_model, images, out=tmp_path / "w", engine="ray", workers=0, progress=False
        )
