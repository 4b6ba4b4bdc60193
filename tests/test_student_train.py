"""Student losses and trainer: loss goes down, checkpoints/metrics/grids, best-look bookkeeping, resume, eval."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from makeup.errors import TinyBeautyError
from makeup.pairs import PairDataset, PairTorchDataset, PairWriter, split_ids
from makeup.regions import EYES, LIPS, SKIN
from student.checkpoint import load_student
from student.losses import LossWeights, StudentLoss
from student.model import build_model, model_input

TINY_MODEL = {"widths": [4, 8, 8, 8]}


def write_tiny_pairs(root, count: int = 8, size: int = 64, seed: int = 0) -> None:
    """Faces-ish pairs: a target with darker 'eyes' and redder 'lips' than the source."""
    rng = np.random.default_rng(seed)
    writer = PairWriter(root)
    for i in range(count):
        src = np.clip(rng.normal(150, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        labels = np.zeros((size, size), np.uint8)
        labels[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = SKIN
        labels[size // 3: size // 3 + 4, size // 3: size // 2] = EYES
        labels[2 * size // 3: 2 * size // 3 + 5, size // 3: 2 * size // 3] = LIPS
        tgt = src.astype(np.int16)
        tgt[labels == EYES] -= 60
        tgt[labels == LIPS] += np.array([50, -30, -30], np.int16)
        writer.write(f"p{i:03d}", src, np.clip(tgt, 0, 255).astype(np.uint8), labels, style="test", origin="test")


@pytest.fixture(scope="module")
def tiny_pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs") / "pairs"
    write_tiny_pairs(root)
    return root


def tiny_settings(**overrides) -> dict:
    from student.train import student_settings

    return student_settings({"model": TINY_MODEL, "epochs": 3, "qat_epochs": 1, "batch_size": 4, "lr": 5e-3,
                             "qat_lr": 1e-3, "sample_every": 2, "train_crop": 48}, **overrides)


def test_a_few_steps_reduce_the_loss(tiny_pairs):
    torch.manual_seed(0)
    data = PairTorchDataset(PairDataset(tiny_pairs))
    batch = {k: torch.stack([data[i][k] for i in range(len(data))]) for k in ("source", "target", "mask")}
    model = build_model(TINY_MODEL)
    x = model_input(model.config.in_channels, batch["source"], batch["mask"])
    loss_fn = StudentLoss(LossWeights())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss, parts = loss_fn(model(x), batch["target"], batch["mask"], batch["source"])
        assert set(parts) == {"regions", "l1", "spill", "eyeliner"}
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses


def test_eyeliner_term_only_sees_the_eyes():
    loss_fn = StudentLoss(LossWeights(regions=0.0, l1=0.0, spill=0.0, eyeliner=1.0))
    source = torch.zeros(1, 3, 32, 32)
    target = source.clone()
    target[..., 4:6, 2:8] = 1.0  # a liner stroke on the eye
    pred = target.clone()
    pred[..., 20:30, 20:30] = 1.0  # an edge far from the eyes
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[0, 2:8, 2:8] = EYES
    assert float(loss_fn(pred, target, labels, source)[0]) == 0.0
    labels[0, 18:24, 18:24] = EYES
    assert float(loss_fn(pred, target, labels, source)[0]) > 0.0


def test_every_term_is_one_for_the_unchanged_face_and_zero_for_the_target(tiny_pairs):
    """The terms are ratios to the identity's error, so none dominates by its units."""
    data = PairTorchDataset(PairDataset(tiny_pairs))
    batch = {k: torch.stack([data[i][k] for i in range(4)]) for k in ("source", "target", "mask")}
    loss_fn = StudentLoss(LossWeights())
    _, same = loss_fn(batch["source"], batch["target"], batch["mask"], batch["source"])
    assert same["regions"] == pytest.approx(1.0) and same["l1"] == pytest.approx(1.0)
    assert same["eyeliner"] == pytest.approx(1.0) and same["spill"] == 0.0
    total, perfect = loss_fn(batch["target"], batch["target"], batch["mask"], batch["source"])
    assert float(total) == pytest.approx(0.0, abs=1e-6)


def test_eyeliner_term_responds_to_its_weight(tiny_pairs):
    data = PairTorchDataset(PairDataset(tiny_pairs))
    batch = {k: torch.stack([data[i][k] for i in range(4)]) for k in ("source", "target", "mask")}
    pred = batch["source"] + 0.5 * (batch["target"] - batch["source"])
    totals = [float(StudentLoss(LossWeights(eyeliner=w))(pred, batch["target"], batch["mask"], batch["source"])[0])
              for w in (0.0, 0.25, 1.0)]
    assert totals[0] < totals[1] < totals[2]


