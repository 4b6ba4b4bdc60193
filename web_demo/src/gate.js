// The look gate in JavaScript: makeup/gate.py's LookGate.apply on the aligned crop, with the crop's regions
// from its face-mesh landmarks (makeup/parsing.py landmarks_to_labels, makeup/metrics.py region_masks), as
// student/apply.py gated_crop does before paste-back. Everything it needs comes from the model card:
// "look_gate" (per-region change ranges, feather) and "regions" (the polygons in fill order, the label
// values, the eye zone's reach) — export/report.py writes both.
//
// The soft region masks (softRegionMasks: makeup/gate.py soft_region_masks) are one computation for two
// users: the gate fades its limits with them, and a region-input model (model_card.json io.region_input)
// reads them as its input channels from 3 on, with the cheeks after them when the card names them
// (cheekMap: makeup/metrics.py cheek_map, its shape from the card's io.region_input.cheeks).
//
// Rasterisation follows cv2.fillPoly (shift = 4, LINE_8): vertices in 1/16 px, rows rounded, edges in 16.16
// fixed point, the outline drawn by cv2's 8-connected line, so the label map matches Python's up to the odd
// pixel on a polygon edge (OpenCV 4.11's drawing.cpp: edges between the rounded vertices, spans from the
// ceiling of the left edge to the floor of the right one). Float arithmetic is float32 where numpy's is.

import {roundEven} from './align.js';

const XY_SHIFT = 16;
const XY_ONE = 2 ** XY_SHIFT;
/** makeup.metrics.FIDELITY_REGIONS: the gate's regions, and the soft masks' order. */
export const GATE_REGIONS = ['eyes', 'lips', 'skin', 'brows'];
/** makeup.gate.INPUT_MASKS: what a region-input model can read after RGB, the gate's regions then the cheeks. */
export const INPUT_MASKS = [...GATE_REGIONS, 'cheeks'];
const CHEEK_KEYS = ['outward', 'drop', 'falloff', 'min_pixels'];

/**
 * The gate a model card carries: {gate, note}. gate is null (run ungated) when the card has no look_gate or
 * no regions entry; note is the one line the page shows.
 */
export function gateFromCard(card, cardName = 'model_card.json') {
  const lg = card?.look_gate;
  if (!lg) return {gate: null, note: `ungated: ${cardName} has no look_gate (an older export): the model's change is not clipped`};
  const reg = card.regions;
  if (!regionsOk(reg)) {
    return {gate: null, note: `ungated: ${cardName} has a look_gate but no "regions" entry: export it again with this toolkit`};
  }
  const bounds = {};
  for (const region of GATE_REGIONS) {
    const b = lg.bounds?.[region];
    bounds[region] = b ? {low: b.low.map(Number), high: b.high.map(Number)} : null;
  }
  const active = GATE_REGIONS.filter((r) => bounds[r]);
  // The basis the ranges are in (makeup.gate OPPONENT; a card without one: plain RGB, as it was written).
  const basis = Array.isArray(lg.basis) && Array.isArray(lg.basis_inverse) && !isIdentity(lg.basis) ?
    {fwd: lg.basis.map((row) => row.map(Math.fround)), inv: lg.basis_inverse.map((row) => row.map(Math.fround))} : null;
  const gate = {bounds, feather: Number(lg.feather ?? 0.02), regions: reg, active, basis};
  return {gate, note: `look gate: ${active.length ? active.join(', ') : 'no region'} may change, the rest keeps the photo`};
}

function regionsOk(reg) {
  return Boolean(reg && Array.isArray(reg.fill) && reg.labels && typeof reg.eye_reach === 'number' &&
                 typeof reg.subpixel_bits === 'number');
}

/**
 * What a region-input model (input channels RGB then the soft region masks) needs from its card:
 * {channels: the mask names in input order, feather, regions}; null when the card says the model takes RGB
 * only (no io.region_input, io.channels 3 or absent: an older export). Throws with the reason when the card
 * says region input but cannot give it (then the page cannot feed the model).
 */
