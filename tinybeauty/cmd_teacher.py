"""`tinybeauty teacher train|fidelity` and `tinybeauty amplify` (thin: the work is in teacher/)."""
from __future__ import annotations

import json
import os


def register(sub) -> None:
    t = sub.add_parser("teacher", help="train / score the diffusion teacher (DDA)")
    tsub = t.add_subparsers(dest="teacher_command", metavar="SUBCOMMAND")
    t.set_defaults(func=lambda a: (t.print_help(), 2)[1])

    tr = tsub.add_parser("train", help="train the teacher on seed pairs",
                         description="Conditional residual diffusion (RDM + FGMM + eyeliner loss) on seed pairs. "
                                     "Writes TEACHER/{config.yaml, settings.yaml, metrics.jsonl, "
                                     "dda_checkpoint_epoch_N.pt, sample_epoch_N.png, dda_final.pt}.")
    tr.add_argument("--seeds", required=True, help="seed pair dataset (tinybeauty render output or your pairs)")
    tr.add_argument("--out", required=True, help="teacher folder")
    tr.add_argument("--backend", default=None, help="tiny-ddpm (default) or sd15-lora")
    tr.add_argument("--profile", default="demo", help="demo (2-core CPU) | paper (one GPU) | FILE.yaml")
    tr.add_argument("--resume", action="store_true", help="continue from the newest epoch checkpoint")
    tr.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    tr.add_argument("--sd-path", default=None, help="local Stable Diffusion 1.5 folder, diffusers layout (sd15-lora "
                    "backend; default $TINYBEAUTY_SD_PATH); read offline, never downloaded")
    tr.add_argument("--device", default=None, help="auto | cpu | cuda | mps")
    tr.set_defaults(func=run_train)

    fi = tsub.add_parser("fidelity", help="the teacher vs the renderer on held-out synthetic faces (or a photo)")
    scored = fi.add_mutually_exclusive_group(required=True)
    scored.add_argument("--teacher", help="teacher folder (tinybeauty teacher train --out)")
    scored.add_argument("--seeds", help="a seed pair folder instead: fit the look prior a tiny-ddpm teacher would fit "
                     "on it (the profile's teacher model keys) and score it alone, in seconds (as --prior-only of "
                     "a teacher trained on these seeds)")
    fi.add_argument("--photo", default=None, help="IMG | astronaut: score the teacher on this real photo instead "
                    "(aligned, regions from its face mesh, the renderer's look on it as truth)")
    fi.add_argument("--style", default=None, help="look the renderer draws (default: the teacher's style)")
    fi.add_argument("--count", type=int, default=50)
    fi.add_argument("--batch", type=int, default=16)
    fi.add_argument("--steps", type=int, default=None, help="sampler steps (default: the teacher's)")
    fi.add_argument("--samples", type=int, default=None,
                    help="draws per face whose mean is scored (default: the profile's amplify samples, as amplify "
                         "pastes them)")
    fi.add_argument("--profile", default="demo", help="demo | paper | FILE.yaml (its amplify: samples)")
    fi.add_argument("--json", default=None, help="write the report here")
    fi.add_argument("--grid", default=None, help="write a before|teacher|renderer grid here")
    fi.add_argument("--sd-path", default=None, help="where the sd15-lora teacher's base lives here (default: "
                    "$TINYBEAUTY_SD_PATH, then the path recorded at training; a different base is refused)")
    fi.add_argument("--device", default="auto")
    fi.add_argument("--agreement", action="store_true",
                    help="also draw the faces again with other noise: how much of one draw-mean another reproduces "
                         "per region, and the most a student can score against this teacher's pairs")
    fi.add_argument("--no-refiner", action="store_true",
                    help="paste the teacher's residual with bicubic upsampling, not its detail refiner")
    fi.add_argument("--prior-only", action="store_true",
                    help="score the look prior the teacher fit on its seeds alone (nothing sampled): what the "
                         "diffusion adds is the teacher's figures minus these")
    fi.set_defaults(func=run_fidelity)

    am = sub.add_parser("amplify", help="paint the teacher's look onto many faces -> pair dataset",
                        description="Deterministic, resumable, shardable (accelerate launch) amplification "
                                    "with a quality gate; writes pairs + settings.yaml + quality.json + "
                                    "samples_visualization.png.")
    am.add_argument("--teacher", required=True, help="teacher folder (tinybeauty teacher train --out)")
    am.add_argument("--faces", required=True, help="a folder of face photos, or 'synthetic'")
    am.add_argument("--count", type=int, required=True, help="number of pairs to write")
    am.add_argument("--out", required=True, help="pair dataset folder")
    am.add_argument("--batch", type=int, default=None)
    am.add_argument("--seed", type=int, default=None)
    am.add_argument("--steps", type=int, default=None, help="sampler steps (default: profile, then teacher)")
    am.add_argument("--samples", type=int, default=None,
                    help="draws per face whose mean is pasted (default: the profile's; 1 = one plain draw)")
    am.add_argument("--profile", default="demo", help="demo | paper | FILE.yaml (its amplify: section)")
    am.add_argument("--parser", default=None, help="region parser for photo folders: auto|mediapipe|facer")
    am.add_argument("--upscaler", default=None, help="local Real-ESRGAN/SwinIR weights for low-res outputs")
    am.add_argument("--sd-path", default=None, help="where the sd15-lora teacher's base lives here (default: "
                    "$TINYBEAUTY_SD_PATH, then the path recorded at training; a different base is refused)")
    am.add_argument("--device", default=None)
    am.add_argument("--no-refiner", action="store_true",
                    help="paste the teacher's residual with bicubic upsampling, not its detail refiner")
    am.add_argument("--force-new", action="store_true",
                    help="remove the pairs of an earlier run from --out first (a rerun with other settings, another "
                         "teacher or other faces is refused otherwise)")
    am.set_defaults(func=run_amplify)