def test_unknown_loss_weight_is_named():
    with pytest.raises(TinyBeautyError, match="eyelinr"):
        LossWeights.from_dict({"eyelinr": 1.0})


@pytest.fixture(scope="module")
def trained(tiny_pairs, tmp_path_factory):
    from student.train import train_student

    out = tmp_path_factory.mktemp("student") / "run"
    summary = train_student(tiny_pairs, out, tiny_settings(), device="cpu", progress=False)
    return out, summary


def test_trainer_writes_checkpoints_metrics_grids_and_summary(trained):
    from student.train import read_metrics

    out, summary = trained
    for name in ("tinybeauty_best_loss.pt", "tinybeauty_best_look.pt", "tinybeauty_final.pt",
                 "tinybeauty_last.pt", "summary.json", "samples_epoch_2.png", "samples_epoch_4.png"):
        assert (out / name).is_file(), name
    epochs = [r for r in read_metrics(out) if "epoch" in r and "event" not in r]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4]
    assert [r["phase"] for r in epochs] == ["float"] * 3 + ["qat"]
    assert all(np.isfinite(r["val_psnr"]) and 0 < r["val_ssim"] <= 1 for r in epochs)
    assert all(set(r["val_recovery"]) == {"eyes", "lips", "skin", "brows", "cheeks"} and r["val_spill"] >= 0 for r in epochs)
    assert summary["final_val"]["recovery"]["lips"] is not None and summary["final_val"]["recovery"]["brows"] is None
    events = {r["event"]: r for r in read_metrics(out) if "event" in r}
    assert events["qat_start"]["float_val_psnr"] == pytest.approx(summary["float_val_psnr"])
    assert summary["qat_val_psnr"] is not None and summary["params"] > 0
    final = load_student(out / "tinybeauty_final.pt")
    assert final.qat and final.meta["epoch"] == 4
    assert json.loads((out / "summary.json").read_text())["epochs"] == 4


def test_best_look_checkpoint_holds_the_best_val_epoch(trained, tiny_pairs):
    from makeup.metrics import look_score
    from student.evaluate import evaluate
    from student.train import read_metrics

    out, _ = trained
    epochs = [r for r in read_metrics(out) if "epoch" in r and "event" not in r]
    best = max(epochs, key=lambda r: r["val_look_score"])
    ckpt = load_student(out / "tinybeauty_best_look.pt")
    assert ckpt.meta["epoch"] == best["epoch"]
    assert ckpt.meta["val_look_score"] == pytest.approx(best["val_look_score"])
    lowest = min(epochs, key=lambda r: r["val_loss"])
    assert load_student(out / "tinybeauty_best_loss.pt").meta["epoch"] == lowest["epoch"]
    # re-scoring the checkpoint on the same val split gives the logged numbers
    result = evaluate(out / "tinybeauty_best_look.pt", tiny_pairs, split="val")
    assert result["count"] == len(split_ids(PairDataset(tiny_pairs).ids)[1])
    tol = 0.01 if not ckpt.qat else 0.5
    assert result["psnr"] == pytest.approx(best["val_psnr"], abs=tol)
    assert look_score(result) == pytest.approx(best["val_look_score"], abs=tol / 10)


def test_val_every_validates_every_nth_epoch_and_each_phase_end(tiny_pairs, tmp_path):
    """Validation every 3rd epoch: epochs 3, 5 (the float model QAT starts from) and 6 (what export ships) are
    scored, the rest log their train loss only; the best_* checkpoints and the summary come from scored epochs,
    and the phase ends are not scored twice (the logged figures are the summary's, to the bit)."""
    from student.train import read_metrics, train_student

    out = tmp_path / "run"
    summary = train_student(tiny_pairs, out, tiny_settings(epochs=5, qat_epochs=1, val_every=3, sample_every=100),
                            device="cpu", progress=False)
    records = {r["epoch"]: r for r in read_metrics(out) if "epoch" in r and "event" not in r}
    assert sorted(records) == [1, 2, 3, 4, 5, 6]
    assert [e for e, r in records.items() if "val_psnr" in r] == [3, 5, 6]
    assert all(np.isfinite(r["train_loss"]) for r in records.values())
    assert load_student(out / "tinybeauty_best_look.pt").meta["epoch"] in (3, 5, 6)
    assert load_student(out / "tinybeauty_best_loss.pt").meta["epoch"] in (3, 5, 6)
    assert summary["float_val_psnr"] == records[5]["val_psnr"]
    assert summary["qat_val_psnr"] == records[6]["val_psnr"] and summary["final_val"]["psnr"] == records[6]["val_psnr"]
    assert sorted(p.name for p in out.glob("samples_epoch_*.png")) == ["samples_epoch_6.png"]
    with pytest.raises(TinyBeautyError, match="val_every"):
        tiny_settings(val_every=0)
    with pytest.raises(TinyBeautyError, match="prior_pairs"):
        tiny_settings(prior_pairs=0)


