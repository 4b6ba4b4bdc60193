"""End to end: a tiny QAT student, trained a few steps, exported once per session to every format.

Parity numbers are re-derived here from the real runtimes (ai-edge-litert, onnxruntime) and a corrupted
weight must fail the gate. Everything runs at 32x32 on the CPU.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

import numpy as np
import pytest

from export import FORMATS, ExportRefused, ExportRequest, run_export
from export.parity import compare, load_parity_set, parity_failures, run_each, run_torch
from makeup.errors import TinyBeautyError

SIZE = 32
TINY_WIDTHS = (8, 8, 8, 8)
CFG = {"size": SIZE, "parity_images": 6, "calib_images": 8}


def _write_pairs(root: Path, count: int = 40) -> Path:
    """Blocky random faces and a warm tint: a residual the tiny net can start to learn in a few steps."""
    from makeup.pairs import PairWriter

    rng = np.random.default_rng(0)
    writer = PairWriter(root)
    labels = _labels()
    for i in range(count):
        src = (rng.random((SIZE // 4, SIZE // 4, 3)) * 255).astype(np.uint8).repeat(4, 0).repeat(4, 1)
        tgt = np.clip(src.astype(int) + [18, -6, 4], 0, 255).astype(np.uint8)
        writer.write(f"p{i:03d}", src, tgt, labels, style="tint", origin="test")
    return root


def _labels() -> np.ndarray:
    labels = np.zeros((SIZE, SIZE), np.uint8)
    labels[4:28, 4:28] = 3  # skin
    labels[20:24, 10:22] = 2  # lips
    return labels


def _train_checkpoints(root: Path, widths=TINY_WIDTHS, steps: int = 4, look_prior=None) -> tuple[Path, Path]:
    """(QAT checkpoint, float checkpoint) of one tiny student trained ``steps`` QAT steps (a prior-input one,
    reading ``look_prior``, when given)."""
    import torch

    from student.checkpoint import save_checkpoint
    from student.model import StudentConfig, build_model, model_input
    from student.qat import float_state_from_prepared, prepare_qat

    torch.manual_seed(0)
    cfg = StudentConfig(widths=widths, prior_input=look_prior is not None)
    model = build_model(cfg)
    # The student's head starts at zero (identity net) and QAT's moving-average observers would keep its
    # output range near zero for a few steps; a non-zero head gives a residual that parity can see.
    torch.nn.init.normal_(model.head.weight, 0.0, 0.05)
    rgb = torch.rand(4, 3, SIZE, SIZE)
    x = model_input(cfg.in_channels, rgb, np.repeat(_labels()[None], 4, axis=0), look_prior)  # the pairs' masks
    target = (rgb + torch.tensor([0.07, -0.02, 0.015]).view(1, 3, 1, 1)).clamp(0, 1)
    prepared, _ = prepare_qat(model, x)
    opt = torch.optim.Adam(prepared.parameters(), 1e-3)
    for _ in range(steps):
        loss = ((prepared(x) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.load_state_dict(float_state_from_prepared(prepared, model))
    meta = {"style": "tint"} | ({} if look_prior is None else {"look_prior": look_prior.state()})
    qat = save_checkpoint(root / "qat.pt", model, config=cfg, qat_state=prepared.state_dict(), meta=meta)
    flt = save_checkpoint(root / "float.pt", model, config=cfg, meta=meta)
    return qat, flt


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    pairs = _write_pairs(root / "pairs")
    qat, flt = _train_checkpoints(root)
    out = root / "export"
    report = run_export(ExportRequest.build(qat, out, None, calib=pairs, config=CFG), progress=False)
    return {"root": root, "pairs": pairs, "qat": qat, "float": flt, "out": out, "report": report}


@pytest.fixture(scope="session")
def quantized(exported):
    from export.quantize import load_checkpoint, quantize_student

    return quantize_student(load_checkpoint(exported["qat"]), SIZE)


def test_every_format_exports_within_budget(exported):
    out, report = exported["out"], exported["report"]
    assert report["passed"] and report["failures"] == [] and report["quantization"] == "qat"
    assert set(report["formats"]) == {"tflite", "onnx", "ort", "coreml"}
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["formats"].keys() == report["formats"].keys()
    from export.formats import artifact_bytes

    for name, entry in report["formats"].items():
        for key in ("path", "bytes", "within_budget", "psnr_vs_torch", "psnr_vs_target", "max_abs_diff",
                    "verified", "reason"):
            assert key in entry, (name, key)
        assert entry["path"] == FORMATS[name].filename
        if entry["shipped"]:
            assert artifact_bytes(out / entry["path"]) == entry["bytes"] <= 102_400
    for name in ("tflite", "onnx", "coreml"):
        assert report["formats"][name]["shipped"], name
    assert "| tflite |" in (out / "report.md").read_text()
    assert "Look fidelity vs the target" in (out / "report.md").read_text()


def test_runtime_parity_numbers_are_real(exported, quantized):
    """LiteRT and ONNX Runtime run the files; the report's PSNRs are what those outputs give."""
    from student.runtime import load_runner

    report, out = exported["report"], exported["out"]
    ps = load_parity_set(exported["pairs"], SIZE, CFG["parity_images"])
    assert report["parity_set"]["images"] == len(ps.ids) >= 2
    for name, graph in (("tflite", quantized.unfolded), ("onnx", quantized.folded)):
        entry = report["formats"][name]
        assert entry["verified"] is True and entry["reason"] is None
        assert entry["psnr_vs_torch"] >= 45.0
        assert entry["torch_psnr_vs_target"] - entry["psnr_vs_target"] <= 0.1
        runner = load_runner(out / entry["path"])
        x = ps.inputs(runner.channels)
        assert runner.channels == 8 and x.shape[1] == 8 and np.array_equal(x[:, :3], ps.sources)
        p = compare(run_each(runner, x), run_torch(graph, x), ps.targets, ps)
        assert p.psnr_vs_torch == pytest.approx(entry["psnr_vs_torch"], abs=1e-3)
        assert p.psnr_vs_target == pytest.approx(entry["psnr_vs_target"], abs=1e-3)
        # per region too: the artifact keeps the look the PyTorch graph has, in each region the pairs change
        changed = [r for r, v in entry["torch_fidelity"]["recovery"].items() if v is not None]
        assert changed and entry["fidelity"]["recovery"]["brows"] is None
        for region in changed:
            assert entry["fidelity"]["recovery"][region] == pytest.approx(p.fidelity["recovery"][region], abs=1e-4)
            assert abs(entry["fidelity"]["recovery"][region] - entry["torch_fidelity"]["recovery"][region]) <= 0.02
    assert load_runner(out / "tinybeauty.tflite").layout == "NHWC"


