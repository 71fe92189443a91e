"""What the layers see: channel order, channel statistics and the layer picture.

Pure numpy in, numpy out (no TensorFlow, no ipywidgets), so an instructor can
grade them and the :class:`~cnnwidgets.ActivationBrowser` only wires them to
controls. Activations of one image are ``(h, w, C)`` for a convolutional
layer and ``(C,)`` for a dense (2-D) layer; a batch adds a leading N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnwidgets import render

#: How the channels of a layer can be ordered.
SORTS = ("index", "mean", "max", "gradcam")
#: How tile colours map to values: each channel its own range, or one range for the layer.
SCALES = ("channel", "layer")
#: Tiles (or bars) on one page of a wide layer.
DEFAULT_PER_PAGE = 256

__all__ = [
    "DEFAULT_PER_PAGE",
    "SCALES",
    "SORTS",
    "LayerMaps",
    "LayerPicture",
    "bar_strip",
    "channel_order",
    "channel_stats",
    "layer_maps",
    "layer_picture",
    "num_pages",
    "page_of",
    "zero_channel_fraction",
]


def _as_channels(acts: np.ndarray) -> np.ndarray:
    """(h, w, C) or (C,) -> (P, C) float32, P values per channel."""
    a = np.asarray(acts, np.float32)
    if a.ndim == 1:
        return a[None, :]
    if a.ndim == 3:
        return a.reshape(-1, a.shape[-1])
    raise ValueError(
        f"activations of one image must be (h, w, C) or (C,), got shape {a.shape}; "
        "index the batch first, e.g. acts[0]"
    )


def channel_order(
    acts: np.ndarray, sort: str = "index", weights: np.ndarray | None = None
) -> np.ndarray:
    """The order in which to show a layer's channels.

    Args:
        acts: one image's activations, (h, w, C) or (C,), any float dtype.
        sort: 'index' (0, 1, ...), 'mean' or 'max' (largest mean / maximum
            activation first), or 'gradcam' (largest ``weights`` first).
        weights: (C,) channel importances, required for 'gradcam' (e.g.
            ``cnnwidgets.explain.cam.channel_weights(...)[n, k]``).

    Returns:
        (C,) int64 permutation; position k shows channel ``order[k]``. Ties
        keep index order (stable sort).
    """
    flat = _as_channels(acts)
    c = flat.shape[1]
    if sort == "index":
        return np.arange(c, dtype=np.int64)
    if sort == "mean":
        key = flat.mean(axis=0)
    elif sort == "max":
        key = flat.max(axis=0)
    elif sort == "gradcam":
        if weights is None:
            raise ValueError("sort='gradcam' needs weights: (C,) channel importances")
        key = np.asarray(weights, np.float32).reshape(-1)
        if key.shape != (c,):
            raise ValueError(f"weights have shape {np.shape(weights)}, expected ({c},)")
    else:
        raise ValueError(f"sort must be one of {SORTS}, got {sort!r}")
    key = np.nan_to_num(key.astype(np.float64), nan=-np.inf)
    return np.argsort(-key, kind="stable").astype(np.int64)


def channel_stats(acts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel statistics of one image's activations.

    Args:
        acts: (h, w, C) or (C,).

    Returns:
        {'mean', 'max', 'min', 'std', 'zero_fraction'}: each (C,) float32;
        ``zero_fraction`` is the share of exactly-zero values (dead ReLU units).
    """
    flat = _as_channels(acts)
    return {
        "mean": flat.mean(axis=0).astype(np.float32),
        "max": flat.max(axis=0).astype(np.float32),
        "min": flat.min(axis=0).astype(np.float32),
        "std": flat.std(axis=0).astype(np.float32),
        "zero_fraction": (flat == 0).mean(axis=0).astype(np.float32),
    }


