"""teacher train / amplify end to end on a tiny teacher: outputs, resume, determinism, sharding, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from makeup.pairs import PairDataset, PairWriter, check_pairs
from tinybeauty.cli import main as cli_main

from amplify_helpers import assert_same_pairs, interrupt_writes_after, pair_images, run_sharded_amplify

TINY_MODEL = {"resolution": 32, "base_channels": 8, "channel_mults": [1, 2], "attention_res": [16],
              "norm_groups": 4, "sample_steps": 2}
TINY_REFINER = {"steps": 10, "width": 4, "crop": 32, "pool": 1}
AMP_CFG = {"batch": 2, "seed": 3, "min_ssim": 0.0, "min_energy_ratio": 0.0, "visualize": 2}


def write_seed_pairs(root: Path, count: int = 5, size: int = 64) -> Path:
    from makeup.render import render_makeup
    from makeup.synth import generate_face

    writer = PairWriter(root)
    for i in range(count):
        f = generate_face(100 + i, size)
        writer.write(f"seed_{i}", f.image, render_makeup(f.image, f.labels, "glamorous"), f.labels,
                     style="glamorous", origin="render")
    return root


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> Path:
    from teacher.train import train_teacher

    base = tmp_path_factory.mktemp("teacher")
    seeds = write_seed_pairs(base / "seeds")
    out = base / "teacher"
    cfg = {"epochs": 2, "sample_every": 1, "batch_size": 5, "held_out_faces": 1, "lr": 1e-3,
           "device": "cpu", "model": TINY_MODEL, "refiner": TINY_REFINER}
    train_teacher(seeds, out, cfg, progress=False)
    cfg["epochs"] = 3
    train_teacher(seeds, out, cfg, resume=True, progress=False)  # continues at epoch 3
    return out


def test_train_writes_checkpoints_samples_and_resumes(tiny_teacher):
    names = {p.name for p in tiny_teacher.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "dda_final.pt", "dda_checkpoint_epoch_3.pt",
            "sample_epoch_1.png", "sample_epoch_3.png"} <= names
    epochs = [json.loads(x)["epoch"] for x in (tiny_teacher / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    cfg = yaml.safe_load((tiny_teacher / "config.yaml").read_text())
    assert cfg["style"] == "glamorous" and cfg["size"] == 64 and cfg["energy_ref"] > 0


def _amplify(teacher_dir, out, count=5, **over):
    from teacher.amplify import amplify
    from teacher.inference import load_teacher

    return amplify(load_teacher(teacher_dir, "cpu"), "synthetic", count, out, {**AMP_CFG, **over}, progress=False)



@pytest.fixture(scope="module")
def fresh_run(tiny_teacher, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fresh") / "pairs"
    report = _amplify(tiny_teacher, out)
    assert report["count"] == 5 and (report["lpips"] is None or isinstance(report["lpips"], float))
    return out


def test_amplify_outputs(fresh_run):
    from makeup.metrics import psnr

    assert check_pairs(fresh_run).count == 5
    q = json.loads((fresh_run / "quality.json").read_text())
    assert {"ssim", "psnr", "lpips", "rejection_rate", "pairs_per_second"} <= set(q)
    # the report's PSNR covers every pair, not only the visualised ones (visualize=2 here)
    assert q["psnr"] == pytest.approx(np.mean([psnr(p.target, p.source) for p in PairDataset(fresh_run)]))
    assert (fresh_run / "samples_visualization.png").exists()
    rec = PairDataset(fresh_run).records[0]
    assert rec["origin"] == "amplify" and rec["style"] == "glamorous" and "ssim_outside" in rec


def test_amplify_kill_and_resume_is_exact(tiny_teacher, fresh_run, tmp_path, monkeypatch):
    out = tmp_path / "pairs"
    real_write = interrupt_writes_after(monkeypatch, 3)  # killed between two pairs
    with pytest.raises(KeyboardInterrupt):
        _amplify(tiny_teacher, out)
    monkeypatch.setattr(PairWriter, "write", real_write)
    with open(out / "manifest.jsonl", "a") as fh:
        fh.write('{"id": "amp_0000')  # and a torn manifest line, as a kill mid-append leaves
    _amplify(tiny_teacher, out)
    assert_same_pairs(out, fresh_run)
    assert len(pair_images(out)) == 5


def test_train_and_amplify_record_their_settings(tiny_teacher, fresh_run):
    from teacher.amplify import teacher_fingerprint
    from teacher.inference import load_teacher

    t = yaml.safe_load((tiny_teacher / "settings.yaml").read_text())
    assert t["stage"] == "teacher" and t["settings"]["epochs"] == 3 and t["settings"]["model"] == TINY_MODEL
    assert t["inputs"]["resumed_from_epoch"] == 2
    a = yaml.safe_load((fresh_run / "settings.yaml").read_text())
    assert a["stage"] == "amplify" and a["settings"]["seed"] == AMP_CFG["seed"] and a["settings"]["steps"] is None
    assert a["inputs"]["teacher"] == teacher_fingerprint(load_teacher(tiny_teacher, "cpu"))
    assert a["inputs"]["faces"] == "synthetic" and a["inputs"]["count"] == 5


def test_amplify_refuses_to_mix_runs_and_force_new_starts_over(tiny_teacher, fresh_run, tmp_path, capsys):
    import shutil

    from makeup.errors import TinyBeautyError
    from teacher.amplify import amplify
    from teacher.inference import load_teacher

    out = tmp_path / "pairs"
    shutil.copytree(fresh_run, out)
    before = pair_images(out)
    # other settings (the CLI with the demo profile: steps 6, 4 samples, other seed): one line, nothing written
    rc = cli_main(["amplify", "--teacher", str(tiny_teacher), "--faces", "synthetic", "--count", "5",
                   "--out", str(out), "--device", "cpu"])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:"), err
    assert "made with another batch, seed, steps, samples" in err[0] and "--force-new" in err[0], err[0]
    # another teacher (same weights, another config) is another run too
    teacher = load_teacher(tiny_teacher, "cpu")
    teacher.config["energy_ref"] = teacher.config["energy_ref"] * 2
    with pytest.raises(TinyBeautyError, match="made with another teacher"):
        amplify(teacher, "synthetic", 5, out, AMP_CFG, progress=False)
    # the same run again only resumes (and may grow the synthetic count)
    assert _amplify(tiny_teacher, out, count=6, visualize=1)["count"] == 6
    assert all(np.array_equal(a, b) for pid in before for a, b in zip(before[pid], pair_images(out)[pid]))
    # --force-new starts over with the new settings
    report = amplify(load_teacher(tiny_teacher, "cpu"), "synthetic", 2, out, {**AMP_CFG, "seed": 9}, progress=False,
                 force_new=True)
    assert report["count"] == 2 and yaml.safe_load((out / "settings.yaml").read_text())["settings"]["seed"] == 9
    # pairs whose making nobody recorded are refused as well
    (out / "settings.yaml").unlink()
    with pytest.raises(TinyBeautyError, match="no settings.yaml"):
        _amplify(tiny_teacher, out, count=2, seed=9)


def test_amplify_rejects_and_replaces(tiny_teacher, tmp_path):
    # An impossible energy floor: every candidate is rejected, replaced, and finally kept as "forced".
    report = _amplify(tiny_teacher, tmp_path / "p", count=2, min_energy_ratio=1e9, max_attempts=2)
    assert report["count"] == 2 and report["rejection_rate"] == pytest.approx(0.5) and report["forced"] == 2



def test_sharded_amplify_equals_single_process(tiny_teacher, tmp_path, one_thread):
    out, single = tmp_path / "sharded", tmp_path / "single"
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({"amplify": AMP_CFG}))
    run_sharded_amplify(tiny_teacher, out, profile, 5)
    _amplify(tiny_teacher, single)  # on one thread, as each shard runs
    assert_same_pairs(out, single)
    assert (out / "quality.json").exists()


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def test_bad_inputs_one_error_line(tmp_path, capsys, tiny_teacher, monkeypatch):
    monkeypatch.delenv("TINYBEAUTY_SD_PATH", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["teacher", "train", "--seeds", str(empty), "--out", str(tmp_path / "t")]) == 2
    assert "manifest" in _one_error(capsys)
    seeds = write_seed_pairs(tmp_path / "seeds", count=2)
    from makeup.io import save_image

    save_image(seeds / "target" / "seed_1.png", np.zeros((48, 48, 3), np.uint8))  # mismatched pair
    assert cli_main(["teacher", "train", "--seeds", str(seeds), "--out", str(tmp_path / "t")]) == 2
    assert "sizes differ" in _one_error(capsys)
    nothing = tmp_path / "no_weights"
    nothing.mkdir()
    assert cli_main(["amplify", "--teacher", str(nothing), "--faces", "synthetic", "--count", "2",
                     "--out", str(tmp_path / "p")]) == 2
    assert "dda_final.pt" in _one_error(capsys)
    assert not (tmp_path / "p").exists()
    assert cli_main(["amplify", "--teacher", str(tiny_teacher), "--faces", str(tmp_path / "missing"),
                     "--count", "2", "--out", str(tmp_path / "p")]) == 2
    _one_error(capsys)
    assert cli_main(["teacher", "train", "--seeds", str(write_seed_pairs(tmp_path / "s2", 1)), "--out",
                     str(tmp_path / "t2"), "--backend", "sd15-lora"]) == 2
    assert "--sd-path" in _one_error(capsys)


def test_amplify_folder_skips_bad_faces(tiny_teacher, tmp_path):
    from makeup.synth import write_faces

    faces = tmp_path / "faces"
    write_faces(faces, 2, seed=5, size=64, progress=False)
    (faces / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "pairs"
    report = _amplify_folder(tiny_teacher, faces, out)
    assert report["count"] == 3 and report["skipped_faces"] == 1
    assert "broken.png" in (out / "skipped.json").read_text()


def _amplify_folder(teacher_dir, faces, out):
    from teacher.amplify import amplify
    from teacher.inference import load_teacher

    return amplify(load_teacher(teacher_dir, "cpu"), str(faces), 3, out, {**AMP_CFG, "parser": "synthetic"},
                   progress=False)


def test_fidelity_reports_recovery_per_region_vs_the_renderer(tiny_teacher, tmp_path, capsys):
    out_json = tmp_path / "fid.json"
    assert cli_main(["teacher", "fidelity", "--teacher", str(tiny_teacher), "--count", "2", "--device", "cpu",
                     "--json", str(out_json), "--grid", str(tmp_path / "fid.png")]) == 0
    report = json.loads(out_json.read_text())
    # glamorous changes every region; a 3-epoch teacher is far from the goal, and the report says so
    assert set(report["recovery"]) == {"eyes", "lips", "skin", "brows", "cheeks"}
    assert all(v is not None for v in report["recovery"].values())
    assert report["spill"] >= 0 and report["goal_recovery"] == 0.8 and report["meets_goal"] is False
    assert report["psnr_gain"] == pytest.approx(report["psnr"] - report["psnr_identity"])
    assert (tmp_path / "fid.png").is_file() and report["refiner"] is True  # the teacher's detail refiner pasted
    assert cli_main(["teacher", "fidelity", "--teacher", str(tiny_teacher), "--count", "2", "--device", "cpu",
                     "--json", str(out_json), "--no-refiner"]) == 0
    plain = json.loads(out_json.read_text())
    assert plain["refiner"] is False and plain["psnr"] != report["psnr"]


def test_fidelity_agreement_is_what_another_draw_reproduces(tiny_teacher, tmp_path):
    """`--agreement`: the faces drawn again with other noise, scored against the first draws. The mean of more
    draws scatters less, so another mean agrees with it more; the first draws (and so every other figure) are
    the report's without the flag; the ceiling is the stated function of the agreement."""
    import math

    from teacher.fidelity import teacher_fidelity
    from teacher.inference import load_teacher

    out_json = tmp_path / "agree.json"
    assert cli_main(["teacher", "fidelity", "--teacher", str(tiny_teacher), "--count", "3", "--device", "cpu",
                     "--samples", "1", "--agreement", "--json", str(out_json)]) == 0
    one = json.loads(out_json.read_text())
    teacher = load_teacher(tiny_teacher, "cpu")
    plain = teacher_fidelity(teacher, count=3, samples=1, progress=False)
    assert "agreement" not in plain and plain["recovery"] == one["recovery"] and plain["psnr"] == one["psnr"]
    four = teacher_fidelity(teacher, count=3, samples=4, progress=False, agreement=True)
    for name in ("eyes", "lips", "skin", "brows"):
        a1, a4 = one["agreement"]["recovery"][name], four["agreement"]["recovery"][name]
        assert a4 > a1, (name, a1, a4)
        assert four["agreement"]["student_ceiling"][name] == pytest.approx(1 - (1 - a4) / math.sqrt(2))


