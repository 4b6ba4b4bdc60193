"""A trained teacher on disk -> after images for (face, labels, seed) triples.

One code path for sample grids, `amplify` and `teacher fidelity`: build the condition at the working
resolution, sample the residual with one generator per face, paste it onto the full-resolution face.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from makeup.errors import TinyBeautyError

from .backends import get_backend
from .formulation import make_condition, paste_residual

FINAL = "dda_final.pt"
CONFIG = "config.yaml"


@dataclass
class Teacher:
    backend: object
    config: dict  # the teacher's config.yaml (backend, model, style, energy_ref, ...)
    upscaler: object | None = None

    @property
    def resolution(self) -> int:
        return int(self.backend.config["resolution"])

    @property
    def style(self) -> str:
        return str(self.config.get("style", "unknown"))

    def translate(self, faces: list[np.ndarray], labels: list[np.ndarray], seeds: list[int],
                  steps: int | None = None) -> list[np.ndarray]:
        """After images (uint8, each its face's size) for aligned face crops and their label maps."""
        return translate(self.backend, faces, labels, seeds, steps=steps, upscaler=self.upscaler)


def translate(backend, faces, labels, seeds, steps=None, upscaler=None) -> list[np.ndarray]:
    res = int(backend.config["resolution"])
    radius = float(backend.config["feather_radius"])
    conds = [make_condition(f, lab, res, radius) for f, lab in zip(faces, labels)]
    source = torch.stack([c.source for c in conds])
    masks = torch.stack([c.masks for c in conds])
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    residual = backend.sample(source, masks, gens, steps=steps).float().cpu().numpy().transpose(0, 2, 3, 1)
    head = backend.head
    weights = head.fgmm.region_weights.detach().cpu().numpy()
    alpha = float(head.alpha.detach())
    prior = head.region_prior.detach().cpu().numpy()
    outs = []
    for i, (f, lab) in enumerate(zip(faces, labels)):
        up = upscaler.residual_upsampler(conds[i].source.numpy().transpose(1, 2, 0)) if upscaler else None
        outs.append(paste_residual(f, lab, residual[i], weights, alpha, radius, upsample=up, region_prior=prior))
    return outs


def load_teacher(teacher_dir: str | os.PathLike, device: str = "auto", upscaler: str | None = None) -> Teacher:
    """Load ``TEACHER/dda_final.pt`` (EMA weights) with its ``config.yaml``; one clear error when absent."""
    from makeup.runtime import pick_device

    root = Path(teacher_dir)
    if not root.is_dir():
        raise TinyBeautyError(f"--teacher {root}: no such folder (train one with `tinybeauty teacher train`)")
    ckpt_path, cfg_path = root / FINAL, root / CONFIG
    if not ckpt_path.is_file() or not cfg_path.is_file():
        raise TinyBeautyError(f"--teacher {root}: no {FINAL} and {CONFIG} (train one with "
                              "`tinybeauty teacher train --out " f"{root}`)")
    try:
        config = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise TinyBeautyError(f"--teacher {root}: unreadable teacher files ({exc.__class__.__name__})") from None
    backend = get_backend(state.get("backend", config.get("backend", "tiny-ddpm"))).from_config(state["model_config"])
    backend.load_state_dict(state["weights"], for_inference=True)
    dev = pick_device(device)
    backend.to(dev)
    up = None
    if upscaler:
        from .upscale import Upscaler

        up = Upscaler(upscaler, dev)
    return Teacher(backend, config, up)