def zero_channel_fraction(acts: np.ndarray) -> float:
    """Fraction of channels that are zero everywhere, over a batch.

    Args:
        acts: (N, h, w, C) or (N, C) activations of a batch.

    Returns:
        float in [0, 1]: channels whose every value over all images and
        positions is exactly 0, divided by C.
    """
    a = np.asarray(acts)
    if a.ndim < 2:
        raise ValueError(f"expected (N, h, w, C) or (N, C) activations, got shape {a.shape}")
    flat = a.reshape(-1, a.shape[-1])
    return float(np.mean(np.all(flat == 0, axis=0)))


def num_pages(n: int, per_page: int = DEFAULT_PER_PAGE) -> int:
    """Pages needed for n tiles, at least 1."""
    if per_page < 1:
        raise ValueError(f"per_page must be at least 1, got {per_page}")
    return max(1, -(-int(n) // int(per_page)))


def page_of(position: int, per_page: int = DEFAULT_PER_PAGE) -> int:
    """The page holding the tile at ``position`` (0-based) of the order."""
    return int(position) // int(per_page)


@dataclass(frozen=True)
class LayerPicture:
    """A layer drawn as one picture, and how to read it back.

    Attributes:
        picture: (H, W, 3) uint8, the grid (4-D layer) or bar strip (2-D layer).
        channels: (n,) int64, the channel shown by tile / bar k of this page.
        kind: 'grid' or 'bars'.
        tile_hw: (th, tw) of one tile in pixels (after ``upscale``); for bars
            (height, bar width).
        cols: tiles per row (bars: the number of bars).
        pad: separator width in pixels.
        vmin, vmax: the value range that colours span; for scale='channel'
            every tile spans its own range and these are 0 and 1 (a fraction
            of each channel's [min, max]).
        scale: 'channel' or 'layer'.
    """

    picture: np.ndarray
    channels: np.ndarray
    kind: str
    tile_hw: tuple[int, int]
    cols: int
    pad: int
    vmin: float
    vmax: float
    scale: str

    def index_at(self, y: float, x: float) -> int:
        """The channel under pixel (y, x) of ``picture``, or -1 (a separator / outside)."""
        if y < 0 or x < 0 or y >= self.picture.shape[0] or x >= self.picture.shape[1]:
            return -1
        if self.kind == "bars":
            k = render.tile_at(0, x, (1, self.tile_hw[1]), self.cols, self.pad)
        else:
            k = render.tile_at(y, x, self.tile_hw, self.cols, self.pad)
        return int(self.channels[k]) if 0 <= k < len(self.channels) else -1

    def box_of(self, channel: int) -> tuple[int, int, int, int] | None:
        """(top, left, bottom, right) of the tile of ``channel`` on this page, or None."""
        hits = np.flatnonzero(self.channels == channel)
        if hits.size == 0:
            return None
        k = int(hits[0])
        th, tw = self.tile_hw
        if self.kind == "bars":
            left = k * (tw + self.pad)
            return 0, left, th, left + tw
        top, left = (k // self.cols) * (th + self.pad), (k % self.cols) * (tw + self.pad)
        return top, left, top + th, left + tw


def _page_channels(c: int, order: np.ndarray | None, page: int, per_page: int) -> np.ndarray:
    order = np.arange(c, dtype=np.int64) if order is None else np.asarray(order, np.int64)
    if sorted(order.tolist()) != list(range(c)):
        raise ValueError(f"order must be a permutation of range({c})")
    pages = num_pages(c, per_page)
    if not 0 <= page < pages:
        raise ValueError(f"page {page} out of range; this layer has {pages} page(s)")
    return order[page * per_page : (page + 1) * per_page]


def _shrink_factor(
    hw: tuple[int, int], grid: tuple[int, int], pad: int, max_side: int | None
) -> int:
    """The smallest integer f with the (rows, cols) grid of ceil(hw / f) tiles
    within ``max_side`` pixels (1 without a limit or when it already fits)."""
    if max_side is None:
        return 1
    f = 1
    while f < max(hw):
        th, tw = -(-hw[0] // f), -(-hw[1] // f)
        if max(grid[0] * (th + pad) - pad, grid[1] * (tw + pad) - pad) <= max_side:
            break
        f += 1
    return f


def layer_picture(
    acts: np.ndarray,
    order: np.ndarray | None = None,
    scale: str = "channel",
    page: int = 0,
    per_page: int = DEFAULT_PER_PAGE,
    cmap: str = "viridis",
    cols: int | None = None,
    upscale: int | None = None,
    min_tile: int = 24,
    pad: int = 1,
    max_side: int | None = None,
) -> LayerPicture:
    """All channels of one image's layer output as ONE picture.

    A 4-D layer's channels become tiles of a grid (vectorized by
    :func:`cnnwidgets.render.tile`: a 512-channel layer takes milliseconds); a
    2-D layer's units become a bar strip (:func:`bar_strip`).

    Args:
        acts: one image's activations, (h, w, C) or (C,).
        order: (C,) permutation from :func:`channel_order` (default: index order).
        scale: 'channel' (every tile normalized to its own [min, max]) or
            'layer' (one [min, max] over ALL channels of the layer, not just
            this page, so pages compare).
        page: which page of ``order`` to draw.
        per_page: channels per page.
        cmap: colour map name.
        cols: tiles per row (default near-square).
        upscale: integer enlargement of each tile (default: tiles at least
            ``min_tile`` pixels on their longer side).
        pad: separator width in pixels.
        max_side: the longest side the grid may have, in pixels (default no
            limit). Maps too big for it are averaged over f x f blocks (the
            smallest integer f that fits; see :func:`cnnwidgets.render.shrink_maps`):
            64 maps of 224 x 224 make a 1799-px grid, 4 MB of PNG per redraw,
            more than a notebook shows. ``tile_hw`` gives the tile size drawn.

    Returns:
        a :class:`LayerPicture`; tile k (row k // cols, column k % cols)
        shows channel ``channels[k]``.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    a = np.asarray(acts, np.float32)
    if a.ndim == 1:
        return bar_strip(a, order=order, scale=scale, page=page, per_page=per_page, cmap=cmap)
    if a.ndim != 3:
        raise ValueError(f"activations of one image must be (h, w, C) or (C,), got shape {a.shape}")
    h, w, c = a.shape
    channels = _page_channels(c, order, page, per_page)
    maps = np.moveaxis(a[:, :, channels], -1, 0)  # (n, h, w)
    up = upscale or render.enlarge_factor((h, w), min_tile)
    rows, ncols = render.grid_shape(len(channels), cols)
    down = _shrink_factor((h, w), (rows, ncols), pad, max_side) if up == 1 else 1
    if down > 1:
        maps = render.shrink_maps(maps, down)
        h, w = maps.shape[1:]
    if scale == "channel":
        vmin, vmax = 0.0, 1.0
        grid = render.value_grid(maps, cols=cols, pad=pad, cmap=cmap, upscale=up)
    else:
        vmin, vmax = float(a.min()), float(a.max())
        grid = render.value_grid(maps, vmin, vmax, cols=cols, pad=pad, cmap=cmap, upscale=up)
    return LayerPicture(grid, channels, "grid", (h * up, w * up), ncols, pad, vmin, vmax, scale)


@dataclass(frozen=True)
class LayerMaps:
    """Every channel of a 4-D layer as colour indices, for the browser's canvas.

    Attributes:
        index: (C, h, w) uint8, channel c coloured by row ``index[c]`` of a
            colour table (:func:`cnnwidgets.render.colour_index` of its scaled
            values), after the block averaging that fits the grid.
        ranges: (C, 2) float64, the values index 0 and 255 stand for.
        upscale: nearest-neighbour enlargement of every tile.
        pad: separator width in pixels.
        vmin, vmax: as :class:`LayerPicture` (0 and 1 for scale='channel').
        scale: 'channel' or 'layer'.
    """

    index: np.ndarray
    ranges: np.ndarray
    upscale: int
    pad: int
    vmin: float
    vmax: float
    scale: str

    @property
    def tile_hw(self) -> tuple[int, int]:
        return self.index.shape[1] * self.upscale, self.index.shape[2] * self.upscale

    def picture(self, channels: np.ndarray, cmap: str = "viridis") -> LayerPicture:
        """The grid of ``channels`` (one page), as :func:`layer_picture` draws it."""
        channels = np.asarray(channels, np.int64)
        _, cols = render.grid_shape(len(channels))
        grid = render.index_tiles(self.index, channels, cmap, pad=self.pad, upscale=self.upscale)
        return LayerPicture(
            grid, channels, "grid", self.tile_hw, cols, self.pad, self.vmin, self.vmax, self.scale
        )


def layer_maps(
    acts: np.ndarray,
    scale: str = "channel",
    per_page: int = DEFAULT_PER_PAGE,
    min_tile: int = 24,
    pad: int = 1,
    max_side: int | None = None,
) -> LayerMaps:
    """All channels of one image's (h, w, C) layer output as uint8 colour
    indices, sized so that a full page's grid fits ``max_side`` (the block
    averaging of :func:`layer_picture`). Colouring page p's channels with
    :func:`cnnwidgets.render.index_tiles` gives :func:`layer_picture`'s grid
    (bit for bit on every page as full as the first)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    a = np.asarray(acts, np.float32)
    if a.ndim != 3:
        raise ValueError(f"activations of one image must be (h, w, C), got shape {a.shape}")
    h, w, c = a.shape
    maps = np.moveaxis(a, -1, 0)  # (C, h, w)
    up = render.enlarge_factor((h, w), min_tile)
    rows, ncols = render.grid_shape(min(c, per_page))
    down = _shrink_factor((h, w), (rows, ncols), pad, max_side) if up == 1 else 1
    if down > 1:
        maps = render.shrink_maps(maps, down)
    if scale == "channel":
        lo = maps.min(axis=(1, 2)).astype(np.float64)
        hi = maps.max(axis=(1, 2)).astype(np.float64)
        unit = render.min_max_scale(maps, axis=(1, 2))
        vmin, vmax = 0.0, 1.0
    else:
        vmin, vmax = float(a.min()), float(a.max())
        lo, hi = np.full(c, vmin), np.full(c, vmax)
        unit = render.min_max_scale(maps, lo=vmin, hi=vmax)
    index = render.colour_index(np.clip(unit, 0, 1))
    return LayerMaps(index, np.stack([lo, hi], axis=1), up, pad, vmin, vmax, scale)


def bar_strip(
    values: np.ndarray,
    order: np.ndarray | None = None,
    scale: str = "layer",
    page: int = 0,
    per_page: int = DEFAULT_PER_PAGE,
    cmap: str = "viridis",
    height: int = 96,
    bar_width: int | None = None,
    pad: int = 1,
) -> LayerPicture:
    """A 2-D (dense) layer's units as a strip of vertical bars.

    Bars rise from the zero line (the bottom for non-negative layers) to each
    unit's value on a scale shared by the layer's units (both ``scale``
    values give the shared scale: a single value has no range of its own),
    and are coloured by that value.

    Args:
        values: (C,) one image's unit values.
        order, page, per_page, cmap, pad: as in :func:`layer_picture`.
        height: strip height in pixels.
        bar_width: pixels per bar (default: a strip about 512 pixels wide).

    Returns:
        a :class:`LayerPicture` of kind 'bars'; bar k occupies columns
        ``k * (bar_width + pad)`` onwards and shows unit ``channels[k]``.
    """
    v = np.asarray(values, np.float32).reshape(-1)
    channels = _page_channels(v.size, order, page, per_page)
    vmin, vmax = min(0.0, float(v.min())), max(0.0, float(v.max()))
    n = len(channels)
    bw = bar_width or max(2, min(48, 512 // max(n, 1)))
    picture = render.bars(v[channels], vmin, vmax, cmap, height, bw, pad)
    return LayerPicture(picture, channels, "bars", (height, bw), n, pad, vmin, vmax, "layer")
