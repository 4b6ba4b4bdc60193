// The JavaScript twin of makeup/align.py (and of android_demo's FaceAligner.kt): landmarks -> similarity
// transform onto the template -> warp to the model's square crop -> residual paste-back with a feathered
// face mask. The template, landmark indices, crop size and feather come from the model card's
// "alignment" entry (export/report.py), so the page and the Python side read one set of numbers.
//
// Pixel convention as in Python and cv2: pixel centres sit at integer coordinates. The warps follow
// cv2.warpAffine's bilinear arithmetic (coordinates in 1/32 pixel, 15-bit integer weights for uint8,
// BORDER_REFLECT_101), so the page's crop matches makeup.align's within rounding.
//
// Images are {data: Uint8ClampedArray RGBA, width, height} (ImageData works).

const INTER_BITS = 5;
const INTER_TAB = 1 << INTER_BITS; // 32 sub-pixel positions
const AB_BITS = 10;
const AB_SCALE = 1 << AB_BITS;
const COEF_BITS = 15;
const COEF_SCALE = 1 << COEF_BITS;

/** Round half to even, as numpy.round and cv2's saturate_cast (lrint) do. */
export function roundEven(v) {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** (3, 2): image-left eye centre, image-right eye centre, mouth centre (makeup.align.key_points). */
export function keyPoints(landmarks, alignment) {
  const lm = alignment.landmarks;
  const mean = (idx) => [(landmarks[idx[0]][0] + landmarks[idx[1]][0]) / 2,
                         (landmarks[idx[0]][1] + landmarks[idx[1]][1]) / 2];
  const a = mean(lm.right_eye_corners);
  const b = mean(lm.left_eye_corners);
  const eyes = a[0] <= b[0] ? [a, b] : [b, a]; // image-left eye first (a stable sort by x)
  return [eyes[0], eyes[1], mean(lm.mouth_corners)];
}

/** The template in pixel coordinates of a size x size crop (template_points). */
export function templatePoints(alignment, size) {
  return alignment.template.map(([x, y]) => [x * size - alignment.pixel_centre, y * size - alignment.pixel_centre]);
}

/** Least-squares similarity src -> dst as [a, -b, tx, b, a, ty] (the Umeyama estimate scikit-image makes). */
export function similarity(src, dst) {
  const n = src.length;
  let sx = 0, sy = 0, dx = 0, dy = 0;
  for (let i = 0; i < n; i++) { sx += src[i][0]; sy += src[i][1]; dx += dst[i][0]; dy += dst[i][1]; }
  sx /= n; sy /= n; dx /= n; dy /= n;
  let variance = 0, dot = 0, cross = 0;
  for (let i = 0; i < n; i++) {
    const ux = src[i][0] - sx, uy = src[i][1] - sy, vx = dst[i][0] - dx, vy = dst[i][1] - dy;
    variance += ux * ux + uy * uy;
    dot += ux * vx + uy * vy;
    cross += ux * vy - uy * vx;
  }
  if (!(variance > 1e-12)) throw new Error('could not fit an alignment transform to the face landmarks');
  const a = dot / variance, b = cross / variance;
  return [a, -b, dx - (a * sx - b * sy), b, a, dy - (b * sx + a * sy)];
}

/** cv2.invertAffineTransform. */
export function invert(m) {
  let d = m[0] * m[4] - m[1] * m[3];
  d = d !== 0 ? 1 / d : 0;
  const a11 = m[4] * d, a22 = m[0] * d, a12 = -m[1] * d, a21 = -m[3] * d;
  return [a11, a12, -a11 * m[2] - a12 * m[5], a21, a22, -a21 * m[2] - a22 * m[5]];
}

function reflect101(i, n) {
  if (n === 1) return 0;
  if (i >= 0 && i < n) return i;
  const period = 2 * n - 2;
  const p = ((i % period) + period) % period;
  return p < n ? p : period - p;
}

// cv2's bilinear weight table: per sub-pixel (fx, fy), four integer weights summing to COEF_SCALE.
const BILINEAR_INT = (() => {
  const tab = new Int32Array(INTER_TAB * INTER_TAB * 4);
  for (let fy = 0; fy < INTER_TAB; fy++) {
    for (let fx = 0; fx < INTER_TAB; fx++) {
      const wy = [1 - fy / INTER_TAB, fy / INTER_TAB];
      const wx = [1 - fx / INTER_TAB, fx / INTER_TAB];
      const w = [wy[0] * wx[0], wy[0] * wx[1], wy[1] * wx[0], wy[1] * wx[1]];
      const base = (fy * INTER_TAB + fx) * 4;
      let sum = 0, big = 0;
      for (let k = 0; k < 4; k++) {
        tab[base + k] = roundEven(w[k] * COEF_SCALE);
        sum += tab[base + k];
        if (tab[base + k] > tab[base + big]) big = k;
      }
      tab[base + big] += COEF_SCALE - sum; // cv2 puts the rounding remainder on the largest weight
    }
  }
  return tab;
})();

/** cv2.resize(..., (w // 2, h // 2), INTER_AREA): area averaging, exact for any size. */
function areaHalve(src) {
  const w = src.width, h = src.height, hw = w >> 1, hh = h >> 1;
  const sx = w / hw, sy = h / hh;
  const out = new Uint8ClampedArray(hw * hh * 4);
  const spans = (n, s, size) => Array.from({length: n}, (_, i) => {
    const a = i * s, b = (i + 1) * s, parts = [];
    for (let j = Math.floor(a); j < Math.min(Math.ceil(b), size); j++) {
      const wgt = Math.min(b, j + 1) - Math.max(a, j);
      if (wgt > 1e-9) parts.push([j, wgt / s]);
    }
    return parts;
  });
  const xs = spans(hw, sx, w), ys = spans(hh, sy, h);
  for (let y = 0; y < hh; y++) {
    for (let x = 0; x < hw; x++) {
      for (let c = 0; c < 4; c++) {
        let acc = 0;
        for (const [iy, wy] of ys[y]) for (const [ix, wx] of xs[x]) acc += wy * wx * src.data[(iy * w + ix) * 4 + c];
        out[(y * hw + x) * 4 + c] = roundEven(acc);
      }
    }
  }
  return {data: out, width: hw, height: hh};
}

/** cv2.warpAffine(src, m, (size, size), INTER_LINEAR, BORDER_REFLECT_101) for uint8 RGBA. */
function warpLinearReflect(src, m, outW, outH) {
  const inv = invert(m); // dst -> src, what cv2 iterates with
  const out = new Uint8ClampedArray(outW * outH * 4);
  const w = src.width, h = src.height, px = src.data;
  const shift = AB_BITS - INTER_BITS, roundDelta = AB_SCALE / INTER_TAB / 2;
  for (let y = 0; y < outH; y++) {
    const x0 = roundEven((inv[1] * y + inv[2]) * AB_SCALE) + roundDelta;
    const y0 = roundEven((inv[4] * y + inv[5]) * AB_SCALE) + roundDelta;
    for (let x = 0; x < outW; x++) {
      const X = (x0 + roundEven(inv[0] * x * AB_SCALE)) >> shift;
      const Y = (y0 + roundEven(inv[3] * x * AB_SCALE)) >> shift;
      const ix = X >> INTER_BITS, iy = Y >> INTER_BITS;
      const t = ((Y & (INTER_TAB - 1)) * INTER_TAB + (X & (INTER_TAB - 1))) * 4;
      const xa = reflect101(ix, w), xb = reflect101(ix + 1, w);
      const ya = reflect101(iy, h), yb = reflect101(iy + 1, h);
      const p00 = (ya * w + xa) * 4, p01 = (ya * w + xb) * 4, p10 = (yb * w + xa) * 4, p11 = (yb * w + xb) * 4;
      const o = (y * outW + x) * 4;
      for (let c = 0; c < 3; c++) {
        const v = px[p00 + c] * BILINEAR_INT[t] + px[p01 + c] * BILINEAR_INT[t + 1] +
                  px[p10 + c] * BILINEAR_INT[t + 2] + px[p11 + c] * BILINEAR_INT[t + 3];
        out[o + c] = (v + (1 << (COEF_BITS - 1))) >> COEF_BITS;
      }
      out[o + 3] = 255;
    }
  }
  return out;
}

/** makeup.align.warp_to_crop: area-halve while the face shrinks by more than 2, then bilinear. */
export function warpToCrop(photo, matrix, size) {
  let scale = Math.sqrt(Math.abs(matrix[0] * matrix[4] - matrix[1] * matrix[3]));
  let src = photo;
  let m = matrix.slice();
  while (scale < 0.5 && Math.min(src.width, src.height) >= 4) {
    const w = src.width, h = src.height;
    src = areaHalve(src);
    const sx = w / src.width, sy = h / src.height;
    // crop = M @ photo, photo = S @ half with pixel centres kept: x = sx * x' + 0.5 * sx - 0.5
    m = [m[0] * sx, m[1] * sy, m[0] * (0.5 * sx - 0.5) + m[1] * (0.5 * sy - 0.5) + m[2],
         m[3] * sx, m[4] * sy, m[3] * (0.5 * sx - 0.5) + m[4] * (0.5 * sy - 0.5) + m[5]];
    scale *= 2;
  }
  return warpLinearReflect(src, m, size, size);
}

/** makeup.align.align_face with known landmarks ([[x, y], ...] photo pixels, pixel centres at integers). */
export function alignFace(photo, landmarks, alignment, size) {
  const matrix = similarity(keyPoints(landmarks, alignment), templatePoints(alignment, size));
  const crop = warpToCrop(photo, matrix, size);
  const cropLandmarks = landmarks.map(([x, y]) => [matrix[0] * x + matrix[1] * y + matrix[2],
                                                   matrix[3] * x + matrix[4] * y + matrix[5]]);
  return {crop, matrix, size, landmarks: cropLandmarks, photoWidth: photo.width, photoHeight: photo.height};
}

/** The centred square of the photo scaled to the crop (no face found): the whole crop is the face region. */
export function centredSquare(photo, size) {
  const side = Math.min(photo.width, photo.height);
  const ox = Math.floor((photo.width - side) / 2), oy = Math.floor((photo.height - side) / 2);
  const s = size / side;
  const matrix = [s, 0, -s * ox + 0.5 * s - 0.5, 0, s, -s * oy + 0.5 * s - 0.5];
  return {crop: warpToCrop(photo, matrix, size), matrix, size, landmarks: null,
          photoWidth: photo.width, photoHeight: photo.height};
}

function convexHull(points) {
  const pts = points.slice().sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower = [], upper = [];
  for (const p of pts) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], p) <= 0) lower.pop();
    lower.push(p);
  }
  for (let i = pts.length - 1; i >= 0; i--) {
    const p = pts[i];
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], p) <= 0) upper.pop();
    upper.push(p);
  }
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

