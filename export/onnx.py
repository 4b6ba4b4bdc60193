"""int8 QDQ ONNX (one self-contained file) and its ORT-format twin for ONNX Runtime Mobile."""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from makeup.errors import TinyBeautyError

log = logging.getLogger("tinybeauty")

INPUT_NAME = "image"
OUTPUT_NAME = "made_up"
LAYOUT = "NCHW"
WEIGHTS = "int8 as uint8 (QDQ, zero point + 128)"  # the trained int8 values, stored so x86 cannot saturate them


def strip_onnx(model) -> dict:
    """Drop what the runtime never reads: per-node ``metadata_props`` (the dynamo exporter's source
    locations, ~40% of a tiny model's file) and ``doc_string``s, with onnx_ir's
    ``ClearMetadataAndDocStringPass``, and the ``value_info`` shape annotations of the main graph.

    Works in place on an ``onnx.ModelProto``; returns counts of what was removed.
    """
    import onnx_ir as ir
    from onnx_ir.passes.common import ClearMetadataAndDocStringPass

    irm = ir.serde.deserialize_model(model)
    nodes = list(ir.traversal.RecursiveGraphIterator(irm.graph))
    nodes += [n for fn in irm.functions.values() for n in fn]
    removed = {"metadata_props": sum(len(n.metadata_props) for n in nodes),
               "doc_string": sum(bool(n.doc_string) for n in nodes) + bool(irm.graph.doc_string),
               "value_info": len(model.graph.value_info)}
    ClearMetadataAndDocStringPass()(irm)
    stripped = ir.serde.serialize_model(irm)
    del stripped.graph.value_info[:]  # the serializer writes the values' shapes back; the runtime infers them
    stripped.doc_string = ""
    model.CopyFrom(stripped)
    return removed


def uint8_activations(model) -> int:
    """Re-encode every per-tensor int8 activation QuantizeLinear/DequantizeLinear as uint8 (zero point + 128):
    the same real values, exactly (q_u8 = q_s8 + 128 on both sides). The weights are :func:`uint8_weights`' job.

    ONNX Runtime on x86 runs int8 convs as uint8 activations x int8 weights and converts int8 activation
    pairs to uint8 itself, but not all of them: measured on the default student, the three encoder convs whose
    output feeds both the skip and the max-pool kept an int8 output beside a converted uint8 input, did not
    match its QLinearConv fusion and ran in float (8 of 25 ms at 1 thread). Encoded as uint8 here, all 15 convs
    fuse. Works in place on an ``onnx.ModelProto``; returns the number of nodes re-encoded.
    """
    inits = {i.name: i for i in model.graph.initializer}
    made: dict[str, str] = {}
    count = 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        if node.input[0] in inits or node.input[2] not in inits:  # a constant (weight, bias) stays as it is
            continue
        if _int8(inits[node.input[2]]) is None or len(inits[node.input[2]].dims):
            continue
        node.input[2] = _uint8_twin(model, inits, made, node.input[2])
        count += 1
    _drop_unused(model, made)
    return count


