"""``tinybeauty eval``: PSNR / SSIM / LPIPS of any student artifact on a pair dataset."""
from __future__ import annotations

import json
import os

import numpy as np

from makeup.errors import TinyBeautyError
from makeup.io import write_text_atomic
from makeup.metrics import load_lpips, psnr_per_image, ssim_per_image
from makeup.pairs import PairDataset, PairTorchDataset, split_ids

from .runtime import Runner, load_runner

SPLITS = ("val", "all")


def _capped_psnr(pred: np.ndarray, target: np.ndarray) -> list[float]:
    """Per-image PSNR of NHWC [0, 1] batches; identical images count 100 dB instead of inf."""
    return list(np.minimum(psnr_per_image(pred, target, 1.0), 100.0))


def evaluate(model: Runner | str | os.PathLike, pairs_dir: str | os.PathLike, split: str = "val",
             batch_size: int = 8, val_fraction: float = 0.1, progress: bool = False) -> dict:
    """{"psnr", "ssim", "lpips" (None without local LPIPS weights), "count"} against the pairs' targets, plus
    "psnr_identity": the same PSNR for the unchanged before images (the do-nothing baseline a model must beat)."""
    if split not in SPLITS:
        raise TinyBeautyError(f"unknown split {split!r}: choose one of {SPLITS}")
    runner = model if isinstance(model, Runner) else load_runner(model)
    pairs = PairDataset(pairs_dir)
    ids = pairs.ids if split == "all" else split_ids(pairs.ids, val_fraction)[1]
    if not ids:
        raise TinyBeautyError(f"{pairs.root}: no pairs in split {split!r}")
    size = runner.size[0] if runner.size and runner.size[0] == runner.size[1] else None
    data = PairTorchDataset(pairs, ids, size=size, cache=False)
    lpips_metric = load_lpips()
    psnrs, ssims, lpipss, identity = [], [], [], []
    from tqdm import tqdm

    for i in tqdm(range(0, len(data), batch_size), desc="eval", unit="batch", disable=not progress):
        items = [data[j] for j in range(i, min(i + batch_size, len(data)))]
        src = np.stack([it["source"].numpy() for it in items])
        tgt = np.stack([it["target"].numpy() for it in items])
        pred = np.clip(runner(src), 0.0, 1.0)
        p, t = pred.transpose(0, 2, 3, 1), tgt.transpose(0, 2, 3, 1)
        psnrs += _capped_psnr(p, t)
        identity += _capped_psnr(src.transpose(0, 2, 3, 1), t)
        ssims += list(ssim_per_image(p, t, 1.0))
        if lpips_metric is not None:
            import torch

            lpipss.append(lpips_metric(torch.from_numpy(pred), torch.from_numpy(tgt)) * len(items))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
            "lpips": float(sum(lpipss) / len(ids)) if lpips_metric is not None else None, "count": len(ids),
            "psnr_identity": float(np.mean(identity))}


def write_eval_json(path: str | os.PathLike, result: dict) -> None:
    write_text_atomic(path, json.dumps(result, indent=2) + "\n")
