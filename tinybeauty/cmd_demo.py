"""`tinybeauty demo`: the whole chain on the built-in default, offline, resumable.

It runs the same contract subcommands a user would (`synth-faces`, `render`, `teacher train`, `amplify`,
`student train`, `export`, `eval`, `apply`) in-process, skipping a step whose output is already complete, so
a rerun after an interruption picks up where it stopped. Timings and headline figures go to
``WORK/demo_summary.json`` (and ``WORK/<style>/demo_summary.json``); ``WORK/seeds_grid.png`` shows every
built-in look.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from makeup.config import SETTINGS_FILE, StageSettings
from makeup.styles import BUILTIN_STYLES


@dataclass
class Step:
    name: str
    done: Callable[[], bool]
    argv: list[str]


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole chain on the built-in synthetic default (offline)",
                       description="faces -> seed pairs per built-in look -> teacher -> amplify -> student "
                                   "-> export -> eval/apply, under WORK/.")
    p.add_argument("--work", default="work", help="output folder (default: work)")
    p.add_argument("--style", default=None, help="the look the chain trains (default: the profile's demo.style)")
    p.add_argument("--profile", default="demo", help="demo (2-core CPU, minutes) or paper (one GPU)")
    p.add_argument("--only-seeds", action="store_true", help="stop after the seed pairs and their grid")
    p.set_defaults(func=run_demo)


def _seed_grid(work: Path, styles: list[str], per_style: int) -> Path:
    from makeup.grid import save_grid
    from makeup.pairs import PairDataset
    from makeup.regions import overlay

    rows, titles = [], []
    for style in styles:
        ds = PairDataset(work / style / "seeds")
        row = []
        for pair in list(ds)[:per_style]:
            row += [pair.source, pair.target, overlay(pair.source, pair.mask)]
        rows.append(row)
    for _ in range(per_style):
        titles += ["before", "after", "regions"]
    out = work / "seeds_grid.png"
    save_grid(out, rows, titles=titles, tile=128)
    return out


def _manifest_count(folder: Path) -> int:
    m = folder / "manifest.jsonl"
    return sum(1 for line in m.read_text().splitlines() if line.strip()) if m.exists() else 0


@dataclass(frozen=True)
class DemoSettings(StageSettings):
    """The profile's ``demo:`` section: what `tinybeauty demo` makes before and around the chain."""

    STAGE: ClassVar[str] = "demo"
    style: str = "glamorous"       # the look the chain trains
    seed_styles: list = field(default_factory=lambda: list(BUILTIN_STYLES))  # looks given seed pairs + a grid row
    faces: int = 24                # synthetic faces the seed pairs are drawn from
    seeds: int = 5                 # seed pairs per look
    pairs: int = 300               # amplified pairs the student trains on
    truth_faces: int = 40          # new faces made up by the renderer: the chain's truth


# stage -> its output folder under WORK/STYLE, which holds the settings.yaml the stage ran with
STAGE_FOLDERS = {"teacher": "teacher", "amplify": "pairs", "student": "student", "export": "export"}


