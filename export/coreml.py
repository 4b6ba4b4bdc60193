"""CoreML ``.mlpackage`` (iOS 17 ML program) and its spec validation.

Three ways to int8 a CoreML model, tried in the order the profile lists (``export.coreml_modes``); the first
whose whole package fits the budget is kept:

- ``qat``: the folded QAT graph itself (int8 weights + quantize/dequantize of activations, exactly the int8
  arithmetic the other formats run). Its spec is the largest (one q/dq op pair per activation).
- ``int8``: the float model, then ``linear_quantize_weights`` (per-channel symmetric int8 weights, float16
  activations): a smaller spec; the parity reference is then the float model.
- ``palettize6``: the float model, then 6-bit uniform palettization (no scikit-learn needed): smaller still.

``executorch_debug_handle_mapping.json`` (written by torch.export-based conversion) maps ops back to torch
source; the CoreML runtime never reads it and it is not in the package manifest, so it is dropped.
"""
from __future__ import annotations

import contextlib
import io
import logging
import shutil
from pathlib import Path

from makeup.errors import TinyBeautyError

from .formats import BUDGET_BYTES, artifact_bytes
from .onnx import INPUT_NAME, OUTPUT_NAME

log = logging.getLogger("tinybeauty")

DEBUG_FILE = "executorch_debug_handle_mapping.json"
COREML_MODES = ("qat", "int8", "palettize6")
# MIL ops a TinyBeauty student may lower to; anything else means an op will not run on the Neural Engine
# as expected (or a graph change nobody reviewed).
ALLOWED_OPS = {"add", "clip", "concat", "const", "constexpr_affine_dequantize", "constexpr_lut_to_dense",
               "conv", "dequantize", "quantize", "max_pool", "relu", "relu6", "upsample_nearest_neighbor",
               "upsample_bilinear", "transpose", "cast", "mul", "sub",
               "reshape", "slice_by_index"}  # these two: the depth-to-space of the s2d head/stem options


@contextlib.contextmanager
def _quiet(verbose: bool):
    """coremltools draws a tqdm bar per MIL pass; the export command has its own progress bar."""
    if verbose:
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        yield


def _convert(module, example, size: int):
    import coremltools as ct
    import torch

    program = torch.export.export(module, (example,)).run_decompositions({})
    return ct.convert(program, minimum_deployment_target=ct.target.iOS17,
                      inputs=[ct.TensorType(name=INPUT_NAME, shape=tuple(example.shape))],
                      outputs=[ct.TensorType(name=OUTPUT_NAME)])


def build_coreml(qs, mode: str):
    """The MLModel for one mode (see the module docstring)."""
    import coremltools.optimize as cto

    if mode == "qat":
        return _convert(qs.folded, qs.example(), qs.size)
    base = _convert(qs.float_model.eval(), qs.example(), qs.size)
    if mode == "int8":
        op_cfg = cto.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", granularity="per_channel",
                                                    weight_threshold=0)
        return cto.coreml.linear_quantize_weights(base, cto.coreml.OptimizationConfig(global_config=op_cfg))
    if mode == "palettize6":
        op_cfg = cto.coreml.OpPalettizerConfig(nbits=6, mode="uniform", weight_threshold=0)
        return cto.coreml.palettize_weights(base, cto.coreml.OptimizationConfig(global_config=op_cfg))
    raise TinyBeautyError(f"unknown CoreML mode {mode!r}: choose from {', '.join(COREML_MODES)}")


def save_package(mlmodel, path: Path) -> None:
    mlmodel.save(str(path))
    debug = path / DEBUG_FILE
    if debug.exists():
        debug.unlink()


def export_coreml(qs, path: Path, cfg: dict, staged: dict | None = None) -> dict:
    """Save the first mode in ``cfg['coreml_modes']`` whose package fits the budget (else the last tried)."""
    import coremltools as ct

    modes = list(cfg.get("coreml_modes") or COREML_MODES)
    budget = int(cfg.get("budget_bytes", BUDGET_BYTES))
    tried: dict[str, int] = {}
    for i, mode in enumerate(modes):
        with _quiet(log.isEnabledFor(logging.DEBUG)):
            mlmodel = build_coreml(qs, mode)
            if path.exists():
                shutil.rmtree(path)
            save_package(mlmodel, path)
        tried[mode] = artifact_bytes(path)
        if tried[mode] <= budget or i == len(modes) - 1:
            break
    weights = {"qat": "int8", "int8": "int8 (weight-only)", "palettize6": "6-bit palette"}[mode]
    return {"layout": "NCHW", "batch": 1, "mode": mode, "modes_tried": tried, "weights": weights,
            "activations": "int8 (QDQ)" if mode == "qat" else "float16", "io_dtype": "float32",
            "reference": "folded" if mode == "qat" else "float",
            "deployment_target": "iOS17", "converter": f"coremltools {ct.__version__}"}


def validate_coreml(path: Path, size: int, channels: int = 3) -> dict:
    """What can be checked without the CoreML runtime: the spec loads, I/O names and shapes, op types."""
    import coremltools as ct

    try:
        spec = ct.utils.load_spec(str(path))
    except Exception as exc:
        raise TinyBeautyError(f"{path}: CoreML package does not load ({exc.__class__.__name__}: {exc})") from None
    inputs = {i.name: list(i.type.multiArrayType.shape) for i in spec.description.input}
    outputs = [o.name for o in spec.description.output]
    problems = []
    if inputs != {INPUT_NAME: [1, channels, size, size]}:
        problems.append(f"inputs {inputs}, expected {{{INPUT_NAME!r}: [1, {channels}, {size}, {size}]}}")
    if outputs != [OUTPUT_NAME]:
        problems.append(f"outputs {outputs}, expected [{OUTPUT_NAME!r}]")
    ops: set[str] = set()
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            ops.update(op.type for op in block.operations)
    if not ops:
        problems.append("the ML program has no operations")
    unexpected = sorted(ops - ALLOWED_OPS)
    if unexpected:
        problems.append(f"unexpected ops {unexpected}")
    weights = path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    if not weights.is_file() or weights.stat().st_size == 0:
        problems.append("weights/weight.bin is missing")
    return {"ok": not problems, "problems": problems, "ops": sorted(ops), "inputs": inputs, "outputs": outputs,
            "spec_version": spec.specificationVersion}


def coreml_runner(path: Path):
    """macOS only: NCHW float batch -> NCHW output through Core ML (``student.runtime`` has no CoreML
    backend, and Core ML exists only on Apple platforms)."""
    import coremltools as ct
    import numpy as np

    model = ct.models.MLModel(str(path))

    def run(batch):
        return np.concatenate([model.predict({INPUT_NAME: x[None].astype(np.float32)})[OUTPUT_NAME]
                               for x in np.asarray(batch)], axis=0)

    return run
