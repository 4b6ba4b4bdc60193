"""Face detection, alignment to a square crop, and residual paste-back into the full-resolution photo.

``tinybeauty apply`` and the Android app follow the same path: detect 478 face-mesh landmarks (mediapipe
0.10.21 ships its models, so this works offline), map eye centres and mouth corners onto a canonical
FFHQ-like template with a similarity transform, warp the photo to a ``size`` x ``size`` crop, run the
model on the crop, and paste only the *change* back:

    photo + inverse_warp(processed_crop - crop) * feathered_face_mask

so an unmodified crop reproduces the photo exactly, the photo keeps its own full-resolution detail, and
no pixel outside the face region can change.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

from .errors import NoFaceError, TinyBeautyError

# Canonical template in units of the crop side (FFHQ framing: eyes a quarter of the side apart, slightly
# above the centre; the whole face plus hair/background margin fits). Order: image-left eye, image-right
# eye, mouth centre (mean of the mouth corners).
TEMPLATE = np.array([[0.375, 0.47], [0.625, 0.47], [0.5, 0.745]], dtype=np.float64)

# Face-mesh landmark indices (mediapipe 478-point topology). "Right" means the subject's right = image left.
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (362, 263)
MOUTH_CORNERS = (61, 291)
NOSE_TIP = 1
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)


@dataclass(frozen=True)
class AlignedFace:
    """A face warped to a square crop.

    ``matrix`` is the 2x3 affine photo -> crop (``cv2.warpAffine`` convention); ``landmarks`` are the
    478 face-mesh points in crop pixels, or ``None`` for an identity alignment of an already-aligned crop
    (then the whole crop counts as the face region). ``photo_shape`` is the (H, W) of the source photo.
    """

    crop: np.ndarray
    matrix: np.ndarray
    size: int
    landmarks: Optional[np.ndarray]
    photo_shape: tuple[int, int]

    @property
    def inverse_matrix(self) -> np.ndarray:
        """2x3 affine crop -> photo."""
        import cv2

        return cv2.invertAffineTransform(self.matrix)

    def key_points(self) -> np.ndarray:
        """(3, 2) image-left eye centre, image-right eye centre, mouth centre in crop pixels."""
        if self.landmarks is None:
            return template_points(self.size)
        return key_points(self.landmarks)


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence the C++ side's stderr chatter (TFLite "Created XNNPACK delegate", absl warnings) that would
    otherwise surround the CLI's single error line; mediapipe has no switch for it. Kept with
    ``TINYBEAUTY_DEBUG=1``."""
    if os.environ.get("TINYBEAUTY_DEBUG"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _FaceMesh:
    """One mediapipe FaceMesh per process (creating it costs about a second); calls are serialised."""

    _instance: Optional["_FaceMesh"] = None
    _create_lock = threading.Lock()

    def __init__(self) -> None:
        import mediapipe as mp

        with _quiet_native_stderr():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=4, refine_landmarks=True, min_detection_confidence=0.5)
        self._lock = threading.Lock()

    @classmethod
    def get(cls) -> "_FaceMesh":
        with cls._create_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def landmarks(self, image: np.ndarray) -> list[np.ndarray]:
        """All faces' landmarks (478, 2) in pixel coordinates of ``image``."""
        h, w = image.shape[:2]
        with self._lock, _quiet_native_stderr():
            result = self._mesh.process(np.ascontiguousarray(image[..., :3], dtype=np.uint8))
        faces = result.multi_face_landmarks or []
        # mediapipe's normalised coordinates span the image edge to edge; pixel centres sit at +0.5.
        return [np.array([[p.x * w - 0.5, p.y * h - 0.5] for p in face.landmark], dtype=np.float64)
                for face in faces]


