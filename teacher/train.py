"""`teacher train`: fit a DDA backend on the seed pairs (lr 1e-4 Adam, EMA, AMP + accumulation on GPU).

TEACHER/ gets ``config.yaml`` (everything needed to rebuild and use the teacher), ``metrics.jsonl`` (one line
per epoch), ``dda_checkpoint_epoch_{N}.pt`` and ``sample_epoch_{N}.png`` (seed before | teacher after | seed
after, then held-out synthetic faces) every ``sample_every`` epochs, and the final teacher (``dda_final.pt``, or
``dda_final.safetensors`` with only the trained tensors for a backend on a pretrained base). ``resume`` picks up
the newest epoch checkpoint. wandb logs too when it is installed and ``wandb: true``. Data parallel under
``accelerate launch`` (see :func:`train_teacher`).
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import torch
import yaml

from makeup.config import StageSettings, check_keys, read_settings
from makeup.errors import TinyBeautyError
from makeup.io import atomic_path, write_text_atomic
from makeup.pairs import PairDataset
from makeup.region_models import skin_lightness
from makeup.runlog import MetricsLog

from .backends import DEFAULT_BACKEND, get_backend
from .formulation import make_condition, prior_field
from .inference import CONFIG, translate, write_final
from .refine import REFINER, REFINER_DEFAULTS, load_refiner, train_refiner

log = logging.getLogger("tinybeauty")

AUGMENT_DEFAULTS: dict = {"flip": True, "rotate_deg": 4.0, "scale": 0.04, "translate": 0.03}


@dataclass(frozen=True)
class TeacherSettings(StageSettings):
    """What `teacher train` runs with: the profile's ``teacher:`` section for the chosen backend + CLI overrides."""

    STAGE: ClassVar[str] = "teacher"
    backend: str = DEFAULT_BACKEND
    epochs: int = 500             # one epoch = one pass over the seed pairs
    batch_size: int = 5
    grad_accum: int = 1
    lr: float = 1.0e-4
    sample_every: int = 50
    held_out_faces: int = 3       # synthetic faces (never seeds) shown in the sample grids
    sample_steps: int | None = None  # sampler steps for the grids (None: the model's sample_steps)
    augment: dict = field(default_factory=lambda: dict(AUGMENT_DEFAULTS))
    seed: int = 0
    device: str = "auto"
    mixed_precision: str = "fp16"  # on CUDA: fp16 autocast + loss scaling | bf16 autocast | no
    wandb: bool = False
    model: dict = field(default_factory=dict)  # backend config (teacher/backends/<backend>.py DEFAULTS)
    # the full-resolution detail refiner (teacher/refine.py REFINER_DEFAULTS); steps 0: none (bicubic paste)
    refiner: dict = field(default_factory=dict)

    def __post_init__(self):
        check_keys(self.augment, AUGMENT_DEFAULTS, "teacher augment")
        check_keys(self.refiner, REFINER_DEFAULTS, "teacher refiner")
        check_keys(self.model, get_backend(self.backend).defaults, f"teacher model ({self.backend})")
        if self.mixed_precision not in ("fp16", "bf16", "no"):
            raise TinyBeautyError(f"teacher setting 'mixed_precision': fp16, bf16 or no, got {self.mixed_precision!r}")


# Settings a --resume may change: they do not touch the weights of the epochs already trained.
RESUME_MAY_CHANGE = ("epochs", "device", "wandb", "sample_every", "held_out_faces", "sample_steps")
TRAIN_DEFAULTS: dict = TeacherSettings().to_dict()  # every key, for reference
HELD_OUT_SEED = 900_000_000  # synthetic face seeds for held-out grids/fidelity (far from synth-faces seeds)
CKPT_RE = re.compile(r"dda_checkpoint_epoch_(\d+)\.pt$")


@dataclass
class SeedPair:
    id: str
    before: np.ndarray
    after: np.ndarray
    labels: np.ndarray


