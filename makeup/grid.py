"""Sample image grids: rows of equally sized RGB tiles with optional column titles."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .io import save_image


def _tile(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[:2] != size:
        a = np.asarray(Image.fromarray(a).resize((size[1], size[0]), Image.BILINEAR))
    return a


def heatmap(diff: np.ndarray, scale: float | None = None) -> np.ndarray:
    """|residual| (H, W[, 3]) -> RGB heat map (black -> red -> yellow -> white)."""
    d = np.abs(np.asarray(diff, dtype=np.float32))
    if d.ndim == 3:
        d = d.mean(axis=2)
    s = scale or max(float(d.max()), 1e-6)
    t = np.clip(d / s, 0, 1)
    rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], axis=2)
    return (rgb * 255).astype(np.uint8)


def make_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str] | None = None,
              tile: int | None = None, pad: int = 2, caption: str | None = None) -> np.ndarray:
    """Compose ``rows`` of tiles into one RGB uint8 image; every tile is resized to the first tile's size
    (or ``tile`` x ``tile``). ``titles`` label the columns in a header strip; ``caption`` (the figures a
    reader should see beside the pictures) is wrapped into a footer strip."""
    import textwrap

    if not rows or not rows[0]:
        raise ValueError("make_grid needs at least one tile")
    first = np.asarray(rows[0][0])
    size = (tile, tile) if tile else first.shape[:2]
    ncols = max(len(r) for r in rows)
    header = 16 if titles else 0
    w = ncols * (size[1] + pad) + pad
    lines = textwrap.wrap(caption, max(20, (w - 6) // 6)) if caption else []
    body = header + len(rows) * (size[0] + pad) + pad
    h = body + 12 * len(lines) + (4 if lines else 0)
    canvas = np.full((h, w, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            y = header + pad + r * (size[0] + pad)
            x = pad + c * (size[1] + pad)
            canvas[y:y + size[0], x:x + size[1]] = _tile(img, size)
    if titles or lines:
        pil = Image.fromarray(canvas)
        draw = ImageDraw.Draw(pil)
        for c, t in enumerate(titles or []):
            draw.text((pad + c * (size[1] + pad) + 3, 2), str(t), fill=(0, 0, 0))
        for i, line in enumerate(lines):
            draw.text((pad + 3, body + 2 + 12 * i), line, fill=(0, 0, 0))
        canvas = np.asarray(pil).copy()
    return canvas


def save_grid(path: str | os.PathLike, rows, titles=None, tile=None, caption: str | None = None) -> np.ndarray:
    grid = make_grid(rows, titles, tile, caption=caption)
    save_image(path, grid)
    return grid