export function regionInputFromCard(card, cardName = 'model_card.json') {
  const ri = card?.io?.region_input;
  if (!ri) return null;
  const channels = Array.isArray(ri.channels) ? ri.channels : [];
  // The 4 gate regions in any order, then optionally the cheeks: INPUT_MASKS' first 4 or 5.
  const known = INPUT_MASKS.slice(0, channels.length);
  if (channels.length < GATE_REGIONS.length || channels.length > INPUT_MASKS.length ||
      !channels.every((c) => known.includes(c)) || new Set(channels).size !== channels.length ||
      ri.first_channel !== 3 || typeof ri.feather !== 'number') {
    throw new Error(`${cardName}: io.region_input ${JSON.stringify({channels: ri.channels, first_channel: ri.first_channel})} ` +
                    `is not the page's (RGB in channels 0-2, then the masks of ${GATE_REGIONS.join(', ')}, and cheeks)`);
  }
  let cheeks = null;
  if (channels.includes('cheeks')) {
    const c = ri.cheeks;
    if (!c || !CHEEK_KEYS.every((k) => typeof c[k] === 'number') || !Array.isArray(c.spread) || c.spread.length !== 2) {
      throw new Error(`${cardName}: io.region_input has the cheeks but not their shape (io.region_input.cheeks): export it again with this toolkit`);
    }
    cheeks = {outward: c.outward, drop: c.drop, spread: c.spread.map(Number), falloff: c.falloff, min_pixels: c.min_pixels};
  }
  if (!regionsOk(card.regions)) {
    throw new Error(`${cardName}: io.region_input needs the "regions" entry (the face-mesh polygons): export it again with this toolkit`);
  }
  return {channels: channels.slice(), feather: ri.feather, regions: card.regions, cheeks};
}

function isIdentity(m) {
  return m.every((row, i) => row.every((v, j) => Number(v) === (i === j ? 1 : 0)));
}

function floorShift(v) { // int64 >> XY_SHIFT (arithmetic, floors)
  return Math.floor(v / XY_ONE);
}

/** cv2.clipLine on integer points (in place); true when some of the segment is inside w x h. */
function clipLine(w, h, p1, p2) {
  const right = w - 1, bottom = h - 1;
  const code = (p) => (p[0] < 0) + (p[0] > right) * 2 + (p[1] < 0) * 4 + (p[1] > bottom) * 8;
  let c1 = code(p1), c2 = code(p2);
  if ((c1 & c2) === 0 && (c1 | c2) !== 0) {
    if (c1 & 12) {
      const a = c1 < 8 ? 0 : bottom;
      p1[0] += Math.trunc((a - p1[1]) * (p2[0] - p1[0]) / (p2[1] - p1[1]));
      p1[1] = a;
      c1 = (p1[0] < 0) + (p1[0] > right) * 2;
    }
    if (c2 & 12) {
      const a = c2 < 8 ? 0 : bottom;
      p2[0] += Math.trunc((a - p2[1]) * (p2[0] - p1[0]) / (p2[1] - p1[1]));
      p2[1] = a;
      c2 = (p2[0] < 0) + (p2[0] > right) * 2;
    }
    if ((c1 & c2) === 0 && (c1 | c2) !== 0) {
      if (c1) {
        const a = c1 === 1 ? 0 : right;
        p1[1] += Math.trunc((a - p1[0]) * (p2[1] - p1[1]) / (p2[0] - p1[0]));
        p1[0] = a;
        c1 = 0;
      }
      if (c2) {
        const a = c2 === 1 ? 0 : right;
        p2[1] += Math.trunc((a - p2[0]) * (p2[1] - p1[1]) / (p2[0] - p1[0]));
        p2[0] = a;
        c2 = 0;
      }
    }
  }
  return (c1 | c2) === 0;
}

/** cv2's Line(img, pt1, pt2, color, 8): LineIterator (clipped, left to right, 8-connected Bresenham). */
function drawLine(labels, w, h, a, b, value) {
  let p1 = a.slice(), p2 = b.slice();
  const outside = (p) => p[0] < 0 || p[0] >= w || p[1] < 0 || p[1] >= h;
  if ((outside(p1) || outside(p2)) && !clipLine(w, h, p1, p2)) return;
  let dx = p2[0] - p1[0], dy = p2[1] - p1[1];
  let sx = 1, sy = 1;
  if (dx < 0) { dx = -dx; dy = -dy; [p1, p2] = [p2, p1]; }
  if (dy < 0) { dy = -dy; sy = -1; }
  const vert = dy > dx;
  if (vert) [dx, dy] = [dy, dx];
  let err = dx - 2 * dy;
  let x = p1[0], y = p1[1];
  for (let i = 0; i <= dx; i++) {
    if (x >= 0 && x < w && y >= 0 && y < h) labels[y * w + x] = value;
    const minor = err < 0;
    err += -2 * dy + (minor ? 2 * dx : 0);
    if (vert) { y += sy; if (minor) x += sx; } else { x += sx; if (minor) y += sy; }
  }
}

