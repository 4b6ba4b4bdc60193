"""``tinybeauty eval``: PSNR / SSIM / LPIPS and look fidelity of any student artifact on a pair dataset."""
from __future__ import annotations

import json
import os

import numpy as np

from makeup.errors import TinyBeautyError
from makeup.io import write_text_atomic
from makeup.metrics import LookFidelity, load_lpips, ssim_per_image
from makeup.pairs import PairDataset, PairTorchDataset, split_ids

from .runtime import Runner, load_runner

SPLITS = ("val", "all")


def evaluate(model: Runner | str | os.PathLike, pairs_dir: str | os.PathLike, split: str = "val",
             batch_size: int = 8, val_fraction: float = 0.1, progress: bool = False) -> dict:
    """Scores against the pairs' targets: {"psnr", "ssim", "lpips" (None without local LPIPS weights), "count",
    "psnr_identity" (the unchanged before images: the do-nothing baseline), "psnr_gain", "recovery" {eyes, lips,
    skin, brows}, "spill", "visible_spill"} (look fidelity: ``makeup.metrics.LookFidelity``)."""
    if split not in SPLITS:
        raise TinyBeautyError(f"unknown split {split!r}: choose one of {SPLITS}")
    runner = model if isinstance(model, Runner) else load_runner(model)
    runner.look_prior  # noqa: B018 (a prior-input model without its prior: one error before any work)
    pairs = PairDataset(pairs_dir)
    ids = pairs.ids if split == "all" else split_ids(pairs.ids, val_fraction)[1]
    if not ids:
        raise TinyBeautyError(f"{pairs.root}: no pairs in split {split!r}")
    size = runner.size[0] if runner.size and runner.size[0] == runner.size[1] else None
    data = PairTorchDataset(pairs, ids, size=size, cache=False)
    lpips_metric = load_lpips()
    ssims, lpipss = [], []
    fidelity = LookFidelity()
    from tqdm import tqdm

    for i in tqdm(range(0, len(data), batch_size), desc="eval", unit="batch", disable=not progress):
        items = [data[j] for j in range(i, min(i + batch_size, len(data)))]
        src = np.stack([it["source"].numpy() for it in items])
        tgt = np.stack([it["target"].numpy() for it in items])
        labels = np.stack([it["mask"].numpy() for it in items])
        pred = np.clip(runner(src, labels), 0.0, 1.0)
        p, s, t = (x.transpose(0, 2, 3, 1) for x in (pred, src, tgt))
        fidelity.update(p, s, t, labels)
        ssims += list(ssim_per_image(p, t, 1.0))
        if lpips_metric is not None:
            import torch

            lpipss.append(lpips_metric(torch.from_numpy(pred), torch.from_numpy(tgt)) * len(items))
    fid = fidelity.result()
    return {"psnr": fid["psnr"], "ssim": float(np.mean(ssims)),
            "lpips": float(sum(lpipss) / len(ids)) if lpips_metric is not None else None, "count": len(ids),
            "psnr_identity": fid["psnr_identity"], "psnr_gain": fid["psnr_gain"], "recovery": fid["recovery"],
            "spill": fid["spill"], "visible_spill": fid["visible_spill"]}


def write_eval_json(path: str | os.PathLike, result: dict) -> None:
    write_text_atomic(path, json.dumps(result, indent=2) + "\n")


def photo_fidelity(model: Runner | str | os.PathLike, photo: np.ndarray, style, name: str = "photo",
                   grid: str | os.PathLike | None = None) -> dict:
    """Look fidelity on a real photo, with the renderer as truth: the photo is aligned, its crop parsed from
    its own face mesh, the style rendered on the crop (truth), and the model's output scored against it,
    without and with the model's look gate (``makeup.gate.LookGate``). ``grid`` saves photo crop | renderer |
    model | model gated, with the figures as caption."""
    from makeup.metrics import format_fidelity, look_fidelity
    from makeup.render import photo_truth

    from .apply import apply_to_crop, look_gate_of

    runner = model if isinstance(model, Runner) else load_runner(model)
    crop, labels, truth = photo_truth(photo, style, runner.size[0] if runner.size else 256, name)
    raw = apply_to_crop(runner, crop, labels)
    gate = look_gate_of(runner.path)
    outs = {"ungated": raw} | ({"gated": gate.apply(crop, raw, labels)} if gate is not None else {})
    result = {}
    for key, out in outs.items():
        fid = look_fidelity(out, crop, truth, labels)
        result[key] = {k: fid[k] for k in ("recovery", "spill", "visible_spill", "psnr", "psnr_identity", "psnr_gain")}
    if grid:
        from makeup.grid import save_grid

        save_grid(grid, [[crop, truth] + list(outs.values())],
                  titles=["photo (aligned)", "renderer (truth)"] + [f"model {k}" for k in outs],
                  caption=" || ".join(f"{k}: {format_fidelity(v)}" for k, v in result.items()))
    return result
