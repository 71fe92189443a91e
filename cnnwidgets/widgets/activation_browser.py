"""ActivationBrowser: every channel of a layer as one tiled picture.

Pick a layer (any 4-D layer, nested ones included, then the 2-D ones drawn
as bar strips), an image, an order and a colour scale; click a tile (or type
a channel) for an enlarged view of that channel laid over the input, its
statistics and a histogram of the layer's activations. The computations live
in :mod:`cnnwidgets.explain.features`; this module only wires controls.
"""

from __future__ import annotations

import difflib
import html
import threading
from collections.abc import Callable, Sequence
from typing import Any

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import traitlets

from cnnwidgets import render
from cnnwidgets.explain import features
from cnnwidgets.probe import Probe, as_probe, weights_held
from cnnwidgets.widgets.base import ViewWidget, layer_options
from cnnwidgets.widgets.canvas import PictureCanvas

CAPTION_HEIGHT = 16
HIST_BINS = 32
#: The grid's longest side in pixels: it fits a notebook beside the enlarged
#: channel. Bigger maps are averaged down to fit (the selected channel is always
#: drawn at full resolution); VGG16's block1 grid goes from 1799 px (3 MB of PNG
#: per redraw) to 455 px (tiles of 56 px).
GRID_SIDE = 512
#: The most one image's outputs of every layer may take for the browser to ask
#: for them in one pass (VGG16 at 224 px: 60 MB; bigger models go layer by layer).
EVERY_LAYER_BYTES = 256 * 2**20
#: Pixels between the grid and the side panel.
SIDE_GAP = 6


def layer_choices(probe: Probe) -> list[tuple[str, str]]:
    """Dropdown options (label, path): every 4-D layer grouped by nested model
    with its output shape, then the 2-D layers (drawn as bar strips)."""
    options = layer_options(probe, only_4d=True)
    for info in probe.layers:
        if not info.is_model and len(info.output_shape) == 2:
            label = info.name.replace("/", " / ")
            options.append((f"{label}  {tuple(info.output_shape[1:])}  [bars]", info.name))
    return options


