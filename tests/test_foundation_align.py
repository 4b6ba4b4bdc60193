"""Face alignment and residual paste-back (makeup.align) on a real photo and on constructed geometry."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makeup.align import (TEMPLATE, AlignedFace, align_face, detect_landmarks, face_mask, five_points,
                          identity_alignment, key_points, paste_back)
from makeup.errors import NoFaceError, TinyBeautyError


@pytest.fixture(scope="module")
def aligned(astronaut) -> AlignedFace:
    return align_face(astronaut, 256, name="astronaut.png")


@pytest.fixture(scope="module")
def photo_landmarks(astronaut) -> np.ndarray:
    return detect_landmarks(astronaut)


def _photo_face_region(aligned: AlignedFace) -> np.ndarray:
    """Where the face hull lies in the photo (hull in the crop, inverse-warped, grown by the bilinear reach)."""
    hull = cv2.convexHull(np.round(aligned.landmarks).astype(np.int32))
    crop_mask = np.zeros((aligned.size, aligned.size), np.uint8)
    cv2.fillConvexPoly(crop_mask, hull, 1)
    h, w = aligned.photo_shape
    region = cv2.warpAffine(crop_mask, aligned.matrix, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    return cv2.dilate(region, np.ones((5, 5), np.uint8)).astype(bool)


def test_crop_geometry_matches_template(aligned):
    assert aligned.crop.shape == (256, 256, 3) and aligned.crop.dtype == np.uint8
    assert aligned.landmarks.shape == (478, 2)
    # Eyes and mouth land near the canonical template (within 4% of the side).
    np.testing.assert_allclose((aligned.key_points() + 0.5) / 256, TEMPLATE, atol=0.04)
    # A similarity transform: equal scale on both axes, no shear; the astronaut's face is ~170 px across.
    a = aligned.matrix[:, :2]
    assert abs(a[0, 0] - a[1, 1]) < 1e-9 and abs(a[0, 1] + a[1, 0]) < 1e-9
    assert 1.0 < np.sqrt(np.linalg.det(a)) < 2.5


def test_unmodified_crop_reproduces_photo_exactly(astronaut, aligned):
    out = paste_back(astronaut, aligned.crop.copy(), aligned)
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, astronaut)


def test_modified_crop_changes_only_the_face(astronaut, aligned):
    processed = np.clip(aligned.crop.astype(int) + 60, 0, 255).astype(np.uint8)
    out = paste_back(astronaut, processed, aligned)
    changed = np.any(out != astronaut, axis=2)
    face = _photo_face_region(aligned)
    assert changed.sum() > 0.5 * face.sum()  # the face did change...
    assert not (changed & ~face).any()  # ...and nothing outside it
    # The centre of the face got (almost) the whole change: the feather is at the edge only.
    cx, cy = aligned.inverse_matrix @ np.array([128, 150, 1.0])
    assert int(out[int(cy), int(cx)].astype(int).sum() - astronaut[int(cy), int(cx)].astype(int).sum()) > 120


def test_paste_back_keeps_full_resolution_detail(astronaut, photo_landmarks):
    """A modified crop adds its change; it does not replace the photo by the (resampled) crop."""
    photo = (astronaut * 0.9).astype(np.uint8)  # headroom: +10 never clips
    face = align_face(photo, 128, landmarks=photo_landmarks)  # the crop is coarser than the photo
    out = paste_back(photo, face.crop + 10, face).astype(int)
    cx, cy = (face.inverse_matrix @ np.array([64, 75, 1.0])).astype(int)
    patch = (out - photo.astype(int))[cy - 10:cy + 10, cx - 10:cx + 10]
    assert np.abs(patch - 10).max() <= 1  # a uniform +10 stays a uniform +10 on the photo's own pixels


def test_face_mask_is_zero_outside_hull_and_one_inside(aligned):
    m = face_mask(aligned)
    assert m.shape == (256, 256) and m.dtype == np.float32
    assert m.max() == pytest.approx(1.0) and m[0, 0] == 0.0
    assert m[150, 128] == pytest.approx(1.0)
    assert (face_mask(identity_alignment(aligned.crop)) == 1).all()


def test_rotated_photo_aligns_upright(astronaut, aligned):
    centre = (230, 130)
    rot = cv2.getRotationMatrix2D(centre, 25, 1.0)
    tilted = cv2.warpAffine(astronaut, rot, (512, 512), borderMode=cv2.BORDER_REFLECT101)
    again = align_face(tilted, 256)
    np.testing.assert_allclose((again.key_points() + 0.5) / 256, TEMPLATE, atol=0.04)
    eyes = again.key_points()[:2]
    assert abs(eyes[1, 1] - eyes[0, 1]) < 3  # eyes level in the crop
    np.testing.assert_array_equal(paste_back(tilted, again.crop, again), tilted)


def test_small_crop_is_antialiased_like_a_shrunk_large_crop(astronaut, photo_landmarks):
    """size=64 takes the pyramid path; it must frame the same face as size=256 shrunk 4x."""
    small = align_face(astronaut, 64, landmarks=photo_landmarks).crop.astype(float)
    large = align_face(astronaut, 256, landmarks=photo_landmarks).crop
    shrunk = cv2.resize(large, (64, 64), interpolation=cv2.INTER_AREA).astype(float)
    psnr = 10 * np.log10(255.0 ** 2 / np.mean((small - shrunk) ** 2))
    assert psnr > 28, psnr


def test_grayscale_and_rgba_photos_align(astronaut, aligned):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    g = align_face(gray, 128)
    assert g.crop.shape == (128, 128, 3)
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    r = align_face(rgba, 256)
    np.testing.assert_allclose(r.matrix, aligned.matrix, atol=1e-6)


@pytest.mark.parametrize("which", ["coffee", "noise", "flat"])
def test_no_face_raises_naming_the_file(which):
    from skimage import data

    image = {"coffee": lambda: data.coffee(),
             "noise": lambda: np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8),
             "flat": lambda: np.full((64, 64, 3), 128, np.uint8)}[which]()
    with pytest.raises(NoFaceError, match=f"{which}.png: no face"):
        align_face(image, 256, name=f"{which}.png")


def test_bad_arguments_are_clear_errors(astronaut, aligned):
    with pytest.raises(TinyBeautyError, match="crop size"):
        align_face(astronaut, 8)
    with pytest.raises(TinyBeautyError, match="processed crop"):
        paste_back(astronaut, aligned.crop[:128], aligned)
    with pytest.raises(TinyBeautyError, match="aligned on"):
        paste_back(astronaut[:300], aligned.crop, aligned)
    with pytest.raises(TinyBeautyError, match="square"):
        identity_alignment(astronaut[:100])


def test_key_and_five_points_order(photo_landmarks):
    k = key_points(photo_landmarks)
    assert k[0, 0] < k[1, 0] and k[2, 1] > k[:2, 1].max()  # image-left eye first; mouth below the eyes
    f = five_points(photo_landmarks)
    assert f[0, 0] < f[1, 0] and f[3, 0] < f[4, 0]
    assert k[:2, 1].max() < f[2, 1] < f[3:, 1].min()  # nose between eyes and mouth


def test_identity_alignment_rescales(astronaut):
    crop = astronaut[:256, :256]
    same = identity_alignment(crop)
    np.testing.assert_array_equal(paste_back(crop, crop + 1, same), crop + 1)
    half = identity_alignment(crop, 128)
    assert half.crop.shape == (128, 128, 3)
    np.testing.assert_allclose(half.crop.mean(), crop.mean(), atol=1.0)


@settings(max_examples=25, deadline=None)
@given(angle=st.floats(-40, 40), scale=st.floats(0.3, 3.0), tx=st.floats(-60, 60), ty=st.floats(-60, 60),
       size=st.sampled_from([32, 64, 256]), delta=st.integers(-80, 80))
def test_paste_back_properties(photo_landmarks, astronaut, angle, scale, tx, ty, size, delta):
    """For any pose: an unchanged crop is the identity; a changed one never touches pixels off the face."""
    rot = cv2.getRotationMatrix2D((256, 256), angle, scale)
    rot[:, 2] += (tx, ty)
    photo = cv2.warpAffine(astronaut, rot, (512, 512), borderMode=cv2.BORDER_REFLECT101)
    lm = photo_landmarks @ rot[:, :2].T + rot[:, 2]
    face = align_face(photo, size, landmarks=lm)
    np.testing.assert_array_equal(paste_back(photo, face.crop, face), photo)
    processed = np.clip(face.crop.astype(int) + delta, 0, 255).astype(np.uint8)
    changed = np.any(paste_back(photo, processed, face) != photo, axis=2)
    assert not (changed & ~_photo_face_region(face)).any()


def test_large_photo_frames_the_same_face(astronaut, aligned):
    """A 4x larger photo of the same scene gives (nearly) the same crop and still pastes back exactly."""
    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    face = align_face(big, 256)
    np.testing.assert_allclose(face.key_points(), aligned.key_points(), atol=3.0)
    diff = face.crop.astype(float) - aligned.crop.astype(float)
    assert 10 * np.log10(255.0 ** 2 / np.mean(diff ** 2)) > 25
    processed = np.clip(face.crop.astype(int) - 30, 0, 255).astype(np.uint8)
    out = paste_back(big, processed, face)
    np.testing.assert_array_equal(paste_back(big, face.crop, face), big)
    changed = np.any(out != big, axis=2)
    assert not (changed & ~_photo_face_region(face)).any() and changed.sum() > 100_000
