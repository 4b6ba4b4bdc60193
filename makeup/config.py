"""Profiles (``configs/<name>.yaml``): one YAML file per compute budget, one section per stage.

``load_profile("demo")`` or ``load_profile("path/to/file.yaml")`` -> dict. Sections: ``teacher``, ``amplify``,
``student``, ``export``, ``demo``. Stages read their own section and merge CLI overrides on top.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from .errors import TinyBeautyError

CONFIG_DIR = Path(os.environ.get("TINYBEAUTY_CONFIGS", Path(__file__).resolve().parents[1] / "configs"))


def available_profiles() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | os.PathLike) -> dict:
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        p = CONFIG_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        raise TinyBeautyError(f"unknown profile {str(name_or_path)!r}: choose one of {available_profiles()} "
                              "or give a YAML file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise TinyBeautyError(f"{p}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise TinyBeautyError(f"{p}: a profile must be a mapping of sections")
    data.setdefault("name", p.stem)
    return data


def section(profile: dict, name: str) -> dict:
    return dict(profile.get(name) or {})


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge; ``None`` values in ``override`` do not replace."""
    out = dict(base)
    for k, v in override.items():
        if v is None:
            continue
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