def demo_steps(args, cfg: DemoSettings) -> tuple[list[Step], list[str]]:
    """The chain as the subcommands a user would run (every stage gets ``--profile``), and the seed looks."""
    work = Path(args.work)
    style = args.style or cfg.style
    styles = list(cfg.seed_styles or BUILTIN_STYLES)
    if style not in styles and Path(style).suffix not in (".yaml", ".yml"):
        styles.append(style)
    style_name = Path(style).stem
    n_faces, n_seeds, n_pairs = cfg.faces, cfg.seeds, cfg.pairs
    faces, out = work / "faces", work / style_name
    steps = [Step("synth-faces", lambda: len(list(faces.glob("face_*.png"))) >= n_faces,
                  ["synth-faces", "--out", str(faces), "--count", str(n_faces), "--seed", "0"])]
    for s in dict.fromkeys(styles + [style]):
        name = Path(s).stem
        steps.append(Step(f"render {name}", lambda n=name: _manifest_count(work / n / "seeds") >= n_seeds,
                          ["render", "--faces", str(faces), "--style", s, "--out", str(work / name / "seeds"),
                           "--count", str(n_seeds), "--pick", "tones"]))
    if not args.only_seeds:
        ckpt = out / "student" / "tinybeauty_final.pt"
        tflite = out / "export" / "tinybeauty.tflite"
        n_truth = cfg.truth_faces
        truth_faces, truth_pairs = work / "truth_faces", out / "truth_pairs"
        prof = ["--profile", args.profile]
        steps += [
            Step("teacher train", lambda: (out / "teacher" / "dda_final.pt").exists()
                 or (out / "teacher" / "dda_final.safetensors").exists(),
                 ["teacher", "train", "--seeds", str(out / "seeds"), "--out", str(out / "teacher")] + prof),
            Step("amplify", lambda: (out / "pairs" / "quality.json").exists(),
                 ["amplify", "--teacher", str(out / "teacher"), "--faces", "synthetic", "--count", str(n_pairs),
                  "--out", str(out / "pairs")] + prof),
            Step("student train", lambda: ckpt.exists(),
                 ["student", "train", "--pairs", str(out / "pairs"), "--out", str(out / "student")] + prof),
            Step("export", lambda: (out / "export" / "report.json").exists(),
                 ["export", "--checkpoint", str(ckpt), "--out", str(out / "export"), "--calib", str(out / "pairs")]
                 + prof),
            Step("eval tflite vs teacher", lambda: (out / "eval_tflite.json").exists(),
                 ["eval", "--model", str(tflite), "--pairs", str(out / "pairs"), "--json",
                  str(out / "eval_tflite.json")]),
            # New faces no stage has seen, made up by the renderer: the truth the whole chain aims at.
            Step("truth faces", lambda: len(list(truth_faces.glob("face_*.png"))) >= n_truth,
                 ["synth-faces", "--out", str(truth_faces), "--count", str(n_truth), "--seed", "7000000"]),
            Step("truth pairs", lambda: _manifest_count(truth_pairs) >= n_truth,
                 ["render", "--faces", str(truth_faces), "--style", style, "--out", str(truth_pairs),
                  "--count", str(n_truth)]),
            Step("eval tflite vs renderer", lambda: (out / "eval_tflite_truth.json").exists(),
                 ["eval", "--model", str(tflite), "--pairs", str(truth_pairs), "--split", "all", "--json",
                  str(out / "eval_tflite_truth.json")]),
            Step("teacher fidelity", lambda: (out / "teacher_fidelity.json").exists(),
                 ["teacher", "fidelity", "--teacher", str(out / "teacher"), "--count", str(n_truth),
                  "--json", str(out / "teacher_fidelity.json"), "--grid", str(out / "teacher_fidelity.png")]
                 + prof),
            Step("teacher on the astronaut", lambda: (out / "teacher_astronaut.json").exists(),
                 ["teacher", "fidelity", "--teacher", str(out / "teacher"), "--photo", "astronaut", "--style", style,
                  "--json", str(out / "teacher_astronaut.json"), "--grid", str(out / "teacher_astronaut.png")]
                 + prof),
            Step("astronaut", lambda: (out / "astronaut_fidelity.json").exists(),
                 ["eval", "--model", str(tflite), "--photo", "astronaut", "--style", style, "--json",
                  str(out / "astronaut_fidelity.json"), "--grid", str(out / "astronaut_look.png")]),
        ]
    return steps, styles


