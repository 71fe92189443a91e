# ruff: noqa: E501
"""Write notebooks/00_tour.ipynb (then execute it with nbconvert to fill outputs)."""

from __future__ import annotations

import pathlib
import sys

import nbformat as nbf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from colab_cell import apply as add_colab_cell  # noqa: E402  (a sibling script)

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell

cells = [
    md(
        "# A tour of cnnwidgets\n\n"
        "Four widgets that show what a convolutional network sees. Everything here runs "
        "offline on a laptop CPU: the model is a small CNN shipped with the package "
        "(trained on synthetic shapes by `scripts/train_demo_models.py`) and the photo "
        "comes with scikit-image.\n\n"
        "**Three cells to a Grad-CAM heatmap:** import, load, compare."
    ),
    code(
        "# NBVAL_IGNORE_OUTPUT\n"
        "import os\n"
        "os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
        "import numpy as np\n"
        "import cnnwidgets as cw"
    ),
    code(
        "model = cw.assets.demo_model('shapes_cnn')\n"
        "names = cw.assets.demo_class_names('shapes_cnn')\n"
        "images, labels, boxes = cw.assets.make_pairs(4, seed=7)  # two shapes per picture\n"
        "image = images[0]\n"
        "probe = cw.Probe(model, class_names=names)  # the engine every widget uses\n"
        "print('objects in the picture:', [names[i] for i in labels[0]])"
    ),
    code(
        "# NBVAL_IGNORE_OUTPUT\n"
        "comparator = cw.GradCAMComparator(probe, image, top=4)\n"
        "comparator"
    ),
    md(
        "Drag **rank** to step through the classes the model believes in, best first; the "
        "pinned panel keeps the top class beside it. Each heatmap is computed once for all "
        "top classes, so moving the slider costs no model pass. The same numbers are "
        "available as arrays:"
    ),
    code(
        "maps = cw.gradcam(probe, image, classes=[names[i] for i in labels[0]])\n"
        "print(maps.shape, maps.dtype)\n"
        "for k, i in enumerate(labels[0]):\n"
        "    peak = tuple(int(v) for v in np.unravel_index(maps[0, k].argmax(), maps.shape[2:]))\n"
        "    t, l, b, r = boxes[0, k]\n"
        "    print(f'{names[i]:>8}: peak at {peak}, inside its own box: {t <= peak[0] < b and l <= peak[1] < r}')"
    ),
    md(
        "## Layer activations\n\nEvery channel of a layer as one grid; pick a layer, sort, click a channel."
    ),
    code(
        "# NBVAL_IGNORE_OUTPUT\n"
        "photo = cw.assets.photo('chelsea', size=64)\n"
        "browser = cw.ActivationBrowser(model, np.stack([image, photo]), layer='block1_conv2', class_names=names)\n"
        "browser"
    ),
    md(
        "## Filters\n\nThe kernels of the first layer as colour patches; switch `mode` to see what each filter responds to."
    ),
    code(
        "# NBVAL_IGNORE_OUTPUT\n"
        "gallery = cw.FilterGallery(model, layer='block1_conv1', mode='weights')\n"
        "gallery"
    ),
    md(
        "## Occlusion\n\nSlide a grey patch over the picture: where hiding it lowers the probability is what mattered."
    ),
    code(
        "# NBVAL_IGNORE_OUTPUT\n"
        "scrubber = cw.OcclusionScrubber(model, image, class_names=names, patch=16, stride=8)\n"
        "scrubber.wait()  # the map is computed in the background; wait, then show it"
    ),
    md("## The model itself\n\n`model.summary()`, alive: shapes, parameters and receptive fields."),
    code("# NBVAL_IGNORE_OUTPUT\ncw.ModelOverview(model, images=image, comparator=comparator)"),
    md(
        "## A real photo, a real ImageNet network\n\n"
        "The same function on EfficientNet-Lite0, trained on the 1000 ImageNet classes and shipped "
        "with its weights (no download). It takes raw 224 x 224 pixels; its scaling is inside the model. "
        "Grad-CAM for its top class on scikit-image's cat, with a colour bar saying what the colours mean. "
        "`10_real_photos.ipynb` continues with layers, occlusion, maximization and a photo the network "
        "has no class for."
    ),
    code(
        "import matplotlib.pyplot as plt\n"
        "\n"
        "net = cw.assets.pretrained('efficientnet_lite0')\n"
        "imagenet = cw.Probe(net, class_names=cw.assets.imagenet_class_names())\n"
        "cat = cw.assets.photo('chelsea', size=224)\n"
        "p = imagenet.predict(cat[None])[0]\n"
        "top = int(p.argmax())\n"
        "print(f'top class: {imagenet.class_names[top]} ({p[top]:.1%})')\n"
        "heat = cw.gradcam(imagenet, cat, classes=top)[0, 0]  # (224, 224) in [0, 1]\n"
        "fig, ax = plt.subplots(figsize=(4.2, 3.4), dpi=100)\n"
        "ax.imshow(cat)\n"
        "shown = ax.imshow(heat, cmap='jet', vmin=0, vmax=1, alpha=0.4)\n"
        "ax.set_title(f'Grad-CAM: {imagenet.class_names[top]}', fontsize=10)\n"
        "ax.axis('off')\n"
        "fig.colorbar(shown, ax=ax, label=\"Grad-CAM (1 = the map's peak)\")\n"
        "plt.show()"
    ),
    md(
        "## Your own model\n\n"
        "Pass any Keras image classifier, with `preprocess=` for its input scaling. "
        "An ImageNet VGG16 lights up below when its weights are already on this machine "
        "(Binder pre-fetches them); nothing is downloaded here."
    ),
    code(
        "from cnnwidgets.assets.imagenet import imagenet_weights_available\n"
        "if imagenet_weights_available('vgg16'):\n"
        "    import keras\n"
        "    vgg = keras.applications.VGG16(weights='imagenet')\n"
        "    cat = cw.assets.photo('chelsea', size=224)\n"
        "    vgg_view = cw.GradCAMComparator(vgg, cat, preprocess=keras.applications.vgg16.preprocess_input)\n"
        "    display(vgg_view)\n"
        "else:\n"
        "    print('ImageNet weights for VGG16 are not available on this machine; this section runs on Binder.')"
    ),
]

nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
add_colab_cell(nb)  # the same first code cell as every notebook
out = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "00_tour.ipynb"
nbf.write(nb, out)
print("wrote", out)
