"""The look's gate: where, and by how much, a model may change a face.

A student trained on synthetic faces can paint where the look puts nothing when it meets a real photo (red on
a nose, under glasses). The look itself says what it does per region: red_lip moves the lips far toward red,
the skin a little toward the foundation tone, and nothing outside the face. :class:`LookGate` records, per
region (``makeup.metrics.FIDELITY_REGIONS``), the range of per-channel change ``T - S`` the look's pairs show
(low and high percentiles), and at run time clips a prediction's change to the range of the region each pixel
is in, feathered outward (a region's whole range up to its edge, fading over the band outside the regions);
pixels outside every region the look changes, beyond that band, keep the photo's values. The
regions come from the photo itself (face-mesh polygons, ``makeup.parsing.landmarks_to_labels``), so the gate
follows the face the user holds up, not the synthetic faces the model learned on.

The ranges are taken in an opponent colour basis (:data:`OPPONENT`: lightness, red-green, yellow-blue), not
per RGB channel: a look that only darkens a region (a liner) has a near-zero range in both colour axes there,
so a red stroke a model paints on a real eye rim is cut to the darkening it carries. Clipping R, G and B
separately let it through (each channel's move was within what the liner does: R unchanged, G and B down),
measured on the astronaut with red_lip: eye-zone recovery -0.32 with the RGB box, -0.01 with this basis.
A stored gate without ``basis`` (written before it) is read as the RGB box it was.

The gate is stored in the student checkpoint and in ``model_card.json`` (``look_gate``) so apps can apply it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import CHANGED_REGION_MIN, FIDELITY_REGIONS, cheek_map, region_masks

PERCENTILES = (1.0, 99.0)
IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
# Rows: lightness (mean of R, G, B), red - green, (red + green) / 2 - blue. Change (R, G, B) -> these three.
OPPONENT = ((1 / 3, 1 / 3, 1 / 3), (1.0, -1.0, 0.0), (0.5, 0.5, -1.0))


@dataclass(frozen=True)
class LookGate:
    """``bounds[region] = (lo, hi)``: change limits in [0, 1] units along each row of ``basis`` (a change ``d`` in
    RGB is clipped as ``basis @ d``, then mapped back with the inverse); None: the look leaves the region alone.
    ``feather``: soft edge width as a fraction of the crop side."""

    bounds: dict
    feather: float = 0.02
    basis: tuple = IDENTITY

    def __post_init__(self):
        object.__setattr__(self, "basis", _float32_rows(self.basis))

    @property
    def matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """``basis`` and its inverse as float32 (3, 3): the values every implementation of ``apply`` uses."""
        b = np.asarray(self.basis, np.float64)
        return b.astype(np.float32), np.linalg.inv(b).astype(np.float32)

    @property
    def regions(self) -> list[str]:
        return [r for r in FIDELITY_REGIONS if self.bounds.get(r) is not None]

    @classmethod
    def from_pairs(cls, sources, targets, labels, feather: float = 0.02, basis=OPPONENT) -> "LookGate":
        """From before/after images (uint8 or [0, 1], HWC each; sizes may differ) and their label maps. Whether
        the look changes a region is judged on the RGB change; its range, along ``basis``."""
        changes: dict[str, list[np.ndarray]] = {r: [] for r in FIDELITY_REGIONS}
        for src, tgt, lab in zip(sources, targets, labels):
            change = _unit(tgt) - _unit(src)
            for region, m in region_masks(np.asarray(lab)).items():
                changes[region].append(change[m[0].numpy()])
        basis = _float32_rows(basis)
        mix = np.asarray(basis)
        bounds: dict = {}
        for region, parts in changes.items():
            d = np.concatenate(parts) if parts else np.zeros((0, 3), np.float32)  # (pixels, 3)
            if len(d) == 0 or float(np.abs(d).mean()) < CHANGED_REGION_MIN:
                bounds[region] = None
                continue
            lo, hi = np.percentile(d @ mix.T, PERCENTILES, axis=0)
            bounds[region] = (tuple(np.minimum(lo, 0).round(4).tolist()), tuple(np.maximum(hi, 0).round(4).tolist()))
        return cls(bounds, feather, basis)

    def to_dict(self) -> dict:
        fwd, inv = self.matrices
        return {"regions": self.regions, "feather": self.feather,
                "bounds": {r: ({"low": list(b[0]), "high": list(b[1])} if b is not None else None)
                           for r, b in self.bounds.items()},
                "percentiles": list(PERCENTILES),
                # Apps clip basis @ change and map back with basis_inverse (float32, rows; see ``apply``).
                "basis": fwd.tolist(), "basis_inverse": inv.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "LookGate":
        bounds = {r: ((tuple(b["low"]), tuple(b["high"])) if b is not None else None)
                  for r, b in data["bounds"].items()}
        return cls(bounds, float(data.get("feather", 0.02)), data.get("basis", IDENTITY))

    def limits(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel (H, W, 3) low and high change limits for a (H, W) label map, feathered outward: a region's
        weight is 1 on its own pixels, 0 on the pixels of another region the gate bounds, and its soft mask
        (:func:`soft_region_masks`) elsewhere, so a region keeps its whole range up to its edge and the limits fade
        over the band outside the regions (where they are what the soft masks alone gave).

        The soft masks alone are 0.5 on a region's edge and under 1 across all of a thin one, and mixed the
        skin's narrow range into the lips: they cut the lips a look paints. glamorous' .tflite on the astronaut
        (stop 31), lips recovery vs the renderer: 0.79 ungated, 0.56 with the soft masks, 0.69 with them raised
        to 1 on the lips (the skin's range still averaged in), 0.76 with this rule."""
        lab = np.asarray(labels)
        h, w = lab.shape
        soft, hard = soft_region_masks(lab, self.feather), soft_region_masks(lab, 0.0)
        bounded = [FIDELITY_REGIONS.index(r) for r in self.regions]
        inside = hard[bounded].max(0) if bounded else np.zeros((h, w), np.float32)
        masks = np.maximum(hard, soft * (1.0 - inside))
        lo = np.zeros((h, w, 3), np.float32)
        hi = np.zeros((h, w, 3), np.float32)
        weight = np.zeros((h, w), np.float32)
        for region, b in self.bounds.items():
            if b is None:
                continue
            m = masks[FIDELITY_REGIONS.index(region)]
            lo += m[..., None] * np.asarray(b[0], np.float32)
            hi += m[..., None] * np.asarray(b[1], np.float32)
            weight += m
        # Where regions overlap after blurring, average their limits; where only part of a region's blur
        # reaches (its feathered edge), the limits fade toward zero.
        over = np.maximum(weight, 1.0)[..., None]
        return lo / over, hi / over

    def apply(self, source: np.ndarray, prediction: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The prediction with its change clipped to the look's range per region (uint8 in, uint8 out).

        In float32: ``d = pred / 255 - src / 255``; with a basis other than RGB, ``e = B d`` and ``d = B^-1
        clip(e, lo, hi)``, each output a left-to-right sum of three products (what gate.js and LookGate.kt do);
        ``round((src + d) * 255)``, half to even."""
        lo, hi = self.limits(labels)
        src = source.astype(np.float32) / 255.0
        delta = prediction.astype(np.float32) / 255.0 - src
        if self.basis == IDENTITY:
            delta = np.clip(delta, lo, hi)
        else:
            fwd, inv = self.matrices
            delta = _mix(inv, np.clip(_mix(fwd, delta), lo, hi))
        return np.clip(np.round((src + delta) * 255.0), 0, 255).astype(np.uint8)


def soft_region_masks(labels: np.ndarray, feather: float = 0.02) -> np.ndarray:
    """float32 (4, H, W) masks of ``FIDELITY_REGIONS`` (eye zone, lips, skin outside it, brows;
    :func:`makeup.metrics.region_masks`) of a (H, W) label map, each ``cv2.GaussianBlur(m, (0, 0), sigma,
    BORDER_CONSTANT)`` with ``sigma = feather * H / 2`` (``feather`` 0: the hard masks).

    The one definition of "where each region is, with soft edges": the gate's limits fade with it, and a
    student with ``region_input`` reads it as 4 input channels (gate.js and LookGate.kt compute the same)."""
    import cv2

    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"soft_region_masks: a (H, W) label map, got shape {lab.shape}")
    hard = region_masks(lab)
    sigma = max(feather * lab.shape[0] / 2.0, 1e-3)
    out = np.zeros((len(FIDELITY_REGIONS),) + lab.shape, np.float32)
    for i, region in enumerate(FIDELITY_REGIONS):
        m = hard[region][0].numpy().astype(np.float32)
        out[i] = cv2.GaussianBlur(m, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT) if feather > 0 else m
    return out


# What a region-input student reads after RGB, in this order (``input_masks``): the gate's four soft region
# masks, then the cheeks. A model taking k masks takes the first k (4: exports before the cheeks).
INPUT_MASKS = FIDELITY_REGIONS + ("cheeks",)


def input_masks(labels: np.ndarray, count: int = len(INPUT_MASKS), feather: float = 0.02) -> np.ndarray:
    """float32 (count, H, W): the first ``count`` of :data:`INPUT_MASKS` for a (H, W) label map, what a
    region-input student reads after RGB: :func:`soft_region_masks`, then the cheeks
    (:func:`makeup.metrics.cheek_map` times the soft skin mask, so they fade where the skin does)."""
    if not len(FIDELITY_REGIONS) <= count <= len(INPUT_MASKS):
        raise ValueError(f"input_masks: {len(FIDELITY_REGIONS)} to {len(INPUT_MASKS)} masks, got {count}")
    soft = soft_region_masks(labels, feather)
    if count == len(FIDELITY_REGIONS):
        return soft
    cheeks = cheek_map(labels) * soft[FIDELITY_REGIONS.index("skin")]
    return np.concatenate([soft, cheeks[None]])


def _float32_rows(basis) -> tuple:
    """A 3x3 basis as tuples of float32-representable values: stored and read back exactly, the same inverse."""
    return tuple(tuple(float(np.float32(v)) for v in row) for row in basis)


def _mix(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``m @ x`` per pixel for float32 (..., 3) ``x``, each output channel ``(m0 x0 + m1 x1) + m2 x2``."""
    return np.stack([(m[k, 0] * x[..., 0] + m[k, 1] * x[..., 1]) + m[k, 2] * x[..., 2] for k in range(3)], axis=-1)


def _unit(x) -> np.ndarray:
    a = np.asarray(x)
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