def test_fidelity_on_a_real_photo(tiny_teacher, tmp_path, capsys):
    """`teacher fidelity --photo astronaut`: the teacher on skimage's portrait vs the renderer's look on it; the
    teacher's paste leaves every pixel outside the look's regions as the photo's."""
    from makeup.io import load_photo
    from makeup.render import photo_truth
    from teacher.fidelity import teacher_photo_fidelity
    from teacher.inference import load_teacher

    out_json = tmp_path / "astro.json"
    assert cli_main(["teacher", "fidelity", "--teacher", str(tiny_teacher), "--photo", "astronaut", "--style",
                     "red_lip", "--device", "cpu", "--samples", "1", "--json", str(out_json),
                     "--grid", str(tmp_path / "astro.png")]) == 0
    report = json.loads(out_json.read_text())
    assert report["style"] == "red_lip" and report["photo"] == "astronaut" and (tmp_path / "astro.png").is_file()
    assert set(report["recovery"]) == {"eyes", "lips", "skin", "brows", "cheeks"} and report["recovery"]["lips"] is not None
    printed = capsys.readouterr().out
    assert "teacher on astronaut vs renderer: recovery" in printed
    # a trained teacher keeps its seeds' skin tones (config.yaml) and says whether they span the photo's
    tones = yaml.safe_load((tiny_teacher / "config.yaml").read_text())["seed_lightness"]
    assert len(tones) >= 3 and report["seed_tones"]["seeds"] == [round(v, 1) for v in sorted(tones)]
    assert "skin lightness (CIELAB L): the seeds'" in printed and isinstance(report["seed_tones"]["within_seeds"], bool)
    crop, labels, truth = photo_truth(load_photo("astronaut"), "red_lip")
    teacher = load_teacher(tiny_teacher, "cpu")
    after = teacher.translate([crop], [labels], seeds=[0])[0]
    assert np.array_equal(after[labels == 0], crop[labels == 0]) and not np.array_equal(after, crop)
    again = teacher_photo_fidelity(teacher, load_photo("astronaut"), "red_lip", "astronaut", samples=1)
    assert again["recovery"] == report["recovery"]  # one fixed noise seed: the same figures every run
    assert cli_main(["teacher", "fidelity", "--teacher", str(tiny_teacher), "--photo", str(tmp_path / "nope.png"),
                     "--device", "cpu"]) != 0


