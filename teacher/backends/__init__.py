"""Teacher backends: one registry, one interface, shared by `teacher train`, `amplify` and `fidelity`.

A backend is a class registered under a CLI name. It owns its networks and exposes:
``from_config(config) -> backend``, ``.config`` (JSON/YAML-able, enough to rebuild it), ``.trainable()``
(parameters), ``.training_loss(batch, generator) -> (loss, parts)``, ``.after_step()`` (EMA),
``.sample(source, masks, generators) -> residual (N, 3, s, s)`` (image space, ungated),
``.head`` (:class:`teacher.formulation.ResidualHead`), ``.state_dict()`` / ``.load_state_dict()``,
``.to(device)``.
"""
from __future__ import annotations

from typing import Callable

from makeup.errors import TinyBeautyError

BACKENDS: dict[str, Callable] = {}
DEFAULT_BACKEND = "tiny-ddpm"


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
