"""cnnwidgets: Jupyter widgets that show what a Keras CNN sees.

    import cnnwidgets as cw
    model = cw.assets.demo_model("shapes_cnn")
    cw.gradcam(model, cw.assets.photo("chelsea"), classes=["circle", "square"])
    cw.GradCAMComparator(model, image, class_names=cw.assets.demo_class_names())

Functions and widgets are imported on first use, so ``import cnnwidgets``
stays light.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:
    # pyproject.toml is the one place the version is written
    __version__ = importlib.metadata.version("cnnwidgets")
except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"

# public name -> module that defines it
_LAZY = {
    "Probe": "cnnwidgets.probe",
    "LayerInfo": "cnnwidgets.probe",
    "weights_version": "cnnwidgets.probe",
    "targets": "cnnwidgets.probe",
    "Cancelled": "cnnwidgets.progress",
    "gradcam": "cnnwidgets.explain.cam",
    "saliency": "cnnwidgets.explain.saliency",
    "occlusion": "cnnwidgets.explain.occlusion",
    "occlude": "cnnwidgets.explain.occlusion",
    "occlusion_plan": "cnnwidgets.explain.occlusion",
    "maximize": "cnnwidgets.explain.maximize",
    "filter_weights": "cnnwidgets.explain.filters",
    "reconstruct": "cnnwidgets.explain.deconvnet",
    "receptive_field": "cnnwidgets.explain.receptive_field",
    "ActivationBrowser": "cnnwidgets.widgets.activation_browser",
    "FilterGallery": "cnnwidgets.widgets.filter_gallery",
    "GradCAMComparator": "cnnwidgets.widgets.gradcam_comparator",
    "OcclusionScrubber": "cnnwidgets.widgets.occlusion_scrubber",
    "ModelOverview": "cnnwidgets.widgets.model_overview",
    "explain_dataset": "cnnwidgets.dataset.stream",
    "top_activations": "cnnwidgets.dataset.topk",
    "DatasetExplorer": "cnnwidgets.widgets.dataset_explorer",
}
_SUBMODULES = (
    "assets",
    "cache",
    "render",
    "explain",
    "widgets",
    "probe",
    "gradients",
    "progress",
    "dataset",
)

__all__ = sorted(_LAZY) + list(_SUBMODULES) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"cnnwidgets.{name}")
    raise AttributeError(f"module 'cnnwidgets' has no attribute {name!r}")


def __dir__():
    return __all__
