"""``tinybeauty parse``: label maps at the photo's size, folder mode, and one-line errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from makeup.io import load_label_map, save_image
from makeup.regions import BROWS, EYES, LIPS, SKIN
from tinybeauty.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["parse", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_one_error_line(rc: int, err: str, fragment: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert fragment in lines[0]


@pytest.fixture
def photos(tmp_path, astronaut):
    from skimage import data

    folder = tmp_path / "photos"
    save_image(folder / "astronaut.png", astronaut)
    Image.fromarray(astronaut).convert("L").save(folder / "gray.png")
    Image.fromarray(astronaut).convert("RGBA").save(folder / "rgba.png")
    save_image(folder / "coffee.png", data.coffee())
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_single_photo_writes_label_map_at_photo_size(tmp_path, capsys, photos):
    rc, out, err = _run(capsys, "--input", photos / "astronaut.png", "--out", tmp_path / "out", "--overlay")
    assert rc == 0, err
    labels = load_label_map(tmp_path / "out" / "astronaut.png")
    assert labels.shape == (512, 512)
    assert {EYES, LIPS, SKIN, BROWS} <= set(np.unique(labels))
    overlay = np.asarray(Image.open(tmp_path / "out" / "overlay" / "astronaut.png"))
    assert overlay.shape == (512, 512, 3)
    assert "mediapipe" in out


def test_folder_skips_and_lists_photos_without_a_face(tmp_path, capsys, photos):
    rc, out, err = _run(capsys, "--input", photos, "--out", tmp_path / "out", "--parser", "mediapipe")
    assert rc == 0, err
    written = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert written == ["astronaut.png", "gray.png", "rgba.png"]  # grayscale and RGBA inputs work
    assert "coffee.png (no face)" in err and "skipped 1 of 4" in err
    ref = load_label_map(tmp_path / "out" / "astronaut.png")
    rgba = load_label_map(tmp_path / "out" / "rgba.png")
    np.testing.assert_array_equal(rgba, ref)  # opaque RGBA parses like the RGB photo


def test_folder_of_synth_faces_uses_the_exact_maps(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (64, 64), dtype=np.uint8)
    save_image(tmp_path / "faces" / "face_00000.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    save_image(tmp_path / "faces" / "labels" / "face_00000.png", labels)
    rc, out, err = _run(capsys, "--input", tmp_path / "faces", "--out", tmp_path / "out")
    assert rc == 0, err
    np.testing.assert_array_equal(load_label_map(tmp_path / "out" / "face_00000.png"), labels)
    assert "synthetic" in out


@pytest.mark.parametrize("case", ["missing", "not_image", "empty_folder", "only_no_face", "out_is_file",
                                  "facer_no_weights", "synthetic_no_sidecar", "one_photo_no_face"])
def test_bad_input_is_one_error_line(tmp_path, capsys, photos, monkeypatch, case):
    from skimage import data

    monkeypatch.delenv("TINYBEAUTY_FACER_WEIGHTS", raising=False)
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    save_image(tmp_path / "nofaces" / "coffee.png", data.coffee())
    (tmp_path / "file.txt").write_text("x")
    args, fragment = {
        "missing": (["--input", tmp_path / "nope.png", "--out", out], "no such file or folder"),
        "not_image": (["--input", photos / "notes.txt", "--out", out], "not a readable image"),
        "empty_folder": (["--input", tmp_path / "empty", "--out", out], "no images in this folder"),
        "only_no_face": (["--input", tmp_path / "nofaces", "--out", out], "no photo could be parsed"),
        "out_is_file": (["--input", photos / "astronaut.png", "--out", tmp_path / "file.txt"], "is a file"),
        "facer_no_weights": (["--input", photos / "astronaut.png", "--out", out, "--parser", "facer"],
                             "--facer-weights"),
        "synthetic_no_sidecar": (["--input", photos / "astronaut.png", "--out", out, "--parser", "synthetic"],
                                 "no exact label map"),
        "one_photo_no_face": (["--input", photos / "coffee.png", "--out", out], "coffee.png: no face found"),
    }[case]
    rc, _, err = _run(capsys, *args)
    _assert_one_error_line(rc, err, fragment)
    assert not out.exists() or not any(out.glob("*.png"))  # nothing written


def test_entry_point_help_and_error_exit(tmp_path, photos):
    cmd = [sys.executable, "-m", "tinybeauty", "parse", "--input", "/nonexistent/x.png", "--out", "/tmp/unused"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --input /nonexistent/x.png: no such file or folder"]
    # After mediapipe ran, stderr still holds only our line (its native log chatter is silenced).
    cmd = [sys.executable, "-m", "tinybeauty", "parse", "--input", str(photos / "coffee.png"), "--out",
           str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {photos / 'coffee.png'}: no face found"]
    helped = subprocess.run([sys.executable, "-m", "tinybeauty", "parse", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert helped.returncode == 0 and "--facer-weights" in helped.stdout and "--overlay" in helped.stdout
