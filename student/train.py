"""Student trainer: float epochs, then PT2E QAT epochs; validation, checkpoints, sample grids, metrics.

OUT/tinybeauty_best_loss.pt   lowest val loss          OUT/metrics.jsonl        one record per epoch + events
OUT/tinybeauty_best_look.pt   best look score          OUT/samples_epoch_N.png  source | prediction | target | |residual|
                              (``makeup.metrics.look_score``: worst region recovery less spill; whole-image PSNR
                              cannot see a look that skips the lips)
OUT/tinybeauty_final.pt       last epoch (QAT when qat_epochs > 0; this is what export converts)
OUT/tinybeauty_last.pt        last epoch + optimizer/scheduler state (``--resume`` continues from it)
OUT/summary.json              params, MACs, float vs QAT val PSNR and look fidelity, wall time
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from makeup.config import StageSettings, check_keys, read_settings
from makeup.errors import TinyBeautyError
from makeup.grid import heatmap, save_grid
from makeup.io import write_text_atomic
from makeup.metrics import LookFidelity, format_fidelity, look_score, ssim_per_image
from makeup.pairs import PairDataset, PairTorchDataset, split_ids
from makeup.runlog import MetricsLog
from makeup.runtime import pick_device, seed_everything

from .checkpoint import load_student, save_checkpoint
from .losses import LossWeights, StudentLoss
from .model import StudentConfig, build_model, count_macs, count_params, model_input, region_channels
from .qat import float_state_from_prepared, prepare_qat, restore_qat, set_qat_mode

log = logging.getLogger("tinybeauty")

@dataclass(frozen=True)
class StudentSettings(StageSettings):
    """What `student train` runs with: the paper schedule here, the profile's ``student:`` section
    (configs/<profile>.yaml) over it, CLI overrides over that."""

    STAGE: ClassVar[str] = "student"
    model: dict = field(default_factory=dict)  # StudentConfig overrides on top of student.model.DEFAULT_CONFIG
    epochs: int = 50             # float epochs
    qat_epochs: int = 5          # PT2E QAT epochs after the float warm-up (0: float only)
    batch_size: int = 32
    lr: float = 2e-4
    qat_lr: float = 5e-5
    lr_schedule: str = "plateau"  # float phase: "plateau" (ReduceLROnPlateau on val loss) or "cosine"
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    train_crop: int | None = None  # random square crop side for training (None: whole images); the net is convolutional
    crop_focus: float = 0.75     # share of crops centred on a pixel of a makeup region (eyes, lips, skin, brows)
    prior_pairs: int = 64        # model prior_input: the look prior is fit on this many training pairs
    photo_augment: dict = field(default_factory=dict)  # makeup.pairs.PairTorchDataset photo: zoom, blur, noise, jitter
    val_fraction: float = 0.1
    max_val: int | None = None   # cap on val pairs scored per validation (None: all)
    val_every: int = 1           # epochs between validations (and best_* checkpoints); a phase's last epoch and
                                 # every sample-grid epoch are always validated
    sample_every: int = 5        # epochs between sample grids
    sample_count: int = 4
    loss: dict = field(default_factory=dict)  # student.losses.LossWeights overrides (weights, soft_eps, spill_margin)
    lpips_weights: str | None = None
    amp: bool = True             # mixed precision on CUDA (float phase)
    seed: int = 0

    def __post_init__(self):
        StudentConfig.over_default(self.model)  # unknown model keys: one line
        LossWeights.from_dict(self.loss)
        check_keys(self.photo_augment, PairTorchDataset.PHOTO_KEYS, "student photo_augment")
        if self.lr_schedule not in ("plateau", "cosine"):
            raise TinyBeautyError(f"unknown lr_schedule {self.lr_schedule!r}: use 'plateau' or 'cosine'")
        if int(self.prior_pairs) < 1:
            raise TinyBeautyError(f"student prior_pairs must be >= 1 (pairs the look prior is fit on), got "
                                  f"{self.prior_pairs}")
        if int(self.val_every) < 1 or int(self.sample_every) < 1:
            raise TinyBeautyError(f"student val_every and sample_every must be >= 1, got {self.val_every} and "
                                  f"{self.sample_every}")


TRAIN_DEFAULTS: dict = StudentSettings().to_dict()  # every key, for reference
# Settings a --resume may change: more (or fewer) QAT epochs after the same float phase, the grids.
RESUME_MAY_CHANGE = ("qat_epochs", "sample_every", "sample_count")

CKPT_BEST_LOSS = "tinybeauty_best_loss.pt"
CKPT_BEST_LOOK = "tinybeauty_best_look.pt"
CKPT_FINAL = "tinybeauty_final.pt"
CKPT_LAST = "tinybeauty_last.pt"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


@dataclass
class TrainState:
    epoch: int = 0
    best_loss: float = math.inf
    best_look: float = -math.inf
    float_val_psnr: float | None = None  # val PSNR when the float warm-up ended
    float_val: dict | None = None  # val look fidelity when the float warm-up ended
    seconds: float = 0.0  # training wall time so far (summed across resumes)

    def to_dict(self) -> dict:
        return dict(vars(self))


def look_of(pairs: PairDataset, ids: list[str], limit: int = 64) -> dict:
    """What the pairs' look is: its style name (from the manifest) and :class:`makeup.gate.LookGate` (where and
    how far it changes each region), from up to ``limit`` training pairs. Stored in every checkpoint's meta."""
    from collections import Counter

    from makeup.gate import LookGate

    chosen = [pairs[i] for i in ids[:limit]]
    styles = Counter(p.record.get("style") for p in chosen if p.record.get("style"))
    gate = LookGate.from_pairs([p.source for p in chosen], [p.target for p in chosen], [p.mask for p in chosen])
    return {"style": styles.most_common(1)[0][0] if styles else None, "look_gate": gate.to_dict()}


