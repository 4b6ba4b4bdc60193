"""Parity: does the exported file compute what the PyTorch graph it came from computes?

Images are the validation split of a pair dataset (deterministic by id, the same split the student trainer
holds out), resized to the artifact's input size. For each format the exported runtime's output is compared
with its PyTorch reference (the converted int8 graph) and both are scored against the makeup target, also per
region of the look (``makeup.metrics.LookFidelity``): whole-image PSNR cannot see a file that drops the lips.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from makeup.errors import TinyBeautyError
from makeup.metrics import PSNR_CAP_DB, capped_psnr_per_image  # noqa: F401 (PSNR_CAP_DB: the report's cap)


@dataclass
class ParitySet:
    ids: list[str]
    sources: np.ndarray            # float32 (N, 3, S, S) in [0, 1]
    targets: np.ndarray | None     # same shape, or None when only sources are known
    labels: np.ndarray | None = None  # uint8 (N, S, S) region label maps

    def inputs(self, channels: int, look_prior=None) -> np.ndarray:
        """The model inputs: the sources, with their region channels when the model takes ``channels`` > 3 (and
        ``look_prior`` painted on them for a prior-input model)."""
        from student.model import model_input

        return model_input(channels, self.sources, self.labels, look_prior)


@dataclass
class Parity:
    psnr_vs_torch: float           # exported output vs the PyTorch reference output
    max_abs_diff: float            # worst pixel difference, in [0, 1] units
    psnr_vs_target: float | None   # exported output vs the makeup target
    torch_psnr_vs_target: float | None
    images: int
    fidelity: dict | None = None        # look fidelity of the exported output vs the target
    torch_fidelity: dict | None = None  # the same for the PyTorch reference

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


MAX_RECOVERY_DROP = 0.02  # a shipped file may lose at most this share of any region's look vs PyTorch


def load_parity_set(pairs_dir: str | Path, size: int, limit: int = 16, split: str = "val") -> ParitySet:
    """Up to ``limit`` pairs of the validation split (or every pair with ``split='all'``), at ``size``."""
    from makeup.pairs import PairDataset, PairTorchDataset, split_ids

    ds = PairDataset(pairs_dir)
    if len(ds) == 0:
        raise TinyBeautyError(f"{pairs_dir}: the manifest lists no pairs")
    ids = ds.ids if split == "all" or len(ds) == 1 else split_ids(ds.ids)[1]
    items = PairTorchDataset(ds, ids[:limit], size=size, augment=False)
    batch = [items[i] for i in range(len(items))]
    return ParitySet([b["id"] for b in batch],
                     np.stack([b["source"].numpy() for b in batch]).astype(np.float32),
                     np.stack([b["target"].numpy() for b in batch]).astype(np.float32),
                     np.stack([b["mask"].numpy() for b in batch]).astype(np.uint8))


def run_torch(module, sources: np.ndarray) -> np.ndarray:
    """One image at a time, like the batch-1 artifacts it is compared with (and memory stays flat)."""
    import torch

    with torch.no_grad():
        return np.concatenate([module(torch.from_numpy(np.ascontiguousarray(x[None]))).numpy()
                               for x in sources], axis=0).astype(np.float32)


def run_each(runner: Callable, sources: np.ndarray) -> np.ndarray:
    """An exported artifact's runner on one image at a time (the artifacts are specialised to batch 1)."""
    return np.concatenate([np.asarray(runner(np.ascontiguousarray(x[None]))) for x in sources],
                          axis=0).astype(np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    per = capped_psnr_per_image(np.clip(a, 0, 1).transpose(0, 2, 3, 1), np.clip(b, 0, 1).transpose(0, 2, 3, 1),
                                data_range=1.0)
    return float(np.mean(per))


def _fidelity(pred: np.ndarray, ps: ParitySet) -> dict:
    from makeup.metrics import look_fidelity

    nhwc = lambda x: np.clip(x, 0, 1).transpose(0, 2, 3, 1)  # noqa: E731
    fid = look_fidelity(nhwc(pred), nhwc(ps.sources), nhwc(ps.targets), ps.labels)
    return {"recovery": fid["recovery"], "spill": fid["spill"], "visible_spill": fid["visible_spill"],
            "psnr_gain": fid["psnr_gain"]}


def compare(exported: np.ndarray, reference: np.ndarray, targets: np.ndarray | None,
            parity_set: ParitySet | None = None) -> Parity:
    """Exported vs PyTorch output; both vs ``targets``; with a ``parity_set`` holding labels, per region too."""
    if exported.shape != reference.shape:
        raise TinyBeautyError(f"exported output shape {exported.shape} != PyTorch output {reference.shape}")
    regional = parity_set is not None and parity_set.labels is not None and parity_set.targets is not None
    return Parity(
        psnr_vs_torch=_psnr(exported, reference),
        max_abs_diff=float(np.abs(exported - reference).max()),
        psnr_vs_target=None if targets is None else _psnr(exported, targets),
        torch_psnr_vs_target=None if targets is None else _psnr(reference, targets),
        images=len(exported),
        fidelity=_fidelity(exported, parity_set) if regional else None,
        torch_fidelity=_fidelity(reference, parity_set) if regional else None,
    )


def parity_failures(p: Parity, min_psnr_db: float, max_target_drop_db: float) -> list[str]:
    """Why a parity result fails the export (empty list: it passes)."""
    out = []
    if p.psnr_vs_torch < min_psnr_db:
        out.append(f"PSNR vs PyTorch {p.psnr_vs_torch:.2f} dB < {min_psnr_db:g} dB")
    if p.psnr_vs_target is not None and p.torch_psnr_vs_target is not None:
        drop = p.torch_psnr_vs_target - p.psnr_vs_target
        if drop > max_target_drop_db:
            out.append(f"loses {drop:.3f} dB vs target (PyTorch {p.torch_psnr_vs_target:.2f}, exported "
                       f"{p.psnr_vs_target:.2f}; allowed {max_target_drop_db:g})")
    if p.fidelity is not None and p.torch_fidelity is not None:
        for region, ref in p.torch_fidelity["recovery"].items():
            got = p.fidelity["recovery"][region]
            if ref is not None and got is not None and ref - got > MAX_RECOVERY_DROP:
                out.append(f"loses {ref - got:.3f} of the {region} look vs PyTorch (recovery {got:.3f} vs "
                           f"{ref:.3f}; allowed {MAX_RECOVERY_DROP})")
    return out