class ActivationBrowser(ViewWidget):
    """Browse the activations of every layer of a Keras CNN for some images.

    Args:
        model: a keras.Model (or a :class:`~cnnwidgets.Probe`); never changed.
        images: raw pixels, (H, W, C) or (N, H, W, C).
        layer: the layer shown first (path or short name); default the first
            convolution.
        class_names: names of the classes (for the Grad-CAM sort).
        preprocess: function applied to a float32 copy of the raw pixels
            before the model (pictures are drawn from the raw pixels).
        per_page: tiles per page for wide layers.
        cmap: colour map of the tiles.
        grid_side: the grid's longest side in pixels; maps too big for it
            are averaged over blocks (None: every map at full size).

    Controls (public, drive them as a user would): ``layer`` (Dropdown),
    ``image_index`` (shown for several images), ``sort`` ('index', 'mean',
    'max', 'gradcam'), ``sort_class`` (the class of the Grad-CAM sort),
    ``scale`` ('channel' or 'layer'), ``channel``, ``page``. ``canvas`` (also
    ``figure``) is the :class:`~cnnwidgets.widgets.canvas.PictureCanvas` that
    draws the grid in the page: the layer's maps travel once, and the channel,
    the sort ('index', 'mean', 'max') and the page are drawn there with no
    picture sent (wheel zooms, drag pans, hover reads the value); ``histogram``
    is the bqplot histogram of the layer's activations (grey) and the
    channel's (orange). Changing the layer, image or sort computes in the
    background (call :meth:`wait` before reading ``view`` in a script); the
    rest redraws at once.
    ``selected_layer`` and ``selected_channel`` mirror the layer and channel
    controls as traits, to observe or link.
    """

    selected_layer = traitlets.Unicode(
        help="Path of the layer shown (a short name is accepted); set or link it to change it."
    )
    selected_channel = traitlets.Int(
        0, help="The selected channel: its tile is ringed and it is drawn enlarged beside the grid."
    )

    def __init__(
        self,
        model: Any,
        images: Any,
        layer: Any = None,
        class_names: Sequence[str] | None = None,
        preprocess: Callable | None = None,
        per_page: int = features.DEFAULT_PER_PAGE,
        cmap: str = "viridis",
        grid_side: int | None = GRID_SIDE,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.probe = as_probe(model, class_names=class_names, preprocess=preprocess)
        self.images = self.probe.check_images(images)  # (N, H, W, C) float32 raw pixels
        self.per_page = int(per_page)
        if grid_side is not None and int(grid_side) < 32:
            raise ValueError(f"grid_side must be at least 32 pixels (or None), got {grid_side}")
        self.grid_side = None if grid_side is None else int(grid_side)
        start = self._check_arguments(layer, per_page, cmap)
        self._draw_lock = threading.RLock()
        self._compute_lock = threading.Lock()
        self._data: dict[tuple, dict] = {}  # (layer, image, sort, class) -> computed data
        self._grids: dict[tuple, features.LayerPicture] = {}
        self._layer_maps: dict[tuple, features.LayerMaps] = {}
        self.grid: features.LayerPicture | None = None  # the grid in ``view`` now
        self.grid_origin: tuple[int, int] = (CAPTION_HEIGHT, 0)  # its top-left in ``view``
        self._parts: dict[str, Any] = {}  # what is shown now, for ``view``
        self._shown: dict[str, Any] = {}  # the keys of the parts sent to the front end
        self._build_controls(start)
        self._build_histogram()
        self._set_layer_limits(start)
        self._compute(self._key())  # the first picture is drawn before returning
        self._every_layer = self._every_layer_paths()  # for the next layer change
        self._draw()
        self._wire()
        self._mirror(self.layer, "selected_layer")
        self._mirror(self.channel, "selected_channel")
        self._lay_out()

    @traitlets.validate("selected_layer")
    def _valid_layer(self, proposal) -> str:
        return self._check_layer(proposal["value"])  # the path, or a ValueError naming some

    @traitlets.validate("selected_channel")
    def _valid_channel(self, proposal) -> int:
        channel = int(proposal["value"])
        if not 0 <= channel <= self.channel.max:
            raise ValueError(
                f"channel {channel} is outside {self.layer.value!r}, which has channels "
                f"0..{self.channel.max}"
            )
        return channel

    def _check_arguments(self, layer: Any, per_page: int, cmap: str) -> str:
        """Check per_page, cmap and layer; keep the layer choices; the starting layer path."""
        if self.per_page < 1:
            raise ValueError(f"per_page must be at least 1, got {per_page}")
        render.colormap_lut(cmap)  # unknown names fail here, with the list of good ones
        self.cmap = cmap
        self._options = layer_choices(self.probe)
        if not self._options:
            raise ValueError("the model has no 4-D or 2-D layer to browse")
        return self._check_layer(layer)

    def _build_controls(self, start: str) -> None:
        n = len(self.images)
        top = int(self.probe.predict(self.images[:1]).argmax(axis=1)[0])
        self.layer = widgets.Dropdown(options=self._options, value=start, description="layer")
        self.image_index = widgets.IntSlider(
            value=0,
            min=0,
            max=max(n - 1, 0),
            description="image",
            layout=widgets.Layout(display=None if n > 1 else "none"),
        )
        self.sort = widgets.Dropdown(
            options=list(features.SORTS), value="index", description="sort"
        )
        self.sort_class = widgets.Dropdown(
            options=[(name, i) for i, name in enumerate(self.probe.class_names)],
            value=top,
            description="class",
            layout=widgets.Layout(display="none"),
        )
        self.scale = widgets.ToggleButtons(
            options=list(features.SCALES), value="channel", description="scale"
        )
        self.channel = widgets.BoundedIntText(
            value=0, min=0, max=0, description="channel", layout=widgets.Layout(width="180px")
        )
        self.page = widgets.BoundedIntText(
            value=0, min=0, max=0, description="page", layout=widgets.Layout(width="160px")
        )
        self.stats = widgets.HTML()
        self.status = widgets.HTML()

        # The canvas draws the grid, which sits below the title line in ``view``.
        # A click on a tile selects its channel in the page (click_selects);
        # the kernel hears the click too and agrees (select_at).
        self.canvas = PictureCanvas(cmaps=(self.cmap,), mode="tiles", click_selects=True)
        self.canvas.on_click(lambda y, x: self.select_at(y + CAPTION_HEIGHT, x))
        self.figure = self.canvas
        # Links in the page: a move of these controls redraws the canvas in the
        # next frame, before the kernel hears of it.
        self._page_links = [
            widgets.jslink((self.channel, "value"), (self.canvas, "selected")),
            widgets.jslink((self.sort, "index"), (self.canvas, "sort")),
            widgets.jslink((self.page, "value"), (self.canvas, "page")),
        ]
        self.title_image = widgets.Image(format="png")
        self.side_image = widgets.Image(
            format="png", layout=widgets.Layout(margin=f"0 0 0 {SIDE_GAP}px")
        )

    def _build_histogram(self) -> None:
        # Both ranges are set on every update: a scale left to follow the data
        # stayed at the initial [0, 0] in Lab, so no bar was visible.
        hx, hy = bq.LinearScale(min=0.0, max=1.0), bq.LinearScale(min=0.0, max=1.0)
        self._hist_scales = (hx, hy)
        self._hist = bq.Bars(
            x=[0.0],
            y=[[0.0], [0.0]],
            scales={"x": hx, "y": hy},
            type="grouped",
            colors=["#9e9e9e", "#ff7f0e"],
            labels=["layer", "channel"],
            display_legend=True,
        )
        self.histogram = bq.Figure(
            marks=[self._hist],
            axes=[
                bq.Axis(scale=hx, label="activation", tick_format=".3g"),
                bq.Axis(scale=hy, orientation="vertical", label="fraction", tick_format=".2f"),
            ],
            title="activations",
            legend_location="top-right",
            layout=widgets.Layout(width="420px", height="260px"),
        )

    def _wire(self) -> None:
        self.layer.observe(self._on_data_change, "value")
        self.image_index.observe(self._on_data_change, "value")
        self.sort.observe(self._on_sort, "value")
        self.sort_class.observe(self._on_data_change, "value")
        self.scale.observe(self._on_redraw, "value")
        self.page.observe(self._on_redraw, "value")
        self.channel.observe(self._on_channel, "value")

    def _lay_out(self) -> None:
        self.children = [
            widgets.HBox([self.layer, self.image_index]),
            widgets.HBox([self.sort, self.sort_class, self.scale]),
            widgets.HBox([self.channel, self.page, self.stats]),
            self.status,
            widgets.VBox(
                [
                    self.title_image,
                    widgets.HBox(
                        [self.figure, self.side_image],
                        layout=widgets.Layout(align_items="flex-start"),
                    ),
                ],
                layout=widgets.Layout(grid_gap="0px"),
            ),
            self.histogram,
        ]

    # ------------------------------------------------------------ controls

    def _check_layer(self, layer: Any) -> str:
        paths = [p for _, p in self._options]
        if layer is None:
            convs = [i.name for i in self.probe.layers if i.kind.startswith("Conv") and i.is_4d]
            return convs[0] if convs else paths[0]
        path = self.probe.resolve(layer)  # unknown names: ValueError with the closest ones
        if path not in paths:
            close = difflib.get_close_matches(path, paths, n=3, cutoff=0.0)
            raise ValueError(
                f"layer {path!r} has output shape {self.probe.layer_info(path).output_shape}; "
                f"the browser shows 4-D and 2-D layers, e.g. {close}"
            )
        return path

    def _key(self) -> tuple:
        sort = self.sort.value
        cls = self.sort_class.value if sort == "gradcam" else None
        # The weights version: after training, the next interaction recomputes.
        return (self.layer.value, self.image_index.value, sort, cls, self.probe.weights_version())

    def _set_layer_limits(self, layer: str) -> None:
        c = int(self.probe.layer_info(layer).output_shape[-1])
        pages = features.num_pages(c, self.per_page)
        with self.hold_trait_notifications():
            self.channel.max = c - 1
            self.page.max = pages - 1
        self.page.layout.display = None if pages > 1 else "none"

    def _on_sort(self, change) -> None:
        self.sort_class.layout.display = None if change["new"] == "gradcam" else "none"
        self._on_data_change(change)

    def _on_data_change(self, change) -> None:
        if change["owner"] is self.layer:
            with self._draw_lock:
                self._set_layer_limits(self.layer.value)
        if not self._ensure_data():
            self._draw()

    def _ensure_data(self) -> bool:
        """Start computing the current controls' data unless it is there;
        True when a job was started (it draws when done)."""
        key = self._key()
        if key in self._data:
            return False
        self.status.value = "<i>computing...</i>"

        def work(progress):
            with self._compute_lock:
                progress(0, 1)  # a newer change cancelled this job: stop before computing
                self._compute(key)
            return key

        self._start_job(work, lambda _key: self._draw())
        return True

    def _on_redraw(self, change) -> None:
        self._draw()

    def _on_channel(self, change) -> None:
        with weights_held():
            self._select_channel()

    def _select_channel(self) -> None:
        key = self._key()
        data = self._data.get(key)
        if data is not None:
            pos = int(np.flatnonzero(data["order"] == self.channel.value)[0])
            page = features.page_of(pos, self.per_page)
            if page != self.page.value and page <= self.page.max:
                self.page.value = page  # draws
                return
        self._draw(key)

    def select_at(self, y: float, x: float) -> int:
        """Select the channel whose tile is under pixel (y, x) of ``view``.

        Returns the channel, or -1 (and changes nothing) outside the grid."""
        if self.grid is None:
            return -1
        oy, ox = self.grid_origin
        channel = self.grid.index_at(y - oy, x - ox)
        if channel >= 0:
            self.channel.value = channel
        return channel

    # ------------------------------------------------------------ compute

    def _every_layer_paths(self) -> tuple[str, ...]:
        """Every browsable layer, when one image's outputs of all of them fit
        in :data:`EVERY_LAYER_BYTES`; else () (one layer per pass)."""
        paths = tuple(p for _, p in self._options)
        sizes = [np.prod(self.probe.layer_info(p).output_shape[1:]) for p in paths]
        return paths if 4 * float(np.sum(sizes)) <= EVERY_LAYER_BYTES else ()

    def _layer_activations(self, layer: str, index: int) -> np.ndarray:
        """One image's outputs of ``layer``, float32 (h, w, C) or (C,).

        Tracing a submodel for a layer costs more than running it (MobileNetV2:
        about a second per layer), so after the first picture a layer the
        browser has not shown brings every layer's outputs for the image in
        one pass, kept in the results cache: later layer changes only draw."""
        paths = self._every_layer if layer in getattr(self, "_every_layer", ()) else (layer,)
        image = self.images[index : index + 1]
        return self.probe.activations(image, paths)[layer][0]

    def _compute(self, key: tuple) -> None:
        """Activations (and Grad-CAM channel weights) for one (layer, image, sort, class)."""
        if key in self._data:
            return
        layer, index, sort, cls, _ = key
        acts = self._layer_activations(layer, index)  # (h, w, C) or (C,)
        note = ""
        weights = None
        if sort == "gradcam":
            if acts.ndim == 3:
                from cnnwidgets.explain.cam import channel_weights

                w = channel_weights(
                    self.probe, self.images[index : index + 1], [cls], layer, method="gradcam"
                )
                weights = w[0, 0]
            else:
                note = "Grad-CAM weights need a 4-D layer; shown in index order"
        order = features.channel_order(
            acts, "index" if weights is None and sort == "gradcam" else sort, weights
        )
        data = {
            "acts": acts,
            "order": order,
            "stats": features.channel_stats(acts),
            "weights": weights,
            "note": note,
            "histogram": np.histogram(acts, bins=HIST_BINS),  # the layer's, drawn on every move
        }
        if len(self._data) > 32:
            self._data.pop(next(iter(self._data)))
            self._grids.clear()
        self._data[key] = data

    # ------------------------------------------------------------ drawing

    def _draw(self, key: tuple | None = None) -> None:
        """Draw the current controls' state, if its data is ready (else a job will).

        The picture goes out in three parts, each sent only when it changed:
        the title line, the grid (the canvas: the layer's maps once, then only
        the channel, sort and page, drawn in the page with the selection ring)
        and the side (colour bar and the enlarged channel). ``view`` is the
        three put together, composed when read."""
        with self._draw_lock:
            key = key or self._key()
            data = self._data.get(key)
        if data is None:  # new weights, or not computed yet: a job draws when done
            self._ensure_data()
            return
        with self._draw_lock:
            acts = data["acts"]
            c = acts.shape[-1]
            channel = int(np.clip(self.channel.value, 0, c - 1))
            page = int(np.clip(self.page.value, 0, features.num_pages(c, self.per_page) - 1))
            gkey = key + (self.scale.value, page)
            if gkey not in self._grids:
                self._grids[gkey] = self._grid_picture(data, page)
            grid = self._grids[gkey]
            self._send_grid(key, data, grid, page, channel)
            label = "per tile" if grid.scale == "channel" else "shared"
            side_key = gkey + (channel,)
            if self._shown.get("side") != side_key:
                side = render.hstack(
                    [
                        render.labelled_colorbar(grid.vmin, grid.vmax, self.cmap, label),
                        self._channel_panel(data, grid, channel),
                    ],
                    pad=SIDE_GAP,
                )
                self._parts["side"] = side
                self.side_image.value = render.to_png(side)
            title = self._title(grid, page)
            width = grid.picture.shape[1] + SIDE_GAP + self._parts["side"].shape[1]
            if self._shown.get("title") != (title, width):
                band = render.caption(np.zeros((0, width, 3), np.uint8), title, CAPTION_HEIGHT)
                self.title_image.value = render.to_png(band)
            self._shown.update(side=side_key, title=(title, width), grid=gkey)
            self._parts.update(title=title, grid=grid, channel=channel)
            self.grid = grid
            self.grid_origin = (CAPTION_HEIGHT, 0)
            self._view = None  # composed when read
            self._update_side(data, channel)
            self.status.value = html.escape(data["note"])
            self._drawn()

    def _maps_of(self, key: tuple, data: dict) -> features.LayerMaps:
        """The layer's maps as colour indices (every channel, all pages), cached."""
        mkey = (key[0], key[1], key[4], self.scale.value)
        if mkey not in self._layer_maps:
            if len(self._layer_maps) > 8:
                self._layer_maps.pop(next(iter(self._layer_maps)))
            self._layer_maps[mkey] = features.layer_maps(
                data["acts"], self.scale.value, self.per_page, max_side=self.grid_side
            )
        return self._layer_maps[mkey]

    def _grid_picture(self, data: dict, page: int) -> features.LayerPicture:
        """The page's grid as the canvas draws it (the bar strip of a 2-D layer)."""
        acts = data["acts"]
        if acts.ndim == 1:
            return features.layer_picture(
                acts, data["order"], scale=self.scale.value, page=page,
                per_page=self.per_page, cmap=self.cmap, max_side=self.grid_side,
            )  # fmt: skip
        maps = self._maps_of(self._key(), data)
        order = data["order"]
        return maps.picture(order[page * self.per_page : (page + 1) * self.per_page], self.cmap)

    def _orders(self, data: dict) -> list[list[int]]:
        """One order per sort option (as ``sort.index`` counts them): every one
        the page can lay out with no model pass, and this sort's; [] for a sort
        not computed (the page then keeps its picture until the kernel sends it)."""
        acts = data["acts"]
        orders = []
        for name in self.sort.options:
            if name == self.sort.value:
                orders.append([int(c) for c in data["order"]])
            elif name in ("index", "mean", "max"):
                orders.append(features.channel_order(acts, name).tolist())
            else:
                orders.append([])
        return orders

    def _send_grid(
        self, key: tuple, data: dict, grid: features.LayerPicture, page: int, channel: int
    ) -> None:
        """Bring the canvas to this state; sends the maps only when the layer,
        image or scale changed, and a trait only when its value changed."""
        canvas = self.canvas
        with canvas.hold_sync():
            if data["acts"].ndim == 1:  # a bar strip: the kernel's picture, rings drawn in page
                bars_key = ("bars",) + key + (self.scale.value, page)
                if self._shown.get("maps") != bars_key:
                    canvas.mode = "image"
                    canvas.set_image(grid.picture, png=True)
                    canvas.set_maps(np.zeros((0, 0, 0), np.uint8), [], [])
                    self._shown["maps"] = bars_key
                canvas.tile_hw, canvas.tile_origin = list(grid.tile_hw), [0, 0]
                canvas.cols = grid.cols
            else:
                maps = self._maps_of(key, data)
                maps_key = (key[0], key[1], key[4], self.scale.value)
                if self._shown.get("maps") != maps_key:
                    canvas.mode = "tiles"
                    canvas.set_maps(
                        maps.index, maps.ranges, [f"channel {k}" for k in range(len(maps.index))]
                    )
                    canvas.upscale, canvas.cols = maps.upscale, 0
                    self._shown["maps"] = maps_key
            orders = self._orders(data)
            if canvas.orders != orders:
                canvas.orders = orders
            canvas.pad = canvas.ring = grid.pad
            canvas.per_page = self.per_page
            canvas.sort, canvas.page, canvas.selected = self.sort.index, page, channel

    def _compose_view(self) -> np.ndarray | None:
        parts = self._parts
        if "grid" not in parts:
            return None
        picture = self.canvas.compose()  # the grid as the page draws it, ring included
        if picture is None:
            return None
        body = render.hstack([picture, parts["side"]], pad=SIDE_GAP)
        return render.caption(body, parts["title"], height=CAPTION_HEIGHT)

    def _title(self, grid: features.LayerPicture, page: int) -> str:
        info = self.probe.layer_info(self.layer.value)
        pages = features.num_pages(int(info.output_shape[-1]), self.per_page)
        sort = self.sort.value
        if sort == "gradcam":
            sort += f" ({self.probe.class_names[self.sort_class.value]})"
        return (
            f"{info.name} {tuple(info.output_shape[1:])}  image {self.image_index.value}  "
            f"sort {sort}  scale {grid.scale}" + (f"  page {page + 1}/{pages}" if pages > 1 else "")
        )

    def _channel_panel(self, data: dict, grid: features.LayerPicture, channel: int) -> np.ndarray:
        """The chosen channel enlarged to input resolution, alone and over the image."""
        acts, stats = data["acts"], data["stats"]
        text = (
            f"ch {channel}: mean {stats['mean'][channel]:.3g} max {stats['max'][channel]:.3g}"
            f" zeros {100 * stats['zero_fraction'][channel]:.0f}%"
        )
        if acts.ndim == 1:  # a dense unit has one value: say it
            return render.caption(
                np.full((4, 160, 3), 255, np.uint8), f"unit {channel}: {acts[channel]:.4g}"
            )
        fmap = acts[..., channel]
        if grid.scale == "layer":
            lo, hi = grid.vmin, grid.vmax
        else:
            lo, hi = float(fmap.min()), float(fmap.max())
        unit = render.min_max_scale(fmap, lo=lo, hi=hi)
        raw = render.to_rgb_uint8(self.images[self.image_index.value])
        h, w = raw.shape[:2]
        alone = render.apply_colormap(render.resize_map(unit, (h, w), smooth=False), self.cmap)
        over = render.overlay(raw, unit, alpha=0.6, cmap=self.cmap)
        factor = render.enlarge_factor((h, w), 128)
        pair = render.enlarge(render.hstack([alone, over], pad=4), factor)
        side = render.colorbar(lo, hi, self.cmap, height=max(64, min(pair.shape[0] - 12, 256)))
        return render.caption(render.hstack([pair, side], pad=4), text)

    def _update_side(self, data: dict, channel: int) -> None:
        acts, stats = data["acts"], data["stats"]
        self.stats.value = (
            f"<b>channel {channel}</b>: mean {stats['mean'][channel]:.4g}, "
            f"max {stats['max'][channel]:.4g}, zeros {100 * stats['zero_fraction'][channel]:.1f} %"
        )
        layer_counts, edges = data["histogram"]
        chan_counts, _ = np.histogram(acts[..., channel], bins=edges)
        centers = (edges[:-1] + edges[1:]) / 2
        fractions = np.stack(
            [layer_counts / max(layer_counts.sum(), 1), chan_counts / max(chan_counts.sum(), 1)]
        ).astype(np.float64)
        hx, hy = self._hist_scales
        with self._hist.hold_sync(), hx.hold_sync(), hy.hold_sync():
            hx.min, hx.max = float(edges[0]), float(max(edges[-1], edges[0] + 1e-6))
            hy.max = float(max(fractions.max(), 1e-6)) * 1.05
            self._hist.x = centers.astype(np.float64)
            self._hist.y = fractions
        self.histogram.title = f"{self.layer.value}: activations (channel {channel} in orange)"