def run_demo(args) -> int:
    from makeup.config import load_profile, section
    from makeup.errors import TinyBeautyError

    from .cli import main as cli_main

    profile = load_profile(args.profile)
    cfg = DemoSettings.build(section(profile, "demo"), profile=args.profile)
    work = Path(args.work)
    if work.exists() and not work.is_dir():
        raise TinyBeautyError(f"{work}: exists and is not a folder")
    steps, styles = demo_steps(args, cfg)
    style = args.style or cfg.style
    style_name = Path(style).stem
    out = work / style_name
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    for i, step in enumerate(steps, 1):
        if step.done():
            print(f"[{i}/{len(steps)}] {step.name}: already done, skipped")
            continue
        print(f"[{i}/{len(steps)}] {step.name}: tinybeauty {' '.join(step.argv)}", flush=True)
        t0 = time.perf_counter()
        rc = cli_main(step.argv)
        timings[step.name] = round(time.perf_counter() - t0, 1)
        if rc:
            raise TinyBeautyError(f"demo stopped at step '{step.name}' (exit {rc}); rerun `make demo` to resume")
    grid = _seed_grid(work, [Path(s).stem for s in styles], per_style=2)
    print(f"seed pairs grid: {grid}")
    summary = {"profile": args.profile, "style": style_name, "timings_s": timings,
               "total_s": round(time.perf_counter() - t_all, 1), "seeds_grid": str(grid)}
    if not args.only_seeds:
        summary["settings"] = {stage: str(out / folder / SETTINGS_FILE) for stage, folder in STAGE_FOLDERS.items()
                               if (out / folder / SETTINGS_FILE).exists()}
        summary.update(_chain_figures(out))
        _apply_astronaut(out, cli_main)
        summary["look"] = _look_lines(summary)
    from makeup.io import write_text_atomic

    text = json.dumps(summary, indent=2) + "\n"
    write_text_atomic(work / "demo_summary.json", text)
    if not args.only_seeds:  # also beside the look's own outputs: demos of several looks share WORK
        write_text_atomic(work / style_name / "demo_summary.json", text)
    print(json.dumps({k: v for k, v in summary.items() if k != "look"}, indent=2))
    print("\n".join(["", f"look fidelity of {style_name} (recovery 1 = the whole look, 0 = the unchanged face):"]
                    + summary.get("look", []) + [f"summary: {work / 'demo_summary.json'}"]
                    + [f"{stage} ran with: {path}" for stage, path in summary.get("settings", {}).items()]))
    return 0


def _chain_figures(out: Path) -> dict:
    figs: dict = {}
    for name, path in (("amplify_quality", out / "pairs" / "quality.json"),
                       ("teacher_vs_renderer", out / "teacher_fidelity.json"),
                       ("student", out / "student" / "summary.json"),
                       ("export_report", out / "export" / "report.json"),
                       ("tflite_vs_teacher", out / "eval_tflite.json"),
                       ("tflite_vs_renderer", out / "eval_tflite_truth.json"),
                       ("teacher_astronaut_vs_renderer", out / "teacher_astronaut.json"),
                       ("astronaut_vs_renderer", out / "astronaut_fidelity.json")):
        if path.exists():
            figs[name] = json.loads(path.read_text())
    return figs


def _look_lines(figs: dict) -> list[str]:
    """The look-fidelity headline, one line per measurement (what `make demo` prints last)."""
    from makeup.metrics import format_fidelity

    lines = []
    for key, what in (("teacher_vs_renderer", "teacher vs renderer, new faces"),
                      ("tflite_vs_teacher", ".tflite vs teacher, held-out amplified pairs"),
                      ("tflite_vs_renderer", ".tflite vs renderer, new faces"),
                      ("teacher_astronaut_vs_renderer", "teacher on the astronaut vs renderer")):
        if key in figs:
            lines.append(f"{what}: {format_fidelity(figs[key])}")
    for key, fid in (figs.get("astronaut_vs_renderer") or {}).items():
        lines.append(f"astronaut ({key}) vs renderer: {format_fidelity(fid)}")
    return lines


def _apply_astronaut(out: Path, cli_main) -> None:
    """A real photo through the phone artifact: skimage's astronaut, full size in, full size out."""
    from skimage import data

    from makeup.grid import save_grid
    from makeup.io import load_image, save_image

    photo = out / "astronaut.png"
    if not photo.exists():
        save_image(photo, data.astronaut())
    results = {"gated": out / "astronaut_tflite.png", "ungated": out / "astronaut_tflite_ungated.png"}
    model = str(out / "export" / "tinybeauty.tflite")
    ok = all(cli_main(["apply", "--model", model, "--input", str(photo), "--out", str(path)]
                      + (["--no-gate"] if key == "ungated" else [])) == 0 for key, path in results.items())
    if ok:
        save_grid(out / "astronaut_before_after.png",
                  [[load_image(photo), load_image(results["ungated"]), load_image(results["gated"])]],
                  titles=["photo", "tinybeauty.tflite", "tinybeauty.tflite + look gate"], tile=384)
        print(f"real photo through the .tflite: {out / 'astronaut_before_after.png'}")
