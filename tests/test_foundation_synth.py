"""Synthetic faces: deterministic per seed, varied across seeds, exact and sane region maps."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makeup.errors import TinyBeautyError
from makeup.io import load_image, load_label_map
from makeup.regions import BROWS, EYES, LIPS, NUM_LABELS, SKIN
from makeup.synth import _lip_tone, face_seed, generate_face, write_faces


def _centroid(labels: np.ndarray, label: int, half: slice = slice(None)) -> tuple[float, float]:
    ys, xs = np.nonzero(labels[:, half] == label)
    offset = half.start or 0
    return float(xs.mean() + offset), float(ys.mean())


def test_same_seed_same_face_different_seed_different_face():
    a, b, c = generate_face(7, 128), generate_face(7, 128), generate_face(8, 128)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (128, 128, 3) and a.image.dtype == np.uint8
    assert a.labels.shape == (128, 128) and a.labels.dtype == np.uint8


@pytest.mark.parametrize("size", [64, 256, 320])
def test_any_size_has_all_five_classes_with_face_geometry(size):
    for seed in range(6):
        lab = generate_face(seed, size).labels
        counts = np.bincount(lab.ravel(), minlength=NUM_LABELS)
        assert (counts > 0).all(), f"seed {seed} size {size}: label counts {counts}"
        mid = size // 2
        left_eye, right_eye = _centroid(lab, EYES, slice(0, mid)), _centroid(lab, EYES, slice(mid, None))
        left_brow, right_brow = _centroid(lab, BROWS, slice(0, mid)), _centroid(lab, BROWS, slice(mid, None))
        lips = _centroid(lab, LIPS)
        assert left_brow[1] < left_eye[1] and right_brow[1] < right_eye[1], "brows above eyes"
        assert max(left_eye[1], right_eye[1]) < lips[1], "eyes above lips"
        assert left_eye[0] < lips[0] < right_eye[0], "mouth between the eyes horizontally"
        # FFHQ-like layout: eyes near 0.46 of the height a quarter of the width apart, mouth near 0.73.
        assert 0.36 < (left_eye[1] + right_eye[1]) / 2 / size < 0.56
        assert 0.17 < (right_eye[0] - left_eye[0]) / size < 0.33
        assert 0.62 < lips[1] / size < 0.84
        # Eyes, lips and brows sit on the face: the skin surrounds them.
        skin_box = np.nonzero(lab == SKIN)
        assert skin_box[0].min() < left_brow[1] and lips[1] < skin_box[0].max()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(48, 112))
def test_any_seed_two_eyes_two_brows_in_order(seed, size):
    """Property: whatever the seed and size, both eyes and both brows exist, brows above eyes above lips."""
    lab = generate_face(seed, size).labels
    assert (np.bincount(lab.ravel(), minlength=NUM_LABELS) > 0).all()
    assert cv2.connectedComponents((lab == EYES).astype(np.uint8))[0] - 1 == 2
    lips_y = _centroid(lab, LIPS)[1]
    for half in (slice(0, size // 2), slice(size // 2, None)):
        assert _centroid(lab, BROWS, half)[1] < _centroid(lab, EYES, half)[1] < lips_y


def test_faces_are_varied_not_one_template():
    faces = [generate_face(s, 96) for s in range(12)]
    imgs = [f.image.astype(np.float32) for f in faces]
    dists = [np.abs(a - b).mean() for a, b in itertools.combinations(imgs, 2)]
    assert np.mean(dists) > 25 and min(dists) > 5, (np.mean(dists), min(dists))
    # Region geometry moves too: centroid spread of lips and eyes, and region areas.
    lips = np.array([_centroid(f.labels, LIPS) for f in faces])
    assert lips.std(axis=0).max() > 1.5
    skin_areas = np.array([(f.labels == SKIN).mean() for f in faces])
    assert skin_areas.std() > 0.02
    # Skin tones differ: mean skin colour spans a wide lightness range.
    skin_l = [f.image[f.labels == SKIN].mean() for f in faces]
    assert max(skin_l) - min(skin_l) > 40


def test_labels_are_exact_for_the_drawn_picture():
    """The eye label covers the drawn eyeball (bright sclera / dark iris), not skin; lips are redder than skin,
    by as much as the face's lip tone says (real lips are close to the skin: some faces' lips must be too)."""
    tones, reds = [], []
    for seed in range(12):
        f = generate_face(seed, 256)
        img = f.image.astype(np.float32)
        skin, eyes, lips = (f.labels == SKIN), (f.labels == EYES), (f.labels == LIPS)
        redness = img[..., 0] - img[..., 1]
        reds.append(redness[lips].mean() - redness[skin].mean())
        tones.append(_lip_tone(seed))
        assert reds[-1] > 1.0
        # Eyes are visibly different from the skin around them (contrast of the opening).
        assert np.abs(img[eyes].mean(0) - img[skin].mean(0)).max() > 15 or img[eyes].std() > 40
    assert min(reds) < 10 < 30 < max(reds), "pale lips and strongly coloured ones"
    assert np.corrcoef(tones, reds)[0, 1] > 0.5


def test_write_faces_layout_resume_and_bad_out(tmp_path):
    out = tmp_path / "faces"
    paths = write_faces(out, 3, seed=5, size=64, progress=False)
    assert [p.name for p in paths] == ["face_00000.png", "face_00001.png", "face_00002.png"]
    for i, p in enumerate(paths):
        ref = generate_face(face_seed(5, i), 64)
        assert np.array_equal(load_image(p), ref.image)
        assert np.array_equal(load_label_map(out / "labels" / p.name), ref.labels)
    stamp = paths[0].stat().st_mtime_ns
    write_faces(out, 4, seed=5, size=64, progress=False)  # resume: only the new face is drawn
    assert paths[0].stat().st_mtime_ns == stamp and (out / "face_00003.png").exists()
    assert not list(out.glob(".*"))  # no temp files left
    (tmp_path / "file").write_text("x")
    with pytest.raises(TinyBeautyError, match="not a folder"):
        write_faces(tmp_path / "file", 1, progress=False)
    with pytest.raises(TinyBeautyError):
        generate_face(0, 8)