/** cv2.fillPoly(labels, [poly], value, LINE_8, shift) for one polygon of integer (fixed-point) vertices. */
export function fillPoly(labels, w, h, poly, value, shift) {
  const delta = (1 << shift) >> 1;
  const up = 2 ** (XY_SHIFT - shift);
  const edges = [];
  const conv = (p) => [p[0] * up, (p[1] + delta) >> shift];
  let pt0 = conv(poly[poly.length - 1]);
  for (let i = 0; i < poly.length; i++) {
    const pt1 = conv(poly[i]);
    const t0 = [floorShift(pt0[0] + XY_ONE / 2), pt0[1]], t1 = [floorShift(pt1[0] + XY_ONE / 2), pt1[1]];
    drawLine(labels, w, h, t0, t1, value);
    // The edges run between the rounded vertices (clipped to the image where a vertex lies outside it).
    let c0y = pt0[1], c1y = pt1[1];
    if (t0[0] < 0 || t0[0] >= w || t1[0] < 0 || t1[0] >= w || t0[1] < 0 || t0[1] >= h || t1[1] < 0 || t1[1] >= h) {
      clipLine(w, h, t0, t1);
      if (t0[1] !== t1[1]) { c0y = t0[1]; c1y = t1[1]; }
    }
    const c0 = [t0[0] * XY_ONE, c0y], c1 = [t1[0] * XY_ONE, c1y];
    if (pt0[1] !== pt1[1]) {
      const dx = Math.trunc((c1[0] - c0[0]) / (c1[1] - c0[1]));
      if (pt0[1] < pt1[1]) edges.push({y0: pt0[1], y1: pt1[1], x: c0[0] + (pt0[1] - c0[1]) * dx, dx});
      else edges.push({y0: pt1[1], y1: pt0[1], x: c1[0] + (pt1[1] - c1[1]) * dx, dx});
    }
    pt0 = pt1;
  }
  if (edges.length < 2) return;
  let yMin = Infinity, yMax = -Infinity;
  for (const e of edges) { yMin = Math.min(yMin, e.y0); yMax = Math.max(yMax, e.y1); }
  // Scanline fill between pairs of active edges (y0 <= y < y1), x at row y = x + (y - y0) * dx.
  const xs = [];
  for (let y = Math.max(yMin, 0); y < Math.min(yMax, h); y++) {
    xs.length = 0;
    for (const e of edges) if (e.y0 <= y && y < e.y1) xs.push(e.x + (y - e.y0) * e.dx);
    xs.sort((a, b) => a - b);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      let x1 = floorShift(xs[k] + XY_ONE - 1), x2 = floorShift(xs[k + 1]);
      if (x1 >= w || x2 < 0) continue;
      x1 = Math.max(x1, 0); x2 = Math.min(x2, w - 1);
      labels.fill(value, y * w + x1, y * w + x2 + 1);
    }
  }
}

/** makeup.parsing.landmarks_to_labels on a size x size crop: Uint8Array label map (card "regions"). */
export function landmarksToLabels(landmarks, regions, size) {
  const labels = new Uint8Array(size * size);
  const shift = regions.subpixel_bits;
  const scale = 2 ** shift;
  for (const {label, points} of regions.fill) {
    const poly = points.map((i) => [roundEven(landmarks[i][0] * scale), roundEven(landmarks[i][1] * scale)]);
    fillPoly(labels, size, size, poly, regions.labels[label], shift);
  }
  return labels;
}

