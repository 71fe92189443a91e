"""The picture canvas: the kernel's composition (render.py) against plain
references, the page's arithmetic (canvas.js, run in Node) against the
kernel's, and the widget's state, clicks and bytes. The browser test reads the
same pictures back from a real page (tests/browser/)."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

from cnnwidgets import render
from cnnwidgets.widgets.canvas import PictureCanvas

CANVAS_JS = pathlib.Path(render.__file__).parent / "widgets" / "canvas.js"


def run_in_node(tmp_path: pathlib.Path, script: str, args: dict) -> dict:
    """Run ``script``, an ES module that imports canvas.js as ./canvas.mjs and
    reads ``args`` as JSON on stdin, in Node; what it prints, parsed as JSON."""
    shutil.copy(CANVAS_JS, tmp_path / "canvas.mjs")
    (tmp_path / "check.mjs").write_text(script)
    done = subprocess.run(
        ["node", "check.mjs"], input=json.dumps(args), capture_output=True, text=True,
        cwd=tmp_path, check=True, timeout=60,
    )  # fmt: skip
    return json.loads(done.stdout)


def upsample_reference(q: np.ndarray, big_h: int, big_w: int) -> np.ndarray:
    """Bilinear with pixel centres aligned, one pixel at a time, plain Python floats."""
    h, w = q.shape
    out = np.zeros((big_h, big_w), np.uint8)
    for y in range(big_h):
        sy = min(max((y + 0.5) * h / big_h - 0.5, 0.0), h - 1.0)
        y0 = int(np.floor(sy))
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for x in range(big_w):
            sx = min(max((x + 0.5) * w / big_w - 0.5, 0.0), w - 1.0)
            x0 = int(np.floor(sx))
            x1, fx = min(x0 + 1, w - 1), sx - x0
            top = float(q[y0, x0]) * (1 - fx) + float(q[y0, x1]) * fx
            bottom = float(q[y1, x0]) * (1 - fx) + float(q[y1, x1]) * fx
            out[y, x] = int(np.floor(top * (1 - fy) + bottom * fy + 0.5))
    return out


@pytest.mark.parametrize("shape, size", [((7, 7), (56, 56)), ((3, 5), (17, 23)), ((4, 4), (4, 4))])
def test_upsample_index_is_plain_bilinear(shape, size):
    q = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    np.testing.assert_array_equal(render.upsample_index(q, size), upsample_reference(q, *size))


def test_colour_index_gives_apply_colormap():
    x = np.random.default_rng(1).uniform(-0.1, 1.1, (50, 40)).astype(np.float32)
    lut = render.colormap_lut("magma")
    np.testing.assert_array_equal(lut[render.colour_index(x)], render.apply_colormap(x, "magma"))


def test_overlay_index_blends_and_thresholds():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (12, 12, 3)).astype(np.uint8)
    q = np.array([[0, 255], [128, 64]], np.uint8)
    out = render.overlay_index(image, q, opacity=0.3, cmap="jet", threshold=0.5)
    big = render.upsample_index(q, (12, 12))
    colour = render.colormap_lut("jet")[big].astype(np.float64)
    want = np.floor(0.7 * image + 0.3 * colour + 0.5).astype(np.uint8)
    shown = big >= render.threshold_level(0.5)
    assert 0 < shown.sum() < shown.size  # the threshold hides part of the map
    np.testing.assert_array_equal(out[shown], want[shown])
    np.testing.assert_array_equal(out[~shown], image[~shown])
    # Far from the render.overlay of the float map only by the map's 256 levels.
    smooth = render.overlay(image, q.astype(np.float32) / 255, alpha=0.3, cmap="jet")
    full = render.overlay_index(image, q, opacity=0.3, cmap="jet")
    assert np.abs(smooth.astype(int) - full.astype(int)).max() <= 40


NODE_CHECK = """
import * as c from "./canvas.mjs";
import { readFileSync } from "node:fs";
const args = JSON.parse(readFileSync(0, "utf8"));
const u8 = (a) => Uint8Array.from(a);
const big = c.upsampleIndex(u8(args.q), args.h, args.w, args.H, args.W);
const image = new Uint8ClampedArray(args.H * args.W * 4);
args.image.forEach((v, i) => { image[4 * Math.floor(i / 3) + (i % 3)] = v; });
const out = c.blendRGBA(new Uint8ClampedArray(image), image, big, u8(args.lut), args.opacity,
                        c.thresholdLevel(args.threshold));
