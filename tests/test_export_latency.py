"""The exported graph runs as ONE XNNPACK partition, and the latency tooling reads graphs right.

No timings are asserted (those live in `make bench` / `tinybeauty bench`); what is asserted is the graph
structure that decides them: the default student's .tflite is one delegate partition with no op left to the
reference kernels, the same function spelled as before (nn.Upsample, torch.clamp) is seen split into 4, the per-op profiler
covers every op, and the bench command writes its table and JSON.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from export.latency import delegate_partitions, export_default, op_profile

SIZE = 64


@pytest.fixture(scope="module")
def default_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("latency")
    ckpt, report = export_default(root, size=SIZE, formats="tflite,onnx")
    return root, ckpt, report


def _export_config(root, config: dict, bias: float | None = None):
    """Export an untrained student of ``config`` (tflite only) at SIZE; optional head bias spread."""
    _, report = export_default(root, size=SIZE, formats="tflite", config=config, head_bias=bias)
    return root / "export" / "tinybeauty.tflite", report


def test_default_student_is_one_xnnpack_partition(default_export):
    root, _, _ = default_export
    parts = delegate_partitions(root / "export" / "tinybeauty.tflite")
    assert parts["partitions"] == 1, parts
    assert parts["outside"] == [], parts


def test_the_partition_count_sees_a_split_graph(tmp_path):
    """The same function spelled as before (``spelling: torch``: nn.Upsample's nearest, torch.clamp): XNNPACK
    takes neither RESIZE_NEAREST_NEIGHBOR nor RELU_0_TO_1, so the graph splits and the count says so."""
    path, _ = _export_config(tmp_path, {"widths": [8, 8, 8, 8], "spelling": "torch"})
    parts = delegate_partitions(path)
    assert parts["partitions"] == 4
    assert parts["outside"].count("RESIZE_NEAREST_NEIGHBOR") == 3 and "RELU_0_TO_1" in parts["outside"]


def test_clamp_converts_exactly_where_the_output_saturates(tmp_path):
    """A head bias of +-1.5 drives channels past 0 and 1: the delegated clamp must agree with torch there
    (a wrongly converted clamp gave -1 everywhere and passed every partition check)."""
    from student.runtime import load_runner

    path, report = _export_config(tmp_path, {}, bias=1.5)
    x = np.random.default_rng(1).random((2, 8, SIZE, SIZE), dtype=np.float32)  # RGB + region masks + cheeks
    y = load_runner(path)(x)
    ref = load_runner(tmp_path / "default_qat.pt")(x)
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert (y == 0).mean() > 0.05 and (y == 1).mean() > 0.05  # really saturating
    assert np.abs(y - ref).max() < 0.02
    assert report["formats"]["tflite"]["psnr_vs_torch"] > 45


def test_op_profile_covers_every_op(default_export):
    from ai_edge_litert.interpreter import Interpreter

    root, _, _ = default_export
    path = root / "export" / "tinybeauty.tflite"
    rows = op_profile(path, threads=1, runs=3)
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    own = [o["op_name"] for o in interp._get_ops_details() if o["op_name"] != "DELEGATE"]
    assert [r["op"] for r in rows] == own
    assert all(r["ms"] > 0 and r["delegated"] for r in rows)
    convs = [r for r in rows if r["op"] == "CONV_2D"]
    assert convs and all(r["dtype"] == "int8" for r in convs)  # the convs run in int8
    assert rows[-1]["shape"] == [1, SIZE, SIZE, 3]  # the last op makes the NHWC image


def test_bench_command_writes_table_and_json(default_export, tmp_path, capsys):
    from tinybeauty.cli import main

    root, _, report = default_export
    out = tmp_path / "bench.json"
    assert main(["bench", "--export", str(root / "export"), "--threads", "1", "--runs", "3",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    row = result["latency"][0]
    assert row["threads"] == 1 and row["tflite"]["median_ms"] > 0 and row["onnx"]["median_ms"] > 0
    assert row["torch_fp32"]["median_ms"] > 0 and row["probe"]["gmac_per_s"] > 0
    assert row["tflite_over_roofline"] == pytest.approx(row["tflite"]["median_ms"] / row["roofline_ms"], rel=1e-2)
    assert result["partitions"] == 1 and result["macs"] > 0
    assert result["bytes"]["tflite"] == report["formats"]["tflite"]["bytes"]
    assert result["checkpoint"].endswith("default_qat.pt")
    table = out.with_suffix(".md").read_text()
    assert "| threads | LiteRT" in table and "XNNPACK partitions: **1**" in table
    assert table in capsys.readouterr().out


def test_bench_refuses_a_folder_without_an_export(tmp_path, capsys):
    from tinybeauty.cli import main

    assert main(["bench", "--export", str(tmp_path), "--json", str(tmp_path / "b.json")]) == 2
    assert "no report.json" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_bench_model_options_are_checked_before_any_work(tmp_path, capsys):
    from tinybeauty.cli import main

    out = tmp_path / "b.json"
    assert main(["bench", "--model", '{"hed": "1x1"}', "--json", str(out)]) == 2
    assert "unknown student model options ['hed']" in capsys.readouterr().err
    assert main(["bench", "--model", "[1]", "--json", str(out)]) == 2
    assert "a JSON object" in capsys.readouterr().err
    assert main(["bench", "--model", '{"head": "1x1"}', "--export", str(tmp_path), "--json", str(out)]) == 2
    assert "--model describes a student to export" in capsys.readouterr().err
    assert not out.exists()


def _ort_optimized_ops(path, tmp_path) -> list[str]:
    """Op types of ONNX Runtime's optimized graph (the QDQ fusions it applies before running)."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]


def test_onnx_runtime_runs_every_conv_in_int8(default_export, tmp_path):
    """With int8 activation pairs, ORT left the 3 encoder convs feeding both the skip and the max-pool in
    float (its own int8->uint8 conversion missed their outputs); the export re-encodes activations as uint8,
    so every conv fuses into QLinearConv."""
    import onnx

    from export.onnx import uint8_activations

    root, _, report = default_export
    path = root / "export" / "tinybeauty.onnx"
    ops = _ort_optimized_ops(path, tmp_path)
    assert ops.count("QLinearConv") == 15 and "Conv" not in ops, sorted(set(ops))
    assert report["formats"]["onnx"]["psnr_vs_torch"] >= 45.0
    assert report["formats"]["onnx"]["uint8_weights"] == 15  # each conv's weights, stored so x86 cannot saturate
    # the pass is what does it: undo it (uint8 zero points back to int8) and ORT leaves convs in float again
    model = onnx.load(str(path))
    back = _reencode_int8(model)
    assert back > 0 and uint8_activations(onnx.load(str(path))) == 0  # already uint8: nothing left to do
    onnx.save(model, str(tmp_path / "int8.onnx"))
    assert "Conv" in _ort_optimized_ops(tmp_path / "int8.onnx", tmp_path)


def _reencode_int8(model) -> int:
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    count = 0
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) == 3 \
                and node.input[0] not in inits and node.input[2] in inits \
                and numpy_helper.to_array(inits[node.input[2]]).dtype == np.uint8:
            zp = int(numpy_helper.to_array(inits[node.input[2]]))
            name = f"{node.input[2]}_back"
            if name not in inits:
                inits[name] = numpy_helper.from_array(np.array(zp - 128, np.int8), name)
                model.graph.initializer.append(inits[name])
            node.input[2] = name
            count += 1
    return count