def test_model_card_states_the_io_contract(exported):
    card = json.loads((exported["out"] / "model_card.json").read_text())
    assert card["style"] == "tint" and card["params"] > 0 and card["macs"] > 0
    assert card["io"]["value_range"] == [0.0, 1.0] and card["io"]["dtype"] == "float32"
    tfl = card["artifacts"]["tflite"]
    assert (tfl["layout"], tfl["shape"], tfl["input"], tfl["output"]) == ("NHWC", [1, SIZE, SIZE, 8], "image", "made_up")
    assert tfl["output_shape"] == [1, SIZE, SIZE, 3]
    assert card["artifacts"]["onnx"]["shape"] == ["batch", 8, SIZE, SIZE]
    assert card["artifacts"]["onnx"]["output_shape"] == ["batch", 3, SIZE, SIZE]
    # the region input: which mask is in which channel, and how soft (apps compute them from the face mesh)
    assert card["io"]["channels"] == 8
    assert card["io"]["region_input"]["channels"] == ["eyes", "lips", "skin", "brows", "cheeks"]
    cheeks = card["io"]["region_input"]["cheeks"]  # the numbers an app's cheek map is computed with
    from makeup import metrics

    assert (cheeks["outward"], cheeks["drop"], cheeks["spread"], cheeks["falloff"], cheeks["min_pixels"]) == \
        (metrics.CHEEK_OUT, metrics.CHEEK_DROP, list(metrics.CHEEK_SPREAD), metrics.CHEEK_FALLOFF, metrics.CHEEK_MIN_PIXELS)
    assert card["io"]["region_input"]["first_channel"] == 3 and card["io"]["region_input"]["feather"] == 0.02