const tiles = c.tilesRGBA(u8(args.maps), args.mh, args.mw, args.items, 0, 1, args.up, u8(args.lut));
const rgb = (rgba) => Array.from(rgba).filter((_, i) => i % 4 !== 3);
// A map in a box of the picture, then the picture enlarged (the comparator's panels).
const [t, l, bh, bw] = args.box;
const small = c.upsampleIndex(u8(args.q), args.h, args.w, bh, bw);
const boxed = c.blendBox(new Uint8ClampedArray(image), image, args.W, small, t, l, bh, bw,
                         u8(args.lut), args.opacity, c.thresholdLevel(args.threshold));
const big2 = c.enlargeRGBA({H: args.H, W: args.W, rgba: boxed}, 2);
c.frameRGBA(big2, 2 * 30, 2 * 20, 2 * 30 + 2 * 16, 2 * 20 + 2 * 16, 2, [255, 255, 255]);
const picks = [[1, [], 5], [2, [-1, 4, 0], 5], [0, [-1, 4, 0], 5], [3, [-1, 4, 0], 5], [1, [9], 5]]
  .map(([v, of, K]) => c.shownMap(v, of, K));
process.stdout.write(JSON.stringify({big: Array.from(big), overlay: rgb(out),
                                     tiles: rgb(tiles.rgba), H: tiles.H, W: tiles.W,
                                     boxed: rgb(big2.rgba), picks}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not installed")
def test_canvas_js_computes_what_render_computes(tmp_path):
    """canvas.js's own functions, run in Node, against render.py: to the bit."""
    rng = np.random.default_rng(3)
    q = rng.integers(0, 256, (7, 5)).astype(np.uint8)
    image = rng.integers(0, 256, (45, 31, 3)).astype(np.uint8)
    maps = rng.integers(0, 256, (6, 3, 4)).astype(np.uint8)
    items, lut = [4, 0, 5, 2, 1], render.colormap_lut("jet")
    args = dict(
        q=q.ravel().tolist(), h=7, w=5, H=45, W=31, image=image.ravel().tolist(),
        lut=lut.ravel().tolist(), opacity=0.45000000000000007, threshold=0.3,
        maps=maps.ravel().tolist(), mh=3, mw=4, items=items, up=3, box=[5, 7, 20, 12],
    )  # fmt: skip
    got = run_in_node(tmp_path, NODE_CHECK, args)
    want = render.upsample_index(q, (45, 31))
    np.testing.assert_array_equal(np.reshape(got["big"], (45, 31)), want)
    want = render.overlay_index(image, q, 0.45000000000000007, "jet", threshold=0.3)
    np.testing.assert_array_equal(np.reshape(got["overlay"], want.shape), want)
    tiles = render.index_tiles(maps, items, "jet", pad=1, upscale=3)
    assert (got["H"], got["W"]) == tiles.shape[:2]
    np.testing.assert_array_equal(np.reshape(got["tiles"], tiles.shape), tiles)
    # The box and the enlargement, against the kernel's canvas composing the same.
    canvas = PictureCanvas(cmaps=("jet",), mode="overlay", upscale=2, map_box=[5, 7, 20, 12])
    canvas.mark_y, canvas.mark_x, canvas.mark_size = 30, 20, 16  # clipped at the border
    canvas.set_image(image)
    canvas.set_maps(q[None], [[0, 1]])
    canvas.opacity, canvas.threshold = 0.45000000000000007, 0.3
    want = canvas.compose()
    np.testing.assert_array_equal(np.reshape(got["boxed"], want.shape), want)
    assert got["picks"] == [1, 0, -1, -1, -1]
    canvas.close()


def test_canvas_tiles_state_clicks_and_bytes():
    maps = np.random.default_rng(4).integers(0, 256, (10, 4, 4)).astype(np.uint8)
    canvas = PictureCanvas(cmaps=("viridis", "gray"), mode="tiles", click_selects=True)
    canvas.set_maps(maps, [[0.0, 2.0]] * 10, [f"ch {k}" for k in range(10)])
    canvas.orders = [list(range(10)), list(range(9, -1, -1))]
    canvas.upscale, canvas.ring, canvas.per_page = 2, 1, 4
    assert len(canvas.maps) == maps.size and len(canvas.luts) == 2 * 768
    assert canvas.bytes_sent == maps.size + 2 * 768
    np.testing.assert_array_equal(
        canvas.compose(), render.index_tiles(maps, [0, 1, 2, 3], "viridis", pad=1, upscale=2)
    )
    canvas.sort, canvas.page = 1, 1  # reversed order, second page: items 5, 4, 3, 2
    assert canvas.page_items() == [5, 4, 3, 2]
    canvas.use_colormap("gray")
    grid = render.index_tiles(maps, [5, 4, 3, 2], "gray", pad=1, upscale=2)
    canvas.selected = 3
    box = canvas.box_of(3)
    assert box == (9, 0, 17, 8)  # tile 2: second row, first column, 8 px tiles
    np.testing.assert_array_equal(canvas.compose(), render.ring(grid, box, 1))
    # A click message from the page: callbacks get picture pixels.
    clicks = []
    canvas.on_click(lambda y, x: clicks.append((y, x)))
    canvas._handle_custom_msg({"event": "click", "y": 1.5, "x": 10.0}, [])
    assert clicks == [(1.5, 10.0)]
    canvas.click(1.0, 10.0)  # the same from Python also selects, as the page does
    assert canvas.selected == 4 and canvas.item_at(8.5, 3) == -1  # a separator
    canvas.use_colormap("magma")  # not offered: its table is sent then
    assert canvas.lut_names == ["viridis", "gray", "magma"] and canvas.cmap == 2
    canvas.close()


def test_canvas_overlay_and_image_modes():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    maps = rng.integers(0, 256, (3, 5, 5)).astype(np.uint8)
    canvas = PictureCanvas(cmaps=("jet",), mode="overlay")
    canvas.set_image(image)
    assert canvas.image == image.tobytes() and canvas.image_shape == [20, 30]
    canvas.set_maps(maps, [[0, 1]] * 3)
    canvas.shown, canvas.opacity, canvas.threshold = 2, 0.6, 0.2
    want = render.overlay_index(image, maps[2], 0.6, "jet", 0.2)
    np.testing.assert_array_equal(canvas.compose(), want)
    canvas.mode = "image"
    canvas.set_image(image, png=True)
    assert canvas.image_format == "png" and render.from_png(canvas.image).shape == (20, 30, 3)
    np.testing.assert_array_equal(canvas.compose(), image)
    canvas.close()


def test_canvas_overlay_picks_boxes_enlarges_captions_and_reloads():
    """'overlay' as the comparator uses it: a control's value picks the map
    through shown_of, the map may cover a box only, the picture is enlarged and
    each map has its caption strip; from_state (a saved notebook's state)
    composes the same picture."""
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, (10, 12, 3)).astype(np.uint8)
    maps = rng.integers(0, 256, (3, 10, 12)).astype(np.uint8)
    strips = np.stack(
        [render.caption(np.zeros((0, 36, 3), np.uint8), f"map {k}") for k in range(3)]
    )
    canvas = PictureCanvas(cmaps=("jet", "gray"), mode="overlay", upscale=3)
    canvas.set_image(image, png=True)
    canvas.set_maps(maps, [[0, 2.0]] * 3, ["a", "b", "c"])
    canvas.set_captions(strips)
    canvas.shown_of, canvas.shown, canvas.cmap = [-1, 2, 0], 1, 1
    assert canvas.map_shown == 2 and canvas.caption_height == 16
    want = render.caption(
        render.enlarge(render.overlay_index(image, maps[2], 0.4, "gray"), 3), "map 2"
    )
    np.testing.assert_array_equal(canvas.compose(), want)
    assert canvas.image_point(16 + 7, 35) == (7 / 3, 35 / 3) and canvas.image_point(3, 3) is None
    canvas.shown = 0  # not sent: the kernel draws the bare photo under a blank line
    assert canvas.map_shown == -1
    np.testing.assert_array_equal(canvas.compose()[16:], render.enlarge(image, 3))
    canvas.shown, canvas.map_box = 2, [2, 3, 4, 5]
    boxed = image.copy()
    boxed[2:6, 3:8] = render.overlay_index(image[2:6, 3:8], maps[0], 0.4, "gray")
    np.testing.assert_array_equal(canvas.compose()[16:], render.enlarge(boxed, 3))
    state = {k: getattr(canvas, k) for k in canvas.traits(sync=True) if not k.startswith("_")}
    again = PictureCanvas.from_state(state)
    np.testing.assert_array_equal(again.compose(), canvas.compose())
    assert canvas.bytes_sent == len(canvas.image) + maps.size + 2 * 768 + len(canvas.captions)
    canvas.close()
    again.close()


NODE_PICTURE_TILES = """
import * as c from "./canvas.mjs";
import { readFileSync } from "node:fs";
const args = JSON.parse(readFileSync(0, "utf8"));
const u8 = (a) => Uint8Array.from(a);
const rgb = (rgba) => Array.from(rgba).filter((_, i) => i % 4 !== 3);
// The gallery's page: pictures tiled as they are, under the page's caption strip
// (the strips arrive as a decoded PNG: RGBA, which rgbOf turns back into RGB).
const tiles = c.tilesRGBA(u8(args.pictures), args.h, args.w, args.items, args.cols, 1, 1,
                          null, 3);
const strips = {H: args.capH, W: args.capW, rgba: new Uint8ClampedArray(args.capRGBA)};
const page = c.withCaption(tiles, strips, args.page, args.ch);
const narrow = c.withCaption(tiles, {H: args.capH, W: args.capW - 1, rgba: strips.rgba},
                             args.page, args.ch);
process.stdout.write(JSON.stringify({page: rgb(page.rgba), H: page.H, W: page.W,
                                     narrow: rgb(narrow.rgba).slice(0, args.ch * page.W * 3),
                                     back: Array.from(c.rgbOf(u8([1, 2, 3, 255, 4, 5, 6, 0])))}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not installed")
def test_canvas_js_tiles_pictures_under_page_captions(tmp_path):
    """'tiles' of (K, h, w, 3) pictures (the filter gallery's pages) under the
    page's caption strip: canvas.js against the kernel's canvas, to the bit."""
    rng = np.random.default_rng(7)
    pictures = rng.integers(0, 256, (7, 5, 4, 3)).astype(np.uint8)
    canvas = PictureCanvas(mode="tiles", pad=1, cols=3, per_page=4)
    canvas.set_maps(pictures, None, [f"filter {k}" for k in range(7)], png=True)
    canvas.orders, canvas.page = [list(range(7))], 1  # items 4, 5, 6
    width = 3 * (4 + 1) - 1
    strips = np.stack([render.caption(np.zeros((0, width, 3), np.uint8), f"p {k}") for k in (0, 1)])
    canvas.set_captions(strips)
    atlas = strips.reshape(-1, width, 3)
    rgba = np.concatenate([atlas, np.full(atlas.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    args = dict(
        pictures=pictures.ravel().tolist(), h=5, w=4, items=canvas.page_items(), cols=3,
        page=1, ch=16, capH=atlas.shape[0], capW=width, capRGBA=rgba.ravel().tolist(),
    )  # fmt: skip
    got = run_in_node(tmp_path, NODE_PICTURE_TILES, args)
    want = canvas.compose()
    assert want.shape == (16 + 5, width, 3) and (got["H"], got["W"]) == want.shape[:2]
    np.testing.assert_array_equal(np.reshape(got["page"], want.shape), want)
    np.testing.assert_array_equal(want[:16], strips[1])
    np.testing.assert_array_equal(want[16:], render.tile(pictures[[4, 5, 6]], cols=3, pad=1))
    assert set(got["narrow"]) == {255}  # a strip of another width: a white line
    assert got["back"] == [1, 2, 3, 4, 5, 6]
    # The PNG atlas travels losslessly; from the saved state the same page is drawn.
    state = {k: getattr(canvas, k) for k in canvas.traits(sync=True) if not k.startswith("_")}
    again = PictureCanvas.from_state(state)
    np.testing.assert_array_equal(again.compose(), want)
    canvas.selected, canvas.ring = 5, 1
    assert canvas.box_of(5) == (16, 5, 21, 9) and canvas.item_at(16 + 2, 6) == 5
    assert canvas.item_at(3, 6) == -1  # the caption line is no tile
    again.close()
    canvas.close()


def test_rescale_index_is_plain_scaling():
    q = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for gain in (1.0, 0.3719, 0.0, 2.5, 1e-9, 255.0):
        want = [[min(255, int(np.floor(float(v) * gain + 0.5))) for v in row] for row in q]
        np.testing.assert_array_equal(render.rescale_index(q, gain), np.array(want, np.uint8))
    # A map quantized at its own peak, drawn on a larger scale, is within one
    # index of quantizing it on that scale directly.
    x = np.random.default_rng(8).uniform(0, 3.0, (40, 40)).astype(np.float32)
    direct = render.colour_index(x / 7.0)
    remapped = render.rescale_index(render.colour_index(x / x.max()), float(x.max()) / 7.0)
    assert np.abs(direct.astype(int) - remapped.astype(int)).max() <= 1


NODE_VARIANTS = """
import * as c from "./canvas.mjs";
import { readFileSync } from "node:fs";
const args = JSON.parse(readFileSync(0, "utf8"));
const u8 = (a) => Uint8Array.from(a);
const table = Array.from(c.rescaleIndex(u8(Array.from({length: 256}, (_, v) => v)),
                                        c.gainOf(args.gains, 1, args.variant)));
// 'overlay' of map 1 on variant v: indices times gains[1][v], over frame v of the image.
const [H, W] = [args.H, args.W];
const frames = new Uint8ClampedArray(args.frames.length / 3 * 4);
args.frames.forEach((v, i) => { frames[4 * Math.floor(i / 3) + (i % 3)] = v; });
const f = c.frameOf(args.variant, frames.length / (H * W * 4));
const image = frames.subarray(f * H * W * 4, (f + 1) * H * W * 4);
const gain = c.gainOf(args.gains, 1, args.variant);
const src = c.sourceOf(args.sources, 1, args.variant, 3);
const n = args.h * args.w;
const q = c.rescaleIndex(u8(args.maps).subarray(src * n, (src + 1) * n), gain);
const big = c.upsampleIndex(q, args.h, args.w, H, W);
const out = c.blendRGBA(new Uint8ClampedArray(image), image, big, u8(args.lut), 0.5, 0);
const rgb = Array.from(out).filter((_, i) => i % 4 !== 3);
process.stdout.write(JSON.stringify({table, overlay: rgb, f, gain, src,
  defaults: [c.gainOf([], 0, 1), c.gainOf([[2, 3]], 0, 5), c.frameOf(4, 3), c.frameOf(1, 1),
             c.sourceOf([], 1, 0, 3), c.sourceOf([[0, 7]], 0, 1, 3)]}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not installed")
@pytest.mark.parametrize("variant", [0, 1, 2, 3])
def test_canvas_js_variants_rescale_maps_and_pick_frames(tmp_path, variant):
    """``variant`` (the comparator's scale mode, jslinked): map k drawn as the
    indices of map sources[k][variant] times gains[k][variant], over frame
    ``variant`` of the image (the last when fewer): canvas.js against the
    kernel's canvas, to the bit."""
    rng = np.random.default_rng(9)
    frames = rng.integers(0, 256, (3, 9, 11, 3)).astype(np.uint8)
    maps = rng.integers(0, 256, (3, 3, 4)).astype(np.uint8)
    gains = [[1.0, 1.0, 1.0], [1.0, 0.4142135623730951, 3.7]]
    sources = [[], [1, 1, 2]]  # map 1 under variant 2: map 2's indices
    canvas = PictureCanvas(cmaps=("jet",), mode="overlay", opacity=0.5)
    canvas.set_image(frames, png=True)
    canvas.set_maps(maps, [[0, 2.0], [0, 5.0], [0, 1.0]])
    canvas.gains, canvas.sources, canvas.shown, canvas.variant = gains, sources, 1, variant
    args = dict(
        frames=frames.ravel().tolist(), H=9, W=11, maps=maps.ravel().tolist(), h=3, w=4,
        gains=gains, sources=sources, variant=variant,
        lut=render.colormap_lut("jet").ravel().tolist(),
    )  # fmt: skip
    got = run_in_node(tmp_path, NODE_VARIANTS, args)
    gain = gains[1][variant] if variant < 3 else 1.0
    src = 2 if variant == 2 else 1
    assert got["gain"] == canvas.gain_of(1) == gain and got["f"] == min(variant, 2)
    assert got["src"] == canvas.source_of(1) == src
    np.testing.assert_array_equal(got["table"], render.rescale_index(np.arange(256), gain))
    want = canvas.compose()
    frame = frames[min(variant, 2)]
    np.testing.assert_array_equal(
        want, render.overlay_index(frame, render.rescale_index(maps[src], gain), 0.5, "jet")
    )
    np.testing.assert_array_equal(np.reshape(got["overlay"], want.shape), want)
    assert got["defaults"] == [1, 1, 2, 0, 1, 0]
    state = {k: getattr(canvas, k) for k in canvas.traits(sync=True) if not k.startswith("_")}
    again = PictureCanvas.from_state(state)
    np.testing.assert_array_equal(again.compose(), want)
    again.close()
    canvas.close()


NODE_PAIR = """
import * as c from "./canvas.mjs";
import { readFileSync } from "node:fs";
const args = JSON.parse(readFileSync(0, "utf8"));
const u8 = (a) => Uint8Array.from(a);
const [H, W, n] = [args.H, args.W, args.H * args.W];
const image = new Uint8ClampedArray(n * 4);
args.image.forEach((v, i) => { image[4 * Math.floor(i / 3) + (i % 3)] = v; });
const strips = {H: args.capH, W: args.capW, rgba: new Uint8ClampedArray(args.capRGBA)};
// Two panels from one image and one set of maps: each its map over the image,
// enlarged twice, under its own caption strip; then side by side.
const panel = (k, p) => {
  const out = c.blendRGBA(new Uint8ClampedArray(image), image,
                          u8(args.maps).subarray(k * n, (k + 1) * n), u8(args.lut), 0.4, 0);
  const big = c.enlargeRGBA({H, W, rgba: out}, 2);
  return c.withCaption(big, strips, c.captionIndex(k, p, args.capH / 16, 2), 16);
};
const pair = c.hstackRGBA(panel(args.first, 0), panel(args.second, 1), 6);
const rgb = Array.from(pair.rgba).filter((_, i) => i % 4 !== 3);
process.stdout.write(JSON.stringify({pair: rgb, H: pair.H, W: pair.W,
  idx: [c.captionIndex(2, 1, 6, 2), c.captionIndex(-1, 1, 6, 2), c.captionIndex(2, 0, 3, 1)]}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not installed")
def test_canvas_js_draws_two_panels_from_one_transfer(tmp_path):
    """'overlay' with a second panel (the comparator's pinned and slider panels
    of one method row): one image and one set of maps, two maps drawn side by
    side, each under its own caption: canvas.js against the kernel, to the bit."""
    rng = np.random.default_rng(10)
    image = rng.integers(0, 256, (6, 7, 3)).astype(np.uint8)
    maps = rng.integers(0, 256, (3, 6, 7)).astype(np.uint8)
    blank = np.zeros((0, 14, 3), np.uint8)
    strips = np.stack(
        [render.caption(blank, f"{p} {k}") for p in ("pinned", "slider") for k in range(3)]
    )
    canvas = PictureCanvas(cmaps=("jet",), mode="overlay", upscale=2)
    canvas.set_image(image, png=True)
    canvas.set_maps(maps, [[0, 1.0]] * 3, ["a", "b", "c"])
    canvas.set_captions(strips)
    canvas.shown_of, canvas.shown = [2, 0, 1], 0  # panel 0: map 2
    canvas.second_shown_of, canvas.second_shown = [-1, 1, 0], 1  # panel 1: map 1
    assert canvas.panels == 2 and canvas.map_in(0) == 2 and canvas.map_in(1) == 1
    want = canvas.compose()
    left = render.caption(render.enlarge(render.overlay_index(image, maps[2], 0.4), 2), "pinned 2")
    right = render.caption(render.enlarge(render.overlay_index(image, maps[1], 0.4), 2), "slider 1")
    np.testing.assert_array_equal(want, render.hstack([left, right], pad=6))
    atlas = strips.reshape(-1, 14, 3)
    rgba = np.concatenate([atlas, np.full(atlas.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    args = dict(
        image=image.ravel().tolist(), H=6, W=7, maps=maps.ravel().tolist(), first=2, second=1,
        lut=render.colormap_lut("jet").ravel().tolist(), capH=atlas.shape[0], capW=14,
        capRGBA=rgba.ravel().tolist(),
    )  # fmt: skip
    got = run_in_node(tmp_path, NODE_PAIR, args)
    assert (got["H"], got["W"]) == want.shape[:2] and got["idx"] == [5, -1, 2]
    np.testing.assert_array_equal(np.reshape(got["pair"], want.shape), want)
    # Clicks: each panel's image pixels; the gap between them is no panel.
    assert canvas.panel_point(16 + 3, 5) == (0, 1.5, 2.5)
    assert canvas.panel_point(16 + 3, 14 + 6 + 5) == (1, 1.5, 2.5)
    assert canvas.panel_point(16 + 3, 14 + 2) is None and canvas.panel_point(3, 5) is None
    state = {k: getattr(canvas, k) for k in canvas.traits(sync=True) if not k.startswith("_")}
    again = PictureCanvas.from_state(state)
    np.testing.assert_array_equal(again.compose(), want)
    again.close()
    canvas.close()