def _check_photo(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise TinyBeautyError(f"expected an RGB uint8 image (H, W, 3), got {arr.dtype} {arr.shape}")
    return arr[..., :3]


def detect_landmarks(image: np.ndarray, name: str = "image") -> np.ndarray:
    """The largest face's 478 landmarks (pixels); :class:`NoFaceError` naming ``name`` when there is none."""
    faces = _FaceMesh.get().landmarks(_check_photo(image))
    if not faces:
        raise NoFaceError(f"{name}: no face found")
    return max(faces, key=lambda pts: float(np.ptp(pts[:, 0]) * np.ptp(pts[:, 1])))


def key_points(landmarks: np.ndarray) -> np.ndarray:
    """(3, 2): image-left eye centre, image-right eye centre, mouth centre."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_a = lm[list(RIGHT_EYE_CORNERS)].mean(axis=0)
    eye_b = lm[list(LEFT_EYE_CORNERS)].mean(axis=0)
    eyes = sorted([eye_a, eye_b], key=lambda p: p[0])
    return np.stack([eyes[0], eyes[1], lm[list(MOUTH_CORNERS)].mean(axis=0)])


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) RetinaFace-order points (eyes, nose tip, mouth corners; image-left first) for other models."""
    lm = np.asarray(landmarks, dtype=np.float64)
    k = key_points(lm)
    mouth = sorted([lm[MOUTH_CORNERS[0]], lm[MOUTH_CORNERS[1]]], key=lambda p: p[0])
    return np.stack([k[0], k[1], lm[NOSE_TIP], mouth[0], mouth[1]])


def template_points(size: int) -> np.ndarray:
    """The template in pixel coordinates of a ``size`` crop (pixel centres at integers), so crops of
    different sizes frame the face identically."""
    return TEMPLATE * size - 0.5


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) src -> dst, as 2x3."""
    from skimage.transform import SimilarityTransform

    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tform = SimilarityTransform.from_estimate(src, dst)
        ok = bool(tform)
    else:
        tform = SimilarityTransform()
        ok = tform.estimate(src, dst)
    if not ok or not np.all(np.isfinite(tform.params)):
        raise TinyBeautyError("could not fit an alignment transform to the face landmarks")
    return tform.params[:2].astype(np.float64)


def warp_to_crop(photo: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp ``photo`` by ``matrix`` (photo -> crop) into a size x size crop, anti-aliased when shrinking.

    Bilinear sampling alone aliases when the face is much larger than the crop, so the photo is first
    shrunk by a power of two with area averaging and the matrix is composed with that shrink.
    """
    import cv2

    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    src = photo
    m = np.array(matrix, dtype=np.float64)
    while scale < 0.5 and min(src.shape[:2]) >= 4:
        h, w = src.shape[:2]
        src = cv2.resize(src, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        # crop = M @ photo = M @ (S^-1 @ half) with photo = 2 * half + 0.5 (pixel-centre convention)
        sx, sy = w / (w // 2), h / (h // 2)
        to_photo = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        m = (np.vstack([m, [0, 0, 1]]) @ to_photo)[:2]
        scale *= 2.0
    return cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def align_face(image: np.ndarray, size: int = 256, name: str = "image",
               landmarks: Optional[np.ndarray] = None) -> AlignedFace:
    """Detect the largest face and warp it to a ``size`` x ``size`` crop in the canonical framing.

    ``landmarks`` (478, 2) in photo pixels skips detection (e.g. when they are already known).
    Raises :class:`NoFaceError` naming ``name`` when no face is found.
    """
    if size < 16:
        raise TinyBeautyError(f"crop size must be at least 16, got {size}")
    photo = _check_photo(image)
    lm = detect_landmarks(photo, name) if landmarks is None else np.asarray(landmarks, np.float64)
    matrix = similarity_matrix(key_points(lm), template_points(size))
    crop = warp_to_crop(photo, matrix, size)
    crop_lm = lm @ matrix[:, :2].T + matrix[:, 2]
    return AlignedFace(crop=crop, matrix=matrix, size=size, landmarks=crop_lm, photo_shape=photo.shape[:2])


def identity_alignment(crop: np.ndarray, size: Optional[int] = None) -> AlignedFace:
    """Treat an already-aligned square crop (e.g. ``synth-faces`` output) as its own alignment,
    rescaled to ``size`` when given (the matrix is then a pure scale)."""
    arr = _check_photo(crop)
    if arr.shape[0] != arr.shape[1]:
        raise TinyBeautyError(f"an aligned crop must be square, got {arr.shape[1]}x{arr.shape[0]}")
    n = arr.shape[0]
    size = n if size is None else int(size)
    if size == n:
        return AlignedFace(crop=arr.copy(), matrix=np.eye(2, 3), size=n, landmarks=None, photo_shape=(n, n))
    s = size / n
    matrix = np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5]])  # pixel centres map to pixel centres
    return AlignedFace(crop=warp_to_crop(arr, matrix, size), matrix=matrix, size=size, landmarks=None,
                       photo_shape=(n, n))


