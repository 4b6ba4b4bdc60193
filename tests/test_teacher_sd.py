"""sd15-lora teacher on tiny SD-shaped folders (save_pretrained, random weights): CLI train/resume/amplify,
round trip, sharding, init = base, frozen base, exact zero correction, gating, base fingerprint, bad paths.

No network: every socket connection and name lookup raises inside this module, and the folders are local."""
from __future__ import annotations

import json
import socket
import string
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from makeup.pairs import PairDataset, PairWriter, check_pairs
from tinybeauty.cli import main as cli_main

from amplify_helpers import assert_same_pairs, interrupt_writes_after, pair_images, run_sharded_amplify

SIZE = 64  # seed/face size = working resolution here: latents are 8x8
SD_MODEL = {"resolution": SIZE, "sample_steps": 3, "lora_rank": 4, "gradient_checkpointing": True,
            "eyeliner_max_t": 0.5}
AMP_CFG = {"batch": 2, "seed": 3, "min_ssim": 0.0, "min_energy_ratio": 0.0, "visualize": 2}


def build_tiny_sd(root: Path, seed: int = 0, text_encoder: bool = False) -> Path:
    """A Stable-Diffusion-shaped diffusers folder: cross-attention UNet, 8x-downsampling VAE, SD1.5's
    scheduler config; optionally a 2-layer CLIP text encoder and a tokenizer from vocab files written here."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                         block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                         attention_head_dim=4, norm_num_groups=8).save_pretrained(root / "unet")
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                  latent_channels=4, norm_num_groups=8, sample_size=SIZE).save_pretrained(root / "vae")
    PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                  skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False).save_pretrained(root / "scheduler")
    if text_encoder:
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

        vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
        for c in string.ascii_lowercase:
            vocab[c] = len(vocab)
            vocab[c + "</w>"] = len(vocab)
        files = root / "vocab_src"
        files.mkdir(parents=True, exist_ok=True)
        (files / "vocab.json").write_text(json.dumps(vocab))
        (files / "merges.txt").write_text("#version: 0.2\n")
        CLIPTokenizer(str(files / "vocab.json"), str(files / "merges.txt"),
                      model_max_length=77).save_pretrained(root / "tokenizer")
        CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                     num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                                     bos_token_id=0, eos_token_id=1, pad_token_id=1)).save_pretrained(
            root / "text_encoder")
    return root


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """Any connection or DNS lookup from this process fails the test (the SD folders are read offline)."""
    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a[:2]}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        mp.delenv("TINYBEAUTY_SD_PATH", raising=False)
        yield


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sd")


@pytest.fixture(scope="module")
def sd_base(work) -> Path:
    return build_tiny_sd(work / "sd_a", seed=0)


@pytest.fixture(scope="module")
def sd_other(work) -> Path:
    return build_tiny_sd(work / "sd_b", seed=1, text_encoder=True)


@pytest.fixture(scope="module")
def seeds(work) -> Path:
    from makeup.render import render_makeup
    from makeup.synth import generate_face

    writer = PairWriter(work / "seeds")
    for i in range(5):
        f = generate_face(100 + i, SIZE)
        writer.write(f"seed_{i}", f.image, render_makeup(f.image, f.labels, "glamorous"), f.labels,
                     style="glamorous", origin="render")
    return work / "seeds"


@pytest.fixture(scope="module")
def profile(work) -> Path:
    """A profile whose teacher section defaults to tiny-ddpm and holds the sd15-lora subsection."""
    p = work / "profile.yaml"
    p.write_text(yaml.safe_dump({
        "teacher": {"backend": "tiny-ddpm", "epochs": 99, "model": {"resolution": 32, "base_channels": 8},
                    "sd15-lora": {"epochs": 2, "batch_size": 5, "sample_every": 2, "held_out_faces": 0, "sample_steps": 1,
                                  "lr": 1e-3, "device": "cpu", "model": SD_MODEL}},
        "amplify": AMP_CFG}))
    return p


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


@pytest.fixture(scope="module")
def sd_teacher(work, sd_base, seeds, profile) -> Path:
    out = work / "teacher"
    args = ["teacher", "train", "--seeds", str(seeds), "--out", str(out), "--backend", "sd15-lora",
            "--sd-path", str(sd_base), "--profile", str(profile)]
    assert cli_main(args) == 0
    assert cli_main(args + ["--resume", "--epochs", "3"]) == 0  # picks up at epoch 3
    return out


def _amplify(teacher, out: Path, *extra) -> int:
    return cli_main(["amplify", "--teacher", str(teacher), "--faces", "synthetic", "--count", "4", "--out", str(out),
                     "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def fresh_pairs(work, sd_teacher, profile) -> Path:
    out = work / "pairs"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert _amplify(sd_teacher, out, "--profile", str(profile)) == 0
    finally:
        torch.set_num_threads(threads)
    return out



def _backend(sd_path: Path, **over):
    from teacher.backends import get_backend

    return get_backend("sd15-lora").from_config({**SD_MODEL, "sd_path": str(sd_path), **over}).to("cpu")


# --- CLI: train, resume, amplify --------------------------------------------------------------------------
def test_train_writes_teacher_with_base_fingerprint(sd_teacher, sd_base):
    from safetensors import safe_open

    from teacher.backends.sd15_lora import fingerprint_base

    names = {p.name for p in sd_teacher.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "dda_final.safetensors", "dda_checkpoint_epoch_2.pt",
            "dda_checkpoint_epoch_3.pt", "sample_epoch_2.png", "sample_epoch_3.png"} <= names
    assert "dda_final.pt" not in names
    epochs = [json.loads(x)["epoch"] for x in (sd_teacher / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    cfg = yaml.safe_load((sd_teacher / "config.yaml").read_text())
    assert cfg["backend"] == "sd15-lora" and cfg["base"]["fingerprint"] == fingerprint_base(sd_base)
    assert cfg["model"]["resolution"] == SIZE and "base_channels" not in cfg["model"]  # tiny-ddpm keys stay out
    assert cfg["model"]["style_init"] == "random"  # this base has no text encoder
    with safe_open(str(sd_teacher / "dda_final.safetensors"), framework="pt") as fh:
        keys = list(fh.keys())
        lora = [k for k in keys if ".lora_" in k]
        assert json.loads(fh.metadata()["model_config"])["lora_rank"] == 4
    # Only trained tensors: LoRA on to_q/to_k/to_v/to_out.0, conv_in, the style embedding, the RDM/FGMM head.
    assert lora and all(k.split(".lora_")[0].rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v", "0") for k in lora)
    assert set(keys) - set(lora) == {"style_embedding", "unet.conv_in.weight", "unet.conv_in.bias", "head.alpha",
                                     "head.fgmm.region_weights", "head.residual_scale", "head.region_prior"}


def test_amplify_outputs_and_gate(fresh_pairs):
    assert check_pairs(fresh_pairs).count == 4
    rec = PairDataset(fresh_pairs).records[0]
    assert rec["origin"] == "amplify" and rec["style"] == "glamorous"
    changed = 0
    for src, tgt, mask in pair_images(fresh_pairs).values():
        np.testing.assert_array_equal(tgt[mask == 0], src[mask == 0])  # outside the gate nothing changes
        changed += int((tgt[mask > 0] != src[mask > 0]).any())
    assert changed == 4


def test_amplify_kill_and_resume_is_exact(sd_teacher, fresh_pairs, profile, tmp_path, monkeypatch, one_thread):
    out = tmp_path / "pairs"
    real_write = interrupt_writes_after(monkeypatch, 1)  # killed between two pairs
    assert _amplify(sd_teacher, out, "--profile", str(profile)) == 130
    monkeypatch.setattr(PairWriter, "write", real_write)
    assert len(PairDataset(out)) == 1
    assert _amplify(sd_teacher, out, "--profile", str(profile)) == 0
    assert_same_pairs(out, fresh_pairs)



def test_sharded_amplify_equals_single_process(sd_teacher, fresh_pairs, profile, tmp_path):
    out = tmp_path / "sharded"
    run_sharded_amplify(sd_teacher, out, profile, 4, drop_env=("TINYBEAUTY_SD_PATH",),
                        extra_env={"HF_HUB_OFFLINE": "1"})
    assert_same_pairs(out, fresh_pairs)


def test_different_base_refused_in_one_line(sd_teacher, sd_other, tmp_path, capsys, monkeypatch):
    assert _amplify(sd_teacher, tmp_path / "p", "--sd-path", str(sd_other)) == 2
    line = _one_error(capsys)
    assert "--sd-path" in line and "not the base" in line
    monkeypatch.setenv("TINYBEAUTY_SD_PATH", str(sd_other))  # the variable names it too
    assert cli_main(["teacher", "fidelity", "--teacher", str(sd_teacher), "--count", "1", "--device", "cpu"]) == 2
    assert "not the base" in _one_error(capsys)
    assert not (tmp_path / "p").exists()


def test_missing_or_wrong_sd_path_is_one_line(seeds, sd_base, tmp_path, capsys):
    train = ["teacher", "train", "--seeds", str(seeds), "--backend", "sd15-lora", "--profile", "demo"]
    assert cli_main(train + ["--out", str(tmp_path / "t")]) == 2
    assert "--sd-path" in _one_error(capsys)
    assert cli_main(train + ["--out", str(tmp_path / "t"), "--sd-path", str(tmp_path / "nowhere")]) == 2
    assert "--sd-path" in _one_error(capsys)
    partial = tmp_path / "partial"
    (partial / "unet").mkdir(parents=True)
    (partial / "unet" / "config.json").write_text((sd_base / "unet" / "config.json").read_text())
    assert cli_main(train + ["--out", str(tmp_path / "t"), "--sd-path", str(partial)]) == 2
    line = _one_error(capsys)
    assert "--sd-path" in line and "vae/config.json" in line
    broken = tmp_path / "broken"
    for sub in ("unet", "vae", "scheduler"):
        (broken / sub).mkdir(parents=True)
        for f in (sd_base / sub).iterdir():
            (broken / sub / f.name).write_bytes(f.read_bytes() if f.suffix == ".json" else b"not weights")
    assert cli_main(train + ["--out", str(tmp_path / "t"), "--sd-path", str(broken)]) == 2
    line = _one_error(capsys)
    assert "--sd-path" in line and "cannot load unet/" in line
    assert not (tmp_path / "t").exists()


# --- the backend ------------------------------------------------------------------------------------------
def test_widened_unet_with_lora_starts_as_the_base(sd_base):
    from diffusers import UNet2DConditionModel

    backend = _backend(sd_base)
    base = UNet2DConditionModel.from_pretrained(str(sd_base), subfolder="unet", local_files_only=True)
    g = torch.Generator().manual_seed(0)
    x, z, m = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g), torch.rand(2, 4, 8, 8, generator=g)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        ours = backend._unet(x, torch.cat([z, m], dim=1), t)
        ref = base(x, t, encoder_hidden_states=backend.style_embedding.expand(2, -1, -1)).sample
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    assert backend.unet.config.in_channels == 12


def test_round_trip_bit_identical_and_base_untouched(sd_base, seeds, tmp_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from makeup.synth import generate_face
    from teacher.backends.sd15_lora import fingerprint_base
    from teacher.inference import CONFIG, load_teacher, translate, write_final
    from teacher.train import load_seed_pairs, make_batch

    before_fp = fingerprint_base(sd_base)
    torch.manual_seed(0)
    backend = _backend(sd_base, eyeliner_max_t=1.0)
    pairs, style = load_seed_pairs(seeds)
    backend.prepare(pairs, style)
    backend.enable_ema()
    opt = torch.optim.Adam(backend.trainable(), lr=1e-2)
    batch = make_batch([(p.before, p.after, p.labels) for p in pairs[:2]], SIZE, 2.0, "cpu")
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        loss, parts = backend.training_loss(batch, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        backend.after_step()
    assert parts["eyeliner"] > 0  # the decoded eye crops took part
    teacher_cfg = {"backend": backend.name, "style": style, "size": SIZE}
    (tmp_path / CONFIG).write_text(yaml.safe_dump(teacher_cfg))
    write_final(tmp_path, backend, teacher_cfg, 2)
    faces = [generate_face(7 + i, SIZE) for i in range(2)]
    args = ([f.image for f in faces], [f.labels for f in faces], [11, 12])
    with backend.ema_weights():
        trained = translate(backend, *args)
    loaded = load_teacher(tmp_path, "cpu").translate(*args)
    for a, b in zip(trained, loaded):
        np.testing.assert_array_equal(a, b)
    assert any((a != f.image).any() for a, f in zip(trained, faces))
    # The frozen base is untouched in memory (LoRA sits beside it) and on disk.
    base = UNet2DConditionModel.from_pretrained(str(sd_base), subfolder="unet", local_files_only=True).state_dict()
    ours = {k.replace(".base_layer", ""): v for k, v in backend.unet.state_dict().items() if "lora_" not in k}
    frozen = [k for k in base if not k.startswith("conv_in.")]
    assert frozen and all(torch.equal(ours[k], base[k]) for k in frozen)
    vae = AutoencoderKL.from_pretrained(str(sd_base), subfolder="vae", local_files_only=True).state_dict()
    assert all(torch.equal(backend.vae.state_dict()[k], v) for k, v in vae.items())
    assert not any(p.requires_grad for n, p in backend.unet.named_parameters() if "lora_" not in n
                   and not n.startswith("conv_in."))
    assert fingerprint_base(sd_base) == before_fp


def test_zero_correction_returns_the_photo_exactly(sd_base, monkeypatch):
    from makeup.synth import generate_face
    from teacher.inference import translate

    backend = _backend(sd_base)
    with torch.no_grad():
        backend.head.region_prior.normal_()
        backend.head.fgmm.region_weights.uniform_(0.5, 2)
    z = backend.encode(torch.rand(2, 3, SIZE, SIZE))
    assert torch.count_nonzero(backend.latent_residual(z, torch.zeros_like(z))) == 0
    with torch.no_grad():
        backend.head.alpha.zero_()
    monkeypatch.setattr(backend, "sample_correction", lambda z_b, m, gens, steps=None: torch.zeros_like(z_b))
    faces = [generate_face(3 + i, SIZE) for i in range(2)]
    outs = translate(backend, [f.image for f in faces], [f.labels for f in faces], [1, 2])
    for out, f in zip(outs, faces):
        np.testing.assert_array_equal(out, f.image)


def test_style_embedding_from_text_encoder(sd_other, seeds):
    from transformers import CLIPTextModel, CLIPTokenizer

    from teacher.train import load_seed_pairs

    backend = _backend(sd_other)
    pairs, style = load_seed_pairs(seeds)
    backend.prepare(pairs, style)
    assert backend.config["style_init"] == "text: glamorous makeup"
    tok = CLIPTokenizer.from_pretrained(str(sd_other), subfolder="tokenizer", local_files_only=True)
    enc = CLIPTextModel.from_pretrained(str(sd_other), subfolder="text_encoder", local_files_only=True)
    ids = tok("glamorous makeup", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(backend.style_embedding, enc(ids).last_hidden_state)
    assert len(backend.config["region_prior"]) == 4 and len(backend.config["region_prior"][0]) == 4
    assert backend.config["residual_scale"] >= 1.0


def test_profile_backend_sections():
    from teacher.train import teacher_section

    section = {"backend": "tiny-ddpm", "epochs": 10, "lr": 1e-3, "model": {"base_channels": 8},
               "sd15-lora": {"lr": 1e-4, "model": {"lora_rank": 8}}}
    assert teacher_section(section) == {"backend": "tiny-ddpm", "epochs": 10, "lr": 1e-3,
                                        "model": {"base_channels": 8}}
    assert teacher_section(section, "sd15-lora") == {"backend": "sd15-lora", "epochs": 10, "lr": 1e-4,
                                                     "model": {"lora_rank": 8}}
    assert teacher_section({"backend": "tiny-ddpm", "model": {"base_channels": 8}}, "sd15-lora")["model"] == {}
