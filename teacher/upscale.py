"""Optional super-resolution of low-resolution teacher outputs (seed 004 scheme B), loaded with spandrel.

The residual stays the diffusion variable, so the SR model is applied to the low-resolution before and after
images and the upscaled residual is their difference: SR(before + residual) - SR(before). Weights are a local
Real-ESRGAN / SwinIR file (``--upscaler PATH``); nothing is downloaded.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from makeup.errors import TinyBeautyError

from .formulation import resize_image


class Upscaler:
    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        p = Path(path)
        if not p.is_file():
            raise TinyBeautyError(f"--upscaler {p}: no such weights file (a local Real-ESRGAN/SwinIR .pth)")
        from spandrel import ModelLoader

        try:
            self.descriptor = ModelLoader(device=torch.device(device)).load_from_file(str(p))
        except Exception as exc:  # spandrel raises many types for files it cannot identify
            raise TinyBeautyError(f"--upscaler {p}: not a super-resolution model spandrel can load "
                                  f"({exc.__class__.__name__})") from None
        self.descriptor.model.eval()
        self.scale = int(self.descriptor.scale)
        self.path = p

    @torch.no_grad()
    def upscale(self, images: np.ndarray) -> np.ndarray:
        """(N, h, w, 3) float [0, 1] -> (N, h*scale, w*scale, 3)."""
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float()
        y = self.descriptor(x.to(self.descriptor.device)).clamp(0, 1)
        return y.cpu().numpy().transpose(0, 2, 3, 1)

    def residual_upsampler(self, before_low: np.ndarray):
        """An ``upsample(residual_low, size)`` for :func:`teacher.formulation.paste_residual`."""
        def upsample(residual_low: np.ndarray, size: int) -> np.ndarray:
            pair = np.stack([before_low, np.clip(before_low + residual_low, 0, 1)]).astype(np.float32)
            hi = self.upscale(pair)
            return resize_image(hi[1] - hi[0], size)
        return upsample
