"""Teacher backends: one registry, one interface, shared by `teacher train`, `amplify` and `fidelity`.

A backend is one file: a :class:`TeacherBackend` subclass registered under its CLI name. ``teacher.train``,
``teacher.inference`` and ``teacher.amplify`` only use what this class declares, never a backend's own
attributes, so a new backend plugs in without touching them.

What a backend provides (the contract):

* ``from_config(config) -> backend``; ``.config`` (JSON/YAML-able, enough to rebuild it: after
  :meth:`TeacherBackend.prepare` it holds the seed statistics too). Every config has ``resolution`` (the working
  size the conditions are built at), ``feather_radius`` (soft region masks) and ``sample_steps``.
* ``prepare(pairs, style)``: config preparation from the seed pairs (items with ``before``, ``after``,
  ``labels``) and the look's name: region prior, residual scale, whatever the backend derives from the seeds;
  explicit config keys win. Called after ``to(device)``.
* ``trainable()``: the parameters the optimizer, the EMA and data-parallel gradient averaging see (frozen
  weights, such as a pretrained base, are not among them).
* ``train(mode)``, ``to(device)``.
* ``training_loss(batch, generator) -> (loss, parts)``: batch = ``source``/``target`` (N, 3, s, s) in [0, 1]
  and ``masks`` (N, 4, s, s) at ``resolution``.
* ``sample(source, masks, generators, steps) -> residual (N, 3, s, s)``: image space, ungated, one initial
  noise per generator.
* ``head`` (:class:`teacher.formulation.ResidualHead`: alpha, FGMM weights) and :meth:`paste_terms`, what
  ``translate`` pastes at full resolution.
* ``state_dict()`` / ``load_state_dict(state, for_inference)`` (training checkpoints, EMA included) and
  ``inference_state()`` (what the final teacher file holds; EMA weights).
* ``base_info()``: a pretrained base the teacher depends on (recorded in ``config.yaml``), or None.

The EMA over ``trainable()`` is shared here: :meth:`enable_ema`, :meth:`after_step`, :meth:`ema_weights`.
"""
from __future__ import annotations

import contextlib
from typing import Callable

from makeup.errors import TinyBeautyError

BACKENDS: dict[str, Callable] = {}
DEFAULT_BACKEND = "tiny-ddpm"


class TeacherBackend:
    """Base class of the teacher backends (see the module docstring for the contract)."""

    name = ""
    config: dict
    defaults: dict = {}  # every key ``config`` may hold, with its default
    ema = None
    # translate() adds ``alpha`` x the image-space region prior (painted with full-resolution masks) to what
    # ``sample`` returns; a backend whose sample already contains its prior sets this False.
    pastes_region_prior = True

    @classmethod
    def from_config(cls, config: dict) -> "TeacherBackend":
        return cls(config)

    # --- must be provided --------------------------------------------------------------------------------
    @property
    def head(self):
        raise NotImplementedError

    def prepare(self, pairs, style: str | None = None) -> None:
        raise NotImplementedError

    def trainable(self) -> list:
        raise NotImplementedError

    def train(self, mode: bool = True) -> "TeacherBackend":
        raise NotImplementedError

    def to(self, device) -> "TeacherBackend":
        raise NotImplementedError

    def training_loss(self, batch: dict, generator=None):
        raise NotImplementedError

    def sample(self, source, masks, generators, steps: int | None = None):
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict, for_inference: bool = False) -> None:
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------------------------
    def inference_state(self) -> dict:
        """What the final teacher file holds (default: the training state; EMA weights are inside it)."""
        return self.state_dict()

    def base_info(self) -> dict | None:
        """The pretrained base this teacher needs at run time ({"path", "fingerprint"}), or None."""
        return None

    def paste_terms(self) -> dict:
        """What ``translate`` pastes besides the sampled residual: FGMM weights, alpha, the image-space
        region prior, its feature templates and region models (None when ``sample`` already contains the
        prior)."""
        head = self.head
        return {"fgmm_weights": head.fgmm.region_weights.detach().float().cpu().numpy(),
                "alpha": float(head.alpha.detach()),
                "region_prior": head.region_prior.detach().float().cpu().numpy() if self.pastes_region_prior
                else None,
                "region_colour": head.region_colour.detach().float().cpu().numpy() if self.pastes_region_prior
                else None,
                "templates": head.templates() if self.pastes_region_prior else None,
                "models": head.models() if self.pastes_region_prior else None,
                "prior_eye_zone": bool(self.config.get("prior_eye_zone", False)) and self.pastes_region_prior}

    def enable_ema(self) -> None:
        """EMA (diffusers ``EMAModel``, warm-up) over the trainable parameters only."""
        from diffusers.training_utils import EMAModel

        self.ema = EMAModel(self.trainable(), decay=float(self.config["ema_decay"]),
                            use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)

    def after_step(self) -> None:
        if self.ema is not None:
            self.ema.step(self.trainable())

    @contextlib.contextmanager
    def ema_weights(self):
        """The EMA weights in place of the trained ones inside the block (no-op without EMA)."""
        params = self.trainable()
        if self.ema is None:
            yield self
            return
        self.ema.store(params)
        self.ema.copy_to(params)
        try:
            yield self
        finally:
            self.ema.restore(params)


def register_backend(name: str):
    def deco(factory):
        BACKENDS[name] = factory
        return factory
    return deco


def _load_builtin() -> None:
    from . import sd15_lora, tiny_ddpm  # noqa: F401  (registration side effect)


def available_backends() -> list[str]:
    _load_builtin()
    return sorted(BACKENDS)


def get_backend(name: str) -> Callable:
    """The backend class registered as ``name`` (one error line naming the choices otherwise)."""
    _load_builtin()
    if name not in BACKENDS:
        raise TinyBeautyError(f"unknown teacher backend {name!r}: choose one of {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name]