def test_look_score_prefers_a_model_that_applies_the_look_over_a_sharper_identity():
    """A model that skips the lips can have the higher PSNR (lips are a sliver of the crop); it must lose."""
    from makeup.metrics import look_score

    skips_lips = {"recovery": {"eyes": 0.95, "lips": 0.05, "skin": 0.9, "brows": None}, "spill": 0.1}
    whole_look = {"recovery": {"eyes": 0.85, "lips": 0.8, "skin": 0.85, "brows": None}, "spill": 0.3}
    assert look_score(whole_look) > look_score(skips_lips)


def test_resume_continues_from_the_saved_epoch(tiny_pairs, tmp_path):
    from student.train import read_metrics, train_student

    out = tmp_path / "run"
    train_student(tiny_pairs, out, tiny_settings(epochs=2, qat_epochs=0), device="cpu", progress=False)
    first = load_student(out / "tinybeauty_last.pt")
    assert first.trainer["state"]["epoch"] == 2 and "optimizer" in first.trainer
    summary = train_student(tiny_pairs, out, tiny_settings(epochs=2, qat_epochs=1), resume=True, device="cpu",
                            progress=False)
    epochs = [r["epoch"] for r in read_metrics(out) if "epoch" in r and "event" not in r]
    assert epochs == [1, 2, 3]  # epochs 1-2 not redone, epoch 3 (QAT) added
    assert load_student(out / "tinybeauty_final.pt").qat and summary["epochs"] == 3
    # resuming a finished run trains nothing more
    train_student(tiny_pairs, out, tiny_settings(epochs=2, qat_epochs=1), resume=True, device="cpu", progress=False)
    assert [r["epoch"] for r in read_metrics(out) if "epoch" in r and "event" not in r] == [1, 2, 3]


def test_resume_without_a_run_and_missing_pairs_are_errors(tiny_pairs, tmp_path):
    from student.train import train_student

    with pytest.raises(TinyBeautyError, match="nothing to resume"):
        train_student(tiny_pairs, tmp_path / "fresh", tiny_settings(), resume=True, progress=False)
    with pytest.raises(TinyBeautyError, match="no such pair dataset"):
        train_student(tmp_path / "nope", tmp_path / "out", tiny_settings(), progress=False)


def test_eval_of_a_float_checkpoint_on_all_pairs(trained, tiny_pairs):
    from student.evaluate import evaluate

    out, _ = trained
    result = evaluate(out / "tinybeauty_best_loss.pt", tiny_pairs, split="all")
    assert set(result) == {"psnr", "ssim", "lpips", "count", "psnr_identity", "psnr_gain", "recovery", "spill",
                           "visible_spill"}
    assert set(result["recovery"]) == {"eyes", "lips", "skin", "brows", "cheeks"}
    assert result["count"] == 8 and result["lpips"] is None  # no LPIPS weights offline
    assert 10 < result["psnr"] < 100 and 0 < result["ssim"] <= 1