def seed_lightness(pairs) -> list[float]:
    """The seeds' skin tones (``makeup.region_models.skin_lightness`` of each before photo; seeds without skin
    left out): a trained teacher keeps them in its config and `teacher fidelity` reports how they cover the faces
    it scores."""
    return [v for v in (skin_lightness(p.before, p.labels) for p in pairs) if v is not None]


def load_seed_pairs(root: str | os.PathLike) -> tuple[list[SeedPair], str]:
    """All pairs of a seed dataset and its (most common) style name; clear errors for bad folders."""
    ds = PairDataset(root)
    if len(ds) == 0:
        raise TinyBeautyError(f"--seeds {ds.root}: the manifest lists no pairs")
    pairs = [SeedPair(p.id, p.source, p.target, p.mask) for p in ds]
    sizes = {p.before.shape for p in pairs}
    if len(sizes) != 1 or pairs[0].before.shape[0] != pairs[0].before.shape[1]:
        raise TinyBeautyError(f"--seeds {ds.root}: seed pairs must be square crops of one size, got {sorted(sizes)}")
    style = Counter(r["style"] for r in ds.records).most_common(1)[0][0]
    return pairs, style


def augment_pair(p: SeedPair, rng: np.random.Generator, aug: dict, field: np.ndarray | None = None) -> tuple:
    """The same flip + small affine on before, after and the label map (nearest, so labels stay labels):
    (before, after, labels); with ``field`` (C, S, S, the pair's prior field laid once: ``prior_field``) also
    that, bilinear: (before, after, labels, field). The prior moves with the face, so the training loop need not
    lay the templates and region models again on every augmented copy (~40 ms a face at 256 px)."""
    arrays = [p.before, p.after, p.labels] + ([] if field is None else [np.moveaxis(field, 0, -1)])
    if aug.get("flip") and rng.random() < 0.5:
        arrays = [a[:, ::-1] for a in arrays]
    size = p.before.shape[0]
    ang = rng.uniform(-1, 1) * float(aug.get("rotate_deg", 0))
    scl = 1 + rng.uniform(-1, 1) * float(aug.get("scale", 0))
    shift = rng.uniform(-1, 1, size=2) * float(aug.get("translate", 0)) * size
    if ang != 0 or scl != 1 or shift.any():
        m = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), ang, scl)
        m[:, 2] += shift
        flags = [cv2.INTER_LINEAR, cv2.INTER_LINEAR, cv2.INTER_NEAREST, cv2.INTER_LINEAR]
        arrays = [cv2.warpAffine(np.ascontiguousarray(a), m, (size, size), flags=f, borderMode=cv2.BORDER_REFLECT)
                  for a, f in zip(arrays, flags)]
    out = [np.ascontiguousarray(a) for a in arrays]
    if field is not None:
        out[3] = np.ascontiguousarray(np.moveaxis(out[3].reshape(size, size, -1), -1, 0), dtype=np.float32)
    return tuple(out)


def make_batch(items, res: int, radius: float, device, templates=None, models=None) -> dict:
    """Training tensors of (before, after, labels) items at the working resolution; ``field`` when the prior
    has feature templates or region models (an item (before, after, labels, field) brings its full-resolution
    field already laid: :func:`augment_pair`)."""
    conds = [make_condition(b, lab, res, radius, templates, models, field=rest[0] if rest else None)
             for b, _, lab, *rest in items]
    targets = [make_condition(a, lab, res, radius).source for _, a, lab, *_ in items]
    batch = {"source": torch.stack([c.source for c in conds]).to(device),
             "masks": torch.stack([c.masks for c in conds]).to(device),
             "target": torch.stack(targets).to(device)}
    if conds and conds[0].field is not None:
        batch["field"] = torch.stack([c.field for c in conds]).to(device)
    return batch


def region_energy(pairs: list[SeedPair]) -> float:
    """Mean |after - before| (0..1) inside the makeup regions: the quality gate's 'makeup present' reference."""
    vals = [np.abs(p.after.astype(np.float32) - p.before)[p.labels > 0].mean() / 255.0 for p in pairs]
    return float(np.mean(vals))


