"""Region parsing behind one interface: a photo -> label map (0 other, 1 eyes, 2 lips, 3 skin, 4 brows).

Backends (``get_parser(name)``):

* ``synthetic`` - the exact map the generator wrote beside the image (``labels/<stem>.png``);
* ``facer``     - pyfacer's FaRL LaPa parser, from local weights only (``--facer-weights`` /
                  ``TINYBEAUTY_FACER_WEIGHTS``); faces are located with mediapipe, so no detector weights;
* ``mediapipe`` - polygons from the 478 face-mesh landmarks (ships with mediapipe 0.10.21, offline);
* ``auto``      - the best available per image: synthetic sidecar, else facer if its weights exist, else
                  mediapipe; ``.name`` reports which one ran last.

:func:`prepare_face` is the one entry point the teacher, the renderer and ``apply`` share: photo ->
aligned crop + label map of the crop + the alignment (for paste-back).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol, Union

import numpy as np

from .align import AlignedFace, align_face, detect_landmarks, five_points, identity_alignment
from .errors import TinyBeautyError
from .io import load_image, load_label_map
from .regions import BROWS, EYES, LIPS, NUM_LABELS, OTHER, SKIN

log = logging.getLogger(__name__)

FACER_WEIGHTS_ENV = "TINYBEAUTY_FACER_WEIGHTS"
PARSER_NAMES = ("auto", "mediapipe", "facer", "synthetic")

# Face-mesh polygons (mediapipe 478-point topology; "right" = the subject's right = image left).
# "Eyes" is the eye opening up to the lash lines, as in the synthetic maps and LaPa; the lids are skin
# (the renderer finds the lid above the opening and never paints the eyeball itself).
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)

# LaPa classes -> ours. LaPa: 0 background, 1 skin, 2 left brow, 3 right brow, 4 left eye, 5 right eye,
# 6 nose, 7 upper lip, 8 inner mouth, 9 lower lip, 10 hair. The nose is skin (foundation covers it);
# the inner mouth (teeth, tongue) is never painted.
LAPA_TO_OURS = np.array([OTHER, SKIN, BROWS, BROWS, EYES, EYES, SKIN, LIPS, OTHER, LIPS, OTHER], np.uint8)


class RegionParser(Protocol):
    name: str

    def parse(self, image: np.ndarray, path: Optional[Union[str, os.PathLike]] = None,
              landmarks: Optional[np.ndarray] = None) -> np.ndarray:
        """Label map (H, W) uint8 at the image's size. ``landmarks`` (478, 2) skips face detection."""


def sidecar_path(path: Union[str, os.PathLike]) -> Path:
    """Where the generator puts an image's exact map: ``<folder>/labels/<stem>.png``."""
    p = Path(path)
    return p.parent / "labels" / f"{p.stem}.png"


def _validate_labels(labels: np.ndarray, shape: tuple[int, int], source: str) -> np.ndarray:
    lab = np.asarray(labels, np.uint8)
    if lab.shape != tuple(shape):
        raise TinyBeautyError(f"{source}: label map is {lab.shape[1]}x{lab.shape[0]}, "
                              f"image is {shape[1]}x{shape[0]}")
    if lab.size and int(lab.max()) >= NUM_LABELS:
        raise TinyBeautyError(f"{source}: label value {int(lab.max())} is not a region (0..{NUM_LABELS - 1})")
    return lab


class SyntheticParser:
    """Exact maps from the generator's sidecar files."""

    name = "synthetic"

    def parse(self, image, path=None, landmarks=None) -> np.ndarray:
        if path is None:
            raise TinyBeautyError("the synthetic parser needs the image's path (it reads labels/<stem>.png)")
        side = sidecar_path(path)
        if not side.is_file():
            raise TinyBeautyError(f"{path}: no exact label map at {side} (use --parser mediapipe or facer)")
        return _validate_labels(load_label_map(side), np.asarray(image).shape[:2], str(side))


def _fill(labels: np.ndarray, points: np.ndarray, ids: tuple[int, ...], value: int) -> None:
    import cv2

    poly = np.round(points[list(ids)] * 16).astype(np.int32)  # 4 fractional bits: sub-pixel edges
    cv2.fillPoly(labels, [poly], int(value), lineType=cv2.LINE_8, shift=4)