def test_tflite_signature_and_int8_weights(exported):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(exported["out"] / "tinybeauty.tflite"))
    assert interp.get_signature_list() == {"serving_default": {"inputs": ["image"], "outputs": ["made_up"]}}
    dtypes = {d["dtype"] for d in interp.get_tensor_details()}
    assert np.int8 in dtypes and interp.get_input_details()[0]["dtype"] == np.float32


def test_onnx_is_self_contained_stripped_and_int8(exported):
    import onnx

    path = exported["out"] / "tinybeauty.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert not any(n.metadata_props for n in model.graph.node) and not model.graph.value_info
    weights = [t for t in model.graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.UINT8 for t in weights)  # int8 values + 128 (uint8_weights)
    assert "DequantizeLinear" in {n.op_type for n in model.graph.node}


def test_coreml_package_validates_on_linux(exported):
    from export.coreml import DEBUG_FILE, validate_coreml

    entry = exported["report"]["formats"]["coreml"]
    pkg = exported["out"] / "tinybeauty.mlpackage"
    check = validate_coreml(pkg, SIZE, 8)
    assert not validate_coreml(pkg, SIZE, 3)["ok"]  # an RGB-only app would feed it the wrong input
    assert check["ok"], check["problems"]
    assert "conv" in check["ops"] and check["inputs"] == {"image": [1, 8, SIZE, SIZE]}
    assert not (pkg / DEBUG_FILE).exists()
    if platform.system() != "Darwin":
        assert entry["verified"] is False and "macOS" in entry["reason"]
        assert entry["spec_check"]["ok"]


@pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML predicts only on macOS")
def test_coreml_predicts_on_macos(exported):
    entry = exported["report"]["formats"]["coreml"]
    assert entry["verified"] is True and entry["psnr_vs_torch"] >= 45.0


def test_coreml_falls_back_to_smaller_modes_when_over_budget(quantized, tmp_path):
    from export.coreml import export_coreml, validate_coreml

    pkg = tmp_path / "m.mlpackage"
    details = export_coreml(quantized, pkg, {"budget_bytes": 1, "coreml_modes": ["qat", "int8", "palettize6"]})
    tried = details["modes_tried"]
    assert list(tried) == ["qat", "int8", "palettize6"] and details["mode"] == "palettize6"
    assert tried["palettize6"] < tried["qat"]
    assert validate_coreml(pkg, SIZE, 8)["ok"]


def _bit_rot(weight: np.ndarray) -> np.ndarray:
    """Random int8 values in place of a trained weight: what a damaged download or a bad copy looks like (in the
    weight's own storage: the ONNX file keeps its int8 values as uint8 + 128)."""
    rot = np.random.default_rng(7).integers(-127, 128, weight.shape)
    return (rot + 128).astype(np.uint8) if weight.dtype == np.uint8 else rot.astype(np.int8)


