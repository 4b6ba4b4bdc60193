"""Ship the student: int8 TFLite / ONNX (+ORT) / CoreML artifacts, a 100 KB budget gate and a parity report.

    from export import ExportRequest, run_export
    report = run_export(ExportRequest.build("student/tinybeauty_final.pt", "export", calib="pairs"))

Heavy libraries (torch, litert-torch, coremltools, onnxruntime) are imported only inside the exporters.
"""
from .formats import BUDGET_BYTES, DEFAULT_FORMATS, FORMATS, ExportFormat, artifact_bytes, parse_formats
from .pipeline import ExportRefused, ExportRequest, ExportSettings, run_export

__all__ = ["BUDGET_BYTES", "DEFAULT_FORMATS", "FORMATS", "ExportFormat", "ExportRefused", "ExportRequest", "ExportSettings",
           "artifact_bytes", "parse_formats", "run_export"]
