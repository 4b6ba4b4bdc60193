"""Detail refiner: the teacher's low-resolution residual -> a full-resolution one, learned from the seed pairs.

A teacher that samples at 64 px cannot draw what lies between its pixels: a liner 2 px wide in the 256 crop,
the skin texture foundation smooths away, the lip grain lipstick keeps. Measured on 20 held-out synthetic
faces vs the renderer (glamorous): even a PERFECT 64-px residual, bicubic-upsampled and pasted as the teacher
pastes, recovers only eyes 0.46, lips 0.69, skin 0.40, brows 0.49 of the look.

The refiner is a small full-resolution CNN (dilated 3x3 convs, receptive field 19 px) trained on the seed pairs
themselves: its input is the seed's after taken down to the teacher's resolution and back (what a perfect
teacher would hand it), the full-resolution photo and the soft region masks; its target is the seed's
full-resolution residual. It adds the detail back (same perfect residual, width 16, 600 steps: 0.71 / 0.73 /
0.43 / 0.59; one-off measurement, stop-16 note). It never paints outside the regions: paste_residual gates its
output with the FGMM masks as before.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from makeup.errors import TinyBeautyError
from makeup.io import atomic_path

from .formulation import MAKEUP_REGIONS, prior_detail, region_stack, resize_image

REFINER = "refiner.pt"
GAIN = 4.0  # residuals are ~0.05-0.3; scaled to the photo's range for the convs, divided back at the output
# jitter: each crop's input residual is scaled by 1 +- jitter (uniform) in training, so the detail follows the photo
# instead of trusting the input's amplitude. It helped while the prior was a region mean (stop 16: glamorous brows
# 0.22 -> 0.25). With the priors of stop 28 on (templates, region models at scale 1) the input's amplitude is the
# prior's and right, and a refiner taught to doubt it redrew the brow tint and the lipstick from 5 seeds: stop 29's
# five demo teachers, the refiner retrained on the same diffusion weights with jitter 0.3 -> 0, `teacher fidelity`
# on 40 new faces vs the renderer: gain +8.9 / +11.3 / +15.2 / +10.4 / +10.3 -> +9.3 / +11.8 / +15.6 / +11.0 / +10.9
# dB (natural / glamorous / smokey_eyes / red_lip / korean), lips +0.01..+0.05, brows +0.02..+0.05 (korean -0.01)
REFINER_DEFAULTS: dict = {"steps": 600, "width": 16, "crop": 96, "batch": 8, "lr": 2.0e-3, "pool": 8, "seed": 0,
                          "jitter": 0.0}


class DetailRefiner(nn.Module):
    """(photo, upsampled residual, masks) at full resolution -> the residual with its detail back."""

    def __init__(self, width: int = 16):
        super().__init__()
        c_in = 3 + 3 + len(MAKEUP_REGIONS)
        dil = (1, 2, 4, 1)
        layers: list[nn.Module] = []
        for i, d in enumerate(dil):
            layers += [nn.Conv2d(c_in if i == 0 else width, width, 3, padding=d, dilation=d), nn.ReLU()]
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        self.net = nn.Sequential(*layers)
        nn.init.zeros_(self.net[-1].weight)  # starts as the identity: the bicubic residual itself
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, photo: torch.Tensor, up: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """photo (N, 3, H, W) in [0, 1], up (N, 3, H, W) residual, masks (N, 4, H, W) -> residual (N, 3, H, W)."""
        return up + self.net(torch.cat([photo, up * GAIN, masks], dim=1)) / GAIN


def low_res_residual(before: np.ndarray, after: np.ndarray, resolution: int) -> np.ndarray:
    """What a perfect teacher at ``resolution`` hands the paste: (after - before) taken down and back up.
    Float images in [0, 1], (S, S, 3) -> (S, S, 3)."""
    size = before.shape[0]
    low = resize_image(after, resolution) - resize_image(before, resolution)
    return resize_image(low, size)


@dataclass
class Refiner:
    """A trained refiner and what it was trained for (the teacher's working resolution and crop size)."""

    model: DetailRefiner
    resolution: int
    size: int
    settings: dict = field(default_factory=dict)

    @torch.no_grad()
    def refine(self, photo: np.ndarray, masks: np.ndarray, up: np.ndarray) -> np.ndarray:
        """photo (S, S, 3) float [0, 1], masks (4, S, S), up (S, S, 3) ungated residual -> refined residual."""
        dev = next(self.model.parameters()).device
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(dev)[None]  # noqa: E731
        out = self.model(t(photo.transpose(2, 0, 1)), t(up.transpose(2, 0, 1)), t(masks))
        return out[0].cpu().numpy().transpose(1, 2, 0)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            torch.save({"state": self.model.state_dict(), "resolution": self.resolution, "size": self.size,
                        "settings": self.settings}, tmp)
        return path

    def fingerprint_tensors(self) -> dict:
        return {f"refiner.{k}": v for k, v in self.model.state_dict().items()}


def load_refiner(path: str | os.PathLike, device: str | torch.device = "cpu") -> Refiner:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = DetailRefiner(int(blob["settings"]["width"]))
        model.load_state_dict(blob["state"])
    except Exception as exc:
        raise TinyBeautyError(f"{path}: unreadable detail refiner ({exc.__class__.__name__}); retrain the teacher "
                              "or delete the file to paste with bicubic upsampling") from None
    model.eval().to(device)
    return Refiner(model, int(blob["resolution"]), int(blob["size"]), dict(blob["settings"]))


def _training_pool(pairs, resolution: int, radius: float, count: int, augment: dict, seed: int, prior=None):
    """``count`` augmented copies of every seed pair as tensors: photo, perfect-teacher residual, masks, target.

    ``prior`` (the teacher's ``paste_terms``): the paste adds the region prior at full resolution to the
    teacher's upsampled correction, so a perfect teacher hands the refiner the low-resolution residual plus
    the prior's full-resolution detail (:func:`teacher.formulation.prior_detail`); without it, the residual
    alone."""
    from .train import augment_pair

    rng = np.random.default_rng([seed, 17])
    photos, ups, masks, targets, where = [], [], [], [], []
    for p in pairs:
        for k in range(count):
            before, after, labels = augment_pair(p, rng, augment) if k else (p.before, p.after, p.labels)
            b, a = before.astype(np.float32) / 255.0, after.astype(np.float32) / 255.0
            photos.append(b.transpose(2, 0, 1))
            up = low_res_residual(b, a, resolution)
            if prior is not None and prior.get("region_prior") is not None:
                up = up + prior_detail(b, labels, resolution, radius, prior["region_prior"], prior["region_colour"],
                                       prior.get("templates"), prior.get("models"))
            ups.append(up.transpose(2, 0, 1))
            masks.append(region_stack(labels, None, radius))
            targets.append((a - b).transpose(2, 0, 1))
            where.append(np.argwhere(labels > 0))
    stack = lambda xs: torch.from_numpy(np.ascontiguousarray(np.stack(xs), dtype=np.float32))  # noqa: E731
    return stack(photos), stack(ups), stack(masks), stack(targets), where


def train_refiner(pairs, resolution: int, radius: float, settings: dict | None = None, augment: dict | None = None,
                  progress: bool = True, device: str | torch.device = "cpu",
                  prior: dict | None = None) -> tuple[Refiner, dict]:
    """Fit a :class:`DetailRefiner` on the seed pairs (``SeedPair`` before/after/labels, uint8, square).

    Every step takes ``batch`` crops of ``crop`` px centred on random makeup-region pixels (the look is there),
    random horizontal flips, the input residual scaled by 1 +- ``jitter``; loss = L1 of the gated residual,
    weighted 1 + 4 x the gate (the regions count). ``prior``: the teacher's ``paste_terms`` (see
    :func:`_training_pool`)."""
    cfg = {**REFINER_DEFAULTS, **(settings or {})}
    size = int(pairs[0].before.shape[0])
    if resolution >= size:
        raise TinyBeautyError(f"detail refiner: the teacher already works at {resolution} px >= the {size} px crop")
    crop = min(int(cfg["crop"]), size)
    photos, ups, masks, targets, where = _training_pool(pairs, resolution, radius, int(cfg["pool"]), augment or {},
                                                        int(cfg["seed"]), prior)
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    rng = np.random.default_rng(int(cfg["seed"]))
    with torch.random.fork_rng(devices=[]):  # its own init stream: the teacher's global RNG is left as it was
        torch.manual_seed(int(cfg["seed"]))
        model = DetailRefiner(int(cfg["width"])).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
    steps = int(cfg["steps"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="detail refiner", unit="step")
    t0, loss_v = time.perf_counter(), float("nan")
    for _ in it:
        idx = rng.integers(0, len(where), int(cfg["batch"]))
        cuts = []
        for i in idx:
            cy, cx = where[i][rng.integers(0, len(where[i]))] if len(where[i]) else (size // 2, size // 2)
            y0 = int(np.clip(cy - crop // 2, 0, size - crop))
            x0 = int(np.clip(cx - crop // 2, 0, size - crop))
            cuts.append((int(i), slice(y0, y0 + crop), slice(x0, x0 + crop)))
        batch = [torch.stack([t[i, :, ys, xs] for i, ys, xs in cuts]) for t in (photos, ups, masks, targets)]
        flip = torch.rand(len(cuts), generator=gen) < 0.5
        batch = [torch.where(flip.view(-1, 1, 1, 1), b.flip(-1), b).to(device) for b in batch]
        photo, up, m, target = batch
        jitter = float(cfg["jitter"])
        if jitter > 0:
            up = up * (1 + jitter * (2 * torch.rand(len(cuts), 1, 1, 1, generator=gen) - 1)).to(up.device)
        gate = m.sum(dim=1, keepdim=True)  # paste_residual's gate at FGMM weights 1
        loss = ((model(photo, up, m) * gate - target).abs() * (1 + 4 * gate)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_v = float(loss.detach())
        if progress:
            it.set_postfix(loss=f"{loss_v:.4f}")
    model.eval().cpu()
    record = {"steps": steps, "final_loss": loss_v, "seconds": round(time.perf_counter() - t0, 2)}
    return Refiner(model, int(resolution), size, cfg), record
