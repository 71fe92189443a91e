"""PictureCanvas: a picture composed in the browser from binary buffers.

An anywidget (one ES module, ``canvas.js``, shipped in the package; no build
step). The kernel sends the image and the maps once; every trait below the
line "drawn in the browser" only changes what the page draws, in the next
animation frame, with no picture sent. ``compose()`` draws the same picture in
the kernel with :mod:`cnnwidgets.render` (the one place pictures are drawn in
Python), so a widget's ``view`` is what the page shows.

Three modes:

- ``'tiles'``: (K, h, w) uint8 colour-index maps tiled as
  :func:`cnnwidgets.render.index_tiles` lays them out, or (K, h, w, 3) uint8
  pictures tiled as they are (:func:`cnnwidgets.render.tile`); tile k of the
  page shows item ``orders[sort][page * per_page + k]``, under the page's own
  caption strip when ``caption_height`` is set (strip ``page`` of ``captions``).
- ``'overlay'``: map ``shown`` over the image, bilinear to the image's size
  (or to ``map_box``, a part of it), with ``opacity`` and ``threshold``
  (:func:`cnnwidgets.render.overlay_index`), enlarged ``upscale`` times, under
  the map's own caption strip when ``caption_height`` is set, a square
  (``mark_x``, ``mark_y``, ``mark_size``, image pixels) outlined. With
  ``shown_of``, ``shown`` is a control's value (a slider's rank, a dropdown's
  index) and the map drawn is ``shown_of[shown]``: the control is jslinked to
  ``shown`` and the page answers it alone. With ``second_shown_of``, a second
  panel is drawn right of the first (``panel_gap`` pixels apart) from the same
  image and maps, map ``second_shown_of[second_shown]``: one transfer serves
  two panels (the comparator's pinned and slider panels).
- ``'image'``: the image as it is (a picture drawn by the kernel); ``tile_hw``,
  ``tile_origin`` and the order then only place the selection ring and say
  which item a click hits.

Variants: ``variant`` (a control's index, jslinked) picks frame ``variant`` of
an image sent as several frames of one size (the comparator's legend, one per
scale mode), and in 'overlay' draws map k as the indices of map
``sources[k][variant]`` (default k) times ``gains[k][variant]`` (default 1;
:func:`cnnwidgets.render.rescale_index`): maps sent once as indices of their
own [0, peak] are drawn on another scale in the page, and where a gain above 1
would coarsen them, indices of that scale sent beside them are drawn instead.

Bytes: the image (H * W * 3, or its PNG), the maps (K * h * w; pictures
K * h * w * 3, or the PNG of their atlas), the captions' PNG, 768 per colour
table offered, and the ES module (about 20 kB) once per widget.
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
    image = traitlets.Bytes(
        b"", help="The image: F*H*W*3 uint8 RGB rows (F frames, F >= 1), or their PNG."
    ).tag(sync=True)
    image_format = traitlets.Unicode("rgb", help="'rgb' (raw rows) or 'png'.").tag(sync=True)
    image_shape = traitlets.List(traitlets.Int(), [0, 0], help="[H, W] of one frame.").tag(
        sync=True
    )
    maps = traitlets.Bytes(
        b"", help="(K, h, w) uint8 colour indices or (K, h, w, 3) RGB pictures, C order."
    ).tag(sync=True)
    maps_shape = traitlets.List(traitlets.Int(), [0, 0, 0], help="[K, h, w] or [K, h, w, 3].").tag(
        sync=True
    )
    maps_format = traitlets.Unicode(
        "raw", help="'raw', or 'png': pictures sent as the PNG of their (K * h, w, 3) atlas."
    ).tag(sync=True)
    ranges = traitlets.List(
        help="Per map [lo, hi]: index q stands for lo + (hi - lo) * q / 255 (hover readout)."
    ).tag(sync=True)
    labels = traitlets.List(traitlets.Unicode(), help="Per map, its name in the readout.").tag(
        sync=True
    )
    luts = traitlets.Bytes(b"", help="(L, 256, 3) uint8 colour tables of lut_names.").tag(sync=True)
    lut_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    orders = traitlets.List(
        traitlets.List(traitlets.Int()), help="Permutations of the items (tile orders)."
    ).tag(sync=True)

    # ---- drawn in the browser: changing these sends a few bytes, never a picture
    mode = traitlets.Enum(MODES, "image").tag(sync=True)
    # Indices, not names: a Dropdown syncs its ``index``, and jslink needs equal types.
    cmap = traitlets.Int(0, help="The colour table drawn: an index into lut_names.").tag(sync=True)
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
    shown = traitlets.Int(
        0, help="The map laid over the image ('overlay'); with shown_of, an index into it."
    ).tag(sync=True)
    variant = traitlets.Int(
        0, help="The frame of the image drawn (the last when fewer), the column of gains used."
    ).tag(sync=True)
    gains = traitlets.List(
        traitlets.List(traitlets.Float()),
        help="Per map, one gain per variant: its indices times the gain ('overlay'; [] = 1).",
    ).tag(sync=True)
    sources = traitlets.List(
        traitlets.List(traitlets.Int()),
        help="Per map, one map per variant whose indices are drawn for it ([] = its own).",
    ).tag(sync=True)
    shown_of = traitlets.List(
        traitlets.Int(),
        help="When not empty: value v of shown draws map shown_of[v] (-1: not sent yet; "
        "the page keeps its picture until the kernel sends it).",
    ).tag(sync=True)
    second_shown = traitlets.Int(
        0, help="The second panel's control value: an index into second_shown_of."
    ).tag(sync=True)
    second_shown_of = traitlets.List(
        traitlets.Int(),
        help="When not empty ('overlay'): a second panel, right of the first, draws map "
        "second_shown_of[second_shown] (-1: not sent yet), under caption strip S + k "
        "(the 2 * S strips: the first panel's, then the second's).",
    ).tag(sync=True)
    panel_gap = traitlets.Int(6, help="White pixels between the two panels.").tag(sync=True)
    map_box = traitlets.List(
        traitlets.Int(), help="[top, left, height, width]: where the map goes ([]: everywhere)."
    ).tag(sync=True)
    mark_x = traitlets.Int(0, help="Left of the marked square, image pixels ('overlay').").tag(
        sync=True
    )
    mark_y = traitlets.Int(0, help="Top of the marked square, image pixels.").tag(sync=True)
    mark_size = traitlets.Int(0, help="Side of the marked square, image pixels (0: none).").tag(
        sync=True
    )
    mark_width = traitlets.Int(2, help="Its outline's width, picture pixels (render.frame).").tag(
        sync=True
    )
    captions = traitlets.Bytes(
        b"",
        help="PNG of (n * caption_height, W', 3) strips: strip k is map k's caption ('overlay'), "
        "page k's ('tiles'); drawn when W' is the picture's width.",
    ).tag(sync=True)
    caption_height = traitlets.Int(
        0, help="Caption strip above the overlay or the tiles, pixels."
    ).tag(sync=True)
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
        self._frames: np.ndarray | None = None  # (F, H, W, 3) uint8
        self._maps = np.zeros((0, 0, 0), np.uint8)
        self._captions: np.ndarray | None = None  # (K * caption_height, W', 3) uint8
        self._click_callbacks: list[Callable[[float, float], Any]] = []
        self.set_colormaps(cmaps)
        self.on_msg(self._handle_click)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PictureCanvas:
        """A canvas rebuilt from its synced state (trait name -> value, the
        buffers as bytes), as a saved notebook's widget state holds it: its
        :meth:`compose` is what a page showing that state draws."""
        names = list(state.get("lut_names") or ["viridis"])
        canvas = cls(cmaps=names)
        drawn = {k: v for k, v in state.items() if k in canvas.traits(sync=True)}
        drawn = {k: v for k, v in drawn.items() if not k.startswith("_") and k != "layout"}
        with canvas.hold_sync():
            canvas.set_trait("cmap", 0)
            for name, value in drawn.items():
                if name not in ("image", "maps", "captions", "luts", "lut_names"):
                    canvas.set_trait(name, value)
        h, w = (int(v) for v in state.get("image_shape", [0, 0]))
        image = bytes(state.get("image") or b"")
        if image and h and w:
            png = state.get("image_format") == "png"
            rgb = render.from_png(image) if png else np.frombuffer(image, np.uint8)
            canvas.set_image(np.reshape(rgb, (-1, h, w, 3)), png=png)
        shape = [int(v) for v in state.get("maps_shape", [0, 0, 0])]
        data = bytes(state.get("maps") or b"")
        png = state.get("maps_format") == "png" and bool(data)
        maps = render.from_png(data) if png else np.frombuffer(data, np.uint8)
        maps = np.reshape(maps, shape)
        canvas.set_maps(maps, state.get("ranges") or None, state.get("labels"), png=png)
        captions = bytes(state.get("captions") or b"")
        if captions:
            atlas = render.from_png(captions)
            ch = int(state["caption_height"])
            canvas.set_captions(atlas.reshape(-1, ch, *atlas.shape[1:]))
        return canvas

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
        """Send an (H, W, 3) picture once, or (F, H, W, 3) frames of which
        ``variant`` picks the one drawn: raw rows, or PNG (smaller for drawn
        pictures; frames as one PNG, stacked)."""
        picture = np.asarray(picture)
        frames = picture if picture.ndim == 4 else picture[None]
        rgb = np.ascontiguousarray(np.stack([render.to_rgb_uint8(f) for f in frames]))
        self._frames = rgb
        stacked = rgb.reshape(-1, *rgb.shape[2:])
        with self.hold_sync():
            self.image_format = "png" if png else "rgb"
            self.image = render.to_png(stacked) if png else rgb.tobytes()
            self.image_shape = [int(rgb.shape[1]), int(rgb.shape[2])]

    @property
    def _image(self) -> np.ndarray | None:
        """(H, W, 3) uint8: the frame drawn now (``variant``, the last when fewer)."""
        if self._frames is None:
            return None
        return self._frames[min(max(self.variant, 0), len(self._frames) - 1)]

    def gain_of(self, k: int) -> float:
        """The gain map k's indices are drawn with now (``gains[k][variant]``, or 1)."""
        if 0 <= k < len(self.gains) and 0 <= self.variant < len(self.gains[k]):
            return float(self.gains[k][self.variant])
        return 1.0

    def source_of(self, k: int) -> int:
        """The map whose indices are drawn for map k now (``sources[k][variant]``, or k)."""
        if 0 <= k < len(self.sources) and 0 <= self.variant < len(self.sources[k]):
            src = int(self.sources[k][self.variant])
            return src if 0 <= src < len(self._maps) else k
        return k

    def set_maps(
        self,
        index: np.ndarray,
        ranges: np.ndarray | Sequence[Sequence[float]] | None = None,
        labels: Sequence[str] | None = None,
        png: bool = False,
    ) -> None:
        """Send (K, h, w) uint8 colour indices once, with each map's [lo, hi]
        (what index 0 and 255 stand for; default [0, 1]) and its name for the
        readout; or (K, h, w, 3) uint8 pictures ('tiles' draws them as they
        are), raw or, with ``png``, as the PNG of their (K * h, w, 3) atlas."""
        index = np.ascontiguousarray(index, np.uint8)
        pictures = index.ndim == 4 and index.shape[-1] == 3
        if index.ndim != 3 and not pictures:
            raise ValueError(
                f"maps must be (K, h, w) uint8 indices or (K, h, w, 3) pictures, got {index.shape}"
            )
        if png and not pictures:
            raise ValueError("png=True sends pictures (K, h, w, 3); indices travel raw")
        if ranges is None:  # pictures need none (their readout is the pixel's colour)
            ranges = [] if pictures else [[0.0, 1.0]] * len(index)
        ranges = np.asarray(ranges, np.float64).reshape(-1, 2)
        self._maps = index
        with self.hold_sync():
            if png and index.size:  # the (K * h, w, 3) atlas
                self.maps = render.to_png(index.reshape(-1, *index.shape[2:]))
            else:
                self.maps = index.tobytes()
            self.maps_format = "png" if png else "raw"
            self.maps_shape = [int(n) for n in index.shape]
            self.ranges = [[float(lo), float(hi)] for lo, hi in ranges]
            names = labels if labels is not None else [str(k) for k in range(len(index))]
            self.labels = list(names)

    def set_captions(self, strips: np.ndarray | None) -> None:
        """Send (n, ch, W', 3) uint8 caption strips as one PNG: one per map,
        drawn above the overlay of that map ('overlay'), or one per page, drawn
        above that page's tiles ('tiles'); None removes them."""
        if strips is None:
            self._captions = None
            with self.hold_sync():
                self.captions, self.caption_height = b"", 0
            return
        strips = np.asarray(strips, np.uint8)
        if strips.ndim != 4 or strips.shape[-1] != 3:
            raise ValueError(f"caption strips must be (K, ch, W, 3) uint8, got {strips.shape}")
        atlas = strips.reshape(-1, *strips.shape[2:])
        self._captions = atlas
        with self.hold_sync():
            self.captions = render.to_png(atlas)
            self.caption_height = int(strips.shape[1])

    @property
    def bytes_sent(self) -> int:
        """Bytes of the buffers held (what a new page load receives besides small state)."""
        return len(self.image) + len(self.maps) + len(self.luts) + len(self.captions)

    @property
    def map_shown(self) -> int:
        """The map drawn now ('overlay'): ``shown``, through ``shown_of`` when set; -1: none."""
        return self.map_in(0)

    @property
    def panels(self) -> int:
        """Overlay panels drawn: 2 with ``second_shown_of``, else 1."""
        return 2 if self.mode == "overlay" and self.second_shown_of else 1

    def map_in(self, panel: int) -> int:
        """The map drawn in panel 0 (``shown``) or 1 (``second_shown``), through
        its ``*_of`` list when set; -1: none."""
        k, of = (self.shown, self.shown_of) if panel == 0 else (
            self.second_shown, self.second_shown_of
        )  # fmt: skip
        if of:
            k = of[k] if 0 <= k < len(of) else -1
        return k if 0 <= k < len(self._maps) else -1

    def panel_point(self, y: float, x: float) -> tuple[int, float, float] | None:
        """Picture pixel (y, x) of an 'overlay' canvas -> (panel, image y, image
        x) (below the caption, before the enlargement), or None on the caption
        line, between the panels or outside."""
        if self._image is None:
            return None
        up = max(self.upscale, 1)
        h, w = self._image.shape[:2]
        panel, x = 0, float(x)
        if self.panels == 2 and x >= w * up + self.panel_gap:
            panel, x = 1, x - (w * up + self.panel_gap)
        iy, ix = (y - self.caption_height) / up, x / up
        return (panel, iy, ix) if 0 <= iy < h and 0 <= ix < w else None

    def image_point(self, y: float, x: float) -> tuple[float, float] | None:
        """Picture pixel (y, x) of an 'overlay' canvas -> image pixel (of
        whichever panel it is in), or None: :meth:`panel_point` without the panel."""
        point = self.panel_point(y, x)
        return None if point is None else point[1:]

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
        oy, ox = self._grid_origin()
        return t + oy, l_ + ox, b + oy, r + ox

    def _grid_origin(self) -> tuple[int, int]:
        """Top-left of the tiles in the picture: below the page's caption strip
        ('tiles'), or ``tile_origin`` ('image')."""
        if self.mode == "tiles":
            return max(self.caption_height, 0), 0
        return int(self.tile_origin[0]), int(self.tile_origin[1])

    def item_at(self, y: float, x: float) -> int:
        """The item whose tile is under picture pixel (y, x), or -1."""
        items, cols, hw = self.grid()
        if not items or not all(hw):
            return -1
        oy, ox = self._grid_origin()
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
            if self._maps.ndim == 4:  # pictures, drawn as they are
                picture = render.tile(self._maps[items], cols=cols, pad=self.pad, upscale=up)
            else:
                picture = render.index_tiles(
                    self._maps, items, self.cmap_name, cols=cols, pad=self.pad, upscale=up
                )
            picture = self._with_caption(picture, self.page)
        elif self._image is None:
            return None
        elif self.mode == "overlay":
            if self.panels == 2:
                pair = [self._compose_overlay(0), self._compose_overlay(1)]
                return render.hstack(pair, pad=self.panel_gap)
            return self._compose_overlay(0)
        else:
            picture = self._image
        box = self.box_of(self.selected) if self.ring > 0 else None
        if box is not None:
            picture = render.ring(picture, box, self.ring)
        return picture

    def _compose_overlay(self, panel: int) -> np.ndarray:
        """'overlay': panel's map over the image (or its box), enlarged, under its caption."""
        image, k = self._image, self.map_in(panel)
        picture = image
        if k >= 0:
            index = render.rescale_index(self._maps[self.source_of(k)], self.gain_of(k))
            if len(self.map_box) == 4:
                t, l_, bh, bw = self.map_box
                picture = image.copy()
                part = image[t : t + bh, l_ : l_ + bw]
                picture[t : t + bh, l_ : l_ + bw] = render.overlay_index(
                    part, index, self.opacity, self.cmap_name, self.threshold
                )
            else:
                picture = render.overlay_index(
                    image, index, self.opacity, self.cmap_name, self.threshold
                )
        up = max(self.upscale, 1)
        picture = render.enlarge(picture, up)
        if self.mark_size > 0:
            y, x, n = self.mark_y * up, self.mark_x * up, self.mark_size * up
            picture = render.frame(picture, (y, x, y + n, x + n), self.mark_width)
        strips = 0 if self._captions is None else len(self._captions) // max(self.caption_height, 1)
        return self._with_caption(picture, k + panel * (strips // self.panels) if k >= 0 else -1)

    def _with_caption(self, picture: np.ndarray, k: int) -> np.ndarray:
        """Caption strip k above ``picture`` (a white line when strip k is not
        there or not as wide as the picture), when ``caption_height`` is set."""
        ch = self.caption_height
        if ch <= 0:
            return picture
        strip = np.full((ch, picture.shape[1], 3), 255, np.uint8)
        caps = self._captions
        if caps is not None and k >= 0 and (k + 1) * ch <= len(caps):
            if caps.shape[1] == picture.shape[1]:
                strip = caps[k * ch : (k + 1) * ch]
        return np.concatenate([strip, picture], axis=0)

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
