"""Progress: tqdm.auto bars on demand or for large jobs, silence when off, the
(done, total) callable the widgets use, and no stderr text in a notebook."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
from tqdm.std import tqdm as std_tqdm

import cnnwidgets as cw
from cnnwidgets.progress import AUTO_MIN_CALLS, Cancelled, Reporter, reporter

ROOT = pathlib.Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ the reporter


def drive(report, total: int, step: int) -> None:
    report(0, total)
    for done in range(step, total + step, step):
        report(min(done, total), total)


def test_off_is_silent(capsys):
    report = reporter(False, "quiet")
    drive(report, 1000, 1)
    assert report.bar is None
    assert capsys.readouterr() == ("", "")


def test_true_draws_a_tqdm_bar_that_ends_at_total(capsys):
    report = reporter(True, "working")
    drive(report, 12, 3)  # 4 calls: small, shown anyway
    assert isinstance(report.bar, std_tqdm)  # tqdm.auto gives the terminal bar here
    assert report.bar.n == 12 and report.bar.total == 12
    assert report.bar.disable  # closed at done == total
    err = capsys.readouterr().err
    assert "working" in err and "100%" in err and "12/12" in err


@pytest.mark.parametrize(
    "step, shown", [(1000 // AUTO_MIN_CALLS, True), (1000 // AUTO_MIN_CALLS + 40, False)]
)
def test_default_shows_a_bar_only_for_large_jobs(capsys, step, shown):
    report = reporter(None, "auto")
    drive(report, 1000, step)
    calls = math.ceil(1000 / step)
    assert (calls > AUTO_MIN_CALLS) is shown
    assert (report.bar is not None) is shown
    assert ("auto" in capsys.readouterr().err) is shown


def test_default_with_a_call_count_decides_at_the_start(capsys):
    big = reporter(None, "hinted", calls=AUTO_MIN_CALLS + 1)
    big(0, 5)
    assert big.bar is not None  # open before any work is done
    drive(big, 5, 5)
    small = reporter(None, "hinted", calls=AUTO_MIN_CALLS)
    drive(small, 5, 1)
    assert small.bar is None


def test_a_job_finished_in_one_step_shows_nothing(capsys):
    report = reporter(None, "cached")
    report(7, 7)
    assert report.bar is None and capsys.readouterr().err == ""


def test_close_ends_the_bar_early_and_no_new_one_opens(capsys):
    with reporter(True, "stopped") as report:
        report(0, 100)
        report(10, 100)
    assert report.bar.disable  # tqdm disables a closed bar
    report(20, 100)
    assert report.bar.n == 10
    assert "10/100" in capsys.readouterr().err


def test_callable_is_forwarded_and_may_cancel():
    seen = []
    report = reporter(lambda d, t: seen.append((d, t)), "cb")
    drive(report, 9, 4)
    assert seen == [(0, 9), (4, 9), (8, 9), (9, 9)]
    assert report.bar is None

    def stop(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        reporter(stop, "cb")(1, 2)


@pytest.mark.parametrize("bad", ["yes", 1, 0.5])
def test_bad_progress_is_a_type_error(bad):
    with pytest.raises(TypeError, match="progress must be None"):
        Reporter(bad, "x")


# ------------------------------------------------------- through the real functions


@pytest.fixture
def probe(tiny_model):
    return cw.Probe(tiny_model)


def test_occlusion_callable_sees_monotonic_progress_to_total(probe, rng):
    image = rng.uniform(0, 255, (16, 16, 3)).astype(np.float32)
    seen = []
    cw.occlusion(probe, image, patch=4, stride=2, batch_size=5, progress=lambda *a: seen.append(a))
    dones = [d for d, _ in seen]
    totals = {t for _, t in seen}
    assert len(totals) == 1 and dones[-1] == totals.pop() == 7 * 7
    assert dones == sorted(dones) and dones[0] == 0


def test_occlusion_default_bar_for_many_batches_and_off_is_silent(probe, rng, capsys):
    image = rng.uniform(0, 255, (16, 16, 3)).astype(np.float32)
    cw.occlusion(probe, image, patch=4, stride=2, batch_size=2)  # 25 calls
    assert "occlusion" in capsys.readouterr().err
    cw.occlusion(probe, image, patch=4, stride=2, batch_size=49)  # 1 call
    cw.occlusion(probe, image, patch=4, stride=1, batch_size=1, progress=False)  # 169 calls
    assert capsys.readouterr().err == ""


def test_smoothgrad_and_integrated_bars(probe, rng, capsys):
    x = rng.uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    cw.saliency(probe, x, method="smoothgrad", n_samples=30, batch_size=2)  # 30 calls
    assert "smoothgrad" in capsys.readouterr().err
    cw.saliency(probe, x, method="integrated", steps=8, batch_size=18)  # 1 call
    assert capsys.readouterr().err == ""
    cw.saliency(probe, x, method="integrated", steps=8, batch_size=18, progress=True)
    err = capsys.readouterr().err
    assert "integrated" in err and "18/18" in err


@pytest.mark.slow
def test_notebook_kernel_gets_a_widget_bar_not_stderr(tmp_path, monkeypatch):
    """In Jupyter the bar is tqdm's notebook widget: nothing on the (red) stderr stream."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel imports this checkout
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from cnnwidgets.progress import reporter\n"
            "report = reporter(True, 'in a notebook')\n"
            "for d in range(0, 11):\n"
            "    report(d, 10)\n"
            "from tqdm.notebook import tqdm_notebook\n"
            "print(isinstance(report.bar, tqdm_notebook), report.bar.n)"
        )
    ]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute(
        cwd=str(tmp_path)
    )
    outputs = nb.cells[0].outputs
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert any(
        "application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs
    )
    printed = "".join(o.text for o in outputs if o.output_type == "stream")
    assert printed.split() == ["True", "10"]
