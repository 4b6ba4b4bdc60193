"""`amplify`: a trained teacher paints its look onto many faces -> a pair dataset (makeup.pairs layout).

Determinism and resumability: pair ``i`` (id ``amp_000i``) belongs to the fixed batch ``i // batch`` and
draws its face and its diffusion noise from its own seeds, ``hash(seed, i, attempt)``. A batch is always
computed whole, even when some of its pairs are already on disk, so a rerun after a kill sees exactly the
same batch composition and reproduces every pair bit-for-bit on the same machine; only the missing pairs are
written. Scale-out: batch ``k`` belongs to process ``k % num_processes`` (accelerate's ``PartialState``),
so any number of processes writes the same dataset one process would.

Quality gate: a candidate whose structure outside the feature regions (eyes, lips, brows) drifts (SSIM of
before vs after below ``min_ssim``) or whose makeup is missing (mean |after - before| inside the regions
below ``min_energy_ratio`` x the seed pairs' value) is replaced by a new face (attempt + 1); after
``max_attempts`` the last candidate is kept and marked ``"gate": "forced"``. Scores go into the manifest.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from makeup.config import SETTINGS_FILE, StageSettings, read_settings
from makeup.errors import NoFaceError, TinyBeautyError
from makeup.io import list_images, write_text_atomic
from makeup.pairs import MANIFEST, SUBDIRS, PairWriter, read_manifest
from makeup.regions import BROWS, EYES, LIPS

log = logging.getLogger("tinybeauty")

@dataclass(frozen=True)
class AmplifySettings(StageSettings):
    """What `amplify` runs with: the profile's ``amplify:`` section (its teacher backend's subsection winning)
    + CLI overrides."""

    STAGE: ClassVar[str] = "amplify"
    batch: int = 16
    seed: int = 0
    steps: int | None = None      # sampler steps (None: the teacher's sample_steps)
    samples: int = 1              # draws per face whose mean is pasted (teacher.inference.translate)
    parser: str = "auto"          # region parser for a folder of photos
    min_ssim: float = 0.90
    min_energy_ratio: float = 0.25
    max_attempts: int = 3
    visualize: int = 8            # pairs in samples_visualization.png
    device: str = "auto"


AMPLIFY_DEFAULTS: dict = AmplifySettings().to_dict()  # every key, for reference
# Settings a rerun into the same folder may change: they do not change which pairs are written.
RERUN_MAY_CHANGE = ("visualize", "device")
FEATURES = (EYES, LIPS, BROWS)


def amplify_section(section: dict, backend: str) -> dict:
    """A profile's ``amplify:`` section for a teacher of ``backend``: a subsection named like the backend
    (``sd15-lora: {batch: 8, steps: 20}``) overrides the keys it sets."""
    from .backends import available_backends

    names = set(available_backends())
    cfg = {k: v for k, v in section.items() if k not in names}
    own = section.get(backend)
    return {**cfg, **own} if isinstance(own, dict) else cfg


def amplify_settings(section: dict | None, backend: str, overrides: dict | None = None,
                     profile: str | None = None) -> AmplifySettings:
    """The profile's ``amplify:`` section for a teacher of ``backend`` + CLI overrides."""
    return AmplifySettings.build(amplify_section(dict(section or {}), backend), overrides, profile=profile)


