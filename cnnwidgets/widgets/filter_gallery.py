"""FilterGallery: a convolution layer's filters as kernels, as the images that
excite them most (activation maximization), or the images of the output
classes; one filter enlarged with its activation and, given images, the input
patches that excite it most.

The pages are composed in the browser (:class:`~cnnwidgets.widgets.canvas.PictureCanvas`):
every tile of the layer (kernels, dataset patches, the maximization images
computed so far, grey where one is still computing) travels once as the PNG
of a tile atlas, with one caption strip per page; the page control and the
selection ring are jslinked to the canvas, so paging through what is computed
needs no kernel round trip and sends no picture. The kernel still hears the
page: in 'maximize' and 'classes' it starts computing the page's missing
images (with progress) and sends the atlas again as they arrive. The selected
filter's detail (enlarged, its value, its top patches) is drawn by the kernel
below the grid and sent when the selection changes.

    gallery = cw.FilterGallery(model, images=images)
    gallery.mode.value = "maximize"; gallery.wait()
    gallery.click(10, 10)          # the tile under view pixel (y, x) becomes the selection

    top = cw.top_activations(model, images, "block2_conv1")     # a whole dataset, streamed
    gallery = cw.FilterGallery(model, mode="dataset", dataset_examples=top)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import traitlets

from cnnwidgets import render
from cnnwidgets.explain import features
from cnnwidgets.explain.filters import (
    filter_weights,
    kernel_layers,
    kernel_pictures,
    top_patches,
)
from cnnwidgets.explain.maximize import filter_activations, maximize
from cnnwidgets.probe import as_probe, weights_held
from cnnwidgets.widgets.base import BLANK_PNG, ViewWidget, layer_options
from cnnwidgets.widgets.canvas import PictureCanvas

MODES = ("weights", "maximize", "classes")
#: The mode that shows ``dataset_examples`` (offered when they are given).
DATASET_MODE = "dataset"
#: Height of the caption line above the grid (render.caption's default).
CAPTION_HEIGHT = 16
#: Pixels between the grid and the selected filter's detail below it.
DETAIL_GAP = 6
#: Grey of a tile whose maximization image is still computing.
PENDING = 200
_PAD = 1


class FilterGallery(ViewWidget):
    """Browse a conv layer's filters: kernels, maximization images, class images.

    Args:
        model: a keras.Model or a :class:`cnnwidgets.Probe`.
        layer: the first layer shown (name or path); default the first conv layer.
        mode: 'weights' (kernels: colour patches for the first layer of an RGB
            model, grey tiles per input channel deeper), 'maximize' (images
            maximizing each filter's mean activation, computed in the
            background a chunk at a time), 'classes' (images maximizing each
            output class logit) or 'dataset' (each filter's top patches
            from ``dataset_examples``).
        images: optional raw images (N, H, W, C); the selected filter then
            shows the receptive-field crops that excite it most.
        class_names: as for :class:`cnnwidgets.Probe`.
        preprocess: as for :class:`cnnwidgets.Probe`.
        per_page: tiles per page.
        tile: tile side in pixels.
        steps: passed to :func:`cnnwidgets.maximize`.
        size: passed to :func:`cnnwidgets.maximize`.
        param: passed to :func:`cnnwidgets.maximize`.
        lr: passed to :func:`cnnwidgets.maximize`.
        seed: passed to :func:`cnnwidgets.maximize`.
        chunk: filters optimized per background step (shown as they finish).
        dataset_examples: a :class:`~cnnwidgets.dataset.topk.TopActivations`
            (from :func:`cnnwidgets.top_activations`): adds the 'dataset'
            mode, whose tiles are each filter's top-k receptive-field patches.

    Public controls: ``layer`` (Dropdown of conv layers), ``mode``
    (ToggleButtons), ``page`` (IntSlider), ``filter`` (BoundedIntText, the
    selected filter / class); clicking a tile selects it, as ``click(y, x)``
    does for a view pixel. ``selected_layer`` and ``selected_filter`` mirror
    the layer and filter controls as traits, to observe or link.

    ``canvas`` (a :class:`~cnnwidgets.widgets.canvas.PictureCanvas`) draws the
    page's caption line and tiles in the browser, the selected filter ringed;
    ``detail`` (an Image) shows the selected filter below it. Moving the page
    keeps the selection (its detail stays; the ring shows when its tile is on
    the page); choosing a filter on another page moves the page there.
    ``view`` is the grid as the canvas composes it over the detail.
    """

    selected_layer = traitlets.Unicode(
        help="Path of the conv layer shown (a short name is accepted); set or link it."
    )
    selected_filter = traitlets.Int(
        0, help="The selected filter (or class in 'classes' mode), drawn enlarged."
    )

    def __init__(
        self,
        model: Any,
        layer: Any = None,
        mode: str = "weights",
        images: Any = None,
        class_names: Sequence[str] | None = None,
        preprocess: Callable | None = None,
        per_page: int = 16,
        tile: int = 48,
        steps: int = 64,
        size: int = 64,
        param: str = "fourier",
        lr: float | None = None,
        seed: int = 0,
        chunk: int = 8,
        dataset_examples: Any = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.probe = as_probe(model, class_names=class_names, preprocess=preprocess)
        self.dataset_examples = dataset_examples
        modes, convs, path = self._check_source(mode, layer, dataset_examples)
        self.images = None if images is None else self.probe.check_images(images)
        self._check_sizes(per_page=per_page, tile=tile, chunk=chunk)
        self.per_page, self.tile_px, self.chunk = int(per_page), int(tile), int(chunk)
        self._params = dict(size=int(size), steps=int(steps), param=param, lr=lr, seed=int(seed))
        self._results: dict[tuple, np.ndarray] = {}
        self._values: dict[tuple, float] = {}
        self._kernels: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._generation = 0
        self._grid_cols = 1
        self._draw_lock = threading.RLock()
        self._sent: dict[str, Any] = {}  # the key of each part sent to the page
        self._detail: np.ndarray | None = None  # the detail picture shown now
        self._build_controls(convs, path, mode, modes)
        self._lay_out()
        self._wire()
        self._on_source()
        self._mirror(self.layer, "selected_layer")
        self._mirror(self.filter, "selected_filter")

    @traitlets.validate("selected_layer")
    def _valid_layer(self, proposal) -> str:
        path = self.probe.resolve(proposal["value"])
        if path not in [p for _, p in self.layer.options]:
            filter_weights(self.probe, path)  # a ValueError listing the conv layers
        return path

    @traitlets.validate("selected_filter")
    def _valid_filter(self, proposal) -> int:
        f = int(proposal["value"])
        if not 0 <= f < self.count:
            what = "classes" if self.mode.value == "classes" else f"filters of {self.layer.value!r}"
            raise ValueError(f"filter {f} is out of range: the {what} are 0..{self.count - 1}")
        return f

    def _check_source(
        self, mode: str, layer: Any, dataset_examples: Any
    ) -> tuple[tuple[str, ...], list[str], str]:
        """(modes offered, conv layer paths, starting layer path); raises on bad arguments."""
        modes = MODES + ((DATASET_MODE,) if dataset_examples is not None else ())
        if mode not in modes:
            hint = " (the 'dataset' mode needs dataset_examples=)" if mode == DATASET_MODE else ""
            raise ValueError(f"mode must be one of {modes}, got {mode!r}{hint}")
        if dataset_examples is not None:
            if not hasattr(dataset_examples, "patches"):
                raise TypeError("dataset_examples must come from cnnwidgets.top_activations(...)")
            layer = dataset_examples.layer if mode == DATASET_MODE else layer
        convs = kernel_layers(self.probe)
        if not convs:
            raise ValueError("the model has no 2-D convolution layer to show")
        path = convs[0] if layer is None else self.probe.resolve(layer)
        if path not in convs:
            filter_weights(self.probe, path)  # raises with the list of conv layers
        return modes, convs, path

    @staticmethod
    def _check_sizes(**sizes: Any) -> None:
        lows = {"per_page": 1, "tile": 8, "chunk": 1}
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if value < lows[name]:
                raise ValueError(f"{name} must be >= {lows[name]}, got {value}")

    def _build_controls(
        self, convs: list[str], path: str, mode: str, modes: tuple[str, ...]
    ) -> None:
        options = [o for o in layer_options(self.probe) if o[1] in convs]
        self.layer = widgets.Dropdown(options=options, value=path, description="layer")
        self.mode = widgets.ToggleButtons(options=list(modes), value=mode, description="show")
        self.page = widgets.IntSlider(value=0, min=0, max=0, description="page")
        self.filter = widgets.BoundedIntText(value=0, min=0, max=0, description="filter")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="")
        self.status = widgets.Label(value="")
        # The grid, drawn in the page; a click on a tile selects it there (and
        # the filter box follows through the link); the kernel hears it too.
        self.canvas = PictureCanvas(mode="tiles", click_selects=True, pad=_PAD, ring=_PAD)
        self.canvas.on_click(self.click)
        self._page_links = [
            widgets.jslink((self.page, "value"), (self.canvas, "page")),
            widgets.jslink((self.filter, "value"), (self.canvas, "selected")),
        ]
        # What the page shows changed (maybe by the page itself): compose view anew.
        self.canvas.observe(self._forget_view, names=["page", "selected"])
        self.detail = widgets.Image(
            value=BLANK_PNG, format="png", layout=widgets.Layout(margin=f"{DETAIL_GAP}px 0 0 0")
        )

    def _lay_out(self) -> None:
        self.children = [
            widgets.HBox([self.layer, self.mode]),
            widgets.HBox([self.page, self.filter, self.progress, self.status]),
            widgets.VBox([self.canvas, self.detail], layout=widgets.Layout(grid_gap="0px")),
        ]

    def _wire(self) -> None:
        self.layer.observe(self._on_source, "value")
        self.mode.observe(self._on_source, "value")
        self.page.observe(self._on_page, "value")
        self.filter.observe(self._on_filter, "value")

    def _forget_view(self, change=None) -> None:
        self._view = None

    # ------------------------------------------------------------ state

    @property
    def count(self) -> int:
        """Number of filters (or classes) in the current mode."""
        if self.mode.value == "classes":
            return self.probe.num_classes
        return int(self.probe.layer_info(self.layer.value).output_shape[-1])

    @property
    def page_filters(self) -> list[int]:
        """Filter (or class) indices shown on the current page."""
        start = self.page.value * self.per_page
        return list(range(start, min(start + self.per_page, self.count)))

    def _target_layer(self) -> str:
        if self.mode.value == "classes":
            return self.probe.head.logits_from
        return self.layer.value

    def _key(self, f: int) -> tuple:
        # The weights version: after training, the next interaction recomputes.
        params = tuple(sorted(self._params.items(), key=str))
        return (self._target_layer(), f, params, self.probe.weights_version())

    def _on_source(self, change=None) -> None:
        """Layer or mode changed: new page range, cancel the old job, start anew."""
        self._generation += 1
        with self._setting_controls():
            if self.mode.value == DATASET_MODE:
                self.layer.value = self.dataset_examples.layer  # the examples' layer only
            self.layer.disabled = self.mode.value in ("classes", DATASET_MODE)
            self.page.max = features.num_pages(self.count, self.per_page) - 1
            self.page.value = 0
            self.filter.max = self.count - 1
            self.filter.value = 0
        self._refresh()

    def _on_page(self, change=None) -> None:
        """The page moved: the canvas has drawn it already (jslinked; from code,
        set here). Nothing is sent unless the weights changed; the page's
        missing maximization images start computing."""
        if self._controls_being_set:
            return
        self.canvas.page = self.page.value
        self._forget_view()
        self._refresh()

    def _on_filter(self, change=None) -> None:
        if self._controls_being_set:
            return
        self.canvas.selected = self.filter.value
        page = features.page_of(self.filter.value, self.per_page)
        if page != self.page.value:
            self.page.value = page  # _on_page moves the canvas and redraws
        self._redraw()

    def _refresh(self) -> None:
        if self.mode.value in ("weights", DATASET_MODE):
            if self._job is not None:
                self._job.cancel()
            self.progress.value = 0
            self._redraw()
            return
        self._redraw()
        self._start_maximize()

    def click(self, y: float, x: float) -> int:
        """Select the tile under pixel (y, x) of ``view``; returns the filter or -1."""
        f = self.canvas.item_at(y, x)
        if f < 0:
            return -1
        self.filter.value = f
        return f

    # ------------------------------------------------------- maximization

    def _start_maximize(self) -> None:
        generation = self._generation
        layer = self._target_layer()
        todo = [f for f in self.page_filters if self._key(f) not in self._results]
        if not todo:
            if self._job is not None:
                self._job.cancel()
            return
        chunks = [todo[i : i + self.chunk] for i in range(0, len(todo), self.chunk)]
        steps = self._params["steps"]
        keys = {f: self._key(f) for f in todo}
        self.status.value = f"optimizing {len(todo)} images..."

        def work(progress):
            total = steps * len(chunks)
            progress(0, total)
            for c, chunk in enumerate(chunks):
                images = maximize(
                    self.probe,
                    layer,
                    chunk,
                    progress=lambda d, t, c=c: progress(c * steps + d, total),
                    **self._params,
                )
                progress((c + 1) * steps, total)
                for f, img in zip(chunk, images):
                    self._results[keys[f]] = img
                if generation == self._generation:
                    self._redraw()  # show filters as they finish
            return generation

        def done(gen):
            if gen == self._generation:
                self.status.value = ""
                self._redraw()

        self._start_job(work, done, self.progress)

    # ------------------------------------------------------------ drawing

    def _tile(self, f: int) -> np.ndarray:
        """(tile, tile, 3) uint8: filter (or class) f's tile in the current mode."""
        t = self.tile_px
        mode = self.mode.value
        if mode == "weights":
            return render.resize_image(self._kernel_picture(f), (t, t), smooth=False)
        if mode == DATASET_MODE:
            return self._examples_picture(f, t)
        img = self._results.get(self._key(f))
        if img is None:
            return np.full((t, t, 3), PENDING, np.uint8)
        return render.resize_image(img, (t, t))

    def _tiles(self) -> tuple[np.ndarray, list[str]]:
        """(count, tile, tile, 3) uint8 tiles of every filter (or class) of the
        source, pending ones grey, and their labels."""
        filters = range(self.count)
        if self.mode.value == "classes":
            labels = [self.probe.class_names[f] for f in filters]
        else:
            labels = [f"filter {f}" for f in filters]
        return np.stack([self._tile(f) for f in filters]), labels

    def _page_captions(self, width: int) -> np.ndarray:
        """(pages, CAPTION_HEIGHT, width, 3) uint8: each page's caption line."""
        layer = "output classes" if self.mode.value == "classes" else self.layer.value
        pages = features.num_pages(self.count, self.per_page)
        blank = np.zeros((0, width, 3), np.uint8)
        return np.stack(
            [
                render.caption(blank, f"{layer}: {self.mode.value}, page {p + 1}/{pages}")
                for p in range(pages)
            ]
        )

    def _value(self, f: int) -> str:
        """A line about filter f: its activation on its own picture or on the images."""
        mode = self.mode.value
        if mode == DATASET_MODE:
            top = self.dataset_examples
            if f not in top.channels:
                return f"filter {f}: not collected"
            r = top.row(f)
            return f"filter {f}: top {top.values[r, 0]:.3g} (image {top.indices[r, 0]})"
        if mode == "weights":
            if self.images is None:
                k = filter_weights(self.probe, self.layer.value)[..., f]
                return f"filter {f}: |w| = {np.linalg.norm(k):.3g}"
            key = ("images", self.layer.value, f, self.probe.weights_version())
            if key not in self._values:
                act = self.probe.activations(self.images, self.layer.value)[self.layer.value]
                self._values[key] = float(act[..., f].max())
            return f"filter {f}: max activation on images {self._values[key]:.3g}"
        img = self._results.get(self._key(f))
        if img is None:
            return f"{self._name(f)}: optimizing..."
        key = ("max",) + self._key(f)
        if key not in self._values:
            layer = self._target_layer()
            self._values[key] = float(filter_activations(self.probe, layer, img[None], [f])[0])
        what = "probability" if mode == "classes" else "mean activation"
        return f"{self._name(f)}: {what} {self._values[key]:.3g}"

    def _name(self, f: int) -> str:
        return self.probe.class_names[f] if self.mode.value == "classes" else f"filter {f}"

    def _kernel_picture(self, f: int) -> np.ndarray:
        """Filter f's kernel as a picture: a colour patch (first layer of an RGB
        model) or a grid of grey tiles, one per input channel."""
        layer = self.layer.value
        key = (layer, self.probe.weights_version())
        if key not in self._kernels:
            kernel = filter_weights(self.probe, layer)
            self._kernels[key] = (kernel, kernel_pictures(kernel, rgb=kernel.shape[2] == 3))
        kernel, pics = self._kernels[key]
        rgb = kernel.shape[2] == 3
        pic = pics[f]
        if rgb:
            return pic
        return render.tile(pic.astype(np.float32) / 255.0, scale=None, cmap="gray", pad=_PAD)

    def _examples_picture(self, f: int, side: int) -> np.ndarray:
        """Filter f's top-k dataset patches as one square mosaic (grey if not collected)."""
        top = self.dataset_examples
        if f not in top.channels:
            return np.full((side, side, 3), PENDING, np.uint8)
        patches = top.patches[top.row(f)][top.indices[top.row(f)] >= 0]
        mosaic = render.tile(patches, pad=_PAD) if len(patches) else patches
        return render.resize_image(mosaic, (side, side), smooth=False)

    def _large(self, f: int) -> np.ndarray:
        side = 2 * self.tile_px + 32
        if self.mode.value == DATASET_MODE:
            return self._examples_picture(f, side)
        if self.mode.value == "weights":
            return render.resize_image(self._kernel_picture(f), (side, side), smooth=False)
        img = self._results.get(self._key(f))
        if img is None:
            return np.full((side, side, 3), PENDING, np.uint8)
        return render.resize_image(img, (side, side))

    def _source_key(self) -> tuple:
        """What the tiles depend on: mode, layer, weights, maximize parameters,
        and which maximization images are computed."""
        mode = self.mode.value
        done: tuple = ()
        if mode in ("maximize", "classes"):
            done = tuple(f for f in range(self.count) if self._key(f) in self._results)
        layer = self._target_layer()
        return (mode, layer, self.tile_px, self.probe.weights_version(), self._key(0)[2], done)

    def _redraw(self) -> None:
        """Bring the canvas and the detail to the controls' state; each part is
        sent only when it changed."""
        with self._draw_lock, weights_held():  # one version read for the whole page
            self._send_grid()
            self._send_detail()
            self._forget_view()
            self._drawn()

    def _send_grid(self) -> None:
        """Every tile of the source as one PNG atlas and each page's caption
        line: sent when the source (or a maximization image) changed."""
        canvas = self.canvas
        key = self._source_key() + (self.per_page,)
        cols = min(self.count, int(np.ceil(np.sqrt(self.per_page))))
        self._grid_cols = cols
        with canvas.hold_sync():
            if self._sent.get("grid") != key:
                tiles, labels = self._tiles()
                width = cols * (self.tile_px + _PAD) - _PAD
                canvas.set_maps(tiles, None, labels, png=True)
                canvas.set_captions(self._page_captions(width))
                canvas.orders = [list(range(self.count))]
                canvas.per_page, canvas.cols = self.per_page, cols
                self._sent["grid"] = key
            canvas.page, canvas.selected = self.page.value, self.filter.value

    def _send_detail(self) -> None:
        """The selected filter enlarged with its value line and, given images,
        its top patches: drawn here, sent when the filter or its picture changed."""
        f = min(self.filter.value, self.count - 1)
        source = self._source_key()
        computed = self._key(f) in self._results
        key = source[:5] + (f, computed, self.images is not None)
        if self._sent.get("detail") == key:
            return
        parts = [render.caption(self._large(f), self._value(f)[:40])]
        if self.images is not None and self.mode.value not in ("classes", DATASET_MODE):
            crops, values, _ = top_patches(self.probe, self.layer.value, self.images, f, k=6)
            row = render.tile(
                np.stack([render.resize_image(c, (self.tile_px, self.tile_px)) for c in crops]),
                cols=3,
                pad=2,
            )
            parts.append(render.caption(row, f"top patches (max {values[0]:.3g})"))
        detail = render.hstack(parts, pad=8)
        self._detail = detail
        self.detail.value = render.to_png(detail)
        self._sent["detail"] = key

    def _compose_view(self) -> np.ndarray | None:
        """The grid as the page composes it (caption line, tiles, ring), the
        detail below."""
        grid = self.canvas.compose()
        if grid is None or self._detail is None:
            return None
        return render.vstack([grid, self._detail], pad=DETAIL_GAP)
