// The look prior in JavaScript: makeup/lookprior.py LookPrior.paint(crop, labels) on the page's aligned crop and its
// label map (gate.js landmarksToLabels), for a prior-input model (model_card.json io.prior_input: the painted prior is
// the model's last 3 input channels). The parameters come from look_prior.json beside the model (LookPrior.to_dict():
// region_prior, region_colour, template_eyes, template_eyes_lid, template_eyes_liner, template_eyes_lab, template_lips,
// template_lips_lab, template_cheeks, template_cheeks_lab, models, gate, radius; template_eyes_lid,
// template_eyes_liner, template_eyes_lab, template_lips_lab, template_cheeks and template_cheeks_lab are optional, as
// makeup.lookprior.OPTIONAL_ARRAYS: a file written before those frames has none and paints without them). The templates
// are laid in makeup.lookprior.TEMPLATE_FRAMES' order, eyes, eyes_lid, eyes_liner, eyes_lab, lips, lips_lab, cheeks,
// cheeks_lab, a later frame replacing an earlier one where both hold a pixel. The eyes_lid frame counts the height over
// the upper lash line in lid heights past EYE_LID_FROM eye widths (makeup.render.eye_frame lid_from); eyes_liner and
// eyes_lab do too, from the lash line the liner is drawn on, with u the place between the eye's corner columns
// (eye_frame liner). A lab frame (eyes_lab, lips_lab, cheeks_lab) is painted on the photo in CIELAB: per cell and
// channel k + a (pixel - mean) + b (mean - LIP_TONE), the mean over the face's pixels in the frame; eyes_lab clamps
// pixel - mean to its cell's range (6 more values a cell); eyes_lab and cheeks_lab add their change to the region prior
// and models.
//
// Every piece follows its Python twin with the same arithmetic: float32 where numpy is float32 (Math.fround
// after each operation; numpy 1.x casting: a Python scalar meets a float32 array as float32, an np.float32
// scalar meets a Python float as float64), and OpenCV 4.11's semantics where the prior calls cv2:
// * GaussianBlur on float32: float32 taps (gate.js gaussianKernel), ksize round(8 sigma + 1) | 1 when 0,
//   border replicate (makeup.regions.feather, FaceGeometry) or reflect-101 (cv2's default: region_weight);
// * connectedComponentsWithStats, 8-connectivity: components labelled in the order of their first 2x2 block in
//   a raster scan of blocks (Bolelli's Spaghetti, cv2's default), so equal areas sort as in Python;
// * cvtColor RGB2Lab on float32: cv2 interpolates a 33^3 table of the sRGB -> Lab map (built once here, as
//   color_lab.cpp builds it: initLUTforLABLUVs16, trilinearInterpolate); Lab2RGB on float32: the formulas,
//   the clip to [0, 1] and the spline inverse gamma table (splineBuild / splineInterpolate);
// * bilateralFilter on float32 3-channel images (bilateral_filter.dispatch.cpp / .simd.hpp): reflect-101
//   border, the circular window without its centre, the colour distance |db| + |dg| + |dr| looked up in
//   expLUT (4096 bins per channel over the image's min..max) with linear interpolation, the centre added with
//   weight 1;
// * np.polyfit (least squares on the column-scaled Vandermonde matrix, here by Householder QR in float64) and
//   np.polyval (Horner in float32, as numpy 1.x evaluates a float32 x);
// * np.hypot on float64 (the cheek frame's nearer cheek): glibc's hypot (sysdeps/ieee754/dbl-64/e_hypot.c,
//   2.35+, the kernel without FMA as the x86-64 build runs it), not Math.hypot, which rounds differently.
// The frames' float64 parts (the cheek centres, makeup.metrics.cheek_centres: gate.js cheekCentres; the cheek
// frame's distances and offsets) are computed in float64 and cast once, as numpy does.
import {cheekCentres, gaussianKernel} from './gate.js';

const f32 = Math.fround;
const OTHER = 0, EYES = 1, LIPS = 2, SKIN = 3, BROWS = 4;
const MAKEUP_REGIONS = [EYES, LIPS, SKIN, BROWS];
const TEMPLATE_CHANNELS = 11;
/**
 * makeup.lookprior.TEMPLATE_FRAMES: u and v ranges, cell sizes, fade, additive (the template adds to the region
 * prior and models instead of replacing them where it has support), lab (painted in CIELAB on the photo);
 * FRAME_ORDER: the order they are laid in.
 */
const FRAMES = {
  eyes: {u: [-1.3, 1.9], v: [-0.8, 1.6], step: [0.025, 0.025], fade: 0.3},
  eyes_lid: {u: [-1.3, 1.9], v: [-0.8, 1.6], step: [0.025, 0.025], fade: 0.3},
  eyes_liner: {u: [-1.3, 1.9], v: [-0.8, 1.6], step: [0.025, 0.0125], fade: 0.3},
  eyes_lab: {u: [-1.3, 1.9], v: [-0.8, 1.6], step: [0.025, 0.0125], fade: 0.3, lab: true, additive: true, clamp: true},
  lips: {u: [0.0, 0.7], v: [-0.8, 0.8], step: [0.05, 0.1], fade: 0},
  lips_lab: {u: [0.0, 0.7], v: [-0.8, 0.8], step: [0.05, 0.1], fade: 0, lab: true},
  cheeks: {u: [-1.6, 1.6], v: [-1.2, 1.2], step: [0.1, 0.1], fade: 0.3, additive: true},
  cheeks_lab: {u: [-1.6, 1.6], v: [-1.2, 1.2], step: [0.1, 0.1], fade: 0.3, lab: true, additive: true},
};
const FRAME_ORDER = ['eyes', 'eyes_lid', 'eyes_liner', 'eyes_lab', 'lips', 'lips_lab', 'cheeks', 'cheeks_lab'];
// makeup.lookprior.OPTIONAL_ARRAYS: absent from older files
const OPTIONAL_TEMPLATES = ['eyes_lid', 'eyes_liner', 'eyes_lab', 'eyes_band10', 'eyes_band15', 'lips_lab', 'cheeks', 'cheeks_lab'];
// makeup.lookprior.LAB_RANGE_CHANNELS: a lab frame that clamps keeps its cells' range of d after the 11 values
const LAB_RANGE_CHANNELS = 6;
const LID_REF = 0.45; // makeup.render.LID_REF: eye widths per lid height
const EYE_LID_FROM = 0.1; // makeup.lookprior.EYE_LID_FROM
const EYE_BANDS = {eyes_band10: 0.10, eyes_band15: 0.15}; // makeup.lookprior.EYE_BANDS
const LID_BLEND = 0.1; // makeup.lookprior.LID_BLEND
const EYE_CORNER = 0.025; // makeup.lookprior.EYE_CORNER
// the banded eye frames: eyes_lab's cells in eye_frame with lid_blend and corner
for (const name of Object.keys(EYE_BANDS)) FRAMES[name] = {...FRAMES.eyes_lab};
FRAME_ORDER.splice(FRAME_ORDER.indexOf('eyes_lab') + 1, 0, ...Object.keys(EYE_BANDS));
const LIP_TONE = [50.0, 25.0, 10.0].map(f32); // makeup.lookprior.LIP_TONE: a lab frame's mean is measured from it
/** makeup.metrics CHEEK_OUT, CHEEK_DROP, CHEEK_MIN_PIXELS: where cheek_centres puts each cheek. */
const CHEEK_SHAPE = {outward: 0.3, drop: 0.5, min_pixels: 4};
for (const fr of Object.values(FRAMES)) {
  fr.nv = Math.round((fr.v[1] - fr.v[0]) / fr.step[1]);
  fr.nu = Math.round((fr.u[1] - fr.u[0]) / fr.step[0]);
  fr.channels = TEMPLATE_CHANNELS + (fr.lab && fr.clamp ? LAB_RANGE_CHANNELS : 0); // TemplateFrame.channels
}
// makeup.region_models: (diameter at 256, sigma colour, sigma space share), tone references, own channels
const SMOOTHING = [[7, 6.0, 0.006], [15, 12.0, 0.018]];
const TONE_REF = {[SKIN]: [65.0, 12.0, 16.0].map(f32), [BROWS]: [40.0, 8.0, 12.0].map(f32)};
const OWN_CHANNELS = {[SKIN]: [1, 2], [BROWS]: [0, 1, 2]};
const MODELLED_REGIONS = [SKIN, BROWS];
const FEATURES = 5;
// makeup.region_models.DARK_KNOTS: each coefficient is given at these darknesses (region mean L - pixel L)
const DARK_KNOTS = [-8.0, -2.0, 4.0, 10.0, 16.0].map(f32);
const COEFFICIENTS = FEATURES * DARK_KNOTS.length; // a region's coefficients: feature major, then knot
// makeup.region_models.TONE_KNOTS, MODEL_ROWS: after its coefficients a region's tone curve, (knot L, value, slope)
// a row, unused rows zero
const TONE_KNOTS = 7;
const MODEL_ROWS = COEFFICIENTS + TONE_KNOTS;

