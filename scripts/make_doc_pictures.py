"""Write the widget pictures of the documentation (docs/img/*.png).

    python scripts/make_doc_pictures.py

Each picture is the widget's own ``.save(path)``: exactly what the widget
shows, drawn from the shipped demo model and bundled images, deterministic.
Re-run after a change to a widget's look and commit the PNGs (tens of KB each).
"""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tempfile  # noqa: E402

import numpy as np  # noqa: E402

import cnnwidgets as cw  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "img"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    model = cw.assets.demo_model("shapes_cnn")
    names = cw.assets.demo_class_names("shapes_cnn")
    probe = cw.Probe(model, class_names=names)
    images, labels, _ = cw.assets.make_pairs(4, seed=7)  # the tour's pictures
    image = images[0]
    photo = cw.assets.photo("chelsea", size=64)

    comparator = cw.GradCAMComparator(probe, image, top=4)
    widgets = {
        "gradcam_comparator": comparator,
        "activation_browser": cw.ActivationBrowser(
            probe, np.stack([image, photo]), layer="block1_conv2"
        ),
        "filter_gallery": cw.FilterGallery(probe, layer="block1_conv1", mode="weights"),
        "occlusion_scrubber": cw.OcclusionScrubber(probe, image, patch=16, stride=8),
        "model_overview": cw.ModelOverview(probe, images=image, comparator=comparator),
        "dataset_explorer": _explorer(probe),
        "gradcam_comparator_regions": _regions(),
    }
    for name, widget in widgets.items():
        widget.wait()
        path = OUT / f"{name}.png"
        widget.save(path)
        size = path.stat().st_size
        print(f"{path.relative_to(OUT.parents[1])}: {widget.view.shape}, {size} bytes")
    for widget in widgets.values():
        widget.close()


def _regions() -> cw.GradCAMComparator:
    """The comparator on the shipped segmenter, after a click on one shape:
    the pinned row explains the largest region, the slider the clicked one."""
    images, segmentation, _ = cw.assets.make_scenes(4, seed=2, objects=(2, 3))
    image = images[2].astype(np.float32)
    y, x = np.argwhere(segmentation[2] > 0)[0] + 2  # just inside the first shape
    widget = cw.GradCAMComparator(
        cw.assets.shapes_segmenter(),
        image,
        class_names=cw.assets.SEGMENT_CLASSES,
        methods=("gradcam", "vanilla"),
    )
    widget.click(int(y), int(x))
    return widget


def _explorer(probe: cw.Probe) -> cw.DatasetExplorer:
    """An explorer over 24 shapes pictures, sorted by the heat outside each object."""
    images, labels, boxes = cw.assets.make_shapes(24, seed=11)
    out = pathlib.Path(tempfile.mkdtemp()) / "maps.zarr"
    cw.explain_dataset(probe, (images, labels), out=out, boxes=boxes, progress=False)
    explorer = cw.DatasetExplorer(out, model=probe, per_page=12, cols=6)
    explorer.sort.value = "energy_outside"
    return explorer


if __name__ == "__main__":
    main()
