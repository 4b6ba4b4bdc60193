"""`sd15-lora` (seed 000/001, the paper's DDA): Stable Diffusion 1.5 + LoRA, offline from a local folder.

* Base: a diffusers folder (``unet/``, ``vae/``, ``scheduler/``; ``text_encoder/`` + ``tokenizer/`` optional)
  named by ``--sd-path`` or ``TINYBEAUTY_SD_PATH``, read with ``local_files_only=True``: never a hub request.
  Its weights are frozen (fp16 on CUDA, fp32 elsewhere); the teacher records a fingerprint of them and a
  different base is refused in one line.
* Conditioning, InstructPix2Pix style: UNet input = [noisy latent, VAE latent of the before photo, the region
  masks pooled to latent size]. ``conv_in`` is widened with zero-initialised channels (so the model starts as
  the pretrained UNet) and trained whole. No text at run time: a learned style embedding (77 x cross-attention
  width) initialised from the text encoder's encoding of "<look> makeup" when one is present, random otherwise.
* LoRA (peft, rank 16 by default) on the UNet attention projections ``to_q``, ``to_k``, ``to_v``,
  ``to_out.0``; trainable tensors (LoRA, ``conv_in``, style embedding, RDM/FGMM head) in fp32.
* RDM in latent space: the diffusion variable is the latent correction ``(z_after - z_before - alpha x
  latent region prior) x residual_scale``. The photo's change is ``decode(corrected latent) -
  decode(before latent)``, pasted through the full-resolution FGMM gate by ``translate``: the VAE's
  reconstruction error cancels and pixels outside the regions stay the photo's own.
* Loss: min-SNR-weighted noise (or v) MSE weighted by the FGMM region weights at latent size, an x0-estimate
  reconstruction in latent space, and the Sobel eyeliner loss on decoded eye crops only, at low-noise steps.
* Sampler: DPM-Solver++ (2nd order) from the base's scheduler config; optional guidance on the image
  condition (``cond_dropout`` trains the unconditional branch).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from makeup.errors import TinyBeautyError
from makeup.metrics import eye_zone, eyeliner_loss

from ..formulation import (EYE_CHANNEL, MAKEUP_REGIONS, TEMPLATE_FRAMES, ResidualHead, estimate_residual_scale,
                           make_condition)
from . import TeacherBackend, register_backend

SD_PATH_ENV = "TINYBEAUTY_SD_PATH"
REQUIRED = ("unet/config.json", "vae/config.json", "scheduler/scheduler_config.json")

# head buffers a latent teacher leaves at zero (not stored in its safetensors)
IMAGE_SPACE_ONLY = ("region_colour", *(f"template_{n}" for n in TEMPLATE_FRAMES), "region_models")

DEFAULTS: dict = {
    "sd_path": None,              # --sd-path / TINYBEAUTY_SD_PATH; amplify may point it elsewhere (same base)
    "variant": None,              # e.g. "fp16": load diffusion_pytorch_model.fp16.safetensors
    "base_fingerprint": None,     # set when the base is first loaded; a different base is refused
    "resolution": 512,            # working size: seeds and faces are resized to it before the VAE
    "lora_rank": 16,
    "lora_alpha": 16,
    "lora_targets": ["to_q", "to_k", "to_v", "to_out.0"],
    "style_tokens": 77,           # style embedding length (SD's text length)
    "style_prompt": None,         # text the embedding starts from (default "<look> makeup"); needs text_encoder/
    "style_init": None,           # recorded by prepare(): "text: ..." or "random"
    "base_dtype": "auto",         # frozen base weights: auto = float16 on CUDA, float32 elsewhere
    "gradient_checkpointing": "auto",  # auto = on CUDA
    "min_snr_gamma": 5.0,
    "cond_dropout": 0.1,          # drops the image condition (before latent + masks) for guidance
    "guidance_scale": 1.0,        # != 1 mixes conditional and unconditional predictions when sampling
    "sampler": "dpmsolver++",
    "sample_steps": 20,
    "ema_decay": 0.9999,
    "lambda_rec": 1.0,            # latent x0-estimate reconstruction
    "learn_prior_scale": False,   # train alpha and the FGMM weights (ResidualHead.learn_scale; 1 when off)
    "lambda_eyeliner": 0.5,
    "eyeliner_max_t": 0.2,        # eyeliner loss only where t < this fraction of T (the x0 estimate is sharp)
    "eyeliner_pad": 1,            # latent pixels of context around the eye-zone crop before decoding
    "feather_radius": 2.0,
    "residual_scale": None,       # set from the seed pairs by prepare()
    "region_prior": None,         # (4, latent channels) mean seed latent change per region, set by prepare()
}


# --- the base folder --------------------------------------------------------------------------------------
def resolve_sd_path(path) -> Path:
    """The SD folder from the config/flag or ``TINYBEAUTY_SD_PATH``, checked; one error line naming the flag."""
    raw = path or os.environ.get(SD_PATH_ENV)
    if not raw:
        raise TinyBeautyError("backend sd15-lora needs a local Stable Diffusion 1.5 folder (diffusers layout): "
                              f"pass --sd-path SD_DIR or set {SD_PATH_ENV}")
    root = Path(raw).expanduser()
    if not root.is_dir():
        raise TinyBeautyError(f"--sd-path {root}: no such folder (a diffusers Stable Diffusion folder with "
                              "unet/, vae/, scheduler/)")
    missing = [r for r in REQUIRED if not (root / r).is_file()]
    if missing:
        raise TinyBeautyError(f"--sd-path {root}: missing {', '.join(missing)} (a diffusers Stable Diffusion "
                              "folder has unet/, vae/, scheduler/)")
    return root


def _file_variant(name: str) -> str | None:
    """``diffusion_pytorch_model.fp16.safetensors`` / ``...fp16-00001-of-00002.safetensors`` -> "fp16"."""
    parts = name.split(".")
    return parts[1].split("-")[0] if len(parts) == 3 else None


def _weight_files(folder: Path, variant: str | None) -> list[Path]:
    """The weight files diffusers loads from ``folder``: safetensors of the variant when there are any,
    else its .bin files (so removing an unused .bin beside the safetensors does not change the base)."""
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and _file_variant(f.name) == variant]
    safe = [f for f in files if f.suffix == ".safetensors"]
    return safe or [f for f in files if f.suffix == ".bin"]


def fingerprint_base(root: Path, variant: str | None = None, block: int = 1 << 16, spread: int = 32) -> str:
    """sha256 over the UNet/VAE configs, the scheduler config and the weight files that load (name, size,
    the first and last MiB, which hold a safetensors header, and ``spread`` blocks spaced through the file).

    Sampled rather than whole-file: reading 4 GB at every amplify would cost more than the check is worth,
    and two different fine-tunes of one architecture differ in every sampled block."""
    h = hashlib.sha256()
    for sub in ("unet", "vae", "scheduler"):
        for f in sorted((root / sub).iterdir()):
            if not f.is_file() or f.suffix != ".json":
                continue
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise TinyBeautyError(f"--sd-path {root}: {sub}/{f.name} is not valid JSON") from None
            if isinstance(data, dict):
                data = {k: v for k, v in data.items() if not k.startswith("_")}  # versions, paths
            h.update(f"{sub}/{f.name}:{json.dumps(data, sort_keys=True)}".encode())
        if sub != "scheduler":
            for f in _weight_files(root / sub, variant):
                size = f.stat().st_size
                h.update(f"{sub}/{f.name}:{size}".encode())
                with open(f, "rb") as fh:
                    if size <= 2 * (1 << 20) + spread * block:
                        h.update(fh.read())
                        continue
                    offsets = [0, size - (1 << 20)] + [int(size * (k + 1) / (spread + 1)) for k in range(spread)]
                    for off in offsets:
                        fh.seek(off)
                        h.update(fh.read(1 << 20 if off in (0, size - (1 << 20)) else block))
    return h.hexdigest()


def _load(root: Path, what: str, loader):
    try:
        return loader()
    except Exception as exc:  # diffusers/transformers raise many types for a broken folder
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise TinyBeautyError(f"--sd-path {root}: cannot load {what} ({exc.__class__.__name__}: {msg})") from None


@register_backend("sd15-lora")
class SD15LoRABackend(TeacherBackend):
    name = "sd15-lora"
    defaults = DEFAULTS  # every model config key (a profile's teacher.model is checked against them)
    weights_format = "safetensors"   # dda_final.safetensors: trained tensors only
    pastes_region_prior = False      # the prior lives in latent space: sample() already decodes it

    def __init__(self, config: dict):
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig

        self._given = set(config or {})
        self.config = cfg = {**DEFAULTS, **(config or {})}
        if cfg["sampler"] != "dpmsolver++":
            raise TinyBeautyError(f"sd15-lora: sampler must be dpmsolver++, got {cfg['sampler']!r}")
        if cfg["base_dtype"] not in ("auto", "float32", "float16", "bfloat16"):
            raise TinyBeautyError(f"sd15-lora: base_dtype must be auto, float32, float16 or bfloat16, "
                                  f"got {cfg['base_dtype']!r}")
        root = resolve_sd_path(cfg["sd_path"])
        variant = cfg["variant"]
        fingerprint = fingerprint_base(root, variant)
        recorded = cfg.get("base_fingerprint")
        if recorded and recorded != fingerprint:
            raise TinyBeautyError(f"--sd-path {root}: not the base this teacher was trained on (fingerprint "
                                  f"{fingerprint[:12]} != {recorded[:12]}); pass --sd-path of that base")
        cfg["sd_path"], cfg["base_fingerprint"] = str(root.resolve()), fingerprint
        self.root = root
        common = dict(local_files_only=True, variant=variant)
        self.unet = _load(root, "unet/", lambda: UNet2DConditionModel.from_pretrained(str(root), subfolder="unet", **common))
        self.vae = _load(root, "vae/", lambda: AutoencoderKL.from_pretrained(str(root), subfolder="vae", **common))
        sched_cfg = _load(root, "scheduler/", lambda: DDPMScheduler.load_config(str(root), subfolder="scheduler",
                                                                                   local_files_only=True))
        self.scheduler_config = dict(sched_cfg)
        self.train_scheduler = DDPMScheduler.from_config(self.scheduler_config)
        self.prediction_type = self.train_scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise TinyBeautyError(f"--sd-path {root}: scheduler prediction_type {self.prediction_type!r} is not "
                                  "supported (epsilon or v_prediction)")
        self.unet.requires_grad_(False)
        self.vae.requires_grad_(False)
        self.vae.eval()
        self.latent_channels = int(self.vae.config.latent_channels)
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        multiple = self.vae_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        if int(cfg["resolution"]) % multiple:
            raise TinyBeautyError(f"sd15-lora: resolution {cfg['resolution']} must be a multiple of {multiple} "
                                  "(the VAE's and the UNet's downsampling)")
        self._widen_conv_in(self.unet.config.in_channels + self.latent_channels + len(MAKEUP_REGIONS))
        self.unet.add_adapter(LoraConfig(r=int(cfg["lora_rank"]), lora_alpha=float(cfg["lora_alpha"]),
                                         init_lora_weights="gaussian", target_modules=list(cfg["lora_targets"])))
        self.unet.conv_in.requires_grad_(True)
        cast_training_params(self.unet, torch.float32)
        width = int(self.unet.config.cross_attention_dim)
        # Random start (std 1, like the layer-normed text encoder states); prepare() may replace it with text.
        self.style_embedding = nn.Parameter(torch.randn(1, int(cfg["style_tokens"]), width))
        self._head = ResidualHead(cfg["residual_scale"] or 1.0, cfg["region_prior"], channels=self.latent_channels)
        self._head.learn_scale(bool(cfg["learn_prior_scale"]))
        self.device = torch.device("cpu")
        self.base_dtype = torch.float32

    # --- construction helpers ----------------------------------------------------------------------------
    def _widen_conv_in(self, channels: int) -> None:
        """conv_in with ``channels`` inputs: the base's kernel on the first ones, zeros on the new ones, so
        the widened UNet computes exactly what the base does."""
        old = self.unet.conv_in
        new = nn.Conv2d(channels, old.out_channels, old.kernel_size, old.stride, old.padding)
        with torch.no_grad():
            new.weight.zero_()
            new.weight[:, :old.in_channels] = old.weight
            new.bias.copy_(old.bias)
        self.unet.conv_in = new
        self.unet.register_to_config(in_channels=channels)

    def _named_trainable(self) -> "OrderedDict[str, nn.Parameter]":
        named = OrderedDict([("style_embedding", self.style_embedding)])
        named.update((f"unet.{n}", p) for n, p in self.unet.named_parameters() if p.requires_grad)
        named.update((f"head.{n}", p) for n, p in self._head.named_parameters())
        return named

    # --- contract ------------------------------------------------------------------------------------------
    @property
    def head(self) -> ResidualHead:
        return self._head

    def base_info(self) -> dict:
        return {"path": self.config["sd_path"], "fingerprint": self.config["base_fingerprint"],
                "variant": self.config["variant"]}

    def trainable(self) -> list:
        return list(self._named_trainable().values())

    def train(self, mode: bool = True) -> "SD15LoRABackend":
        self.unet.train(mode)
        self.vae.eval()
        self._head.train(mode)
        return self

    def to(self, device) -> "SD15LoRABackend":
        self.device = torch.device(device)
        auto = self.config["base_dtype"] == "auto"
        dtype = (torch.float16 if self.device.type == "cuda" else torch.float32) if auto \
            else getattr(torch, str(self.config["base_dtype"]))
        self.base_dtype = dtype
        for module in (self.unet, self.vae):
            module.to(self.device)
            for p in module.parameters():
                if not p.requires_grad:
                    p.data = p.data.to(dtype)
        self.style_embedding.data = self.style_embedding.data.to(self.device)
        self._head.to(self.device)
        if self.ema is not None:
            self.ema.to(self.device)
        gc = self.config["gradient_checkpointing"]
        if gc is True or (gc == "auto" and self.device.type == "cuda"):
            self.unet.enable_gradient_checkpointing()
        return self

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.base_dtype,
                              enabled=self.base_dtype != torch.float32)

    # --- latents -----------------------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, s, s) in [0, 1] -> scaled latents (the posterior mean: deterministic), float32."""
        vcfg = self.vae.config
        with torch.no_grad(), self._autocast():
            lat = self.vae.encode((images * 2 - 1).to(self.device, self.base_dtype)).latent_dist.mean
        shift = float(getattr(vcfg, "shift_factor", None) or 0.0)
        return ((lat.float() - shift) * float(vcfg.scaling_factor))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [-1, 1] (float32); differentiable (the decoder's weights are frozen)."""
        vcfg = self.vae.config
        shift = float(getattr(vcfg, "shift_factor", None) or 0.0)
        with self._autocast():
            img = self.vae.decode((latents / float(vcfg.scaling_factor) + shift).to(self.base_dtype)).sample
        return img.float()

    def latent_masks(self, masks: torch.Tensor, size: int) -> torch.Tensor:
        """Region masks pooled to latent size (area average, like the image's own downsampling)."""
        return F.adaptive_avg_pool2d(masks.float(), size)

    def _unet(self, x_t, cond, t) -> torch.Tensor:
        emb = self.style_embedding.expand(x_t.shape[0], -1, -1)
        with self._autocast():
            out = self.unet(torch.cat([x_t, cond], dim=1), t, encoder_hidden_states=emb).sample
        return out.float()

    def latent_residual(self, z_before: torch.Tensor, correction: torch.Tensor) -> torch.Tensor:
        """Image-space change (N, 3, s, s) in [0, 1] units of a latent correction:
        (decode(z + correction) - decode(z)) / 2. A zero correction gives exactly zero (two identical decodes)."""
        return (self.decode(z_before + correction) - self.decode(z_before)) / 2

    # --- seed statistics ---------------------------------------------------------------------------------
    def prepare(self, pairs, style: str | None = None) -> None:
        """Latent region prior and residual scale from the seed pairs; the style embedding from the text
        encoder when the base has one (random otherwise). Explicit config keys are kept."""
        cfg, res = self.config, int(self.config["resolution"])
        radius = float(cfg["feather_radius"])
        conds_b = [make_condition(p.before, p.labels, res, radius) for p in pairs]
        conds_a = [make_condition(p.after, p.labels, res, radius) for p in pairs]
        diffs, masks = [], []
        for b, a in zip(conds_b, conds_a):
            z_b, z_a = self.encode(torch.stack([b.source, a.source])).cpu()
            diffs.append((z_a - z_b).numpy())
            masks.append(self.latent_masks(b.masks[None], z_b.shape[-1])[0].numpy())
        if "region_prior" not in self._given or cfg.get("region_prior") is None:
            num = sum(np.einsum("rhw,chw->rc", m, d) for m, d in zip(masks, diffs))
            den = sum(m.sum(axis=(1, 2)) for m in masks)
            cfg["region_prior"] = (num / np.maximum(den, 1e-6)[:, None]).round(6).tolist()
        if "residual_scale" not in self._given or cfg.get("residual_scale") is None:
            prior = np.asarray(cfg["region_prior"], np.float32)
            cfg["residual_scale"] = estimate_residual_scale(
                [d - np.einsum("rhw,rc->chw", m, prior) for m, d in zip(masks, diffs)])
        self._head.set_statistics(cfg["residual_scale"], cfg["region_prior"])
        if cfg.get("style_init") is None:
            self._init_style_embedding(cfg.get("style_prompt") or f"{style or 'the'} makeup")

    def _init_style_embedding(self, prompt: str) -> None:
        root = self.root
        if not (root / "text_encoder" / "config.json").is_file() or not (root / "tokenizer").is_dir():
            self.config["style_init"] = "random"
            return
        from transformers import CLIPTextModel, CLIPTokenizer

        tok = _load(root, "tokenizer/", lambda: CLIPTokenizer.from_pretrained(str(root), subfolder="tokenizer",
                                                                              local_files_only=True))
        enc = _load(root, "text_encoder/", lambda: CLIPTextModel.from_pretrained(
            str(root), subfolder="text_encoder", local_files_only=True, variant=self.config["variant"]))
        n = int(self.config["style_tokens"])
        ids = tok(prompt, padding="max_length", max_length=max(n, 1), truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            states = enc(ids).last_hidden_state.float()[:, :n]
        if states.shape != self.style_embedding.shape:
            self.config["style_init"] = "random"  # text width != the UNet's cross-attention width
            return
        with torch.no_grad():
            self.style_embedding.copy_(states.to(self.style_embedding.device))
        self.config["style_init"] = f"text: {prompt}"

    # --- training ------------------------------------------------------------------------------------------
    def _alphas_bar(self, t: torch.Tensor) -> torch.Tensor:
        return self.train_scheduler.alphas_cumprod.to(self.device)[t].view(-1, 1, 1, 1).float()

    def training_loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        cfg, head = self.config, self._head
        src, tgt, masks = batch["source"].to(self.device), batch["target"].to(self.device), batch["masks"].to(self.device)
        n = src.shape[0]
        z_b, z_a = self.encode(src), self.encode(tgt)
        m_lat = self.latent_masks(masks, z_b.shape[-1])
        x0 = head.to_diffusion(z_a - z_b, m_lat, z_b)
        noise = torch.randn(x0.shape, generator=generator, device=self.device)
        T = int(self.train_scheduler.config.num_train_timesteps)
        t = torch.randint(0, T, (n,), generator=generator, device=self.device)
        x_t = self.train_scheduler.add_noise(x0, noise, t)
        eps = self.prediction_type == "epsilon"
        target = noise if eps else self.train_scheduler.get_velocity(x0, noise, t)
        cond = torch.cat([z_b, m_lat], dim=1)
        if cfg["cond_dropout"] > 0:
            keep = (torch.rand(n, generator=generator, device=self.device) >= cfg["cond_dropout"]).float()
            cond = cond * keep.view(-1, 1, 1, 1)
        pred = self._unet(x_t, cond, t)
        ab = self._alphas_bar(t)
        snr = ab / (1 - ab)
        snr_w = torch.clamp(snr, max=float(cfg["min_snr_gamma"])) / (snr if eps else snr + 1)
        region_w = head.fgmm.loss_weights(m_lat)
        loss_d = ((((pred - target) ** 2) * region_w).mean(dim=(1, 2, 3), keepdim=True) * snr_w).mean()
        x0_hat = (x_t - (1 - ab).sqrt() * pred) / ab.sqrt() if eps else ab.sqrt() * x_t - (1 - ab).sqrt() * pred
        # Latent reconstruction (FGMM-gated, as the RDM formulation composes it): trains alpha and the FGMM
        # weights; trusted in proportion to the signal the noisy latent still holds.
        rec = ((z_b + head.residual(x0_hat, m_lat, z_b) - z_a).abs() * region_w).mean(dim=(1, 2, 3), keepdim=True)
        loss_rec = (rec * ab).mean()
        correction = x0_hat / head.residual_scale + head.alpha * head.prior_map(m_lat, z_b)
        loss_eye = self._eyeliner_crops(src, tgt, masks, z_b, correction, t, ab.view(-1))
        loss = loss_d + cfg["lambda_rec"] * loss_rec + cfg["lambda_eyeliner"] * loss_eye
        parts = {"loss": loss, "diffusion": loss_d, "rec": loss_rec, "eyeliner": loss_eye}
        return loss, {k: float(v.detach()) for k, v in parts.items()}

    def _eyeliner_crops(self, src, tgt, masks, z_b, correction, t, ab) -> torch.Tensor:
        """Sobel eyeliner loss on decoded eye-zone crops (latent crop + padding decoded, not the whole image),
        only for images at low-noise steps; averaged over the batch (0 for the others)."""
        T = int(self.train_scheduler.config.num_train_timesteps)
        low = (t < float(self.config["eyeliner_max_t"]) * T).nonzero().flatten().tolist()
        total = src.new_zeros(())
        f, pad, lat = self.vae_factor, int(self.config["eyeliner_pad"]), z_b.shape[-1]
        for i in low:
            zone = eye_zone(masks[i:i + 1, EYE_CHANNEL])[0, 0] > 0
            if not zone.any():
                continue
            rows, cols = zone.any(dim=1).nonzero().flatten(), zone.any(dim=0).nonzero().flatten()
            y0, y1 = max(int(rows[0]) // f - pad, 0), min(-(-(int(rows[-1]) + 1) // f) + pad, lat)
            x0, x1 = max(int(cols[0]) // f - pad, 0), min(-(-(int(cols[-1]) + 1) // f) + pad, lat)
            z = z_b[i:i + 1, :, y0:y1, x0:x1]
            with torch.no_grad():
                dec_b = self.decode(z)
            change = (self.decode(z + correction[i:i + 1, :, y0:y1, x0:x1]) - dec_b) / 2
            box = (slice(i, i + 1), slice(None), slice(y0 * f, y1 * f), slice(x0 * f, x1 * f))
            m = masks[box]
            after = (src[box] + self._head.fgmm.gate(m) * change).clamp(0, 1)
            total = total + eyeliner_loss(after, tgt[box], m[:, EYE_CHANNEL], weight=ab[i:i + 1])
        return total / src.shape[0]

    # --- sampling ------------------------------------------------------------------------------------------
    def make_sampler(self, steps: int | None = None):
        from diffusers import DPMSolverMultistepScheduler

        sched = DPMSolverMultistepScheduler.from_config(self.scheduler_config, algorithm_type="dpmsolver++",
                                                        solver_order=2)
        sched.set_timesteps(int(steps or self.config["sample_steps"]), device=self.device)
        return sched

    @torch.no_grad()
    def sample_correction(self, z_b: torch.Tensor, m_lat: torch.Tensor, generators, steps=None) -> torch.Tensor:
        """The sampled latent correction (scaled diffusion variable), one initial noise per generator."""
        self.unet.eval()
        shape = (self.latent_channels, z_b.shape[-2], z_b.shape[-1])
        x = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(self.device)
        sched = self.make_sampler(steps)
        x = x * sched.init_noise_sigma
        cond = torch.cat([z_b, m_lat], dim=1)
        scale = float(self.config["guidance_scale"])
        for t in sched.timesteps:
            inp = sched.scale_model_input(x, t)
            tt = torch.full((x.shape[0],), int(t), device=self.device, dtype=torch.long)
            pred = self._unet(inp, cond, tt)
            if scale != 1.0:
                unc = self._unet(inp, torch.zeros_like(cond), tt)
                pred = unc + scale * (pred - unc)
            x = sched.step(pred, t, x).prev_sample
        return x

    @torch.no_grad()
    def sample(self, source: torch.Tensor, masks: torch.Tensor, generators: list[torch.Generator],
               steps: int | None = None) -> torch.Tensor:
        """Image-space change (N, 3, s, s), ungated: decode(z + correction) - decode(z) (prior included)."""
        z_b = self.encode(source.to(self.device))
        m_lat = self.latent_masks(masks.to(self.device), z_b.shape[-1])
        x = self.sample_correction(z_b, m_lat, generators, steps)
        head = self._head
        return self.latent_residual(z_b, x / head.residual_scale + head.alpha * head.prior_map(m_lat, z_b))

    # --- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"trainable": {k: v.detach().clone() for k, v in self._named_trainable().items()},
                 "buffers": {f"head.{k}": v.clone() for k, v in self._head.named_buffers()}}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def inference_state(self) -> "OrderedDict[str, torch.Tensor]":
        """Flat trained tensors (EMA weights) + the head's buffers: what dda_final.safetensors holds."""
        with self.ema_weights():
            flat = OrderedDict((k, v.detach().float().clone()) for k, v in self._named_trainable().items())
        # the prior's colour part and templates stay zero here (the latent prior is constant, the templates
        # image-space): not stored, zero on load
        flat.update((f"head.{k}", v.clone()) for k, v in self._head.named_buffers() if k not in IMAGE_SPACE_ONLY)
        return flat

    def _load_flat(self, tensors: dict) -> None:
        # the prior's colour part and templates are not stored (see inference_state): zero
        tensors = {**{f"head.{k}": torch.zeros_like(getattr(self._head, k)) for k in IMAGE_SPACE_ONLY}, **tensors}
        named = self._named_trainable()
        named.update((f"head.{k}", v) for k, v in self._head.named_buffers())
        missing = sorted(set(named) - set(tensors))
        unexpected = sorted(set(tensors) - set(named))
        if missing or unexpected:
            raise TinyBeautyError(f"sd15-lora teacher weights do not match its configuration (missing "
                                  f"{missing[:3]}, unexpected {unexpected[:3]})")
        with torch.no_grad():
            for k, v in tensors.items():
                if named[k].shape != v.shape:
                    raise TinyBeautyError(f"sd15-lora teacher weights: {k} has shape {tuple(v.shape)}, "
                                          f"the configured model {tuple(named[k].shape)}")
                named[k].copy_(v.to(named[k].dtype))

    def load_state_dict(self, state: dict, for_inference: bool = False) -> None:
        if "trainable" not in state:  # the flat final file
            self._load_flat(state)
            return
        self._load_flat({**state["trainable"], **state.get("buffers", {})})
        if "ema" in state:
            if self.ema is None:
                self.enable_ema()
            self.ema.load_state_dict(state["ema"])
            if for_inference:
                self.ema.copy_to(self.trainable())


def lora_parameter_count(unet_config: dict, rank: int = 16, targets=("to_q", "to_k", "to_v", "to_out.0")) -> int:
    """LoRA parameters on a UNet built from ``unet_config`` on the meta device (no weights allocated)."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets)))
    return sum(p.numel() for n, p in unet.named_parameters() if "lora_" in n)