// ---- the look prior file ----

/**
 * look_prior.json (LookPrior.to_dict) -> the prior the painter reads, values as float32 (np.float32 of the
 * JSON numbers, as LookPrior.from_arrays). Throws with the reason when it is not one.
 */
export function lookPriorFromJson(d, name = 'look_prior.json') {
  const keys = ['region_prior', 'region_colour', 'template_eyes', 'template_lips', 'models', 'gate', 'radius'];
  const missing = keys.filter((k) => !Array.isArray(d?.[k]));
  if (missing.length) throw new Error(`${name}: not a look prior (no ${missing.join(', ')})`);
  const flat = (k) => (d[k] === undefined ? new Float32Array(0) : Float32Array.from(d[k].flat(Infinity), Number));
  const p = {
    regionPrior: flat('region_prior'), regionColour: flat('region_colour'), models: flat('models'),
    gate: flat('gate'), radius: Number(d.radius.flat(Infinity)[0]), templates: {},
  };
  const tpl = {};
  const bad = [];
  for (const n of FRAME_ORDER) {
    if (OPTIONAL_TEMPLATES.includes(n) && d[`template_${n}`] !== undefined && !Array.isArray(d[`template_${n}`])) {
      bad.push(`template_${n} (${FRAMES[n].nv}, ${FRAMES[n].nu}, ${FRAMES[n].channels})`);
    } else tpl[n] = flat(`template_${n}`);
  }
  if (p.regionPrior.length !== 12) bad.push('region_prior (4, 3)');
  if (p.regionColour.length && p.regionColour.length !== 36) bad.push('region_colour (4, 3, 3)');
  if (p.models.length === MODELLED_REGIONS.length * FEATURES * 3) p.models = expandModels(p.models);
  if (p.models.length === MODELLED_REGIONS.length * COEFFICIENTS * 3) p.models = padModels(p.models);
  else if (p.models.length && p.models.length !== MODELLED_REGIONS.length * MODEL_ROWS * 3) {
    bad.push(`models (2, ${MODEL_ROWS}, 3)`);
  }
  if (p.gate.length !== 4) bad.push('gate (4,)');
  if (!(p.radius >= 0)) bad.push('radius');
  for (const [n, t] of Object.entries(tpl)) {
    const fr = FRAMES[n];
    if (t.length && t.length !== fr.nv * fr.nu * fr.channels) bad.push(`template_${n} (${fr.nv}, ${fr.nu}, ${fr.channels})`);
    else if (t.length) p.templates[n] = t;
  }
  if (bad.length) throw new Error(`${name}: not a look prior (wrong shape: ${bad.join(', ')})`);
  if (!p.regionColour.length) p.regionColour = null;
  if (!p.models.length) p.models = null;
  return p;
}

/** makeup.region_models.expand_models: a file's models with one coefficient a feature (before the darkness
 * knots) have it at every knot. */
function expandModels(models) {
  const knots = DARK_KNOTS.length;
  const out = new Float32Array(MODELLED_REGIONS.length * COEFFICIENTS * 3);
  for (let r = 0; r < MODELLED_REGIONS.length; r++) {
    for (let k = 0; k < FEATURES; k++) {
      for (let j = 0; j < knots; j++) {
        for (let c = 0; c < 3; c++) out[((r * FEATURES + k) * knots + j) * 3 + c] = models[(r * FEATURES + k) * 3 + c];
      }
    }
  }
  return out;
}

/** makeup.region_models.expand_models: a file's models written before the tone curve have none (zero rows). */
function padModels(models) {
  const out = new Float32Array(MODELLED_REGIONS.length * MODEL_ROWS * 3);
  for (let r = 0; r < MODELLED_REGIONS.length; r++) {
    out.set(models.subarray(r * COEFFICIENTS * 3, (r + 1) * COEFFICIENTS * 3), r * MODEL_ROWS * 3);
  }
  return out;
}

/** makeup.region_models.tone_curve: a region's (knot L, value, slope) rows with a knot (L > 0), or null. */
function toneCurve(rows) {
  const curve = [];
  for (let k = COEFFICIENTS; k < MODEL_ROWS; k++) {
    if (rows[k * 3] > 0) curve.push([rows[k * 3], rows[k * 3 + 1], rows[k * 3 + 2]]);
  }
  return curve.length ? curve : null;
}

/** makeup.region_models.tone_curve_value: the cubic Hermite through the knots (float64), flat beyond them. */
function toneCurveValue(tone, curve) {
  if (curve.length === 1) return curve[0][1];
  const x = curve.map((r) => r[0]), y = curve.map((r) => r[1]), d = curve.map((r) => r[2]);
  const t = Math.min(Math.max(tone, x[0]), x[x.length - 1]);
  let j = 0;
  while (j < x.length - 2 && t >= x[j + 1]) j++;
  const h = x[j + 1] - x[j];
  const s = (t - x[j]) / h;
  return (2 * s ** 3 - 3 * s ** 2 + 1) * y[j] + (s ** 3 - 2 * s ** 2 + s) * h * d[j]
      + (-2 * s ** 3 + 3 * s ** 2) * y[j + 1] + (s ** 3 - s ** 2) * h * d[j + 1];
}

// ---- blur, regions, geometry ----

function borderIndex(border) {
  if (border === 'replicate') return (i, n) => (i < 0 ? 0 : i >= n ? n - 1 : i);
  return (i, n) => { // reflect-101
    if (n === 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
    return i;
  };
}

/** cv2.GaussianBlur of a float32 n x n image (taps: gate.js gaussianKernel), rows then columns, float32 sums. */
function gaussianBlur(src, n, taps, border) {
  const r = (taps.length - 1) / 2, at = borderIndex(border);
  const tmp = new Float32Array(n * n), out = new Float32Array(n * n);
  const idx = new Int32Array(n + 2 * r);
  for (let i = 0; i < n + 2 * r; i++) idx[i] = at(i - r, n);
  for (let y = 0; y < n; y++) {
    const row = y * n;
    for (let x = 0; x < n; x++) {
      let acc = 0;
      for (let k = 0; k < taps.length; k++) acc = f32(acc + f32(taps[k] * src[row + idx[x + k]]));
      tmp[row + x] = acc;
    }
  }
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      let acc = 0;
      for (let k = 0; k < taps.length; k++) acc = f32(acc + f32(taps[k] * tmp[idx[y + k] * n + x]));
      out[y * n + x] = acc;
    }
  }
  return out;
}

