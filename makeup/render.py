"""The makeup renderer: a :class:`~makeup.styles.Style` applied to a photo through its region label map.

It authors seed pairs and is the ground truth of the built-in default data, so each product behaves like the
real one: foundation evens the skin's colour and smooths it edge-preservingly, blush tints the cheekbones,
eyeshadow paints the lid skin from the upper lash line up toward the brow (optionally smudged under the eye),
eyeliner follows the upper lash line and may end in a wing, brow tint recolours the brows, lipstick recolours
the lips and gloss adds a specular highlight on the lower lip.

Every product is an opacity map (``alpha``, float in [0, 1]) restricted to the labels it may paint (skin,
lips or brows; the eyeballs and everything labelled "other" are never painted), with soft edges inside that
region. Colours are mixed in CIELAB: chroma moves toward the product's colour while the lightness keeps the
photo's own shading and texture, which is what keeps a painted lip looking like a lip. The union of the maps
is :func:`touched_mask`; every pixel outside it is copied from the input unchanged, bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from .errors import TinyBeautyError
from .regions import BROWS, EYES, LIPS, OTHER, SKIN
from .styles import Product, Style, load_style


@dataclass(frozen=True)
class EyeGeometry:
    """One eye opening read from the label map (pixel units)."""

    cols: np.ndarray      # column indices x0..x1
    top: np.ndarray       # y of the upper lash line (top edge of the first eye pixel) per column
    bottom: np.ndarray    # y of the lower lash line (bottom edge of the last eye pixel) per column
    cx: float
    cy: float
    outward: int          # +1 if the outer corner is to the right in the image, else -1
    lid: float            # height of the lid skin between the lash line and the brow

    @property
    def width(self) -> float:
        return float(self.cols[-1] - self.cols[0] + 1)

    @property
    def outer_index(self) -> int:
        return len(self.cols) - 1 if self.outward > 0 else 0


@dataclass(frozen=True)
class FaceGeometry:
    """What the products need from a label map: region masks, the eyes, the lips' box."""

    labels: np.ndarray
    skin: np.ndarray                 # bool
    skin_inner: np.ndarray           # float: skin fading to 0 at the face outline (not at the features)
    eyes: tuple[EyeGeometry, ...]
    lips_box: tuple[float, float, float, float] | None  # cx, cy, width, height

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape  # type: ignore[return-value]

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> "FaceGeometry":
        lab = np.asarray(labels, dtype=np.uint8)
        h, w = lab.shape
        skin = lab == SKIN
        face = (lab != OTHER).astype(np.float32)
        skin_inner = skin * _smoothstep(0.5, 0.95, _blur(face, max(1.5, 0.012 * max(h, w))))
        lips_box = None
        ys, xs = np.nonzero(lab == LIPS)
        if len(xs) >= 4:
            lips_box = (float(xs.mean()), float(ys.mean()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1))
        return cls(lab, skin, skin_inner.astype(np.float32), _find_eyes(lab, lips_box), lips_box)


def _find_eyes(lab: np.ndarray, lips_box) -> tuple[EyeGeometry, ...]:
    """The two largest eye components, each with its lash lines, outer side and lid height."""
    count, comp, stats, cents = cv2.connectedComponentsWithStats((lab == EYES).astype(np.uint8), connectivity=8)
    min_area = max(4, int(2e-5 * lab.size))
    order = sorted((i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area),
                   key=lambda i: -stats[i, cv2.CC_STAT_AREA])[:2]
    if not order:
        return ()
    centres = [cents[i] for i in order]
    if len(centres) == 2:
        face_cx = (centres[0][0] + centres[1][0]) / 2
    elif lips_box is not None:
        face_cx = lips_box[0]
    else:
        face_cx = lab.shape[1] / 2
    brows = lab == BROWS
    eyes = []
    for i, (cx, cy) in zip(order, centres):
        x0, y0 = stats[i, cv2.CC_STAT_LEFT], stats[i, cv2.CC_STAT_TOP]
        bw, bh = stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT]
        m = comp[y0:y0 + bh, x0:x0 + bw] == i
        has = m.any(axis=0)
        cols = np.arange(x0, x0 + bw)[has]
        top = (np.argmax(m, axis=0) + y0)[has].astype(np.float32)
        bottom = (y0 + bh - np.argmax(m[::-1], axis=0))[has].astype(np.float32)
        # Lid height: median over the eye's columns of the gap between the lash line and the brow above it
        # (a brow tail dipping toward the outer corner must not shrink the whole lid).
        above = brows[: int(top.min()), cols[0]:cols[-1] + 1]
        has_brow = above.any(axis=0)
        brow_bottom = above.shape[0] - 1 - np.argmax(above[::-1], axis=0)
        width = float(bw)
        lid = float(np.median(top[has_brow] - brow_bottom[has_brow] - 1)) if has_brow.any() else 0.6 * width
        lid = float(np.clip(lid, 0.25 * width, 1.2 * width))
        eyes.append(EyeGeometry(cols, top, bottom, float(cx), float(cy), 1 if cx >= face_cx else -1, lid))
    return tuple(eyes)


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _blur(mask: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)


