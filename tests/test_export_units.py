"""Export pieces that need no conversion: the format table, ONNX stripping, parity arithmetic."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from export.formats import BUDGET_BYTES, FORMATS, artifact_bytes, parse_formats
from export.parity import PSNR_CAP_DB, compare, parity_failures
from export.pipeline import ExportRequest
from makeup.errors import TinyBeautyError


def test_format_table_drives_names_and_files():
    assert [f.name for f in parse_formats(None)] == ["tflite", "onnx", "ort", "coreml"]
    assert [f.name for f in parse_formats("coreml, TFLITE")] == ["tflite", "coreml"]  # table order
    assert FORMATS["tflite"].filename == "tinybeauty.tflite"  # `make android-assets` copies this name
    assert FORMATS["coreml"].is_package and not FORMATS["onnx"].is_package
    assert BUDGET_BYTES == 102_400


@pytest.mark.parametrize("spec", ["pytorch", "onnx,keras", ",", ""])
def test_unknown_or_empty_format_is_one_clear_error(spec):
    with pytest.raises(TinyBeautyError, match="format|formats"):
        parse_formats(spec)


def test_ort_pulls_in_onnx(tmp_path):
    req = ExportRequest.build(tmp_path / "x.pt", tmp_path / "out", "ort")
    assert [f.name for f in req.formats] == ["onnx", "ort"]


def test_out_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(TinyBeautyError, match="not a folder"):
        ExportRequest.build(tmp_path / "x.pt", f, "onnx")


def test_package_size_counts_every_file(tmp_path):
    pkg = tmp_path / "m.mlpackage"
    (pkg / "Data" / "w").mkdir(parents=True)
    (pkg / "Manifest.json").write_bytes(b"a" * 10)
    (pkg / "Data" / "w" / "weight.bin").write_bytes(b"b" * 90)
    assert artifact_bytes(pkg) == 100
    assert artifact_bytes(pkg / "Manifest.json") == 10


def _onnx_with_metadata():
    from onnx import TensorProto, helper

    nodes = []
    for i in range(20):
        n = helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"relu{i}", doc_string="x" * 50)
        for k in range(3):
            n.metadata_props.add(key=f"pkg.torch.onnx.stack_trace{k}", value="File model.py, line 1" * 10)
        nodes.append(n)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("t20", TensorProto.FLOAT, [1, 4])])
    graph.value_info.extend(helper.make_tensor_value_info(f"t{i}", TensorProto.FLOAT, [1, 4]) for i in range(1, 20))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_strip_onnx_drops_metadata_and_still_runs():
    import onnx
    import onnxruntime as ort

    from export.onnx import strip_onnx

    model = _onnx_with_metadata()
    before = len(model.SerializeToString())
    removed = strip_onnx(model)
    data = model.SerializeToString()
    assert removed == {"metadata_props": 60, "doc_string": 20, "value_info": 19}
    assert len(data) < before / 4
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.array([[-1, 0, 2, -3]], np.float32)
    np.testing.assert_array_equal(sess.run(None, {"t0": x})[0], np.maximum(x, 0))


images = st.integers(min_value=0, max_value=2**31 - 1).map(
    lambda s: np.random.default_rng(s).random((2, 3, 8, 8)).astype(np.float32))


@settings(max_examples=30, deadline=None)
@given(ref=images, noise=st.floats(min_value=1e-4, max_value=0.2))
def test_parity_psnr_falls_as_the_exported_output_drifts(ref, noise):
    drift = np.random.default_rng(1).normal(0, 1, ref.shape).astype(np.float32)
    near = compare(np.clip(ref + noise * 0.1 * drift, 0, 1), ref, None)
    far = compare(np.clip(ref + noise * drift, 0, 1), ref, None)
    same = compare(ref, ref, ref)
    assert same.psnr_vs_torch == PSNR_CAP_DB and same.max_abs_diff == 0.0
    assert near.psnr_vs_torch >= far.psnr_vs_torch
    assert far.max_abs_diff <= 1.0 and near.psnr_vs_target is None


def test_parity_failures_name_the_threshold():
    ref = np.full((1, 3, 8, 8), 0.5, np.float32)
    target = np.full_like(ref, 0.6)
    ok = compare(ref + 1e-4, ref, target)
    assert parity_failures(ok, 45.0, 0.1) == []
    bad = compare(ref + 0.05, ref, target)  # 26 dB vs PyTorch, but nearer the target: no target loss
    fails = parity_failures(bad, 45.0, 0.1)
    assert len(fails) == 1 and "< 45 dB" in fails[0]
    worse = compare(ref - 0.05, ref, target)  # drifts away from the target too
    assert any("loses" in f for f in parity_failures(worse, 20.0, 0.1))


def test_parity_fails_a_file_that_drops_part_of_the_look():
    """Whole-image PSNR barely moves when a file loses the lips; the per-region gate catches it."""
    from export.parity import ParitySet

    rng = np.random.default_rng(0)
    src = rng.uniform(0.3, 0.7, (2, 3, 32, 32)).astype(np.float32)
    labels = np.zeros((2, 32, 32), np.uint8)
    labels[:, 24:27, 10:22] = 2  # lips: 36 of 1024 pixels
    tgt = src.copy()
    tgt[:, 0][labels == 2] += 0.3
    ref = tgt.copy()  # the PyTorch graph applies the whole look
    dropped = src.copy()  # the exported file forgets the lips
    ps = ParitySet(["a", "b"], src, tgt, labels)
    p = compare(dropped, ref, tgt, ps)
    assert p.fidelity["recovery"]["lips"] == pytest.approx(0.0, abs=1e-6)
    assert p.torch_fidelity["recovery"]["lips"] == pytest.approx(1.0, abs=1e-6)
    assert any("lips look" in f for f in parity_failures(p, 20.0, 100.0))