function pyRound(v) { // Python's round(): half to even
  const f = Math.floor(v), d = v - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/** makeup.regions.feather (clipped to [0, 1]). */
function feather(mask, n, radius) {
  if (radius <= 0) return mask;
  const sigma = Math.max(radius / 2, 1e-3);
  const k = 2 * pyRound(3 * sigma) + 1;
  const out = gaussianBlur(mask, n, gaussianKernel(sigma, k), 'replicate');
  for (let i = 0; i < out.length; i++) out[i] = Math.min(Math.max(out[i], 0), 1);
  return out;
}

/** makeup.lookprior.region_stack at full resolution: [eyes, lips, skin, brows] Float32Arrays. */
export function regionStack(labels, n, radius) {
  return MAKEUP_REGIONS.map((r) => {
    const m = new Float32Array(n * n);
    for (let i = 0; i < m.length; i++) m[i] = labels[i] === r ? 1 : 0;
    const soft = feather(m, n, radius);
    for (let i = 0; i < soft.length; i++) if (labels[i] === OTHER) soft[i] = 0;
    return soft;
  });
}

function smoothstep(lo, hi, x) { // makeup.render._smoothstep on float32
  let t = f32(f32(x - f32(lo)) / f32(hi - lo));
  t = Math.min(Math.max(t, 0), 1);
  return f32(f32(t * t) * f32(3 - f32(2 * t)));
}

/** cv2.connectedComponentsWithStats(mask, connectivity=8) stats of the foreground components, cv2's order. */
function components(mask, n) {
  const comp = new Int32Array(n * n).fill(-1);
  const list = [];
  const stack = [];
  for (let start = 0; start < n * n; start++) {
    if (!mask[start] || comp[start] >= 0) continue;
    const id = list.length;
    const c = {id, area: 0, x0: n, y0: n, x1: -1, y1: -1, sx: 0, sy: 0, first: Infinity};
    comp[start] = id;
    stack.push(start);
    while (stack.length) {
      const i = stack.pop(), x = i % n, y = (i - x) / n;
      c.area++; c.sx += x; c.sy += y;
      c.x0 = Math.min(c.x0, x); c.x1 = Math.max(c.x1, x); c.y0 = Math.min(c.y0, y); c.y1 = Math.max(c.y1, y);
      c.first = Math.min(c.first, (y >> 1) * n + (x >> 1)); // its 2x2 blocks, in raster order of blocks
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx, yy = y + dy;
          if (xx < 0 || yy < 0 || xx >= n || yy >= n) continue;
          const j = yy * n + xx;
          if (mask[j] && comp[j] < 0) { comp[j] = id; stack.push(j); }
        }
      }
    }
    list.push(c);
  }
  list.sort((a, b) => a.first - b.first); // cv2's labels: first block of each component, in scan order
  return {comp, list};
}

