"""A trained teacher on disk -> after images for (face, labels, seed) triples.

One code path for sample grids, `amplify` and `teacher fidelity`: build the condition at the working
resolution, sample the residual with one generator per face, paste it onto the full-resolution face.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from makeup.errors import TinyBeautyError
from makeup.io import atomic_path

from .backends import get_backend
from .formulation import make_condition, paste_residual
from .refine import REFINER, load_refiner

FINAL = "dda_final.pt"                    # a torch dict (tiny-ddpm: the whole network is small)
FINAL_SAFETENSORS = "dda_final.safetensors"  # trained tensors only + JSON metadata (sd15-lora)
CONFIG = "config.yaml"


@dataclass
class Teacher:
    backend: object
    config: dict  # the teacher's config.yaml (backend, model, style, energy_ref, ...)
    upscaler: object | None = None
    refiner: object | None = None  # teacher.refine.Refiner: full-resolution detail learned from the seeds

    @property
    def resolution(self) -> int:
        return int(self.backend.config["resolution"])

    @property
    def style(self) -> str:
        return str(self.config.get("style", "unknown"))

    def translate(self, faces: list[np.ndarray], labels: list[np.ndarray], seeds: list[int],
                  steps: int | None = None, samples: int = 1, prior_only: bool = False) -> list[np.ndarray]:
        """After images (uint8, each its face's size) for aligned face crops and their label maps;
        ``prior_only``: the teacher's look prior alone (nothing sampled, see :func:`translate`)."""
        return translate(self.backend, faces, labels, seeds, steps=steps, upscaler=self.upscaler, samples=samples,
                         refiner=self.refiner, prior_only=prior_only)


def sample_seeds(seed: int, samples: int) -> list[int]:
    """The noise seeds of one face's ``samples`` draws: the face's own seed first (so samples=1 is a plain
    draw), then seeds derived from it."""
    extra = np.random.SeedSequence([int(seed) % 2**63, 7]).generate_state(max(samples - 1, 0), np.uint64)
    return [int(seed)] + [int(x) >> 1 for x in extra]


def translate(backend, faces, labels, seeds, steps=None, upscaler=None, samples: int = 1,
              refiner=None, prior_only: bool = False) -> list[np.ndarray]:
    """Sample each face's residual ``samples`` times and paste the mean.

    The mean of several draws estimates what the look does to this face (the conditional mean); one draw adds
    the sampler's own scatter (liner drawn as dots, blotches), which no deterministic student can learn: on
    the demo red_lip teacher one draw reproduces only 0.35 of another draw's eye-zone change.

    ``prior_only``: paste a zero residual with neither refiner nor upscaler: the look prior the teacher fit on
    its seeds (region prior, templates, region models) alone, what the diffusion's residual is added to.
    """
    if samples < 1:
        raise TinyBeautyError(f"samples must be >= 1, got {samples}")
    res = int(backend.config["resolution"])
    radius = float(backend.config["feather_radius"])
    conds = [make_condition(f, lab, res, radius) for f, lab in zip(faces, labels)]
    if prior_only:
        residual = np.zeros((len(conds), res, res, conds[0].source.shape[0]), np.float32) if conds else []
        upscaler = refiner = None
    else:
        source = torch.stack([c.source for c in conds])
        masks = torch.stack([c.masks for c in conds])
        draws = [sample_seeds(s, samples) for s in seeds]
        gens = [torch.Generator().manual_seed(d[k]) for k in range(samples) for d in draws]
        rep = lambda t: t.repeat(samples, *([1] * (t.dim() - 1)))  # noqa: E731
        out = backend.sample(rep(source), rep(masks), gens, steps=steps).float().cpu()
        out = out.reshape(samples, len(conds), *out.shape[1:]).mean(dim=0)
        residual = out.numpy().transpose(0, 2, 3, 1)
    terms = backend.paste_terms()
    outs = []
    for i, (f, lab) in enumerate(zip(faces, labels)):
        up = upscaler.residual_upsampler(conds[i].source.numpy().transpose(1, 2, 0)) if upscaler else None
        outs.append(paste_residual(f, lab, residual[i], terms["fgmm_weights"], terms["alpha"], radius, upsample=up,
                                   region_prior=terms["region_prior"], refiner=refiner,
                                   region_colour=terms["region_colour"], templates=terms["templates"],
                                   models=terms.get("models"), prior_eye_zone=bool(terms.get("prior_eye_zone"))))
    return outs


def write_final(out: Path, backend, teacher_cfg: dict, epoch: int) -> Path:
    """The final teacher file: ``dda_final.safetensors`` for a backend whose ``weights_format`` is
    "safetensors" (flat trained tensors, config in the metadata), else ``dda_final.pt``. The other name is
    removed, so a folder retrained with another backend holds one final file."""
    from safetensors.torch import save_file

    state = backend.inference_state()
    if getattr(backend, "weights_format", "pt") == "safetensors":
        path, stale = out / FINAL_SAFETENSORS, out / FINAL
        meta = {"backend": backend.name, "model_config": json.dumps(backend.config), "epoch": str(epoch),
                "teacher_config": json.dumps(teacher_cfg)}
        with atomic_path(path) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=meta)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # safetensors creates 0600; a teacher file is as readable as torch.save's
    else:
        path, stale = out / FINAL, out / FINAL_SAFETENSORS
        with atomic_path(path) as tmp:
            torch.save({"backend": backend.name, "model_config": backend.config, "weights": state, "epoch": epoch,
                        "teacher_config": teacher_cfg}, tmp)
    stale.unlink(missing_ok=True)
    return path


