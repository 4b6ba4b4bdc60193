"""Procedural synthetic faces with exact region maps (the embedded default when no photos are given).

``generate_face(seed, size)`` draws one already-aligned face crop, laid out like an FFHQ-aligned crop (eye
centres near y = 0.46, a quarter of the width apart, mouth near y = 0.73), and returns it with the EXACT label
map of what was drawn: 0 other (background, hair, neck, ears, clothes), 1 eyes (the eye opening: sclera, iris,
lash line), 2 lips, 3 skin (face skin, nose included), 4 brows.

Every shape is an implicit function ``d(x, y)`` (about a distance in pixels, negative inside). The label of a
pixel is ``d < 0`` at its centre and the drawn coverage is ``clip(0.5 - d, 0, 1)``, so the picture is
anti-aliased and the map agrees with it to the pixel. Layers are painted back to front and each overwrites the
labels below it. Everything random comes from ``numpy.random.default_rng(seed)``: same seed, same face.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import TinyBeautyError
from .io import save_image
from .regions import BROWS, EYES, LIPS, OTHER, SKIN

# Skin tones from very light to very dark (sRGB); a face interpolates between two neighbours.
SKIN_TONES = np.array([
    [246, 216, 196], [240, 200, 176], [234, 189, 157], [222, 170, 134], [200, 145, 108],
    [170, 114, 80], [135, 88, 60], [100, 64, 44], [72, 46, 34],
], dtype=np.float32)
HAIR_COLORS = np.array([
    [22, 18, 16], [45, 32, 24], [78, 52, 34], [112, 78, 50], [160, 120, 76], [212, 178, 120],
    [140, 62, 34], [170, 170, 168], [60, 44, 40],
], dtype=np.float32)
IRIS_COLORS = np.array([
    [58, 36, 22], [92, 60, 34], [40, 28, 20], [70, 96, 140], [84, 110, 74], [120, 90, 50], [100, 110, 120],
], dtype=np.float32)


@dataclass(frozen=True)
class SynthFace:
    """One synthetic face crop: ``image`` (H, W, 3) uint8, exact ``labels`` (H, W) uint8, the parameters used."""

    image: np.ndarray
    labels: np.ndarray
    seed: int
    params: dict = field(default_factory=dict)


class _Canvas:
    """An RGB float canvas in [0, 1] with its label map; ``paint`` composites one anti-aliased layer."""

    def __init__(self, rgb: np.ndarray, labels: np.ndarray, subject: np.ndarray):
        self.rgb, self.labels, self.subject = rgb, labels, subject  # subject: coverage of all but background

    def sub(self, window: tuple[slice, slice]) -> "_Canvas":
        """A view on a window: painting it paints the canvas (features are drawn only where they can be)."""
        return _Canvas(self.rgb[window], self.labels[window], self.subject[window])

    def paint(self, dist: np.ndarray, color, label: int | None = None, opacity: float = 1.0) -> np.ndarray:
        cov = np.clip(0.5 - dist, 0.0, 1.0) * opacity
        rows, cols = np.flatnonzero(cov.any(axis=1)), np.flatnonzero(cov.any(axis=0))
        if not len(rows):
            return cov
        box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)  # blend only where it covers
        col = np.asarray(color, np.float32)
        if col.shape[:2] == cov.shape:
            col = col[box]
        c, rgb = cov[box], self.rgb[box]
        rgb += c[..., None] * (col - rgb)
        np.maximum(self.subject[box], c, out=self.subject[box])
        if label is not None:
            self.labels[box][dist[box] < 0] = label
        return cov


def _smooth_noise(rng: np.random.Generator, size: int | tuple[int, int], sigma: float,
                  sx: float | None = None) -> np.ndarray:
    """Zero-mean, unit-std noise blurred with ``sigma`` pixels (``sx`` across, to stretch it into strands).

    Wide blurs are drawn on a coarse grid and upsampled: same look, a fraction of the cost.
    """
    h, w = size if isinstance(size, tuple) else (size, size)
    sy, sx = max(sigma, 0.3), max(sx if sx is not None else sigma, 0.3)
    fy, fx = max(sy / 2.0, 1.0), max(sx / 2.0, 1.0)
    gh, gw = max(int(np.ceil(h / fy)), 2), max(int(np.ceil(w / fx)), 2)
    n = rng.standard_normal((gh, gw), dtype=np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigmaX=sx / fx, sigmaY=sy / fy, borderType=cv2.BORDER_REFLECT)
    if (gh, gw) != (h, w):
        n = cv2.resize(n, (w, h), interpolation=cv2.INTER_LINEAR)
    return n / max(float(n.std()), 1e-6)


def _lerp(a, b, t):
    return a + (b - a) * t


def _pick(rng: np.random.Generator, table: np.ndarray, jitter: float) -> np.ndarray:
    """A colour between two neighbouring rows of ``table`` plus a small per-channel jitter, in [0, 1]."""
    t = rng.uniform(0, len(table) - 1)
    i = min(int(t), len(table) - 2)
    c = _lerp(table[i], table[i + 1], t - i) * rng.uniform(1 - jitter, 1 + jitter, 3)
    return np.clip(c / 255.0, 0, 1).astype(np.float32)


def _sample_params(rng: np.random.Generator) -> dict:
    """All shape/colour choices of one face, in crop units (1.0 = crop width)."""
    u = rng.uniform
    return {
        "roll": u(-0.14, 0.14),                       # radians, ~±8°
        "scale": u(0.92, 1.08),
        "eye_mid": (0.5 + u(-0.02, 0.02), 0.46 + u(-0.02, 0.02)),
        "eye_gap": u(0.115, 0.135),                   # half distance between eye centres
        "face_w": u(0.28, 0.34), "face_h": u(0.35, 0.41), "face_dy": u(0.05, 0.09),
        "jaw_taper": u(0.05, 0.4), "face_pow": u(1.9, 2.6),
        "eye_w": u(0.05, 0.064), "eye_up": u(0.021, 0.033), "eye_lo": u(0.011, 0.019),
        "eye_tilt": u(-0.12, 0.18), "eye_dy": u(-0.005, 0.005), "gaze": (u(-0.25, 0.25), u(-0.1, 0.1)),
        "brow_dy": u(0.06, 0.085), "brow_w": u(0.065, 0.085), "brow_th": u(0.008, 0.015), "brow_arch": u(0.004, 0.018),
        "brow_peak": u(0.0, 0.5), "brow_dx": u(-0.005, 0.012),
        "mouth_dy": u(0.25, 0.29), "mouth_w": u(0.08, 0.11), "lip_up": u(0.016, 0.028), "lip_lo": u(0.02, 0.036),
        "bow": u(0.1, 0.45), "smile": u(-0.006, 0.01), "mouth_dx": u(-0.006, 0.006),
        "nose_len": u(0.15, 0.19), "nose_w": u(0.028, 0.04),
        "hair_style": int(rng.integers(0, 4)),        # 0 short, 1 long, 2 bangs, 3 tied back
        "hairline": u(0.17, 0.24), "hair_puff": u(0.02, 0.07),
        "light": (u(-0.7, 0.7), u(-0.6, 0.2)), "ambient": u(0.55, 0.8),
        "ears": bool(rng.random() < 0.6), "freckles": bool(rng.random() < 0.2),
        "mouth_open": u(0.3, 0.9) if rng.random() < 0.3 else 0.0,  # a parted smile shows teeth
        "yaw": u(-0.35, 0.35),  # the nearer eye and brow look wider
    }


def _lip_tone(seed: int) -> float:
    """How far a face's lips are from its skin colour (1: the full lip colour, 0: skin). Real lips are close to
    the skin: the astronaut's are 0.90 x her skin in green and 1.00 x in blue, where the full synthetic lip
    colour is 0.50-0.64 and 0.53-0.76; a student trained on strongly red lips only left hers unpainted
    (red_lip lips recovery 0.65 on synthetic faces, 0.28 with their lips moved 70 % towards the skin, 0.01 on
    the astronaut). Drawn from its own stream so every other choice of a seed's face stays as it was."""
    return float(np.random.default_rng([int(seed), 7]).uniform(0.25, 1.0))