def face_mask(aligned: AlignedFace, feather: float = 0.04) -> np.ndarray:
    """Feathered face mask (size, size) float32 in [0, 1], zero outside the face-mesh hull.

    The hull of all landmarks covers forehead to chin, brows and lips included. It is eroded before
    blurring so the feathered edge falls inside the hull: paste-back never leaks onto hair or background.
    ``feather`` is the soft-edge width as a fraction of the crop side.
    """
    import cv2

    n = aligned.size
    if aligned.landmarks is None:
        return np.ones((n, n), np.float32)
    hull = cv2.convexHull(np.round(aligned.landmarks).astype(np.int32))
    mask = np.zeros((n, n), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    radius = max(feather * n, 0.0)
    if radius < 0.5:
        return mask.astype(np.float32)
    sigma = radius / 2.0
    reach = int(np.ceil(3 * sigma)) + 1
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1)))
    k = 2 * reach + 1
    return cv2.GaussianBlur(mask.astype(np.float32), (k, k), sigma, borderType=cv2.BORDER_CONSTANT)


def paste_back(photo: np.ndarray, crop: np.ndarray, aligned: AlignedFace, feather: float = 0.04,
               mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Residual paste-back of a processed crop into the photo; returns a new photo-sized uint8 image.

    ``crop`` is the processed version of ``aligned.crop`` (same shape, uint8). ``mask`` (size, size) in
    [0, 1] overrides the default :func:`face_mask` (e.g. a feathered region map).
    """
    import cv2

    base = _check_photo(photo)
    out_crop = np.asarray(crop)
    if out_crop.shape != aligned.crop.shape:
        raise TinyBeautyError(f"processed crop is {out_crop.shape}, expected {aligned.crop.shape}")
    if base.shape[:2] != tuple(aligned.photo_shape):
        raise TinyBeautyError(f"photo is {base.shape[:2]}, but the face was aligned on {aligned.photo_shape}")
    weight = face_mask(aligned, feather) if mask is None else np.asarray(mask, np.float32)
    delta = (out_crop.astype(np.float32) - aligned.crop.astype(np.float32)) * weight[..., None]
    out = base.copy()
    box = _crop_box_in_photo(aligned)
    if box is None:
        return out
    x0, y0, x1, y1 = box
    # Warp only the photo window the crop covers (a 12 MP photo stays cheap); the zero border means
    # photo pixels outside the crop get no change.
    m = aligned.matrix.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    delta_photo = cv2.warpAffine(delta, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    window = base[y0:y1, x0:x1].astype(np.float32) + delta_photo
    out[y0:y1, x0:x1] = np.clip(np.round(window), 0, 255).astype(np.uint8)
    return out


def _crop_box_in_photo(aligned: AlignedFace) -> Optional[tuple[int, int, int, int]]:
    """Photo window (x0, y0, x1, y1) holding the crop's footprint (plus a pixel of bilinear reach)."""
    n = aligned.size
    corners = np.array([[-1, -1], [n, -1], [-1, n], [n, n]], np.float64)
    inv = aligned.inverse_matrix
    pts = corners @ inv[:, :2].T + inv[:, 2]
    h, w = aligned.photo_shape
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
