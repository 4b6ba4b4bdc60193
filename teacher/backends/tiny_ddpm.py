"""`tiny-ddpm` (seed 004, scheme A): a small pixel-space diffusers ``UNet2DModel`` on the scaled residual.

Cosine (``squaredcos_cap_v2``) or sigmoid betas, v-prediction, min-SNR-weighted loss, EMA (diffusers
``EMAModel``), T_train = 1000; sampling with DDIM or DPM-Solver++ built from the same betas. Optional
classifier-free guidance: the condition (before image + masks) is dropped with ``cond_dropout`` in training
and ``guidance_scale != 1`` mixes the two predictions when sampling.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from makeup.errors import TinyBeautyError
from makeup.metrics import eyeliner_loss

from ..formulation import (EYE_CHANNEL, MAKEUP_REGIONS, ResidualHead, estimate_residual_scale,  # noqa: F401
                           fit_region_prior, fit_templates, make_condition, modelled_prior,
                           prior_image)
from makeup.lookprior import DEFAULT_TEMPLATES
from makeup.region_models import fit_region_models
from . import TeacherBackend, register_backend

DEFAULTS: dict = {
    "resolution": 64,
    "base_channels": 32,
    "channel_mults": [1, 2, 4, 8],
    "attention_res": [16, 8],      # self-attention only on these feature-map sizes
    "layers_per_block": 1,
    "dropout": 0.1,
    "norm_groups": 8,
    "schedule": "squaredcos_cap_v2",  # or "sigmoid"
    "num_train_timesteps": 1000,
    "min_snr_gamma": 5.0,
    "sampler": "dpmsolver++",     # or "ddim"
    "sample_steps": 25,
    "guidance_scale": 1.0,
    "cond_dropout": 0.0,          # > 0 trains the unconditional branch for classifier-free guidance
    "ema_decay": 0.9999,
    "lambda_rec": 1.0,            # x0-estimate reconstruction of the after image
    "learn_prior_scale": False,   # train alpha and the FGMM weights (ResidualHead.learn_scale; 1 when off)
    "lambda_eyeliner": 0.5,
    "feather_radius": 2.0,
    "residual_scale": 8.0,        # set from the seed pairs by `teacher train`
    "region_prior": None,         # (4, 3) constant part of the region prior, set by `teacher train`
    "region_colour": None,        # (4, 3, 3) its colour part (formulation.fit_region_prior), set with it
    "templates": list(DEFAULT_TEMPLATES),  # the prior's feature templates (makeup.lookprior.TEMPLATE_FRAMES)
    "region_models": True,        # skin and brows: models of foundation and tint fit on the seeds (makeup.region_models)
    "prior_eye_zone": True,       # the paste keeps the prior alone in the eye zone (teacher.formulation.prior_zone_weight);
                                  # a paste-time choice: teachers saved before it exist paste that way too
}
COND_CHANNELS = 3 + len(MAKEUP_REGIONS)


def sigmoid_betas(steps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> np.ndarray:
    """Sigmoid schedule (Jabri et al. 2022): alpha_bar(t) follows a shifted sigmoid; betas from its ratios."""
    t = np.linspace(0, 1, steps + 1)
    s = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    v_start, v_end = s(start / tau), s(end / tau)
    ab = (-s((t * (end - start) + start) / tau) + v_end) / (v_end - v_start)
    return np.clip(1 - ab[1:] / np.maximum(ab[:-1], 1e-12), 0, 0.999)


def build_unet(cfg: dict):
    from diffusers import UNet2DModel

    res = int(cfg["resolution"])
    chans = tuple(int(cfg["base_channels"]) * int(m) for m in cfg["channel_mults"])
    attn = {int(a) for a in cfg["attention_res"]}
    down = []
    for i in range(len(chans)):
        feat = res // (2 ** i)
        down.append("AttnDownBlock2D" if feat in attn else "DownBlock2D")
    up = [d.replace("Down", "Up") for d in reversed(down)]
    return UNet2DModel(sample_size=res, in_channels=3 + COND_CHANNELS, out_channels=3,
                       block_out_channels=chans, down_block_types=tuple(down), up_block_types=tuple(up),
                       layers_per_block=int(cfg["layers_per_block"]), dropout=float(cfg["dropout"]),
                       norm_num_groups=int(cfg["norm_groups"]), attention_head_dim=None)


class DDAModel(nn.Module):
    """UNet + RDM/FGMM head in one module (one state dict, one EMA)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.unet = build_unet(cfg)
        self.head = ResidualHead(cfg["residual_scale"], cfg.get("region_prior"),
                                 region_colour=cfg.get("region_colour"))


