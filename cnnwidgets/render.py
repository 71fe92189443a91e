"""numpy -> pictures: colour maps, overlays, tiled grids, labels, PNG bytes.

numpy and Pillow only (matplotlib is read once for its colour tables). Every
function returns (H, W, 3) uint8 unless it says otherwise.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SEPARATOR = 255  # grey level of the lines between tiles


@lru_cache(maxsize=32)
def colormap_lut(name: str = "viridis") -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colour map."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(
            f"unknown colour map {name!r}; try 'jet', 'viridis', 'magma', 'gray' or 'RdBu_r'"
        ) from None
    lut = cmap(np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(lut * 255).astype(np.uint8)


def min_max_scale(
    x: np.ndarray, axis=None, lo: float | None = None, hi: float | None = None
) -> np.ndarray:
    """Scale to [0, 1] by min and max over ``axis`` (or the given lo/hi), for
    display. (Maps of explanations are scaled by their peak instead, with
    ``normalize=`` modes: :func:`cnnwidgets.explain.common.normalize_maps`.)

    Constant inputs give zeros, never NaN. Returns float32 of x's shape."""
    x = np.asarray(x, np.float32)
    lo_ = np.nanmin(x, axis=axis, keepdims=True) if lo is None else np.float32(lo)
    hi_ = np.nanmax(x, axis=axis, keepdims=True) if hi is None else np.float32(hi)
    span = hi_ - lo_
    safe = np.where(span > 0, span, 1.0)
    out = np.where(span > 0, (x - lo_) / safe, 0.0)
    return np.nan_to_num(np.clip(out, 0.0, 1.0)).astype(np.float32)


def colour_index(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape S) -> S uint8: the row of the colour table
    that :func:`apply_colormap` picks (round half up; NaN -> 0, outside clipped).

    This is what the browser's canvas receives for a map: colouring these
    indices with :func:`colormap_lut` gives exactly :func:`apply_colormap`."""
    return np.clip(np.nan_to_num(np.asarray(x, np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def apply_colormap(x: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """Colour values in [0, 1] (any shape S) -> S + (3,) uint8."""
    return colormap_lut(cmap)[colour_index(x)]


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Raw pixels (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), uint8 or float,
    to (H, W, 3) uint8. Floats within [0, 1] are taken as [0, 1] images, others as 0-255."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"expected an image (H, W) or (H, W, C), got shape {img.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img[:, :, :3]
    if img.dtype == np.uint8:
        return img
    img = img.astype(np.float32)
    if img.size and img.min() >= 0.0 and img.max() <= 1.0:
        img = img * 255.0
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def resize_map(x: np.ndarray, size: tuple[int, int], smooth: bool = True) -> np.ndarray:
    """Resize a 2-D float map to (H, W) with bilinear (or nearest) interpolation; float32."""
    h, w = size
    x = np.asarray(x, np.float32)
    if x.shape == (h, w):
        return x
    resample = Image.BILINEAR if smooth else Image.NEAREST
    return np.asarray(Image.fromarray(x, mode="F").resize((w, h), resample), np.float32)


def resize_image(image: np.ndarray, size: tuple[int, int], smooth: bool = True) -> np.ndarray:
    """Resize an (H, W, 3) uint8 picture to size (H', W')."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    resample = Image.BILINEAR if smooth else Image.NEAREST
    return np.asarray(Image.fromarray(image).resize((w, h), resample))


def overlay(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, cmap: str = "jet"
) -> np.ndarray:
    """Lay a heatmap in [0, 1] (h, w) over an image, resized to the image.

    ``alpha`` is the heatmap's opacity (0.4 as in the Grad-CAM tutorials)."""
    base = to_rgb_uint8(image)
    heat = resize_map(np.clip(heatmap, 0.0, 1.0), base.shape[:2])
    colour = apply_colormap(heat, cmap).astype(np.float32)
    out = (1.0 - alpha) * base.astype(np.float32) + alpha * colour
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


#: Colours of segmentation classes (class c takes colour c mod 10).
LABEL_COLOURS = np.array(
    [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ],
    np.float32,
)


