"""Typed stage settings: every stage builds one frozen dataclass from its profile section + CLI overrides,
rejects unknown keys in one line, and the profile reaches every stage (demo and Makefile)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml

from makeup.config import load_profile, read_settings, section
from makeup.errors import TinyBeautyError
from tinybeauty.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]


def _profile(tmp_path: Path, data: dict) -> str:
    p = tmp_path / "custom.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


# Each stage, from the CLI: a misspelt key in the profile is one line naming the key, the stage, the known keys.
# The settings are built before anything heavy runs, so none of these paths needs to exist.
@pytest.mark.parametrize("stage,key,argv", [
    ("teacher", "epoch", ["teacher", "train", "--seeds", "nowhere", "--out", "{tmp}/t"]),
    ("amplify", "step", ["amplify", "--teacher", "nowhere", "--faces", "synthetic", "--count", "2",
                         "--out", "{tmp}/p"]),
    ("student", "learning_rate", ["student", "train", "--pairs", "nowhere", "--out", "{tmp}/s"]),
    ("export", "budget", ["export", "--checkpoint", "nowhere.pt", "--out", "{tmp}/e"]),
    ("demo", "pair", ["demo", "--work", "{tmp}/w"]),
])
def test_a_misspelt_profile_key_is_one_line_naming_key_stage_and_known_keys(tmp_path, capsys, stage, key, argv):
    prof = _profile(tmp_path, {stage: {key: 1}})
    rc = cli_main([a.format(tmp=tmp_path) for a in argv] + ["--profile", prof])
    line = _one_error_line(capsys)
    assert rc == 2
    assert f"unknown {stage} setting '{key}'" in line and "known:" in line, line
    known = line.split("known:")[1]
    assert {"amplify": "steps", "teacher": "epochs", "student": "lr", "export": "budget_bytes",
            "demo": "pairs"}[stage] in known


@pytest.mark.parametrize("data,needle", [
    ({"teacher": {"model": {"base_chanels": 8}}}, "unknown teacher model (tiny-ddpm) setting 'base_chanels'"),
    ({"teacher": {"augment": {"flipp": True}}}, "unknown teacher augment setting 'flipp'"),
    ({"teacher": {"sd15-lora": {"lr": 1e-4, "epochz": 3}}, "backend": None}, None),
    ({"student": {"model": {"width": [4, 8, 8, 8]}}}, "unknown student model options ['width']"),
    ({"student": {"loss": {"lipz": 1.0}}}, "unknown student loss weights ['lipz']"),
    ({"studnet": {"epochs": 1}}, "unknown section 'studnet'"),
    ({"teacher": {"epochs": "many"}}, "teacher setting 'epochs': expected int, got 'many'"),
])
def test_nested_keys_sections_and_types_are_checked(tmp_path, data, needle):
    from student.train import student_settings
    from teacher.train import teacher_settings

    data = {k: v for k, v in data.items() if k != "backend"}
    with pytest.raises(TinyBeautyError) as err:
        prof = load_profile(_profile(tmp_path, data))
        teacher_settings(section(prof, "teacher"), "sd15-lora" if needle is None else None)
        student_settings(section(prof, "student"))
    msg = str(err.value)
    assert "\n" not in msg
    assert (needle or "unknown teacher setting 'epochz'") in msg, msg


def test_profile_values_and_cli_overrides_reach_the_settings():
    from export.pipeline import ExportSettings
    from student.train import student_settings
    from teacher.amplify import amplify_settings
    from teacher.train import teacher_settings

    paper = load_profile("paper")
    t = teacher_settings(section(paper, "teacher"), None, {"epochs": 7, "device": None}, profile="paper")
    assert (t.epochs, t.lr, t.model["resolution"]) == (7, 1e-4, 128)
    assert t.provenance == {"profile": "paper", "overrides": {"epochs": 7}}
    sd = teacher_settings(section(paper, "teacher"), "sd15-lora")
    assert sd.backend == "sd15-lora" and sd.model["resolution"] == 512 and "base_channels" not in sd.model
    a = amplify_settings(section(paper, "amplify"), "tiny-ddpm", {"seed": 5})
    assert (a.steps, a.batch, a.samples, a.seed) == (25, 64, 4, 5)
    assert amplify_settings(section(paper, "amplify"), "sd15-lora").steps == 20
    s = student_settings(section(paper, "student"), batch_size=3)
    assert (s.epochs, s.qat_epochs, s.batch_size, s.train_crop) == (50, 5, 3, None)
    e = ExportSettings.build(section(paper, "export"))
    assert (e.parity_images, e.calib_images) == (64, 256)


def test_settings_are_frozen_and_saved_with_their_provenance(tmp_path):
    from student.train import student_settings

    s = student_settings({"epochs": 3}, profile="demo", batch_size=4)
    with pytest.raises(AttributeError):
        s.epochs = 4
    s.save(tmp_path, pairs="P")
    rec = read_settings(tmp_path)
    assert rec["stage"] == "student" and rec["profile"] == "demo" and rec["overrides"] == {"batch_size": 4}
    assert rec["settings"]["epochs"] == 3 and rec["settings"]["batch_size"] == 4 and rec["inputs"] == {"pairs": "P"}
    assert s.differences(rec["settings"]) == []
    assert student_settings({"epochs": 4}).differences(rec["settings"]) == ["epochs", "batch_size"]
    # a run recorded before a key existed ran with its default: resuming it is not refused for that key
    old = {k: v for k, v in rec["settings"].items() if k != "photo_augment"}
    assert s.differences(old) == []
    assert student_settings({"epochs": 3, "photo_augment": {"blur": 1.0}}, batch_size=4).differences(old) \
        == ["photo_augment"]


def test_student_photo_augment_keys_are_checked_before_training():
    from student.train import student_settings

    assert student_settings({"photo_augment": {"zoom": 0.1}}).photo_augment == {"zoom": 0.1}
    with pytest.raises(TinyBeautyError, match="unknown student photo_augment setting 'zoomm'"):
        student_settings({"photo_augment": {"zoomm": 0.1}})


def _argv_of(step) -> str:
    return " ".join(step.argv)


@pytest.mark.parametrize("profile", ["demo", "paper"])
def test_demo_hands_its_profile_to_every_stage(tmp_path, profile):
    from tinybeauty.cmd_demo import DemoSettings, demo_steps

    args = argparse.Namespace(work=str(tmp_path), style=None, profile=profile, only_seeds=False)
    cfg = DemoSettings.build(section(load_profile(profile), "demo"))
    steps, _ = demo_steps(args, cfg)
    by_name = {s.name: s for s in steps}
    for name in ("teacher train", "amplify", "student train", "export", "teacher fidelity"):
        assert f"--profile {profile}" in _argv_of(by_name[name]), (name, by_name[name].argv)
    assert f"--count {cfg.pairs}" in _argv_of(by_name["amplify"])


def test_every_make_stage_target_passes_the_profile():
    text = (ROOT / "Makefile").read_text()
    for target in ("teacher", "amplify", "student", "export"):
        recipe = re.search(rf"^{target}:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
        assert recipe, target
        assert "--profile $(PROFILE)" in recipe.group(1), (target, recipe.group(1))
    assert re.search(r"^demo:[^\n]*\n\t[^\n]*--profile \$\(PROFILE\)", text, re.M)


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_every_shipped_profile_builds_every_stage(name):
    from export.pipeline import ExportSettings
    from student.train import student_settings
    from teacher.amplify import amplify_settings
    from teacher.train import teacher_settings
    from tinybeauty.cmd_demo import DemoSettings

    prof = load_profile(name)
    for backend in ("tiny-ddpm", "sd15-lora"):
        assert teacher_settings(section(prof, "teacher"), backend).backend == backend
        amplify_settings(section(prof, "amplify"), backend)
    student_settings(section(prof, "student"))
    ExportSettings.build(section(prof, "export"))
    DemoSettings.build(section(prof, "demo"))