def generate_face(seed: int, size: int = 256) -> SynthFace:
    """Draw the face for ``seed`` at ``size`` x ``size``; deterministic per (seed, size)."""
    if size < 32:
        raise TinyBeautyError(f"synthetic face size must be >= 32, got {size}")
    rng = np.random.default_rng(int(seed))
    p = _sample_params(rng)
    S = float(size)
    skin = _pick(rng, SKIN_TONES, 0.04)
    hair = _pick(rng, HAIR_COLORS, 0.08)
    iris = _pick(rng, IRIS_COLORS, 0.15)
    lip = np.clip(skin * np.array([0.86, 0.6, 0.62]) + np.array([0.08, 0.0, 0.02]) * rng.uniform(0.5, 1.5), 0, 1)
    lip = skin + (lip - skin) * np.float32(_lip_tone(seed))
    brow = np.clip(hair * rng.uniform(0.6, 0.9) + skin * 0.12, 0, 1)

    # Pixel centres in crop units, then the face frame: origin between the eyes, rolled and scaled.
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    X, Y = (xs + 0.5) / S, (ys + 0.5) / S
    ex, ey = p["eye_mid"]
    c, s = np.cos(p["roll"]), np.sin(p["roll"])
    k = p["scale"]
    U = ((X - ex) * c + (Y - ey) * s) / k
    V = (-(X - ex) * s + (Y - ey) * c) / k
    px = S * k  # crop units of the face frame -> pixels
    # A turned head: the crop stays aligned on the features while the outline, hair and neck slide sideways.
    Uh = U + np.float32(p["yaw"] * 0.04)

    canvas = _Canvas(_background(rng, size, X, Y), np.zeros((size, size), np.uint8),
                     np.zeros((size, size), np.float32))
    win = _Windows(p, size)
    _clothes(canvas, rng, Uh, V, px, size)
    long_hair = p["hair_style"] == 1
    if long_hair:
        _hair_back(canvas, rng, Uh, V, px, p, hair)
    face_d = _face_dist(Uh, V, p) * px
    _neck_and_ears(canvas, rng, Uh, V, px, p, skin, face_d)
    skin_tex = _skin_texture(rng, size)
    canvas.paint(face_d, skin[None, None, :] * skin_tex[..., None], SKIN)
    w = win(0.0, p["nose_len"] / 2, p["nose_len"] / 2 + 0.05)
    _nose(canvas.sub(w), U[w], V[w], px, p)
    for side in (-1.0, 1.0):
        w = win(side * 0.13, 0.14, 0.16)
        _cheek(canvas.sub(w), rng, U[w], V[w], side, p)
        w = win(side * p["eye_gap"], p["eye_dy"], p["eye_w"] * 2.5 + 0.05)
        _eye_socket(canvas.sub(w), U[w], V[w], p, side)
        w = win(side * p["eye_gap"], p["eye_dy"], p["eye_w"] * 1.3 + 0.02)
        _eye(canvas.sub(w), rng, U[w], V[w], px, p, side, iris)
        w = win(side * (p["eye_gap"] + p["brow_dx"]), p["eye_dy"] - p["brow_dy"], p["brow_w"] + 0.05)
        _brow(canvas.sub(w), rng, U[w], V[w], px, p, side, brow)
    w = win(p["mouth_dx"], p["mouth_dy"], p["mouth_w"] + 0.05)
    _lips(canvas.sub(w), rng, U[w], V[w], px, p, lip)
    _hair_front(canvas, rng, Uh, V, px, p, hair, face_d)
    image = _camera(canvas, rng, Uh, V, p)
    return SynthFace(image=image, labels=canvas.labels.copy(), seed=int(seed), params=p)