/** makeup.render.FaceGeometry.from_labels: what the eye and lip frames and the skin model need. */
export function faceGeometry(labels, n) {
  const face = new Float32Array(n * n);
  for (let i = 0; i < face.length; i++) face[i] = labels[i] !== OTHER ? 1 : 0;
  const sigma = Math.max(1.5, 0.012 * n);
  const blurred = gaussianBlur(face, n, gaussianKernel(sigma), 'replicate');
  const skinInner = new Float32Array(n * n);
  for (let i = 0; i < face.length; i++) skinInner[i] = labels[i] === SKIN ? smoothstep(0.5, 0.95, blurred[i]) : 0;
  let count = 0, sx = 0, sy = 0, x0 = n, x1 = -1, y0 = n, y1 = -1;
  for (let i = 0; i < n * n; i++) {
    if (labels[i] !== LIPS) continue;
    const x = i % n, y = (i - x) / n;
    count++; sx += x; sy += y;
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  const lipsBox = count >= 4 ? {cx: sx / count, cy: sy / count, w: x1 - x0 + 1, h: y1 - y0 + 1} : null;
  return {n, skinInner, lipsBox, eyes: findEyes(labels, n, lipsBox)};
}

/** makeup.render._find_eyes (what eye_frame reads: columns, lash lines, centre, outer side, lid height). */
function findEyes(labels, n, lipsBox) {
  const mask = new Uint8Array(n * n);
  for (let i = 0; i < mask.length; i++) mask[i] = labels[i] === EYES ? 1 : 0;
  const {comp, list} = components(mask, n);
  const minArea = Math.max(4, Math.trunc(2e-5 * n * n));
  // sorted by area, largest first; Python's sort is stable, so equal areas keep cv2's label order
  const order = list.map((c, k) => ({c, k})).filter(({c}) => c.area >= minArea)
    .sort((a, b) => b.c.area - a.c.area || a.k - b.k).slice(0, 2).map(({c}) => c);
  if (!order.length) return [];
  const centres = order.map((c) => [c.sx / c.area, c.sy / c.area]);
  const faceCx = centres.length === 2 ? (centres[0][0] + centres[1][0]) / 2 : lipsBox ? lipsBox.cx : n / 2;
  return order.map((c, k) => {
    const cols = [], top = [], bottom = [];
    for (let x = c.x0; x <= c.x1; x++) {
      let first = -1, last = -1;
      for (let y = c.y0; y <= c.y1; y++) {
        if (comp[y * n + x] === c.id) { if (first < 0) first = y; last = y; }
      }
      if (first < 0) continue;
      cols.push(x); top.push(first); bottom.push(last + 1);
    }
    const [cx, cy] = centres[k];
    const width = c.x1 - c.x0 + 1;
    return {cols, top, bottom, cx, cy, outward: cx >= faceCx ? 1 : -1, width: cols[cols.length - 1] - cols[0] + 1,
            lid: lidHeight(labels, n, cols, top, width)};
  });
}

/**
 * An eye's lid height (makeup.render._find_eyes): the median over its columns with a brow above of the gap between
 * the lash line and the lowest brow pixel above it (minus one), clipped to 0.25..1.2 widths; 0.6 widths without one.
 */
function lidHeight(labels, n, cols, top, width) {
  const rows = Math.min(...top);
  const gaps = [];
  cols.forEach((x, j) => {
    for (let y = rows - 1; y >= 0; y--) {
      if (labels[y * n + x] === BROWS) { gaps.push(top[j] - y - 1); break; }
    }
  });
  let lid = 0.6 * width;
  if (gaps.length) {
    gaps.sort((a, b) => a - b);
    const h = gaps.length >> 1;
    lid = gaps.length % 2 ? gaps[h] : (gaps[h - 1] + gaps[h]) / 2;
  }
  return Math.min(Math.max(lid, 0.25 * width), 1.2 * width);
}

/** np.polyfit(x, y, deg): least squares on the Vandermonde matrix with unit-norm columns (Householder QR). */
function polyfit(x, y, deg) {
  const m = x.length, k = deg + 1;
  const A = Array.from({length: m}, (_, i) => Array.from({length: k}, (_, j) => x[i] ** (deg - j)));
  const scale = Array.from({length: k}, (_, j) => Math.sqrt(A.reduce((s, row) => s + row[j] * row[j], 0)));
  for (const row of A) for (let j = 0; j < k; j++) row[j] /= scale[j];
  const b = y.slice();
  for (let j = 0; j < k; j++) {
    let norm = 0;
    for (let i = j; i < m; i++) norm += A[i][j] * A[i][j];
    norm = Math.sqrt(norm);
    if (norm === 0) continue;
    const alpha = A[j][j] > 0 ? -norm : norm;
    const v = new Float64Array(m);
    v[j] = A[j][j] - alpha;
    for (let i = j + 1; i < m; i++) v[i] = A[i][j];
    const vv = v.reduce((s, t) => s + t * t, 0);
    if (vv === 0) continue;
    for (let c = j; c < k; c++) {
      let d = 0;
      for (let i = j; i < m; i++) d += v[i] * A[i][c];
      const f = 2 * d / vv;
      for (let i = j; i < m; i++) A[i][c] -= f * v[i];
    }
    let d = 0;
    for (let i = j; i < m; i++) d += v[i] * b[i];
    const f = 2 * d / vv;
    for (let i = j; i < m; i++) b[i] -= f * v[i];
  }
  const coef = new Float64Array(k);
  for (let j = k - 1; j >= 0; j--) {
    let s = b[j];
    for (let c = j + 1; c < k; c++) s -= A[j][c] * coef[c];
    coef[j] = A[j][j] !== 0 ? s / A[j][j] : 0;
  }
  for (let j = 0; j < k; j++) coef[j] /= scale[j];
  return coef;
}

/** makeup.render._smooth_curve as a function of one float32 column centre xx -> float32. */
function smoothCurve(eye, y) {
  const xc = eye.cols.map((c) => c + 0.5);
  const coef = polyfit(xc.map((v) => v - eye.cx), y, Math.min(4, xc.length - 1));
  const c32 = Array.from(coef, f32), cx = f32(eye.cx), lo = xc[0], hi = xc[xc.length - 1];
  return (xx) => {
    const x = f32(Math.min(Math.max(xx, lo), hi) - cx);
    let v = 0;
    for (const c of c32) v = f32(f32(v * x) + c);
    return v;
  };
}

/**
 * makeup.render.liner_line as a function of one float32 column centre xx -> float32: the label map's upper lash line
 * under the 1-2-3-2-1 moving average (exact sums of whole rows, one division), never below it, linear between column
 * centres (np.interp) and level beyond the corners.
 */
function linerLine(eye) {
  const t = eye.top, m = t.length;
  const y = t.map((v, i) => {
    if (m < 5) return v;
    const at = (j) => t[Math.min(Math.max(j, 0), m - 1)];
    return Math.min((at(i - 2) + 2 * at(i - 1) + 3 * at(i) + 2 * at(i + 1) + at(i + 2)) / 9, v);
  });
  const xp = eye.cols.map((c) => c + 0.5);
  return (xx) => {
    if (xx <= xp[0]) return f32(y[0]);
    if (xx >= xp[m - 1]) return f32(y[m - 1]);
    let j = 0;
    while (xp[j + 1] <= xx) j++;
    if (xx === xp[j]) return f32(y[j]);
    return f32((y[j + 1] - y[j]) / (xp[j + 1] - xp[j]) * (xx - xp[j]) + y[j]);
  };
}

/**
 * makeup.render.eye_frame (reach 2, `lidFrom` its lid_from, `liner` its liner: the lash line of linerLine and u
 * the place between the corner columns, `blend` its lid_blend, `corner` its corner): float32 u, v and valid per
 * pixel.
 */
function eyeFrame(labels, g, lidFrom = null, liner = false, blend = null, corner = 0) {
  const n = g.n;
  const u = new Float32Array(n * n), v = new Float32Array(n * n), best = new Float32Array(n * n).fill(Infinity);
  for (const eye of g.eyes) {
    const ew = eye.width, pad = 2.0 * ew;
    const topMin = Math.min(...eye.top), bottomMax = Math.max(...eye.bottom);
    const y0 = Math.max(Math.trunc(topMin - pad) - 1, 0), y1 = Math.min(Math.trunc(bottomMax + pad) + 2, n);
    const x0 = Math.max(Math.trunc(eye.cols[0] - pad) - 1, 0);
    const x1 = Math.min(Math.trunc(eye.cols[eye.cols.length - 1] + pad) + 2, n);
    const topAt = liner ? linerLine(eye) : smoothCurve(eye, eye.top), bottomAt = smoothCurve(eye, eye.bottom);
    const last = eye.cols.length - 1;
    const [inner, outer] = eye.outward > 0 ? [eye.cols[0], eye.cols[last]] : [eye.cols[last], eye.cols[0]];
    const span = Math.max(Math.abs(outer - inner), 1);
    const cx = f32(eye.cx), cy = f32(eye.cy), ew32 = f32(ew);
    const scale64 = LID_REF * ew / eye.lid;
    const from = lidFrom === null ? null : f32(lidFrom), scale = f32(scale64);
    // lid_blend: a slope from the band to the knee, then lid heights (eye_frame's float32 steps)
    const slope64 = blend ? Math.max(scale64 - lidFrom * (1.0 - scale64) / blend, 0.05 * scale64) : null;
    const slope = blend ? f32(slope64) : null, knee = blend ? f32(lidFrom + blend) : null;
    const kneeAt = blend ? f32(lidFrom + blend * slope64) : null;
    const tops = new Float32Array(x1 - x0), bottoms = new Float32Array(x1 - x0), dxs = new Float32Array(x1 - x0);
    for (let x = x0; x < x1; x++) {
      const xx = x + 0.5;
      tops[x - x0] = topAt(xx); bottoms[x - x0] = bottomAt(xx);
      dxs[x - x0] = f32(f32(xx - cx) - 0.5);
    }
    for (let y = y0; y < y1; y++) {
      const yy = y + 0.5, dy = f32(f32(yy - cy) - 0.5);
      for (let x = x0; x < x1; x++) {
        const i = y * n + x, dx = dxs[x - x0];
        const dist = f32(Math.hypot(dx, dy));
        if (!(dist < best[i])) continue;
        best[i] = dist;
        u[i] = liner ? f32((x + 0.5 - inner - 0.5) * eye.outward / span - 0.5) : f32(f32(dx * eye.outward) / ew32);
        const top = tops[x - x0], bottom = bottoms[x - x0];
        let up = f32(f32(top - yy) / ew32);
        if (blend && up > knee) up = f32(kneeAt + f32(f32(up - knee) * scale));
        else if (blend && up > from) up = f32(from + f32(f32(up - from) * slope));
        else if (!blend && from !== null && up > from) up = f32(from + f32(f32(up - from) * scale));
        if (yy < top) v[i] = up;
        else if (!corner) v[i] = yy > bottom ? f32(f32(bottom - yy) / ew32) : 0;
        else if (yy > bottom) v[i] = f32(f32(f32(bottom - yy) / ew32) - f32(corner));
        else v[i] = f32(f32(-corner) * Math.min(Math.max(f32(f32(yy - top) / Math.max(f32(bottom - top), 1)), 0), 1));
      }
    }
  }
  const valid = new Uint8Array(n * n);
  for (let i = 0; i < valid.length; i++) valid[i] = labels[i] === SKIN && best[i] !== Infinity ? 1 : 0;
  return {u, v, valid};
}

/** makeup.render.lip_frame. */
function lipFrame(labels, g) {
  const n = g.n;
  const u = new Float32Array(n * n), v = new Float32Array(n * n), valid = new Uint8Array(n * n);
  const box = g.lipsBox;
  if (!box) return {u, v, valid};
  const cx = f32(box.cx), cy = f32(box.cy), bw = f32(box.w), bh = f32(box.h);
  for (let i = 0; i < n * n; i++) {
    if (labels[i] !== LIPS) continue;
    const x = i % n, y = (i - x) / n;
    valid[i] = 1;
    u[i] = f32(Math.abs(f32(x - cx)) / bw);
    v[i] = f32(f32(y - cy) / bh);
  }
  return {u, v, valid};
}

/** glibc's hypot (e_hypot.c, no FMA) of two finite float64: what np.hypot computes on float64. */
function hypot64(x, y) {
  x = Math.abs(x); y = Math.abs(y);
  let ax = x < y ? y : x;
  const ay = x < y ? x : y;
  const SCALE = 2 ** -600, LARGE = 2 ** 511, TINY = 2 ** -511, EPS = 2 ** -54;
  const kernel = (a, b) => {
    let h = Math.sqrt(a * a + b * b), t1, t2;
    if (h <= 2.0 * b) {
      const delta = h - b;
      t1 = a * (2.0 * delta - a);
      t2 = (delta - 2.0 * (a - b)) * delta;
    } else {
      const delta = h - a;
      t1 = 2.0 * delta * (a - 2.0 * b);
      t2 = (4.0 * delta - b) * b + delta * delta;
    }
    h -= (t1 + t2) / (2.0 * h);
    return h;
  };
  if (ax > LARGE) return ay <= ax * EPS ? ax + ay : kernel(ax * SCALE, ay * SCALE) / SCALE;
  if (ay < TINY) {
    if (ax >= ay / EPS) return ax + ay;
    ax = kernel(ax / SCALE, ay / SCALE) * SCALE;
    return ax;
  }
  if (ay <= ax * EPS) return ax + ay;
  return kernel(ax, ay);
}

/**
 * makeup.render.cheek_frame: each pixel's offset from the nearer cheek centre (Euclidean distance in pixel
 * indices, float64, strict <: a tie goes to the first centre), u = (x - cx) * outward / width, v = (y - cy) /
 * width in float64, cast to float32; valid = the skin, when there is a centre.
 */
function cheekFrame(labels, g) {
  const n = g.n;
  const u = new Float32Array(n * n), v = new Float32Array(n * n), valid = new Uint8Array(n * n);
  const centres = cheekCentres(labels, {eyes: EYES, lips: LIPS}, n, CHEEK_SHAPE);
  if (!centres.length) return {u, v, valid};
  const best = new Float64Array(n * n).fill(Infinity);
  for (const {cx, cy, width, outward} of centres) {
    for (let y = 0; y < n; y++) {
      const dy = y - cy;
      for (let x = 0; x < n; x++) {
        const i = y * n + x, dx = x - cx;
        const dist = hypot64(dx, dy);
        if (!(dist < best[i])) continue;
        best[i] = dist;
        u[i] = f32(dx * outward / width);
        v[i] = f32(dy / width);
      }
    }
  }
  for (let i = 0; i < n * n; i++) valid[i] = labels[i] === SKIN ? 1 : 0;
  return {u, v, valid};
}

/**
 * makeup.lookprior._frames cheek_coords: the cheek frame without the eye grid's core (its rows from v_range[0]
 * + fade down to v_range[1], its whole u range), where the eye template holds at full support. The bounds meet
 * the eye frame's float32 u, v as numpy 1.x compares a float32 array with a Python float: in float32.
 */
function cheekCoords(labels, g, eyeCoords) {
  const {u, v, valid} = cheekFrame(labels, g);
  const e = FRAMES.eyes, {u: eu, v: ev, valid: evalid} = eyeCoords();
  const v0 = f32(e.v[0] + e.fade), v1 = f32(e.v[1]), u0 = f32(e.u[0]), u1 = f32(e.u[1]);
  for (let i = 0; i < valid.length; i++) {
    if (valid[i] && evalid[i] && ev[i] >= v0 && ev[i] < v1 && eu[i] >= u0 && eu[i] < u1) valid[i] = 0;
  }
  return {u, v, valid};
}

/**
 * TemplateFrame.cells: each pixel's cell (row-major), -1 outside the frame. `eyeCoords`: () => the eye frame
 * (computed once for the eye and cheek frames).
 */
function frameCells(name, labels, g, eyeCoords = () => eyeFrame(labels, g)) {
  const fr = FRAMES[name];
  const coords = {eyes: eyeCoords, eyes_lid: () => eyeFrame(labels, g, EYE_LID_FROM),
                  eyes_liner: () => eyeFrame(labels, g, EYE_LID_FROM, true),
                  eyes_lab: () => eyeFrame(labels, g, EYE_LID_FROM, true),
                  lips: () => lipFrame(labels, g), lips_lab: () => lipFrame(labels, g),
                  cheeks: () => cheekCoords(labels, g, eyeCoords), cheeks_lab: () => cheekCoords(labels, g, eyeCoords)};
  for (const [band, from] of Object.entries(EYE_BANDS)) {
    coords[band] = () => eyeFrame(labels, g, from, true, LID_BLEND, EYE_CORNER);
  }
  if (!coords[name]) throw new Error(`no template frame ${name}`);
  const {u, v, valid} = coords[name]();
  const u0 = f32(fr.u[0]), v0 = f32(fr.v[0]), su = f32(fr.step[0]), sv = f32(fr.step[1]);
  const idx = new Int32Array(u.length).fill(-1);
  for (let i = 0; i < u.length; i++) {
    if (!valid[i]) continue;
    const iu = Math.floor(f32(f32(u[i] - u0) / su)), iv = Math.floor(f32(f32(v[i] - v0) / sv));
    if (iu >= 0 && iu < fr.nu && iv >= 0 && iv < fr.nv) idx[i] = iv * fr.nu + iu;
  }
  return idx;
}

/**
 * makeup.lookprior.template_field: (11, n*n) planes, or null without a template with support. The frames are
 * laid in FRAME_ORDER (eyes, ..., cheeks, cheeks_lab) whatever the order of `templates`' keys, a later one
 * replacing an earlier one where both hold a pixel. A lab frame's cells are painted on `photo` (n*n*3 RGB in 0..1).
 */
function templateField(labels, templates, g, photo) {
  const live = FRAME_ORDER.filter((name) => templates[name]).map((name) => [name, templates[name]]).filter(([n, t]) => {
    for (let c = 4; c < t.length; c += FRAMES[n].channels) if (t[c] !== 0) return true;
    return false;
  });
  if (!live.length) return null;
  const n2 = g.n * g.n;
  const field = Array.from({length: TEMPLATE_CHANNELS}, (_, c) => new Float32Array(n2).fill(c >= 8 ? 1 : 0));
  let eyes = null;
  const eyeCoords = () => (eyes ??= eyeFrame(labels, g));
  for (const [name, t] of live) {
    const idx = frameCells(name, labels, g, eyeCoords);
    if (FRAMES[name].lab) {
      labFrameField(field, idx, t, photo, FRAMES[name]);
      continue;
    }
    for (let i = 0; i < n2; i++) {
      if (idx[i] < 0) continue;
      const o = idx[i] * FRAMES[name].channels, s = t[o + 4];
      for (let c = 0; c < 4; c++) field[c][i] = f32(t[o + c] * s);
      for (let c = 4; c < TEMPLATE_CHANNELS; c++) field[c][i] = t[o + c];
      if (FRAMES[name].additive) field[4][i] = 0; // laid over the region prior and models, not blended
    }
  }
  return field;
}

/**
 * A lab frame laid into `field` (makeup.lookprior.template_field): at each pixel in the frame, with d = the
 * pixel's CIELAB less the frame's mean (taken in float64, cast once) and m = that mean less LIP_TONE, the RGB
 * change of k + a d + b m times the support, the support, no photo term and no clamp. A frame that clamps clamps d
 * to the cell's range; one that adds writes support 0 (its change adds to the region prior's and models').
 */
function labFrameField(field, idx, t, photo, frame) {
  const inside = [];
  for (let i = 0; i < idx.length; i++) if (idx[i] >= 0) inside.push(i);
  if (!inside.length) return;
  const rgb = new Float32Array(inside.length * 3);
  inside.forEach((i, j) => { for (let c = 0; c < 3; c++) rgb[j * 3 + c] = photo[i * 3 + c]; });
  const x = rgbToLab(rgb);
  const sums = [0, 0, 0];
  for (let j = 0; j < inside.length; j++) for (let c = 0; c < 3; c++) sums[c] += x[j * 3 + c];
  const mean = sums.map((s) => f32(s / inside.length));
  const m = mean.map((v, c) => f32(v - LIP_TONE[c]));
  const ch = frame.channels, r = TEMPLATE_CHANNELS;
  const after = new Float32Array(x.length);
  inside.forEach((i, j) => {
    const o = idx[i] * ch;
    for (let c = 0; c < 3; c++) {
      let d = f32(x[j * 3 + c] - mean[c]);
      if (frame.clamp) d = Math.min(Math.max(d, t[o + r + c]), t[o + r + 3 + c]);
      const change = f32(f32(t[o + c] + f32(t[o + 5 + c] * d)) + f32(t[o + 8 + c] * m[c]));
      after[j * 3 + c] = f32(x[j * 3 + c] + change);
    }
  });
  const back = labToRgb(after);
  inside.forEach((i, j) => {
    const s = t[idx[i] * ch + 4];
    for (let c = 0; c < 3; c++) field[c][i] = f32(f32(back[j * 3 + c] - rgb[j * 3 + c]) * s);
    field[3][i] = 0;
    field[4][i] = frame.additive ? 0 : s;
    for (let c = 5; c < 8; c++) field[c][i] = 0;
    for (let c = 8; c < TEMPLATE_CHANNELS; c++) field[c][i] = 1;
  });
}

// ---- CIELAB as cv2.cvtColor on float32 ----

function fromHex(hex) {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setBigUint64(0, BigInt(`0x${hex}`));
  return dv.getFloat64(0);
}

const D65 = [fromHex('3fee6a22b3892ee8'), 1, fromHex('3ff16b8950763a19')];
const SRGB2XYZ = ['3fda65a14488c60d', '3fd6e297396d0918', '3fc71819d2391d58', '3fcb38cda6e75ff6', '3fe6e297396d0918',
                  '3fb279aae6c8f755', '3f93cc4ac6cdaf4b', '3fbe836eb4e98138', '3fee68427418d691'].map(fromHex);
const XYZ2SRGB = [3.240479, -1.53715, -0.498535, -0.969256, 1.875991, 0.041556, 0.055648, -0.204043, 1.057311];
const LAB_LUT_DIM = 33, LAB_BASE = 1 << 14, TRILINEAR_BASE = 16, GAMMA_TAB_SIZE = 1024;
let labTables = null;

function applyGamma(x) { // color_lab.cpp applyGamma (softdouble), to float32
  return f32(x <= 809 / 20000 ? x / (323 / 25) : Math.pow((x + 11 / 200) / (1 + 11 / 200), 12 / 5));
}

function applyInvGamma(x) {
  return f32(x <= 7827 / 2500000 ? x * (323 / 25) : Math.pow(x, 1 / (12 / 5)) * (1 + 11 / 200) - 11 / 200);
}

/** color_lab.cpp splineBuild (softfloat = float32 arithmetic): n cubic pieces of f[0..n]. */
function splineBuild(f, n) {
  const tab = new Float32Array(n * 4);
  let cn = 0;
  for (let i = 1; i < n; i++) {
    const t = f32(f32(f32(f[i + 1] - f32(f[i] * 2)) + f[i - 1]) * 3);
    const l = f32(1 / f32(4 - tab[(i - 1) * 4]));
    tab[i * 4] = l;
    tab[i * 4 + 1] = f32(f32(t - tab[(i - 1) * 4 + 1]) * l);
  }
  for (let i = n - 1; i >= 0; i--) {
    const c = f32(tab[i * 4 + 1] - f32(tab[i * 4] * cn));
    const b = f32(f32(f[i + 1] - f[i]) - f32(f32(cn + f32(c * 2)) / 3));
    const d = f32(f32(cn - c) / 3);
    tab[i * 4] = f[i]; tab[i * 4 + 1] = b; tab[i * 4 + 2] = c; tab[i * 4 + 3] = d;
    cn = c;
  }
  return tab;
}

const fma32 = (a, b, c) => f32(a * b + c);

function splineInterpolate(x, tab, n) {
  const ix = Math.min(Math.max(Math.trunc(x), 0), n - 1);
  const xx = f32(x - ix), o = ix * 4;
  return fma32(fma32(fma32(tab[o + 3], xx, tab[o + 2]), xx, tab[o + 1]), xx, tab[o]);
}

function cvRound(v) { // lrint: half to even
  return pyRound(v);
}

function initLabTables() {
  if (labTables) return labTables;
  // RGB2Lab: the LUT over (blue, green, red) grid points (color_lab.cpp's "R" is the blue channel for RGB input)
  const scaleWhite = [1 / D65[0], 1, 1 / D65[2]];
  const S = new Array(9);
  for (let i = 0; i < 3; i++) {
    S[i * 3 + 0] = f32(SRGB2XYZ[i * 3 + 2] * scaleWhite[i]);
    S[i * 3 + 1] = f32(SRGB2XYZ[i * 3 + 1] * scaleWhite[i]);
    S[i * 3 + 2] = f32(SRGB2XYZ[i * 3 + 0] * scaleWhite[i]);
  }
  const lthresh = f32(216 / 24389), lscale = f32(841 / 108), lbias = f32(16 / 116), f9033 = f32(24389 / 27);
  const fcbrt = (v) => (v > lthresh ? f32(Math.cbrt(v)) : fma32(v, lscale, lbias));
  const D = LAB_LUT_DIM;
  const prev = new Int16Array(D * D * D * 3);
  for (let p = 0; p < D; p++) {
    for (let q = 0; q < D; q++) {
      for (let r = 0; r < D; r++) {
        const idx = p * 3 + q * D * 3 + r * D * D * 3;
        const R = applyGamma(f32(p / 32)), G = applyGamma(f32(q / 32)), B = applyGamma(f32(r / 32));
        const X = f32(f32(f32(R * S[0]) + f32(G * S[1])) + f32(B * S[2]));
        const Y = f32(f32(f32(R * S[3]) + f32(G * S[4])) + f32(B * S[5]));
        const Z = f32(f32(f32(R * S[6]) + f32(G * S[7])) + f32(B * S[8]));
        const FX = fcbrt(X), FY = fcbrt(Y), FZ = fcbrt(Z);
        const L = Y > lthresh ? f32(f32(116 * FY) - 16) : f32(f9033 * Y);
        const a = f32(500 * f32(FX - FY)), b = f32(200 * f32(FY - FZ));
        prev[idx] = cvRound(f32(f32(LAB_BASE * L) / 100));
        prev[idx + 1] = cvRound(f32(f32(LAB_BASE * f32(a + 128)) / 256));
        prev[idx + 2] = cvRound(f32(f32(LAB_BASE * f32(b + 128)) / 256));
      }
    }
  }
  const lut = new Int16Array(D * D * D * 3 * 8);
  for (let p = 0; p < D; p++) {
    for (let q = 0; q < D; q++) {
      for (let r = 0; r < D; r++) {
        for (let p_ = 0; p_ < 2; p_++) {
          for (let q_ = 0; q_ < 2; q_++) {
            for (let r_ = 0; r_ < 2; r_++) {
              const old = Math.min(p + p_, D - 1) * 3 + Math.min(q + q_, D - 1) * D * 3 + Math.min(r + r_, D - 1) * D * D * 3;
              const nw = p * 24 + q * D * 24 + r * D * D * 24 + 4 * p_ + 2 * q_ + r_;
              lut[nw] = prev[old]; lut[nw + 8] = prev[old + 1]; lut[nw + 16] = prev[old + 2];
            }
          }
        }
      }
    }
  }
  // Lab2RGB: float coefficients (rows R, G, B of XYZ2sRGB times the white point) and the inverse gamma spline
  const C = new Array(9);
  for (let i = 0; i < 3; i++) {
    C[i] = f32(XYZ2SRGB[i] * D65[i]);
    C[i + 3] = f32(XYZ2SRGB[i + 3] * D65[i]);
    C[i + 6] = f32(XYZ2SRGB[i + 6] * D65[i]);
  }
  const ig = new Float32Array(GAMMA_TAB_SIZE + 1);
  const gscale = f32(1 / GAMMA_TAB_SIZE);
  for (let i = 0; i <= GAMMA_TAB_SIZE; i++) ig[i] = applyInvGamma(f32(gscale * i));
  labTables = {lut, C, invGamma: splineBuild(ig, GAMMA_TAB_SIZE)};
  return labTables;
}

/** cv2.cvtColor(photo float32 RGB in 0..1, COLOR_RGB2Lab): Float32Array n*3 (L, a, b per pixel). */
export function rgbToLab(rgb) {
  const {lut} = initLabTables();
  const count = rgb.length / 3, out = new Float32Array(rgb.length);
  const D = LAB_LUT_DIM;
  const base = f32(LAB_BASE), l100 = f32(100 / LAB_BASE);
  for (let i = 0; i < count; i++) {
    const clip = (v) => Math.min(Math.max(v, 0), 1);
    const cx = cvRound(f32(clip(rgb[i * 3 + 2]) * base)); // blue
    const cy = cvRound(f32(clip(rgb[i * 3 + 1]) * base));
    const cz = cvRound(f32(clip(rgb[i * 3]) * base)); // red
    const tx = cx >> 9, ty = cy >> 9, tz = cz >> 9;
    const o = 24 * tx + 24 * D * ty + 24 * D * D * tz;
    const x = (cx >> 5) & 15, y = (cy >> 5) & 15, z = (cz >> 5) & 15;
    const w = [
      (16 - x) * (16 - y) * (16 - z), (16 - x) * (16 - y) * z, (16 - x) * y * (16 - z), (16 - x) * y * z,
      x * (16 - y) * (16 - z), x * (16 - y) * z, x * y * (16 - z), x * y * z];
    let a = 0, b = 0, c = 0;
    for (let k = 0; k < 8; k++) { a += lut[o + k] * w[k]; b += lut[o + 8 + k] * w[k]; c += lut[o + 16 + k] * w[k]; }
    a = (a + 2048) >> 12; b = (b + 2048) >> 12; c = (c + 2048) >> 12;
    out[i * 3] = f32(a * l100);
    out[i * 3 + 1] = f32(b / 64 - 128);
    out[i * 3 + 2] = f32(c / 64 - 128);
  }
  return out;
}

/** cv2.cvtColor(lab float32, COLOR_Lab2RGB): Float32Array n*3 RGB in [0, 1]. */
export function labToRgb(lab) {
  const {C, invGamma} = initLabTables();
  const out = new Float32Array(lab.length);
  const inv903 = f32(1 / f32(903.3)), l7787 = f32(7.787), b16 = f32(16 / 116), inv116 = f32(1 / 116);
  const inv500 = f32(1 / 500), ninv200 = f32(-1 / 200), fThresh = f32(f32(6) / f32(29)), inv7787 = f32(1 / l7787);
  for (let i = 0; i < lab.length; i += 3) {
    const li = lab[i], ai = lab[i + 1], bi = lab[i + 2];
    let y, fy;
    if (li <= 8) {
      y = f32(li * inv903);
      fy = fma32(l7787, y, b16);
    } else {
      fy = f32(f32(li + 16) * inv116);
      y = f32(f32(fy * fy) * fy);
    }
    const fxz = [fma32(ai, inv500, fy), fma32(bi, ninv200, fy)];
    for (let j = 0; j < 2; j++) {
      const f = fxz[j];
      fxz[j] = f <= fThresh ? f32(f32(f - b16) * inv7787) : f32(f32(f * f) * f);
    }
    const [x, z] = fxz;
    for (let c = 0; c < 3; c++) {
      let v = fma32(C[c * 3], x, fma32(C[c * 3 + 1], y, f32(C[c * 3 + 2] * z)));
      v = Math.max(0, Math.min(v, 1));
      out[i + c] = splineInterpolate(f32(v * GAMMA_TAB_SIZE), invGamma, GAMMA_TAB_SIZE);
    }
  }
  return out;
}

// ---- the region models ----

/**
 * cv2.bilateralFilter(lab, d, sigmaColor, sigmaSpace) on a float32 3-channel n x n image (reflect-101 border),
 * computed at the pixels where `where` is set (the rest 0).
 */
function bilateral(lab, n, d, sigmaColor, sigmaSpace, where) {
  const gaussColor = -0.5 / (sigmaColor * sigmaColor), gaussSpace = -0.5 / (sigmaSpace * sigmaSpace);
  const radius = Math.max(Math.trunc(d / 2), 1);
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < lab.length; i++) { if (lab[i] < lo) lo = lab[i]; if (lab[i] > hi) hi = lab[i]; }
  const out = new Float32Array(lab.length);
  if (Math.abs(lo - hi) < 1.1920928955078125e-7) { out.set(lab); return out; }
  const cn = 3, bins = 4096 * cn;
  const len = f32(f32(hi - lo) * cn);
  const scaleIndex = f32(bins / len);
  const expLUT = new Float32Array(bins + 2);
  let last = 1;
  for (let i = 0; i < bins + 2; i++) {
    if (last > 0) {
      const val = f32(i / scaleIndex);
      expLUT[i] = f32(Math.exp(val * val * gaussColor));
      last = expLUT[i];
    } else expLUT[i] = 0;
  }
  const dy = [], dx = [], sw = [];
  for (let i = -radius; i <= radius; i++) {
    for (let j = -radius; j <= radius; j++) {
      const r = Math.sqrt(i * i + j * j);
      if (r > radius || (i === 0 && j === 0)) continue;
      sw.push(f32(Math.exp(r * r * gaussSpace)));
      dy.push(i); dx.push(j);
    }
  }
  const at = borderIndex('reflect101');
  const idx = new Int32Array(n + 2 * radius);
  for (let i = 0; i < idx.length; i++) idx[i] = at(i - radius, n);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const p = y * n + x;
      if (!where[p]) continue;
      const rb = lab[p * 3], rg = lab[p * 3 + 1], rr = lab[p * 3 + 2];
      let wsum = 0, sb = 0, sg = 0, sr = 0;
      for (let k = 0; k < sw.length; k++) {
        const q = (idx[y + dy[k] + radius] * n + idx[x + dx[k] + radius]) * 3;
        const kb = lab[q], kg = lab[q + 1], kr = lab[q + 2];
        let alpha = f32(f32(f32(f32(Math.abs(f32(kb - rb))) + f32(Math.abs(f32(kg - rg)))) +
                            f32(Math.abs(f32(kr - rr)))) * scaleIndex);
        const t = Math.trunc(alpha);
        alpha = f32(alpha - t);
        const w = f32(sw[k] * fma32(expLUT[t + 1], alpha, f32(expLUT[t] * f32(1 - alpha))));
        wsum = f32(wsum + w);
        sb = fma32(kb, w, sb); sg = fma32(kg, w, sg); sr = fma32(kr, w, sr);
      }
      const inv = f32(1 / f32(wsum + 1));
      out[p * 3] = f32(f32(sb + rb) * inv);
      out[p * 3 + 1] = f32(f32(sg + rg) * inv);
      out[p * 3 + 2] = f32(f32(sr + rr) * inv);
    }
  }
  return out;
}