def _inner_soft(mask: np.ndarray, sigma: float, lo: float, hi: float) -> np.ndarray:
    """A region with a soft edge that stays inside it (0 outside, rising to 1 a few pixels in)."""
    return (mask * _smoothstep(lo, hi, _blur(mask, sigma))).astype(np.float32)


# --- opacity maps, one per product ------------------------------------------------------------------------

def _foundation_alpha(g: FaceGeometry, p: Product) -> np.ndarray:
    return g.skin_inner


def _blush_alpha(g: FaceGeometry, p: Product) -> np.ndarray:
    alpha = np.zeros(g.shape, np.float32)
    yy, xx = np.mgrid[0:g.shape[0], 0:g.shape[1]].astype(np.float32)
    for eye in g.eyes:
        drop = 0.45 * (g.lips_box[1] - eye.cy) if g.lips_box is not None else 0.8 * eye.width
        cx = eye.cx + eye.outward * 0.3 * eye.width
        cy = float(eye.bottom.max()) + max(drop, 0.3 * eye.width)
        rx = (0.5 + 0.55 * p.size) * eye.width
        ry = 0.68 * rx
        # Along the cheekbone: the long axis rises toward the temple.
        c, s = np.cos(0.35), np.sin(0.35) * eye.outward
        du, dv = (xx - cx) * c - (yy - cy) * s, (xx - cx) * s + (yy - cy) * c
        r2 = (du / rx) ** 2 + (dv / ry) ** 2
        np.maximum(alpha, np.clip(1 - r2, 0, 1) ** 2, out=alpha)
    return alpha * g.skin_inner


def _eye_window(g: FaceGeometry, eye: EyeGeometry, pad_x: float, up: float, down: float):
    h, w = g.shape
    y0 = max(int(eye.top.min() - up) - 1, 0)
    y1 = min(int(eye.bottom.max() + down) + 2, h)
    x0 = max(int(eye.cols[0] - pad_x) - 1, 0)
    x1 = min(int(eye.cols[-1] + pad_x) + 2, w)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), xx + 0.5, yy + 0.5