def landmarks_to_labels(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise face-mesh polygons into a label map: face oval = skin, then eyes, brows, lips, and the
    inner mouth back to other (later regions win where polygons overlap)."""
    from .align import FACE_OVAL

    pts = np.asarray(landmarks, np.float64)
    labels = np.zeros(shape, np.uint8)
    _fill(labels, pts, FACE_OVAL, SKIN)
    _fill(labels, pts, RIGHT_EYE, EYES)
    _fill(labels, pts, LEFT_EYE, EYES)
    _fill(labels, pts, RIGHT_BROW, BROWS)
    _fill(labels, pts, LEFT_BROW, BROWS)
    _fill(labels, pts, LIPS_OUTER, LIPS)
    _fill(labels, pts, LIPS_INNER, OTHER)
    return labels


class MediapipeParser:
    """Face-mesh landmarks -> polygons -> label map at the photo's size."""

    name = "mediapipe"

    def parse(self, image, path=None, landmarks=None) -> np.ndarray:
        img = np.asarray(image)
        lm = detect_landmarks(img, str(path or "image")) if landmarks is None else landmarks
        return landmarks_to_labels(lm, img.shape[:2])


def lapa_logits_to_labels(logits) -> np.ndarray:
    """LaPa logits (11, H, W) or (1, 11, H, W) -> our label map (H, W) uint8."""
    arr = np.asarray(logits.detach().cpu().numpy() if hasattr(logits, "detach") else logits)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[0] != len(LAPA_TO_OURS):
        raise TinyBeautyError(f"expected LaPa logits with {len(LAPA_TO_OURS)} classes, got shape {arr.shape}")
    return LAPA_TO_OURS[arr.argmax(axis=0)]


def resolve_facer_weights(weights: Optional[Union[str, os.PathLike]] = None) -> Optional[Path]:
    """The FaRL LaPa TorchScript file from the argument or ``TINYBEAUTY_FACER_WEIGHTS``; None if unset."""
    value = weights or os.environ.get(FACER_WEIGHTS_ENV)
    return Path(value).expanduser() if value else None


class FacerParser:
    """pyfacer's FaRL LaPa parser (``farl/lapa/448``) from a local TorchScript file; never downloads."""

    name = "facer"

    def __init__(self, weights: Optional[Union[str, os.PathLike]] = None, device: str = "cpu") -> None:
        path = resolve_facer_weights(weights)
        if path is None:
            raise TinyBeautyError(f"the facer parser needs local FaRL LaPa weights: pass --facer-weights PATH "
                                  f"or set {FACER_WEIGHTS_ENV} (face_parsing.farl.lapa.*.pt)")
        if not path.is_file():
            raise TinyBeautyError(f"--facer-weights {path}: no such file")
        import contextlib
        import io
        import warnings

        import torch

        # pyfacer prints "failed downloading from <path>" on any load failure and imports deprecated timm
        # paths; the user gets our one line instead.
        try:
            with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore", FutureWarning)
                from facer.face_parsing import FaRLFaceParser

                self._model = FaRLFaceParser("lapa/448", model_path=str(path), device=torch.device(device))
        except Exception as exc:  # a wrong file: one line, not a TorchScript traceback
            raise TinyBeautyError(f"--facer-weights {path}: not a FaRL LaPa TorchScript model "
                                  f"({exc.__class__.__name__})") from None
        self._device = torch.device(device)

    def parse(self, image, path=None, landmarks=None) -> np.ndarray:
        import torch

        img = np.asarray(image)
        lm = detect_landmarks(img, str(path or "image")) if landmarks is None else landmarks
        batch = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].to(self._device)
        data = {"points": torch.from_numpy(five_points(lm)).float()[None].to(self._device),
                "image_ids": torch.zeros(1, dtype=torch.long, device=self._device)}
        try:
            out = self._model(batch, data)
        except Exception as exc:
            raise TinyBeautyError(f"facer parser failed on {path or 'image'} "
                                  f"({exc.__class__.__name__}: {exc})") from None
        return lapa_logits_to_labels(out["seg"]["logits"])


