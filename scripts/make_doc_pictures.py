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
    }
    for name, widget in widgets.items():
        widget.wait()
        path = OUT / f"{name}.png"
        widget.save(path)
        size = path.stat().st_size
        print(f"{path.relative_to(OUT.parents[1])}: {widget.view.shape}, {size} bytes")
    for widget in widgets.values():
        widget.close()


if __name__ == "__main__":
    main()