def fit_look_prior(pairs: PairDataset, ids: list[str], limit: int):
    """The look prior (``makeup.lookprior.LookPrior``) a prior-input student reads, fit on up to ``limit`` of
    the training pairs (every pair is a before/after of the look, as the teacher's seeds are)."""
    from makeup.lookprior import LookPrior

    chosen = [pairs[i] for i in ids[: int(limit)]]
    t0 = time.perf_counter()
    prior = LookPrior.fit([p.source for p in chosen], [p.target for p in chosen], [p.mask for p in chosen])
    log.info("student: look prior fit on %d pairs in %.1f s", len(chosen), time.perf_counter() - t0)
    return prior


def fidelity_of(scores: dict) -> dict:
    """The look-fidelity part of a validation record, keyed as ``tinybeauty eval --json``."""
    return {"psnr": scores["val_psnr"], "psnr_gain": scores["val_psnr_gain"], "recovery": scores["val_recovery"],
            "spill": scores["val_spill"], "visible_spill": scores["val_visible_spill"]}


def student_settings(section: dict | None = None, profile: str | None = None, **overrides) -> StudentSettings:
    """The paper defaults <- a profile's ``student:`` section <- CLI overrides (None values ignored)."""
    return StudentSettings.build(section, overrides, profile=profile)