def test_fidelity_of_the_teacher_prior_alone(tiny_teacher, tmp_path):
    """`--prior-only`: the look prior the teacher fit on its seeds, pasted with nothing sampled (no residual, no
    refiner), on the same faces: the same figures whatever the draws, and what the diffusion adds is the
    teacher's figures minus these. On the photo too. It draws nothing, so --agreement with it is refused."""
    from makeup.errors import TinyBeautyError
    from makeup.io import load_photo
    from teacher.fidelity import teacher_fidelity, teacher_photo_fidelity
    from teacher.inference import load_teacher

    out_json = tmp_path / "prior.json"
    assert cli_main(["teacher", "fidelity", "--teacher", str(tiny_teacher), "--count", "2", "--device", "cpu",
                     "--prior-only", "--json", str(out_json), "--grid", str(tmp_path / "prior.png")]) == 0
    report = json.loads(out_json.read_text())
    assert report["prior_only"] is True and report["samples"] == 0 and report["refiner"] is False
    assert all(v is not None for v in report["recovery"].values()) and (tmp_path / "prior.png").is_file()
    teacher = load_teacher(tiny_teacher, "cpu")
    again = teacher_fidelity(teacher, count=2, samples=4, steps=1, progress=False, prior_only=True)
    assert again["recovery"] == report["recovery"] and again["psnr"] == report["psnr"]  # nothing was drawn
    drawn = teacher_fidelity(teacher, count=2, samples=1, progress=False)
    assert drawn["prior_only"] is False and drawn["psnr"] != report["psnr"]
    # the paste with a zero residual is the prior: it moves the look's regions and nothing else
    from makeup.render import photo_truth

    crop, labels, _ = photo_truth(load_photo("astronaut"), "glamorous")
    after = teacher.translate([crop], [labels], seeds=[0], prior_only=True)[0]
    assert np.array_equal(after[labels == 0], crop[labels == 0]) and np.abs(after.astype(int) - crop).max() > 10
    photo = teacher_photo_fidelity(teacher, load_photo("astronaut"), samples=1, prior_only=True)
    assert photo["prior_only"] is True and photo["recovery"]["lips"] is not None
    with pytest.raises(TinyBeautyError, match="--prior-only"):
        teacher_fidelity(teacher, count=1, progress=False, prior_only=True, agreement=True)