def _sd_path(args) -> str | None:
    """--sd-path, else $TINYBEAUTY_SD_PATH (both name the local Stable Diffusion folder)."""
    return args.sd_path or os.environ.get("TINYBEAUTY_SD_PATH") or None


def run_train(args) -> int:
    from makeup.config import load_profile, section
    from teacher.train import teacher_settings, train_teacher

    profile = load_profile(args.profile)
    over = {"epochs": args.epochs, "device": args.device,
            "model": {"sd_path": _sd_path(args)} if _sd_path(args) else None}
    settings = teacher_settings(section(profile, "teacher"), args.backend, over, profile=args.profile)
    final = train_teacher(args.seeds, args.out, settings, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # one line under `accelerate launch`, from the process that wrote it
        print(f"teacher: {final}")
    return 0


def run_fidelity(args) -> int:
    from teacher.fidelity import teacher_fidelity
    from teacher.inference import load_teacher

    from makeup.config import load_profile, section
    from teacher.amplify import amplify_settings

    profile = load_profile(args.profile)
    if args.seeds:
        from makeup.errors import TinyBeautyError
        from teacher.fidelity import SeedPrior
        from teacher.train import teacher_settings

        # the prior alone is painted, not drawn: a flag that sets how a teacher loads or samples would be ignored
        drawn = [flag for flag, given in (("--steps", args.steps is not None), ("--samples", args.samples is not None),
                                          ("--sd-path", args.sd_path is not None), ("--no-refiner", args.no_refiner),
                                          ("--device", args.device != "auto")) if given]
        if drawn:
            raise TinyBeautyError(f"{', '.join(drawn)}: --seeds scores the look prior alone (nothing is loaded or "
                                  "sampled); drop it, or score a trained teacher with --teacher")
        teacher = SeedPrior(args.seeds, teacher_settings(section(profile, "teacher"), "tiny-ddpm").model)
        args.prior_only = True
    else:
        teacher = load_teacher(args.teacher, args.device, overrides={"sd_path": _sd_path(args)},
                               refiner=not args.no_refiner)
    samples = args.samples or amplify_settings(section(profile, "amplify"),
                                               teacher.config.get("backend", "tiny-ddpm")).samples
    if args.photo:
        from makeup.io import load_photo
        from makeup.metrics import format_fidelity
        from teacher.fidelity import teacher_photo_fidelity

        report = teacher_photo_fidelity(teacher, load_photo(args.photo), args.style, args.photo, args.steps,
                                        samples, args.json, args.grid, prior_only=args.prior_only)
        who = "teacher's prior" if args.prior_only else "teacher"
        print(f"{who} on {args.photo} vs renderer: {format_fidelity(report)}")
        tones = report.get("seed_tones")
        if tones and tones["photo"] is not None:
            print(f"skin lightness (CIELAB L): the seeds' {tones['seeds'][0]}-{tones['seeds'][-1]}, the photo's "
                  f"{tones['photo']} ({'within' if tones['within_seeds'] else 'outside'} them)")
        return 0
    report = teacher_fidelity(teacher, args.style, args.count, args.batch, args.steps, args.json, args.grid,
                              samples=samples, agreement=args.agreement, prior_only=args.prior_only)
    print(json.dumps(report, indent=2))
    return 0


def run_amplify(args) -> int:
    from makeup.config import load_profile, section
    from teacher.amplify import amplify, amplify_settings, launched_processes
    from teacher.inference import load_teacher

    profile = section(load_profile(args.profile), "amplify")
    over = {"batch": args.batch, "seed": args.seed, "steps": args.steps, "samples": args.samples,
            "parser": args.parser, "device": args.device}
    # checked before the teacher loads (a typo costs nothing); rebuilt for the teacher's backend below
    device = amplify_settings(profile, "", over, profile=args.profile).device
    if device == "auto" and launched_processes() > 1:  # one GPU per process under `accelerate launch`
        from teacher.amplify import launch_state

        device = str(launch_state().device)
    teacher = load_teacher(args.teacher, device, upscaler=args.upscaler, overrides={"sd_path": _sd_path(args)},
                           refiner=not args.no_refiner)
    cfg = amplify_settings(profile, teacher.config.get("backend", "tiny-ddpm"), over, profile=args.profile)
    report = amplify(teacher, args.faces, args.count, args.out, cfg, force_new=args.force_new)
    if report:
        print(json.dumps(report, indent=2))
    return 0