def _background(rng, size, X, Y) -> np.ndarray:
    c0, c1 = rng.uniform(0.1, 0.95, 3).astype(np.float32), rng.uniform(0.1, 0.95, 3).astype(np.float32)
    angle = rng.uniform(0, np.pi)
    t = np.clip((X - 0.5) * np.cos(angle) + (Y - 0.5) * np.sin(angle) + 0.5, 0, 1)[..., None]
    bg = _lerp(c0, c1, t).astype(np.float32)
    blobs = _smooth_noise(rng, size, size / 10)[..., None] * rng.uniform(0.0, 0.08, 3).astype(np.float32)
    return np.clip(bg + blobs.astype(np.float32), 0, 1)


def _clothes(canvas: _Canvas, rng, U, V, px, size: int) -> None:
    shoulders = (np.sqrt((U / rng.uniform(0.45, 0.6)) ** 2 + ((V - 0.78) / 0.3) ** 2) - 1.0) * 0.3 * px
    color = rng.uniform(0.05, 0.9, 3).astype(np.float32) * (1 + 0.08 * _smooth_noise(rng, size, 2.0)[..., None])
    canvas.paint(shoulders, np.clip(color, 0, 1), OTHER)


def _face_dist(U, V, p) -> np.ndarray:
    """Face outline: a super-ellipse whose lower half narrows toward the chin (jaw taper)."""
    v = (V - p["face_dy"]) / p["face_h"]
    half_w = p["face_w"] * (1.0 - p["jaw_taper"] * np.clip(v, 0, 1) ** 2)
    r = (np.abs(U) / half_w) ** p["face_pow"] + np.abs(v) ** p["face_pow"]
    return (r ** (1.0 / p["face_pow"]) - 1.0) * p["face_w"]