def uint8_weights(model) -> int:
    """Re-encode every int8 weight (a constant DequantizeLinear input, per channel) as uint8 with its zero
    point + 128: the same real values, exactly. Works in place; returns the number of weights re-encoded.

    ONNX Runtime's x86 kernel for uint8 activations x int8 weights on a CPU without VNNI (AVX2) multiplies
    pairs of products into 16 bits with saturation (VPMADDUBSW): where two neighbouring weights and
    activations are large, the sum clips at 32,767. Measured on stop 29's glamorous demo student (an AMD EPYC
    with AVX2 only): ONNX Runtime's fused graph left 7,338 of 3.1 M output values more than a level from the
    unfused one (max 24 levels), 53.61 -> 53.13 dB vs target, and the export was refused. With uint8 weights
    it takes its uint8 x uint8 kernel, which widens to 16 bits before it multiplies: the fused output is the
    unfused one's (max difference 0.0014, as the ORT file's basic graph), all 15 convs still fuse, and one
    image took 39.4 -> 46.6 ms at 1 thread on that machine. CPUs with VNNI and ARM never saturated.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    made: dict[str, str] = {}
    shifted: set[str] = set()
    count = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3 or node.input[0] not in inits:
            continue
        weight = _int8(inits[node.input[0]])
        if weight is None or node.input[2] not in inits or _int8(inits[node.input[2]]) is None:
            continue
        if node.input[0] not in shifted:
            inits[node.input[0]].CopyFrom(numpy_helper.from_array(_plus_128(weight), node.input[0]))
            shifted.add(node.input[0])
        node.input[2] = _uint8_twin(model, inits, made, node.input[2])
        count += 1
    _drop_unused(model, made)
    return count


def _int8(tensor):
    """The int8 array of an initializer, or None when it is not int8."""
    import numpy as np
    from onnx import numpy_helper

    value = numpy_helper.to_array(tensor)
    return value if value.dtype == np.int8 else None


def _plus_128(value):
    import numpy as np

    return (value.astype(np.int16) + 128).astype(np.uint8)


def _uint8_twin(model, inits: dict, made: dict, name: str) -> str:
    """The name of a uint8 initializer holding the int8 zero point ``name`` + 128 (made once, shared)."""
    from onnx import numpy_helper

    twin = made.get(name)
    if twin is None:
        twin = made[name] = f"{name}_uint8"
        model.graph.initializer.append(numpy_helper.from_array(_plus_128(_int8(inits[name])), twin))
    return twin


def _drop_unused(model, made: dict) -> None:
    """Remove the int8 zero points whose every user now reads their uint8 twin."""
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used or i.name not in made]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def export_onnx(qs, path: Path, cfg: dict, staged: dict | None = None) -> dict:
    """Folded int8 graph -> QDQ ONNX with a dynamic batch dimension, stripped and checked."""
    import onnx
    import torch

    opset = int(cfg.get("onnx_opset", 18))
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints a line per phase
        program = torch.onnx.export(qs.folded, (qs.example(),), dynamo=True, external_data=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({0: "batch"},), opset_version=opset, verbose=False)
    model = program.model_proto
    removed = strip_onnx(model)
    reencoded = uint8_activations(model)
    weights = uint8_weights(model)
    data = model.SerializeToString()
    if len(data) >= 2**31:  # cannot happen for a tiny model; a guard against an external-data surprise
        raise TinyBeautyError("ONNX model exceeds 2 GB")
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(data)
    ops = sorted({n.op_type for n in model.graph.node})
    return {"layout": LAYOUT, "batch": "dynamic", "weights": WEIGHTS, "activations": "uint8 (QDQ)",
            "io_dtype": "float32", "opset": opset, "ops": ops, "stripped": removed, "uint8_activations": reencoded,
            "uint8_weights": weights, "converter": f"torch.onnx (dynamo) {torch.__version__}"}


def onnx_to_ort(onnx_path: Path, ort_path: Path) -> None:
    """Write the ORT-format file of an ONNX file (basic optimizations only, so it stays valid for every
    execution provider, NNAPI and CoreML included)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(ort_path)
    so.add_session_config_entry("session.save_model_format", "ORT")
    so.log_severity_level = 3
    ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


def export_ort(qs, path: Path, cfg: dict, staged: dict | None = None) -> dict:
    """ORT format for ONNX Runtime Mobile, made from the exported ONNX file by :func:`onnx_to_ort`."""
    import onnxruntime as ort

    onnx_path = (staged or {}).get("onnx")
    if onnx_path is None or not Path(onnx_path).exists():
        raise TinyBeautyError("the ORT file is made from the ONNX export: include onnx in --formats")
    onnx_to_ort(onnx_path, path)
    return {"layout": LAYOUT, "batch": "dynamic", "weights": WEIGHTS, "activations": "uint8 (QDQ)",
            "io_dtype": "float32", "converter": f"onnxruntime {ort.__version__}", "optimization": "basic"}
