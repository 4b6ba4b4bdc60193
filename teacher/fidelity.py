"""`teacher fidelity`: how close the teacher comes to the renderer's ground truth on held-out synthetic faces,
or on a real photo (``--photo``: the photo aligned, its regions from its face mesh, the renderer's look on it).

Faces are drawn with seeds no seed pair or amplify run uses; the ground truth is ``makeup.render`` with the
named style. Reports mean PSNR/SSIM of teacher output vs ground truth, the identity baseline (PSNR of the
untouched face vs ground truth), and the look fidelity per region (``makeup.metrics.LookFidelity``: recovery of
eyes, lips, skin and brows, spill): whole-image PSNR cannot see lips, 0.7 % of the crop.

``agreement`` (``--agreement``): the same faces drawn again with other noise seeds, scored against the first
draws as if they were a student: how much of one mean of ``samples`` draws another one reproduces, per region.
What the teacher hands a student differs from pair to pair by this much that no face explains, so a student
scored against the teacher's pairs (``tinybeauty eval --pairs``) cannot reach 1: ``student_ceiling`` is the
expected score of the teacher's own conditional mean (infinitely many draws) against one mean of ``samples``
draws, ``1 - (1 - agreement) / sqrt(2)`` (two independent means differ by sqrt(2) times one mean's scatter).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from makeup.errors import TinyBeautyError
from makeup.io import write_text_atomic

FIDELITY_SEED = 950_000_000
AGREEMENT_SEED_OFFSET = 10_000_000  # the second draws' noise seeds: FIDELITY_SEED + this + the face's index
GOAL_DB = 33.0
GOAL_RECOVERY = 0.8  # share of each region's change the teacher must reproduce


class SeedPrior:
    """The look prior a tiny-ddpm teacher fits on a folder of seed pairs, scored alone (`teacher fidelity
    --seeds`): what the teacher's diffusion starts from, in seconds and with no teacher trained. Its figures
    are those of `teacher fidelity --prior-only` of a teacher trained on the same seeds with the same model
    settings (``model``: the profile's tiny-ddpm ``teacher: model:`` keys over the backend's defaults), so a
    look's seeds and a change to the prior can be judged before the minutes a teacher takes."""

    refiner = None

    def __init__(self, seeds, model: dict | None = None):
        from makeup.lookprior import LookPrior
        from teacher.backends import get_backend
        from teacher.train import load_seed_pairs, seed_lightness

        pairs, self.style = load_seed_pairs(seeds)
        self.seed_lightness = seed_lightness(pairs)
        cfg = {**get_backend("tiny-ddpm").defaults, **(model or {})}
        self.prior = LookPrior.fit([p.before for p in pairs], [p.after for p in pairs], [p.labels for p in pairs],
                                   radius=float(cfg["feather_radius"]), templates=tuple(cfg["templates"] or ()),
                                   region_models=bool(cfg.get("region_models")))
        self.config = {"size": int(pairs[0].before.shape[0])}

    def translate(self, faces, labels, seeds=None, steps=None, samples: int = 1,
                  prior_only: bool = True) -> list[np.ndarray]:
        """Each face with the prior painted on it, as a teacher pastes a zero residual (uint8)."""
        if not prior_only:
            raise TinyBeautyError("a look prior fit on seeds draws nothing: it is scored alone (--prior-only)")
        return [np.clip(np.round((np.asarray(f, np.float32) / 255.0 + self.prior.paint(f, lab)) * 255.0), 0,
                        255).astype(np.uint8) for f, lab in zip(faces, labels)]


def _seed_lightness(teacher) -> list | None:
    """The seeds' skin lightness a teacher knows: a seed folder's prior (`--seeds`), or a trained teacher's
    ``config.yaml`` (written since stop 31; None for an older teacher)."""
    return getattr(teacher, "seed_lightness", None) or (getattr(teacher, "config", None) or {}).get("seed_lightness")


