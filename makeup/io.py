"""Image IO and atomic file writes.

Every image that enters the toolkit goes through :func:`load_image`, which normalises RGB, RGBA, grayscale,
palette and 16-bit PNG/JPEG files to RGB ``uint8`` (H, W, 3). Every file the toolkit writes goes through a
temp file + rename, so a killed process never leaves a half-written artifact behind.
"""
from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import TinyBeautyError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def _to_rgb_uint8(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.clip(np.round(np.asarray(img) * (255.0 if np.asarray(img).max() <= 1.0 else 1.0)), 0, 255)
        return np.repeat(arr.astype(np.uint8)[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white: a transparent background is not black skin.
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8).copy()
    if img.mode == "RGB;16" or img.mode.startswith("RGB") and img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); one clear :class:`TinyBeautyError` for anything unusable."""
    p = Path(path)
    if not p.exists():
        raise TinyBeautyError(f"{p}: no such file")
    if p.is_dir():
        raise TinyBeautyError(f"{p}: is a folder, expected an image file")
    if p.stat().st_size == 0:
        raise TinyBeautyError(f"{p}: empty file")
    try:
        with Image.open(p) as img:
            img.load()
            arr = _to_rgb_uint8(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise TinyBeautyError(f"{p}: not a readable image ({exc.__class__.__name__}: {exc})") from None
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise TinyBeautyError(f"{p}: image is {arr.shape[1]}x{arr.shape[0]}, too small")
    return arr


def load_photo(spec: str | os.PathLike) -> np.ndarray:
    """A photo named on the command line: an image file, or ``astronaut`` (skimage's portrait, installed with
    scikit-image: a real face that needs no download)."""
    if str(spec) == "astronaut":
        from skimage import data

        return data.astronaut()
    return load_image(spec)


def load_label_map(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel uint8 label map (H, W)."""
    p = Path(path)
    try:
        with Image.open(p) as img:
            img.load()
            if img.mode not in ("L", "P", "I", "I;16"):
                raise TinyBeautyError(f"{p}: label map must be single-channel, got mode {img.mode}")
            arr = np.asarray(img)
    except FileNotFoundError:
        raise TinyBeautyError(f"{p}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise TinyBeautyError(f"{p}: not a readable label map ({exc})") from None
    return arr.astype(np.uint8)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def remove_stale_temps(path: str | os.PathLike) -> int:
    """Remove temp siblings that :func:`atomic_path` left for ``path`` when its writer was killed (SIGKILL
    skips the cleanup). Only call it for a path no other live process is writing. Returns how many."""
    target = Path(path)
    if not target.parent.is_dir():
        return 0
    stale = list(target.parent.glob(f"{glob.escape(_temp_prefix(target))}*.tmp{glob.escape(target.suffix)}"))
    for p in stale:
        _remove(p)
    return len(stale)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed over ``path``, on failure removed.

    Works for files and for directories (e.g. a CoreML ``.mlpackage``): a directory target is replaced whole.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # the writer decides whether it is a file or a folder
    try:
        yield tmp
        if not tmp.exists():
            raise TinyBeautyError(f"{target}: writer produced nothing")
        if tmp.is_dir():
            old = None
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                _remove(old)
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                _remove(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            _remove(tmp)


def _remove(p: Path) -> None:
    import shutil

    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def save_image(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write an RGB uint8 (H, W, 3) image or a uint8 (H, W) label map, atomically (PNG unless suffix says)."""
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        raise TypeError(f"save_image expects uint8, got {a.dtype}")
    img = Image.fromarray(a)
    target = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(target.suffix.lower(), "PNG")
    with atomic_path(target) as tmp:
        img.save(tmp, format=fmt)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted; a clear error for a missing folder or a file. Hidden
    names are skipped: :func:`atomic_path`'s temp files of a write in progress (another process filling the
    same folder read them half-written) and macOS ``._`` resource forks in a user's photo folder."""
    d = Path(folder)
    if not d.exists():
        raise TinyBeautyError(f"{d}: no such folder")
    if not d.is_dir():
        raise TinyBeautyError(f"{d}: expected a folder of images, got a file")
    return sorted(p for p in d.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 in [0, 1]."""
    return np.asarray(img, dtype=np.float32) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint8 with rounding."""
    return np.clip(np.round(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