def _held_out_faces(count: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if count <= 0:
        return []
    try:
        from makeup.synth import generate_face
    except ImportError:  # synthetic faces not available: grids show the seeds only
        return []
    faces = [generate_face(HELD_OUT_SEED + i, size) for i in range(count)]
    return [(f.image, f.labels) for f in faces]


def save_sample_grid(path: Path, backend, pairs: list[SeedPair], held_out, steps=None, refiner=None) -> None:
    from makeup.grid import save_grid
    from makeup.regions import overlay

    faces = [p.before for p in pairs] + [f for f, _ in held_out]
    labels = [p.labels for p in pairs] + [lab for _, lab in held_out]
    outs = translate(backend, faces, labels, seeds=list(range(len(faces))), steps=steps, refiner=refiner)
    rows = [[p.before, outs[i], p.after] for i, p in enumerate(pairs)]
    rows += [[f, outs[len(pairs) + i], overlay(f, lab)] for i, (f, lab) in enumerate(held_out)]
    save_grid(path, rows, titles=["before", "teacher after", "seed after / regions"], tile=128)


def _latest_checkpoint(out: Path) -> tuple[int, Path] | None:
    found = [(int(m.group(1)), p) for p in out.glob("dda_checkpoint_epoch_*.pt") if (m := CKPT_RE.search(p.name))]
    return max(found) if found else None


def _save(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def teacher_section(section: dict, backend: str | None = None) -> dict:
    """A profile's ``teacher:`` section for ``backend`` (default: the section's own ``backend``).

    A subsection named like a backend (``sd15-lora: {epochs, lr, ..., model: {...}}``) holds that backend's
    overrides: its keys replace the section's and its ``model`` replaces the section's ``model``. The
    section's ``model`` belongs to the section's default backend and is never handed to another one."""
    from .backends import available_backends

    names = set(available_backends())
    default = section.get("backend") or DEFAULT_BACKEND
    name = backend or default
    cfg = {k: v for k, v in section.items() if k not in names}
    own = section.get(name)
    if name != default:
        cfg["model"] = {}
    if isinstance(own, dict):
        cfg = {**cfg, **{k: v for k, v in own.items() if k != "model"}, "model": dict(own.get("model") or {})}
    cfg["backend"] = name
    return cfg


def teacher_settings(section: dict | None = None, backend: str | None = None, overrides: dict | None = None,
                     profile: str | None = None) -> TeacherSettings:
    """The profile's ``teacher:`` section (for ``backend``, see :func:`teacher_section`) + CLI overrides."""
    return TeacherSettings.build(teacher_section(dict(section or {}), backend), overrides, profile=profile)


def _average_gradients(params: list, world: int) -> None:
    """Data parallel by hand: average the trainable parameters' gradients over the launched processes (one
    flat all-reduce; a backend stays a plain object, no DDP wrapper reaching into it)."""
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(g).to(g.dtype)
        offset += n


def _epoch_batches(order: np.ndarray, bs: int, rank: int, world: int) -> list[list[int]]:
    """This process's batches of one epoch. One process: consecutive slices of ``order``. Several: every
    step takes ``bs x world`` items (wrapping around, so all processes make the same number of steps) and
    process ``r`` gets slice ``r`` of them."""
    n = len(order)
    if world == 1:
        return [list(order[start:start + bs]) for start in range(0, n, bs)]
    steps = -(-n // (bs * world))
    return [[int(order[(s * bs * world + rank * bs + j) % n]) for j in range(bs)] for s in range(steps)]


def _check_resume(out: Path, settings: TeacherSettings) -> None:
    """A --resume continues the run recorded in ``out/settings.yaml``, never another one."""
    recorded = read_settings(out)
    if recorded is None:
        return
    diff = settings.differences(recorded["settings"], ignore=RESUME_MAY_CHANGE)
    if diff:
        raise TinyBeautyError(f"--resume: {out} was trained with other settings ({', '.join(diff)} differ from "
                              f"{out / 'settings.yaml'}); use the same settings or train into a new --out")


def _rng_state(gen: torch.Generator) -> dict:
    """Where the random streams stand (noise generator, global torch RNG for dropout): a resume continues them."""
    state = {"generator": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(gen: torch.Generator, state: dict) -> None:
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _refiner_for(out: Path, pairs, backend, cfg: TeacherSettings, resumed: bool, progress: bool, teacher_cfg: dict,
                 device):
    """The detail refiner of this teacher (trained on the seed pairs before the diffusion model; a resumed run
    keeps the one it trained), or None where the settings ask for none or the backend already samples at the
    crop's resolution. What it is goes into ``teacher_cfg["refiner"]`` (config.yaml)."""
    settings = {**REFINER_DEFAULTS, **cfg.refiner}
    res, size = int(backend.config["resolution"]), int(pairs[0].before.shape[0])
    path = out / REFINER
    if int(settings["steps"]) <= 0 or res >= size:
        path.unlink(missing_ok=True)  # a folder retrained without one must not paste with the old one
        teacher_cfg["refiner"] = None
        return None
    if resumed and path.is_file():
        refiner = load_refiner(path)
        teacher_cfg["refiner"] = {**refiner.settings, "file": REFINER}
        return refiner
    refiner, record = train_refiner(pairs, res, float(backend.config["feather_radius"]), settings, cfg.augment,
                                    progress=progress, device=device, prior=backend.paste_terms())
    refiner.save(path)
    log.info("detail refiner: %d steps in %.0f s (loss %.4f) -> %s", record["steps"], record["seconds"],
             record["final_loss"], path)
    teacher_cfg["refiner"] = {**settings, "file": REFINER, **{f"train_{k}": v for k, v in record.items()}}
    return refiner


def train_teacher(seeds: str | os.PathLike, out: str | os.PathLike, config: TeacherSettings | dict,
                  resume: bool = False, progress: bool = True) -> Path:
    """Train and return the path of the final teacher file (``dda_final.pt`` or ``dda_final.safetensors``).

    ``config``: :class:`TeacherSettings` (a mapping is built into one; unknown keys are an error). They are
    saved as ``settings.yaml``; a ``resume`` whose settings differ (beyond :data:`RESUME_MAY_CHANGE`) is
    refused, and it continues the random streams where the checkpoint left them, so a killed and resumed run
    ends with the weights an uninterrupted one would have.

    Under ``accelerate launch`` (``WORLD_SIZE`` > 1) every process trains on its slice of each step's seed
    pairs and gradients are averaged; process 0 writes the folder."""
    from makeup.runtime import pick_device, seed_everything

    from .amplify import launch_state

    cfg = TeacherSettings.of(config)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TinyBeautyError(f"--out {out}: exists and is not a folder")
    pairs, style = load_seed_pairs(seeds)
    state = launch_state()
    rank, world = (state.process_index, state.num_processes) if state else (0, 1)
    main = rank == 0
    device = state.device if state and cfg.device == "auto" else pick_device(cfg.device)
    seed_everything(cfg.seed)
    backend = get_backend(cfg.backend).from_config(dict(cfg.model))
    backend.to(device)
    backend.prepare(pairs, style)  # seed statistics (region prior, residual scale, ...) into backend.config
    res = int(backend.config["resolution"])
    templates = backend.head.templates()  # the prior's feature templates (None: a latent teacher, or none asked)
    models = backend.head.models()  # the skin's and brows' models (None: a latent teacher, or none kept)
    backend.enable_ema()
    params = backend.trainable()
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    amp = cfg.mixed_precision
    use_amp = device.type == "cuda" and amp in ("fp16", "bf16")
    amp_dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp == "fp16")
    start_epoch = 0
    latest = _latest_checkpoint(out) if resume else None
    if resume:
        _check_resume(out, cfg)
    if latest:
        ckpt = torch.load(latest[1], map_location="cpu", weights_only=False)
        base = (ckpt.get("teacher_config") or {}).get("base")
        if base and backend.base_info() and base.get("fingerprint") != backend.base_info().get("fingerprint"):
            raise TinyBeautyError(f"--resume: {latest[1].name} was trained on another base ({base.get('path')}); "
                                  "pass --sd-path of that base or train into a new --out")
        backend.load_state_dict(ckpt["weights"])
        backend.to(device)
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch = int(ckpt["epoch"])
        log.info("resuming from %s", latest[1])
    teacher_cfg = {"backend": backend.name, "style": style, "seeds": str(seeds), "seed_count": len(pairs),
                   "size": int(pairs[0].before.shape[0]), "energy_ref": region_energy(pairs),
                   "seed_lightness": [round(v, 2) for v in seed_lightness(pairs)],
                   "train": {k: v for k, v in cfg.to_dict().items() if k != "model"}, "model": backend.config}
    if backend.base_info() is not None:
        teacher_cfg["base"] = backend.base_info()
    refiner = None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        refiner = _refiner_for(out, pairs, backend, cfg, latest is not None, progress, teacher_cfg, device)
        write_text_atomic(out / CONFIG, yaml.safe_dump(teacher_cfg, sort_keys=False))
        cfg.save(out, seeds=str(seeds), resumed_from_epoch=start_epoch)
        logger = MetricsLog(out / "metrics.jsonl", cfg.wandb, cfg.to_dict(), project="tinybeauty-teacher",
                            fresh=start_epoch == 0)
        held_out = _held_out_faces(cfg.held_out_faces, pairs[0].before.shape[0])
    radius = float(backend.config["feather_radius"])
    # each seed's prior field laid once at full resolution; augment_pair moves it with the face
    fields = [prior_field(p.before.astype(np.float32) / 255.0, p.labels, templates, models) for p in pairs]
    bs, accum = max(1, cfg.batch_size), max(1, cfg.grad_accum)
    epochs = cfg.epochs
    gen = torch.Generator(device=device).manual_seed(cfg.seed + start_epoch + 1_000_003 * rank)
    if latest and (ckpt.get("rng") or {}).get(rank) is not None:
        _restore_rng(gen, ckpt["rng"][rank])

    def checkpoint(epoch: int) -> dict:
        return {"backend": backend.name, "model_config": backend.config, "weights": backend.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                "teacher_config": teacher_cfg, "rng": {rank: _rng_state(gen)}}

    it = range(start_epoch, epochs)
    if progress and main:
        from tqdm import tqdm

        it = tqdm(it, desc="teacher train", unit="epoch", initial=start_epoch, total=epochs)
    t0 = time.perf_counter()
    for epoch in it:
        backend.train()
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(len(pairs))
        if world > 1:  # the order is shared; each process augments its own items
            rng = np.random.default_rng([cfg.seed, epoch, rank])
        batches = _epoch_batches(order, bs, rank, world)
        parts_sum: Counter = Counter()
        n_batches = 0
        optimizer.zero_grad(set_to_none=True)
        for b, idx in enumerate(batches):
            items = [augment_pair(pairs[i], rng, cfg.augment, fields[i]) for i in idx]
            batch = make_batch(items, res, radius, device, templates, models)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                loss, parts = backend.training_loss(batch, generator=gen)
            scaler.scale(loss / accum).backward()
            last = b == len(batches) - 1
            if (b + 1) % accum == 0 or last:
                if world > 1:
                    _average_gradients(params, world)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                backend.after_step()
            parts_sum.update(parts)
            n_batches += 1
        done = epoch + 1
        if not main:
            continue
        rec = {"epoch": done, **{k: v / n_batches for k, v in parts_sum.items()},
               "alpha": float(backend.head.alpha.detach()),
               "region_weights": [round(float(w), 4) for w in backend.head.fgmm.region_weights.detach()],
               "elapsed_s": round(time.perf_counter() - t0, 2)}
        logger.write(rec)
        if progress:
            it.set_postfix(loss=f"{rec['loss']:.4f}")
        if done % cfg.sample_every == 0 or done == epochs:
            _save(out / f"dda_checkpoint_epoch_{done}.pt", checkpoint(done))
            with backend.ema_weights():
                save_sample_grid(out / f"sample_epoch_{done}.png", backend, pairs, held_out, cfg.sample_steps,
                                 refiner)
    final = write_final(out, backend, teacher_cfg, epochs) if main else None
    if main:
        logger.close()
    if state:
        state.wait_for_everyone()
    return final or out
