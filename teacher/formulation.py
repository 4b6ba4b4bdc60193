"""The DDA formulation every backend shares: conditional residual diffusion (RDM) gated by FGMM.

* RDM: the diffusion variable is the makeup residual ``after - before`` at the working resolution (64/128),
  multiplied by ``residual_scale`` so it has about unit spread (a faint residual would drown in the noise).
  The model is conditioned on the before image and its soft region masks (channel concat). A sampled residual
  is upsampled and added to the FULL-resolution source, so every detail the makeup does not touch comes from
  the photo itself. The seed document's RDM adds ``alpha * residual_input`` to the network output; here the
  residual input is the region prior (each region's mean seed residual, painted with the soft masks), so the
  network only learns the face-dependent correction and an undertrained model still paints the look.
* The prior itself (region prior, feature templates around the eyes and on the lips, the skin's and brows'
  region models) is fit on the seeds and painted by :mod:`makeup.lookprior`, which the student shares.
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

from makeup.lookprior import (COLOUR_REGIONS, EYE_CHANNEL, MAKEUP_REGIONS, PRIOR_RIDGE,  # noqa: F401 (the teacher's API)
                              TEMPLATE_CHANNELS, TEMPLATE_FRAMES, TemplateFrame, _resize_field, fit_region_prior,
                              fit_template, fit_templates, modelled_prior, prior_field, prior_image, region_stack,
                              template_field)
from makeup.region_models import MODEL_ROWS, MODELLED_REGIONS, expand_models


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

    def __init__(self, residual_scale: float = 1.0, region_prior=None, channels: int = 3, region_colour=None):
        super().__init__()
        self.fgmm = FineGrainedMakeupModule()
        self.alpha = nn.Parameter(torch.tensor(1.0))  # learnable residual weight (seed doc RDM)
        self.register_buffer("residual_scale", torch.tensor(float(residual_scale)))
        # channels: 3 for an image-space residual, the latent channels for a latent-space one (sd15-lora)
        r = len(MAKEUP_REGIONS)
        prior = torch.zeros(r, channels) if region_prior is None else torch.tensor(region_prior)
        self.register_buffer("region_prior", prior.float().reshape(r, channels))
        # the prior's colour part: residual += source @ region_colour[r] in region r (fit_region_prior)
        colour = torch.zeros(r, channels, channels) if region_colour is None else torch.tensor(region_colour)
        self.register_buffer("region_colour", colour.float().reshape(r, channels, channels))
        # the feature templates (fit_template; image-space teachers): all zero = none, the region prior only
        for name, frame in TEMPLATE_FRAMES.items():
            self.register_buffer(f"template_{name}", torch.zeros(*frame.shape, frame.channels))
        # the skin's and brows' models (makeup.region_models; image-space teachers): all zero = none
        self.register_buffer("region_models", torch.zeros(len(MODELLED_REGIONS), MODEL_ROWS, 3))

    def learn_scale(self, learn: bool) -> None:
        """Whether training moves ``alpha`` and the FGMM weights (the seed documents' RDM and FGMM learn them).

        Off by default (the backends' ``learn_prior_scale``): the prior they scale is a least-squares fit on the
        same seeds, so its in-sample scale is already 1; what the reconstruction loss teaches them instead is the
        x0 estimate's shrinkage at high noise. Learned, natural's demo teacher took alpha 1.22 and its brows' weight
        0.91, and its prior overshot on new faces (stop 29, the prior alone on the 40 truth faces vs the renderer,
        scale 1 -> 1.22: lips 0.91 -> 0.79, skin 0.66 -> 0.57, brows 0.93 -> 0.73)."""
        self.alpha.requires_grad_(learn)
        self.fgmm.region_weights.requires_grad_(learn)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A teacher saved before the colour part, the templates or the region models existed has none: they load
        # as zero.
        for key in ("region_colour", *(f"template_{n}" for n in TEMPLATE_FRAMES), "region_models"):
            state_dict.setdefault(prefix + key, torch.zeros_like(getattr(self, key)))
        # models saved with one coefficient a feature (before the darkness knots) paint the same repeated
        state_dict[prefix + "region_models"] = torch.from_numpy(
            expand_models(state_dict[prefix + "region_models"].cpu().numpy()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_statistics(self, residual_scale: float, region_prior, region_colour=None, templates=None,
                       models=None) -> None:
        """Seed statistics from ``prepare`` (the same values the constructor would have stored)."""
        with torch.no_grad():
            self.residual_scale.fill_(float(residual_scale))
            self.region_prior.copy_(torch.tensor(region_prior).float().reshape(self.region_prior.shape))
            colour = torch.zeros_like(self.region_colour) if region_colour is None else torch.tensor(region_colour)
            self.region_colour.copy_(colour.float().reshape(self.region_colour.shape))
            for name in TEMPLATE_FRAMES:
                buf = getattr(self, f"template_{name}")
                tpl = (templates or {}).get(name)
                buf.copy_(torch.zeros_like(buf) if tpl is None else torch.as_tensor(tpl).float().reshape(buf.shape))
            self.region_models.copy_(torch.zeros_like(self.region_models) if models is None
                                     else torch.from_numpy(expand_models(models)))

    def templates(self) -> dict[str, np.ndarray] | None:
        """The feature templates with support, as numpy; None when this head has none."""
        out = {n: getattr(self, f"template_{n}").detach().float().cpu().numpy() for n in TEMPLATE_FRAMES}
        out = {n: t for n, t in out.items() if t[..., 4].any()}
        return out or None

    def models(self) -> np.ndarray | None:
        """The region models (regions, MODEL_ROWS, 3) as numpy; None when this head has none."""
        beta = self.region_models.detach().float().cpu().numpy()
        return beta if beta.any() else None

    def prior_map(self, masks: torch.Tensor, source: torch.Tensor, field: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 4, h, w) masks, (N, C, h, w) source -> (N, C, h, w) residual input: in each region the seeds'
        mean residual plus its colour part (``fit_region_prior``) plus the region models' change (channels 11-13 of
        the ``field`` (N, 14, h, w) of :func:`prior_field`); where the templates have support s, ``(1 - s)`` of
        that plus ``s k - s a * source`` (the source clamped to the range the seeds showed there)."""
        prior = (torch.einsum("nrhw,rc->nchw", masks, self.region_prior)
                 + torch.einsum("nrhw,nkhw,rkc->nchw", masks, source, self.region_colour))
        if field is None:
            return prior
        prior = prior + field[:, TEMPLATE_CHANNELS:]
        clamped = torch.minimum(torch.maximum(source, field[:, 5:8]), field[:, 8:11])
        return (1 - field[:, 4:5]) * prior + field[:, :3] - field[:, 3:4] * clamped

    def to_diffusion(self, residual: torch.Tensor, masks: torch.Tensor, source: torch.Tensor,
                     field: torch.Tensor | None = None) -> torch.Tensor:
        """Image-space residual -> the diffusion variable (the scaled correction to ``alpha`` x the prior).

        ``alpha`` enters detached: the target and :meth:`residual` use the same alpha, so a learned alpha != 1
        changes what the network is asked to correct, never the after image it reconstructs."""
        return (residual - self.alpha.detach() * self.prior_map(masks, source, field)) * self.residual_scale

    def residual(self, x0: torch.Tensor, masks: torch.Tensor, source: torch.Tensor,
                 field: torch.Tensor | None = None) -> torch.Tensor:
        """Diffusion-space x0 (N, 3, h, w) -> gated image-space residual at the same resolution."""
        return self.fgmm(x0 / self.residual_scale + self.alpha * self.prior_map(masks, source, field), masks)

    def compose(self, source: torch.Tensor, x0: torch.Tensor, masks: torch.Tensor,
                field: torch.Tensor | None = None) -> torch.Tensor:
        """before + gated residual, same resolution, clamped to [0, 1]."""
        return (source + self.residual(x0, masks, source, field)).clamp(0, 1)


@dataclass
class Condition:
    """What a backend needs for one face at the working resolution (torch, no batch dim)."""

    source: torch.Tensor  # (3, s, s) in [0, 1]
    masks: torch.Tensor  # (4, s, s) soft region masks
    field: torch.Tensor | None = None  # (14, s, s) the templates and region models on this face (prior_field)


def make_condition(image: np.ndarray, labels: np.ndarray, size: int, radius: float = 2.0,
                   templates=None, models=None, field: np.ndarray | None = None) -> Condition:
    """``field``: the full-resolution prior field already laid on this face (:func:`prior_field`); else the
    ``templates`` and ``models`` are laid here."""
    photo = image.astype(np.float32) / 255.0
    src = resize_image(photo, size)
    full = prior_field(photo, labels, templates, models) if field is None else field
    field = None if full is None else _resize_field(full, size)
    return Condition(torch.from_numpy(np.ascontiguousarray(src.transpose(2, 0, 1))),
                     torch.from_numpy(region_stack(labels, size, radius)),
                     None if field is None else torch.from_numpy(field))


def paste_residual(image: np.ndarray, labels: np.ndarray, residual_low: np.ndarray, fgmm_weights: np.ndarray,
                   alpha: float, radius: float = 2.0, upsample=None, region_prior=None, refiner=None,
                   region_colour=None, templates=None, models=None, prior_eye_zone: bool = False) -> np.ndarray:
    """Full-resolution after image (uint8): upsample the UNGATED image-space correction (h, w, 3), add
    ``alpha`` x the region prior painted with full-resolution masks, let the detail refiner (if any) add the
    full-resolution detail, gate with the FGMM masks (zero outside the regions) and add it to the untouched
    source.

    ``prior_eye_zone`` (with a region prior): inside :func:`prior_zone_weight` the paste keeps the prior alone,
    not what the correction and the refiner make of it (see that function for why).

    ``upsample(residual_low, size) -> (size, size, 3)`` replaces the bicubic upsampling (e.g. an SR model);
    ``refiner``: a :class:`teacher.refine.Refiner` (``refine(photo, masks, residual) -> residual``);
    ``region_colour`` (4, 3, 3): the prior's colour part, applied to the full-resolution photo;
    ``templates``: the prior's feature templates (:func:`fit_templates`), laid on the full-resolution labels;
    ``models``: the skin's and brows' models (:func:`makeup.region_models.fit_region_models`), on the
    full-resolution photo (its teacher's region prior then has 0 for those regions: :func:`modelled_prior`).
    """
    size = image.shape[0]
    up = upsample(residual_low, size) if upsample else resize_image(residual_low.astype(np.float32), size)
    masks = region_stack(labels, None, radius)
    photo = image.astype(np.float32) / 255.0
    prior = None if region_prior is None else float(alpha) * prior_image(
        masks, photo, region_prior, region_colour, prior_field(photo, labels, templates, models))
    if prior is not None:
        up = up + prior
    if refiner is not None:
        up = refiner.refine(photo, masks, up)
    if prior_eye_zone and prior is not None:
        keep = prior_zone_weight(labels)[..., None]
        up = keep * prior + (1 - keep) * up
    gate = np.tensordot(np.asarray(fgmm_weights, np.float32), masks, axes=1)[..., None]
    out = photo + gate * up
    # Rounding the float source gives back the exact uint8 wherever the gate is zero.
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


PRIOR_ZONE_FEATHER = 2.0 / 256  # the eye zone's edge, feathered over this share of the crop side (a Gaussian sigma)


def prior_zone_weight(labels: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: where a teacher's paste keeps its look prior alone (``prior_eye_zone``): the eye
    zone that look fidelity scores (:func:`makeup.metrics.eye_zone`, where liner, wing and lid shadow lie),
    its edge feathered over :data:`PRIOR_ZONE_FEATHER` of the side.

    A 64-px teacher cannot draw what lies there (a liner 1-2 px wide; a perfect 64-px residual recovers 0.46
    of it: :mod:`teacher.refine`), while the prior's eye template paints it at full resolution from the seeds.
    Measured on stop 33's five demo teachers (the same seeds; 40 new faces vs the renderer, `teacher
    fidelity`, eye zone natural / red_lip): the prior alone 0.706 / 0.790, the teacher 0.670 / 0.743, the
    teacher without its refiner 0.668 (natural), the teacher whose correction alone is cut there 0.682
    (natural: its refiner, trained on 5 seeds, also moves the prior's liner), the teacher keeping the prior
    there 0.706 / 0.790, every other region within 0.005. Averaging more draws does not close it (natural,
    1 / 4 / 16 draws: 0.643 / 0.670 / 0.677): the correction's mean, not its scatter, is off there."""
    import torch

    from makeup.metrics import eye_zone
    from makeup.regions import EYES

    lab = np.asarray(labels)
    zone = eye_zone(torch.from_numpy((lab == EYES).astype(np.float32))[None])[0, 0].numpy()
    sigma = PRIOR_ZONE_FEATHER * lab.shape[0]
    return np.clip(cv2.GaussianBlur(zone.astype(np.float32), (0, 0), sigma), 0.0, 1.0) if sigma > 0 else zone


def prior_detail(photo: np.ndarray, labels: np.ndarray, resolution: int, radius: float, region_prior,
                 region_colour=None, templates=None, models=None) -> np.ndarray:
    """What the paste's full-resolution prior adds over the prior a teacher at ``resolution`` holds: the prior
    painted on the full-resolution photo and labels minus the working-resolution prior upsampled (the sharp
    edges of the regions, the liner of the eye template). photo (S, S, 3) float in [0, 1] -> (S, S, 3)."""
    size = photo.shape[0]
    field = prior_field(photo, labels, templates, models)
    full = prior_image(region_stack(labels, None, radius), photo, region_prior, region_colour, field)
    low_prior = prior_image(region_stack(labels, resolution, radius), resize_image(photo, resolution), region_prior,
                            region_colour, None if field is None else _resize_field(field, resolution))
    return full - resize_image(low_prior, size)


def estimate_residual_scale(residuals: list[np.ndarray], target_std: float = 0.5) -> float:
    """Scale that gives the seed residuals inside the regions a spread of ``target_std`` (why: diffusion
    noise has unit variance; a faint residual would be drowned and sampled with a poor signal-to-noise)."""
    vals = np.concatenate([r.ravel() for r in residuals]) if residuals else np.zeros(1)
    std = float(np.sqrt(np.mean(vals.astype(np.float64) ** 2)))
    return float(np.clip(target_std / max(std, 1e-4), 1.0, 100.0)) if math.isfinite(std) else 1.0
