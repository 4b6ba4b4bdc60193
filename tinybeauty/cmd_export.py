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
    register_bench(sub)


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


def register_bench(sub) -> None:
    p = sub.add_parser("bench", help="latency of an export on this CPU: LiteRT, ONNX Runtime, torch, roofline, "
                                     "partitions, per-op profile",
                       description="Time the export's .tflite (LiteRT + XNNPACK) and .onnx (ONNX Runtime) and its "
                                   "float checkpoint (torch fp32 eager) at each thread count in one run, beside an "
                                   "int8 roofline probe (a 4-layer 64-channel 3x3 conv converted the same way); "
                                   "count the XNNPACK partitions and profile the .tflite per op. Prints a markdown "
                                   "table and writes it and the JSON. Without --export, the default student is "
                                   "exported untrained first (latency does not depend on the weights).")
    p.add_argument("--export", help="export folder with report.json (default: export the default student)")
    p.add_argument("--checkpoint", help="float checkpoint for the torch row (default: the one report.json names)")
    p.add_argument("--model", help="without --export: student model options over the default, as JSON, e.g. "
                                   "'{\"head\": \"1x1\"}' (an architecture's latency before training it)")
    p.add_argument("--compare", help="another export folder (or .tflite): its .tflite and this one's timed "
                                     "interleaved in LiteRT, the fair before/after on a noisy machine")
    p.add_argument("--threads", default="1,2", help="comma list of thread counts (default 1,2)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per figure after warm-up (median reported)")
    p.add_argument("--top", type=int, default=12, help="ops shown in the per-op profile")
    p.add_argument("--json", required=True, help="where to write the JSON (the markdown goes beside it, .md)")
    p.set_defaults(func=bench)


def bench(args) -> int:
    import shlex
    import sys
    import tempfile
    from pathlib import Path

    from export.latency import compare_tflite, export_default, format_table, measure
    from makeup.errors import TinyBeautyError
    from makeup.io import write_text_atomic

    try:
        threads = tuple(int(t) for t in args.threads.split(","))
    except ValueError:
        raise TinyBeautyError(f"--threads {args.threads!r}: a comma list of positive ints, e.g. 1,2") from None
    if not threads or min(threads) < 1 or args.runs < 2:
        raise TinyBeautyError("--threads needs positive counts and --runs at least 2")
    out = Path(args.json)
    command = "tinybeauty " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="tinybeauty-bench-") as tmp:
        export_dir, checkpoint = args.export, args.checkpoint
        if export_dir is None:
            config = _model_options(args.model)
            print(f"exporting the student {config.to_dict()} (untrained) for timing ...", file=sys.stderr)
            checkpoint, _ = export_default(tmp, config=config)
            export_dir = Path(tmp) / "export"
        elif args.model:
            raise TinyBeautyError("--model describes a student to export; with --export the export's own is timed")
        result = measure(export_dir, checkpoint, threads=threads, runs=args.runs, top=args.top)
        if args.compare:
            other = Path(args.compare)
            other = other / "tinybeauty.tflite" if other.is_dir() else other
            if not other.is_file():
                raise TinyBeautyError(f"--compare {args.compare}: no .tflite there")
            result["compare"] = compare_tflite({"this": Path(export_dir) / "tinybeauty.tflite",
                                                "compare": other}, threads)
            result["compare_path"] = str(other)
    if args.export is None:
        result["export"] = "student exported untrained by `tinybeauty bench`" + (f" ({args.model})" if args.model else
                                                                                  " (the default)")
    result["command"] = command
    table = format_table(result, command)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=2))
    write_text_atomic(out.with_suffix(".md"), table)
    print(table)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def _model_options(text: str | None):
    from makeup.errors import TinyBeautyError
    from student.model import StudentConfig

    if not text:
        return StudentConfig.over_default(None)
    try:
        options = json.loads(text)
    except json.JSONDecodeError:
        raise TinyBeautyError(f"--model {text!r}: not JSON (e.g. '{{\"head\": \"1x1\"}}')") from None
    if not isinstance(options, dict):
        raise TinyBeautyError(f"--model {text!r}: a JSON object of student model options")
    return StudentConfig.over_default(options)