def _neck_and_ears(canvas: _Canvas, rng, U, V, px, p, skin, face_d) -> None:
    neck_w = p["face_w"] * rng.uniform(0.5, 0.65)
    neck = np.maximum(np.abs(U) - neck_w, p["face_dy"] + 0.1 - V) * px
    under_chin = np.clip(1.0 - np.maximum(face_d, 0) / (0.08 * px), 0, 1)  # the chin's shadow on the neck
    canvas.paint(neck, skin * (0.78 - 0.18 * under_chin[..., None]), OTHER)
    if p["ears"]:
        for side in (-1.0, 1.0):
            eu, ev = side * p["face_w"] * 0.97, p["face_dy"] + 0.01
            ear = (np.sqrt(((U - eu) / 0.028) ** 2 + ((V - ev) / 0.06) ** 2) - 1.0) * 0.03 * px
            canvas.paint(ear, skin * 0.88, OTHER)


def _skin_texture(rng, size: int) -> np.ndarray:
    """Multiplicative skin texture: blotches, pores and (sometimes) freckles around 1.0."""
    tex = 1.0 + 0.03 * _smooth_noise(rng, size, size / 25) + 0.015 * _smooth_noise(rng, size, 0.7)
    if rng.random() < 0.2:
        dots = (rng.random((size, size)) < 0.004).astype(np.float32)
        tex -= 0.25 * cv2.GaussianBlur(dots, (0, 0), max(size / 300, 0.5)) * rng.uniform(1, 3)
    return tex.astype(np.float32)