def seed_tones(seed_lightness, pred: np.ndarray, src: np.ndarray, truth: np.ndarray, labels: np.ndarray) -> dict:
    """How the seeds' skin tones cover the faces scored (``makeup.region_models.skin_lightness``, CIELAB L):
    the seeds' own, the faces' spread, the shares of faces darker and lighter than every seed, and the skin's
    recovery on the faces inside the seeds' span and outside it (``pred``, ``src``, ``truth``: (N, H, W, 3)
    stacks, ``labels`` (N, H, W)). A foundation's lightness change depends on the face's tone: the demo's
    glamorous seeds spanned L 29-73, 42 % of the 40 fidelity faces lay outside it, and the prior's skin was 0.60
    inside and 0.44 outside (stop 31); picked across the tones since stop 33 (`render --pick tones`), they span
    18.5-84.8 and 2.5 % of the faces lie outside."""
    from makeup.metrics import look_fidelity
    from makeup.region_models import skin_lightness

    lo, hi = min(seed_lightness), max(seed_lightness)
    tone = np.array([np.nan if v is None else v for v in (skin_lightness(f, lab) for f, lab in zip(src, labels))])
    known = ~np.isnan(tone)
    out = {"seeds": [round(v, 1) for v in sorted(seed_lightness)], "faces": None,
           "darker_than_every_seed": None, "lighter_than_every_seed": None,
           "skin_recovery_inside": None, "skin_recovery_outside": None}
    if not known.any():
        return out
    out.update(faces={"min": round(float(np.nanmin(tone)), 1), "median": round(float(np.nanmedian(tone)), 1),
                      "max": round(float(np.nanmax(tone)), 1)},
               darker_than_every_seed=float(np.mean(tone[known] < lo)),
               lighter_than_every_seed=float(np.mean(tone[known] > hi)))
    inside = known & (tone >= lo) & (tone <= hi)
    for key, pick in (("skin_recovery_inside", inside), ("skin_recovery_outside", known & ~inside)):
        if pick.any():
            out[key] = look_fidelity(pred[pick], src[pick], truth[pick], labels[pick])["recovery"]["skin"]
    return out


def teacher_fidelity(teacher, style: str | None = None, count: int = 50, batch: int = 16, steps: int | None = None,
                     out_json: str | os.PathLike | None = None, grid: str | os.PathLike | None = None,
                     progress: bool = True, samples: int = 1, agreement: bool = False,
                     prior_only: bool = False) -> dict:
    from makeup.metrics import format_fidelity, look_fidelity, psnr_per_image, ssim_per_image
    from makeup.render import render_makeup
    from makeup.styles import load_style
    from makeup.synth import generate_face

    if count < 1:
        raise TinyBeautyError(f"--count must be >= 1, got {count}")
    if prior_only and agreement:
        raise TinyBeautyError("--agreement draws the teacher twice; its prior alone (--prior-only) draws nothing")
    look = load_style(style or teacher.style)
    size = int(teacher.config.get("size", 256))
    faces = [generate_face(FIDELITY_SEED + i, size) for i in range(count)]
    truth = [render_makeup(f.image, f.labels, look) for f in faces]

    def draw(offset: int, desc: str) -> np.ndarray:
        outs: list[np.ndarray] = []
        it = range(0, count, batch)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=desc, unit="batch")
        for k in it:
            chunk = faces[k:k + batch]
            outs += teacher.translate([f.image for f in chunk], [f.labels for f in chunk],
                                      seeds=[FIDELITY_SEED + offset + k + j for j in range(len(chunk))],
                                      steps=steps, samples=samples, prior_only=prior_only)
        return np.stack(outs)

    t0 = time.perf_counter()
    pred = draw(0, "fidelity")
    elapsed = time.perf_counter() - t0
    gt, src = np.stack(truth), np.stack([f.image for f in faces])
    report = {"style": look.name, "count": count, "samples": 0 if prior_only else samples, "prior_only": prior_only,
              "refiner": not prior_only and getattr(teacher, "refiner", None) is not None,
              "psnr": float(np.mean(psnr_per_image(pred, gt))), "ssim": float(np.mean(ssim_per_image(pred, gt))),
              "psnr_identity": float(np.mean(psnr_per_image(src, gt))), "goal_psnr": GOAL_DB,
              "pairs_per_second": round(count / elapsed, 4)}
    labels = np.stack([f.labels for f in faces])
    fid = look_fidelity(pred, src, gt, labels)
    report.update({"psnr_gain": fid["psnr_gain"], "recovery": fid["recovery"], "spill": fid["spill"],
                   "visible_spill": fid["visible_spill"], "goal_recovery": GOAL_RECOVERY})
    changed = [v for v in fid["recovery"].values() if v is not None]
    report["meets_goal"] = report["psnr"] >= GOAL_DB and all(v >= GOAL_RECOVERY for v in changed)
    if seeds := _seed_lightness(teacher):
        report["seed_tones"] = seed_tones(seeds, pred, src, gt, labels)
    if agreement:
        again = look_fidelity(draw(AGREEMENT_SEED_OFFSET, "agreement"), src, pred, labels)
        report["agreement"] = {"recovery": again["recovery"], "psnr_gain": again["psnr_gain"],
                               "student_ceiling": {k: None if v is None else 1 - (1 - v) / math.sqrt(2)
                                                   for k, v in again["recovery"].items()}}
    if out_json:
        write_text_atomic(out_json, json.dumps(report, indent=2) + "\n")
    if grid:
        from makeup.grid import heatmap, save_grid

        rows = [[src[i], pred[i], gt[i], heatmap(pred[i].astype(np.float32) - gt[i], 40.0)]
                for i in range(min(6, count))]
        who = "teacher's prior" if prior_only else "teacher"
        save_grid(Path(grid), rows, titles=["before", who, "renderer", f"|{who}-renderer|"], tile=128,
                  caption=f"{who} vs renderer, {count} held-out faces: {format_fidelity(fid)}")
    return report