def test_uint8_reencoding_is_exact():
    """Q/DQ of an activation with an int8 zero point and the uint8 one 128 above give the same values."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from export.onnx import uint8_activations

    inits = [numpy_helper.from_array(np.array(0.037, np.float32), "s"),
             numpy_helper.from_array(np.array(-17, np.int8), "zp")]
    graph = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
                               helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    x = np.linspace(-6, 6, 64, dtype=np.float32)  # saturates at both ends of the int8 range too
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert uint8_activations(model) == 2
    onnx.checker.check_model(model)
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(before, after)


def _qdq_conv(channels: int = 16):
    """A QDQ 1x1 conv ONNX Runtime fuses into QLinearConv: uint8 activations, int8 per-channel weights at
    +127 on every input channel, so neighbouring products (255 x 127) sum past int16 on a u8s8 kernel."""
    from onnx import TensorProto, helper, numpy_helper

    s_x, s_w, s_y = 1 / 255, 0.01 / 127, channels * 0.01 / 250
    inits = [numpy_helper.from_array(np.array(s_x, np.float32), "sx"),
             numpy_helper.from_array(np.array(0, np.uint8), "zx"),
             numpy_helper.from_array(np.full((channels, channels, 1, 1), 127, np.int8), "w"),
             numpy_helper.from_array(np.full(channels, s_w, np.float32), "sw"),
             numpy_helper.from_array(np.zeros(channels, np.int8), "zw"),
             numpy_helper.from_array(np.array(s_y, np.float32), "sy"),
             numpy_helper.from_array(np.array(0, np.uint8), "zy")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "sw", "zw"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["c"]),
             helper.make_node("QuantizeLinear", ["c", "sy", "zy"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def _run_at(model, level) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.log_severity_level = 3
    x = np.ones((1, 16, 8, 8), np.float32)  # every activation at the top of its range
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_uint8_weights_keep_the_fused_conv_exact():
    """ONNX Runtime's u8 x s8 conv kernel on x86 without VNNI saturates pairs of products at int16 (stop 29's
    glamorous export lost 0.49 dB to it on an AVX2 machine); stored as uint8, the same weights take its u8 x u8
    kernel, and the fused conv gives the unfused graph's values on every CPU. Where this CPU saturates, the
    int8 file is shown to be wrong first."""
    import onnx
    import onnxruntime as ort

    from export.onnx import uint8_weights

    model = _qdq_conv()
    level = ort.GraphOptimizationLevel
    reference = _run_at(model, level.ORT_DISABLE_ALL)
    np.testing.assert_allclose(reference, 16 * 0.01, atol=1e-3)  # 16 inputs x 1.0 x 0.01, the real conv
    int8_fused = _run_at(model, level.ORT_ENABLE_ALL)
    assert uint8_weights(model) == 1
    onnx.checker.check_model(model, full_check=True)
    assert {i.name: i.data_type for i in model.graph.initializer}["w"] == onnx.TensorProto.UINT8
    assert "zw" not in {i.name for i in model.graph.initializer}  # its uint8 twin replaced it
    np.testing.assert_array_equal(_run_at(model, level.ORT_DISABLE_ALL), reference)  # the same real weights
    np.testing.assert_allclose(_run_at(model, level.ORT_ENABLE_ALL), reference, atol=0.011 * 16 / 250)
    if np.abs(int8_fused - reference).max() > 0.1:  # this CPU saturates (AVX2 without VNNI): 0.08 instead of 0.16
        np.testing.assert_allclose(int8_fused, 0.5 * reference, rtol=0.05)  # 32,767 of 64,770: the clip it was