/**
 * cv2.fillConvexPoly of integer vertices as one run per row (a convex polygon meets a row in one interval):
 * pixels on or inside the polygon. Returns [lo, hi] Int32Arrays; lo > hi marks an empty row.
 */
function fillConvexRuns(hull, n) {
  const lo = new Int32Array(n).fill(1), hi = new Int32Array(n).fill(0);
  if (hull.length < 3) return [lo, hi];
  for (let y = 0; y < n; y++) {
    let a = Infinity, b = -Infinity;
    for (let i = 0; i < hull.length; i++) {
      const [ax, ay] = hull[i], [bx, by] = hull[(i + 1) % hull.length];
      if (y < Math.min(ay, by) || y > Math.max(ay, by)) continue;
      if (ay === by) { a = Math.min(a, ax, bx); b = Math.max(b, ax, bx); continue; }
      const x = ax + (bx - ax) * (y - ay) / (by - ay);
      a = Math.min(a, x); b = Math.max(b, x);
    }
    if (a > b) continue;
    lo[y] = Math.max(Math.round(a), 0);
    hi[y] = Math.min(Math.round(b), n - 1);
  }
  return [lo, hi];
}

/** cv2.getStructuringElement(MORPH_ELLIPSE, (2r+1, 2r+1)) as a half-width per row. */
function ellipseRows(r) {
  const rows = [];
  for (let i = 0; i <= 2 * r; i++) {
    const dy = i - r;
    rows.push(r === 0 ? 0 : roundEven(r * Math.sqrt((r * r - dy * dy) / (r * r))));
  }
  return rows;
}