def teacher_photo_fidelity(teacher, photo: np.ndarray, style: str | None = None, name: str = "photo",
                           steps: int | None = None, samples: int = 1, out_json: str | os.PathLike | None = None,
                           grid: str | os.PathLike | None = None, prior_only: bool = False) -> dict:
    """The teacher on a real photo vs the renderer's look on it (``makeup.render.photo_truth``): what the
    teacher can hand a student for a face like this one. Beside the student's figures on the same photo
    (`tinybeauty eval --photo`) it tells which of the two loses the look on real faces."""
    from makeup.metrics import format_fidelity, look_fidelity
    from makeup.render import photo_truth
    from makeup.styles import load_style

    look = load_style(style or teacher.style)
    crop, labels, truth = photo_truth(photo, look, int(teacher.config.get("size", 256)), name)
    after = teacher.translate([crop], [labels], seeds=[FIDELITY_SEED], steps=steps, samples=samples,
                              prior_only=prior_only)[0]
    fid = look_fidelity(after, crop, truth, labels)
    report = {"style": look.name, "photo": name, "samples": 0 if prior_only else samples, "prior_only": prior_only,
              "refiner": not prior_only and getattr(teacher, "refiner", None) is not None,
              **{k: fid[k] for k in ("recovery", "spill", "visible_spill", "psnr", "psnr_identity", "psnr_gain")}}
    if seeds := _seed_lightness(teacher):
        from makeup.region_models import skin_lightness

        tone = skin_lightness(crop, labels)
        report["seed_tones"] = {"seeds": [round(v, 1) for v in sorted(seeds)],
                                "photo": None if tone is None else round(tone, 1),
                                "within_seeds": None if tone is None else bool(min(seeds) <= tone <= max(seeds))}
    if out_json:
        write_text_atomic(out_json, json.dumps(report, indent=2) + "\n")
    if grid:
        from makeup.grid import save_grid

        who = "teacher's prior" if prior_only else "teacher"
        save_grid(Path(grid), [[crop, truth, after]], titles=["photo (aligned)", "renderer (truth)", who],
                  caption=f"{who} vs renderer on {name}: {format_fidelity(fid)}")
    return report