def test_seed_tones_split_the_faces_by_the_seeds_skin_lightness():
    """teacher.fidelity.seed_tones on three faces and a seed span around the middle one's skin lightness: one
    face inside, one darker, one lighter; the skin's recovery inside is that face's alone (1 for the truth
    itself, 0 for the unchanged face)."""
    from makeup.metrics import look_fidelity
    from makeup.region_models import skin_lightness
    from makeup.render import render_makeup
    from makeup.synth import generate_face
    from teacher.fidelity import FIDELITY_SEED, seed_tones

    faces = [generate_face(FIDELITY_SEED + i, 64) for i in range(6)]
    tone = np.array([skin_lightness(f.image, f.labels) for f in faces])
    order = np.argsort(tone)
    pick = [faces[order[0]], faces[order[3]], faces[order[5]]]  # darkest, middle, lightest
    src = np.stack([f.image for f in pick])
    labels = np.stack([f.labels for f in pick])
    truth = np.stack([render_makeup(f.image, f.labels, "glamorous") for f in pick])
    mid = tone[order[3]]
    out = seed_tones([mid - 0.5, mid + 0.5], truth, src, truth, labels)
    assert out["seeds"] == [round(mid - 0.5, 1), round(mid + 0.5, 1)]
    assert out["darker_than_every_seed"] == pytest.approx(1 / 3)
    assert out["lighter_than_every_seed"] == pytest.approx(1 / 3)
    assert out["faces"]["median"] == round(mid, 1)
    assert out["skin_recovery_inside"] == pytest.approx(1.0) and out["skin_recovery_outside"] == pytest.approx(1.0)
    half = src.copy()
    half[1] = truth[1]  # only the face inside the span gets the look
    out = seed_tones([mid - 0.5, mid + 0.5], half, src, truth, labels)
    assert out["skin_recovery_inside"] == pytest.approx(1.0) and out["skin_recovery_outside"] == pytest.approx(0.0)
    assert out["skin_recovery_inside"] == pytest.approx(look_fidelity(truth[1:2], src[1:2], truth[1:2],
                                                                      labels[1:2])["recovery"]["skin"])