function gaussianKernel(k, sigma) {
  const half = (k - 1) / 2, out = new Float64Array(k);
  let sum = 0;
  for (let i = 0; i < k; i++) { out[i] = Math.exp(-((i - half) ** 2) / (2 * sigma * sigma)); sum += out[i]; }
  for (let i = 0; i < k; i++) out[i] /= sum;
  return out;
}

/**
 * makeup.align.face_mask: hull of the crop landmarks, eroded by the blur's reach (elliptic structuring
 * element, outside the crop counts as inside, as cv2.erode's default border), Gaussian-feathered with a
 * zero border. Every row of a convex region is one run, so erosion and the horizontal blur work on runs.
 */
export function faceMask(aligned, feather) {
  const n = aligned.size;
  if (!aligned.landmarks) return new Float32Array(n * n).fill(1);
  const hull = convexHull(aligned.landmarks.map(([x, y]) => [roundEven(x), roundEven(y)]));
  const [lo, hi] = fillConvexRuns(hull, n);
  const radius = Math.max(feather * n, 0);
  const out = new Float32Array(n * n);
  if (radius < 0.5) {
    for (let y = 0; y < n; y++) for (let x = lo[y]; x <= hi[y]; x++) out[y * n + x] = 1;
    return out;
  }
  const sigma = radius / 2;
  const reach = Math.ceil(3 * sigma) + 1;
  const rows = ellipseRows(reach);
  const elo = new Int32Array(n), ehi = new Int32Array(n);
  for (let y = 0; y < n; y++) {
    let a = lo[y], b = hi[y];
    for (let i = 0; i < rows.length && a <= b; i++) {
      const yy = y + i - reach;
      if (yy < 0 || yy >= n) continue;
      a = Math.max(a, lo[yy] + rows[i]);
      b = Math.min(b, hi[yy] - rows[i]);
    }
    elo[y] = a; ehi[y] = b;
  }
  const k = gaussianKernel(2 * reach + 1, sigma);
  const cum = new Float64Array(k.length + 1);
  for (let i = 0; i < k.length; i++) cum[i + 1] = cum[i] + k[i];
  // Horizontal pass: the sum of the kernel over the run, from its cumulative sum.
  const tmp = new Float64Array(n * n);
  let first = n, last = -1;
  for (let y = 0; y < n; y++) {
    const a = elo[y], b = ehi[y];
    if (a > b) continue;
    first = Math.min(first, y); last = y;
    for (let x = Math.max(a - reach, 0); x <= Math.min(b + reach, n - 1); x++) {
      const j0 = Math.max(-reach, a - x), j1 = Math.min(reach, b - x);
      if (j0 <= j1) tmp[y * n + x] = cum[j1 + reach + 1] - cum[j0 + reach];
    }
  }
  if (last < 0) return out;
  // Vertical pass over the rows the horizontal pass reached.
  for (let y = Math.max(first - reach, 0); y <= Math.min(last + reach, n - 1); y++) {
    const j0 = Math.max(-reach, first - y), j1 = Math.min(reach, last - y);
    for (let x = 0; x < n; x++) {
      let acc = 0;
      for (let j = j0; j <= j1; j++) acc += k[j + reach] * tmp[(y + j) * n + x];
      out[y * n + x] = acc;
    }
  }
  return out;
}

