"""Profiles (``configs/<name>.yaml``) and the typed settings each stage builds from them.

``load_profile("demo")`` or ``load_profile("path/to/file.yaml")`` -> dict. Sections: ``teacher``, ``amplify``,
``student``, ``export``, ``demo``. Each stage turns its section plus the CLI's overrides into one frozen
dataclass (:class:`StageSettings`), which rejects unknown keys and is saved as ``settings.yaml`` beside the
stage's output.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar, get_type_hints

import yaml

from .errors import TinyBeautyError

PROFILE_SECTIONS = ("name", "teacher", "amplify", "student", "export", "demo")
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
    unknown = sorted(set(data) - set(PROFILE_SECTIONS), key=str)
    if unknown:
        raise TinyBeautyError(f"{p}: unknown section {unknown[0]!r}; known: {', '.join(PROFILE_SECTIONS)}")
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


# --- typed stage settings -----------------------------------------------------------------------------------
SETTINGS_FILE = "settings.yaml"


def check_keys(data: dict, known, where: str) -> None:
    """One error line naming the first unknown key, the stage it was given to and the keys that stage knows."""
    unknown = sorted(set(data) - set(known), key=str)
    if unknown:
        raise TinyBeautyError(f"unknown {where} setting {unknown[0]!r}"
                              + (f" (and {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else "")
                              + f"; known: {', '.join(sorted(known))}")


def _coerce(value, kind, where: str, key: str):
    """YAML/CLI scalars to the field's type (int, float, bool, str); None stays None where allowed."""
    if value is None:
        return None
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if kind is int and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
        if kind is float and not isinstance(value, bool):
            return float(value)
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        if kind not in (bool, int, float, str):
            return value
    raise TinyBeautyError(f"{where} setting {key!r}: expected {kind.__name__}, got {value!r}")


@dataclass(frozen=True)
class StageSettings:
    """Base of the typed settings of one stage (a frozen dataclass per stage: ``teacher.train.TeacherSettings``,
    ``teacher.amplify.AmplifySettings``, ``student.train.StudentSettings``, ``export.pipeline.ExportSettings``).

    :meth:`build` layers the stage's defaults <- a profile section (its ``None`` values count) <- CLI overrides
    (``None`` = flag not given); an unknown key is one error line. :meth:`save` writes ``settings.yaml`` into
    the stage's output folder: what the run ran with, the profile it came from and the CLI overrides.
    Mapping fields (``model``, ``augment``, ``loss``) are checked by the stage's ``__post_init__``."""

    STAGE: ClassVar[str] = ""
    # What produced these values (profile name, CLI overrides); recorded, never compared.
    provenance: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def known_keys(cls) -> list[str]:
        return sorted(f.name for f in fields(cls) if f.name != "provenance")

    @classmethod
    def build(cls, section: dict | None = None, overrides: dict | None = None, *,
              profile: str | None = None):
        defaults = {f.name: getattr(cls(), f.name) for f in fields(cls) if f.name != "provenance"}
        section = dict(section or {})
        over = {k: v for k, v in (overrides or {}).items() if v is not None}
        check_keys(section, defaults, cls.STAGE)
        check_keys(over, defaults, cls.STAGE)
        data = dict(defaults)
        for k, v in section.items():  # a profile's explicit null replaces the default
            data[k] = merge(data[k], v) if isinstance(v, dict) and isinstance(data[k], dict) else v
        data = merge(data, over)
        hints = get_type_hints(cls)
        for k in list(data):
            kinds = [t for t in getattr(hints[k], "__args__", (hints[k],)) if t is not type(None)]
            if len(kinds) == 1 and kinds[0] in (bool, int, float, str):
                data[k] = _coerce(data[k], kinds[0], cls.STAGE, k)
        prov = {"profile": profile, "overrides": over} if profile is not None or over else {}
        return cls(**data, provenance=prov)

    @classmethod
    def of(cls, value):
        """``value`` as this stage's settings: an instance as is, a mapping (or None) through :meth:`build`."""
        return value if isinstance(value, cls) else cls.build(value)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("provenance", None)
        return json.loads(json.dumps(out))  # tuples -> lists: plain YAML/JSON data

    def differences(self, recorded: dict, ignore=()) -> list[str]:
        """Keys whose value differs from a recorded ``to_dict()`` (``ignore``: keys that may change). A key the
        record lacks (it was added after the run) counts as its default: the old run ran without it."""
        mine, defaults = self.to_dict(), type(self)().to_dict()
        return [k for k in mine if k not in ignore and mine[k] != recorded.get(k, defaults[k])]

    def save(self, folder: str | os.PathLike, **inputs) -> Path:
        """``folder/settings.yaml``: stage, profile, CLI overrides, the resolved settings, the run's inputs."""
        from .io import write_text_atomic

        record = {"stage": self.STAGE, "profile": self.provenance.get("profile"),
                  "overrides": self.provenance.get("overrides") or {}, "settings": self.to_dict()}
        if inputs:
            record["inputs"] = json.loads(json.dumps(inputs, default=str))
        path = Path(folder) / SETTINGS_FILE
        write_text_atomic(path, yaml.safe_dump(record, sort_keys=False))
        return path


def read_settings(folder: str | os.PathLike) -> dict | None:
    """The ``settings.yaml`` record a stage left in ``folder`` (None when there is none)."""
    path = Path(folder) / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        raise TinyBeautyError(f"{path}: not valid YAML; remove it or use a new folder") from None
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        raise TinyBeautyError(f"{path}: not a settings record; remove it or use a new folder")
    return data