def _smooth_curve(eye: EyeGeometry, y: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A lash line as a smooth polynomial of x (a label map's line is a staircase that would streak the
    shadow), held constant beyond the eye's corners."""
    xc = eye.cols.astype(np.float64) + 0.5
    coef = np.polyfit(xc - eye.cx, y.astype(np.float64), deg=min(4, len(xc) - 1))
    return np.polyval(coef, np.clip(xx, xc[0], xc[-1]) - eye.cx).astype(np.float32)


LID_REF = 0.45  # eye widths per lid height: the synthetic faces' median lid (lash line to brow) / eye width


def liner_line(eye: EyeGeometry, xx: np.ndarray) -> np.ndarray:
    """The upper lash line the liner is drawn on (:func:`_eyeliner_alpha`: the label map's line under a short
    moving average, never below it), linear between column centres and level beyond the corners; float32 of
    the float32 ``xx``, computed in float64 (the web demo's prior.js computes it so too)."""
    y = np.asarray(eye.top, np.float64)
    if len(y) >= 5:  # whole-pixel rows: the weighted sums are exact, one division rounds
        y = np.minimum(np.convolve(np.pad(y, 2, mode="edge"), np.array([1.0, 2, 3, 2, 1]), mode="valid") / 9, y)
    return np.interp(np.asarray(xx, np.float64), eye.cols.astype(np.float64) + 0.5, y).astype(np.float32)


def eye_frame(labels: np.ndarray, geometry: FaceGeometry | None = None, reach: float = 2.0,
              lid_from: float | None = None, liner: bool = False, lid_blend: float | None = None,
              corner: float = 0.0):
    """Every skin pixel's place relative to its nearer eye, in units of that eye's width (how eye makeup is laid:
    along the lash lines, out toward the temple). Returns float32 (H, W) ``u``, ``v`` and bool ``valid``:

    * ``u``: horizontal offset from the eye's centre, positive toward the outer corner (so both eyes share one
      frame, mirrored);
    * ``v``: above the opening the height over the upper lash line (> 0), below it minus the depth under the
      lower one (< 0), each line a smooth curve held level beyond the corners; 0 between the lines;
    * ``valid``: skin pixels (the opening itself and every other label excluded) within ``reach`` eye widths
      of an eye's box (u and v are 0 elsewhere).

    ``lid_from``: above the upper lash line, past ``lid_from`` eye widths, ``v`` grows in lid heights (the eye's
    ``lid``, lash line to brow) times :data:`LID_REF` instead: a liner is as thick on every eye of one width, a
    lid colour reaches the same share of the lid on a short lid and a tall one (so a prior fit on the synthetic
    faces' lids does not paint past a real face's shorter lid into the brow).

    ``lid_blend`` (with ``lid_from``): the lid's rows reach pure lid heights (``v`` = the height over the lash line
    in lid heights times :data:`LID_REF`, as a lid colour is laid: :func:`_eyeshadow_alpha` reaches a share of the
    lid from the lash line) ``lid_blend`` eye widths past ``lid_from``, the slope between them set so ``v`` is
    continuous (never under 0.05 of the lid's: a lid of 1.2 eye widths). Without it, ``v`` past ``lid_from`` is
    ``lid_from`` + lid heights, off pure lid heights by ``lid_from`` (1 - ``LID_REF`` ew / lid): a lid colour's
    rows then lay 0.05 higher in ``v`` on a lid of 0.3 eye widths than on one of 0.45, a sixth of its reach.

    ``corner``: beyond the eye's corners, between the two lash lines (held level there), ``v`` is ``-corner`` times
    the share of the way from the upper line to the lower (0 without it: every such pixel in one row, where a
    liner's wedge and a lid colour's fade to the under-eye lie), and under the lower line ``v`` is shifted by
    ``-corner``.

    ``liner``: the frame of the liner as it is drawn: the upper lash line is :func:`liner_line` (not the
    degree-4 curve, which lies up to a pixel off it), and ``u`` is the place between the eye's corner columns
    (-0.5 at the inner, 0.5 at the outer, in eye widths beyond them), where the liner's thickness is set; not
    the offset from the eye's centroid.
    """
    lab = np.asarray(labels)
    g = geometry or FaceGeometry.from_labels(lab)
    h, w = lab.shape
    u = np.zeros((h, w), np.float32)
    v = np.zeros((h, w), np.float32)
    best = np.full((h, w), np.inf, np.float32)
    for eye in g.eyes:
        ew = eye.width
        pad = reach * ew
        win, xx, yy = _eye_window(g, eye, pad, pad, pad)
        top = liner_line(eye, xx) if liner else _smooth_curve(eye, eye.top, xx)
        bottom = _smooth_curve(eye, eye.bottom, xx)
        dist = np.hypot(xx - eye.cx - 0.5, yy - eye.cy - 0.5)
        near = dist < best[win]
        best[win] = np.where(near, dist, best[win])
        if liner:  # in float64, cast once
            inner, outer = (eye.cols[0], eye.cols[-1]) if eye.outward > 0 else (eye.cols[-1], eye.cols[0])
            place = ((xx.astype(np.float64) - inner - 0.5) * eye.outward / max(abs(outer - inner), 1) - 0.5)
            u[win] = np.where(near, place.astype(np.float32), u[win])
        else:
            u[win] = np.where(near, (xx - eye.cx - 0.5) * eye.outward / ew, u[win])
        if corner:
            share = np.clip((yy - top) / np.maximum(bottom - top, 1.0), 0.0, 1.0)
            below = np.where(yy > bottom, (bottom - yy) / ew - corner, -corner * share)
        else:
            below = np.where(yy > bottom, (bottom - yy) / ew, 0.0)
        up = (top - yy) / ew
        if lid_from is not None and lid_blend:  # float32 steps, as prior.js takes them
            scale = LID_REF * ew / eye.lid
            slope = max(scale - lid_from * (1.0 - scale) / lid_blend, 0.05 * scale)
            knee = lid_from + lid_blend
            up = np.where(up > knee, (lid_from + lid_blend * slope) + (up - knee) * scale,
                          np.where(up > lid_from, lid_from + (up - lid_from) * slope, up))
        elif lid_from is not None:
            up = np.where(up > lid_from, lid_from + (up - lid_from) * (LID_REF * ew / eye.lid), up)
        v[win] = np.where(near, np.where(yy < top, up, below), v[win])
    valid = (lab == SKIN) & np.isfinite(best)
    return u, v, valid


def lip_frame(labels: np.ndarray, geometry: FaceGeometry | None = None):
    """Every lip pixel's place in the lips' box (how lipstick and gloss are laid: an edge all round, a highlight
    on the lower lip). Returns float32 (H, W) ``u`` = |x - centre| / box width (both halves share it, mirrored),
    ``v`` = (y - centre) / box height, and bool ``valid`` = the lip pixels (none without lips)."""
    lab = np.asarray(labels)
    g = geometry or FaceGeometry.from_labels(lab)
    valid = lab == LIPS
    if g.lips_box is None:
        zero = np.zeros(lab.shape, np.float32)
        return zero, zero, np.zeros(lab.shape, bool)
    cx, cy, bw, bh = g.lips_box
    yy, xx = np.mgrid[0:lab.shape[0], 0:lab.shape[1]].astype(np.float32)
    u = np.abs(xx - cx) / bw
    v = (yy - cy) / bh
    return np.where(valid, u, 0).astype(np.float32), np.where(valid, v, 0).astype(np.float32), valid


def cheek_frame(labels: np.ndarray, geometry: FaceGeometry | None = None):
    """Every skin pixel's place relative to the nearer cheek (how blush is laid: on the cheekbone, below and
    outward of the eye), in units of that eye's width: ``u`` = horizontal offset from the cheek's centre
    (:func:`makeup.metrics.cheek_centres`, the centre of the cheek map the student reads and look fidelity
    reports), positive outward (both cheeks share one frame, mirrored), ``v`` = vertical offset, positive down.
    Returns float32 (H, W) ``u``, ``v`` and bool ``valid`` = the skin pixels (none without lips or eyes)."""
    from .metrics import cheek_centres

    lab = np.asarray(labels)
    h, w = lab.shape
    u = np.zeros((h, w), np.float32)
    v = np.zeros((h, w), np.float32)
    best = np.full((h, w), np.inf)
    cols, rows = np.arange(w, dtype=np.float64)[None, :], np.arange(h, dtype=np.float64)[:, None]
    for cx, cy, width, outward in cheek_centres(lab):
        dist = np.hypot(cols - cx, rows - cy)
        near = dist < best
        best[near] = dist[near]
        u[near] = np.broadcast_to((cols - cx) * outward / width, (h, w))[near]
        v[near] = np.broadcast_to((rows - cy) / width, (h, w))[near]
    return u, v, (lab == SKIN) & np.isfinite(best)


def _eyeshadow_alpha(g: FaceGeometry, p: Product) -> np.ndarray:
    """Lid skin from the upper lash line up toward the brow, wider on the outer side; ``lower`` smudges it
    under the lower lash line."""
    alpha = np.zeros(g.shape, np.float32)
    for eye in g.eyes:
        ew = eye.width
        reach = max(eye.lid * (0.35 + 0.65 * p.extent), 2.0)
        # Full strength over the central lid, fading past the corners (further on the outer side).
        core, outer_hw, inner_hw = 0.3 * ew, 0.5 * ew * (1.25 + 0.6 * p.extent), 0.5 * ew * 1.05
        win, xx, yy = _eye_window(g, eye, outer_hw, reach, 0.4 * ew)
        top, bottom = _smooth_curve(eye, eye.top, xx), _smooth_curve(eye, eye.bottom, xx)
        cx = eye.cx + 0.5 + eye.outward * 0.1 * ew * p.extent
        side = (xx - cx) * eye.outward
        h = np.clip(np.abs(side) - core, 0, None) / (np.where(side > 0, outer_hw, inner_hw) - core)
        up = np.clip((top - yy) / reach, 0, None)
        above = 1 - _smoothstep(0.3, 1.0, np.hypot(up, h))
        under = (1 - _smoothstep(0.0, 1.0, np.clip(yy - bottom, 0, None) / (0.25 * ew + 1))) \
            * (1 - _smoothstep(0.5, 1.0, h)) * p.lower
        # Beside the corners (between the two lash lines) fade from the lid value to the under-eye value,
        # so the field has no seam at either line.
        t = np.clip((yy - top) / np.maximum(bottom - top, 1.0), 0, 1)
        a = (above + t * (under - above)).astype(np.float32)
        np.maximum(alpha[win], a, out=alpha[win])
    return alpha * g.skin


def _eyeliner_alpha(g: FaceGeometry, p: Product) -> np.ndarray:
    """A band along the upper lash line, thickening toward the outer corner, with an optional wing."""
    canvas = np.zeros(g.shape, np.uint8)
    for eye in g.eyes:
        ew = eye.width
        idx = np.arange(len(eye.cols)) if eye.outward > 0 else np.arange(len(eye.cols))[::-1]
        pos = np.linspace(0.0, 1.0, len(idx))  # 0 inner corner -> 1 outer corner
        x = eye.cols[idx].astype(np.float32) + 0.5
        top = _smooth_line(eye.top)[idx]
        thick = p.thickness * 0.14 * ew * (0.3 + 0.7 * pos) + 0.3 * (p.thickness > 0)
        o = eye.outer_index
        outer_x = float(eye.cols[o]) + (1.0 if eye.outward > 0 else 0.0)
        corner_y = float(eye.top[o] + eye.bottom[o]) / 2
        wing = p.wing * 0.38 * ew
        tip = [(outer_x + eye.outward * wing, float(top[-1]) - 0.6 * wing)] if wing >= 0.5 else []
        upper = list(zip(x, top - thick))
        lower = list(zip(x[::-1], top[::-1] + 1.0))
        poly = np.array(upper + [(outer_x, float(top[-1] - thick[-1]))] + tip + [(outer_x, corner_y)] + lower,
                        np.float32)
        pts = np.round((poly - 0.5) * 16).astype(np.int32)  # OpenCV puts integer coordinates on pixel centres
        cv2.fillPoly(canvas, [pts], 255, lineType=cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0 * g.skin


def _smooth_line(y: np.ndarray) -> np.ndarray:
    """The lash line of a label map is a staircase; a short moving average makes the liner's edge clean."""
    if len(y) < 5:
        return y
    k = np.array([1, 2, 3, 2, 1], np.float32) / 9
    padded = np.pad(y, 2, mode="edge")
    return np.minimum(np.convolve(padded, k, mode="valid"), y).astype(np.float32)


def _brow_alpha(g: FaceGeometry, p: Product) -> np.ndarray:
    return _inner_soft((g.labels == BROWS).astype(np.float32), 1.0, 0.25, 0.75)


def _lip_alpha(g: FaceGeometry, p: Product) -> np.ndarray:
    sigma = max(1.0, 0.006 * max(g.shape))
    return _inner_soft((g.labels == LIPS).astype(np.float32), sigma, 0.3, 0.7)



# --- colour mixing in CIELAB ------------------------------------------------------------------------------

def _lab_of(color) -> np.ndarray:
    rgb = np.asarray(color, np.float32).reshape(1, 1, 3) / 255.0
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).reshape(3)


def _support(alpha: np.ndarray) -> tuple[slice, slice] | None:
    """Bounding box of the non-zero part of an opacity map (products are small: work only there)."""
    rows, cols = np.nonzero(alpha.any(axis=1))[0], np.nonzero(alpha.any(axis=0))[0]
    if not len(rows):
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _pigment(lab: np.ndarray, alpha: np.ndarray, color, amount: float, texture: float = 1.0,
             lightness: float = 1.0, follow_dark: bool = False) -> None:
    """Move chroma toward ``color`` and lightness toward its lightness (by ``lightness`` of the way), keeping
    ``texture`` of the photo's own lightness variation (1: all shading kept, 0: flat paint). ``follow_dark``
    puts the pigment on the darker pixels (brow hairs rather than the skin between them)."""
    box = _support(alpha)
    if box is None:
        return
    lab, alpha = lab[box], alpha[box]
    target = _lab_of(color)
    L = lab[..., 0]
    l_ref = float((L * alpha).sum() / alpha.sum())
    if follow_dark:
        alpha = alpha * np.clip(0.35 + (l_ref - L) / 15.0, 0.15, 1.0)
    w = (alpha * amount)[..., None]
    new_l = L + lightness * (target[0] - l_ref) + (texture - 1.0) * (L - l_ref)
    lab[..., 0] += w[..., 0] * (new_l - L)
    lab[..., 1:] += w * (target[1:] - lab[..., 1:])


def _apply_foundation(lab: np.ndarray, alpha: np.ndarray, p: Product, g: FaceGeometry) -> None:
    if p.smoothing > 0:
        sigma_space = max(1.5, 0.012 * max(g.shape))
        diameter = int(min(2 * round(2 * sigma_space) + 1, 11))  # bounded: cost grows with its square
        smooth = cv2.bilateralFilter(lab, d=diameter, sigmaColor=6.0 + 6.0 * p.smoothing, sigmaSpace=sigma_space)
        lab += (alpha * p.smoothing)[..., None] * (smooth - lab)
    if p.coverage > 0:
        weights = alpha.sum()
        if weights <= 0:
            return
        skin_ref = (lab * alpha[..., None]).reshape(-1, 3).sum(0) / weights
        tone = _lab_of(p.tone)
        # Evening: blotches (redness, sallowness) move toward one colour, the skin's own mean nudged toward
        # the tone. Lightness moves only a little: foundation is matched to the skin, not a mask over it.
        even_ab = skin_ref[1:] + 0.3 * (tone[1:] - skin_ref[1:])
        w = (alpha * p.coverage * 0.7)[..., None]
        lab[..., 1:] += w * (even_ab - lab[..., 1:])
        lab[..., 0] += alpha * p.coverage * 0.4 * float(np.clip(tone[0] - skin_ref[0], -6.0, 6.0))


def _apply_gloss(lab: np.ndarray, alpha: np.ndarray, p: Product, g: FaceGeometry) -> None:
    if p.gloss <= 0 or g.lips_box is None:
        return
    cx, cy, w, h = g.lips_box
    yy, xx = np.mgrid[0:g.shape[0], 0:g.shape[1]].astype(np.float32)
    blob = np.exp(-0.5 * (((xx - cx) / (0.2 * w)) ** 2 + ((yy - (cy + 0.18 * h)) / (0.12 * h + 0.5)) ** 2))
    blob += 0.5 * np.exp(-0.5 * (((np.abs(xx - cx) - 0.2 * w) / (0.1 * w)) ** 2 + ((yy - (cy - 0.22 * h)) / (0.08 * h + 0.5)) ** 2))
    L = lab[..., 0]
    ref = float((L * alpha).sum() / max(alpha.sum(), 1e-6))
    bright = np.clip(0.6 + (L - ref) / 25.0, 0.2, 1.4)  # the highlight follows the lip's own relief
    spec = alpha * np.clip(blob, 0, 1) * bright * p.gloss
    lab[..., 0] += spec * (100.0 - L) * 0.45
    lab[..., 1:] *= (1 - 0.4 * spec)[..., None]


def _apply_lipstick(lab: np.ndarray, alpha: np.ndarray, p: Product, g: FaceGeometry) -> None:
    # Lightness moves 70% of the way: a sheer pale shade on dark lips tints them, it does not turn them pastel.
    _pigment(lab, alpha, p.color, p.opacity, texture=0.9, lightness=0.7)
    _apply_gloss(lab, alpha, p, g)


def _pigment_with(texture: float, lightness: float = 1.0, follow_dark: bool = False):
    """A product that is only pigment (see :func:`_pigment` for the knobs)."""
    def apply(lab: np.ndarray, alpha: np.ndarray, p: Product, g: FaceGeometry) -> None:
        _pigment(lab, alpha, p.color, p.opacity, texture=texture, lightness=lightness, follow_dark=follow_dark)
    return apply


AlphaFn = Callable[[FaceGeometry, Product], np.ndarray]
ApplyFn = Callable[[np.ndarray, np.ndarray, Product, FaceGeometry], None]
# kind -> (opacity map, how it changes the CIELAB image); the order is the painting order: base first, lips last.
PRODUCT_RENDERERS: dict[str, tuple[AlphaFn, ApplyFn]] = {
    "foundation": (_foundation_alpha, _apply_foundation),
    "blush": (_blush_alpha, _pigment_with(1.0, lightness=0.35)),  # a flush of colour, hardly darker
    "eyeshadow": (_eyeshadow_alpha, _pigment_with(0.8)),
    "eyeliner": (_eyeliner_alpha, _pigment_with(0.25)),
    "brow_tint": (_brow_alpha, _pigment_with(0.9, follow_dark=True)),
    "lipstick": (_lip_alpha, _apply_lipstick),
}


def _strength(p: Product) -> float:
    if p.kind == "foundation":
        return max(p.coverage, p.smoothing)
    if p.kind == "lipstick":
        return max(p.opacity, p.gloss)
    return p.opacity


def product_alphas(labels: np.ndarray, style: Style | str,
                   geometry: FaceGeometry | None = None) -> dict[str, np.ndarray]:
    """Opacity map of every product the style applies with a non-zero strength."""
    style = load_style(style)
    g = geometry or FaceGeometry.from_labels(labels)
    out = {}
    for kind in PRODUCT_RENDERERS:
        prod = style.products.get(kind)
        if prod is not None and _strength(prod) > 0:
            out[kind] = PRODUCT_RENDERERS[kind][0](g, prod)
    return out


def touched_mask(labels: np.ndarray, style: Style | str) -> np.ndarray:
    """bool (H, W): where :func:`render_makeup` may change pixels for this label map and style."""
    lab = np.asarray(labels)
    return _union(product_alphas(lab, style), lab.shape)


def _union(alphas: dict[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for alpha in alphas.values():
        mask |= alpha > 0
    return mask


def render_makeup(image: np.ndarray, labels: np.ndarray, style: Style | str) -> np.ndarray:
    """Apply ``style`` to an RGB uint8 ``image`` given its label map; pixels outside the style's
    :func:`touched_mask` are returned unchanged."""
    img = np.asarray(image)
    lab_map = np.asarray(labels)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise TinyBeautyError(f"render_makeup needs an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
    if lab_map.shape != img.shape[:2]:
        raise TinyBeautyError(f"label map {lab_map.shape} does not match the image {img.shape[:2]}")
    style = load_style(style)
    g = FaceGeometry.from_labels(lab_map)
    alphas = product_alphas(lab_map, style, g)
    if not alphas:
        return img.copy()
    lab = cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    for kind, alpha in alphas.items():
        PRODUCT_RENDERERS[kind][1](lab, alpha, style.products[kind], g)
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    out = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    return np.where(_union(alphas, lab_map.shape)[..., None], out, img)


def photo_truth(photo: np.ndarray, style: Style | str, size: int = 256, name: str = "photo"):
    """A real photo as the look-fidelity checks score it: aligned to the ``size`` crop, its regions from its own
    face mesh, and the renderer's ``style`` on that crop (the truth). Returns (crop, labels, truth)."""
    from .align import align_face
    from .parsing import landmarks_to_labels

    aligned = align_face(photo, size=size, name=name)
    labels = landmarks_to_labels(aligned.landmarks, aligned.crop.shape[:2])
    return aligned.crop, labels, render_makeup(aligned.crop, labels, style)
