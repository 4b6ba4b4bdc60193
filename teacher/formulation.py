"""The DDA formulation every backend shares: conditional residual diffusion (RDM) gated by FGMM.

* RDM: the diffusion variable is the makeup residual ``after - before`` at the working resolution (64/128),
  multiplied by ``residual_scale`` so it has about unit spread (a faint residual would drown in the noise).
  The model is conditioned on the before image and its soft region masks (channel concat). A sampled residual
  is upsampled and added to the FULL-resolution source, so every detail the makeup does not touch comes from
  the photo itself. The seed document's RDM adds ``alpha * residual_input`` to the network output; here the
  residual input is the region prior (each region's mean seed residual, painted with the soft masks), so the
  network only learns the face-dependent correction and an undertrained model still paints the look.
* FGMM: learnable per-region weights (eyes, lips, skin, brows). They weight the training loss by region and
  gate the predicted residual with feathered masks that are exactly zero outside the four regions, so no
  makeup can leak into hair or background.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from makeup.regions import BROWS, EYES, LIPS, SKIN, feather

MAKEUP_REGIONS = (EYES, LIPS, SKIN, BROWS)  # channel order of every region stack
EYE_CHANNEL = 0


def region_stack(labels: np.ndarray, size: int | None = None, radius: float = 2.0) -> np.ndarray:
    """Soft masks (4, S, S) float32 of eyes, lips, skin, brows: feathered at full resolution, then cut by the
    union of the regions (zero outside them, exactly), then area-resized to ``size``."""
    lab = np.asarray(labels)
    union = (lab > 0).astype(np.float32)
    masks = [feather((lab == r).astype(np.float32), radius) * union for r in MAKEUP_REGIONS]
    out = np.stack(masks)
    if size is not None and size != lab.shape[0]:
        out = np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA) for m in out])
    return out.astype(np.float32)


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """float (H, W, C) -> (size, size, C); area when shrinking, bicubic when growing (why: no aliasing)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    interp = cv2.INTER_AREA if size < img.shape[0] else cv2.INTER_CUBIC
    out = cv2.resize(img, (size, size), interpolation=interp)
    return out if out.ndim == 3 else out[..., None]