class _Windows:
    """Pixel windows around points of the face frame, so each feature is computed only where it can be."""

    def __init__(self, p: dict, size: int):
        self.p, self.size = p, size

    def __call__(self, u: float, v: float, radius: float) -> tuple[slice, slice]:
        p, S = self.p, float(self.size)
        c, s, k = np.cos(p["roll"]), np.sin(p["roll"]), p["scale"]
        x = (p["eye_mid"][0] + k * (c * u - s * v)) * S
        y = (p["eye_mid"][1] + k * (s * u + c * v)) * S
        r = radius * k * S + 2
        return (slice(max(int(y - r), 0), max(min(int(y + r) + 1, self.size), 0)),
                slice(max(int(x - r), 0), max(min(int(x + r) + 1, self.size), 0)))


def _shade_skin(canvas: _Canvas, factor: np.ndarray) -> None:
    """Multiply the skin pixels by ``factor`` (H, W): shading only, labels stay skin."""
    on_skin = canvas.labels == SKIN
    canvas.rgb[on_skin] *= factor[on_skin][:, None] if factor.ndim == 2 else factor[on_skin]


def _nose(canvas: _Canvas, U, V, px, p) -> None:
    """Side shadows of the bridge, nostrils, a highlight on the tip and a shadow under it."""
    nl, nw = p["nose_len"], p["nose_w"]
    f = np.ones(U.shape, np.float32)
    for side in (-1.0, 1.0):
        ridge = np.exp(-(((U - side * nw * 0.9) / (0.35 * nw)) ** 2)) * np.clip((V - 0.03) / nl, 0, 1) ** 1.5
        f *= 1 - 0.12 * ridge * (V < nl + 0.01)
        nostril = (np.sqrt(((U - side * nw * 0.55) / (0.32 * nw)) ** 2 + ((V - nl - 0.004) / 0.006) ** 2) - 1) * 0.006 * px
        f *= 1 - 0.45 * np.clip(0.5 - nostril, 0, 1)
        # The alar wing: a soft crescent shadow around each nostril.
        wing = np.sqrt(((U - side * nw * 0.95) / (0.45 * nw)) ** 2 + ((V - nl + 0.006) / 0.018) ** 2)
        f *= 1 - 0.14 * np.exp(-(((wing - 1.0) / 0.25) ** 2))
    f += 0.1 * np.exp(-((U / nw) ** 2 + ((V - nl + 0.02) / 0.02) ** 2))
    f += 0.05 * np.exp(-((U / (0.3 * nw)) ** 2)) * np.clip((V - 0.02) / nl, 0, 1) * (V < nl - 0.01)  # bridge
    f *= 1 - 0.1 * np.exp(-((U / (1.2 * nw)) ** 2 + ((V - nl - 0.018) / 0.01) ** 2))
    _shade_skin(canvas, f)


def _eye_socket(canvas: _Canvas, U, V, p, side) -> None:
    """The socket between brow and cheek is a little darker, more so toward the nose."""
    du, dv = (U - side * p["eye_gap"]) / (p["eye_w"] * 1.6), (V - p["eye_dy"] + 0.01) / 0.05
    inner = np.clip(0.5 - side * du * 0.5, 0, 1)
    _shade_skin(canvas, 1 - (0.05 + 0.06 * inner) * np.exp(-(du ** 2 + dv ** 2)))


def _cheek(canvas: _Canvas, rng, U, V, side, p) -> None:
    """Natural cheek redness (some faces more than others)."""
    blob = np.exp(-(((U - side * 0.13) / 0.06) ** 2 + ((V - 0.14) / 0.05) ** 2)) * rng.uniform(0.0, 0.12)
    _shade_skin(canvas, 1 + blob[..., None] * np.array([0.15, -0.12, -0.08], np.float32))


