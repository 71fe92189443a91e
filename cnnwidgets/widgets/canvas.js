// The picture canvas of cnnwidgets (anywidget front end of widgets/canvas.py).
//
// The kernel sends the image and the maps once, as binary buffers (uint8 colour
// indices, the colour tables as 256 x 3 uint8); everything a control changes
// afterwards (map shown, colour map, opacity, threshold, sort, page, selection,
// variant: scale and frame) is drawn here, in the next animation frame, with no
// message to the kernel. The compositing mirrors cnnwidgets/render.py
// (threshold_level, rescale_index, upsample_index, overlay_index, index_tiles,
// tile, ring) operation for operation in float64, so the kernel's `view` and
// this canvas agree pixel for pixel.
//
// Wheel zooms about the pointer, drag pans, double click resets; hover shows
// the value under the pointer; a click (no drag) sends {event: "click", y, x}
// in picture pixels and, over a tile, selects that tile's item.

const SEPARATOR = 255;
const SELECTION = [230, 30, 30];
const MARK = [255, 255, 255]; // render.frame's colour (the occlusion patch)

function bytesOf(model, name) {
  const v = model.get(name);
  if (!v) return new Uint8Array(0);
  if (v instanceof Uint8Array) return v;
  if (v instanceof DataView || ArrayBuffer.isView(v)) {
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  return new Uint8Array(0);
}

export function gridShape(n, cols) {
  const c = cols > 0 ? cols : Math.max(1, Math.ceil(Math.sqrt(n)));
  return [Math.ceil(n / c), c];
}

// render.threshold_level
export function thresholdLevel(t) {
  return Math.floor(t * 255 + 0.5);
}

// render.upsample_index: bilinear, pixel centres aligned, float64, round half up.
export function upsampleIndex(q, h, w, H, W) {
  if (h === H && w === W) return q;
  const axis = (n, big) => {
    const i0 = new Int32Array(big), i1 = new Int32Array(big), f = new Float64Array(big);
    for (let k = 0; k < big; k++) {
      let s = ((k + 0.5) * n) / big - 0.5;
      s = Math.min(Math.max(s, 0), n - 1);
      const a = Math.floor(s);
      i0[k] = a;
      i1[k] = Math.min(a + 1, n - 1);
      f[k] = s - a;
    }
    return [i0, i1, f];
  };
  const [y0, y1, fy] = axis(h, H);
  const [x0, x1, fx] = axis(w, W);
  const out = new Uint8Array(H * W);
  for (let y = 0; y < H; y++) {
    const r0 = y0[y] * w, r1 = y1[y] * w, b = fy[y], a = 1 - b;
    for (let x = 0; x < W; x++) {
      const c0 = x0[x], c1 = x1[x], g = fx[x], e = 1 - g;
      const top = q[r0 + c0] * e + q[r0 + c1] * g;
      const bottom = q[r1 + c0] * e + q[r1 + c1] * g;
      const v = Math.floor(top * a + bottom * b + 0.5);
      out[y * W + x] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}

// render.index_tiles: (H, W) RGBA of the tiles, tile k showing map items[k]
// of the (K, h, w) indices `data`, enlarged `up` times, separators white.
// With channels 3, `data` holds (K, h, w, 3) RGB pictures drawn as they are
// (render.tile of pictures) and `table` is not read.
export function tilesRGBA(data, h, w, items, cols, pad, up, table, channels = 1) {
  const n = h * w * channels;
  const K = n ? Math.floor(data.length / n) : 0;
  const [rows, c] = gridShape(items.length, cols);
  const th = h * up, tw = w * up;
  const H = Math.max(rows * (th + pad) - pad, 0), W = Math.max(c * (tw + pad) - pad, 0);
  const out = new Uint8ClampedArray(H * W * 4).fill(SEPARATOR);
  for (let k = 0; k < items.length; k++) {
    const m = items[k];
    if (m < 0 || m >= K) continue;
    const base = m * h * w;
    const top = Math.floor(k / c) * (th + pad), left = (k % c) * (tw + pad);
    for (let y = 0; y < th; y++) {
      const row = base + Math.floor(y / up) * w;
      let o = ((top + y) * W + left) * 4;
      for (let x = 0; x < tw; x++, o += 4) {
        const src = channels === 3 ? data : table;
        const q = channels === 3 ? (row + Math.floor(x / up)) * 3 : data[row + Math.floor(x / up)] * 3;
        out[o] = src[q];
        out[o + 1] = src[q + 1];
        out[o + 2] = src[q + 2];
      }
    }
  }
  return { H, W, rgba: out };
}

// A caption strip above a picture (canvas.py's compose): strip k of the
// strips `cap` ({H, W, rgba}, strips of `ch` rows stacked), or a white line
// when that strip is not there or its width is not the picture's.
export function withCaption(pic, cap, k, ch) {
  if (ch <= 0) return pic;
  const out = new Uint8ClampedArray((pic.H + ch) * pic.W * 4).fill(255);
  if (cap && k >= 0 && cap.W === pic.W && (k + 1) * ch <= cap.H) {
    out.set(cap.rgba.subarray(k * ch * cap.W * 4, (k + 1) * ch * cap.W * 4), 0);
  }
  out.set(pic.rgba, ch * pic.W * 4);
  return { H: pic.H + ch, W: pic.W, rgba: out };
}

// render.hstack of two pictures: side by side, top-aligned, `gap` white
// columns between them, on white.
export function hstackRGBA(a, b, gap) {
  const H = Math.max(a.H, b.H), W = a.W + gap + b.W;
  const out = new Uint8ClampedArray(H * W * 4).fill(255);
  const place = (pic, left) => {
    for (let y = 0; y < pic.H; y++) {
      out.set(pic.rgba.subarray(y * pic.W * 4, (y + 1) * pic.W * 4), (y * W + left) * 4);
    }
  };
  place(a, 0);
  place(b, a.W + gap);
  return { H, W, rgba: out };
}

// The caption strip of map k in panel p, of `strips` strips shared by `panels`
// panels (the first panel's, then the second's; canvas.py _compose_overlay).
export function captionIndex(k, panel, strips, panels) {
  return k >= 0 ? k + panel * Math.floor(strips / panels) : -1;
}

// RGBA pixels (a decoded PNG) -> RGB rows.
export function rgbOf(rgba) {
  const out = new Uint8Array((rgba.length / 4) * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    out[j] = rgba[i];
    out[j + 1] = rgba[i + 1];
    out[j + 2] = rgba[i + 2];
  }
  return out;
}

// render.overlay_index over a box of the picture (canvas.py's map_box): the
// (bh, bw) indices `big` blended into rows top.., columns left.. of `out`, a
// copy of `image`, both W pixels wide RGBA.
export function blendBox(out, image, W, big, top, left, bh, bw, table, a, level) {
  const ia = 1 - a;
  for (let y = 0; y < bh; y++) {
    for (let x = 0; x < bw; x++) {
      const q = big[y * bw + x];
      if (q < level) continue;
      const o = ((top + y) * W + left + x) * 4;
      for (let c = 0; c < 3; c++) {
        out[o + c] = Math.floor(ia * image[o + c] + a * table[3 * q + c] + 0.5);
      }
    }
  }
  return out;
}

// render.enlarge: nearest neighbour, an integer factor.
export function enlargeRGBA(pic, up) {
  if (up <= 1) return pic;
  const H = pic.H * up, W = pic.W * up;
  const out = new Uint8ClampedArray(H * W * 4);
  for (let y = 0; y < H; y++) {
    const src = Math.floor(y / up) * pic.W;
    for (let x = 0; x < W; x++) {
      const i = (src + Math.floor(x / up)) * 4, o = (y * W + x) * 4;
      out[o] = pic.rgba[i];
      out[o + 1] = pic.rgba[i + 1];
      out[o + 2] = pic.rgba[i + 2];
      out[o + 3] = 255;
    }
  }
  return { H, W, rgba: out };
}

// render.frame: the `width` pixels just inside box (top, left, bottom, right),
// clipped to the picture, in `colour`.
export function frameRGBA(pic, top, left, bottom, right, width, colour) {
  const t = Math.max(top, 0), l = Math.max(left, 0);
  const b = Math.min(bottom, pic.H), r = Math.min(right, pic.W);
  if (t >= b || l >= r || width <= 0) return pic;
  const paint = (y0, y1, x0, x1) => {
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const o = (y * pic.W + x) * 4;
        pic.rgba[o] = colour[0];
        pic.rgba[o + 1] = colour[1];
        pic.rgba[o + 2] = colour[2];
      }
    }
  };
  paint(t, Math.min(t + width, b), l, r);
  paint(Math.max(b - width, t), b, l, r);
  paint(t, b, l, Math.min(l + width, r));
  paint(t, b, Math.max(r - width, l), r);
  return pic;
}

// render.rescale_index: indices times `gain` (>= 0), floor(q * gain + 0.5)
// clipped to 255, through a 256-entry table; the same array when gain is 1.
export function rescaleIndex(q, gain) {
  if (gain === 1) return q;
  const table = new Uint8Array(256);
  for (let v = 0; v < 256; v++) {
    const r = Math.floor(v * gain + 0.5);
    table[v] = r < 0 ? 0 : r > 255 ? 255 : r;
  }
  const out = new Uint8Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = table[q[i]];
  return out;
}

// The gain map k is drawn with under `variant` (canvas.py gain_of): 1 unless given.
export function gainOf(gains, k, variant) {
  const row = gains && gains[k];
  return row && variant >= 0 && variant < row.length ? row[variant] : 1;
}

// The map whose indices are drawn for map k under `variant` (canvas.py
// source_of): sources[k][variant] when given and sent, else k itself.
export function sourceOf(sources, k, variant, K) {
  const row = sources && sources[k];
  const s = row && variant >= 0 && variant < row.length ? row[variant] : k;
  return s >= 0 && s < K ? s : k;
}

// The frame of a stacked image drawn under `variant`: the last when fewer.
export function frameOf(variant, frames) {
  return Math.min(Math.max(variant, 0), frames - 1);
}

// The map drawn in 'overlay' mode: `shown`, through `shownOf` when it is given;
// -1 when that map is not (yet) here.
export function shownMap(shown, shownOf, K) {
  let k = shown;
  if (shownOf && shownOf.length) k = k >= 0 && k < shownOf.length ? shownOf[k] : -1;
  return k >= 0 && k < K ? k : -1;
}

// render.overlay_index's blend, in place on `out` (a copy of the image):
// floor((1 - a) * image + a * colour + 0.5) where the index reaches `level`.
export function blendRGBA(out, image, big, table, a, level) {
  const ia = 1 - a;
  for (let i = 0, o = 0; i < big.length; i++, o += 4) {
    const q = big[i];
    if (q < level) continue;
    for (let c = 0; c < 3; c++) {
      out[o + c] = Math.floor(ia * image[o + c] + a * table[3 * q + c] + 0.5);
    }
  }
  return out;
}

function render({ model, el }) {
  el.classList.add("cnnwidgets-canvas");
  const screen = document.createElement("canvas");
  screen.className = "cnnwidgets-canvas-screen";
  screen.style.display = "block";
  screen.style.cursor = "crosshair";
  screen.style.touchAction = "none";
  screen.style.imageRendering = "pixelated";
  const readout = document.createElement("div");
  readout.className = "cnnwidgets-canvas-readout";
  readout.style.font = "12px monospace";
  readout.style.minHeight = "16px";
  readout.style.whiteSpace = "pre";
  el.appendChild(screen);
  el.appendChild(readout);
  const picture = document.createElement("canvas"); // the composed picture, unzoomed
  el.cwPicture = picture; // read back by the browser test and the benchmark

  const cache = {}; // decoded buffers and intermediate pictures, by version
  const view = { zoom: 1, ox: 0, oy: 0 };
  let frame = null;
  let painted = 0;
  let framesRGBA = null; // Uint8ClampedArray of the image's frames (F * H * W * 4), decoded
  let imageVersion = 0;
  let captionRGBA = null; // {H, W, rgba} of the caption strips, once decoded
  let captionVersion = 0;
  let captionsSet = 0; // bumped when decoded strips arrive (the tiles' cache key)
  let mapsRGB = null; // RGB tiles sent as a PNG atlas, once decoded
  let mapsVersion = 0;

  const lut = () => {
    const k = Math.max(0, model.get("cmap") || 0);
    const all = bytesOf(model, "luts");
    return all.subarray(k * 768, k * 768 + 768);
  };
  // The maps: (K, h, w) colour indices, or (K, h, w, 3) RGB pictures (c = 3),
  // raw or (maps_format 'png') decoded from the PNG of their (K * h, w) atlas.
  const mapsInfo = () => {
    const [K, h, w, c] = model.get("maps_shape") || [0, 0, 0];
    const channels = c || 1;
    if (model.get("maps_format") === "png") {
      const ok = mapsRGB && mapsRGB.length === K * h * w * 3;
      return { K: ok ? K : 0, h, w, c: channels, data: ok ? mapsRGB : new Uint8Array(0) };
    }
    return { K, h, w, c: channels, data: bytesOf(model, "maps") };
  };
  const pageItems = () => {
    const orders = model.get("orders") || [];
    const order = orders[model.get("sort")];
    if (!order || !order.length) return null; // a sort not computed yet: keep the picture
    const per = model.get("per_page") || order.length;
    const page = model.get("page") || 0;
    return order.slice(page * per, (page + 1) * per);
  };

  // Tile geometry: {items, cols, th, tw, pad, top, left}, or null.
  const geometry = () => {
    const items = pageItems();
    if (!items) return null;
    const pad = model.get("pad");
    const [rows, cols] = gridShape(items.length, model.get("cols"));
    if (model.get("mode") === "tiles") {
      const { h, w } = mapsInfo();
      const up = model.get("upscale") || 1;
      const top = model.get("caption_height") || 0; // the page's caption line above
      return { items, rows, cols, th: h * up, tw: w * up, pad, top, left: 0 };
    }
    const [th, tw] = model.get("tile_hw") || [0, 0];
    if (!th || !tw) return null;
    const [top, left] = model.get("tile_origin") || [0, 0];
    return { items, rows, cols, th, tw, pad, top, left };
  };

  async function decodePNG(bytes, W, H) {
    const blob = new Blob([bytes], { type: "image/png" });
    const bitmap = await createImageBitmap(blob, {
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
    });
    const w = W || bitmap.width, h = H || bitmap.height;
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    return { H: h, W: w, rgba: ctx.getImageData(0, 0, w, h).data };
  }

  async function decodeCaptions() {
    const version = ++captionVersion;
    const bytes = bytesOf(model, "captions");
    const pic = bytes.length ? await decodePNG(bytes, 0, 0) : null;
    if (version === captionVersion) {
      captionRGBA = pic;
      captionsSet += 1;
      schedule();
    }
  }

  async function decodeMaps() {
    const version = ++mapsVersion;
    const bytes = bytesOf(model, "maps");
    const png = model.get("maps_format") === "png" && bytes.length;
    const rgb = png ? rgbOf((await decodePNG(bytes, 0, 0)).rgba) : null;
    if (version === mapsVersion) {
      mapsRGB = rgb;
      delete cache.tiles;
      schedule();
    }
  }

  async function decodeImage() {
    const version = ++imageVersion;
    const [H, W] = model.get("image_shape") || [0, 0];
    const bytes = bytesOf(model, "image");
    if (!H || !W || !bytes.length) {
      framesRGBA = null;
      return;
    }
    let rgba;
    if (model.get("image_format") === "png") {
      rgba = (await decodePNG(bytes, 0, 0)).rgba; // every frame, stacked
    } else {
      const n = Math.floor(bytes.length / 3);
      rgba = new Uint8ClampedArray(n * 4);
      for (let i = 0, j = 0; i < n; i++, j += 3) {
        rgba[4 * i] = bytes[j];
        rgba[4 * i + 1] = bytes[j + 1];
        rgba[4 * i + 2] = bytes[j + 2];
        rgba[4 * i + 3] = 255;
      }
    }
    if (version === imageVersion) {
      framesRGBA = rgba;
      delete cache.overlay0;
      delete cache.overlay1;
      schedule();
    }
  }

  // The image drawn now: frame `variant` of the frames sent (canvas.py _image).
  const imageNow = () => {
    const [H, W] = model.get("image_shape") || [0, 0];
    if (!framesRGBA || !H || !W) return null;
    const frames = Math.max(1, Math.floor(framesRGBA.length / (H * W * 4)));
    const f = frameOf(model.get("variant") || 0, frames);
    return framesRGBA.subarray(f * H * W * 4, (f + 1) * H * W * 4);
  };

  // render.index_tiles (or render.tile of pictures) under the page's caption strip.
  function composeTiles(g) {
    const { h, w, c, data } = mapsInfo();
    const up = model.get("upscale") || 1;
    const pic = tilesRGBA(data, h, w, g.items, g.cols, g.pad, up, lut(), c);
    return withCaption(pic, captionRGBA, model.get("page") || 0, model.get("caption_height") || 0);
  }

  // The overlay panels drawn: two when a second one is asked for (canvas.py panels).
  const panels = () => ((model.get("second_shown_of") || []).length ? 2 : 1);
  const shownOfPanel = (panel) => model.get(panel ? "second_shown_of" : "shown_of") || [];
  const shownIn = (panel) =>
    shownMap(model.get(panel ? "second_shown" : "shown"), shownOfPanel(panel), mapsInfo().K);

  // render.overlay_index over the decoded image (or its map_box), enlarged
  // `upscale` times, under the map's caption strip (canvas.py _compose_overlay).
  function composeOverlay(panel) {
    const [H, W] = model.get("image_shape");
    const { K, h, w, data } = mapsInfo();
    const image = imageNow();
    if (!image) return null;
    const k = shownIn(panel);
    if (k < 0 && shownOfPanel(panel).length) return null; // not sent yet: keep the picture
    let pic = { H, W, rgba: new Uint8ClampedArray(image) };
    if (k >= 0) {
      const box = model.get("map_box") || [];
      const [top, left, bh, bw] = box.length === 4 ? box : [0, 0, H, W];
      const v = model.get("variant") || 0;
      const gain = gainOf(model.get("gains"), k, v);
      const src = sourceOf(model.get("sources"), k, v, K);
      const key = `${src}/${K}/${h}/${w}/${bh}/${bw}/${gain}`;
      const slot = `overlay${panel}`;
      if (!cache[slot] || cache[slot].key !== key || cache[slot].data !== data) {
        const q = rescaleIndex(data.subarray(src * h * w, (src + 1) * h * w), gain);
        cache[slot] = { key, data, big: upsampleIndex(q, h, w, bh, bw) };
      }
      blendBox(pic.rgba, image, W, cache[slot].big, top, left, bh, bw, lut(),
        model.get("opacity"), thresholdLevel(model.get("threshold")));
    }
    const up = model.get("upscale") || 1;
    pic = enlargeRGBA(pic, up);
    const n = (model.get("mark_size") || 0) * up;
    if (n > 0) {
      const y = model.get("mark_y") * up, x = model.get("mark_x") * up;
      frameRGBA(pic, y, x, y + n, x + n, model.get("mark_width"), MARK);
    }
    const ch = model.get("caption_height") || 0;
    const strips = captionRGBA && ch > 0 ? Math.floor(captionRGBA.H / ch) : 0;
    return withCaption(pic, captionRGBA, captionIndex(k, panel, strips, panels()), ch);
  }

  // render.ring: the `ring` pixels around the selected item's tile.
  function drawRing(pic, g) {
    const pad = model.get("ring");
    if (!g || pad <= 0) return;
    const k = g.items.indexOf(model.get("selected"));
    if (k < 0) return;
    const t = g.top + Math.floor(k / g.cols) * (g.th + g.pad);
    const l = g.left + (k % g.cols) * (g.tw + g.pad);
    const b = t + g.th, r = l + g.tw;
    const top = Math.max(t - pad, 0), bottom = Math.min(b + pad, pic.H);
    const left = Math.max(l - pad, 0), right = Math.min(r + pad, pic.W);
    const paint = (y0, y1, x0, x1) => {
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) {
          const o = (y * pic.W + x) * 4;
          pic.rgba[o] = SELECTION[0];
          pic.rgba[o + 1] = SELECTION[1];
          pic.rgba[o + 2] = SELECTION[2];
        }
      }
    };
    paint(top, t, left, right);
    paint(b, bottom, left, right);
    paint(top, bottom, left, l);
    paint(top, bottom, r, right);
  }

  function compose() {
    const mode = model.get("mode");
    const g = geometry();
    let pic = null;
    if (mode === "tiles") {
      if (!g) return null;
      const key = [model.get("cmap"), model.get("sort"), model.get("page"), g.items.length,
        model.get("caption_height"), captionsSet];
      const data = mapsInfo().data;
      const hit = cache.tiles && cache.tiles.data === data && cache.tiles.key === key.join("/");
      if (!hit) cache.tiles = { data, key: key.join("/"), pic: composeTiles(g) };
      const base = cache.tiles.pic;
      pic = { H: base.H, W: base.W, rgba: new Uint8ClampedArray(base.rgba) };
    } else if (mode === "overlay") {
      pic = composeOverlay(0);
      if (pic && panels() === 2) {
        const second = composeOverlay(1);
        pic = second ? hstackRGBA(pic, second, model.get("panel_gap")) : null;
      }
    } else if (imageNow()) {
      const [H, W] = model.get("image_shape");
      pic = { H, W, rgba: new Uint8ClampedArray(imageNow()) };
    }
    if (pic) drawRing(pic, g);
    return pic;
  }

  function displayScale(pic) {
    const size = model.get("display_size");
    return size > 0 ? size / Math.max(pic.H, pic.W) : 1;
  }

  function paint() {
    frame = null;
    const pic = compose();
    if (!pic || !pic.H || !pic.W) return;
    if (picture.width !== pic.W || picture.height !== pic.H) {
      picture.width = pic.W;
      picture.height = pic.H;
    }
    const pctx = picture.getContext("2d", { willReadFrequently: true });
    pctx.putImageData(new ImageData(pic.rgba, pic.W, pic.H), 0, 0);
    const s = displayScale(pic);
    const W = Math.round(pic.W * s), H = Math.round(pic.H * s);
    if (screen.width !== W || screen.height !== H) {
      screen.width = W;
      screen.height = H;
      screen.style.width = `${W}px`;
      screen.style.height = `${H}px`;
    }
    const ctx = screen.getContext("2d", { willReadFrequently: true });
    ctx.imageSmoothingEnabled = false;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, W, H);
    const z = s * view.zoom;
    ctx.setTransform(z, 0, 0, z, -view.ox * z, -view.oy * z);
    ctx.drawImage(picture, 0, 0);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    painted += 1;
    el.dataset.painted = String(painted);
    el.dataset.zoom = String(view.zoom);
    // Timed by benchmarks/browser_latency.py: the frame in which the change is drawn.
    el.dispatchEvent(
      new CustomEvent("cnnwidgets-painted", {
        bubbles: true,
        detail: { t: performance.now(), n: painted },
      }),
    );
  }

  function schedule() {
    if (frame === null) frame = requestAnimationFrame(paint);
  }

  // -------------------------------------------------------- pointer

  const toPicture = (event) => {
    const rect = screen.getBoundingClientRect();
    const s = picture.width ? screen.width / picture.width : 1;
    const z = s * view.zoom;
    const cssX = ((event.clientX - rect.left) * screen.width) / Math.max(rect.width, 1);
    const cssY = ((event.clientY - rect.top) * screen.height) / Math.max(rect.height, 1);
    return { x: view.ox + cssX / z, y: view.oy + cssY / z, cssX, cssY };
  };

  const itemAt = (y, x) => {
    const g = geometry();
    if (!g) return { k: -1, g };
    const yy = y - g.top, xx = x - g.left;
    if (yy < 0 || xx < 0) return { k: -1, g };
    const row = Math.floor(yy / (g.th + g.pad)), col = Math.floor(xx / (g.tw + g.pad));
    if (col >= g.cols || yy % (g.th + g.pad) >= g.th || xx % (g.tw + g.pad) >= g.tw) {
      return { k: -1, g };
    }
    const k = row * g.cols + col;
    return { k: k < g.items.length ? k : -1, g, row, col };
  };

  function describe(y, x) {
    const iy = Math.floor(y), ix = Math.floor(x);
    if (iy < 0 || ix < 0 || iy >= picture.height || ix >= picture.width) return "";
    const { K, h, w, data } = mapsInfo();
    const ranges = model.get("ranges") || [];
    const labels = model.get("labels") || [];
    const value = (m, q) => {
      const [lo, hi] = ranges[m] || [0, 1];
      return lo + ((hi - lo) * q) / 255;
    };
    const fmt = (v) => (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : v.toPrecision(4));
    const mode = model.get("mode");
    if (mode === "tiles") {
      const { k, g } = itemAt(y, x);
      if (k < 0) return "";
      const m = g.items[k], up = model.get("upscale") || 1;
      const ty = Math.floor((iy - g.top - Math.floor(k / g.cols) * (g.th + g.pad)) / up);
      const tx = Math.floor((ix - (k % g.cols) * (g.tw + g.pad)) / up);
      const at = m * h * w + ty * w + tx;
      if (mapsInfo().c === 3) {
        const [r, gr, b] = [data[3 * at], data[3 * at + 1], data[3 * at + 2]];
        return `${labels[m] || m}  (${ty}, ${tx})  rgb ${r} ${gr} ${b}`;
      }
      return `${labels[m] || m}  (${ty}, ${tx})  value ${fmt(value(m, data[at]))}`;
    }
    const pctx = picture.getContext("2d", { willReadFrequently: true });
    const px = pctx.getImageData(ix, iy, 1, 1).data;
    let text = `(${iy}, ${ix})  rgb ${px[0]} ${px[1]} ${px[2]}`;
    if (mode === "overlay") {
      // picture pixel -> panel and image pixel: below the caption line, before
      // the enlargement (canvas.py panel_point)
      const up = model.get("upscale") || 1;
      const [, W0] = model.get("image_shape");
      let panel = 0, px0 = ix;
      if (panels() === 2 && ix >= W0 * up) {
        if (ix < W0 * up + model.get("panel_gap")) return "";
        panel = 1;
        px0 = ix - W0 * up - model.get("panel_gap");
      }
      const k = shownIn(panel);
      const ch = model.get("caption_height") || 0;
      const name = k >= 0 ? labels[k] || "" : "";
      if (iy < ch) return name;
      const yy = Math.floor((iy - ch) / up), xx = Math.floor(px0 / up);
      text = `(${yy}, ${xx})  rgb ${px[0]} ${px[1]} ${px[2]}`;
      if (k < 0) return text;
      const [H, W] = model.get("image_shape");
      const box = model.get("map_box") || [];
      const [top, left, bh, bw] = box.length === 4 ? box : [0, 0, H, W];
      const by = yy - top, bx = xx - left;
      if (by < 0 || bx < 0 || by >= bh || bx >= bw) return `${name}  ${text}`;
      const my = Math.min(h - 1, Math.floor((by * h) / bh));
      const mx = Math.min(w - 1, Math.floor((bx * w) / bw));
      const q = data[k * h * w + my * w + mx];
      text = `${name}  ${text}  map ${fmt(value(k, q))}`;
    } else {
      const { k, g } = itemAt(y, x);
      if (k >= 0) text = `${labels[g.items[k]] || g.items[k]}  ${text}`;
    }
    return text;
  }

  let drag = null;
  const onDown = (event) => {
    if (event.button !== 0) return;
    screen.setPointerCapture && screen.setPointerCapture(event.pointerId);
    drag = { x: event.clientX, y: event.clientY, ox: view.ox, oy: view.oy, moved: false };
  };
  const onMove = (event) => {
    const p = toPicture(event);
    readout.textContent = describe(p.y, p.x);
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    if (drag.moved && view.zoom > 1) {
      const z = (picture.width ? screen.width / picture.width : 1) * view.zoom;
      view.ox = drag.ox - dx / z;
      view.oy = drag.oy - dy / z;
      clampView();
      schedule();
    }
  };
  const onUp = (event) => {
    if (!drag) return;
    const wasDrag = drag.moved;
    drag = null;
    if (wasDrag) return;
    const p = toPicture(event);
    if (p.y < 0 || p.x < 0 || p.y >= picture.height || p.x >= picture.width) return;
    if (model.get("click_selects")) {
      const { k, g } = itemAt(p.y, p.x);
      if (k >= 0 && g.items[k] !== model.get("selected")) {
        model.set("selected", g.items[k]);
        model.save_changes();
      }
    }
    model.send({ event: "click", y: p.y, x: p.x });
  };
  const clampView = () => {
    const W = picture.width, H = picture.height;
    view.ox = Math.min(Math.max(view.ox, 0), W - W / view.zoom);
    view.oy = Math.min(Math.max(view.oy, 0), H - H / view.zoom);
  };
  const onWheel = (event) => {
    event.preventDefault();
    const p = toPicture(event);
    const zoom = Math.min(32, Math.max(1, view.zoom * (event.deltaY < 0 ? 1.25 : 0.8)));
    // keep the picture pixel under the pointer where it is
    view.ox = p.x - (p.x - view.ox) * (view.zoom / zoom);
    view.oy = p.y - (p.y - view.oy) * (view.zoom / zoom);
    view.zoom = zoom;
    clampView();
    schedule();
  };
  const onReset = () => {
    view.zoom = 1;
    view.ox = 0;
    view.oy = 0;
    schedule();
  };
  const onLeave = () => {
    readout.textContent = "";
  };
  screen.addEventListener("pointerdown", onDown);
  screen.addEventListener("pointermove", onMove);
  screen.addEventListener("pointerup", onUp);
  screen.addEventListener("pointerleave", onLeave);
  screen.addEventListener("wheel", onWheel, { passive: false });
  screen.addEventListener("dblclick", onReset);

  const drawn = [
    "maps", "maps_shape", "luts", "lut_names", "cmap", "mode", "orders", "sort", "page",
    "per_page", "cols", "pad", "upscale", "tile_hw", "tile_origin", "selected", "ring",
    "shown", "opacity", "threshold", "display_size", "shown_of", "map_box", "caption_height",
    "mark_x", "mark_y", "mark_size", "mark_width", "variant", "gains", "sources",
    "second_shown", "second_shown_of", "panel_gap",
  ];
  const onChange = () => schedule();
  for (const name of drawn) model.on(`change:${name}`, onChange);
  const onImage = () => decodeImage();
  model.on("change:image", onImage);
  model.on("change:image_shape", onImage);
  const onCaptions = () => decodeCaptions();
  model.on("change:captions", onCaptions);
  const onMaps = () => decodeMaps();
  model.on("change:maps", onMaps);
  model.on("change:maps_format", onMaps);
  decodeImage();
  decodeCaptions();
  decodeMaps();
  schedule();

  return () => {
    if (frame !== null) cancelAnimationFrame(frame);
    for (const name of drawn) model.off(`change:${name}`, onChange);
    model.off("change:image", onImage);
    model.off("change:image_shape", onImage);
    model.off("change:captions", onCaptions);
    model.off("change:maps", onMaps);
    model.off("change:maps_format", onMaps);
  };
}

export default { render };
