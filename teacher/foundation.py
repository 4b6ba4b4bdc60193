"""The skin's part of the teacher's prior: what a foundation does to a face, fit on the seed pairs.

The region prior gave the skin one colour change, the seeds' mean. A foundation does three things that one
colour cannot: it smooths the skin's texture (pores, sensor noise: a change at the pixel scale, finer than the
64-px diffusion can draw), it evens the skin's colour toward the wearer's own mean tone (a red blotch moves
more than the skin around it) and it pulls that tone toward the product's (a pale face darkens, a dark one
lightens). Each is a feature of the photo, in CIELAB, per channel:

* ``fine``, ``coarse``: edge-preserving smoothing (bilateral) at 0.6 % and 1.8 % of the crop minus the photo;
* ``even``: the face's mean skin chroma minus the pixel's (lightness is left alone: shading is not colour);
* ``tone``: the face's mean skin colour minus :data:`TONE_REF` (how far this face is from a mid skin tone);
* ``constant``.

The change is ``weight * sum_k beta_k feature_k`` with ``weight`` the face's inner skin (the skin away from
the face's outline, where a foundation is blended), and ``beta`` (5, 3) fit by least squares over the seeds'
skin outside the eye zone (liner and lid shadow lie there). :func:`fit_foundation` keeps it only where, with one
seed left out, it predicts that seed's skin better than the constant alone.

The prior alone (no diffusion) on 24 held-out faces, skin recovery vs the renderer, the region prior's
constant -> this model (stop 22, seeds of `make seeds`): natural 0.04 -> 0.51, glamorous -0.00 -> 0.46,
korean 0.17 -> 0.62, red_lip 0.08 -> 0.56, smokey_eyes -0.30 -> 0.55; the eye zone, where it lies under the
eye template's fading edge, +0.02 to +0.13. On skimage's astronaut: -0.46..0.23 -> 0.43..0.76. One bilateral
at a single scale fit about as well (natural 0.53, glamorous 0.48); the two scales are the smoothing's basis,
not one product's setting. Clamping the tone feature to the seeds' range (as the eye template clamps) made the
10 lightest of 60 faces worse (natural skin 0.16 -> -0.20): the tone is left linear.
"""
from __future__ import annotations

import cv2
import numpy as np

FOUNDATION_FEATURES = ("constant", "fine", "coarse", "even", "tone")
# (diameter at a 256 crop, sigma colour in CIELAB units, sigma space as a share of the crop)
SMOOTHING = ((7, 6.0, 0.006), (15, 12.0, 0.018))
TONE_REF = np.array([65.0, 12.0, 16.0], np.float32)  # a mid skin tone in CIELAB (centres the tone feature)
RIDGE = 1e-4  # shrinkage of every feature but the constant, relative to its spread


def _lab(photo: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(photo, dtype=np.float32), cv2.COLOR_RGB2Lab)


def foundation_features(photo: np.ndarray, labels: np.ndarray, geometry=None) -> tuple[np.ndarray, np.ndarray]:
    """photo (H, W, 3) RGB in 0..1, labels (H, W) -> features (H, W, 3, 5) in CIELAB per channel (the order of
    :data:`FOUNDATION_FEATURES`) and the weight (H, W): the inner skin."""
    from makeup.render import FaceGeometry

    g = geometry or FaceGeometry.from_labels(labels)
    w = g.skin_inner
    lab = _lab(photo)
    size = max(lab.shape[:2])
    total = float(w.sum())
    mean = (lab * w[..., None]).reshape(-1, 3).sum(0) / total if total > 0 else TONE_REF
    feats = [np.ones_like(lab)]
    for diameter, sigma_colour, share in SMOOTHING:
        d = max(3, int(round(diameter * size / 256)) | 1)
        feats.append(cv2.bilateralFilter(lab, d, sigma_colour, max(0.5, share * size)) - lab)
    even = mean - lab
    even[..., 0] = 0.0
    feats.append(even)
    feats.append(np.broadcast_to(mean - TONE_REF, lab.shape))
    return np.stack(feats, axis=-1).astype(np.float32), w.astype(np.float32)