class AutoParser:
    """Picks per image: synthetic sidecar, else facer if its weights exist, else mediapipe."""

    def __init__(self, facer_weights: Optional[Union[str, os.PathLike]] = None) -> None:
        self._facer_weights = facer_weights
        self._backends: dict[str, RegionParser] = {}
        self.picked: Optional[str] = None

    @property
    def name(self) -> str:
        return self.picked or "auto"

    def choose(self, path=None) -> RegionParser:
        if path is not None and sidecar_path(path).is_file():
            choice = "synthetic"
        else:
            weights = resolve_facer_weights(self._facer_weights)
            choice = "facer" if weights is not None and weights.is_file() else "mediapipe"
        if choice != self.picked:
            log.info("parser auto: using %s", choice)
            self.picked = choice
        if choice not in self._backends:
            self._backends[choice] = get_parser(choice, facer_weights=self._facer_weights)
        return self._backends[choice]

    def parse(self, image, path=None, landmarks=None) -> np.ndarray:
        return self.choose(path).parse(image, path=path, landmarks=landmarks)


_BACKENDS: dict[str, Callable[..., RegionParser]] = {
    "synthetic": lambda facer_weights=None: SyntheticParser(),
    "mediapipe": lambda facer_weights=None: MediapipeParser(),
    "facer": lambda facer_weights=None: FacerParser(facer_weights),
    "auto": lambda facer_weights=None: AutoParser(facer_weights),
}


def get_parser(name: str = "auto", facer_weights: Optional[Union[str, os.PathLike]] = None) -> RegionParser:
    """A region parser by name: auto | mediapipe | facer | synthetic."""
    if not isinstance(name, str) and hasattr(name, "parse"):
        return name  # already a parser
    if name not in _BACKENDS:
        raise TinyBeautyError(f"unknown parser {name!r}; choose one of {', '.join(PARSER_NAMES)}")
    return _BACKENDS[name](facer_weights=facer_weights)


@dataclass(frozen=True)
class PreparedFace:
    """An aligned face crop, its region labels (same size), and the alignment for paste-back."""

    crop: np.ndarray
    labels: np.ndarray
    aligned: AlignedFace


def _warp_labels(labels: np.ndarray, aligned: AlignedFace) -> np.ndarray:
    import cv2

    return cv2.warpAffine(labels, aligned.matrix, (aligned.size, aligned.size), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=OTHER)


def prepare_face(path_or_image: Union[str, os.PathLike, np.ndarray], size: int = 256,
                 parser: Union[str, RegionParser] = "auto",
                 facer_weights: Optional[Union[str, os.PathLike]] = None) -> PreparedFace:
    """Photo (path or RGB uint8 array) -> :class:`PreparedFace` with a ``size`` crop and its label map.

    A ``size`` x ``size`` image with an exact sidecar ``labels/<stem>.png`` (``synth-faces`` output) is
    taken as is with an identity alignment. Any other photo is aligned with face-mesh landmarks, then
    parsed on the crop (a sidecar map of a photo is warped with the same matrix). Raises ``NoFaceError``.
    """
    path: Optional[Path] = None
    if isinstance(path_or_image, (str, os.PathLike)):
        path = Path(path_or_image)
        image = load_image(path)
    else:
        image = np.asarray(path_or_image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] < 3 or image.dtype != np.uint8:
            raise TinyBeautyError(f"expected an RGB uint8 image, got {image.dtype} {image.shape}")
        image = image[..., :3]
    name = str(path) if path is not None else "image"
    backend = get_parser(parser, facer_weights=facer_weights)
    chosen = backend.choose(path) if isinstance(backend, AutoParser) else backend
    if isinstance(chosen, SyntheticParser):
        labels = chosen.parse(image, path=path)
        if image.shape[0] == image.shape[1]:  # an aligned crop, maybe of another size: rescale only
            aligned = identity_alignment(image, size)
            return PreparedFace(crop=aligned.crop, labels=_warp_labels(labels, aligned), aligned=aligned)
        aligned = align_face(image, size, name=name)
        return PreparedFace(crop=aligned.crop, labels=_warp_labels(labels, aligned), aligned=aligned)
    aligned = align_face(image, size, name=name)
    labels = chosen.parse(aligned.crop, path=path, landmarks=aligned.landmarks)
    return PreparedFace(crop=aligned.crop, labels=labels, aligned=aligned)
