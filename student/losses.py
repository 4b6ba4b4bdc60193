"""Student training loss: L1 + the shared Sobel eyeliner loss inside the eyes + optional LPIPS.

The eyeliner term is :func:`makeup.metrics.eyeliner_loss` (one definition shared with the teacher), taken over
the eye zone of the pair's label map (the opening grown over lids and wing, ``makeup.metrics.eye_zone``):
thin liner strokes are a few pixels of the L1 budget but most of what a viewer sees. LPIPS only joins when
its AlexNet weights are on disk (``makeup.metrics.load_lpips``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from makeup.metrics import eyeliner_loss, load_lpips
from makeup.regions import EYES

log = logging.getLogger("tinybeauty")


@dataclass(frozen=True)
class LossWeights:
    l1: float = 1.0
    eyeliner: float = 0.5
    lpips: float = 0.0  # > 0 only takes effect when LPIPS weights are local

    @classmethod
    def from_dict(cls, data: dict | None) -> "LossWeights":
        return cls(**{k: float(v) for k, v in (data or {}).items()})


class StudentLoss(nn.Module):
    """``loss(pred, target, labels) -> (total, {"l1", "eyeliner"[, "lpips"]})`` on NCHW [0, 1] images."""

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

    def forward(self, pred: torch.Tensor, target: torch.Tensor, labels: torch.Tensor):
        parts = {"l1": (pred - target).abs().mean(),
                 "eyeliner": eyeliner_loss(pred, target, labels == EYES)}
        if self.lpips_net is not None:
            self.lpips_net.to(pred.device)
            parts["lpips"] = self.lpips_net(pred * 2 - 1, target * 2 - 1).mean()
        total = sum(getattr(self.weights, k) * v for k, v in parts.items())
        return total, {k: float(v.detach()) for k, v in parts.items()}