def _eye(canvas: _Canvas, rng, U, V, px, p, side, iris_color) -> None:
    """Almond eye opening between two lid curves, with iris, pupil, catch-light and lash line."""
    ecx, ecy = side * p["eye_gap"] + rng.uniform(-0.003, 0.003), p["eye_dy"]
    ew, hu, hl = p["eye_w"] * rng.uniform(0.97, 1.03) * (1 + 0.12 * side * p["yaw"]), p["eye_up"], p["eye_lo"]
    tilt = p["eye_tilt"] * side  # outer corner up
    du, dv = U - ecx, V - ecy
    cu, su = np.cos(tilt), np.sin(tilt)
    eu, ev = du * cu + dv * su, -du * su + dv * cu
    t = np.clip(eu / ew, -1, 1)
    skew = 0.15 * side
    upper = -hu * (1 - t ** 2) ** 0.75 * (1 + skew * t)
    lower = hl * (1 - t ** 2) ** 1.0
    dist = np.maximum.reduce([upper - ev, ev - lower, np.abs(eu) - ew]) * px
    # Lid crease above the opening and a soft lid shadow (skin, drawn before the opening).
    crease = np.abs(ev - (upper * 1.55 - 0.004)) * px - 0.6
    crease = np.where(np.abs(eu) < ew * 0.9, crease, 99.0)
    _shade_skin(canvas, 1 - 0.18 * np.clip(0.5 - crease, 0, 1))
    sclera = np.array([0.86, 0.83, 0.8]) * rng.uniform(0.8, 1.0)
    shade = 1 - 0.35 * np.clip(1 - (ev - upper) / (hu * 0.8 + 1e-6), 0, 1)  # the upper lid shadows the eyeball
    canvas.paint(dist, sclera[None, None, :] * shade[..., None], EYES)
    inside = (dist < 0.5).astype(np.float32)[..., None]
    gx, gy = p["gaze"]
    ir = (hu + hl) * 0.55
    iu, iv = ecx + gx * ew * 0.4, ecy + gy * hu
    r = np.sqrt((U - iu) ** 2 + (V - iv) ** 2)
    iris_tex = iris_color * (0.75 + 0.5 * np.clip(r / ir, 0, 1))[..., None]
    canvas.rgb += inside * np.clip(0.5 - (r - ir) * px, 0, 1)[..., None] * (iris_tex * shade[..., None] - canvas.rgb)
    canvas.rgb += inside * np.clip(0.5 - (r - ir * 0.42) * px, 0, 1)[..., None] * (0.04 - canvas.rgb)
    glint = np.sqrt((U - iu - ir * 0.35) ** 2 + (V - iv + ir * 0.35) ** 2) - ir * 0.16
    canvas.rgb += inside * np.clip(0.5 - glint * px, 0, 1)[..., None] * (0.95 - canvas.rgb)
    # Lash line: a dark band just inside the upper lid, thicker toward the outer corner.
    lash_w = (0.5 + 0.8 * np.clip(t * side * 0.5 + 0.5, 0, 1)) * max(px * 0.004, 0.8)
    lash = (ev - upper) * px - lash_w
    canvas.rgb += inside * np.clip(0.5 - lash, 0, 1)[..., None] * (np.float32(0.06) - canvas.rgb)


def _brow(canvas: _Canvas, rng, U, V, px, p, side, color) -> None:
    bcx = side * (p["eye_gap"] + p["brow_dx"])
    bcy = p["eye_dy"] - p["brow_dy"]
    bw = p["brow_w"] * (1 + 0.12 * side * p["yaw"])
    t = (U - bcx) / bw * side  # -1 inner end, +1 tail
    centre = bcy - p["brow_arch"] * np.exp(-(((t - p["brow_peak"]) / 0.8) ** 2)) + 0.01 * np.clip(t - 0.5, 0, None) ** 2
    half = np.maximum(p["brow_th"] * (1.0 - 0.55 * np.clip((t + 1) / 2, 0, 1)), 0.7 / px)  # >= ~1.4 px thick
    dist = np.maximum(np.abs(V - centre) - half, (np.abs(t) - 1) * bw * 0.5) * px
    hairs = 1 + 0.25 * _smooth_noise(rng, dist.shape, 0.5, sx=2.0)[..., None]
    canvas.paint(dist, np.clip(color[None, None, :] * hairs, 0, 1), BROWS, opacity=rng.uniform(0.85, 1.0))