/** makeup.region_models.region_weight. */
function regionWeight(labels, region, g) {
  if (region === SKIN) return g.skinInner;
  const n = g.n, mask = new Float32Array(n * n);
  for (let i = 0; i < mask.length; i++) mask[i] = labels[i] === region ? 1 : 0;
  const blurred = gaussianBlur(mask, n, gaussianKernel(1.0), 'reflect101');
  const out = new Float32Array(n * n);
  for (let i = 0; i < out.length; i++) {
    if (!mask[i]) continue;
    let t = f32(f32(blurred[i] - 0.25) / 0.5);
    t = Math.min(Math.max(t, 0), 1);
    out[i] = f32(f32(t * t) * f32(3 - f32(2 * t)));
  }
  return out;
}

/** makeup.region_models.region_model_change: (n*n*3) RGB change in 0..1 units, 0 where no model applies. */
function regionModelChange(photo, labels, models, g) {
  const n = g.n, n2 = n * n;
  const lab = rgbToLab(photo);
  const change = new Float32Array(n2 * 3), covered = new Uint8Array(n2);
  const weights = [];
  MODELLED_REGIONS.forEach((region, r) => {
    const rows = models.subarray(r * MODEL_ROWS * 3, (r + 1) * MODEL_ROWS * 3);
    if (rows.every((b) => b === 0)) return;
    weights.push({region, beta: rows.subarray(0, COEFFICIENTS * 3), curve: toneCurve(rows),
                  w: regionWeight(labels, region, g)});
  });
  if (!weights.length) return new Float32Array(n2 * 3);
  const where = new Uint8Array(n2);
  for (const {w} of weights) for (let i = 0; i < n2; i++) if (w[i] > 0) where[i] = 1;
  const smooth = SMOOTHING.map(([diameter, sigmaColour, share]) => bilateral(
    lab, n, Math.max(3, Math.trunc(pyRound(diameter * n / 256)) | 1), sigmaColour, Math.max(0.5, share * n), where));
  for (const {region, beta, curve, w} of weights) {
    let total = 0;
    for (let i = 0; i < n2; i++) total += w[i];
    total = f32(total);
    let mean = TONE_REF[region];
    if (total > 0) {
      const sums = [0, 0, 0];
      for (let i = 0; i < n2; i++) for (let c = 0; c < 3; c++) sums[c] = f32(sums[c] + f32(lab[i * 3 + c] * w[i]));
      mean = sums.map((s) => f32(s / total));
    }
    const own = OWN_CHANNELS[region];
    const knots = DARK_KNOTS.length;
    const toneShift = curve ? f32(toneCurveValue(mean[0], curve)) : 0; // the lightness's constant at this tone
    for (let i = 0; i < n2; i++) {
      if (!(w[i] > 0)) continue;
      covered[i] = 1;
      // dark_tents: the pixel's darkness between two knots, each coefficient interpolated there
      const dark = Math.min(Math.max(f32(mean[0] - lab[i * 3]), DARK_KNOTS[0]), DARK_KNOTS[knots - 1]);
      let j = 0;
      while (j < knots - 2 && dark >= DARK_KNOTS[j + 1]) j++;
      const t = f32(f32(dark - DARK_KNOTS[j]) / f32(DARK_KNOTS[j + 1] - DARK_KNOTS[j]));
      const lo = f32(1 - t);
      for (let c = 0; c < 3; c++) {
        const L = lab[i * 3 + c];
        const feats = [1, f32(smooth[0][i * 3 + c] - L), f32(smooth[1][i * 3 + c] - L),
                       own.includes(c) ? f32(mean[c] - L) : 0, f32(mean[c] - TONE_REF[region][c])];
        let s = 0;
        for (let k = 0; k < FEATURES; k++) {
          const row = (k * knots + j) * 3 + c;
          const coef = f32(f32(lo * beta[row]) + f32(t * beta[row + 3]));
          s = f32(s + f32(feats[k] * coef));
        }
        change[i * 3 + c] = f32(change[i * 3 + c] + f32(s * w[i]));
      }
      if (curve) change[i * 3] = f32(change[i * 3] + f32(w[i] * toneShift));
    }
  }
  const after = new Float32Array(n2 * 3);
  for (let i = 0; i < after.length; i++) after[i] = f32(lab[i] + change[i]);
  const rgb = labToRgb(after);
  const out = new Float32Array(n2 * 3);
  for (let i = 0; i < n2; i++) {
    if (!covered[i]) continue;
    for (let c = 0; c < 3; c++) out[i * 3 + c] = f32(rgb[i * 3 + c] - photo[i * 3 + c]);
  }
  return out;
}