def test_wandb_requested_but_missing_degrades_to_local_metrics(tmp_path, monkeypatch, caplog):
    import builtins

    from student.train import MetricsLog, read_metrics

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("no wandb here")
        return real_import(name, *args, **kwargs)

    monkeypatch.delenv("TINYBEAUTY_NO_WANDB", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with caplog.at_level("WARNING", logger="tinybeauty"):
        metrics = MetricsLog(tmp_path / "metrics.jsonl", use_wandb=True, config={})
    assert metrics.wandb is None
    assert len([r for r in caplog.records if "wandb" in r.getMessage()]) == 1
    metrics.write({"epoch": 1, "val_psnr": 30.0})
    assert read_metrics(tmp_path) == [{"epoch": 1, "val_psnr": 30.0}]


@pytest.mark.parametrize("region_input", [False, True])
def test_a_few_steps_on_a_lips_only_look_move_the_lips(region_input):
    """Lips are ~1 % of a face crop. Raw L1 + the eyeliner term (the old balance) leaves them alone (measured:
    lips recovery 0.000 after 300, 450 and 600 steps on these faces, some of whose lips are close to the skin);
    the normalised terms must reproduce a real share of them (measured, RGB only: 0.13 / 0.25 / 0.33). Told
    where the lips are (region input), the same net and steps reproduce twice as much of them (measured at 450 steps: 0.53 vs 0.25)."""
    import dataclasses

    from makeup.metrics import look_fidelity
    from makeup.render import render_makeup
    from makeup.styles import load_style
    from makeup.synth import generate_face

    red = load_style("red_lip")
    lips_only = dataclasses.replace(red, products={"lipstick": red.products["lipstick"]})

    def data(seeds, size=64):
        faces = [generate_face(s, size) for s in seeds]
        t = lambda a: torch.from_numpy(np.stack(a).astype(np.float32) / 255).permute(0, 3, 1, 2)  # noqa: E731
        return (t([f.image for f in faces]), t([render_makeup(f.image, f.labels, lips_only) for f in faces]),
                torch.from_numpy(np.stack([f.labels for f in faces]).astype(np.int64)))

    (src, tgt, lab), (vsrc, vtgt, vlab) = data(range(100, 108)), data(range(200, 204))
    torch.manual_seed(0)
    model = build_model({"widths": [8, 16, 16, 16], "region_input": region_input})
    c = model.config.in_channels
    x, vx = model_input(c, src, lab), model_input(c, vsrc, vlab)
    loss_fn = StudentLoss(LossWeights())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(450):
        loss, _ = loss_fn(model(x), tgt, lab, src)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = model(vx)
    nhwc = lambda x: x.permute(0, 2, 3, 1).numpy()  # noqa: E731
    fid = look_fidelity(nhwc(pred), nhwc(vsrc), nhwc(vtgt), vlab.numpy())
    assert fid["recovery"]["lips"] > (0.4 if region_input else 0.15), fid


def test_photo_augment_reaches_the_training_items(tiny_pairs, tmp_path):
    """The setting is what the trainer's items are drawn with (and validation stays unaugmented)."""
    from student.train import StudentTrainer

    photo = {"blur": 1.0, "noise": 0.02}
    trainer = StudentTrainer(tiny_pairs, tmp_path / "run", tiny_settings(photo_augment=photo), device="cpu",
                             progress=False)
    assert trainer.train_set.photo == photo and not trainer.val_set.augment
    plain = StudentTrainer(tiny_pairs, tmp_path / "plain", tiny_settings(), device="cpu", progress=False)
    assert not np.array_equal(trainer.train_set[0]["source"].numpy(), plain.train_set[0]["source"].numpy())


def test_a_prior_input_student_fits_its_look_prior_and_starts_from_the_look(tiny_pairs, tmp_path, capsys):
    """With ``prior_input`` the trainer fits the look prior on its training pairs, feeds it painted on each face
    (flipped with it) and keeps it in every checkpoint; the runner paints it again at eval. The toy look (one
    change per region) is what the prior says, so two epochs already give most of the lips, where the same
    student without the prior has barely begun."""
    from student.evaluate import evaluate
    from student.train import train_student
    from tinybeauty.cli import main

    with_prior = train_student(tiny_pairs, tmp_path / "p", tiny_settings(
        model={**TINY_MODEL, "prior_input": True}, epochs=2, qat_epochs=0, prior_pairs=4), device="cpu",
        progress=False)
    plain = train_student(tiny_pairs, tmp_path / "n", tiny_settings(epochs=2, qat_epochs=0), device="cpu",
                          progress=False)
    lips = with_prior["final_val"]["recovery"]["lips"]
    assert lips > 0.7 and lips > plain["final_val"]["recovery"]["lips"] + 0.3, (with_prior["final_val"],
                                                                               plain["final_val"])
    for name in ("tinybeauty_final.pt", "tinybeauty_last.pt", "tinybeauty_best_look.pt"):
        ckpt = load_student(tmp_path / "p" / name)
        assert ckpt.config.prior_input and ckpt.config.in_channels == 11 and ckpt.look_prior is not None
    again = evaluate(tmp_path / "p" / "tinybeauty_final.pt", tiny_pairs)
    assert again["recovery"]["lips"] == pytest.approx(lips, abs=1e-4)
    # the summary scores the prior alone on the same val pairs, as eval --prior-only does
    from student.runtime import load_runner, prior_only

    alone = evaluate(prior_only(load_runner(tmp_path / "p" / "tinybeauty_final.pt")), tiny_pairs)
    assert with_prior["prior_val"]["psnr_gain"] == pytest.approx(alone["psnr_gain"], abs=1e-3)
    assert with_prior["prior_val"]["recovery"]["lips"] == pytest.approx(alone["recovery"]["lips"], abs=1e-4)
    assert plain["prior_val"] is None
    assert main(["student", "info", "--checkpoint", str(tmp_path / "p" / "tinybeauty_final.pt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info["meta"]["look_prior"]) == {"templates", "region_models"}  # summarised, not the tables