/** Square max filter of radius r (F.max_pool2d, padding outside the image never wins). */
function maxFilter(mask, n, r) {
  if (r <= 0) return mask.slice();
  const tmp = new Uint8Array(n * n), out = new Uint8Array(n * n);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      let m = 0;
      for (let j = Math.max(x - r, 0); j <= Math.min(x + r, n - 1) && !m; j++) m = mask[y * n + j];
      tmp[y * n + x] = m;
    }
  }
  for (let x = 0; x < n; x++) {
    for (let y = 0; y < n; y++) {
      let m = 0;
      for (let j = Math.max(y - r, 0); j <= Math.min(y + r, n - 1) && !m; j++) m = tmp[j * n + x];
      out[y * n + x] = m;
    }
  }
  return out;
}

/** makeup.metrics.region_masks: {eyes: eye zone, lips, skin outside the zone, brows} as 0/1 Uint8Arrays. */
export function regionMasks(labels, regions, size) {
  const L = regions.labels, n = size * size;
  const is = (v) => { const m = new Uint8Array(n); for (let i = 0; i < n; i++) m[i] = labels[i] === v ? 1 : 0; return m; };
  const zone = maxFilter(is(L.eyes), size, roundEven(regions.eye_reach * size));
  const skin = is(L.skin);
  for (let i = 0; i < n; i++) skin[i] &= 1 - zone[i];
  return {eyes: zone, lips: is(L.lips), skin, brows: is(L.brows)};
}

/** cv2.getGaussianKernel for a float image: ksize 0 (the default) is round(sigma * 8 + 1) | 1, float32 taps. */
export function gaussianKernel(sigma, ksize = 0) {
  const k = ksize > 0 ? ksize : roundEven(sigma * 8 + 1) | 1;
  const taps = new Float32Array(k);
  const scale2X = -0.5 / (sigma * sigma);
  let sum = 0;
  for (let i = 0; i < k; i++) {
    const x = i - (k - 1) * 0.5;
    taps[i] = Math.exp(scale2X * x * x);
    sum += taps[i];
  }
  for (let i = 0; i < k; i++) taps[i] = taps[i] / sum;
  return taps;
}

/** Rows and columns [y0, y1] x [x0, x1] holding a mask's ones, or null. */
function bbox(mask, n) {
  let x0 = n, x1 = -1, y0 = n, y1 = -1;
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      if (mask[y * n + x]) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = y; }
    }
  }
  return y1 < 0 ? null : {x0, x1, y0, y1};
}

/**
 * cv2.GaussianBlur(mask, (0, 0), sigma, borderType=BORDER_CONSTANT) of a 0/1 mask -> Float32Array and the box
 * it can be non-zero in (the mask's box grown by the kernel's radius). Zero taps are skipped: adding 0 changes
 * no float sum, so the values are those of the full convolution.
 */
function blurConstant(mask, n, taps) {
  const r = (taps.length - 1) / 2;
  const out = new Float32Array(n * n);
  const b = bbox(mask, n);
  if (!b) return {m: out, box: null};
  const X0 = Math.max(b.x0 - r, 0), X1 = Math.min(b.x1 + r, n - 1);
  const Y0 = Math.max(b.y0 - r, 0), Y1 = Math.min(b.y1 + r, n - 1);
  const tmp = new Float32Array(n * n);
  for (let y = b.y0; y <= b.y1; y++) {
    const row = y * n;
    for (let x = X0; x <= X1; x++) {
      let acc = 0;
      const j0 = Math.max(-r, -x), j1 = Math.min(r, n - 1 - x);
      for (let j = j0; j <= j1; j++) if (mask[row + x + j]) acc += taps[j + r];
      tmp[row + x] = acc;
    }
  }
  for (let y = Y0; y <= Y1; y++) {
    const j0 = Math.max(-r, b.y0 - y), j1 = Math.min(r, b.y1 - y);
    for (let x = X0; x <= X1; x++) {
      let acc = 0;
      for (let j = j0; j <= j1; j++) acc += taps[j + r] * tmp[(y + j) * n + x];
      out[y * n + x] = acc;
    }
  }
  return {m: out, box: {x0: X0, x1: X1, y0: Y0, y1: Y1}};
}

/**
 * makeup/metrics.py cheek_centres: each cheek's blob centre read from the label map, {cx, cy, width, outward} per
 * seen eye, in pixel indices (float64 as numpy). The eye pixels are split at the lips' mean column (left:
 * < mid, outward -1, first; right: >= mid, outward 1); an eye side with at least shape.min_pixels pixels
 * (width = its column span + 1) has its centre shape.outward * width outward of the eye's mean column and
 * shape.drop of the way from the eye's mean row to the lips'. None with fewer than shape.min_pixels lip pixels.
 * `L`: the label values of the eyes and lips ({eyes, lips}). prior.js' cheek frame reads it too.
 */