// ---- the prior ----

/**
 * LookPrior.paint(crop, labels): the (n*n*3, pixel-major RGB) float32 change the look prior lays on the face.
 * cropRgba: the crop's RGBA bytes (n x n); labels: its label map (gate.js landmarksToLabels).
 */
export function paintPrior(prior, cropRgba, labels, n) {
  const n2 = n * n;
  const photo = new Float32Array(n2 * 3);
  for (let i = 0; i < n2; i++) for (let c = 0; c < 3; c++) photo[i * 3 + c] = f32(cropRgba[i * 4 + c] / 255);
  const masks = regionStack(labels, n, prior.radius);
  // prior_field: the templates and the region models, where either is given
  let field = null, base = null;
  const hasTemplates = Object.keys(prior.templates).length > 0;
  if (hasTemplates || prior.models) {
    const g = faceGeometry(labels, n);
    const tpl = hasTemplates ? templateField(labels, prior.templates, g, photo) : null;
    if (tpl || prior.models) {
      field = tpl || Array.from({length: TEMPLATE_CHANNELS}, (_, c) => new Float32Array(n2).fill(c >= 8 ? 1 : 0));
      base = prior.models ? regionModelChange(photo, labels, prior.models, g) : new Float32Array(n2 * 3);
    }
  }
  const out = new Float32Array(n2 * 3);
  const rp = prior.regionPrior, rc = prior.regionColour;
  for (let i = 0; i < n2; i++) {
    let gw = 0;
    for (let r = 0; r < 4; r++) gw = f32(gw + f32(prior.gate[r] * masks[r][i]));
    for (let c = 0; c < 3; c++) {
      let v = 0;
      for (let r = 0; r < 4; r++) v = f32(v + f32(masks[r][i] * rp[r * 3 + c]));
      if (rc) {
        let s = 0;
        for (let r = 0; r < 4; r++) {
          for (let k = 0; k < 3; k++) s = f32(s + f32(f32(masks[r][i] * photo[i * 3 + k]) * rc[r * 9 + k * 3 + c]));
        }
        v = f32(v + s);
      }
      if (field) {
        v = f32(v + base[i * 3 + c]);
        const x = photo[i * 3 + c];
        const clamped = Math.min(Math.max(x, field[5 + c][i]), field[8 + c][i]);
        v = f32(f32(f32(f32(1 - field[4][i]) * v) + field[c][i]) - f32(field[3][i] * clamped));
      }
      out[i * 3 + c] = f32(gw * v);
    }
  }
  return out;
}

/**
 * What a prior-input model (input channels RGB, the region masks, then the look prior) needs from its card:
 * {file, firstChannel}; null when the card names no look prior (io.prior_input absent). Throws with the reason
 * when the card names one the page cannot feed (export/report.py io_card writes it).
 */
export function priorInputFromCard(card, cardName = 'model_card.json') {
  const pi = card?.io?.prior_input;
  if (!pi) return null;
  const masks = card.io.region_input?.channels?.length;
  if (!masks || pi.first_channel !== 3 + masks || pi.channels !== 3 || typeof pi.file !== 'string' ||
      !/^[\w.-]+\.json$/.test(pi.file)) {
    throw new Error(`${cardName}: io.prior_input ${JSON.stringify({first_channel: pi.first_channel, channels: pi.channels, file: pi.file})} ` +
                    'is not the page\'s (the look prior\'s 3 channels right after the region masks, its parameters in a .json file beside the model)');
  }
  return {file: pi.file, firstChannel: pi.first_channel};
}