@register_backend("tiny-ddpm")
class TinyDDPMBackend(TeacherBackend):
    name = "tiny-ddpm"
    defaults = DEFAULTS  # every model config key (a profile's teacher.model is checked against them)

    def __init__(self, config: dict):
        from diffusers import DDPMScheduler

        self._given = set(config or {})  # keys set explicitly (prepare() never overrides them)
        self.config = {**DEFAULTS, **(config or {})}
        cfg = self.config
        if cfg["schedule"] not in ("squaredcos_cap_v2", "sigmoid"):
            raise TinyBeautyError(f"tiny-ddpm: schedule must be squaredcos_cap_v2 or sigmoid, got {cfg['schedule']!r}")
        if cfg["sampler"] not in ("ddim", "dpmsolver++"):
            raise TinyBeautyError(f"tiny-ddpm: sampler must be ddim or dpmsolver++, got {cfg['sampler']!r}")
        self.model = DDAModel(cfg)
        self.model.head.learn_scale(bool(cfg["learn_prior_scale"]))
        T = int(cfg["num_train_timesteps"])
        betas = (sigmoid_betas(T) if cfg["schedule"] == "sigmoid"
                 else DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2").betas.numpy())
        self.betas = np.asarray(betas, dtype=np.float64)
        self.train_scheduler = DDPMScheduler(num_train_timesteps=T, trained_betas=self.betas.tolist(),
                                             prediction_type="v_prediction")
        self.ema = None
        self.device = torch.device("cpu")

    # --- seed statistics -----------------------------------------------------------------------------
    def prepare(self, pairs, style: str | None = None) -> None:
        """Region prior (per region the seeds' mean residual, or a colour map where it predicts held-out seeds
        better: ``fit_region_prior``), the feature templates around the eyes and on the lips (``fit_templates``,
        the ``templates`` named; ``[]`` for none), the skin's and brows' models (``makeup.region_models``, each
        where it predicts held-out seeds better than the region's mean change; ``region_models: false`` for
        none) and the residual scale that gives the seeds' corrections to that prior about unit spread; config
        keys given explicitly are kept (a modelled region's row of an explicit ``region_prior`` is set to 0)."""
        cfg, res = self.config, int(self.config["resolution"])
        befores, afters, labels = [p.before for p in pairs], [p.after for p in pairs], [p.labels for p in pairs]
        models = fit_region_models(befores, afters, labels) if cfg.get("region_models") else None
        if "region_prior" not in self._given or cfg.get("region_prior") is None:
            const, colour, _ = fit_region_prior(befores, afters, labels, float(cfg["feather_radius"]))
            cfg["region_prior"], cfg["region_colour"] = const.tolist(), colour.tolist()
        const, colour = modelled_prior(cfg["region_prior"], cfg.get("region_colour"), models)
        cfg["region_prior"] = const.round(6).tolist()
        cfg["region_colour"] = None if colour is None else colour.round(6).tolist()
        # the templates and the region models live in the head's state (cfg keeps the settings only)
        templates = fit_templates(befores, afters, labels, cfg["templates"] or (), float(cfg["feather_radius"]),
                                  models=models is not None) or None
        if "residual_scale" not in self._given:
            corrections = []
            for p in pairs:
                before = make_condition(p.before, p.labels, res, templates=templates, models=models)
                low = make_condition(p.after, p.labels, res).source - before.source
                field = None if before.field is None else before.field.numpy()
                prior = prior_image(before.masks.numpy(), before.source.numpy().transpose(1, 2, 0),
                                    cfg["region_prior"], cfg.get("region_colour"), field)
                corrections.append(low.numpy() - prior.transpose(2, 0, 1))
            cfg["residual_scale"] = estimate_residual_scale(corrections)
        self.model.head.set_statistics(cfg["residual_scale"], cfg["region_prior"], cfg.get("region_colour"),
                                       templates, models)

    # --- parameters, EMA, state ------------------------------------------------------------------------
    @property
    def head(self) -> ResidualHead:
        return self.model.head

    def trainable(self):
        return list(self.model.parameters())

    def train(self, mode: bool = True) -> "TinyDDPMBackend":
        self.model.train(mode)
        return self

    def to(self, device) -> "TinyDDPMBackend":
        self.device = torch.device(device)
        self.model.to(self.device)
        if self.ema is not None:
            self.ema.to(self.device)
        return self

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
            averaged = copy.deepcopy(self.model)
            self.ema.copy_to(averaged.parameters())
            state["inference_model"] = averaged.state_dict()  # EMA weights, what sampling uses
        return state

    def load_state_dict(self, state: dict, for_inference: bool = False) -> None:
        if for_inference and "inference_model" in state:
            self.model.load_state_dict(state["inference_model"])
            return
        self.model.load_state_dict(state["model"])
        if "ema" in state:
            if self.ema is None:
                self.enable_ema()
            self.ema.load_state_dict(state["ema"])

    # --- training ------------------------------------------------------------------------------------
    def _alphas_bar(self, t: torch.Tensor) -> torch.Tensor:
        ab = self.train_scheduler.alphas_cumprod.to(self.device)[t]
        return ab.view(-1, 1, 1, 1).float()

    def _cond(self, source: torch.Tensor, masks: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        cond = torch.cat([source * 2 - 1, masks], dim=1)
        return cond if keep is None else cond * keep.view(-1, 1, 1, 1)

    def training_loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """batch: source/target (N, 3, s, s) in [0, 1], masks (N, 4, s, s), optionally the prior's ``field``
        (N, 14, s, s: templates and region models, ``formulation.prior_field``). Loss = min-SNR v-MSE weighted by
        FGMM region weights + x0-estimate reconstruction + eyeliner loss in the eye zone (opening + lids)."""
        cfg, head = self.config, self.model.head
        src, tgt, masks, field = batch["source"], batch["target"], batch["masks"], batch.get("field")
        n = src.shape[0]
        x0 = head.to_diffusion(tgt - src, masks, src, field)
        noise = torch.randn(x0.shape, generator=generator, device=self.device)
        T = int(cfg["num_train_timesteps"])
        t = torch.randint(0, T, (n,), generator=generator, device=self.device)
        x_t = self.train_scheduler.add_noise(x0, noise, t)
        v_target = self.train_scheduler.get_velocity(x0, noise, t)
        keep = None
        if cfg["cond_dropout"] > 0:
            keep = (torch.rand(n, generator=generator, device=self.device) >= cfg["cond_dropout"]).float()
        v = self.model.unet(torch.cat([x_t, self._cond(src, masks, keep)], dim=1), t).sample
        ab = self._alphas_bar(t)
        snr = ab / (1 - ab)
        snr_w = torch.clamp(snr, max=float(cfg["min_snr_gamma"])) / (snr + 1)  # min-SNR for v-prediction
        region_w = head.fgmm.loss_weights(masks)
        diff = ((v - v_target) ** 2 * region_w).mean(dim=(1, 2, 3), keepdim=True)
        loss_v = (diff * snr_w).mean()
        x0_hat = ab.sqrt() * x_t - (1 - ab).sqrt() * v
        after_hat = head.compose(src, x0_hat, masks, field)
        rec_w = ab  # trust the x0 estimate in proportion to the signal it still sees
        loss_rec = ((after_hat - tgt).abs() * region_w).mean(dim=(1, 2, 3), keepdim=True)
        loss_rec = (loss_rec * rec_w).mean()
        eye = masks[:, EYE_CHANNEL]
        loss_eye = eyeliner_loss(after_hat, tgt, eye, weight=rec_w)
        loss = loss_v + cfg["lambda_rec"] * loss_rec + cfg["lambda_eyeliner"] * loss_eye
        parts = {"loss": loss, "v": loss_v, "rec": loss_rec, "eyeliner": loss_eye}
        return loss, {k: float(v.detach()) for k, v in parts.items()}

    # --- sampling ------------------------------------------------------------------------------------
    def make_sampler(self, steps: int | None = None):
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        cfg = self.config
        common = dict(num_train_timesteps=int(cfg["num_train_timesteps"]), trained_betas=self.betas.tolist(),
                      prediction_type="v_prediction")
        if cfg["sampler"] == "ddim":
            sched = DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True)
        else:
            sched = DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
        sched.set_timesteps(int(steps or cfg["sample_steps"]), device=self.device)
        return sched

    @torch.no_grad()
    def sample(self, source: torch.Tensor, masks: torch.Tensor, generators: list[torch.Generator],
               steps: int | None = None) -> torch.Tensor:
        """Corrections to the region prior (N, 3, s, s), image space and ungated, one initial noise per
        generator (so a pair's result does not depend on which other pairs share its batch)."""
        self.model.eval()
        res = source.shape[-1]
        noise = torch.stack([torch.randn((3, res, res), generator=g) for g in generators]).to(self.device)
        sched = self.make_sampler(steps)
        x = noise * sched.init_noise_sigma
        cond = self._cond(source.to(self.device), masks.to(self.device))
        scale = float(self.config["guidance_scale"])
        for t in sched.timesteps:
            inp = sched.scale_model_input(x, t)
            tt = torch.full((x.shape[0],), int(t), device=self.device, dtype=torch.long)
            v = self.model.unet(torch.cat([inp, cond], dim=1), tt).sample
            if scale != 1.0:
                v_unc = self.model.unet(torch.cat([inp, torch.zeros_like(cond)], dim=1), tt).sample
                v = v_unc + scale * (v - v_unc)
            x = sched.step(v, t, x).prev_sample
        return x / self.model.head.residual_scale