def _lips(canvas: _Canvas, rng, U, V, px, p, color) -> None:
    """Upper lip with a cupid's bow, fuller lower lip; a parted mouth shows teeth (label other, not lips)."""
    mx, my, lw = p["mouth_dx"], p["mouth_dy"], p["mouth_w"]
    t = np.clip((U - mx) / lw, -1, 1)
    line = my + p["smile"] * (t ** 2 - 0.3)
    gap = p["mouth_open"] * (p["lip_up"] + p["lip_lo"]) * 0.6 * (1 - t ** 2) ** 0.8
    upper_edge, lower_edge = line - 0.35 * gap, line + 0.65 * gap
    upper = upper_edge - p["lip_up"] * (1 - t ** 2) ** 0.6 * (1 - p["bow"] * np.exp(-((t / 0.16) ** 2)))
    lower = lower_edge + p["lip_lo"] * (1 - t ** 2) ** 0.55
    dist = np.maximum.reduce([upper - V, V - lower, np.abs(U - mx) - lw]) * px
    shade = np.where(V < line, 0.82, 1.0) + 0.12 * np.exp(-(((U - mx) / (0.5 * lw)) ** 2 + ((V - lower_edge - p["lip_lo"] * 0.45) / (0.3 * p["lip_lo"])) ** 2))
    tex = 1 + 0.05 * _smooth_noise(rng, dist.shape, 0.6, sx=0.3)  # vertical lip lines
    canvas.paint(dist, np.clip(color[None, None, :] * (shade * tex)[..., None], 0, 1), LIPS)
    if p["mouth_open"] > 0:
        opening = np.maximum.reduce([upper_edge - V, V - lower_edge, np.abs(U - mx) - 0.97 * lw]) * px
        teeth = np.array([0.95, 0.9, 0.8], np.float32) * rng.uniform(0.85, 1.0)
        depth = np.clip(1 - np.abs(t) ** 2, 0, 1) * np.clip((V - upper_edge) / (gap + 1e-6) * 1.5 + 0.3, 0, 1)
        canvas.paint(opening, teeth * (0.25 + 0.75 * depth)[..., None], OTHER)
    else:
        seam = np.abs(V - line) * px - max(px * 0.0025, 0.5)
        inside = (dist < 0).astype(np.float32)
        canvas.rgb *= 1 - 0.55 * (np.clip(0.5 - seam, 0, 1) * inside)[..., None]


def _hair_back(canvas: _Canvas, rng, U, V, px, p, hair) -> None:
    w = p["face_w"] + rng.uniform(0.05, 0.1)
    back = np.maximum((np.sqrt((U / w) ** 2 + ((V - 0.05) / 0.5) ** 2) - 1) * w, V - rng.uniform(0.35, 0.6)) * px
    canvas.paint(back, _hair_texture(rng, back.shape[0], hair) * 0.8, OTHER)


