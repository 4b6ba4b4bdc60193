"""Student checkpoints: one ``.pt`` file with the architecture config, float weights and (for QAT checkpoints)
the prepared graph's state, plus the trainer state that ``--resume`` needs.

Loaded with ``weights_only=True``: a checkpoint is data (tensors, dicts, strings, numbers), never pickled code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from makeup.errors import TinyBeautyError
from makeup.io import atomic_path

from .model import StudentConfig, build_model

FORMAT = "tinybeauty-student"
VERSION = 1


@dataclass
class StudentCheckpoint:
    model: nn.Module  # float model (for QAT checkpoints: the QAT-trained float weights)
    config: StudentConfig
    qat: bool
    meta: dict
    qat_state: dict | None = None  # prepared GraphModule state_dict (weights + fake-quant/observer state)
    trainer: dict | None = None  # epoch, optimizer, scheduler, best scores (for --resume)
    path: Path | None = field(default=None)

    @property
    def look_prior(self):
        """The look prior a prior-input student reads (``makeup.lookprior.LookPrior``, fit by the trainer on
        its training pairs and kept in the meta), or None."""
        from makeup.lookprior import LookPrior

        return LookPrior.from_meta(self.meta)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, config: StudentConfig | None = None,
                    qat_state: dict | None = None, meta: dict | None = None, trainer: dict | None = None) -> Path:
    """Write atomically (temp + rename): a killed trainer never leaves a torn checkpoint."""
    cfg = config or getattr(model, "config", None)
    if not isinstance(cfg, StudentConfig):
        raise TypeError("save_checkpoint needs the model's StudentConfig")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "qat": qat_state is not None,
        "qat_state": None if qat_state is None else {k: v.detach().cpu() for k, v in qat_state.items()},
        "meta": dict(meta or {}),
        "trainer": trainer,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_student(path: str | os.PathLike) -> StudentCheckpoint:
    """Read a student checkpoint; a missing, torn or foreign file is one clear :class:`TinyBeautyError`."""
    path = Path(path)
    if not path.is_file():
        raise TinyBeautyError(f"{path}: no such student checkpoint (train one with `tinybeauty student train`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TinyBeautyError(f"{path}: not a readable student checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TinyBeautyError(f"{path}: not a TinyBeauty student checkpoint")
    config = StudentConfig.from_saved(payload["config"])
    model = build_model(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise TinyBeautyError(f"{path}: weights do not match its config ({str(exc).splitlines()[0]})") from None
    model.eval()
    return StudentCheckpoint(model=model, config=config, qat=bool(payload.get("qat")), meta=payload.get("meta") or {},
                             qat_state=payload.get("qat_state"), trainer=payload.get("trainer"), path=path)