def foundation_change(photo: np.ndarray, labels: np.ndarray, beta, geometry=None) -> np.ndarray:
    """The foundation's change to one face (H, W, 3) RGB in 0..1 units (0 outside the inner skin)."""
    feats, w = foundation_features(photo, labels, geometry)
    lab = _lab(photo)
    lab_change = np.einsum("hwck,kc->hwc", feats, np.asarray(beta, np.float32)) * w[..., None]
    after = cv2.cvtColor(np.ascontiguousarray(lab + lab_change, dtype=np.float32), cv2.COLOR_Lab2RGB)
    return (after - photo).astype(np.float32) * (w > 0)[..., None]


def _fit_pixels(labels: np.ndarray) -> np.ndarray:
    """The skin the fit reads: skin outside the eye zone (``makeup.metrics.region_masks``' skin)."""
    from makeup.metrics import region_masks

    return region_masks(labels)["skin"][0].numpy()


def _moments(befores, afters, labels):
    """Per seed and CIELAB channel the normal equations of ``change ~ weight * features @ beta``:
    X^T X (seeds, 3, 5, 5), X^T y (seeds, 3, 5), y^T y (seeds, 3)."""
    xtx, xty, yty = [], [], []
    for b, a, lab in zip(befores, afters, labels):
        photo = b.astype(np.float32) / 255.0
        feats, w = foundation_features(photo, lab)
        m = _fit_pixels(lab) & (w > 0)
        X = feats[m] * w[m][:, None, None]  # (P, 3, 5)
        y = (_lab(a.astype(np.float32) / 255.0) - _lab(photo))[m]  # (P, 3)
        xtx.append(np.einsum("pck,pcj->ckj", X, X, dtype=np.float64))
        xty.append(np.einsum("pck,pc->ck", X, y, dtype=np.float64))
        yty.append((y.astype(np.float64) ** 2).sum(0))
    return np.stack(xtx), np.stack(xty), np.stack(yty)


def _solve(xtx: np.ndarray, xty: np.ndarray, features: int) -> np.ndarray:
    """(5, 3) beta from summed moments, using the first ``features`` features (the rest 0)."""
    beta = np.zeros((len(FOUNDATION_FEATURES), 3))
    k = features
    for c in range(3):
        A = xtx[c, :k, :k].copy()
        spread = np.diag(A)[1:].mean() if k > 1 else 0.0
        A[1:, 1:] += RIDGE * max(spread, 1e-9) * np.eye(k - 1)
        beta[:k, c] = np.linalg.lstsq(A + 1e-12 * np.eye(k), xty[c, :k], rcond=None)[0]
    return beta


def _error(xtx: np.ndarray, xty: np.ndarray, yty: np.ndarray, beta: np.ndarray) -> float:
    return float(np.einsum("ckj,kc,jc->", xtx, beta, beta) - 2 * np.einsum("ck,kc->", xty, beta) + yty.sum())


def fit_foundation(befores, afters, labels) -> np.ndarray | None:
    """``beta`` (5, 3) float32 from seed pairs (uint8 before/after, label maps), or None where the model does
    not predict a left-out seed's skin better than its constant alone (summed over the seeds; kept without the
    check below 3 seeds)."""
    if not len(befores):
        return None
    xtx, xty, yty = _moments(befores, afters, labels)
    n, full = len(xtx), len(FOUNDATION_FEATURES)
    if n >= 3:
        err = np.zeros(2)
        for k in range(n):
            rest = np.arange(n) != k
            for j, features in enumerate((1, full)):
                err[j] += _error(xtx[k], xty[k], yty[k], _solve(xtx[rest].sum(0), xty[rest].sum(0), features))
        if err[1] >= err[0]:
            return None
    return _solve(xtx.sum(0), xty.sum(0), full).astype(np.float32)