def derived_seed(kind: str, seed: int, index: int, attempt: int) -> int:
    """A 63-bit seed that depends only on (kind, seed, pair index, attempt)."""
    digest = hashlib.sha256(f"{kind}:{seed}:{index}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def pair_id(index: int) -> str:
    return f"amp_{index:06d}"


# --- faces --------------------------------------------------------------------------------------------
class SyntheticFaces:
    """``makeup.synth.generate_face`` with a per-(pair, attempt) seed."""

    def __init__(self, size: int, seed: int):
        from makeup.synth import generate_face

        self._generate, self.size, self.seed = generate_face, size, seed
        self.skipped: list[str] = []

    def get(self, index: int, attempt: int) -> tuple[np.ndarray, np.ndarray, str]:
        s = derived_seed("face", self.seed, index, attempt)
        face = self._generate(s, self.size)
        return face.image, face.labels, f"synthetic:{s}"


@dataclass
class FolderFaces:
    """Photos of a folder, aligned and parsed in sorted order (skipping those without a usable face) until
    ``needed`` are ready; pair ``i`` at attempt ``a`` uses ready face ``(i + 7919 a) mod n``."""

    folder: Path
    size: int
    needed: int
    parser: str = "auto"
    ready: list[tuple[np.ndarray, np.ndarray, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def prepare(self, progress: bool = True) -> None:
        from makeup.parsing import prepare_face

        paths = list_images(self.folder)
        if not paths:
            raise TinyBeautyError(f"--faces {self.folder}: no images in the folder")
        it = paths
        if progress:
            from tqdm import tqdm

            it = tqdm(paths, desc="prepare faces", unit="face")
        for p in it:
            if len(self.ready) >= self.needed:
                break
            try:
                face = prepare_face(p, self.size, self.parser)
            except (NoFaceError, TinyBeautyError, OSError, ValueError) as exc:
                self.skipped.append(f"{p.name}: {exc}")
                continue
            self.ready.append((face.crop, face.labels, p.name))
        if not self.ready:
            raise TinyBeautyError(f"--faces {self.folder}: no usable face in {len(paths)} images "
                                  f"(first problem: {self.skipped[0] if self.skipped else 'none'})")

    def get(self, index: int, attempt: int) -> tuple[np.ndarray, np.ndarray, str]:
        return self.ready[(index + 7919 * attempt) % len(self.ready)]


# --- quality gate -------------------------------------------------------------------------------------
def pair_scores(before: np.ndarray, after: np.ndarray, labels: np.ndarray) -> dict:
    """ssim_outside: SSIM (luma) of before vs after averaged outside eyes/lips/brows; energy: mean
    |after - before| (0..1) inside all makeup regions."""
    from skimage.metrics import structural_similarity

    luma = lambda a: a.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    _, smap = structural_similarity(luma(before), luma(after), data_range=255.0, full=True, win_size=7)
    outside = ~np.isin(labels, FEATURES)
    ssim_out = float(smap[outside].mean()) if outside.any() else 1.0
    inside = labels > 0
    energy = float(np.abs(after.astype(np.float32) - before)[inside].mean() / 255.0) if inside.any() else 0.0
    return {"ssim_outside": round(ssim_out, 6), "energy": round(energy, 6)}


def passes(scores: dict, cfg: AmplifySettings, energy_ref: float) -> bool:
    return scores["ssim_outside"] >= cfg.min_ssim and scores["energy"] >= cfg.min_energy_ratio * energy_ref


# --- the run ------------------------------------------------------------------------------------------
def _process_batch(teacher, faces, indices: list[int], cfg: AmplifySettings,
                   energy_ref: float) -> dict[int, tuple]:
    """Results of one fixed batch: index -> (before, after, labels, record extras)."""
    results: dict[int, tuple] = {}
    pending = list(indices)
    for attempt in range(cfg.max_attempts):
        drawn = [faces.get(i, attempt) for i in pending]
        noise = [derived_seed("noise", cfg.seed, i, attempt) for i in pending]
        outs = teacher.translate([d[0] for d in drawn], [d[1] for d in drawn], noise, steps=cfg.steps,
                                 samples=cfg.samples)
        rejected = []
        last = attempt == cfg.max_attempts - 1
        for i, (img, lab, name), out, ns in zip(pending, drawn, outs, noise):
            scores = pair_scores(img, out, lab)
            ok = passes(scores, cfg, energy_ref)
            if ok or last:
                results[i] = (img, out, lab, {**scores, "attempt": attempt, "gate": "pass" if ok else "forced",
                                              "face": name, "noise_seed": ns})
            else:
                rejected.append(i)
        pending = rejected
        if not pending:
            break
    return results


def launched_processes() -> int:
    """Processes started by `accelerate launch` (or torchrun-style env vars); 1 when run plainly."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launch_state():
    """accelerate's PartialState when launched on several processes (its device is this process's GPU)."""
    if launched_processes() <= 1:
        return None
    import torch
    from accelerate import PartialState

    # Without cpu=True accelerate ignores the launch env vars on a machine with no GPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes != launched_processes():
        raise TinyBeautyError(f"accelerate sees {state.num_processes} processes but WORLD_SIZE is "
                              f"{launched_processes()}: refusing to write overlapping shards")
    return state


def teacher_fingerprint(teacher) -> str:
    """sha256 of what decides a teacher's pairs: its weights (``inference_state``, the detail refiner's when
    it is used) and its ``config.yaml``."""
    import torch

    h = hashlib.sha256(json.dumps(teacher.config, sort_keys=True, default=str).encode())
    state = dict(teacher.backend.inference_state())
    if getattr(teacher, "refiner", None) is not None:
        state.update(teacher.refiner.fingerprint_tensors())
    for key in sorted(state):
        t = state[key]
        h.update(key.encode())
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(t).encode())
    return h.hexdigest()


# What a pair folder holds (removed by --force-new, nothing else).
PAIR_FILES = (MANIFEST, *SUBDIRS, "quality.json", "samples_visualization.png", "skipped.json", SETTINGS_FILE)


def start_over(out: Path) -> None:
    """``--force-new``: remove the pairs (and records) of an earlier run from ``out``; nothing else there."""
    import shutil

    for name in PAIR_FILES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def _same_run_or_refuse(out: Path, cfg: AmplifySettings, inputs: dict) -> None:
    """Pairs already in ``out`` must come from this very run: same settings, same teacher, same faces."""
    existing = len(read_manifest(out)) if (out / MANIFEST).exists() else 0
    if existing == 0:
        return
    recorded = read_settings(out)
    how = "rerun the same command, pass --force-new to start over, or use a new --out"
    if recorded is None:
        raise TinyBeautyError(f"--out {out}: holds {existing} pairs but no {SETTINGS_FILE} saying how they were "
                              f"made; {how}")
    diff = cfg.differences(recorded["settings"], ignore=RERUN_MAY_CHANGE)
    before = recorded.get("inputs") or {}
    keys = ["teacher", "faces", "upscaler"] + (["count"] if inputs["faces"] != "synthetic" else [])
    diff += [k for k in keys if before.get(k) != inputs.get(k)]
    if diff:
        raise TinyBeautyError(f"--out {out}: its {existing} pairs were made with another {', '.join(diff)} "
                              f"(see {out / SETTINGS_FILE}); {how}")


def amplify(teacher, faces_spec: str, count: int, out: str | os.PathLike,
            config: AmplifySettings | dict | None = None, progress: bool = True, force_new: bool = False) -> dict:
    """Write ``count`` pairs to ``out``; returns the quality report (also ``out/quality.json``).

    ``config``: :class:`AmplifySettings` (a mapping is built into one). ``out/settings.yaml`` records them with
    the teacher's fingerprint and the faces; a rerun into a folder whose pairs were made otherwise is refused
    (one line) unless ``force_new``, which removes the earlier pairs first. A rerun of the same run resumes, and
    a synthetic-faces run may grow its ``count``."""
    cfg = AmplifySettings.of(config)
    if count < 1:
        raise TinyBeautyError(f"--count must be >= 1, got {count}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TinyBeautyError(f"--out {out}: exists and is not a folder")
    batch = max(1, cfg.batch)
    size = int(teacher.config.get("size", 256))
    state = launch_state()
    rank, world = (state.process_index, state.num_processes) if state else (0, 1)
    upscaler = getattr(teacher.upscaler, "path", None) if teacher.upscaler is not None else None
    inputs = {"teacher": teacher_fingerprint(teacher), "teacher_style": teacher.style, "faces": faces_spec,
              "count": count, "upscaler": None if upscaler is None else str(upscaler)}
    if force_new and rank == 0:
        start_over(out)
    if state:
        state.wait_for_everyone()
    _same_run_or_refuse(out, cfg, inputs)  # every process, so all of them refuse alike
    if faces_spec == "synthetic":
        faces = SyntheticFaces(size, cfg.seed)
    else:
        folder = Path(faces_spec)
        if not folder.is_dir():
            raise TinyBeautyError(f"--faces {folder}: not a folder of face photos (or use --faces synthetic)")
        faces = FolderFaces(folder, size, count, cfg.parser)
        faces.prepare(progress and rank == 0)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out, **inputs)
    writer = PairWriter(out)
    start_count = len(writer)
    energy_ref = float(teacher.config.get("energy_ref", 0.0))
    batches = [list(range(k, min(k + batch, count))) for k in range(0, count, batch)]
    mine = [b for k, b in enumerate(batches) if k % world == rank and any(pair_id(i) not in writer for i in b)]
    t0 = time.perf_counter()
    it = mine
    if progress:
        from tqdm import tqdm

        it = tqdm(mine, desc=f"amplify[{rank}/{world}]" if world > 1 else "amplify", unit="batch")
    for b in it:
        results = _process_batch(teacher, faces, b, cfg, energy_ref)
        for i in b:
            if pair_id(i) in writer:
                continue
            before, after, labels, extra = results[i]
            writer.write(pair_id(i), before, after, labels, style=teacher.style, origin="amplify", **extra)
    if state:
        state.wait_for_everyone()
    elapsed = time.perf_counter() - t0
    report = {}
    if rank == 0:
        writer.refresh()
        report = write_report(Path(out), count, teacher.style, (len(writer) - start_count) / max(elapsed, 1e-9),
                              faces.skipped, cfg.visualize)
    if state:
        state.wait_for_everyone()
    return report


def write_report(out: Path, count: int, style: str, pairs_per_second: float, skipped: list[str],
                 visualize: int) -> dict:
    """quality.json + samples_visualization.png (+ skipped.json when faces were skipped)."""
    from makeup.grid import heatmap, save_grid
    from makeup.io import load_image, load_label_map
    from makeup.metrics import load_lpips, psnr
    from makeup.regions import overlay

    records = sorted((r for r in read_manifest(out) if r.get("origin") == "amplify"), key=lambda r: r["id"])
    if len(records) != count:
        raise TinyBeautyError(f"{out}: expected {count} amplified pairs, found {len(records)} "
                              "(rerun the same command to finish)")
    attempts = sum(int(r.get("attempt", 0)) for r in records)
    rows, psnrs = [], []
    lp = load_lpips()
    lp_vals = []
    for k, r in enumerate(records):  # every pair: the report's means cover the whole dataset
        src, tgt = load_image(out / r["source"]), load_image(out / r["target"])
        psnrs.append(psnr(tgt, src))
        if k < visualize:
            lab = load_label_map(out / r["mask"])
            rows.append([src, tgt, heatmap(tgt.astype(np.float32) - src), overlay(src, lab)])
        if lp is not None:
            import torch

            t = lambda a: torch.from_numpy(a.transpose(2, 0, 1)[None].astype(np.float32) / 255)  # noqa: E731
            lp_vals.append(lp(t(tgt), t(src)))
    if rows:
        save_grid(out / "samples_visualization.png", rows,
                  titles=["before", "teacher after", "|residual|", "regions"], tile=128)
    report = {
        "count": len(records), "style": style,
        "ssim": float(np.mean([r["ssim_outside"] for r in records])),  # before vs after, outside eyes/lips/brows
        "psnr": float(np.mean(psnrs)),  # after vs before over every pair (how much the makeup changes)
        "lpips": float(np.mean(lp_vals)) if lp_vals else None,
        "rejection_rate": attempts / (attempts + len(records)),
        "forced": sum(r.get("gate") == "forced" for r in records),
        "pairs_per_second": round(pairs_per_second, 4),
        "skipped_faces": len(skipped),
    }
    if skipped:
        write_text_atomic(out / "skipped.json", json.dumps(skipped, indent=1) + "\n")
        for line in skipped:
            log.warning("skipped face %s", line)
    write_text_atomic(out / "quality.json", json.dumps(report, indent=2) + "\n")
    return report