def read_metrics(out_dir: str | os.PathLike) -> list[dict]:
    path = Path(out_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def random_crop(batch: dict, side: int | None, rng: np.random.Generator, focus: float = 0.0) -> dict:
    """The same random ``side`` crop of every image-shaped entry (source, target, mask, regions), per sample.

    With probability ``focus`` a crop is centred (with jitter) on a random pixel of a random makeup region
    present in the sample, so small regions (lips, brows) are in the crop as often as the large skin; a
    uniform crop of a 256 face at 96 px holds the lips only about a third of the time.
    """
    h, w = batch["source"].shape[-2:]
    if not side or (side >= h and side >= w):
        return batch
    side = min(side, h, w)
    out = {k: [] for k in ("source", "target", "mask", "regions") if k in batch}
    for i in range(batch["source"].shape[0]):
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        if focus > 0 and rng.random() < focus:
            labels = batch["mask"][i].numpy()
            present = np.flatnonzero(np.bincount(labels.ravel()))  # the labels present, ascending (no sort)
            present = present[present != 0]
            if present.size:
                ys, xs = np.nonzero(labels == present[int(rng.integers(len(present)))])
                k = int(rng.integers(len(ys)))
                jitter = rng.integers(-side // 4, side // 4 + 1, size=2)
                y = int(np.clip(ys[k] - side // 2 + jitter[0], 0, h - side))
                x = int(np.clip(xs[k] - side // 2 + jitter[1], 0, w - side))
        for k in out:
            out[k].append(batch[k][i, ..., y:y + side, x:x + side])
    return {k: torch.stack(v) for k, v in out.items()}


class StudentTrainer:
    def __init__(self, pairs_dir: str | os.PathLike, out_dir: str | os.PathLike, settings: StudentSettings,
                 device: str = "auto", use_wandb: bool = False, progress: bool = True):
        self.settings = settings = StudentSettings.of(settings)
        self.out = Path(out_dir)
        self.progress = progress
        self.device = pick_device(device)
        self.pairs = PairDataset(pairs_dir)
        if len(self.pairs) < 2:
            raise TinyBeautyError(f"{self.pairs.root}: {len(self.pairs)} pairs; the student needs at least 2 "
                                  "(one for training, one for validation)")
        train_ids, val_ids = split_ids(self.pairs.ids, settings.val_fraction)
        if settings.max_val:
            val_ids = val_ids[: int(settings.max_val)]
        self.config = StudentConfig.over_default(settings.model)
        self.look = look_of(self.pairs, train_ids or val_ids)
        self.look_prior = fit_look_prior(self.pairs, train_ids or val_ids, int(settings.prior_pairs)) \
            if self.config.prior_input else None
        if self.look_prior is not None:
            self.look["look_prior"] = self.look_prior.state()
        self.train_set = PairTorchDataset(self.pairs, train_ids, augment=True, seed=settings.seed,
                                          photo=settings.photo_augment, prior=self.look_prior)
        self.val_set = PairTorchDataset(self.pairs, val_ids, augment=False, prior=self.look_prior)
        self.loss_fn = StudentLoss(LossWeights.from_dict(settings.loss), settings.lpips_weights)
        self.float_epochs = int(settings.epochs)
        self.total_epochs = self.float_epochs + int(settings.qat_epochs)

    # --- model/optimizer phases ------------------------------------------------------------------------
    def _float_phase(self, model):
        model.to(self.device).train()
        opt = torch.optim.Adam(model.parameters(), lr=self.settings.lr)
        return model, opt, self._scheduler(opt, self.settings.lr_schedule)

    def _qat_phase(self, model, qat_state: dict | None = None):
        """Prepare the float model for QAT (on CPU: PT2E export), then train it on the device."""
        item = self.val_set[0]
        example = model_input(self.config.in_channels, item["source"][None], item["mask"][None],
                              item["prior"][None] if "prior" in item else None)
        prepared, _ = prepare_qat(model.cpu(), example, dynamic_batch=True, dynamic_size=True)
        if qat_state is not None:
            prepared.load_state_dict(qat_state, strict=True)
        prepared.to(self.device)
        set_qat_mode(prepared, train=True)
        opt = torch.optim.Adam(prepared.parameters(), lr=self.settings.qat_lr)
        return prepared, opt, self._scheduler(opt)

    def _scheduler(self, opt, kind: str = "plateau"):
        if kind == "cosine":  # a short CPU schedule ends on a low LR instead of waiting for a plateau
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(self.float_epochs, 1),
                                                              eta_min=self.settings.lr * 0.02)
        if kind != "plateau":
            raise TinyBeautyError(f"unknown lr_schedule {kind!r}: use 'plateau' or 'cosine'")
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=self.settings.plateau_factor,
                                                          patience=self.settings.plateau_patience)

    # --- one epoch -------------------------------------------------------------------------------------
    def _train_epoch(self, net, opt, epoch: int, qat: bool, scaler) -> float:
        from torch.utils.data import DataLoader
        from tqdm import tqdm

        self.train_set.set_epoch(epoch)
        gen = torch.Generator().manual_seed(self.settings.seed * 100_003 + epoch)
        loader = DataLoader(self.train_set, batch_size=self.settings.batch_size, shuffle=True, generator=gen,
                            num_workers=0, drop_last=len(self.train_set) > self.settings.batch_size)
        rng = np.random.default_rng([self.settings.seed, epoch])
        if qat:
            set_qat_mode(net, train=True)
        else:
            net.train()
        use_amp = scaler is not None and not qat
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{self.total_epochs}{' qat' if qat else ''}", unit="batch",
                   disable=not self.progress, leave=False)
        for batch in bar:
            if self.config.region_input:  # the masks of the whole face, then cropped with it (as at run time)
                batch["regions"] = torch.from_numpy(region_channels(batch["mask"], self.config.mask_channels))
                if "prior" in batch:  # the look prior painted on the whole face, after the masks
                    batch["regions"] = torch.cat([batch["regions"], batch["prior"]], dim=1)
            batch = random_crop(batch, self.settings.train_crop, rng, float(self.settings.crop_focus))
            src, tgt, mask = (batch[k].to(self.device) for k in ("source", "target", "mask"))
            x = torch.cat([src, batch["regions"].to(self.device)], dim=1) if "regions" in batch else src
            with torch.autocast(self.device.type, enabled=use_amp):
                pred = net(x)
            loss, _ = self.loss_fn(pred.float(), tgt, mask, src)
            opt.zero_grad(set_to_none=True)
            if use_amp:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            total += float(loss) * src.shape[0]
            count += src.shape[0]
            bar.set_postfix(loss=f"{float(loss):.4f}")
        return total / max(count, 1)

    @torch.no_grad()
    def _validate(self, net, qat: bool) -> tuple[dict, list]:
        """Val loss, PSNR, SSIM and the look fidelity (``makeup.metrics.LookFidelity``) vs the pairs' targets."""
        if qat:
            set_qat_mode(net, train=False)
        else:
            net.eval()
        losses, ssims, samples = [], [], []
        fidelity = LookFidelity()
        for src, tgt, mask, prior in self._val_batches():
            src, tgt, mask = src.to(self.device), tgt.to(self.device), mask.to(self.device)
            pred = net(model_input(self.config.in_channels, src, mask, prior)).float()
            losses.append(float(self.loss_fn(pred, tgt, mask, src)[0]) * len(src))
            s, p, t = (x.cpu().numpy().transpose(0, 2, 3, 1) for x in (src, pred, tgt))
            fidelity.update(p, s, t, mask.cpu())
            ssims += list(ssim_per_image(p, t, 1.0))
            if len(samples) < self.settings.sample_count:
                samples += list(zip(s, p, t))
        n = len(self.val_set)
        fid = fidelity.result()
        scores = {"val_loss": sum(losses) / n, "val_psnr": fid["psnr"], "val_ssim": float(np.mean(ssims)),
                  "val_psnr_identity": fid["psnr_identity"], "val_psnr_gain": fid["psnr_gain"],
                  "val_recovery": fid["recovery"], "val_spill": fid["spill"],
                  "val_visible_spill": fid["visible_spill"], "val_look_score": look_score(fid)}
        return scores, samples[: self.settings.sample_count]

    def _val_batches(self, size: int = 8):
        """The val pairs in batches: stacked (source, target, mask, prior or None) CPU tensors."""
        for i in range(0, len(self.val_set), size):
            items = [self.val_set[j] for j in range(i, min(i + size, len(self.val_set)))]
            stack = lambda key: torch.stack([it[key] for it in items]) if key in items[0] else None  # noqa: E731
            yield stack("source"), stack("target"), stack("mask"), stack("prior")

    def _prior_fidelity(self) -> dict | None:
        """The look prior alone (no network: ``clamp(photo + prior)``) on the val pairs, keyed as ``tinybeauty
        eval --json`` (= ``eval --prior-only`` of the checkpoint on its val split); None without the prior. What the
        net adds over it is the student's own work: a net that adds nothing (a dead last layer, stop 25's red_lip)
        scores the prior's figures."""
        if self.look_prior is None:
            return None
        fidelity = LookFidelity()
        for src, tgt, mask, prior in self._val_batches():
            s, p, t = (x.numpy().transpose(0, 2, 3, 1) for x in (src, (src + prior).clamp(0, 1), tgt))
            fidelity.update(p, s, t, mask)
        fid = fidelity.result()
        return {k: fid[k] for k in ("psnr", "psnr_gain", "recovery", "spill", "visible_spill")}

    def _save_samples(self, epoch: int, samples: list, scores: dict) -> None:
        rows = [[s, q, g, heatmap(q - s, scale=0.25)] for s, q, g in samples]
        fid = {"recovery": scores["val_recovery"], "spill": scores["val_spill"],
               "visible_spill": scores["val_visible_spill"], "psnr_gain": scores["val_psnr_gain"]}
        save_grid(self.out / f"samples_epoch_{epoch}.png", rows,
                  titles=["source", "prediction", "target", "|residual|"],
                  caption=f"epoch {epoch}, {len(self.val_set)} val pairs: {format_fidelity(fid)}")

    # --- checkpoints -----------------------------------------------------------------------------------
    def _float_model_of(self, net, qat: bool):
        if not qat:
            return net
        model = build_model(self.config)
        model.load_state_dict(float_state_from_prepared(net.cpu(), model))
        net.to(self.device)
        return model

    def _save(self, name: str, net, qat: bool, meta: dict, trainer: dict | None = None) -> None:
        model = self._float_model_of(net, qat)
        qat_state = {k: v.detach().cpu() for k, v in net.state_dict().items()} if qat else None
        save_checkpoint(self.out / name, model.cpu() if not qat else model, config=self.config,
                        qat_state=qat_state, meta=meta, trainer=trainer)
        if not qat:
            net.to(self.device)

    # --- the loop --------------------------------------------------------------------------------------
    def run(self, resume: bool = False, use_wandb: bool = False) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        seed_everything(self.settings.seed)
        state = TrainState()
        model = build_model(self.config)
        qat = self.float_epochs == 0 and self.total_epochs > 0
        net, opt, sched = (self._qat_phase(model) if qat else self._float_phase(model))
        if resume:
            state, net, opt, sched, qat = self._resume(model)
        else:
            for stale in (METRICS, SUMMARY):
                (self.out / stale).unlink(missing_ok=True)
        self.settings.save(self.out, pairs=str(self.pairs.root), device=str(self.device),
                           resumed_from_epoch=state.epoch)
        metrics = MetricsLog(self.out / METRICS, use_wandb, self.settings.to_dict())
        scaler = torch.amp.GradScaler("cuda") if self.device.type == "cuda" and self.settings.amp else None
        if state.epoch == 0:
            log.info("student: %d params, %.3f GMAC at 256, %d train / %d val pairs, device %s",
                     count_params(model), count_macs(model) / 1e9, len(self.train_set), len(self.val_set),
                     self.device)
        from tqdm import tqdm

        epochs = tqdm(range(state.epoch + 1, self.total_epochs + 1), desc="student", unit="epoch",
                      disable=not self.progress)
        scores: dict = {}  # the previous epoch's validation ({}: not validated, or no epoch run yet)
        for epoch in epochs:
            if not qat and epoch > self.float_epochs:  # float warm-up done: switch to QAT
                # the last float epoch is always validated; only a run resumed right here has not
                float_scores = scores or self._validate(net, qat=False)[0]
                state.float_val_psnr = float_scores["val_psnr"]
                state.float_val = fidelity_of(float_scores)
                metrics.write({"event": "qat_start", "epoch": epoch, "float_val_psnr": state.float_val_psnr,
                               "float_val": state.float_val})
                net, opt, sched = self._qat_phase(net.cpu())
                qat = True
            t0 = time.perf_counter()
            train_loss = self._train_epoch(net, opt, epoch, qat, scaler)
            sample = epoch % self.settings.sample_every == 0 or epoch == self.total_epochs
            scores, samples = {}, []
            if sample or self.validates(epoch):
                scores, samples = self._validate(net, qat)
            if not isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step()
            elif scores:  # the plateau's patience counts validations
                sched.step(scores["val_loss"])
            state.seconds += time.perf_counter() - t0
            state.epoch = epoch
            record = {"epoch": epoch, "phase": "qat" if qat else "float", "train_loss": train_loss, **scores,
                      "lr": opt.param_groups[0]["lr"], "seconds": round(state.seconds, 2)}
            metrics.write(record)
            shown = {"psnr": f"{scores['val_psnr']:.2f}", "look": f"{scores['val_look_score']:.2f}"} if scores else {}
            epochs.set_postfix(loss=f"{train_loss:.4f}", **shown)
            meta = {"epoch": epoch, "phase": record["phase"], **scores, **self.look, "pairs": str(self.pairs.root)}
            if scores and scores["val_loss"] < state.best_loss:
                state.best_loss = scores["val_loss"]
                self._save(CKPT_BEST_LOSS, net, qat, meta)
            if scores and scores["val_look_score"] > state.best_look:
                state.best_look = scores["val_look_score"]
                self._save(CKPT_BEST_LOOK, net, qat, meta)
            if sample:
                self._save_samples(epoch, samples, scores)
            trainer = {"state": state.to_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                       "settings_epochs": [self.float_epochs, self.total_epochs]}
            self._save(CKPT_LAST, net, qat, meta, trainer=trainer)
        summary = self._finish(net, qat, state, metrics, scores or None)  # the last epoch is always validated
        metrics.close()
        return summary

    def _resume(self, model):
        last = self.out / CKPT_LAST
        if not last.exists():
            raise TinyBeautyError(f"{self.out}: nothing to resume ({CKPT_LAST} missing); run without --resume")
        recorded = read_settings(self.out)
        diff = self.settings.differences(recorded["settings"], RESUME_MAY_CHANGE) if recorded else []
        if diff:
            raise TinyBeautyError(f"--resume: {self.out} was trained with other settings ({', '.join(diff)} differ "
                                  f"from {self.out / 'settings.yaml'}); use the same settings or a new --out")
        ckpt = load_student(last)
        if ckpt.config != self.config:
            raise TinyBeautyError(f"{last}: saved for model {ckpt.config}, but the settings ask for {self.config}")
        trainer = ckpt.trainer or {}
        state = TrainState(**trainer.get("state", {}))
        model.load_state_dict(ckpt.model.state_dict())
        if ckpt.qat:
            net, opt, sched = self._qat_phase(model, ckpt.qat_state)
        else:
            net, opt, sched = self._float_phase(model)
        if "optimizer" in trainer:
            opt.load_state_dict(trainer["optimizer"])
            sched.load_state_dict(trainer["scheduler"])
        log.info("resuming %s at epoch %d of %d", self.out, state.epoch + 1, self.total_epochs)
        return state, net, opt, sched, ckpt.qat

    def validates(self, epoch: int) -> bool:
        """Whether ``epoch`` is validated (and may become a best_* checkpoint): every ``val_every``-th epoch,
        and the last of each phase (the float model QAT starts from, the model export ships)."""
        return epoch % int(self.settings.val_every) == 0 or epoch in (self.float_epochs, self.total_epochs)

    def _finish(self, net, qat: bool, state: TrainState, metrics: MetricsLog, scores: dict | None = None) -> dict:
        """``scores``: the last epoch's validation when the loop just made it (the same net, not run twice)."""
        if scores is None:
            scores, _ = self._validate(net, qat)
        final_meta = {"epoch": state.epoch, "phase": "qat" if qat else "float", **scores, **self.look,
                      "pairs": str(self.pairs.root)}
        self._save(CKPT_FINAL, net, qat, final_meta)
        model = build_model(self.config)
        summary = {
            "params": count_params(model), "macs_256": count_macs(model), "config": self.config.to_dict(),
            "style": self.look["style"], "look_regions": self.look["look_gate"]["regions"],
            "train_pairs": len(self.train_set), "val_pairs": len(self.val_set), "epochs": state.epoch,
            "float_epochs": self.float_epochs, "qat_epochs": self.total_epochs - self.float_epochs,
            "float_val_psnr": state.float_val_psnr if qat else scores["val_psnr"],
            "qat_val_psnr": scores["val_psnr"] if qat else None,
            "val_psnr_identity": scores["val_psnr_identity"],
            "float_val": state.float_val if qat else fidelity_of(scores),
            "final_val": fidelity_of(scores),  # the look fidelity of tinybeauty_final.pt (what export ships)
            "prior_val": self._prior_fidelity(),  # its look prior alone on the same pairs (None without one)
            "final_val_ssim": scores["val_ssim"], "best_look_score": state.best_look,
            "train_seconds": round(state.seconds, 1), "device": str(self.device),
        }
        metrics.write({"event": "summary", **{k: v for k, v in summary.items() if k != "config"}})
        write_text_atomic(self.out / SUMMARY, json.dumps(summary, indent=2) + "\n")
        return summary


def train_student(pairs_dir, out_dir, settings: StudentSettings | dict | None = None, *, resume: bool = False,
                  device: str = "auto", use_wandb: bool = False, progress: bool = True) -> dict:
    """Train (or resume) a student; returns the summary dict also written to ``OUT/summary.json``.

    ``settings``: :class:`StudentSettings` (a mapping is built into one; unknown keys are an error), saved as
    ``OUT/settings.yaml``; a ``resume`` whose settings differ from the saved ones is refused."""
    settings = StudentSettings.of(settings)
    trainer = StudentTrainer(pairs_dir, out_dir, settings, device=device, progress=progress)
    return trainer.run(resume=resume, use_wandb=use_wandb)
