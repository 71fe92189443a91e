"""PictureCanvas: a picture composed in the browser from binary buffers.

An anywidget (one ES module, ``canvas.js``, shipped in the package; no build
step). The kernel sends the image and the maps once; every trait below the
line "drawn in the browser" only changes what the page draws, in the next
animation frame, with no picture sent. ``compose()`` draws the same picture in
the kernel with :mod:`cnnwidgets.render` (the one place pictures are drawn in
Python), so a widget's ``view`` is what the page shows.

Three modes:

- ``'tiles'``: (K, h, w) uint8 colour-index maps tiled as
  :func:`cnnwidgets.render.index_tiles` lays them out; tile k of the page
  shows map ``orders[sort][page * per_page + k]``.
- ``'overlay'``: map ``shown`` over the image, bilinear to the image's size,
  with ``opacity`` and ``threshold`` (:func:`cnnwidgets.render.overlay_index`).
- ``'image'``: the image as it is (a picture drawn by the kernel); ``tile_hw``,
  ``tile_origin`` and the order then only place the selection ring and say
  which item a click hits.

Bytes: the image (H * W * 3, or its PNG), the maps (K * h * w), 768 per colour
table offered, and the ES module (about 16 kB) once per widget.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import anywidget
import numpy as np
import traitlets

from cnnwidgets import render

MODES = ("image", "tiles", "overlay")


class PictureCanvas(anywidget.AnyWidget):
    """A canvas in the page that composes its picture from buffers sent once.

    Clicks call the callbacks given to :meth:`on_click` with (y, x) in picture
    pixels (y down, as in the (H, W, 3) array); with ``click_selects`` a click
    on a tile also sets ``selected`` to its item, in the browser.
    """

    _esm = pathlib.Path(__file__).with_name("canvas.js")

    # ---- data: sent once per change of image / maps (binary buffers)
    image = traitlets.Bytes(b"", help="The image: H*W*3 uint8 RGB rows, or PNG bytes.").tag(
        sync=True
    )
    image_format = traitlets.Unicode("rgb", help="'rgb' (raw rows) or 'png'.").tag(sync=True)
    image_shape = traitlets.List(traitlets.Int(), [0, 0], help="[H, W] of the image.").tag(
        sync=True
    )
    maps = traitlets.Bytes(b"", help="(K, h, w) uint8 colour indices, C order.").tag(sync=True)
    maps_shape = traitlets.List(traitlets.Int(), [0, 0, 0], help="[K, h, w].").tag(sync=True)
    ranges = traitlets.List(
        help="Per map [lo, hi]: index q stands for lo + (hi - lo) * q / 255 (hover readout)."
    ).tag(sync=True)
    labels = traitlets.List(traitlets.Unicode(), help="Per map, its name in the readout.").tag(
        sync=True
    )
    luts = traitlets.Bytes(b"", help="(L, 256, 3) uint8 colour tables of lut_names.").tag(
        sync=True
    )
    lut_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    orders = traitlets.List(
        traitlets.List(traitlets.Int()), help="Permutations of the items (tile orders)."
    ).tag(sync=True)

    # ---- drawn in the browser: changing these sends a few bytes, never a picture
    mode = traitlets.Enum(MODES, "image").tag(sync=True)
    # Indices, not names: a Dropdown syncs its ``index``, and jslink needs equal types.
    cmap = traitlets.Int(0, help="The colour table drawn: an index into lut_names.").tag(
        sync=True
    )
    sort = traitlets.Int(0, help="The order laid out: an index into orders.").tag(sync=True)
    page = traitlets.Int(0).tag(sync=True)
    per_page = traitlets.Int(0, help="Tiles per page (0: all).").tag(sync=True)
    cols = traitlets.Int(0, help="Tiles per row (0: near-square, as render.grid_shape).").tag(
        sync=True
    )
    pad = traitlets.Int(1, help="Separator between tiles, pixels.").tag(sync=True)
    upscale = traitlets.Int(1, help="Nearest-neighbour enlargement of tiles ('tiles').").tag(
        sync=True
    )
    tile_hw = traitlets.List(traitlets.Int(), [0, 0], help="Tile size ('image' mode).").tag(
        sync=True
    )
    tile_origin = traitlets.List(traitlets.Int(), [0, 0], help="Grid's top-left.").tag(sync=True)
    selected = traitlets.Int(-1, help="The item ringed (-1: none).").tag(sync=True)
    ring = traitlets.Int(0, help="Width of the selection ring, pixels (0: none).").tag(sync=True)
    shown = traitlets.Int(0, help="The map laid over the image ('overlay').").tag(sync=True)
    opacity = traitlets.Float(0.4).tag(sync=True)
    threshold = traitlets.Float(0.0, help="Maps below this fraction leave the image bare.").tag(
        sync=True
    )
    display_size = traitlets.Int(0, help="Longer side on screen, px (0: picture's own).").tag(
        sync=True
    )
    click_selects = traitlets.Bool(False).tag(sync=True)

    def __init__(self, cmaps: Sequence[str] = ("viridis",), **kwargs: Any):
        super().__init__(**kwargs)
        self._image: np.ndarray | None = None  # (H, W, 3) uint8
        self._maps = np.zeros((0, 0, 0), np.uint8)
        self._click_callbacks: list[Callable[[float, float], Any]] = []
        self.set_colormaps(cmaps)
        self.on_msg(self._handle_click)

    # ------------------------------------------------------------ data

    def set_colormaps(self, names: Sequence[str]) -> None:
        """Send the colour tables the controls can choose (768 bytes each)."""
        names = list(dict.fromkeys(names))
        tables = np.stack([render.colormap_lut(n) for n in names])
        with self.hold_sync():
            self.luts = tables.tobytes()
            self.lut_names = names

    @property
    def cmap_name(self) -> str:
        """The name of the colour map drawn now."""
        return self.lut_names[self.cmap]

    def use_colormap(self, name: str) -> None:
        """Draw with colour map ``name`` (its table is sent if it was not offered)."""
        if name not in self.lut_names:
            self.set_colormaps([*self.lut_names, name])
        self.cmap = self.lut_names.index(name)

    def set_image(self, picture: np.ndarray, png: bool = False) -> None:
        """Send an (H, W, 3) picture once: raw rows, or PNG (smaller for drawn pictures)."""
        rgb = np.ascontiguousarray(render.to_rgb_uint8(picture))
        self._image = rgb
        with self.hold_sync():
            self.image_format = "png" if png else "rgb"
            self.image = render.to_png(rgb) if png else rgb.tobytes()
            self.image_shape = [int(rgb.shape[0]), int(rgb.shape[1])]

    def set_maps(
        self,
        index: np.ndarray,
        ranges: np.ndarray | Sequence[Sequence[float]],
        labels: Sequence[str] | None = None,
    ) -> None:
        """Send (K, h, w) uint8 colour indices once, with each map's [lo, hi]
        (what index 0 and 255 stand for) and its name for the readout."""
        index = np.ascontiguousarray(index, np.uint8)
        if index.ndim != 3:
            raise ValueError(f"maps must be (K, h, w) uint8 indices, got shape {index.shape}")
        ranges = np.asarray(ranges, np.float64).reshape(len(index), 2)
        self._maps = index
        with self.hold_sync():
            self.maps = index.tobytes()
            self.maps_shape = [int(n) for n in index.shape]
            self.ranges = [[float(lo), float(hi)] for lo, hi in ranges]
            names = labels if labels is not None else [str(k) for k in range(len(index))]
            self.labels = list(names)

    @property
    def bytes_sent(self) -> int:
        """Bytes of the buffers held (what a new page load receives besides small state)."""
        return len(self.image) + len(self.maps) + len(self.luts)

    # ------------------------------------------------------------ geometry

    def page_items(self) -> list[int]:
        """The items of the tiles on the current page (the order's slice)."""
        order = list(self.orders[self.sort]) if 0 <= self.sort < len(self.orders) else []
        per = self.per_page or len(order)
        return order[self.page * per : (self.page + 1) * per]

    def grid(self) -> tuple[list[int], int, tuple[int, int]]:
        """(page items, columns, tile (h, w)) as the page lays the tiles out."""
        items = self.page_items()
        _, cols = render.grid_shape(max(len(items), 1), self.cols or None)
        if self.mode == "tiles":
            up = max(self.upscale, 1)
            return items, cols, (self._maps.shape[1] * up, self._maps.shape[2] * up)
        return items, cols, (int(self.tile_hw[0]), int(self.tile_hw[1]))

    def box_of(self, item: int) -> tuple[int, int, int, int] | None:
        """(top, left, bottom, right) of ``item``'s tile in the picture, or None."""
        items, cols, hw = self.grid()
        if item not in items or not all(hw):
            return None
        t, l_, b, r = render.tile_box(items.index(item), hw, cols, self.pad)
        oy, ox = (0, 0) if self.mode == "tiles" else self.tile_origin
        return t + oy, l_ + ox, b + oy, r + ox

    def item_at(self, y: float, x: float) -> int:
        """The item whose tile is under picture pixel (y, x), or -1."""
        items, cols, hw = self.grid()
        if not items or not all(hw):
            return -1
        oy, ox = (0, 0) if self.mode == "tiles" else self.tile_origin
        if y < oy or x < ox:
            return -1
        k = render.tile_at(y - oy, x - ox, hw, cols, self.pad)
        return int(items[k]) if 0 <= k < len(items) else -1

    # ------------------------------------------------------------ picture

    def compose(self) -> np.ndarray | None:
        """(H, W, 3) uint8: the picture the page draws now (zoom aside), or None."""
        if self.mode == "tiles":
            items, cols, _ = self.grid()
            if not items or self._maps.size == 0:
                return None
            up = max(self.upscale, 1)
            picture = render.index_tiles(
                self._maps, items, self.cmap_name, cols=cols, pad=self.pad, upscale=up
            )
        elif self._image is None:
            return None
        elif self.mode == "overlay" and 0 <= self.shown < len(self._maps):
            picture = render.overlay_index(
                self._image, self._maps[self.shown], self.opacity, self.cmap_name, self.threshold
            )
        else:
            picture = self._image
        box = self.box_of(self.selected) if self.ring > 0 else None
        if box is not None:
            picture = render.ring(picture, box, self.ring)
        return picture

    # ------------------------------------------------------------ events

    def on_click(self, callback: Callable[[float, float], Any]) -> None:
        """Call ``callback(y, x)`` (picture pixels) on every click in the page."""
        self._click_callbacks.append(callback)

    def click(self, y: float, x: float) -> None:
        """What a click at picture pixel (y, x) does, as the page sends it."""
        if self.click_selects:
            item = self.item_at(y, x)
            if item >= 0:
                self.selected = item
        for callback in self._click_callbacks:
            callback(y, x)

    def _handle_click(self, widget: Any, content: dict, buffers: list) -> None:
        if isinstance(content, dict) and content.get("event") == "click":
            # The page has already set ``selected``; the callbacks see the click.
            for callback in self._click_callbacks:
                callback(float(content["y"]), float(content["x"]))