export function cheekCentres(labels, L, size, shape) {
  const n = size, out = [];
  let lipCount = 0, lipX = 0, lipY = 0;
  for (let i = 0; i < n * n; i++) {
    if (labels[i] === L.lips) { lipCount++; lipX += i % n; lipY += Math.floor(i / n); }
  }
  if (lipCount < shape.min_pixels) return out;
  const mid = lipX / lipCount, lipsY = lipY / lipCount;
  for (const outward of [-1, 1]) {
    let count = 0, sumX = 0, sumY = 0, x0 = n, x1 = -1;
    for (let i = 0; i < n * n; i++) {
      if (labels[i] !== L.eyes) continue;
      const x = i % n;
      if ((x < mid) !== (outward < 0)) continue;
      count++; sumX += x; sumY += Math.floor(i / n);
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
    }
    if (count < shape.min_pixels) continue;
    const width = x1 - x0 + 1, eyeX = sumX / count, eyeY = sumY / count;
    out.push({cx: eyeX + outward * shape.outward * width, cy: eyeY + shape.drop * (lipsY - eyeY), width, outward});
  }
  return out;
}

/**
 * makeup/metrics.py cheek_map (without the skin): Float32Array size*size in [0, 1]. Around each of cheekCentres
 * (width w), a Gaussian exp(-falloff * d^2) along x in spread[0] w and along y in spread[1] w; the max of the
 * eyes; zeros without lips. Float64 as numpy, one float32 cast.
 */
export function cheekMap(labels, regions, size, shape) {
  const n = size;
  const out = new Float32Array(n * n);
  const columns = new Float64Array(n);
  for (const {cx, cy, width} of cheekCentres(labels, regions.labels, size, shape)) {
    for (let x = 0; x < n; x++) {
      const d = (x - cx) / (shape.spread[0] * width);
      columns[x] = Math.exp(-shape.falloff * d * d);
    }
    for (let y = 0; y < n; y++) {
      const d = (y - cy) / (shape.spread[1] * width);
      const gy = Math.exp(-shape.falloff * d * d);
      for (let x = 0; x < n; x++) {
        const v = Math.fround(gy * columns[x]);
        if (v > out[y * n + x]) out[y * n + x] = v;
      }
    }
  }
  return out;
}

/**
 * makeup/gate.py soft_region_masks: the 4 region masks of a label map (regionMasks: eye zone, lips, skin
 * outside the zone, brows), each cv2.GaussianBlur(m, (0, 0), sigma, BORDER_CONSTANT) with
 * sigma = max(feather * size / 2, 1e-3) (feather 0: the hard masks, as float). Returns
 * {masks: {eyes, lips, skin, brows} (Float32Array size*size each), boxes: the same keys, the rows and
 * columns a mask can be non-zero in (null: all zero), hard: the unblurred 0/1 masks (Uint8Array), feather}.
 * What the look gate fades its limits with and what a region-input model reads. With `cheeks` (the card's
 * io.region_input.cheeks shape) also masks.cheeks = cheekMap times the soft skin (makeup/gate.py input_masks).
 */
export function softRegionMasks(labels, regions, size, feather, cheeks = null) {
  const hard = regionMasks(labels, regions, size);
  const taps = feather > 0 ? gaussianKernel(Math.max(feather * size / 2, 1e-3)) : null;
  const masks = {}, boxes = {};
  for (const region of GATE_REGIONS) {
    const {m, box} = taps ? blurConstant(hard[region], size, taps) :
      {m: Float32Array.from(hard[region]), box: bbox(hard[region], size)};
    masks[region] = m;
    boxes[region] = box;
  }
  if (cheeks) {
    const c = cheekMap(labels, regions, size, cheeks);
    for (let i = 0; i < c.length; i++) c[i] = Math.fround(c[i] * masks.skin[i]);
    masks.cheeks = c;
    boxes.cheeks = boxes.skin;
  }
  return {masks, boxes, hard, feather};
}