def read_final(root: Path) -> dict:
    """{"backend", "model_config", "weights"} of a teacher folder's final file (either format)."""
    if (root / FINAL_SAFETENSORS).is_file():
        from safetensors import safe_open

        with safe_open(str(root / FINAL_SAFETENSORS), framework="pt") as fh:
            meta = fh.metadata() or {}
            weights = {k: fh.get_tensor(k) for k in fh.keys()}
        return {"backend": meta["backend"], "model_config": json.loads(meta["model_config"]), "weights": weights}
    return torch.load(root / FINAL, map_location="cpu", weights_only=False)


def load_teacher(teacher_dir: str | os.PathLike, device: str = "auto", upscaler: str | None = None,
                 overrides: dict | None = None, refiner: bool = True) -> Teacher:
    """Load ``TEACHER/dda_final.{pt,safetensors}`` (EMA weights) with its ``config.yaml``; one clear error when
    absent. ``overrides`` replace model config keys (e.g. ``{"sd_path": ...}``: where the base lives here).
    The detail refiner (``refiner.pt``, when the teacher has one) is used unless ``refiner`` is False."""
    from makeup.runtime import pick_device

    root = Path(teacher_dir)
    if not root.is_dir():
        raise TinyBeautyError(f"--teacher {root}: no such folder (train one with `tinybeauty teacher train`)")
    cfg_path = root / CONFIG
    has_final = (root / FINAL).is_file() or (root / FINAL_SAFETENSORS).is_file()
    if not has_final or not cfg_path.is_file():
        raise TinyBeautyError(f"--teacher {root}: no {FINAL} (or {FINAL_SAFETENSORS}) and {CONFIG} (train one "
                              "with `tinybeauty teacher train --out " f"{root}`)")
    try:
        config = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        state = read_final(root)
    except Exception as exc:
        raise TinyBeautyError(f"--teacher {root}: unreadable teacher files ({exc.__class__.__name__})") from None
    model_cfg = {**state["model_config"], **{k: v for k, v in (overrides or {}).items() if v is not None}}
    backend = get_backend(state.get("backend", config.get("backend", "tiny-ddpm"))).from_config(model_cfg)
    backend.load_state_dict(state["weights"], for_inference=True)
    dev = pick_device(device)
    backend.to(dev)
    up = None
    if upscaler:
        from .upscale import Upscaler

        up = Upscaler(upscaler, dev)
    ref = None
    if refiner and (root / REFINER).is_file():
        ref = load_refiner(root / REFINER, dev)
    return Teacher(backend, config, up, ref)
