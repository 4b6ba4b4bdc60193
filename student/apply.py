"""``tinybeauty apply``: full-size photo -> aligned 256 crop -> student -> look gate -> paste back -> same-size photo.

The look gate (``makeup.gate.LookGate``, from the checkpoint's meta or the ``model_card.json`` beside an exported
file) clips the student's change to the range the look shows in each region, over regions parsed from the
photo's own face mesh: a model that learned on synthetic faces cannot paint red on a real nose.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from makeup.errors import NoFaceError, TinyBeautyError
from makeup.gate import LookGate
from makeup.io import list_images, load_image, save_image

from .runtime import Runner, load_runner

log = logging.getLogger("tinybeauty")

CROP_SIZE = 256


def apply_to_crop(runner: Runner, crop: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """uint8 (H, W, 3) crop (and its (H, W) region labels, which a region-input student needs) -> uint8 crop
    with the look."""
    x = (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    y = np.clip(runner(x, None if labels is None else labels[None])[0].transpose(1, 2, 0), 0.0, 1.0)
    return np.round(y * 255.0).astype(np.uint8)


def gated_crop(runner: Runner, aligned, gate: LookGate | None) -> np.ndarray:
    """The student's output for an aligned face, clipped by ``gate`` over the crop's face-mesh regions (the
    same regions a region-input student reads)."""
    from makeup.parsing import landmarks_to_labels

    if aligned.landmarks is None:
        if runner.region_input:
            raise TinyBeautyError(f"{runner.path.name} needs the face's regions, and this crop has no face mesh")
        return apply_to_crop(runner, aligned.crop)
    labels = landmarks_to_labels(aligned.landmarks, aligned.crop.shape[:2])
    out = apply_to_crop(runner, aligned.crop, labels)
    return out if gate is None else gate.apply(aligned.crop, out, labels)


def apply_to_photo(runner: Runner, photo: np.ndarray, name: str = "image", size: int = CROP_SIZE,
                   gate: LookGate | None = None) -> np.ndarray:
    """Same-size uint8 photo, changed only inside the (feathered) face region. Raises NoFaceError."""
    from makeup.align import align_face, paste_back

    if runner.size is not None:
        size = runner.size[0]
    aligned = align_face(photo, size=size, name=name)
    return paste_back(photo, gated_crop(runner, aligned, gate), aligned)


def look_gate_of(model_path: str | os.PathLike) -> LookGate | None:
    """The look gate a model carries: a checkpoint's meta, or ``model_card.json`` beside an exported file."""
    path = Path(model_path)
    if path.suffix == ".pt":
        from .checkpoint import load_student

        data = load_student(path).meta.get("look_gate")
    else:
        card = path.parent / "model_card.json"
        try:
            data = json.loads(card.read_text(encoding="utf-8")).get("look_gate") if card.is_file() else None
        except (OSError, ValueError):
            raise TinyBeautyError(f"{card}: unreadable model card (needed for the look gate; --no-gate skips it)")
    return LookGate.from_dict(data) if data else None


@dataclass
class ApplyReport:
    written: list[Path] = field(default_factory=list)
    no_face: list[Path] = field(default_factory=list)


def apply_path(model: Runner | str | os.PathLike, input_path: str | os.PathLike, out_path: str | os.PathLike,
               progress: bool = True, gate: bool = True) -> ApplyReport:
    """One photo -> one file, or a folder -> a folder (photos without a face are skipped and listed).
    ``gate``: clip the change with the model's look gate (a model without one is applied ungated, with a
    warning)."""
    runner = model if isinstance(model, Runner) else load_runner(model)
    runner.look_prior  # noqa: B018 (a prior-input model without its prior: one error before any work)
    look_gate = look_gate_of(runner.path) if gate else None
    if gate and look_gate is None:
        log.warning("%s carries no look gate (older checkpoint or no model_card.json beside it): applied ungated",
                    runner.path.name)
    src, out = Path(input_path), Path(out_path)
    report = ApplyReport()
    if not src.exists():
        raise TinyBeautyError(f"{src}: no such photo or folder")
    if src.is_file():
        if out.is_dir():
            out = out / f"{src.stem}.png"
        save_image(out, apply_to_photo(runner, load_image(src), name=str(src), gate=look_gate))
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
            result = apply_to_photo(runner, load_image(photo), name=str(photo), gate=look_gate)
        except NoFaceError:
            report.no_face.append(photo)
            continue
        target = out / f"{photo.stem}.png"
        save_image(target, result)
        report.written.append(target)
    return report
