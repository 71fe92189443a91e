"""Widgets tell the truth about their background work: errors are shown,
close() really closes, a storm of changes ends on the last value, and a
Python process exits cleanly while a job runs."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time

import ipywidgets
import numpy as np
import pytest
from tiny_models import random_images, tiny_cnn

import cnnwidgets as cw
from cnnwidgets import render
from cnnwidgets.explain import cam


def _job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cnnwidgets-job" and t.is_alive()]


def _registered() -> int:
    return len(ipywidgets.widgets.widget._instances)


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_failed_job_is_shown_in_the_widget_and_raised_by_wait(monkeypatch, shapes_model):
    image = cw.assets.make_shapes(1, seed=4)[0][0]
    widget = cw.GradCAMComparator(shapes_model, image, methods=["gradcam"])
    widget.wait()

    def broken(*args, **kwargs):
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr(cam, "_raw_maps", broken)
    widget.methods.value = ("gradcam", "gradcam++")  # needs a new computation
    with pytest.raises(RuntimeError, match="caught fire"):
        widget.wait()
    assert "caught fire" in widget.status.value and "#c62828" in widget.status.value
    assert widget.error == "RuntimeError: the GPU caught fire"
    assert widget.progress.value == 0 and widget.progress.bar_style == "danger"
    monkeypatch.undo()
    widget.methods.value = ("gradcam", "layercam")  # a job that works clears the error
    widget.wait()
    assert widget.error == "" and widget.progress.bar_style == ""
    widget.close()


def _make_all(model, images, n_each):
    made = []
    for _ in range(n_each):
        made.append(cw.ActivationBrowser(model, images))
        made.append(cw.FilterGallery(model))
        made.append(cw.GradCAMComparator(model, images[0], methods=["gradcam"]))
        made.append(cw.OcclusionScrubber(model, images[0], patch=4, stride=4))
        made.append(cw.ModelOverview(model))
    return made


@pytest.mark.slow
def test_close_releases_every_widget_and_memory():
    model = tiny_cnn(size=16)
    images = random_images(2, 16, seed=0, high=1.0)
    for w in _make_all(model, images, 1):  # warm up: traced functions, imports, caches
        w.wait()
        w.close()
    gc.collect()
    counts, rss = [], []
    for _ in range(3):
        made = _make_all(model, images, 10)  # 50 widgets
        for w in made:
            w.wait()
            w.close()
        time.sleep(0.2)  # closed workers' threads leave their loop
        gc.collect()
        counts.append(_registered())
        rss.append(_rss_bytes())
        workers = [w._worker for w in made if w._worker is not None]
        assert not any(worker.alive for worker in workers)
    assert counts[2] <= counts[0] * 1.05 + 5, counts
    assert rss[2] <= rss[0] * 1.05, rss


def test_close_cancels_the_running_job_and_closes_children(shapes_model):
    gallery = cw.FilterGallery(shapes_model, mode="maximize", steps=4000, size=32)
    children = [gallery.layer, gallery.mode, gallery.page, gallery.progress]
    deadline = time.monotonic() + 120
    while gallery.progress.value == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # past the one-off trace, into the optimization steps
    assert gallery._job.running and 0 < gallery.progress.value < gallery.progress.max
    gallery.close()
    # Thousands of steps remain; the job stops at its next chunk of steps.
    assert gallery._job.join(timeout=5), "the job must stop at its next progress check"
    assert gallery._job.cancelled
    assert all(child.comm is None for child in children)
    assert gallery.comm is None


def test_a_storm_of_changes_runs_one_job_at_a_time_and_ends_on_the_last(shapes_model):
    images = cw.assets.make_shapes(2, seed=3)[0]
    browser = cw.ActivationBrowser(shapes_model, images)
    browser.wait()
    layers = [value for _, value in browser.layer.options]
    before = len(_job_threads())  # other tests' widgets may still be working
    peak = 0
    for i in range(200):
        browser.layer.value = layers[i % len(layers)]
        peak = max(peak, len(_job_threads()) - before)
    browser.layer.value = layers[1]
    browser.wait()
    assert peak <= 2
    time.sleep(0.2)
    assert not browser._worker.alive  # an idle widget holds no thread
    reference = cw.ActivationBrowser(shapes_model, images, layer=layers[1])
    reference.wait()
    np.testing.assert_array_equal(browser.view, reference.view)
    browser.close()
    reference.close()


@pytest.mark.slow
def test_the_process_exits_cleanly_while_a_job_runs(tmp_path):
    script = textwrap.dedent(
        """
        import cnnwidgets as cw
        model = cw.assets.demo_model("shapes_cnn")
        gallery = cw.FilterGallery(model, mode="maximize", steps=2000, size=64)
        assert gallery._job.running
        print("leaving with a job running", flush=True)
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert "leaving with a job running" in done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert "terminate called" not in done.stderr


def test_every_constructor_forwards_layout(shapes_model):
    images = cw.assets.make_shapes(2, seed=2)[0]
    layout = {"width": "640px"}
    made = [
        cw.ActivationBrowser(shapes_model, images, layout=ipywidgets.Layout(**layout)),
        cw.FilterGallery(shapes_model, layout=ipywidgets.Layout(**layout)),
        cw.GradCAMComparator(shapes_model, images[0], layout=ipywidgets.Layout(**layout)),
        cw.OcclusionScrubber(shapes_model, images[0], layout=ipywidgets.Layout(**layout)),
        cw.ModelOverview(shapes_model, layout=ipywidgets.Layout(**layout)),
    ]
    for widget in made:
        assert widget.layout.width == "640px", type(widget).__name__
        widget.wait()
        widget.close()


def test_a_clickable_picture_swaps_two_images_and_sends_each_png_once():
    """Every show() must point the bqplot mark at a different image widget (the
    front end redraws only then) without opening a widget per move, and the
    widget's own hidden ``image`` must not carry a second copy of the PNG."""
    from cnnwidgets.widgets.base import ClickablePicture

    picture = ClickablePicture(lambda y, x: None)
    before = _registered()
    shown = []
    for k in range(6):
        png = render.to_png(np.full((3, 4 + k, 3), 10 * k, np.uint8))
        picture.show(png, 3, 4 + k)
        assert picture.png == png
        shown.append(picture.mark.image)
    assert _registered() == before
    assert all(a is not b for a, b in zip(shown, shown[1:]))
    assert picture.mark.x.tolist() == [0.0, 9.0]


def test_widgets_drawn_in_parts_do_not_fill_their_hidden_image(shapes_model):
    from cnnwidgets.widgets.base import BLANK_PNG

    gallery = cw.FilterGallery(shapes_model).wait()
    assert gallery.image.value == BLANK_PNG
    # The grid travels in the canvas (composed in the page), the detail in its image.
    grid, detail = gallery.canvas.compose(), render.from_png(gallery.detail.value)
    np.testing.assert_array_equal(render.vstack([grid, detail], pad=6), gallery.view)
    gallery.close()
