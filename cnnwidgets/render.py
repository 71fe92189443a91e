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


def normalize(
    x: np.ndarray, axis=None, lo: float | None = None, hi: float | None = None
) -> np.ndarray:
    """Scale to [0, 1] by min and max over ``axis`` (or the given lo/hi).

    Constant inputs give zeros, never NaN. Returns float32 of x's shape."""
    x = np.asarray(x, np.float32)
    lo_ = np.nanmin(x, axis=axis, keepdims=True) if lo is None else np.float32(lo)
    hi_ = np.nanmax(x, axis=axis, keepdims=True) if hi is None else np.float32(hi)
    span = hi_ - lo_
    safe = np.where(span > 0, span, 1.0)
    out = np.where(span > 0, (x - lo_) / safe, 0.0)
    return np.nan_to_num(np.clip(out, 0.0, 1.0)).astype(np.float32)


def apply_colormap(x: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """Colour values in [0, 1] (any shape S) -> S + (3,) uint8."""
    idx = np.clip(np.nan_to_num(np.asarray(x, np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return colormap_lut(cmap)[idx]


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
            vals = normalize(maps, axis=(1, 2))
        elif scale == "shared":
            vals = normalize(maps)
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


def tile_at(y: float, x: float, tile_hw: tuple[int, int], cols: int, pad: int = 1) -> int:
    """Index of the tile under pixel (y, x) of a grid made by :func:`tile`, or -1."""
    th, tw = tile_hw
    row, col = int(y // (th + pad)), int(x // (tw + pad))
    if col >= cols or y % (th + pad) >= th or x % (tw + pad) >= tw:
        return -1
    return row * cols + col


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


def caption(image: np.ndarray, text: str, height: int = 16) -> np.ndarray:
    """Add a line of dark text above a picture."""
    img = to_rgb_uint8(image)
    band = Image.new("RGB", (img.shape[1], height), (255, 255, 255))
    ImageDraw.Draw(band).text((2, 1), text, fill=(20, 20, 20), font=_font())
    return np.concatenate([np.asarray(band), img], axis=0)


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
