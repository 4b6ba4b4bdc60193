"""`tinybeauty export`: the student checkpoint -> .tflite / .onnx / .ort / .mlpackage + budget gate + parity."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("export", help="int8 TFLite/ONNX/CoreML artifacts, 100 KB budget gate, parity report",
                       description="Convert a student checkpoint to int8 artifacts, refuse any over 102,400 "
                                   "bytes or below parity, and write EXPORT/report.json, report.md, "
                                   "model_card.json and settings.yaml. A refused export ships nothing (earlier "
                                   "artifacts stay) "
                                   "and writes EXPORT/report.failed.json with every size and PSNR.")
    p.add_argument("--checkpoint", required=True, help="student checkpoint (.pt) from `tinybeauty student train`")
    p.add_argument("--out", required=True, help="export folder (created; artifacts replaced atomically)")
    p.add_argument("--formats", default=None,
                   help="comma list of tflite,onnx,ort,coreml (default: all; ort needs onnx)")
    p.add_argument("--calib", default=None,
                   help="pair dataset: post-training calibration for a non-QAT checkpoint, and parity images")
    p.add_argument("--pairs", default=None, help="pair dataset for parity (default: --calib)")
    p.add_argument("--profile", default="demo", help="profile whose `export:` section sets the thresholds")
    p.add_argument("--json", action="store_true", help="print report.json instead of the table")
    p.set_defaults(func=run)


def run(args) -> int:
    from export import ExportRequest, run_export
    from export.pipeline import ExportSettings
    from makeup.config import load_profile, section

    cfg = ExportSettings.build(section(load_profile(args.profile), "export"), profile=args.profile)
    req = ExportRequest.build(args.checkpoint, args.out, args.formats, args.calib, args.pairs, cfg)
    report = run_export(req, progress=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print((req.out / "report.md").read_text())
        print(f"wrote {req.out}/report.json, report.md, model_card.json, settings.yaml")
    return 0
