"""`tinybeauty demo` end to end on a tiny profile: every stage runs through the real CLI and the summary holds
the look-fidelity figures of every check (teacher and .tflite vs renderer truth, .tflite vs teacher, astronaut
with and without the look gate)."""
from __future__ import annotations

import json

import yaml

from makeup.config import load_profile
from tinybeauty.cli import main as cli_main

REGIONS = {"eyes", "lips", "skin", "brows", "cheeks"}


def _tiny_profile(path):
    p = load_profile("demo")
    p["teacher"].update(epochs=3, sample_every=3)
    p["teacher"]["model"].update(resolution=32, base_channels=8, channel_mults=[1, 2], attention_res=[16],
                                 sample_steps=2)
    p["teacher"]["refiner"].update(steps=10, width=4, crop=32)
    p["amplify"].update(batch=6, steps=2, samples=2)
    p["student"].update(epochs=1, qat_epochs=1, max_val=4)
    p["export"].update(parity_images=2, calib_images=4)
    p["demo"].update(faces=8, seeds=3, pairs=12, truth_faces=3, seed_styles=["red_lip"])
    path.write_text(yaml.safe_dump(p))
    return path


def test_demo_runs_the_chain_and_reports_the_look(tmp_path, capsys):
    work = tmp_path / "work"
    assert cli_main(["demo", "--work", str(work), "--style", "red_lip",
                     "--profile", str(_tiny_profile(tmp_path / "tiny.yaml"))]) == 0
    out = capsys.readouterr().out
    summary = json.loads((work / "demo_summary.json").read_text())
    assert json.loads((work / "red_lip" / "demo_summary.json").read_text()) == summary
    for key in ("teacher_vs_renderer", "tflite_vs_teacher", "tflite_vs_renderer"):
        assert set(summary[key]["recovery"]) == REGIONS, key
        assert summary[key]["spill"] >= 0 and "psnr_gain" in summary[key]
    astro = summary["astronaut_vs_renderer"]
    assert set(astro) == {"ungated", "gated"} and set(astro["gated"]["recovery"]) == REGIONS
    assert summary["export_report"]["formats"]["tflite"]["fidelity"]["recovery"]["lips"] is not None
    card = json.loads((work / "red_lip" / "export" / "model_card.json").read_text())
    assert card["style"] == "red_lip" and "lips" in card["look_gate"]["regions"]
    # the demo profile's student reads the look prior: the card says where, the file is beside the model
    assert card["io"]["channels"] == 11 and card["io"]["prior_input"]["first_channel"] == 8
    assert (work / "red_lip" / "export" / card["io"]["prior_input"]["file"]).is_file()
    teacher_astro = summary["teacher_astronaut_vs_renderer"]  # which of teacher and student loses a real face
    assert teacher_astro["photo"] == "astronaut" and set(teacher_astro["recovery"]) == REGIONS
    assert len(summary["look"]) == 6 and "teacher on the astronaut vs renderer" in out
    assert "look fidelity of red_lip" in out
    for name in ("astronaut_look.png", "astronaut_before_after.png", "teacher_fidelity.png", "teacher_astronaut.png"):
        assert (work / "red_lip" / name).is_file(), name
