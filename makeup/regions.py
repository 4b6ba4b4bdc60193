"""The region label map shared by parsers, renderer, teacher and student.

0 other, 1 eyes, 2 lips, 3 skin, 4 brows (the pair dataset format in README.md). "eyes" is the eye opening up to the lash lines (as in
LaPa and the synthetic maps); the lids are skin. Eye makeup (shadow, liner) is painted on the lid skin the
renderer finds above each opening, and no style paints the eyeball itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OTHER, EYES, LIPS, SKIN, BROWS = 0, 1, 2, 3, 4
REGION_NAMES: dict[str, int] = {"other": OTHER, "eyes": EYES, "lips": LIPS, "skin": SKIN, "brows": BROWS}
NUM_LABELS = 5
# Overlay colours for sample grids (RGB).
REGION_COLORS = np.array(
    [[0, 0, 0], [40, 120, 255], [230, 30, 60], [250, 200, 120], [120, 70, 20]], dtype=np.uint8
)


@dataclass(frozen=True)
class RegionMap:
    """A label map (H, W) uint8 with helpers for binary and feathered masks."""

    labels: np.ndarray

    def __post_init__(self):
        lab = np.asarray(self.labels)
        if lab.ndim != 2:
            raise ValueError(f"label map must be 2-D, got shape {lab.shape}")
        if lab.size and int(lab.max()) >= NUM_LABELS:
            raise ValueError(f"label map has value {int(lab.max())}; valid labels are 0..{NUM_LABELS - 1}")
        object.__setattr__(self, "labels", lab.astype(np.uint8))

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape  # type: ignore[return-value]

    def mask(self, *names: str) -> np.ndarray:
        """Binary float32 mask (H, W) of the union of the named regions."""
        ids = [REGION_NAMES[n] for n in names]
        return np.isin(self.labels, ids).astype(np.float32)

    def feathered(self, *names: str, radius: float = 2.0) -> np.ndarray:
        return feather(self.mask(*names), radius)

    def area(self, name: str) -> int:
        return int((self.labels == REGION_NAMES[name]).sum())


def feather(mask: np.ndarray, radius: float) -> np.ndarray:
    """Soft edges: Gaussian blur of a [0, 1] mask (radius in pixels, sigma = radius / 2)."""
    m = np.asarray(mask, dtype=np.float32)
    if radius <= 0:
        return m
    import cv2

    sigma = max(radius / 2.0, 1e-3)
    k = int(2 * round(3 * sigma) + 1)
    return np.clip(cv2.GaussianBlur(m, (k, k), sigma, borderType=cv2.BORDER_REPLICATE), 0.0, 1.0)


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend region colours over an RGB uint8 image (for sample grids)."""
    lab = np.asarray(labels)
    colors = REGION_COLORS[lab].astype(np.float32)
    a = (lab > 0).astype(np.float32)[..., None] * alpha
    out = image.astype(np.float32) * (1 - a) + colors * a
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
