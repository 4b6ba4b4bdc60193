"""The one table of export formats; it drives the CLI, the budget gate, parity and the report.

Each row names the artifact, the exporter (``export.<module>:export_<format>``), the PyTorch graph it is
converted from (the QAT model is converted twice: unfolded for LiteRT, folded int8 weights for ONNX/CoreML),
and the runtime that verifies it on this machine.
"""
from __future__ import annotations

import importlib
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from makeup.errors import TinyBeautyError

BUDGET_BYTES = 102_400  # 100 KB: the whole point of the toolkit; binds in every format


def _always() -> tuple[bool, str]:
    return True, ""


def _coreml_predicts_here() -> tuple[bool, str]:
    if platform.system() != "Darwin":
        return False, (f"coremltools predicts only on macOS (this is {platform.system()}); "
                       "spec validated instead: I/O names, shapes and op types")
    return True, ""


@dataclass(frozen=True)
class ExportFormat:
    name: str                 # key in --formats and report.json
    filename: str             # artifact name inside EXPORT
    exporter: str             # "module:function" under export/, imported lazily (heavy libraries)
    reference: str            # "unfolded" | "folded": which converted QAT graph the artifact comes from
    runtime: str              # what runs it for parity
    runs_here: Callable[[], tuple[bool, str]] = _always
    validator: str | None = None  # "module:function" checking a file that cannot run here: (path, size, channels) -> dict
    runner: str = "student.runtime:load_runner"  # path -> callable NCHW batch -> NCHW output
    required: bool = True     # False: an optional extra that is dropped (not a failure) when over budget

    @property
    def is_package(self) -> bool:
        return self.filename.endswith(".mlpackage")

    def exporter_fn(self) -> Callable:
        return _resolve(self.exporter)

    def validator_fn(self) -> Callable:
        return _resolve(self.validator)

    def runner_fn(self) -> Callable:
        return _resolve(self.runner)


def _resolve(ref: str) -> Callable:
    module, func = ref.split(":")
    return getattr(importlib.import_module(module), func)


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("tflite", "tinybeauty.tflite", "export.tflite:export_tflite", "unfolded", "ai-edge-litert"),
    ExportFormat("onnx", "tinybeauty.onnx", "export.onnx:export_onnx", "folded", "onnxruntime"),
    ExportFormat("ort", "tinybeauty.ort", "export.onnx:export_ort", "folded", "onnxruntime (ORT format)",
                 required=False),
    ExportFormat("coreml", "tinybeauty.mlpackage", "export.coreml:export_coreml", "folded", "coremltools",
                 runs_here=_coreml_predicts_here, validator="export.coreml:validate_coreml",
                 runner="export.coreml:coreml_runner"),  # student.runtime has no Core ML (Apple-only)
)}
DEFAULT_FORMATS = ("tflite", "onnx", "ort", "coreml")
# The ORT file is derived from the ONNX one, so ONNX is exported first whenever ORT is asked for.
DEPENDS_ON = {"ort": "onnx"}


def parse_formats(spec: str | None) -> list[ExportFormat]:
    """``"onnx,tflite"`` -> rows in table order; unknown names are one clear error."""
    spec = ",".join(DEFAULT_FORMATS) if spec is None else spec
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    if not names:
        raise TinyBeautyError("--formats is empty: choose from " + ", ".join(FORMATS))
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise TinyBeautyError(f"unknown export format {', '.join(map(repr, unknown))}: choose from "
                              + ", ".join(FORMATS))
    return [FORMATS[n] for n in FORMATS if n in names]


def artifact_bytes(path: str | Path) -> int:
    """Size on disk of a file, or of every file in a package folder (a .mlpackage ships whole)."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size
