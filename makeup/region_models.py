"""The skin's and the brows' part of the look prior (:mod:`makeup.lookprior`): what foundation and brow tint do
to a face, fit on before/after pairs (the teacher's seeds, a prior-input student's training pairs).

The region prior gave each region one colour change (the seeds' mean) or a colour map of the pixel's RGB. A
foundation and a brow tint do what neither can:
* they smooth the texture (pores, sensor noise, stray hairs: a change at the pixel scale, finer than the
  64-px diffusion can draw);
* they even the colour toward the wearer's own mean (a red blotch moves more than the skin around it, the
  lighter skin between brow hairs more than the hairs);
* they pull that mean toward the product's (a pale face darkens, a dark one lightens; light brows darken more
  than dark ones).
Each is a feature of the photo, in CIELAB, per channel, referenced to the region's own mean on this face:

* ``fine``, ``coarse``: edge-preserving smoothing (bilateral) at 0.6 % and 1.8 % of the crop minus the photo;
* ``own``: the region's mean minus the pixel (on the skin, chroma only: its lightness is the face's shading);
* ``tone``: the region's mean minus a reference (:data:`TONE_REF`: how far this face is from a mid tone);
* ``constant``.

A region's change is ``weight * sum_k beta_k(dark) feature_k`` with ``weight`` its interior (the skin away
from the face's outline, where a foundation is blended; the brows' soft interior). A product need not act alike
on every pixel: a brow tint lays its pigment on the hairs, the pixels darker than the brow's mean, and hardly on
the skin between them. So each coefficient varies with the pixel's darkness ``dark`` = the region's mean
lightness minus the pixel's, piecewise linearly between the knots :data:`DARK_KNOTS` (constant beyond them): the
tents ``B_j(dark)`` are a partition of unity, and ``beta`` (5 x 5 knots, 3) = :data:`COEFFICIENTS` rows, feature
major, is fit by least squares over the seeds' pixels of the region (the skin outside the eye zone, where liner
and lid shadow lie). Equal rows across a feature's knots are the same coefficient on every pixel: a models array
of 5 rows a region (written before the knots) is that (:func:`expand_models`).

:func:`fit_region_models` keeps, per region, the form that predicts a left-out seed best (summed over the seeds):
none (the region's constant alone), one coefficient per feature, one per feature and knot (the brows), or one per
feature with the lightness's constant a curve in the face's skin tone (the skin: :func:`fit_tone_curve`, judged on
the seeds whose tone lies between the others' and on the lightness alone). A models array holds, per region, its
coefficients and then its tone curve's rows (:data:`MODEL_ROWS`).

The tone curve (stop 33), the prior alone fit on 5 seeds and scored on the 40 truth faces of `teacher fidelity`
and on skimage's astronaut (one-off scripts, the skin's recovery natural / glamorous / smokey_eyes / red_lip /
korean):
* seeds picked across the skin tones (:func:`spread_tones`, `render --pick tones`; the demo's: L 18.5-84.8),
  the curve: faces 0.77 / 0.70 / 0.72 / 0.80 / 0.77, the astronaut 0.74 / 0.61 / 0.70 / 0.79 / 0.76; the line
  ("flat") from the same seeds: 0.48 / 0.50 / 0.47 / 0.38 / 0.63, 0.08 / 0.25 / 0.02 / 0.02 / 0.53;
* the first five faces (L 28.6-72.7, the demo's seeds until stop 32) and the line: faces 0.62 / 0.53 / 0.58 /
  0.64 / 0.77, the astronaut 0.60 / 0.52 / 0.47 / 0.76 / 0.77; the same seeds with the curve allowed (it takes
  four looks): faces 0.66 / 0.65 / 0.66 / 0.66 / 0.77, the astronaut 0.59 / 0.48 / 0.46 / 0.77 / 0.77;
* six more face sets (`synth-faces --seed 1..6`), seeds picked across their tones, the curve forced: painted
  linearly between its knots (tents) the astronaut's skin 0.30-0.80, as the PCHIP 0.44-0.83; the faces'
  0.61-0.82 either way; the line from those seeds: faces 0.44-0.78, the astronaut -0.04-0.72.

The prior alone (no diffusion) on 24 held-out faces vs the renderer, the region prior -> these models (stop
22, seeds of `make seeds`):
* skin: natural 0.04 -> 0.51, glamorous -0.00 -> 0.46, korean 0.17 -> 0.62, red_lip 0.08 -> 0.56,
  smokey_eyes -0.30 -> 0.56 (the eye zone, under the eye template's fading edge, +0.02 to +0.14). On skimage's
  astronaut: -0.46..0.23 -> 0.44..0.76.
* brows: natural 0.18 -> 0.58, glamorous 0.35 -> 0.70, korean -0.03 -> 0.48, red_lip 0.30 -> 0.68, smokey_eyes
  0.37 -> 0.71; on the astronaut 0.00..0.32 -> 0.45..0.69, but her light brows get darker than the renderer
  makes them at their upper edge: visible spill 0.68 -> 0.93 % (glamorous), 0.74 -> 0.98 % (smokey_eyes).
* gain +2.1 to +3.1 dB on every look (natural +5.3 -> +7.4, smokey_eyes +9.7 -> +12.8).
* Darkness knots (stop 28), brows vs the renderer on the 40 truth faces of each look's demo, fit on its 5
  seeds (brows only, `/work/e28/brow2.py`): natural 0.52 -> 0.93, glamorous 0.66 -> 0.96; a coefficient linear
  in the darkness: 0.73 / 0.77.
* Tried: one bilateral at a single scale fit about as well (natural 0.53, glamorous 0.48); the two scales are
  the smoothing's basis, not one product's setting. Clamping the tone to the seeds' range (as the eye template
  clamps) made the 10 lightest of 60 faces worse (natural skin 0.16 -> -0.20): the tone is left linear.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from makeup.regions import BROWS, SKIN

MODELLED_REGIONS = (SKIN, BROWS)
FEATURES = ("constant", "fine", "coarse", "own", "tone")
# (diameter at a 256 crop, sigma colour in CIELAB units, sigma space as a share of the crop)
SMOOTHING = ((7, 6.0, 0.006), (15, 12.0, 0.018))
TONE_REF = {SKIN: np.array([65.0, 12.0, 16.0], np.float32),  # a mid skin tone and a mid brow, in CIELAB
            BROWS: np.array([40.0, 8.0, 12.0], np.float32)}
OWN_CHANNELS = {SKIN: (1, 2), BROWS: (0, 1, 2)}  # the skin's lightness is shading, not colour to even out
RIDGE = 1e-4  # shrinkage of every coefficient but the constant's, relative to its spread
# darkness (region mean L - pixel L, CIELAB) at which a coefficient's value is given; linear between, flat beyond
DARK_KNOTS = np.array([-8.0, -2.0, 4.0, 10.0, 16.0], np.float32)
COEFFICIENTS = len(FEATURES) * len(DARK_KNOTS)  # a region's rows: feature major, then knot
# a region's coefficients: the constant's alone; one a feature; a feature and knot; one a feature with the lightness's
# constant a curve in the face's skin tone (the skin: :func:`fit_tone_curve`)
FORMS = ("constant", "flat", "dark", "curve")
# a richer form is kept only where it cuts the held-out error by this share: korean's skin took the knots for 0.5 %
# less error on its seeds and lost 0.15 of its recovery on the astronaut (stop 28); the brows' knots cut it ~10x
FORM_MARGIN = 0.05
# The skin's darkness is its shading (the light on the face), not where a product lies: students' priors fit on
# 300 synthetic pairs took the knots on glamorous and korean and lost 0.08 / 0.10 of the skin on the astronaut,
# whose shadows are not the synthetic faces' (stop 28). The skin keeps one coefficient a feature.
REGION_FORMS = {SKIN: ("constant", "flat", "curve"), BROWS: ("constant", "flat", "dark")}
# The skin's lightness moves by how far the face's skin tone is from the foundation's shade, and by a bounded amount: a
# face far darker than the shade is lightened by the same most a foundation does, a face near it hardly, a lighter one
# darkened (the renderer: 0.4 x coverage x clip(shade L - skin L, -6, 6)). A line in the tone ("flat": the tone
# feature) cannot bend: fit on seeds spread over the skin tones it missed both ends (stop 32). The "curve" form gives
# the lightness's constant as a curve in the face's skin tone (the skin's mean CIELAB L, ``skin_lightness``): its
# values at knots, the seeds' own tones (the quantiles of more pairs' tones, TONE_KNOTS at most), fit with the other
# coefficients as tents (linear between the knots); the curve is the bounded ramp that fits those values best
# (:func:`bounded_ramp`: flat, a line, flat; stored as its two ends, painted by the cubic Hermite of
# :func:`tone_curve_value`, which reproduces the line). Until stop 35 it was the monotone cubic through the values
# (PCHIP); between a seed on the plateau (L 50) and one past the knee (L 70) it bent early, and the faces between
# lost their foundation's lightening. The prior alone on the demo seeds, 40 truth faces, PCHIP -> ramp (the skin
# fit without the cheeks, :func:`_fit_pixels`), skin natural / glamorous / smokey_eyes / red_lip / korean: 0.76 /
# 0.73 / 0.73 / 0.82 / 0.82 -> 0.82 / 0.81 / 0.82 / 0.81 / 0.80; the astronaut 0.75 / 0.69 / 0.70 / 0.81 / 0.83 ->
# 0.79 / 0.73 / 0.77 / 0.79 / 0.84. The other channels and coefficients are "flat"'s.
TONE_KNOTS = 7  # most knots of a tone curve
TONE_KNOT_GAP = 1.0  # tones closer than this (CIELAB L) share a knot
RAMP_STEP = 0.25  # CIELAB L: the grid a bounded ramp's ends are searched on
# a ramp fits as well as the best where its squared error is within (share of the best's, share of the values'
# spread): of those the gentlest is taken (bounded_ramp)
RAMP_TIE = (0.01, 1e-4)
MODEL_ROWS = COEFFICIENTS + TONE_KNOTS  # a region's rows in a models array: coefficients, then the tone curve's knots
# (knot L, value, slope) each, unused rows zero (a knot is a skin tone, L > 0)


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """RGB in 0..1 -> CIELAB float32 as cv2 converts float32 (the web page reproduces that arithmetic): an (H, W, 3)
    image, or any (..., 3) array of pixels."""
    return _convert(rgb, cv2.COLOR_RGB2Lab)


def from_lab(lab: np.ndarray) -> np.ndarray:
    """CIELAB -> RGB in 0..1, float32, as cv2 converts float32; shapes as :func:`to_lab`."""
    return _convert(lab, cv2.COLOR_Lab2RGB)


def _convert(x: np.ndarray, code: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.size == 0:  # cv2 refuses an empty image; a face with no pixels in a frame converts none
        return x.copy()
    if x.ndim == 3:
        return cv2.cvtColor(x, code)
    return cv2.cvtColor(x.reshape(1, -1, 3), code).reshape(x.shape)


def region_weight(labels: np.ndarray, region: int, geometry=None) -> np.ndarray:
    """(H, W) float32 in 0..1: where a product covers the region (the skin's interior; the brows' soft
    interior)."""
    if region == SKIN:
        from makeup.render import FaceGeometry

        return (geometry or FaceGeometry.from_labels(labels)).skin_inner.astype(np.float32)
    mask = (np.asarray(labels) == region).astype(np.float32)
    blurred = cv2.GaussianBlur(mask, (0, 0), 1.0)
    t = np.clip((blurred - 0.25) / 0.5, 0.0, 1.0)
    return (mask * t * t * (3 - 2 * t)).astype(np.float32)


def skin_lightness(photo: np.ndarray, labels: np.ndarray) -> float | None:
    """A face's skin tone as the skin's model sees it: the mean CIELAB L over the skin's interior
    (:func:`region_weight`; :func:`region_mean`, the tone the skin's tone curve is read at), photo (H, W, 3) uint8
    or RGB in 0..1; None for a face without skin. A foundation moves a face's lightness by how far this is from
    its shade, so seeds whose skins do not span the faces' leave the model guessing there (`teacher fidelity
    --seeds` reports both)."""
    img = np.asarray(photo)
    rgb = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    w = region_weight(labels, SKIN)
    return None if not float(w.sum()) > 0 else float(region_mean(to_lab(rgb), w, SKIN)[0])


def spread_tones(tones, count: int) -> list[int]:
    """Indices of ``count`` faces whose skin tones (:func:`skin_lightness`; None: no skin) spread evenly over the
    tones' range: for each of ``count`` evenly spaced tones from the darkest to the lightest, the nearest face not
    yet taken, in that order (ties: the first). Seeds picked so teach a look's tone curve across the skins it
    will meet: five demo seeds taken as the first five faces spanned L 29-73 of the 40 truth faces' 23-85, and
    the skin's model could not know what its foundation does to the lightest faces (stop 32)."""
    known = [i for i, t in enumerate(tones) if t is not None]
    if count >= len(known):
        return known
    x = np.asarray([tones[i] for i in known], np.float64)
    picked: list[int] = []
    for target in np.linspace(x.min(), x.max(), count):
        order = [j for j in np.argsort(np.abs(x - target), kind="stable") if j not in picked]
        picked.append(int(order[0]))
    return [known[j] for j in picked]


def region_features(photo: np.ndarray, labels: np.ndarray, region: int, geometry=None, lab=None):
    """photo (H, W, 3) RGB in 0..1, labels (H, W) -> features (H, W, 3, 5) in CIELAB per channel (the order of
    :data:`FEATURES`), the region's weight (H, W), each pixel's darkness (H, W): the region's mean lightness
    minus the pixel's (:func:`dark_tents` lays it on the knots), and that mean (3,) in CIELAB (:func:`region_mean`:
    its L is the tone a tone curve is read at)."""
    w = region_weight(labels, region, geometry)
    lab = to_lab(photo) if lab is None else lab
    size = max(lab.shape[:2])
    mean = region_mean(lab, w, region)
    feats = [np.ones_like(lab)]
    for diameter, sigma_colour, share in SMOOTHING:
        d = max(3, int(round(diameter * size / 256)) | 1)
        feats.append(cv2.bilateralFilter(lab, d, sigma_colour, max(0.5, share * size)) - lab)
    own = np.zeros_like(lab)
    for c in OWN_CHANNELS[region]:
        own[..., c] = mean[c] - lab[..., c]
    feats.append(own)
    feats.append(np.broadcast_to(mean - TONE_REF[region], lab.shape))
    return np.stack(feats, axis=-1).astype(np.float32), w, (mean[0] - lab[..., 0]).astype(np.float32), mean


def region_mean(lab: np.ndarray, w: np.ndarray, region: int) -> np.ndarray:
    """The region's mean colour (3,) in CIELAB, weighted by ``w`` (float32 sums, as the models paint; the region's
    tone reference where it has no weight)."""
    total = float(w.sum())
    return (lab * w[..., None]).reshape(-1, 3).sum(0) / total if total > 0 else TONE_REF[region]


def dark_tents(dark: np.ndarray) -> np.ndarray:
    """(...) darkness -> (..., knots) float32: the hat functions of :data:`DARK_KNOTS` (a partition of unity;
    the end knots' tents hold 1 beyond them)."""
    return tents(dark, DARK_KNOTS)


def tents(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """(...) values -> (..., len(knots)) float32 hat functions of ascending ``knots`` (a partition of unity, the end
    knots' tents hold 1 beyond them; one knot: 1 everywhere)."""
    k = np.asarray(knots, np.float32)
    if len(k) == 1:
        return np.ones(np.shape(x) + (1,), np.float32)
    x = np.clip(np.asarray(x, np.float32), k[0], k[-1])
    j = np.clip(np.searchsorted(k, x, side="right") - 1, 0, len(k) - 2)
    t = (x - k[j]) / (k[j + 1] - k[j])
    out = np.zeros(x.shape + (len(k),), np.float32)
    np.put_along_axis(out, j[..., None], (1 - t)[..., None], -1)
    np.put_along_axis(out, (j + 1)[..., None], t[..., None], -1)
    return out


def expand_models(models) -> np.ndarray | None:
    """A models array as (len(MODELLED_REGIONS), MODEL_ROWS, 3) float32: one written with one coefficient a
    feature (5 rows a region, before the darkness knots) has it repeated at every knot, which paints the same; one
    written before the tone curve (COEFFICIENTS rows a region) has no curve (zero rows). None stays None. Any other
    size is a ValueError."""
    if models is None:
        return None
    m = np.asarray(models, np.float32)
    regions = len(MODELLED_REGIONS)
    if m.size == regions * len(FEATURES) * 3:
        m = np.repeat(m.reshape(regions, len(FEATURES), 1, 3), len(DARK_KNOTS), axis=2)
    if m.size == regions * COEFFICIENTS * 3:
        m = np.concatenate([m.reshape(regions, COEFFICIENTS, 3), np.zeros((regions, TONE_KNOTS, 3), np.float32)], 1)
    return m.reshape(regions, MODEL_ROWS, 3)


def tone_curve(rows: np.ndarray) -> np.ndarray | None:
    """A region's tone curve from its models rows ((MODEL_ROWS, 3)): (knots, 3) = knot L, value, slope; None
    without one."""
    curve = np.asarray(rows)[COEFFICIENTS:]
    curve = curve[curve[:, 0] > 0]
    return curve if len(curve) else None


def tone_curve_value(tone: float, curve: np.ndarray) -> float:
    """The curve at a skin tone (float64 cubic Hermite on the knots' values and slopes; flat beyond the outer
    knots)."""
    x, y, d = (np.asarray(curve[:, j], np.float64) for j in range(3))
    if len(x) == 1:
        return float(y[0])
    t = min(max(float(tone), x[0]), x[-1])
    j = min(int(np.searchsorted(x, t, side="right")) - 1, len(x) - 2)
    h = x[j + 1] - x[j]
    s = (t - x[j]) / h
    return float((2 * s ** 3 - 3 * s ** 2 + 1) * y[j] + (s ** 3 - 2 * s ** 2 + s) * h * d[j]
                 + (-2 * s ** 3 + 3 * s ** 2) * y[j + 1] + (s ** 3 - s ** 2) * h * d[j + 1])


def tone_knots(tones) -> np.ndarray:
    """The knots of a tone curve over pairs' skin tones: the tones themselves (TONE_KNOTS at most: their
    quantiles), ascending, a knot within TONE_KNOT_GAP of the one before dropped."""
    x = np.sort(np.asarray(tones, np.float64))
    if len(x) > TONE_KNOTS:
        x = np.quantile(x, np.linspace(0.0, 1.0, TONE_KNOTS))
    keep = [x[0]]
    for v in x[1:]:
        if v - keep[-1] >= TONE_KNOT_GAP:
            keep.append(v)
    return np.asarray(keep, np.float64)


def bounded_ramp(knots, values) -> np.ndarray:
    """The tone curve of a foundation's lightness from its values at the knots: the bounded ramp (flat up to a
    tone ``t1``, a line to ``t2``, flat beyond) that fits them best by least squares, as (knot L, value, slope)
    rows: ``(t1, f(t1), q), (t2, f(t2), q)``, which :func:`tone_curve_value` paints as that line between them and
    flat beyond (one knot: its value, flat). The ends are searched on a grid of :data:`RAMP_STEP` over the knots'
    span. Where the knots leave the ramp's ends open (a knee between two seeds: every place of it fits alike), the
    gentlest of the ramps within :data:`RAMP_TIE` of the best error is taken: the ramp spans the whole gap, as a
    line between those seeds would."""
    x, y = np.asarray(knots, np.float64), np.asarray(values, np.float64)
    if len(x) == 1:
        return np.array([[x[0], y[0], 0.0]])
    grid = np.linspace(x[0], x[-1], max(2, int(np.ceil((x[-1] - x[0]) / RAMP_STEP)) + 1))
    i, j = np.triu_indices(len(grid), 1)
    c = np.clip(x[None, :], grid[i, None], grid[j, None])  # (candidates, knots): each knot's tone on the ramp
    cm, ym = c.mean(1), y.mean()
    sxx, sxy = ((c - cm[:, None]) ** 2).sum(1), ((c - cm[:, None]) * (y - ym)).sum(1)
    q = sxy / np.maximum(sxx, 1e-12)
    p = ym - q * cm
    sse = ((p[:, None] + q[:, None] * c - y) ** 2).sum(1)
    floor = float(sse.min())
    near = np.flatnonzero(sse <= floor * (1 + RAMP_TIE[0]) + RAMP_TIE[1] * float(((y - ym) ** 2).sum()))
    k = near[np.argmin(np.abs(q[near]))]
    t1, t2 = grid[i[k]], grid[j[k]]
    return np.array([[t1, p[k] + q[k] * t1, q[k]], [t2, p[k] + q[k] * t2, q[k]]])


def region_model_change(photo: np.ndarray, labels: np.ndarray, models, geometry=None) -> np.ndarray:
    """The modelled regions' change to one face (H, W, 3) RGB in 0..1 units; 0 where no model applies.
    ``models`` (len(MODELLED_REGIONS), COEFFICIENTS, 3) (or an older 5 rows a region, :func:`expand_models`): a
    region's all-zero rows mean no model."""
    models = expand_models(models)
    lab = to_lab(photo)
    lab_change = np.zeros_like(lab)
    covered = np.zeros(lab.shape[:2], bool)
    for region, rows in zip(MODELLED_REGIONS, models):
        if not rows.any():
            continue
        beta, curve = rows[:COEFFICIENTS], tone_curve(rows)
        feats, w, dark, mean = region_features(photo, labels, region, geometry, lab)
        m = w > 0  # the region's pixels only: each one's coefficients at its darkness, (P, 3, 5)
        by_knot = beta.reshape(len(FEATURES), len(DARK_KNOTS), 3).transpose(1, 2, 0).reshape(len(DARK_KNOTS), -1)
        coef = (dark_tents(dark[m]) @ by_knot).reshape(-1, 3, len(FEATURES))
        lab_change[m] += (feats[m] * coef).sum(-1) * w[m][:, None]
        if curve is not None:  # the lightness's constant at this face's tone
            lab_change[m, 0] += w[m] * tone_curve_value(mean[0], curve)
        covered |= m
    if not covered.any():
        return np.zeros_like(photo, dtype=np.float32)
    after = from_lab(lab + lab_change)
    return (after - photo).astype(np.float32) * covered[..., None]


def _fit_pixels(labels: np.ndarray, region: int) -> np.ndarray:
    """The pixels a region's fit reads: its label; the skin outside the eye zone and the cheeks (look fidelity's
    regions, ``makeup.metrics.reported_masks``).

    The cheeks are the blush's: left in, the skin's constant took a share of a blush's redness onto the whole face
    (glamorous, the inner skin's mean a* +0.4 over the renderer's on the 40 truth faces). Until stop 35 they stayed
    in, as the RGB cheek template painted over the skin model's change and lost the cheeks without it (stop 28:
    the astronaut's glamorous cheeks 0.68 -> 0.62). The CIELAB cheek template (``cheeks_lab``) adds to the skin
    model, and fits the blush on what it leaves. Left out (stop 35, the prior alone on the demo seeds, 40 truth
    faces and the astronaut, with :func:`bounded_ramp`), skin natural / glamorous / smokey_eyes / red_lip /
    korean: faces 0.83 / 0.76 / 0.82 / 0.81 / 0.72 -> 0.82 / 0.81 / 0.82 / 0.81 / 0.80, the astronaut 0.81 / 0.62 /
    0.78 / 0.79 / 0.76 -> 0.79 / 0.73 / 0.77 / 0.79 / 0.84; the faces' cheeks 0.73 / 0.80 / 0.85 / 0.88 / 0.78 ->
    0.73 / 0.81 / 0.85 / 0.87 / 0.80."""
    if region != SKIN:
        return np.asarray(labels) == region
    from makeup.metrics import reported_masks

    masks = reported_masks(labels)
    return masks["skin"][0].numpy() & ~masks["cheeks"][0].numpy()


def _moments(befores, afters, labels, region: int):
    """Per seed and CIELAB channel the normal equations of ``change ~ weight * (features x tents) @ beta``:
    X^T X (seeds, 3, C, C), X^T y (seeds, 3, C), y^T y (seeds, 3), C = :data:`COEFFICIENTS`, and each seed's
    tone (seeds,): the region's mean CIELAB L (the skin's tone curve is a function of it).

    A region whose :data:`REGION_FORMS` hold no "dark" form is fit with one coefficient a feature only: its
    moments are taken over the 5 features (5x fewer columns, 25x fewer products) and laid into the C
    coordinates as ``E m E^T`` with ``E`` = the "flat" design / knots, which every form of :func:`_design` up to
    "flat" reads back exactly (``P^T E`` is the identity there: the tents sum to 1)."""
    knots = "dark" in REGION_FORMS[region]
    xtx, xty, yty, tones = [], [], [], []
    for b, a, lab in zip(befores, afters, labels):
        photo = b.astype(np.float32) / 255.0
        photo_lab = to_lab(photo)
        feats, w, dark, mean = region_features(photo, lab, region, lab=photo_lab)
        tones.append(float(mean[0]))
        m = _fit_pixels(lab, region) & (w > 0)
        X = feats[m] * w[m][:, None, None]  # (P, 3, 5)
        if knots:
            X = (X[..., None] * dark_tents(dark[m])[:, None, None, :]).reshape(int(m.sum()), 3, COEFFICIENTS)
        y = (to_lab(a.astype(np.float32) / 255.0) - photo_lab)[m]  # (P, 3)
        xtx.append(np.einsum("pck,pcj->ckj", X, X, dtype=np.float64))
        xty.append(np.einsum("pck,pc->ck", X, y, dtype=np.float64))
        yty.append((y.astype(np.float64) ** 2).sum(0))
    xtx, xty = np.stack(xtx), np.stack(xty)
    if not knots:
        E = _design("flat") / len(DARK_KNOTS)  # (C, 5)
        xtx, xty = E @ xtx @ E.T, xty @ E.T
    return xtx, xty, np.stack(yty), np.asarray(tones)


@functools.lru_cache(maxsize=None)
def _design(form: str) -> np.ndarray:
    """(COEFFICIENTS, m): the coefficients of a form as a map of its m free ones, the constant's first:
    "constant" (one, at every knot), "flat" (one a feature, at every knot) or "dark" (one a feature and knot)."""
    knots = len(DARK_KNOTS)
    if form == "dark":
        out = np.eye(COEFFICIENTS)
    else:
        per_feature = np.kron(np.eye(len(FEATURES)), np.ones((knots, 1)))  # (C, 5)
        out = per_feature[:, :1] if form == "constant" else per_feature
    out.flags.writeable = False  # cached: shared by every fit
    return out


def _solve(xtx: np.ndarray, xty: np.ndarray, form: str) -> np.ndarray:
    """(COEFFICIENTS, 3) beta from summed moments in one of :data:`FORMS`; the constant's coefficients are not
    shrunk."""
    P = _design(form)
    free = 1 if form != "dark" else len(DARK_KNOTS)  # the constant's own coefficients
    beta = np.zeros((COEFFICIENTS, 3))
    for c in range(3):
        A, b = P.T @ xtx[c] @ P, P.T @ xty[c]
        k = len(A)
        if k > free:
            spread = np.diag(A)[free:].mean()
            A[free:, free:] += RIDGE * max(spread, 1e-9) * np.eye(k - free)
        beta[:, c] = P @ np.linalg.lstsq(A + 1e-12 * np.eye(k), b, rcond=None)[0]
    return beta


def _error(xtx: np.ndarray, xty: np.ndarray, yty: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """(3,) squared error per CIELAB channel of ``beta`` on one seed's moments."""
    return np.einsum("ckj,kc,jc->c", xtx, beta, beta) - 2 * np.einsum("ck,kc->c", xty, beta) + yty


CONSTANT, TONE = FEATURES.index("constant"), FEATURES.index("tone")


def _lightness_moments(xtx: np.ndarray, xty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per seed the lightness's moments in the 5 features ("flat"): (seeds, 5, 5), (seeds, 5)."""
    P = _design("flat")
    return np.einsum("ki,nkl,lj->nij", P, xtx[:, 0], P), xty[:, 0] @ P


def fit_tone_curve(beta: np.ndarray, A: np.ndarray, b: np.ndarray, tones: np.ndarray):
    """The "curve" form from "flat"'s ``beta`` (COEFFICIENTS, 3), the seeds' lightness moments (A (seeds, 5, 5), b
    (seeds, 5): :func:`_lightness_moments`) and tones (seeds,): (COEFFICIENTS, 3) beta, "flat"'s but for the
    lightness's constant and tone coefficients (0), and the curve: :func:`bounded_ramp` of the
    lightness's constant at each knot. Those values are fit with its other coefficients by least squares, the
    seeds' constant column spread over the knots by their tents (:func:`tents` of the seed's tone): X_tents =
    t (x) X_constant, so every product is a seed's moments times its tents."""
    beta = beta.copy()
    knots = tone_knots(tones)
    t = tents(tones, knots).astype(np.float64)  # (seeds, K)
    rest = [j for j in range(len(FEATURES)) if j not in (CONSTANT, TONE)]
    K = len(knots)
    M = np.zeros((K + len(rest),) * 2)
    M[:K, :K] = np.einsum("ni,nj,n->ij", t, t, A[:, CONSTANT, CONSTANT])
    M[:K, K:] = np.einsum("ni,nj->ij", t, A[:, CONSTANT][:, rest])
    M[K:, :K] = M[:K, K:].T
    M[K:, K:] = A[:, rest][:, :, rest].sum(0)
    r = np.concatenate([t.T @ b[:, CONSTANT], b[:, rest].sum(0)])
    spread = np.diag(M)[K:].mean() if len(rest) else 0.0
    M[K:, K:] += RIDGE * max(spread, 1e-9) * np.eye(len(rest))
    sol = np.linalg.lstsq(M + 1e-12 * np.eye(len(M)), r, rcond=None)[0]
    coef = np.zeros(len(FEATURES))
    coef[rest] = sol[K:]
    beta[:, 0] = _design("flat") @ coef
    values = sol[:K]
    return beta, bounded_ramp(knots, values)


def _with_curve(beta: np.ndarray, curve: np.ndarray | None) -> np.ndarray:
    """(MODEL_ROWS, 3): a region's coefficients and its tone curve's rows (zero without one)."""
    out = np.zeros((MODEL_ROWS, 3))
    out[:COEFFICIENTS] = beta
    if curve is not None:
        out[COEFFICIENTS:COEFFICIENTS + len(curve)] = curve
    return out


def _fit_form(xtx_sum: np.ndarray, xty_sum: np.ndarray, form: str, lightness=None, solved=None) -> np.ndarray:
    """(MODEL_ROWS, 3) of one form fit on summed moments; a curve also reads the seeds' ``lightness`` (A, b,
    tones: :func:`_lightness_moments` and the tones of the seeds summed). ``solved``: a dict of the solves
    already made on these sums, by form (read and filled)."""
    base = "flat" if form == "curve" else form
    solved = {} if solved is None else solved
    if base not in solved:
        solved[base] = _solve(xtx_sum, xty_sum, base)
    beta = solved[base]
    return _with_curve(*fit_tone_curve(beta, *lightness)) if form == "curve" else _with_curve(beta, None)


def region_model_moments(befores, afters, labels) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per modelled region, the per-seed normal equations and tones of :func:`_moments`: computed once, every fit
    with or without a seed (:func:`models_from_moments`) is made of them."""
    return [_moments(befores, afters, labels, r) for r in MODELLED_REGIONS]


def _region_fit(xtx: np.ndarray, xty: np.ndarray, yty: np.ndarray, tones: np.ndarray,
                forms=FORMS) -> np.ndarray | None:
    """One region's rows (MODEL_ROWS, 3) from its per-seed moments and tones in the form of ``forms`` (of
    :data:`FORMS`) that predicts a left-out seed's pixels best (summed over the seeds; a richer form by
    :data:`FORM_MARGIN` at least, in the order of FORMS), or None where that is the region's constant alone, no
    seed has the region or no form but the constant is allowed. Below 3 seeds there is no such check: one
    coefficient a feature where that is allowed, else the richest form allowed."""
    rich = [f for f in FORMS if f in forms and f != "constant"]
    if not rich or not len(xtx) or not np.trace(xtx.sum(0)[0]) > 0:
        return None
    n = len(xtx)
    form = "flat" if "flat" in rich else rich[-1]
    total_xtx, total_xty = xtx.sum(0), xty.sum(0)
    lightness = (*_lightness_moments(xtx, xty), tones) if "curve" in rich else None
    if n >= 3:
        forms = ("constant", *rich)
        held = range(n)
        if "curve" in forms:  # a curve is flat beyond its outer knots: it is judged where it interpolates
            held = [k for k in range(n) if np.delete(tones, k).min() < tones[k] < np.delete(tones, k).max()] or held
        err = np.zeros((len(forms), 3))
        for k in held:  # each form fit without seed k, its error on seed k per CIELAB channel
            keep = np.arange(n) != k
            solved: dict = {}  # a curve starts from "flat"'s solve
            for j, f in enumerate(forms):
                rows = _fit_form(total_xtx - xtx[k], total_xty - xty[k], f,
                                 None if lightness is None else tuple(v[keep] for v in lightness), solved)
                beta, curve = rows[:COEFFICIENTS], tone_curve(rows)
                if curve is not None:  # painted at the seed's tone, as it paints
                    beta[:, 0] += _design("flat")[:, CONSTANT] * tone_curve_value(tones[k], curve)
                err[j] += _error(xtx[k], xty[k], yty[k], beta)
        best = 0
        for j in range(1, len(forms)):  # forms run from the plainest; each must beat the best so far clearly
            # a curve differs from "flat" in the lightness alone: judged there (its gain would vanish in the sum)
            ch = [0] if (forms[j], forms[best]) == ("curve", "flat") else [0, 1, 2]
            if err[j, ch].sum() < (1 - FORM_MARGIN) * err[best, ch].sum():
                best = j
        form = forms[best]
        if form == "constant":
            return None
    return _fit_form(total_xtx, total_xty, form, lightness).astype(np.float32)


def models_from_moments(moments, seeds=None, forms=FORMS) -> np.ndarray | None:
    """(len(MODELLED_REGIONS), MODEL_ROWS, 3) float32 from :func:`region_model_moments` over the ``seeds`` (a
    boolean mask; all when None), a region's rows zero where :func:`_region_fit` declines; None where every region
    declines. ``forms``: those the fit may choose from (each region within its :data:`REGION_FORMS`)."""
    fits = [_region_fit(*(m if seeds is None else m[seeds] for m in region),
                        forms=tuple(f for f in forms if f in REGION_FORMS[r]))
            for r, region in zip(MODELLED_REGIONS, moments)]
    if all(f is None for f in fits):
        return None
    return np.stack([np.zeros((MODEL_ROWS, 3), np.float32) if f is None else f for f in fits])


def fit_region_models(befores, afters, labels, forms=FORMS) -> np.ndarray | None:
    """The region models from seed pairs (uint8 before/after, label maps): :func:`models_from_moments` of all."""
    if not len(befores):
        return None
    return models_from_moments(region_model_moments(befores, afters, labels), forms=forms)


def modelled(models) -> list[int]:
    """The regions a models array paints."""
    if models is None:
        return []
    return [r for r, beta in zip(MODELLED_REGIONS, expand_models(models)) if beta.any()]