def _corrupt_tflite_weight(path: Path) -> None:
    """Overwrite the output conv's int8 weight (3 output channels) in place, found by its bytes."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    data = bytearray(path.read_bytes())
    heads = []
    for d in interp.get_tensor_details():
        if d["dtype"] == np.int8 and len(d["shape"]) == 4 and d["shape"][0] == 3:
            try:  # constants have data before allocate_tensors(); activations do not
                heads.append(interp.get_tensor(d["index"]))
            except ValueError:
                continue
    assert len(heads) == 1
    raw = heads[0].tobytes()
    assert data.count(raw) == 1
    at = data.find(raw)
    data[at:at + len(raw)] = _bit_rot(heads[0]).tobytes()
    path.write_bytes(bytes(data))


def test_corrupted_tflite_weight_fails_parity(exported, quantized, tmp_path):
    from student.runtime import load_runner

    bad = tmp_path / "bad.tflite"
    shutil.copy(exported["out"] / "tinybeauty.tflite", bad)
    _corrupt_tflite_weight(bad)
    ps = load_parity_set(exported["pairs"], SIZE, CFG["parity_images"])
    x = ps.inputs(8)
    p = compare(run_each(load_runner(bad), x), run_torch(quantized.unfolded, x), ps.targets)
    assert parity_failures(p, 45.0, 0.1), p


def _corrupting_onnx_exporter(real):
    def export_onnx(qs, path, cfg, staged=None):
        import onnx
        from onnx import numpy_helper

        details = real(qs, path, cfg, staged)
        model = onnx.load(str(path))
        heads = [t for t in model.graph.initializer
                 if t.data_type == onnx.TensorProto.UINT8 and len(t.dims) == 4 and t.dims[0] == 3]
        assert len(heads) == 1  # the output conv
        w = heads[0]
        w.CopyFrom(numpy_helper.from_array(_bit_rot(numpy_helper.to_array(w)), w.name))
        path.write_bytes(model.SerializeToString())
        return details
    return export_onnx


def test_corrupted_onnx_weight_fails_the_export_and_ships_nothing(exported, tmp_path, monkeypatch):
    import export.onnx as eo

    out = tmp_path / "export"
    shutil.copytree(exported["out"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    monkeypatch.setattr(eo, "export_onnx", _corrupting_onnx_exporter(eo.export_onnx))
    with pytest.raises(ExportRefused, match=r"onnx: PSNR vs PyTorch"):
        run_export(ExportRequest.build(exported["qat"], out, "onnx", calib=exported["pairs"], config=CFG),
                   progress=False)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "report.failed.json"}
    assert after == before  # the previous export is untouched
    failed = json.loads((out / "report.failed.json").read_text())
    assert failed["passed"] is False and failed["formats"]["onnx"]["psnr_vs_torch"] < 45.0
    assert failed["settings"]["size"] == CFG["size"] and failed["inputs"]["formats"] == ["onnx"]
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]


def test_reexport_replaces_artifacts_atomically(exported, tmp_path):
    out = tmp_path / "export"
    shutil.copytree(exported["out"], out)
    old_inode = os.stat(out / "tinybeauty.onnx").st_ino
    old_pkg = os.stat(out / "tinybeauty.mlpackage").st_ino
    killed = tmp_path / ".export.staging-999999999-abc"  # left by an export killed mid-way (pid gone)
    (killed / "tinybeauty.onnx").mkdir(parents=True)
    report = run_export(ExportRequest.build(exported["qat"], out, "onnx", calib=exported["pairs"], config=CFG),
                        progress=False)
    assert set(report["formats"]) == {"onnx"}
    assert os.stat(out / "tinybeauty.onnx").st_ino != old_inode  # renamed in, not rewritten in place
    assert os.stat(out / "tinybeauty.mlpackage").st_ino == old_pkg  # formats not asked for are left alone
    assert json.loads((out / "report.json").read_text())["formats"].keys() == {"onnx"}
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert leftovers == [] and not [p for p in tmp_path.iterdir() if ".staging-" in p.name]


def test_budget_gate_refuses_a_large_model(exported, tmp_path):
    _, big = _train_checkpoints(tmp_path, widths=(48, 48, 48, 48), steps=0)
    out = tmp_path / "export"
    with pytest.raises(ExportRefused, match=r"onnx: [\d,]+ bytes > budget 102,400"):
        run_export(ExportRequest.build(big, out, "onnx", calib=exported["pairs"], config=CFG), progress=False)
    assert not (out / "tinybeauty.onnx").exists() and not (out / "report.json").exists()
    failed = json.loads((out / "report.failed.json").read_text())
    assert failed["formats"]["onnx"]["bytes"] > 102_400 and not failed["formats"]["onnx"]["within_budget"]


def test_float_checkpoint_is_post_training_quantized_with_calib(exported, tmp_path):
    import onnx

    out = tmp_path / "e"
    report = run_export(ExportRequest.build(exported["float"], out, "tflite,onnx", calib=exported["pairs"],
                                            config=CFG), progress=False)
    assert report["quantization"] == "ptq" and report["calibration_images"] == CFG["calib_images"]
    assert report["formats"]["onnx"]["verified"] and report["formats"]["tflite"]["verified"]
    batch_dim = onnx.load(str(out / "tinybeauty.onnx")).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param  # symbolic: the PTQ graph keeps a dynamic batch like the QAT one


def test_float_checkpoint_without_calib_is_refused(exported, tmp_path):
    with pytest.raises(TinyBeautyError, match="--calib"):
        run_export(ExportRequest.build(exported["float"], tmp_path / "e", "onnx", config=CFG), progress=False)
    assert not (tmp_path / "e").exists()


def _cli(*argv) -> int:
    from tinybeauty.cli import main

    return main(list(argv))


@pytest.mark.parametrize("case", ["not_a_checkpoint", "missing_checkpoint", "unknown_format", "out_is_file",
                                  "missing_calib_folder"])
def test_cli_bad_inputs_one_line_no_output(exported, tmp_path, capsys, case):
    ckpt, out = exported["qat"], tmp_path / "out"
    if case == "not_a_checkpoint":
        ckpt = tmp_path / "junk.pt"
        ckpt.write_bytes(os.urandom(256))
    elif case == "missing_checkpoint":
        ckpt = tmp_path / "nope.pt"
    elif case == "out_is_file":
        out.write_text("not a folder")
    argv = ["export", "--checkpoint", str(ckpt), "--out", str(out), "--formats", "onnx"]
    if case == "unknown_format":
        argv[-1] = "onnx,keras"
    if case == "missing_calib_folder":
        argv += ["--calib", str(tmp_path / "no_pairs")]
    assert _cli(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    if case != "out_is_file":
        assert not out.exists()


def test_a_prior_input_student_ships_its_look_prior_beside_the_model(exported, tmp_path, capsys):
    """A prior-input student (11 channels) exports with look_prior.json beside it and the card's
    io.prior_input naming it; the exported runners paint it from the photo and labels as the checkpoint did;
    without the file, eval is one clear line."""
    import shutil

    from makeup.lookprior import LookPrior
    from makeup.pairs import PairDataset
    from student.runtime import load_runner

    pairs = PairDataset(exported["pairs"])
    items = [pairs[i] for i in pairs.ids[:8]]
    prior = LookPrior.fit([p.source for p in items], [p.target for p in items], [p.mask for p in items])
    qat, _ = _train_checkpoints(tmp_path, look_prior=prior)
    out = tmp_path / "export"
    report = run_export(ExportRequest.build(qat, out, "tflite,onnx", calib=exported["pairs"], config=CFG),
                        progress=False)
    assert report["passed"] and all(report["formats"][f]["shipped"] for f in ("tflite", "onnx"))
    card = json.loads((out / "model_card.json").read_text())
    assert card["io"]["channels"] == 11 and card["artifacts"]["tflite"]["shape"] == [1, SIZE, SIZE, 11]
    assert card["io"]["prior_input"]["first_channel"] == 8 and card["io"]["prior_input"]["channels"] == 3
    shipped = LookPrior.from_arrays(json.loads((out / card["io"]["prior_input"]["file"]).read_text()))
    ps = load_parity_set(exported["pairs"], SIZE, 4)
    want = ps.inputs(11, prior)
    assert np.abs(ps.inputs(11, shipped) - want).max() < 1e-3  # the file paints what the checkpoint's prior does
    assert np.abs(want[:, 8:]).max() > 0.03  # the tint is in the prior
    tfl = load_runner(out / "tinybeauty.tflite")
    assert np.abs(tfl(ps.sources, ps.labels) - tfl(want)).max() < 1e-2
    assert report["formats"]["tflite"]["psnr_vs_torch"] >= 45.0
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(out / "tinybeauty.tflite", alone)
    assert _cli("eval", "--model", str(alone / "tinybeauty.tflite"), "--pairs", str(exported["pairs"]),
                "--json", str(tmp_path / "e.json")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "look_prior.json is missing" in err[0], err
    assert not (tmp_path / "e.json").exists()


def test_export_records_its_settings(exported):
    import yaml

    rec = yaml.safe_load((exported["out"] / "settings.yaml").read_text())
    assert rec["stage"] == "export"
    assert rec["inputs"]["checkpoint"] == str(exported["qat"]) and rec["inputs"]["calib"] == str(exported["pairs"])
    assert rec["settings"]["size"] == CFG["size"] and rec["settings"]["budget_bytes"] == 102400
    assert sorted(rec["inputs"]["formats"]) == sorted(exported["report"]["formats"])
