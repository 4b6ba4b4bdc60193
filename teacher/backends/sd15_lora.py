"""Stable Diffusion 1.5 + LoRA backend (seed 000): registered so the CLI knows the name; built in a later issue.

It will plug into the same residual formulation (teacher.formulation) and the same train/sample/amplify path.
"""
from __future__ import annotations

from makeup.errors import TinyBeautyError

from . import register_backend


@register_backend("sd15-lora")
class SD15LoRABackend:
    name = "sd15-lora"

    @classmethod
    def from_config(cls, config: dict):
        path = (config or {}).get("sd_path")
        if not path:
            raise TinyBeautyError("backend sd15-lora needs local Stable Diffusion 1.5 weights (--sd-path DIR) "
                                  "and is not built yet; use --backend tiny-ddpm")
        raise TinyBeautyError(f"backend sd15-lora is not built yet (weights at {path} were not loaded); "
                              "use --backend tiny-ddpm")
