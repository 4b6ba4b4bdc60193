"""Student training loss: every term measured against the pair's own change, so no term silently dominates.

A makeup pair changes few pixels by little (lips are ~0.7 % of an aligned crop, a whole-image L1 of an
unchanged face is ~0.004), while a Sobel term on the eye zone is ~0.09: summed raw, training spends itself on
whatever term is largest, and the student learns to leave the lips alone. So each term is a ratio to what
leaving the face unchanged would score on the same pixels (the identity's error), summed over the batch:

* ``regions``: for each region the pair changes (eye zone, lips, skin, brows; :func:`makeup.metrics.region_masks`)
  ``sum|P - T| / sum|T - S|`` = 1 - that region's recovery, averaged over the changed regions. Each part of
  the look weighs the same however few pixels it covers.
* ``l1``: the same ratio over the whole crop (keeps everything else, hair and background, exact).
* ``spill``: ``sum max(0, |P - S| - |T - S|) / sum|T - S|``: paint where the look puts none.
* ``eyeliner``: :func:`makeup.metrics.eyeliner_loss` of the prediction over that of the unchanged source
  (sharp liner edges, which L1 under-weights).
* ``lpips``: only when its AlexNet weights are on disk (``makeup.metrics.load_lpips``); raw.

An unchanged face scores 1 on every ratio term; a perfect prediction 0.

Two shapes keep a small look learnable (measured on a lips-only look, 8 faces at 64 px, 300 Adam steps:
raw L1 + eyeliner leaves the lips at 0.002 recovery, these terms reach 0.37; ``tests/test_student_train.py``).
Errors below ``soft_eps`` (~5/255) cost quadratically (Charbonnier): under an absolute error a feature that
fires on the lips and as many other pixels has a zero optimum (the median), so the net never starts painting
the lips. Spill counts only the excess above ``spill_margin`` (4/255, half of what a person sees), and weighs
0.3: at full weight its absolute hinge holds the same dead zone shut.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import torch
from torch import nn

from makeup.errors import TinyBeautyError
from makeup.metrics import CHANGED_REGION_MIN, eyeliner_loss, load_lpips, region_masks
from makeup.regions import EYES

log = logging.getLogger("tinybeauty")


@dataclass(frozen=True)
class LossWeights:
    """Term weights, plus the two shapes that keep a small look learnable (measured, see the module doc)."""

    regions: float = 1.0
    l1: float = 1.0
    spill: float = 0.3
    eyeliner: float = 0.25
    lpips: float = 0.0  # > 0 only takes effect when LPIPS weights are local
    soft_eps: float = 0.02  # errors below this (~5/255) cost quadratically (Charbonnier), above it linearly
    spill_margin: float = 4.0 / 255.0  # excess change below this (half of what a person sees) is not spill

    @classmethod
    def from_dict(cls, data: dict | None) -> "LossWeights":
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TinyBeautyError(f"unknown student loss weights {unknown}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in data.items()})


def _ratio(err: torch.Tensor, change: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
    """sum err / sum change over ``mask`` (all pixels when None); None where the change there is too faint to
    measure against (mean below :data:`makeup.metrics.CHANGED_REGION_MIN`)."""
    if mask is not None:
        err, change = err[mask], change[mask]
    if change.numel() == 0 or float(change.mean()) < CHANGED_REGION_MIN:
        return None
    return err.sum() / change.sum()


def _soft(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Charbonnier: quadratic below ``eps``, absolute above (0 at 0)."""
    return x if eps <= 0 else (x * x + eps * eps).sqrt() - eps


class StudentLoss(nn.Module):
    """``loss(pred, target, labels, source) -> (total, parts)`` on NCHW [0, 1] images; ``parts`` holds each
    term's float value (before weighting)."""

    def __init__(self, weights: LossWeights | None = None, lpips_weights: str | None = None):
        super().__init__()
        self.weights = weights or LossWeights()
        self.lpips_net = None
        if self.weights.lpips > 0:
            metric = load_lpips(lpips_weights)
            if metric is not None:
                self.lpips_net = metric.net.requires_grad_(False)
            else:
                log.warning("LPIPS loss weight %.3g ignored: no local LPIPS weights", self.weights.lpips)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, source: torch.Tensor):
        w = self.weights
        err = _soft((pred - target).abs().mean(dim=1), w.soft_eps)  # (N, H, W) per-pixel channel mean
        raw_change = (target - source).abs().mean(dim=1)
        change = _soft(raw_change, w.soft_eps)
        parts: dict[str, torch.Tensor] = {}
        if w.regions > 0:
            ratios = [r for m in region_masks(labels).values() if (r := _ratio(err, change, m)) is not None]
            if ratios:
                parts["regions"] = torch.stack(ratios).mean()
        denom = change.sum().clamp_min(CHANGED_REGION_MIN * change.numel())
        parts["l1"] = err.sum() / denom
        if w.spill > 0:
            excess = ((pred - source).abs().mean(dim=1) - raw_change - w.spill_margin).clamp_min(0.0)
            parts["spill"] = excess.sum() / denom
        if w.eyeliner > 0:
            eye = labels == EYES
            base = float(eyeliner_loss(source, target, eye))
            if base > 1e-6:
                parts["eyeliner"] = eyeliner_loss(pred, target, eye) / base
        if self.lpips_net is not None:
            self.lpips_net.to(pred.device)
            parts["lpips"] = self.lpips_net(pred * 2 - 1, target * 2 - 1).mean()
        total = sum(getattr(w, k) * v for k, v in parts.items())
        return total, {k: float(v.detach()) for k, v in parts.items()}