def label_overlay(
    image: np.ndarray,
    labels: np.ndarray,
    highlight: np.ndarray | None = None,
    alpha: float = 0.45,
) -> np.ndarray:
    """Colour each pixel of ``image`` by its class.

    Args:
        image: (H, W, C) picture.
        labels: (h, w) ints, a class per pixel on any grid (resized to the
            image by nearest neighbour).
        highlight: (h, w) bool on the same grid or None: a region drawn
            opaque, its border in the selection colour.
        alpha: opacity of the class colours elsewhere.

    Returns:
        (H, W, 3) uint8.
    """
    base = to_rgb_uint8(image).astype(np.float32)
    h, w = base.shape[:2]
    rows = (np.arange(h) * labels.shape[0] // h)[:, None]
    cols = (np.arange(w) * labels.shape[1] // w)[None, :]
    colour = LABEL_COLOURS[labels[rows, cols] % len(LABEL_COLOURS)]
    weight = np.full((h, w, 1), alpha, np.float32)
    if highlight is not None:
        inside = highlight[rows, cols]
        weight[inside] = 0.8
        edge = inside & ~(
            np.roll(inside, 1, 0)
            & np.roll(inside, -1, 0)
            & np.roll(inside, 1, 1)
            & np.roll(inside, -1, 1)
        )
        colour[edge] = SELECTION
        weight[edge] = 1.0
    out = (1.0 - weight) * base + weight * colour
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def grid_shape(n: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a near-square grid for n tiles."""
    cols = cols or max(1, int(np.ceil(np.sqrt(n))))
    return int(np.ceil(n / cols)), cols


def tile(
    maps: np.ndarray,
    cols: int | None = None,
    pad: int = 1,
    scale: str | None = "each",
    cmap: str = "viridis",
    upscale: int = 1,
) -> np.ndarray:
    """Tile many maps into one picture with thin separators.

    Args:
        maps: (N, h, w) values, or (N, h, w, 3) uint8 pictures drawn as they are.
        cols: tiles per row (default: near-square).
        pad: separator width in pixels.
        scale: 'each' (every map to its own [min, max]), 'shared' (one
            [min, max] over all maps), or None (values already in [0, 1]).
        upscale: integer nearest-neighbour enlargement of every tile.

    Returns:
        (rows*(h*upscale+pad)-pad, cols*(w*upscale+pad)-pad, 3) uint8; tile k
        sits at row k // cols, column k % cols.
    """
    maps = np.asarray(maps)
    if maps.ndim == 4 and maps.shape[-1] == 3 and maps.dtype == np.uint8:
        rgb = maps
    elif maps.ndim == 3:
        if scale == "each":
            vals = min_max_scale(maps, axis=(1, 2))
        elif scale == "shared":
            vals = min_max_scale(maps)
        elif scale is None:
            vals = np.clip(maps, 0, 1)
        else:
            raise ValueError(f"scale must be 'each', 'shared' or None, got {scale!r}")
        rgb = apply_colormap(vals, cmap)
    else:
        raise ValueError(f"maps must be (N, h, w) or (N, h, w, 3) uint8, got {maps.shape}")
    if upscale > 1:
        rgb = rgb.repeat(upscale, axis=1).repeat(upscale, axis=2)
    n, h, w = rgb.shape[:3]
    rows, cols = grid_shape(n, cols)
    # Pad every tile on the bottom/right, lay them in a (rows, cols) block, then trim.
    canvas = np.full((rows * cols, h + pad, w + pad, 3), SEPARATOR, np.uint8)
    canvas[:n, :h, :w] = rgb
    canvas = canvas.reshape(rows, cols, h + pad, w + pad, 3).transpose(0, 2, 1, 3, 4)
    canvas = canvas.reshape(rows * (h + pad), cols * (w + pad), 3)
    return canvas[: rows * (h + pad) - pad, : cols * (w + pad) - pad]


def shrink_maps(maps: np.ndarray, factor: int) -> np.ndarray:
    """Average (N, h, w) maps over ``factor`` x ``factor`` blocks: (N, ceil(h/f),
    ceil(w/f)) float32. Edge blocks that the maps do not fill are averaged over
    the pixels they hold, so a constant map stays that constant."""
    maps = np.asarray(maps, np.float32)
    f = int(factor)
    if f < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    if f == 1:
        return maps
    n, h, w = maps.shape
    hh, ww = -(-h // f), -(-w // f)
    padded = np.zeros((n, hh * f, ww * f), np.float32)
    padded[:, :h, :w] = maps
    counts = np.zeros((hh * f, ww * f), np.float32)
    counts[:h, :w] = 1.0
    sums = padded.reshape(n, hh, f, ww, f).sum(axis=(2, 4))
    return sums / counts.reshape(hh, f, ww, f).sum(axis=(1, 3))


def tile_at(y: float, x: float, tile_hw: tuple[int, int], cols: int, pad: int = 1) -> int:
    """Index of the tile under pixel (y, x) of a grid made by :func:`tile`, or -1."""
    th, tw = tile_hw
    row, col = int(y // (th + pad)), int(x // (tw + pad))
    if col >= cols or y % (th + pad) >= th or x % (tw + pad) >= tw:
        return -1
    return row * cols + col


def value_grid(
    maps: np.ndarray,
    lo: float | None = None,
    hi: float | None = None,
    cols: int | None = None,
    pad: int = 1,
    cmap: str = "viridis",
    upscale: int = 1,
) -> np.ndarray:
    """Colour and tile (N, h, w) value maps, as :func:`tile` lays them out.

    Without ``lo``/``hi`` every map spans its own [min, max]; with them all
    maps share that one range (values outside it are clipped), so maps of a
    layer compare. Returns (H, W, 3) uint8.
    """
    if (lo is None) != (hi is None):
        raise ValueError("give both lo and hi (one shared range) or neither (one range per map)")
    maps = np.asarray(maps, np.float32)
    vals = min_max_scale(maps, axis=(1, 2)) if lo is None else min_max_scale(maps, lo=lo, hi=hi)
    return tile(vals, cols=cols, pad=pad, scale=None, cmap=cmap, upscale=upscale)


def bars(
    values: np.ndarray,
    lo: float,
    hi: float,
    cmap: str = "viridis",
    height: int = 96,
    bar_width: int = 2,
    pad: int = 1,
) -> np.ndarray:
    """A strip of vertical bars, one per value (n,), on the shared range [lo, hi].

    Each bar rises from the zero line (the bottom when lo >= 0) to its value and
    is coloured by it; a black zero line is drawn where the range holds both
    signs. Bar k occupies columns ``k * (bar_width + pad)`` onwards.

    Returns:
        (height, n * (bar_width + pad) - pad, 3) uint8.
    """
    v = np.asarray(values, np.float32).reshape(-1)
    n = v.size
    frac = min_max_scale(v, lo=lo, hi=hi)  # (n,) in [0, 1]
    zero = min_max_scale(np.float32(0.0), lo=lo, hi=hi)
    rows = np.arange(height, dtype=np.float32)[::-1, None] + 0.5  # bottom row = 0.5
    level, base = frac[None, :] * height, float(zero) * height
    filled = (rows >= np.minimum(level, base)) & (rows <= np.maximum(level, base))
    colours = apply_colormap(frac, cmap)  # (n, 3)
    strip = np.full((height, n, 3), SEPARATOR, np.uint8)
    strip[filled] = np.broadcast_to(colours[None], (height, n, 3))[filled]
    if 0.0 < zero < 1.0:  # draw the zero line where the range has both signs
        strip[int(np.clip(height - base, 0, height - 1)), :] = 0
    # Widen each bar and separate bars by `pad` white columns.
    canvas = np.full((height, n, bar_width + pad, 3), SEPARATOR, np.uint8)
    canvas[:, :, :bar_width] = strip[:, :, None]
    return canvas.reshape(height, n * (bar_width + pad), 3)[:, : n * (bar_width + pad) - pad]


def kernel_pictures(
    kernel: np.ndarray, rgb: bool | None = None, scale: str = "layer"
) -> np.ndarray:
    """Draw convolution weights (kh, kw, cin, cout) as pictures, 0 weight = grey 128.

    Values map symmetrically around zero: ``pixel = 127.5 + 127.5 * w / m``
    rounded, with ``m`` the largest |weight| of the layer (``scale='layer'``)
    or of each filter (``scale='filter'``).

    Returns:
        rgb (default exactly when cin == 3): (cout, kh, kw, 3) uint8 colour
        patches; otherwise (cout, cin, kh, kw) uint8 grey tiles.
    """
    k = np.asarray(kernel, np.float32)
    if k.ndim != 4:
        raise ValueError(f"kernel must be (kh, kw, cin, cout), got shape {k.shape}")
    cin = k.shape[2]
    if rgb is None:
        rgb = cin == 3
    if rgb and cin != 3:
        raise ValueError(f"rgb=True needs 3 input channels, the kernel has {cin}")
    if scale == "layer":
        m = np.abs(k).max(keepdims=True)
    elif scale == "filter":
        m = np.abs(k).max(axis=(0, 1, 2), keepdims=True)
    else:
        raise ValueError(f"scale must be 'layer' or 'filter', got {scale!r}")
    safe = np.where(m > 0, m, 1.0)
    pix = np.clip(np.rint(127.5 + 127.5 * k / safe), 0, 255).astype(np.uint8)
    if rgb:
        return np.ascontiguousarray(pix.transpose(3, 0, 1, 2))  # (cout, kh, kw, 3)
    return np.ascontiguousarray(pix.transpose(3, 2, 0, 1))  # (cout, cin, kh, kw)


def hstack(images: Sequence[np.ndarray], pad: int = 4) -> np.ndarray:
    """Place pictures side by side, top-aligned, on a white background."""
    images = [to_rgb_uint8(i) for i in images]
    h = max(i.shape[0] for i in images)
    w = sum(i.shape[1] for i in images) + pad * (len(images) - 1)
    out = np.full((h, w, 3), 255, np.uint8)
    x = 0
    for img in images:
        out[: img.shape[0], x : x + img.shape[1]] = img
        x += img.shape[1] + pad
    return out


def vstack(images: Sequence[np.ndarray], pad: int = 4) -> np.ndarray:
    """Place pictures one above the other, left-aligned, on a white background."""
    images = [to_rgb_uint8(i) for i in images]
    w = max(i.shape[1] for i in images)
    h = sum(i.shape[0] for i in images) + pad * (len(images) - 1)
    out = np.full((h, w, 3), 255, np.uint8)
    y = 0
    for img in images:
        out[y : y + img.shape[0], : img.shape[1]] = img
        y += img.shape[0] + pad
    return out


@lru_cache(maxsize=1)
def _font():
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def fit_text(text: str, width: int) -> str:
    """``text``, shortened with an ellipsis when it is wider than ``width``
    pixels, so a caption is cut visibly, never in the middle of a letter."""
    if text_width(text) <= width:
        return text
    while text and text_width(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


def caption(image: np.ndarray, text: str, height: int = 16) -> np.ndarray:
    """Add a line of dark text above a picture (shortened with an ellipsis
    when it does not fit the picture's width)."""
    img = to_rgb_uint8(image)
    band = Image.new("RGB", (img.shape[1], height), (255, 255, 255))
    line = fit_text(text, img.shape[1] - 4)
    ImageDraw.Draw(band).text((2, 1), line, fill=(20, 20, 20), font=_font())
    return np.concatenate([np.asarray(band), img], axis=0)


def legend(
    title: str,
    vmin: float,
    vmax: float,
    meaning: str,
    cmap: str = "jet",
    height: int = 208,
    width: int = 116,
    lines: int = 0,
) -> np.ndarray:
    """A row label with its colour bar: ``title`` (e.g. the method) on top, a
    vertical bar of ``cmap`` from ``vmin`` (bottom) to ``vmax`` (top) with
    both values written, and ``meaning`` (what the colour measures) under it,
    over as many lines as it needs (room for at least ``lines``, so legends of
    several meanings can share one bar: :func:`legend_ramp`). Returns
    (height, width, 3) uint8."""
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font()
    draw.text((2, 1), fit_text(title, width - 4), fill=(20, 20, 20), font=font)
    text = wrap_lines(meaning, width - 4)
    top, left, bar_h, bar_w = legend_ramp(meaning, height, width, lines)
    canvas.paste(Image.fromarray(colormap_lut(cmap)[ramp_index(bar_h, bar_w)]), (left, top))
    draw.text((20, top - 4), f"{vmax:.3g}", fill=(20, 20, 20), font=font)
    draw.text((20, top + bar_h - 10), f"{vmin:.3g}", fill=(20, 20, 20), font=font)
    for i, line in enumerate(text):
        draw.text((2, top + bar_h + 3 + 14 * i), line, fill=(70, 70, 70), font=font)
    return np.asarray(canvas)


def legend_ramp(
    meaning: str, height: int = 208, width: int = 116, lines: int = 0
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the colour ramp in :func:`legend`'s picture
    of this ``meaning``, size and ``lines``: the box a canvas recolours when the
    colour map changes in the page. Legends given the same ``lines`` (at least
    the most any of their meanings takes) have the same box."""
    n = max(legend_lines(meaning, width), int(lines))
    top, bottom = 22, height - 6 - 14 * n
    return top, 4, max(8, bottom - top), 12


def ramp_index(height: int, width: int = 12) -> np.ndarray:
    """(height, width) uint8 colour indices of a vertical ramp, top = 255, bottom
    = 0: colouring them with :func:`colormap_lut` draws a colour bar."""
    ramp = np.linspace(1.0, 0.0, int(height), dtype=np.float32)[:, None]
    return colour_index(ramp.repeat(int(width), axis=1))


def legend_lines(meaning: str, width: int = 116) -> int:
    """How many lines :func:`legend` of this ``width`` writes ``meaning`` on."""
    return len(wrap_lines(meaning, width - 4))


def wrap_lines(text: str, width: int) -> list[str]:
    """Words of ``text`` in lines no wider than ``width`` pixels (a word wider
    than that alone is shortened with an ellipsis)."""
    lines: list[str] = []
    for word in text.split():
        if lines and text_width(lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(fit_text(word, width))
    return lines


def colorbar(
    vmin: float, vmax: float, cmap: str = "viridis", height: int = 128, width: int = 12
) -> np.ndarray:
    """A vertical colour bar (top = vmax) with its two end values written beside it."""
    ramp = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None].repeat(width, axis=1)
    bar = Image.fromarray(apply_colormap(ramp, cmap))
    canvas = Image.new("RGB", (width + 52, height + 12), (255, 255, 255))
    canvas.paste(bar, (0, 6))
    draw = ImageDraw.Draw(canvas)
    draw.text((width + 3, 0), f"{vmax:.3g}", fill=(20, 20, 20), font=_font())
    draw.text((width + 3, height - 4), f"{vmin:.3g}", fill=(20, 20, 20), font=_font())
    return np.asarray(canvas)


def outline(
    image: np.ndarray, box: tuple[int, int, int, int], colour=(255, 255, 255), width: int = 1
) -> np.ndarray:
    """Draw a rectangle (top, left, bottom, right), bottom/right exclusive, on a copy."""
    img = Image.fromarray(to_rgb_uint8(image).copy())
    t, l, b, r = box
    ImageDraw.Draw(img).rectangle([l, t, r - 1, b - 1], outline=tuple(colour), width=width)
    return np.asarray(img)


def frame(
    picture: np.ndarray, box: tuple[int, int, int, int], width: int = 2, colour=(255, 255, 255)
) -> np.ndarray:
    """Colour the ``width`` pixels just inside a box (top, left, bottom, right),
    bottom/right exclusive, on a copy of an (H, W, 3) uint8 picture, clipped to
    it: :func:`outline`'s rectangle, in the arithmetic canvas.js repeats."""
    out = picture.copy()
    h, w = out.shape[:2]
    t, l_, b, r = (int(v) for v in box)
    t, l_, b, r = max(t, 0), max(l_, 0), min(b, h), min(r, w)
    if t >= b or l_ >= r or width <= 0:
        return out
    rgb = np.array(colour, np.uint8)
    out[t : min(t + width, b), l_:r] = rgb
    out[max(b - width, t) : b, l_:r] = rgb
    out[t:b, l_ : min(l_ + width, r)] = rgb
    out[t:b, max(r - width, l_) : r] = rgb
    return out


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(tag)) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def _png_up(rgb: np.ndarray, level: int) -> bytes:
    """PNG of (H, W, 3) uint8 with every row stored as its difference from the row
    above (PNG filter type 2, 'Up'), deflated by zlib at ``level``."""
    h, w, _ = rgb.shape
    flat = np.ascontiguousarray(rgb).reshape(h, 3 * w)
    rows = np.empty((h, 1 + 3 * w), np.uint8)
    rows[:, 0] = 2
    rows[0, 1:] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])  # wraps modulo 256, as PNG wants
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
        + _png_chunk(b"IEND", b"")
    )


def to_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes of a picture ((H, W) or (H, W, C), as :func:`to_rgb_uint8` takes).

    ``compress_level`` 0 or 1 (interactive redraws): rows stored as differences
    from the row above and deflated at that level, 2-3x faster than Pillow's
    encoder at about the same size (a 1273 x 693 activation grid: 24 ms instead
    of 46 ms, 1.0 MB either way). 2-9: Pillow's encoder, smaller files for saving.
    Lossless at every level: :func:`from_png` gives the picture back exactly."""
    rgb = to_rgb_uint8(image)
    if compress_level <= 1:
        return _png_up(rgb, max(0, int(compress_level)))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def from_png(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 from PNG bytes."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def enlarge_factor(hw: tuple[int, int], min_side: int) -> int:
    """The smallest integer factor that makes the longer side of an (h, w)
    picture reach ``min_side`` pixels (1 when it already does)."""
    return max(1, int(np.ceil(min_side / max(int(hw[0]), int(hw[1]), 1))))


def enlarge(picture: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer factor (pixels stay square)."""
    if factor <= 1:
        return picture
    return picture.repeat(factor, axis=0).repeat(factor, axis=1)


def heatmap_panel(
    image: np.ndarray, heat: np.ndarray, text: str, opacity: float, cmap: str, factor: int
) -> np.ndarray:
    """A heatmap laid over a picture, enlarged by ``factor``, with a caption."""
    pic = overlay(image, heat, alpha=float(opacity), cmap=cmap)
    return caption(enlarge(pic, factor), text)


def panel_grid(
    panels: Sequence[Sequence[np.ndarray]],
    title: str | None = None,
    pad: int = 6,
    title_height: int = 18,
) -> np.ndarray:
    """Rows of panels stacked into one picture, ``pad`` pixels apart, with an
    optional title line."""
    grid = vstack([hstack(row, pad=pad) for row in panels], pad=pad)
    return caption(grid, title, height=title_height) if title else grid


def heatmap_grid(
    image: np.ndarray,
    maps: np.ndarray,
    captions: Sequence[Sequence[str]],
    opacity: float = 0.4,
    cmap: str = "jet",
    title: str | None = None,
    panel_size: int = 192,
    legends: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """One row per method, one column per class, each a captioned overlay.

    Args:
        image: raw picture (H, W, 3), uint8 or float.
        maps: (M, P, H, W) float heatmaps in [0, 1] (values outside are
            clipped): M rows by P panels.
        captions: M rows of P strings written above each panel.
        opacity: heatmap opacity in [0, 1].
        cmap: a matplotlib colour map name.
        title: an optional line of text above the grid.
        panel_size: panels are enlarged by an integer factor until their
            longer side reaches this many pixels (nearest neighbour).
        legends: optional pictures put first in each row (e.g. :func:`legend`:
            the row's name and colour bar), one per row.

    Returns:
        (rows, cols, 3) uint8 picture.
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 4:
        raise ValueError(f"maps must be (methods, panels, H, W), got shape {maps.shape}")
    if len(captions) != maps.shape[0] or any(len(c) != maps.shape[1] for c in captions):
        raise ValueError("captions must give one string per panel, as maps' first two axes")
    base = to_rgb_uint8(image)
    factor = max(1, panel_size // max(base.shape[:2]))
    panels = [
        [heatmap_panel(base, heat, text, opacity, cmap, factor) for heat, text in zip(row, caps)]
        for row, caps in zip(maps, captions)
    ]
    if legends is not None:
        if len(legends) != len(panels):
            raise ValueError(f"legends must give one picture per row ({len(panels)})")
        panels = [[lead, *row] for lead, row in zip(legends, panels)]
    return panel_grid(panels, title)


@lru_cache(maxsize=64)
def labelled_colorbar(vmin: float, vmax: float, cmap: str, label: str) -> np.ndarray:
    """A colour bar with a word above it saying what its range is."""
    return caption(colorbar(vmin, vmax, cmap), label)


#: The colour of selection marks: a ring drawn here, or an outline drawn by the front end.
SELECTION = (230, 30, 30)


def ring(
    picture: np.ndarray, box: tuple[int, int, int, int], pad: int, colour=SELECTION
) -> np.ndarray:
    """Colour the ``pad`` pixels around a box (top, left, bottom, right) on a
    copy, leaving the box itself untouched (a selection mark between tiles)."""
    out = picture.copy()
    t, l_, b, r = box
    h, w = out.shape[:2]
    rgb = np.array(colour, np.uint8)
    top, bottom = max(t - pad, 0), min(b + pad, h)
    left, right = max(l_ - pad, 0), min(r + pad, w)
    out[top:t, left:right] = rgb
    out[b:bottom, left:right] = rgb
    out[top:bottom, left:l_] = rgb
    out[top:bottom, r:right] = rgb
    return out


#: Colours of :func:`table`.
TABLE_COLOURS = {
    "text": (20, 20, 20),
    "muted": (120, 120, 120),
    "accent": (20, 60, 150),
    "header": (225, 225, 225),
    "band": (250, 243, 220),
    "selected": (200, 222, 255),
    "rule": (170, 170, 170),
}


@lru_cache(maxsize=4096)
def text_width(text: str) -> int:
    """Width in pixels of a line of text in the captions' font."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return int(np.ceil(probe.textlength(text, font=_font())))


def table(
    cells: Sequence[Sequence[str]],
    fills: Sequence[tuple[int, int, int]],
    bands: Sequence[tuple[int, int, int] | None],
    title: str = "",
    footer: str = "",
    right_align: Sequence[int] = (),
    row_height: int = 16,
    pad_x: int = 10,
) -> np.ndarray:
    """A text table as a picture: the first row is the header (grey band, rule
    below); row i is written in ``fills[i]`` on the band ``bands[i]`` (None for
    white); columns in ``right_align`` are right-aligned below the header."""
    font = _font()
    col_w = [max(text_width(c[k]) for c in cells) for k in range(len(cells[0]))]
    xs = np.concatenate([[pad_x], pad_x + np.cumsum(np.asarray(col_w) + 2 * pad_x)])
    n_lines = len(cells) + (1 if footer else 0) + (1 if title else 0)
    w = int(max(xs[-1], text_width(title) + 2 * pad_x, text_width(footer) + 2 * pad_x))
    img = Image.new("RGB", (w, n_lines * row_height + 8), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    y = 4
    if title:
        draw.text((pad_x, y + 1), title, fill=TABLE_COLOURS["text"], font=font)
        y += row_height
    for n, row in enumerate(cells):
        band = TABLE_COLOURS["header"] if n == 0 else bands[n]
        if band is not None:
            draw.rectangle([0, y, w - 1, y + row_height - 1], fill=band)
        fill = TABLE_COLOURS["text"] if n == 0 else fills[n]
        for k, text in enumerate(row):
            x = int(xs[k])
            if k in right_align and n:
                x = int(xs[k] + col_w[k] - text_width(text))
            draw.text((x, y + 1), text, fill=fill, font=font)
        y += row_height
        if n == 0:
            draw.line([0, y - 1, w - 1, y - 1], fill=TABLE_COLOURS["rule"])
    draw.line([0, y, w - 1, y], fill=TABLE_COLOURS["rule"])
    if footer:
        draw.text((pad_x, y + 2), footer, fill=TABLE_COLOURS["text"], font=font)
    return np.asarray(img)


def thumbnail(
    image: np.ndarray,
    heatmap: np.ndarray | None = None,
    size: int = 96,
    alpha: float = 0.5,
    cmap: str = "jet",
    box: tuple[int, int, int, int] | None = None,
    border: tuple[int, int, int] | None = None,
    text: str | None = None,
) -> np.ndarray:
    """One tile of a dataset grid: an image scaled to ``size`` x ``size`` with
    an optional heatmap over it, the object's box, a coloured frame and a caption.

    Args:
        image: raw picture (H, W[, C]), uint8 or float.
        heatmap: (h, w) values in [0, 1] (any resolution; resized), or None.
        size: side of the square picture in pixels.
        alpha: heatmap opacity.
        box: (top, left, bottom, right) in the image's pixels, drawn in white.
        border: RGB colour of a 2-pixel frame (e.g. red for a mistake), or None.
        text: a caption line above the picture (16 pixels), or None.

    Returns:
        (size, size, 3) uint8, or (size + 16, size, 3) with a caption.
    """
    base = to_rgb_uint8(image)
    h, w = base.shape[:2]
    pic = resize_image(base, (size, size))
    if heatmap is not None:
        pic = overlay(pic, heatmap, alpha=alpha, cmap=cmap)
    if box is not None:
        t, l, b, r = box
        sy, sx = size / h, size / w
        scaled = (round(t * sy), round(l * sx), max(round(b * sy), 1), max(round(r * sx), 1))
        pic = outline(pic, scaled)
    if border is not None:
        pic = pic.copy()
        pic[:2], pic[-2:], pic[:, :2], pic[:, -2:] = border, border, border, border
    return caption(pic, text) if text is not None else pic


def blank_tile(size: int = 96, text: str | None = None) -> np.ndarray:
    """A light grey square (an empty slot of a grid), with an optional caption."""
    pic = np.full((size, size, 3), 235, np.uint8)
    return caption(pic, text) if text is not None else pic


# ------------------------------------------------ the browser canvas's arithmetic
#
# The canvas widget (cnnwidgets/widgets/canvas.js) composes pictures in the page
# from uint8 colour indices; these functions compose the same pictures in the
# kernel for ``view`` and ``save()``. canvas.js mirrors them operation for
# operation in float64 (JavaScript numbers), so the two agree to the bit: change
# one, change the other (tests/test_canvas.py checks the arithmetic, the
# browser test the pixels read back from the page).


def threshold_level(threshold: float) -> int:
    """The first colour index shown by an overlay with ``threshold`` in [0, 1]:
    indices below it leave the image uncovered. floor(t * 255 + 0.5), as canvas.js."""
    return int(np.floor(float(threshold) * 255.0 + 0.5))


def upsample_index(index: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (h, w) uint8 index map to ``size`` = (H, W) uint8.

    Pixel centres aligned (source coordinate (y + 0.5) * h / H - 0.5, clamped
    to the map), weights and sums in float64 in a fixed order, rounded half up:
    the arithmetic canvas.js repeats for every pixel."""
    q = np.asarray(index, np.float64)
    h, w = q.shape
    big_h, big_w = int(size[0]), int(size[1])
    if (h, w) == (big_h, big_w):
        return np.asarray(index, np.uint8)

    def axis(n: int, big: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = (np.arange(big, dtype=np.float64) + 0.5) * n / big - 0.5
        s = np.clip(s, 0.0, n - 1.0)
        i0 = np.floor(s).astype(np.int64)
        return i0, np.minimum(i0 + 1, n - 1), s - i0

    y0, y1, fy = axis(h, big_h)
    x0, x1, fx = axis(w, big_w)
    fy, fx = fy[:, None], fx[None, :]
    wy0, wx0 = 1.0 - fy, 1.0 - fx
    top = q[y0][:, x0] * wx0 + q[y0][:, x1] * fx
    bottom = q[y1][:, x0] * wx0 + q[y1][:, x1] * fx
    v = top * wy0 + bottom * fy
    return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)


def overlay_index(
    image: np.ndarray,
    index: np.ndarray,
    opacity: float,
    cmap: str = "jet",
    threshold: float = 0.0,
) -> np.ndarray:
    """An (h, w) uint8 index map coloured by ``cmap`` over an (H, W, 3) uint8
    image: the map is resized by :func:`upsample_index`, pixels whose index is
    below :func:`threshold_level` keep the image, the others are
    floor((1 - a) * image + a * colour + 0.5) with a = ``opacity`` (float64).
    Returns (H, W, 3) uint8."""
    base = to_rgb_uint8(image)
    big = upsample_index(index, base.shape[:2])
    colour = colormap_lut(cmap)[big].astype(np.float64)
    a = float(opacity)
    mixed = np.floor((1.0 - a) * base.astype(np.float64) + a * colour + 0.5)
    out = np.clip(mixed, 0, 255).astype(np.uint8)
    hidden = big < threshold_level(threshold)
    out[hidden] = base[hidden]
    return out


def rescale_index(index: np.ndarray, gain: float) -> np.ndarray:
    """Colour indices (uint8, any shape S) of values multiplied by ``gain`` >= 0:
    S uint8 min(255, floor(q * gain + 0.5)), in float64, as canvas.js.

    A map sent once as indices of its own [0, peak] is drawn on another scale
    s with gain = peak / s: the comparator's scale modes, chosen in the page."""
    q = np.asarray(index, np.uint8)
    g = float(gain)
    if g == 1.0:
        return q
    table = np.floor(np.arange(256, dtype=np.float64) * g + 0.5)
    return np.clip(table, 0, 255).astype(np.uint8)[q]


def index_tiles(
    index: np.ndarray,
    items: Sequence[int],
    cmap: str = "viridis",
    cols: int | None = None,
    pad: int = 1,
    upscale: int = 1,
) -> np.ndarray:
    """Tiles of (K, h, w) uint8 index maps, tile k showing map ``items[k]``,
    coloured by ``cmap``, laid out as :func:`tile` lays them out. (H, W, 3) uint8."""
    index = np.asarray(index, np.uint8)
    picked = index[np.asarray(items, np.int64)]
    return tile(colormap_lut(cmap)[picked], cols=cols, pad=pad, upscale=upscale)


def tile_box(
    k: int, tile_hw: tuple[int, int], cols: int, pad: int = 1
) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of tile k of a grid made by :func:`tile`."""
    th, tw = tile_hw
    top, left = (k // cols) * (th + pad), (k % cols) * (tw + pad)
    return top, left, top + th, left + tw