def test_fidelity_of_the_prior_fit_on_seeds_without_a_teacher(tiny_teacher, tmp_path, capsys):
    """`teacher fidelity --seeds DIR`: the look prior a tiny-ddpm teacher fits on those seeds, fit here in
    seconds and scored alone, paints what `--prior-only` of the teacher trained on them paints (its region prior
    is kept to 6 decimals: a level apart at most, on a handful of pixels), and reports the same figures. A
    folder that is not a pair dataset, --agreement, a flag that loads or samples a teacher, or both --seeds
    and --teacher are refused."""
    from makeup.errors import TinyBeautyError
    from makeup.synth import generate_face
    from teacher.fidelity import FIDELITY_SEED, SeedPrior, teacher_fidelity
    from teacher.inference import load_teacher

    seeds = tiny_teacher.parent / "seeds"
    out_json = tmp_path / "seeds.json"
    assert cli_main(["teacher", "fidelity", "--seeds", str(seeds), "--count", "3", "--json", str(out_json)]) == 0
    report = json.loads(out_json.read_text())
    assert report["prior_only"] is True and report["samples"] == 0 and report["style"] == "glamorous"
    from makeup.region_models import skin_lightness
    from teacher.train import load_seed_pairs

    seed_tone = sorted(round(skin_lightness(p.before, p.labels), 1) for p in load_seed_pairs(seeds)[0])
    tones = report["seed_tones"]  # how the seeds' skins cover the faces scored
    assert tones["seeds"] == seed_tone and 0 <= tones["darker_than_every_seed"] + tones["lighter_than_every_seed"] <= 1
    capsys.readouterr()
    assert cli_main(["teacher", "fidelity", "--seeds", str(seeds), "--photo", "astronaut"]) == 0
    printed = capsys.readouterr().out
    assert "teacher's prior on astronaut vs renderer" in printed
    assert f"skin lightness (CIELAB L): the seeds' {seed_tone[0]}-{seed_tone[-1]}, the photo's" in printed
    teacher = load_teacher(tiny_teacher, "cpu")
    alone = teacher_fidelity(teacher, count=3, progress=False, prior_only=True)
    for k, v in alone["recovery"].items():
        assert v is not None and abs(report["recovery"][k] - v) < 0.01, (k, report["recovery"], alone["recovery"])
    assert abs(report["psnr_gain"] - alone["psnr_gain"]) < 0.05
    faces = [generate_face(FIDELITY_SEED + i, 64) for i in range(3)]
    fitted = SeedPrior(seeds)
    ours = np.stack(fitted.translate([f.image for f in faces], [f.labels for f in faces]))
    theirs = np.stack(teacher.translate([f.image for f in faces], [f.labels for f in faces], seeds=[0, 1, 2],
                                        prior_only=True))
    src = np.stack([f.image for f in faces])
    diff = np.abs(ours.astype(int) - theirs)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3 and np.abs(ours.astype(int) - src).max() > 10
    with pytest.raises(TinyBeautyError, match="draws nothing"):
        fitted.translate([faces[0].image], [faces[0].labels], prior_only=False)
    capsys.readouterr()
    assert cli_main(["teacher", "fidelity", "--seeds", str(tmp_path), "--count", "1"]) != 0
    assert "no manifest.jsonl" in capsys.readouterr().err
    assert cli_main(["teacher", "fidelity", "--seeds", str(seeds), "--count", "1", "--agreement"]) != 0
    for flags in (["--steps", "3"], ["--samples", "2"], ["--no-refiner"], ["--device", "cpu"],
                  ["--sd-path", str(tmp_path)]):
        assert cli_main(["teacher", "fidelity", "--seeds", str(seeds), "--count", "1", *flags]) != 0
        err = capsys.readouterr().err
        assert f"{flags[0]}: --seeds scores the look prior alone" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        cli_main(["teacher", "fidelity", "--seeds", str(seeds), "--teacher", str(tiny_teacher)])
