"""``tinybeauty student train|info``, ``tinybeauty eval`` and ``tinybeauty apply`` (thin: the work is in student/)."""
from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger("tinybeauty")


def register(sub) -> None:
    student = sub.add_parser("student", help="train or inspect the TinyBeauty student")
    ssub = student.add_subparsers(dest="student_command", metavar="STEP")
    student.set_defaults(func=lambda args: (student.print_help(), 2)[1])

    train = ssub.add_parser("train", help="train the student on a pair dataset (float warm-up, then int8 QAT)")
    train.add_argument("--pairs", required=True, help="pair dataset folder (from `render` or `amplify`)")
    train.add_argument("--out", required=True, help="output folder for checkpoints, metrics and sample grids")
    train.add_argument("--profile", default="demo", help="demo | paper | a YAML file (its `student:` section)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/tinybeauty_last.pt")
    train.add_argument("--epochs", type=int, help="float epochs (overrides the profile)")
    train.add_argument("--qat-epochs", type=int, help="QAT epochs after the float ones (0: float only)")
    train.add_argument("--batch-size", type=int, help="batch size (overrides the profile)")
    train.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    train.add_argument("--wandb", action="store_true", help="also log to wandb (offline) when it is installed")
    train.set_defaults(func=_train)

    info = ssub.add_parser("info", help="params and MACs of the default model or of a checkpoint")
    info.add_argument("--checkpoint", help="a student .pt (default: the DEFAULT_CONFIG model)")
    info.add_argument("--size", type=int, default=256, help="input side for the MAC count (multiple of 8)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_info)

    ev = sub.add_parser("eval", help="PSNR/SSIM/LPIPS of a student checkpoint, .tflite or .onnx on pairs")
    ev.add_argument("--model", required=True, help="CKPT.pt | FILE.tflite | FILE.onnx")
    what = ev.add_mutually_exclusive_group(required=True)
    what.add_argument("--pairs", help="pair dataset folder")
    what.add_argument("--photo", help="a real photo (or 'astronaut': skimage's), scored against the renderer's "
                      "--style on it, without and with the look gate")
    ev.add_argument("--style", help="with --photo: the look the model was trained on (built-in name or YAML)")
    ev.add_argument("--grid", help="with --photo: save photo | renderer | model | model gated here")
    ev.add_argument("--json", required=True, help="where to write {psnr, ssim, lpips, count, psnr_identity, "
                    "psnr_gain, recovery {eyes, lips, skin, brows}, spill, visible_spill}")
    ev.add_argument("--split", default="val", choices=("val", "all"), help="the 10%% val split by id, or all")
    ev.add_argument("--prior-only", action="store_true",
                    help="score the model's look prior alone (no network): a prior-input model only")
    ev.set_defaults(func=_eval)

    ap = sub.add_parser("apply", help="apply the look to full-size photos (align -> student -> paste back)")
    ap.add_argument("--model", required=True, help="CKPT.pt | FILE.tflite | FILE.onnx")
    ap.add_argument("--input", required=True, help="a photo or a folder of photos")
    ap.add_argument("--out", required=True, help="output photo (for a photo) or folder (for a folder)")
    ap.add_argument("--no-gate", action="store_true",
                    help="skip the look gate (by default the change is clipped to the look's range per region "
                         "of the photo's own face mesh)")
    ap.set_defaults(func=_apply)


def _train(args: argparse.Namespace) -> int:
    from makeup.config import load_profile, section
    from student.train import student_settings, train_student

    settings = student_settings(section(load_profile(args.profile), "student"), profile=args.profile,
                                epochs=args.epochs, qat_epochs=args.qat_epochs, batch_size=args.batch_size)
    summary = train_student(args.pairs, args.out, settings, resume=args.resume, device=args.device,
                            use_wandb=args.wandb, progress=True)
    scores = ", ".join(f"{name} {summary[key]:.2f} dB" for name, key in (("float", "float_val_psnr"),
                                                                       ("QAT int8", "qat_val_psnr"))
                       if summary[key] is not None)
    from makeup.metrics import format_fidelity

    print(f"student: {summary['params']} params, {summary['macs_256'] / 1e9:.3f} GMAC@256, "
          f"{summary['train_pairs']}/{summary['val_pairs']} train/val pairs, val PSNR {scores}, "
          f"{summary['train_seconds']:.0f} s -> {args.out}")
    print(f"student look vs its pairs' targets (final checkpoint): {format_fidelity(summary['final_val'])}")
    if summary.get("prior_val"):
        added = summary["final_val"]["psnr_gain"] - summary["prior_val"]["psnr_gain"]
        print(f"its look prior alone (no network): {format_fidelity(summary['prior_val'])}; the net adds "
              f"{added:+.1f} dB over it")
    return 0


def _info(args: argparse.Namespace) -> int:
    from student.model import DEFAULT_CONFIG, build_model, check_input_size, count_macs, count_params

    if args.checkpoint:
        from student.checkpoint import load_student

        ckpt = load_student(args.checkpoint)
        meta = {k: v for k, v in ckpt.meta.items() if k != "look_prior"}  # tensors: summarised below
        if "look_prior" in ckpt.meta:
            lp = ckpt.look_prior
            meta["look_prior"] = {"templates": sorted(lp.templates or {}), "region_models": lp.models is not None}
        model, config, extra = ckpt.model, ckpt.config, {"qat": ckpt.qat, "meta": meta}
    else:
        model, config, extra = build_model(DEFAULT_CONFIG), DEFAULT_CONFIG, {}
    check_input_size(args.size, args.size, config)
    info = {"params": count_params(model), "macs": count_macs(model, args.size), "size": args.size,
            "config": config.to_dict(), **extra}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"TinyBeauty {config.to_dict()}: {info['params']:,} params, {info['macs'] / 1e9:.3f} GMAC at "
              f"{args.size}x{args.size}" + (f", qat={ckpt.qat}, epoch {ckpt.meta.get('epoch')}"
                                            if args.checkpoint else ""))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from student.evaluate import evaluate, write_eval_json

    if args.prior_only:
        from student.runtime import load_runner, prior_only

        args.model = prior_only(load_runner(args.model))
    if args.photo:
        return _eval_photo(args)
    result = evaluate(args.model, args.pairs, split=args.split, progress=True)
    write_eval_json(args.json, result)
    lp = f", LPIPS {result['lpips']:.4f}" if result["lpips"] is not None else ""
    from makeup.metrics import format_fidelity

    print(f"{args.model}: PSNR {result['psnr']:.2f} dB (unchanged photos: {result['psnr_identity']:.2f} dB), "
          f"SSIM {result['ssim']:.4f}{lp} on {result['count']} {args.split} pairs -> {args.json}")
    print(f"look: {format_fidelity(result)}")
    return 0


def _eval_photo(args: argparse.Namespace) -> int:
    from makeup.errors import TinyBeautyError
    from makeup.io import load_photo
    from makeup.metrics import format_fidelity
    from makeup.styles import load_style
    from student.evaluate import photo_fidelity, write_eval_json

    if not args.style:
        raise TinyBeautyError("--photo needs --style (the look the model was trained on) for the renderer's truth")
    result = photo_fidelity(args.model, load_photo(args.photo), load_style(args.style), name=args.photo,
                            grid=args.grid)
    write_eval_json(args.json, result)
    for key, fid in result.items():
        print(f"{args.photo} {key}: {format_fidelity(fid)}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    from student.apply import apply_path

    report = apply_path(args.model, args.input, args.out, gate=not args.no_gate)
    for photo in report.no_face:
        print(f"skipped (no face): {photo}", file=sys.stderr)
    print(f"wrote {len(report.written)} photo(s) to {args.out}" +
          (f"; {len(report.no_face)} without a face skipped" if report.no_face else ""))
    return 0