class FineGrainedMakeupModule(nn.Module):
    """FGMM: one learnable weight per makeup region (initialised at 1, as in the seed document)."""

    def __init__(self):
        super().__init__()
        self.region_weights = nn.Parameter(torch.ones(len(MAKEUP_REGIONS)))

    def gate(self, masks: torch.Tensor) -> torch.Tensor:
        """(N, 4, H, W) soft masks -> (N, 1, H, W) gate = sum_r w_r m_r (zero where every mask is zero)."""
        return (masks * self.region_weights.view(1, -1, 1, 1)).sum(dim=1, keepdim=True)

    def loss_weights(self, masks: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) per-pixel loss weight: 1 everywhere plus |w_r| inside region r (detached: the weights
        learn through the gate, the loss only reads them)."""
        w = self.region_weights.detach().abs().view(1, -1, 1, 1)
        return 1.0 + (masks * w).sum(dim=1, keepdim=True)

    def forward(self, residual: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return residual * self.gate(masks)


class ResidualHead(nn.Module):
    """RDM + FGMM parameters that turn a predicted (scaled) residual into an after image."""

    def __init__(self, residual_scale: float = 1.0, region_prior=None, channels: int = 3):
        super().__init__()
        self.fgmm = FineGrainedMakeupModule()
        self.alpha = nn.Parameter(torch.tensor(1.0))  # learnable residual weight (seed doc RDM)
        self.register_buffer("residual_scale", torch.tensor(float(residual_scale)))
        # channels: 3 for an image-space residual, the latent channels for a latent-space one (sd15-lora)
        prior = torch.zeros(len(MAKEUP_REGIONS), channels) if region_prior is None else torch.tensor(region_prior)
        self.register_buffer("region_prior", prior.float().reshape(len(MAKEUP_REGIONS), channels))

    def set_statistics(self, residual_scale: float, region_prior) -> None:
        """Seed statistics from ``prepare`` (the same values the constructor would have stored)."""
        with torch.no_grad():
            self.residual_scale.fill_(float(residual_scale))
            self.region_prior.copy_(torch.tensor(region_prior).float().reshape(self.region_prior.shape))

    def prior_map(self, masks: torch.Tensor) -> torch.Tensor:
        """(N, 4, h, w) masks -> (N, 3, h, w) residual input: each region's mean seed residual."""
        return torch.einsum("nrhw,rc->nchw", masks, self.region_prior)

    def to_diffusion(self, residual: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Image-space residual -> the diffusion variable (the scaled correction to ``alpha`` x the prior).

        ``alpha`` enters detached: the target and :meth:`residual` use the same alpha, so a learned alpha != 1
        changes what the network is asked to correct, never the after image it reconstructs."""
        return (residual - self.alpha.detach() * self.prior_map(masks)) * self.residual_scale

    def residual(self, x0: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Diffusion-space x0 (N, 3, h, w) -> gated image-space residual at the same resolution."""
        return self.fgmm(x0 / self.residual_scale + self.alpha * self.prior_map(masks), masks)

    def compose(self, source: torch.Tensor, x0: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """before + gated residual, same resolution, clamped to [0, 1]."""
        return (source + self.residual(x0, masks)).clamp(0, 1)


@dataclass
class Condition:
    """What a backend needs for one face at the working resolution (torch, no batch dim)."""

    source: torch.Tensor  # (3, s, s) in [0, 1]
    masks: torch.Tensor  # (4, s, s) soft region masks


def make_condition(image: np.ndarray, labels: np.ndarray, size: int, radius: float = 2.0) -> Condition:
    src = resize_image(image.astype(np.float32) / 255.0, size)
    return Condition(torch.from_numpy(np.ascontiguousarray(src.transpose(2, 0, 1))),
                     torch.from_numpy(region_stack(labels, size, radius)))


def region_residuals(befores, afters, labels, size: int | None = None, radius: float = 2.0) -> np.ndarray:
    """(4, 3) mean residual (after - before, 0..1) of each makeup region over pairs, soft-mask weighted."""
    num, den = np.zeros((len(MAKEUP_REGIONS), 3)), np.zeros(len(MAKEUP_REGIONS))
    for b, a, lab in zip(befores, afters, labels):
        m = region_stack(lab, None, radius)
        num += np.einsum("rhw,hwc->rc", m, (a.astype(np.float32) - b) / 255.0)
        den += m.sum(axis=(1, 2))
    return (num / np.maximum(den, 1e-6)[:, None]).astype(np.float32)


def paste_residual(image: np.ndarray, labels: np.ndarray, residual_low: np.ndarray, fgmm_weights: np.ndarray,
                   alpha: float, radius: float = 2.0, upsample=None, region_prior=None, refiner=None) -> np.ndarray:
    """Full-resolution after image (uint8): upsample the UNGATED image-space correction (h, w, 3), add
    ``alpha`` x the region prior painted with full-resolution masks, let the detail refiner (if any) add the
    full-resolution detail, gate with the FGMM masks (zero outside the regions) and add it to the untouched
    source.

    ``upsample(residual_low, size) -> (size, size, 3)`` replaces the bicubic upsampling (e.g. an SR model);
    ``refiner``: a :class:`teacher.refine.Refiner` (``refine(photo, masks, residual) -> residual``).
    """
    size = image.shape[0]
    up = upsample(residual_low, size) if upsample else resize_image(residual_low.astype(np.float32), size)
    masks = region_stack(labels, None, radius)
    if region_prior is not None:
        up = up + float(alpha) * np.einsum("rhw,rc->hwc", masks, np.asarray(region_prior, np.float32))
    photo = image.astype(np.float32) / 255.0
    if refiner is not None:
        up = refiner.refine(photo, masks, up)
    gate = np.tensordot(np.asarray(fgmm_weights, np.float32), masks, axes=1)[..., None]
    out = photo + gate * up
    # Rounding the float source gives back the exact uint8 wherever the gate is zero.
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def estimate_residual_scale(residuals: list[np.ndarray], target_std: float = 0.5) -> float:
    """Scale that gives the seed residuals inside the regions a spread of ``target_std`` (why: diffusion
    noise has unit variance; a faint residual would be drowned and sampled with a poor signal-to-noise)."""
    vals = np.concatenate([r.ravel() for r in residuals]) if residuals else np.zeros(1)
    std = float(np.sqrt(np.mean(vals.astype(np.float64) ** 2)))
    return float(np.clip(target_std / max(std, 1e-4), 1.0, 100.0)) if math.isfinite(std) else 1.0
