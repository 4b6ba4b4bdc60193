"""``tinybeauty apply``: full-size photo -> aligned 256 crop -> student -> paste back -> same-size photo."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from makeup.errors import NoFaceError, TinyBeautyError
from makeup.io import list_images, load_image, save_image

from .runtime import Runner, load_runner

log = logging.getLogger("tinybeauty")

CROP_SIZE = 256


def apply_to_crop(runner: Runner, crop: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) crop -> uint8 crop with the look."""
    x = (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    y = np.clip(runner(x)[0].transpose(1, 2, 0), 0.0, 1.0)
    return np.round(y * 255.0).astype(np.uint8)


def apply_to_photo(runner: Runner, photo: np.ndarray, name: str = "image", size: int = CROP_SIZE) -> np.ndarray:
    """Same-size uint8 photo, changed only inside the (feathered) face region. Raises NoFaceError."""
    from makeup.align import align_face, paste_back

    if runner.size is not None:
        size = runner.size[0]
    aligned = align_face(photo, size=size, name=name)
    return paste_back(photo, apply_to_crop(runner, aligned.crop), aligned)


@dataclass
class ApplyReport:
    written: list[Path] = field(default_factory=list)
    no_face: list[Path] = field(default_factory=list)


def apply_path(model: Runner | str | os.PathLike, input_path: str | os.PathLike, out_path: str | os.PathLike,
               progress: bool = True) -> ApplyReport:
    """One photo -> one file, or a folder -> a folder (photos without a face are skipped and listed)."""
    runner = model if isinstance(model, Runner) else load_runner(model)
    src, out = Path(input_path), Path(out_path)
    report = ApplyReport()
    if not src.exists():
        raise TinyBeautyError(f"{src}: no such photo or folder")
    if src.is_file():
        if out.is_dir():
            out = out / f"{src.stem}.png"
        save_image(out, apply_to_photo(runner, load_image(src), name=str(src)))
        report.written.append(out)
        return report
    photos = list_images(src)
    if not photos:
        raise TinyBeautyError(f"{src}: no images in this folder")
    if out.exists() and not out.is_dir():
        raise TinyBeautyError(f"{out}: a folder input needs a folder --out")
    from tqdm import tqdm

    for photo in tqdm(photos, desc="apply", unit="photo", disable=not progress):
        try:
            result = apply_to_photo(runner, load_image(photo), name=str(photo))
        except NoFaceError:
            report.no_face.append(photo)
            continue
        target = out / f"{photo.stem}.png"
        save_image(target, result)
        report.written.append(target)
    return report
