"""CLI: synth-faces, render, pairs check, styles; bad input is one `error:` line and exit 2; a killed
render leaves a valid dataset and a rerun completes it without duplicates."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from makeup.io import load_image
from makeup.pairs import PairDataset, check_pairs
from makeup.render import render_makeup
from makeup.styles import load_style
from makeup.synth import face_seed, generate_face
from tinybeauty.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_error_line(rc: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faces")
    assert main(["synth-faces", "--out", str(out), "--count", "4", "--seed", "3", "--size", "96"]) == 0
    return out


def test_synth_faces_then_render_then_check(faces, tmp_path, capsys):
    assert sorted(p.name for p in faces.glob("*.png")) == [f"face_{i:05d}.png" for i in range(4)]
    assert len(list((faces / "labels").glob("*.png"))) == 4
    assert np.array_equal(load_image(faces / "face_00002.png"), generate_face(face_seed(3, 2), 96).image)
    pairs = tmp_path / "pairs"
    rc, out, err = run_cli(capsys, "render", "--faces", faces, "--style", "red_lip", "--out", pairs,
                           "--count", "3", "--size", "96")
    assert rc == 0, err
    ds = PairDataset(pairs)
    assert ds.ids == ["face_00000", "face_00001", "face_00002"]
    first = ds[0]
    assert first.record["style"] == "red_lip" and first.record["origin"] == "render"
    expected = render_makeup(first.source, first.mask, load_style("red_lip"))
    assert np.array_equal(first.target, expected)
    assert (pairs / "preview.png").exists()
    rc, out, err = run_cli(capsys, "pairs", "check", pairs)
    assert rc == 0 and "3 valid pairs" in out and "red_lip: 3" in out


def test_style_file_and_styles_listing(faces, tmp_path, capsys):
    look = tmp_path / "plum.yaml"
    look.write_text("name: plum\nlipstick: {color: '#6a1040', opacity: 0.9}\n")
    rc, out, err = run_cli(capsys, "render", "--faces", faces, "--style", look, "--out", tmp_path / "p",
                           "--count", "1", "--size", "96")
    assert rc == 0, err
    assert PairDataset(tmp_path / "p").records[0]["style"] == "plum"
    rc, out, _ = run_cli(capsys, "styles")
    assert rc == 0 and all(name in out for name in ("natural", "glamorous", "smokey_eyes", "red_lip", "korean"))
    rc, out, _ = run_cli(capsys, "styles", "korean")
    assert rc == 0 and "lipstick" in out


def test_photo_without_a_face_is_skipped_and_listed(faces, tmp_path, capsys):
    import shutil

    from makeup.io import save_image

    mixed = tmp_path / "mixed"
    shutil.copytree(faces, mixed)
    save_image(mixed / "blank_wall.png", np.full((96, 96, 3), 128, np.uint8))
    rc, out, err = run_cli(capsys, "render", "--faces", mixed, "--style", "natural", "--out", tmp_path / "p",
                           "--size", "96")
    assert rc == 0, err
    assert "skipped 1 photo" in out and "blank_wall.png" in out
    assert len(PairDataset(tmp_path / "p")) == 4


def test_bad_inputs_are_one_error_line(faces, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "render", "--faces", tmp_path / "missing", "--style", "natural",
                         "--out", tmp_path / "a")
    assert_one_error_line(rc, err, "missing", "no such folder")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not a face")
    rc, _, err = run_cli(capsys, "render", "--faces", notes, "--style", "natural", "--out", tmp_path / "b")
    assert_one_error_line(rc, err, "no images")
    (notes / "broken.png").write_text("not a png either")
    rc, _, err = run_cli(capsys, "render", "--faces", notes, "--style", "natural", "--out", tmp_path / "c")
    assert_one_error_line(rc, err, "broken.png", "not a readable image")
    rc, _, err = run_cli(capsys, "render", "--faces", faces, "--style", "gothic", "--out", tmp_path / "d")
    assert_one_error_line(rc, err, "unknown style 'gothic'")
    bad_look = tmp_path / "bad.yaml"
    bad_look.write_text("lipstick: {color: '#ff0000', opacity: 2}\n")
    rc, _, err = run_cli(capsys, "render", "--faces", faces, "--style", bad_look, "--out", tmp_path / "e")
    assert_one_error_line(rc, err, "lipstick.opacity", str(bad_look))
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    rc, _, err = run_cli(capsys, "render", "--faces", faces, "--style", "natural", "--out", a_file)
    assert_one_error_line(rc, err, "is a file")
    rc, _, err = run_cli(capsys, "synth-faces", "--out", a_file, "--count", "2")
    assert_one_error_line(rc, err, "not a folder")
    rc, _, err = run_cli(capsys, "synth-faces", "--out", tmp_path / "f", "--count", "0")
    assert_one_error_line(rc, err, "--count")
    rc, _, err = run_cli(capsys, "pairs", "check", faces)
    assert_one_error_line(rc, err, "manifest.jsonl")
    # Nothing half-written by the failed runs.
    assert not any((tmp_path / n).exists() for n in "abcdef")


def test_killed_render_leaves_valid_dataset_and_rerun_completes(tmp_path):
    faces, pairs = tmp_path / "faces", tmp_path / "pairs"
    assert main(["synth-faces", "--out", str(faces), "--count", "40", "--size", "64"]) == 0
    cmd = [sys.executable, "-m", "tinybeauty", "render", "--faces", str(faces), "--style", "glamorous",
           "--out", str(pairs), "--size", "64"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = pairs / "manifest.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(PairDataset(pairs))
    assert 3 <= written < 40, f"killed after {written} pairs"
    assert check_pairs(pairs).count == written
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    ds = PairDataset(pairs)
    assert len(ds) == 40 and len(set(ds.ids)) == 40
    assert check_pairs(pairs).count == 40
    ids = [json.loads(line)["id"] for line in manifest.read_text().splitlines() if line.strip()]
    assert sorted(ids) == [f"face_{i:05d}" for i in range(40)]


def test_render_pick_tones_takes_seeds_across_the_skin_tones(tmp_path, capsys):
    """`render --pick tones --count 3`: of 8 faces, the darkest, the lightest and the one nearest the middle tone
    (makeup.region_models.spread_tones), written in the folder's order, and a resumed run keeps that choice."""
    from makeup.region_models import skin_lightness, spread_tones

    faces = tmp_path / "faces"
    assert main(["synth-faces", "--out", str(faces), "--count", "8", "--seed", "0", "--size", "96"]) == 0
    tones = [skin_lightness(generate_face(face_seed(0, i), 96).image, generate_face(face_seed(0, i), 96).labels)
             for i in range(8)]
    pairs = tmp_path / "pairs"
    rc, out, err = run_cli(capsys, "render", "--faces", faces, "--style", "natural", "--out", pairs, "--count", "3",
                           "--size", "96", "--pick", "tones")
    assert rc == 0, err
    picked = PairDataset(pairs).ids
    want = sorted(spread_tones(tones, 3))
    assert picked == [f"face_{i:05d}" for i in want] and picked != [f"face_{i:05d}" for i in range(3)]
    assert int(np.argmin(tones)) in want and int(np.argmax(tones)) in want
    assert "seed skin tones" in out
    rc, out, err = run_cli(capsys, "render", "--faces", faces, "--style", "natural", "--out", pairs, "--count", "3",
                           "--size", "96", "--pick", "tones")  # resumed: nothing new, the same three
    assert rc == 0 and PairDataset(pairs).ids == picked