def _hair_front(canvas: _Canvas, rng, U, V, px, p, hair, face_d) -> None:
    """Hair over the skull and framing the face (label other): above the hairline it hides the forehead;
    beside the face it falls to a style-dependent length; long styles may curtain the face's edges."""
    style = p["hair_style"]
    puff = 0.008 if style == 3 else p["hair_puff"]
    cw, ch, cdy = p["face_w"] + puff, p["face_h"] + puff, p["face_dy"]
    body = (np.sqrt((U / cw) ** 2 + ((V - cdy) / ch) ** 2) - 1) * cw
    drop = {0: rng.uniform(-0.06, 0.0), 1: rng.uniform(0.35, 0.6), 2: rng.uniform(0.12, 0.3),
            3: rng.uniform(-0.12, -0.06)}[style]
    if style in (1, 2):  # hair hanging beside the face down to ``drop`` (wavy ends)
        width = p["face_w"] + rng.uniform(0.04, 0.1)
        ends = V - drop - 0.012 * np.sin(U * rng.uniform(25, 60) + rng.uniform(0, 6))
        body = np.minimum(body, np.maximum.reduce([np.abs(U) - width, ends, cdy - 0.1 - V]))
    part = rng.uniform(-0.25, 0.25)  # a side parting tilts the hairline
    hairline = -p["hairline"] + 0.9 * U ** 2 + part * U * 0.3
    if style == 2:  # bangs: a lower fringe that still leaves the brows visible
        brow_top = p["eye_dy"] - p["brow_dy"] - p["brow_arch"] - p["brow_th"] - 0.025
        hairline = np.minimum(brow_top, -p["hairline"] + 0.09) + 0.5 * U ** 2 + 0.006 * np.sin(U * 90)
    covers = np.minimum(V - hairline, np.maximum(-face_d / px, V - drop))
    if style in (1, 2):  # strands falling over the cheeks' outer edge, never over brows or eyes
        cover = rng.uniform(0.0, max(p["face_w"] - 0.23, 0.0))
        curtain = np.maximum(p["face_w"] - cover - np.abs(U), V - drop)
        covers = np.minimum(covers, curtain)
    front = np.maximum(body, covers) * px
    canvas.paint(front, _hair_texture(rng, front.shape[0], hair), OTHER)


def _hair_texture(rng, size: int, hair: np.ndarray) -> np.ndarray:
    strands = _smooth_noise(rng, size, size / 40, sx=size / 400)
    sheen = _smooth_noise(rng, size, size / 12)
    return np.clip(hair[None, None, :] * (1 + 0.18 * strands + 0.12 * sheen)[..., None], 0, 1)


def _camera(canvas: _Canvas, rng, U, V, p) -> np.ndarray:
    """Directional light on a rounded head (the background keeps its own), white balance, exposure, slight
    blur and sensor noise."""
    lx, ly = p["light"]
    nu, nv = U / 0.42, (V - 0.05) / 0.5
    nz = np.sqrt(np.clip(1 - nu ** 2 - nv ** 2, 0, 1))
    normal_dot = (nu * lx + nv * ly + nz) / np.sqrt(lx ** 2 + ly ** 2 + 1)
    light = p["ambient"] + (1 - p["ambient"]) * np.clip(normal_dot, 0, 1) * 1.15
    light = 1 + canvas.subject * (light - 1)
    out = canvas.rgb * light[..., None].astype(np.float32)
    out *= rng.uniform(0.92, 1.08, 3).astype(np.float32) * rng.uniform(0.88, 1.05)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 0.7))
    out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(rng.uniform(0.003, 0.015))
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def face_seed(seed: int, index: int) -> int:
    """The generator seed of face ``index`` in a set drawn with ``seed`` (``write_faces`` and amplify use it)."""
    return int(seed) * 1_000_003 + int(index)


def write_faces(out_dir: str | os.PathLike, count: int, seed: int = 0, size: int = 256,
                progress: bool = True) -> list[Path]:
    """Write ``OUT/face_00000.png ...`` and their exact maps ``OUT/labels/face_00000.png``; resumable.

    The label map is written before the image and both atomically, so a face whose image exists is complete;
    a rerun skips those.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TinyBeautyError(f"{out}: exists and is not a folder")
    if count < 1:
        raise TinyBeautyError(f"--count must be >= 1, got {count}")
    (out / "labels").mkdir(parents=True, exist_ok=True)
    paths = [out / f"face_{i:05d}.png" for i in range(count)]
    todo = [i for i, path in enumerate(paths) if not (path.exists() and (out / "labels" / path.name).exists())]
    it = todo
    if progress:
        from tqdm import tqdm

        it = tqdm(todo, desc="synth-faces", unit="face")
    for i in it:
        face = generate_face(face_seed(seed, i), size)
        save_image(out / "labels" / paths[i].name, face.labels)
        save_image(paths[i], face.image)
    return paths
