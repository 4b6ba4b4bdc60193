"""Makeup looks as data: a ``Style`` is six optional products, each a few bounded numbers and a colour.

A style file is YAML::

    name: glamorous
    description: one line
    lipstick:   {color: "#a3172f", opacity: 0.85, gloss: 0.4}
    eyeshadow:  {color: "#5b3552", opacity: 0.6, extent: 0.7, lower: 0.1}
    eyeliner:   {color: "#140f10", opacity: 0.95, thickness: 0.6, wing: 0.7}
    blush:      {color: "#d8646e", opacity: 0.3, size: 0.6}
    foundation: {tone: "#e6bc9c", coverage: 0.3, smoothing: 0.5}
    brow_tint:  {color: "#3a281e", opacity: 0.4}

A product left out is not applied. Colours are ``"#rrggbb"`` or ``[r, g, b]`` (0-255). Every number has a range
(``PRODUCTS`` below); an unknown key or a value out of range is one :class:`TinyBeautyError` naming the key and
the file. Built-in looks live in ``makeup/styles/<name>.yaml``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import TinyBeautyError

STYLE_DIR = Path(__file__).resolve().parent / "styles"
BUILTIN_STYLES: tuple[str, ...] = ("natural", "glamorous", "smokey_eyes", "red_lip", "korean")

Color = tuple[int, int, int]
# product -> field -> (kind, low, high, default). kind "color" takes no range.
PRODUCTS: dict[str, dict[str, tuple[str, float, float, Any]]] = {
    "lipstick": {"color": ("color", 0, 0, None), "opacity": ("float", 0.0, 1.0, 0.8),
                 "gloss": ("float", 0.0, 1.0, 0.0)},
    "eyeshadow": {"color": ("color", 0, 0, None), "opacity": ("float", 0.0, 1.0, 0.5),
                  "extent": ("float", 0.0, 1.0, 0.5), "lower": ("float", 0.0, 1.0, 0.0)},
    "eyeliner": {"color": ("color", 0, 0, (20, 16, 16)), "opacity": ("float", 0.0, 1.0, 0.9),
                 "thickness": ("float", 0.0, 1.0, 0.4), "wing": ("float", 0.0, 1.0, 0.0)},
    "blush": {"color": ("color", 0, 0, None), "opacity": ("float", 0.0, 1.0, 0.3),
              "size": ("float", 0.0, 1.0, 0.5)},
    "foundation": {"tone": ("color", 0, 0, None), "coverage": ("float", 0.0, 1.0, 0.3),
                   "smoothing": ("float", 0.0, 1.0, 0.3)},
    "brow_tint": {"color": ("color", 0, 0, None), "opacity": ("float", 0.0, 1.0, 0.4)},
}
TOP_KEYS = ("name", "description", *PRODUCTS)


@dataclass(frozen=True)
class Product:
    """One product of a look: its kind (a key of ``PRODUCTS``) and its validated parameters."""

    kind: str
    params: dict[str, Any]

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["params"][key]
        except KeyError:
            raise AttributeError(key) from None

    def __hash__(self) -> int:
        return hash((self.kind, tuple(sorted(self.params.items()))))

    def to_dict(self) -> dict[str, Any]:
        return {k: (_hex(v) if PRODUCTS[self.kind][k][0] == "color" else v) for k, v in self.params.items()}


@dataclass(frozen=True)
class Style:
    """A makeup look. ``products`` maps a product kind to its :class:`Product`; absent kinds are not applied."""

    name: str
    description: str = ""
    products: dict[str, Product] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:
        if key in PRODUCTS:
            return self.__dict__["products"].get(key)
        raise AttributeError(key)

    def __hash__(self) -> int:  # usable as a cache key although ``products`` is a dict
        return hash((self.name, self.description, tuple(sorted(self.products.items()))))

    def touched_mask(self, labels: np.ndarray) -> np.ndarray:
        """bool (H, W): the pixels :func:`makeup.render.render_makeup` may change for this label map."""
        from .render import touched_mask

        return touched_mask(labels, self)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        for kind in PRODUCTS:
            if kind in self.products:
                out[kind] = self.products[kind].to_dict()
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=120)

    def save(self, path: str | os.PathLike) -> None:
        from .io import write_text_atomic

        write_text_atomic(path, self.to_yaml())


def _hex(c: Color) -> str:
    return "#{:02x}{:02x}{:02x}".format(*c)


def _parse_color(value: Any, where: str) -> Color:
    if isinstance(value, str):
        s = value.strip().lstrip("#")
        if len(s) == 6:
            try:
                return int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16)
            except ValueError:
                pass
    elif isinstance(value, (list, tuple)) and len(value) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
        return int(round(value[0])), int(round(value[1])), int(round(value[2]))
    raise TinyBeautyError(f"{where} = {value!r} is not a colour (use \"#rrggbb\" or [r, g, b] in 0..255)")


def _parse_product(kind: str, raw: Any, source: str) -> Product:
    fields = PRODUCTS[kind]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise TinyBeautyError(f"{source}: '{kind}' must be a mapping of {sorted(fields)}")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise TinyBeautyError(f"{source}: unknown key '{kind}.{unknown[0]}' (valid keys for {kind}: "
                              f"{', '.join(fields)})")
    params: dict[str, Any] = {}
    for key, (ftype, lo, hi, default) in fields.items():
        where = f"{source}: {kind}.{key}"
        if key not in raw:
            if default is None:
                raise TinyBeautyError(f"{where} is missing (required)")
            params[key] = default
            continue
        value = raw[key]
        if ftype == "color":
            params[key] = _parse_color(value, where)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise TinyBeautyError(f"{where} = {value!r} is not a number in [{lo}, {hi}]")
        if not lo <= value <= hi:
            raise TinyBeautyError(f"{where} = {value} is out of range [{lo}, {hi}]")
        params[key] = float(value)
    return Product(kind, params)


def style_from_dict(data: Any, source: str = "<style>", default_name: str = "custom") -> Style:
    """Validate a parsed style mapping; ``source`` names the file in error messages."""
    if not isinstance(data, dict):
        raise TinyBeautyError(f"{source}: a style must be a YAML mapping with keys {', '.join(TOP_KEYS)}")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise TinyBeautyError(f"{source}: unknown key '{unknown[0]}' (valid keys: {', '.join(TOP_KEYS)})")
    name = str(data.get("name") or default_name)
    products = {kind: _parse_product(kind, data[kind], source) for kind in PRODUCTS if kind in data}
    if not products:
        raise TinyBeautyError(f"{source}: the style applies no product (give at least one of "
                              f"{', '.join(PRODUCTS)})")
    return Style(name=name, description=str(data.get("description") or ""), products=products)


def load_style(name_or_path: str | os.PathLike | Style) -> Style:
    """A built-in look by name (``natural`` ...) or a YAML file; one clear error for anything else."""
    if isinstance(name_or_path, Style):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if path.suffix.lower() not in (".yaml", ".yml"):
        path = STYLE_DIR / f"{text}.yaml"
        if not path.is_file():
            raise TinyBeautyError(f"unknown style {text!r}: choose one of {', '.join(list_styles())} "
                                  "or give a style .yaml file")
    if not path.is_file():
        raise TinyBeautyError(f"{path}: no such style file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise TinyBeautyError(f"{path}: not valid YAML ({first})") from None
    return style_from_dict(data, source=str(path), default_name=path.stem)


def list_styles() -> list[str]:
    """Names of the built-in looks (the files in ``makeup/styles``)."""
    return sorted(p.stem for p in STYLE_DIR.glob("*.yaml"))