/** Photo window [x0, y0, x1, y1) holding the crop's footprint plus a pixel of bilinear reach. */
function cropBox(aligned) {
  const n = aligned.size, inv = invert(aligned.matrix);
  const corners = [[-1, -1], [n, -1], [-1, n], [n, n]].map(([x, y]) => [inv[0] * x + inv[1] * y + inv[2], inv[3] * x + inv[4] * y + inv[5]]);
  const xs = corners.map((p) => p[0]), ys = corners.map((p) => p[1]);
  const x0 = Math.max(Math.floor(Math.min(...xs)) - 1, 0), y0 = Math.max(Math.floor(Math.min(...ys)) - 1, 0);
  const x1 = Math.min(Math.ceil(Math.max(...xs)) + 2, aligned.photoWidth);
  const y1 = Math.min(Math.ceil(Math.max(...ys)) + 2, aligned.photoHeight);
  return x1 > x0 && y1 > y0 ? [x0, y0, x1, y1] : null;
}

/**
 * makeup.align.paste_back: photo + inverse_warp((processed - crop) * mask), a new RGBA image of the photo's
 * size. Nothing outside the mask's footprint changes, and an unchanged crop gives the photo back exactly.
 */
export function pasteBack(photo, processed, aligned, mask) {
  const n = aligned.size;
  const out = new Uint8ClampedArray(photo.data);
  const delta = new Float32Array(n * n * 3);
  for (let i = 0; i < n * n; i++) {
    for (let c = 0; c < 3; c++) delta[i * 3 + c] = (processed[i * 4 + c] - aligned.crop[i * 4 + c]) * mask[i];
  }
  const box = cropBox(aligned);
  if (!box) return {data: out, width: photo.width, height: photo.height};
  const [bx0, by0, bx1, by1] = box;
  const m = aligned.matrix;
  const shift = AB_BITS - INTER_BITS, roundDelta = AB_SCALE / INTER_TAB / 2;
  const w = photo.width;
  for (let y = by0; y < by1; y++) {
    // cv2.warpAffine(delta, m shifted to the window, WARP_INVERSE_MAP, BORDER_CONSTANT 0) row by row
    const xr = roundEven((m[1] * y + m[0] * bx0 + m[2]) * AB_SCALE) + roundDelta;
    const yr = roundEven((m[4] * y + m[3] * bx0 + m[5]) * AB_SCALE) + roundDelta;
    for (let x = bx0; x < bx1; x++) {
      const X = (xr + roundEven(m[0] * (x - bx0) * AB_SCALE)) >> shift;
      const Y = (yr + roundEven(m[3] * (x - bx0) * AB_SCALE)) >> shift;
      const ix = X >> INTER_BITS, iy = Y >> INTER_BITS;
      if (ix < -1 || iy < -1 || ix >= n || iy >= n) continue;
      const fx = (X & (INTER_TAB - 1)) / INTER_TAB, fy = (Y & (INTER_TAB - 1)) / INTER_TAB;
      // Bilinear taps with a zero border: a tap outside the crop contributes nothing.
      const inX0 = ix >= 0, inX1 = ix + 1 < n, inY0 = iy >= 0, inY1 = iy + 1 < n;
      const w00 = inY0 && inX0 ? (1 - fy) * (1 - fx) : 0, w01 = inY0 && inX1 ? (1 - fy) * fx : 0;
      const w10 = inY1 && inX0 ? fy * (1 - fx) : 0, w11 = inY1 && inX1 ? fy * fx : 0;
      const b00 = ((inY0 ? iy : 0) * n + (inX0 ? ix : 0)) * 3, b01 = ((inY0 ? iy : 0) * n + (inX1 ? ix + 1 : 0)) * 3;
      const b10 = ((inY1 ? iy + 1 : 0) * n + (inX0 ? ix : 0)) * 3, b11 = ((inY1 ? iy + 1 : 0) * n + (inX1 ? ix + 1 : 0)) * 3;
      const o = (y * w + x) * 4;
      for (let c = 0; c < 3; c++) {
        const acc = w00 * delta[b00 + c] + w01 * delta[b01 + c] + w10 * delta[b10 + c] + w11 * delta[b11 + c];
        if (acc === 0) continue;
        out[o + c] = Math.min(255, Math.max(0, roundEven(Math.fround(photo.data[o + c] + acc))));
      }
    }
  }
  return {data: out, width: photo.width, height: photo.height};
}
