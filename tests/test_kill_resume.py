"""A real training process is SIGKILLed mid-run, resumed, and ends where an uninterrupted run ends.

Student and teacher: the same command runs twice in subprocesses, once uninterrupted and once killed with
SIGKILL as soon as its first resumable checkpoint is on disk, then resumed with ``--resume``. The final weights
must be identical (both trainers continue every random stream from the checkpoint) and every checkpoint the
kill left must load (they are written to a temp file and renamed).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from test_student_train import write_tiny_pairs
from test_teacher_amplify import TINY_MODEL, TINY_REFINER, write_seed_pairs

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TINYBEAUTY_NO_WANDB": "1"}


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "tinybeauty", *argv]


def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]


def _run(argv: list[str]) -> None:
    _finish(_start(argv))


def _kill_when(argv: list[str], ready, timeout: float = 300) -> None:
    """Start ``argv``, SIGKILL it the moment ``ready()`` holds; fail if it finished first."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        while not ready():
            assert proc.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() - t0 < timeout
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _profile(tmp_path: Path, data: dict) -> str:
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def _epochs(out: Path) -> list[int]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r["epoch"] for r in map(json.loads, lines) if "epoch" in r and "event" not in r]


def test_student_killed_mid_run_resumes_to_the_uninterrupted_weights(tmp_path):
    from student.checkpoint import load_student

    pairs = tmp_path / "pairs"
    write_tiny_pairs(pairs, count=16, size=64)
    prof = _profile(tmp_path, {"student": {"model": {"widths": [4, 8, 8, 8]}, "epochs": 3, "qat_epochs": 1,
                                           "batch_size": 4, "lr": 5e-3, "qat_lr": 1e-3, "train_crop": 48,
                                           "lr_schedule": "cosine", "sample_every": 10}})
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    train = lambda out, *extra: _cli("student", "train", "--pairs", str(pairs), "--out", str(out),  # noqa: E731
                                     "--profile", prof, "--device", "cpu", *extra)
    uninterrupted = _start(train(whole))  # beside the killed one (one thread each: same numerics)
    _kill_when(train(killed), lambda: (killed / "tinybeauty_last.pt").exists())
    assert not (killed / "tinybeauty_final.pt").exists() and len(_epochs(killed)) < 4
    for ckpt in killed.glob("*.pt"):  # whatever the kill interrupted, no checkpoint is torn
        assert load_student(ckpt).meta["epoch"] >= 1
    _run(train(killed, "--resume"))
    _finish(uninterrupted)

    a, b = load_student(whole / "tinybeauty_final.pt"), load_student(killed / "tinybeauty_final.pt")
    assert a.qat and b.qat
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    for key, value in a.qat_state.items():
        assert torch.equal(value, b.qat_state[key]), key
    assert _epochs(killed) == _epochs(whole) == [1, 2, 3, 4]
    rec = yaml.safe_load((killed / "settings.yaml").read_text())
    assert rec["stage"] == "student" and rec["settings"]["epochs"] == 3 and rec["inputs"]["resumed_from_epoch"] >= 1
    assert b.meta["style"] == "test" and b.meta["look_gate"]["regions"]  # the trainer records the look itself

    # a resume asking for other settings would mix two runs: refused in one line
    other = _profile(tmp_path, {"student": {"model": {"widths": [4, 8, 8, 8]}, "epochs": 3, "qat_epochs": 1,
                                            "batch_size": 4, "lr": 1e-2, "qat_lr": 1e-3, "train_crop": 48,
                                            "lr_schedule": "cosine", "sample_every": 10}})
    proc = subprocess.run(_cli("student", "train", "--pairs", str(pairs), "--out", str(killed), "--profile", other,
                               "--device", "cpu", "--resume"), cwd=ROOT, env=ENV, capture_output=True, text=True)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "other settings (lr differ" in err[0], err


def test_teacher_killed_mid_run_resumes_to_the_uninterrupted_weights(tmp_path):
    seeds = write_seed_pairs(tmp_path / "seeds")
    prof = _profile(tmp_path, {"teacher": {"backend": "tiny-ddpm", "epochs": 24, "sample_every": 6,
                                           "batch_size": 5, "held_out_faces": 0, "lr": 1e-3,
                                           "model": {**TINY_MODEL, "dropout": 0.1}, "refiner": TINY_REFINER}})
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    train = lambda out, *extra: _cli("teacher", "train", "--seeds", str(seeds), "--out", str(out),  # noqa: E731
                                     "--profile", prof, "--device", "cpu", *extra)
    uninterrupted = _start(train(whole))
    _kill_when(train(killed), lambda: (killed / "dda_checkpoint_epoch_6.pt").exists())
    assert not (killed / "dda_final.pt").exists()
    for ckpt in killed.glob("dda_checkpoint_epoch_*.pt"):
        torch.load(ckpt, map_location="cpu", weights_only=False)  # complete files only
    _run(train(killed, "--resume"))
    _finish(uninterrupted)

    a = torch.load(whole / "dda_final.pt", map_location="cpu", weights_only=False)
    b = torch.load(killed / "dda_final.pt", map_location="cpu", weights_only=False)
    wa, wb = a["weights"], b["weights"]
    flat = lambda d, p="": [(p + k, v) for k, v in d.items() if not isinstance(v, dict)] + [  # noqa: E731
        x for k, v in d.items() if isinstance(v, dict) for x in flat(v, p + k + ".")]
    pa, pb = dict(flat(wa)), dict(flat(wb))
    assert pa.keys() == pb.keys()
    for key, value in pa.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, pb[key]), key
    la = [json.loads(x)["loss"] for x in (whole / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert len(lb) == len(la) == 24 and lb[-12:] == la[-12:]
    rec = yaml.safe_load((killed / "settings.yaml").read_text())
    assert rec["stage"] == "teacher" and rec["profile"] == prof and rec["inputs"]["resumed_from_epoch"] >= 6
