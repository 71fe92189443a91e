"""Is a pretrained ImageNet model usable offline? A look in the Keras cache.

Notebooks show their VGG16 / Xception sections only when the weights are
already on disk (as on Binder, where ``binder/postBuild`` fetches them), so
nothing downloads at run time::

    from cnnwidgets.assets.imagenet import imagenet_weights_available

    if imagenet_weights_available("vgg16"):
        model = keras.applications.VGG16(weights="imagenet")

Neither Keras nor TensorFlow is imported and no network is touched: this only
looks for the file names ``keras.applications`` stores under
``<keras home>/models/``.
"""

from __future__ import annotations

import os
import pathlib

__all__ = ["WEIGHT_FILES", "imagenet_weights_available", "keras_cache_dirs", "weights_path"]

#: model name -> (file with the classifier head, file without it), as named by
#: ``keras.applications`` (``keras.utils.get_file(fname, ..., cache_subdir="models")``).
WEIGHT_FILES: dict[str, tuple[str, str]] = {
    "vgg16": (
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "vgg19": (
        "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "xception": (
        "xception_weights_tf_dim_ordering_tf_kernels.h5",
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "resnet50": (
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
}


def keras_cache_dirs() -> list[pathlib.Path]:
    """The ``models/`` folders Keras reads cached weights from, most likely first.

    Mirrors Keras: ``$KERAS_HOME`` when set, otherwise ``~/.keras`` (or
    ``/tmp/.keras`` when the home folder is not writable, which Keras also
    falls back to when its cache folder is not writable)."""
    if "KERAS_HOME" in os.environ:
        bases = [pathlib.Path(os.environ["KERAS_HOME"]).expanduser()]
    else:
        home = pathlib.Path("~").expanduser()
        bases = [home / ".keras" if os.access(home, os.W_OK) else pathlib.Path("/tmp/.keras")]
    fallback = pathlib.Path("/tmp/.keras")
    if fallback not in bases:
        bases.append(fallback)
    return [base / "models" for base in bases]


def _files(name: str, include_top: bool) -> str:
    key = name.lower().replace("-", "").replace("_", "")
    if key not in WEIGHT_FILES:
        raise ValueError(f"unknown ImageNet model {name!r}; choose one of {sorted(WEIGHT_FILES)}")
    with_top, no_top = WEIGHT_FILES[key]
    return with_top if include_top else no_top


def weights_path(name: str, include_top: bool = True) -> pathlib.Path | None:
    """Path of the cached ImageNet weights of ``name`` ('vgg16', 'xception', ...),
    or None when they are not in the Keras cache."""
    file_name = _files(name, include_top)
    for folder in keras_cache_dirs():
        path = folder / file_name
        try:
            if path.is_file() and path.stat().st_size > 0 and _complete_hdf5(path):
                return path
        except OSError:
            continue
    return None


def _complete_hdf5(path: pathlib.Path) -> bool:
    """True when the weights file opens as HDF5. A download cut short fails
    here (HDF5 stores the file's end address and checks it on open); Keras
    would find its hash wrong and download again, which offline means failing."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return len(f.keys()) > 0
    except (OSError, ValueError):
        return False


def imagenet_weights_available(name: str, include_top: bool = True) -> bool:
    """True when ``keras.applications.<Name>(weights="imagenet", include_top=...)``
    would load from the local cache without downloading.

    ``name`` is case-insensitive: 'vgg16', 'VGG16', 'xception', 'Xception', ...
    Raises ValueError for a model this helper does not know."""
    return weights_path(name, include_top) is not None
