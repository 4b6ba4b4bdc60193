"""`tinybeauty student info`, `eval`, `apply` through the CLI: outputs and one-line errors on bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from makeup.io import load_image, save_image
from student.checkpoint import save_checkpoint
from student.model import build_model
from tinybeauty.cli import main

from test_student_train import write_tiny_pairs


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_error_line(rc: int, err: str, needle: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2, err
    assert len([ln for ln in lines if ln.startswith("error:")]) == 1 and "Traceback" not in err, err
    assert needle in err, err


@pytest.fixture(scope="module")
def makeup_ckpt(tmp_path_factory):
    """A float checkpoint whose residual is a visible constant shift (so apply changes the face)."""
    model = build_model({"widths": [4, 8, 8, 8]})
    torch.nn.init.constant_(model.head.bias, -0.2)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "shift.pt", model)


def test_info_reports_params_and_macs(capsys, makeup_ckpt):
    rc, out, _ = run_cli(capsys, "student", "info", "--json")
    info = json.loads(out)
    assert rc == 0 and 0 < info["params"] <= 65_000 and 0 < info["macs"] <= 0.7e9
    rc, out, _ = run_cli(capsys, "student", "info", "--checkpoint", str(makeup_ckpt), "--size", "128")
    assert rc == 0 and "params" in out and "128x128" in out


def test_eval_writes_the_json_contract(capsys, tmp_path, makeup_ckpt):
    pairs = tmp_path / "pairs"
    write_tiny_pairs(pairs, count=4, size=32)
    out_json = tmp_path / "eval" / "ev.json"
    rc, out, _ = run_cli(capsys, "eval", "--model", str(makeup_ckpt), "--pairs", str(pairs), "--json",
                         str(out_json), "--split", "all")
    result = json.loads(out_json.read_text())
    assert rc == 0 and set(result) == {"psnr", "ssim", "lpips", "count", "psnr_identity", "psnr_gain", "recovery",
                                       "spill", "visible_spill"}
    assert set(result["recovery"]) == {"eyes", "lips", "skin", "brows", "cheeks"}
    assert result["psnr_gain"] == pytest.approx(result["psnr"] - result["psnr_identity"])
    assert result["count"] == 4 and "PSNR" in out and "unchanged photos" in out
    from makeup.metrics import psnr
    from makeup.pairs import PairDataset

    # the do-nothing baseline is the before/after PSNR of the pairs themselves
    baseline = np.mean([min(psnr(p.source, p.target), 100.0) for p in PairDataset(pairs)])
    assert result["psnr_identity"] == pytest.approx(baseline, abs=1e-3)
    assert abs(result["psnr"] - result["psnr_identity"]) > 0.1  # the shifted model is not the identity


def test_apply_changes_only_the_face_of_a_real_photo(capsys, tmp_path, astronaut, makeup_ckpt):
    import cv2

    from makeup.align import align_face, face_mask

    photo = tmp_path / "astronaut.png"
    save_image(photo, astronaut)
    out = tmp_path / "out.png"
    rc, _, err = run_cli(capsys, "apply", "--model", str(makeup_ckpt), "--input", str(photo), "--out", str(out))
    assert rc == 0, err
    result = load_image(out)
    assert result.shape == astronaut.shape
    changed = np.abs(result.astype(int) - astronaut.astype(int)).max(axis=2) > 0
    assert changed.sum() > 1000  # the look is applied
    aligned = align_face(astronaut, 256)
    face = cv2.warpAffine(face_mask(aligned), aligned.matrix, astronaut.shape[1::-1],
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP) > 0
    face = cv2.dilate(face.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert not (changed & ~face).any()  # nothing outside the face region moved


def test_apply_folder_skips_photos_without_a_face(capsys, tmp_path, astronaut, makeup_ckpt):
    src = tmp_path / "photos"
    save_image(src / "face.png", astronaut)
    save_image(src / "wall.png", np.full((128, 160, 3), 90, np.uint8))
    rc, out, err = run_cli(capsys, "apply", "--model", str(makeup_ckpt), "--input", str(src), "--out",
                           str(tmp_path / "out"))
    assert rc == 0 and (tmp_path / "out" / "face.png").is_file() and not (tmp_path / "out" / "wall.png").exists()
    assert "wall.png" in err and "1 without a face" in out


def test_bad_inputs_are_one_error_line(capsys, tmp_path, makeup_ckpt):
    pairs = tmp_path / "pairs"
    write_tiny_pairs(pairs, count=2, size=16)
    rc, _, err = run_cli(capsys, "eval", "--model", str(tmp_path / "missing.pt"), "--pairs", str(pairs),
                         "--json", str(tmp_path / "e.json"))
    assert_one_error_line(rc, err, "no such")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x89garbage")
    rc, _, err = run_cli(capsys, "eval", "--model", str(garbage), "--pairs", str(pairs), "--json",
                         str(tmp_path / "e.json"))
    assert_one_error_line(rc, err, "not a readable student checkpoint")
    rc, _, err = run_cli(capsys, "eval", "--model", str(makeup_ckpt), "--pairs", str(tmp_path / "nope"),
                         "--json", str(tmp_path / "e.json"))
    assert_one_error_line(rc, err, "no such pair dataset")
    assert not (tmp_path / "e.json").exists()
    rc, _, err = run_cli(capsys, "student", "train", "--pairs", str(tmp_path / "nope"), "--out",
                         str(tmp_path / "s"))
    assert_one_error_line(rc, err, "no such pair dataset")
    wall = tmp_path / "wall.png"
    save_image(wall, np.full((128, 160, 3), 90, np.uint8))
    rc, _, err = run_cli(capsys, "apply", "--model", str(makeup_ckpt), "--input", str(wall), "--out",
                         str(tmp_path / "wall_out.png"))
    assert_one_error_line(rc, err, "wall.png")
    assert not (tmp_path / "wall_out.png").exists()
    rc, _, err = run_cli(capsys, "student", "info", "--size", "100")
    assert_one_error_line(rc, err, "multiples of 8")


def test_apply_gates_the_change_to_the_looks_regions_of_the_photo(capsys, tmp_path, astronaut):
    """A model that shifts the whole face, carrying a lips-only gate, changes the photo only around its lips;
    --no-gate lets the whole shift through."""
    import cv2

    from makeup.align import align_face
    from makeup.gate import LookGate
    from makeup.parsing import landmarks_to_labels
    from makeup.regions import LIPS

    model = build_model({"widths": [4, 8, 8, 8]})
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.constant_(model.head.bias, 0.15)
    gate = LookGate({"eyes": None, "lips": ((0.0, -0.2, -0.2), (0.3, 0.0, 0.0)), "skin": None, "brows": None})
    ckpt = save_checkpoint(tmp_path / "gated.pt", model, meta={"look_gate": gate.to_dict()})
    photo = tmp_path / "astronaut.png"
    save_image(photo, astronaut)
    gated, ungated = tmp_path / "gated.png", tmp_path / "ungated.png"
    assert run_cli(capsys, "apply", "--model", str(ckpt), "--input", str(photo), "--out", str(gated))[0] == 0
    rc, _, err = run_cli(capsys, "apply", "--model", str(ckpt), "--input", str(photo), "--out", str(ungated),
                         "--no-gate")
    assert rc == 0, err
    changed = lambda p: np.abs(load_image(p).astype(int) - astronaut.astype(int)).max(axis=2) > 0  # noqa: E731
    aligned = align_face(astronaut, 256)
    lips = (landmarks_to_labels(aligned.landmarks, (256, 256)) == LIPS).astype(np.float32)
    lips_photo = cv2.warpAffine(lips, aligned.matrix, astronaut.shape[1::-1],
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP) > 0
    near_lips = cv2.dilate(lips_photo.astype(np.uint8), np.ones((25, 25), np.uint8)) > 0
    assert changed(gated).sum() > 300 and not (changed(gated) & ~near_lips).any()
    assert changed(ungated).sum() > 5 * changed(gated).sum()
    # Only red may rise and green/blue fall on the lips: the +0.15 shift is kept in red only.
    diff = load_image(gated).astype(int) - astronaut.astype(int)
    assert diff[lips_photo][:, 0].max() > 20 and diff[lips_photo][:, 1:].max() <= 1