/**
 * LookGate.limits: per-pixel low and high change limits (Float32Array n*n*3 each), feathered outward: a region's
 * weight is 1 on its own pixels, and where no region the gate bounds holds the pixel, its soft mask (the
 * weighted average fades the limits over the band outside the regions). ``soft`` is softRegionMasks of the
 * crop's labels at the gate's feather.
 */
export function gateLimits(gate, soft, size) {
  if (soft.feather !== gate.feather) throw new Error(`gateLimits: masks at feather ${soft.feather}, the gate's is ${gate.feather}`);
  const n = size * size;
  const lo = new Float32Array(n * 3), hi = new Float32Array(n * 3), weight = new Float32Array(n);
  const inside = new Uint8Array(n); // a pixel of a region the gate bounds: only those regions' own limits hold
  for (const region of GATE_REGIONS) {
    if (!gate.bounds[region]) continue;
    const h = soft.hard[region];
    for (let i = 0; i < n; i++) inside[i] |= h[i];
  }
  for (const region of GATE_REGIONS) {
    const b = gate.bounds[region];
    const m = soft.masks[region], h = soft.hard[region], box = soft.boxes[region];
    if (!b || !box) continue;
    const low = b.low.map(Math.fround), high = b.high.map(Math.fround);
    for (let y = box.y0; y <= box.y1; y++) {
      for (let i = y * size + box.x0; i <= y * size + box.x1; i++) {
        const w = h[i] ? 1 : inside[i] ? 0 : m[i];
        if (w === 0) continue;
        for (let c = 0; c < 3; c++) {
          lo[i * 3 + c] = Math.fround(lo[i * 3 + c] + Math.fround(w * low[c]));
          hi[i * 3 + c] = Math.fround(hi[i * 3 + c] + Math.fround(w * high[c]));
        }
        weight[i] = Math.fround(weight[i] + w);
      }
    }
  }
  for (let i = 0; i < n; i++) {
    const over = weight[i];
    if (over <= 1) continue; // max(weight, 1): dividing by 1 changes nothing
    for (let c = 0; c < 3; c++) {
      lo[i * 3 + c] = Math.fround(lo[i * 3 + c] / over);
      hi[i * 3 + c] = Math.fround(hi[i * 3 + c] / over);
    }
  }
  return {lo, hi};
}

/**
 * LookGate.apply: the prediction's change clipped to [lo, hi] per pixel (RGBA crops in, RGBA out), in float32:
 * d = pred / 255 - src / 255; with a basis, e = B d clipped and d = B^-1 e (each output (m0 x0 + m1 x1) + m2 x2,
 * makeup/gate.py _mix); round((src + d) * 255), half to even.
 */
export function applyLimits(crop, processed, lo, hi, basis = null) {
  const n = crop.length / 4;
  const out = new Uint8ClampedArray(crop.length);
  const s = new Float32Array(3), d = new Float32Array(3), e = new Float32Array(3);
  const mix = (m, x, y) => {
    for (let k = 0; k < 3; k++) {
      y[k] = Math.fround(Math.fround(Math.fround(m[k][0] * x[0]) + Math.fround(m[k][1] * x[1])) + Math.fround(m[k][2] * x[2]));
    }
  };
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      s[c] = Math.fround(crop[i * 4 + c] / 255);
      d[c] = Math.fround(Math.fround(processed[i * 4 + c] / 255) - s[c]);
    }
    if (basis) mix(basis.fwd, d, e); else e.set(d);
    for (let c = 0; c < 3; c++) e[c] = Math.min(Math.max(e[c], lo[i * 3 + c]), hi[i * 3 + c]);
    if (basis) mix(basis.inv, e, d); else d.set(e);
    for (let c = 0; c < 3; c++) {
      out[i * 4 + c] = Math.min(255, Math.max(0, roundEven(Math.fround(Math.fround(s[c] + d[c]) * 255))));
    }
    out[i * 4 + 3] = 255;
  }
  return out;
}

/**
 * student/apply.py gated_crop's gate step: the gated crop, given the crop's soft region masks at the gate's
 * feather (softRegionMasks of the label map the caller parsed once for the model and the gate).
 */
export function gateCrop(gate, crop, processed, soft, size) {
  const {lo, hi} = gateLimits(gate, soft, size);
  return applyLimits(crop, processed, lo, hi, gate.basis);
}
