"""Data commands: ``synth-faces``, ``render``, ``pairs check`` and ``styles``."""
from __future__ import annotations

import argparse
from pathlib import Path

PARSER_CHOICES = ("auto", "mediapipe", "facer", "synthetic")
PREVIEW = "preview.png"


def register(sub) -> None:
    p = sub.add_parser("synth-faces", help="write procedural synthetic face crops with exact region maps",
                       description="Writes OUT/face_00000.png ... (aligned face crops) and their exact label "
                                   "maps OUT/labels/face_00000.png (0 other, 1 eyes, 2 lips, 3 skin, 4 brows). "
                                   "Resumable: existing faces are kept.")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--count", required=True, type=int, help="number of faces")
    p.add_argument("--seed", type=int, default=0, help="seed of the face set (default 0)")
    p.add_argument("--size", type=int, default=256, help="crop size in pixels (default 256)")
    p.set_defaults(func=run_synth_faces)

    p = sub.add_parser("render", help="render a makeup style onto face photos -> a pair dataset",
                       description="Each face photo is aligned and parsed (a synth-faces crop uses its exact "
                                   "sidecar map), the style is rendered on it and the before/after pair is "
                                   "written to PAIRS. Resumable; photos without a face are skipped and listed.")
    p.add_argument("--faces", required=True, type=Path, help="folder of face photos (e.g. synth-faces output)")
    p.add_argument("--style", required=True, help="a built-in look (see `tinybeauty styles`) or a style .yaml")
    p.add_argument("--out", required=True, type=Path, help="pair dataset folder (created or resumed)")
    p.add_argument("--count", type=int, default=None, help="stop once the dataset has this many pairs")
    p.add_argument("--pick", default="first", choices=("first", "tones"),
                   help="which faces make the --count pairs: the first ones (default) or those whose skin tones "
                        "spread evenly from the darkest to the lightest (seed pairs: a foundation's effect depends "
                        "on the skin tone, and the teacher learns it from the seeds' tones)")
    p.add_argument("--parser", default="auto", choices=PARSER_CHOICES, help="region parser (default auto)")
    p.add_argument("--facer-weights", type=Path, default=None, help="local FaRL weights for --parser facer")
    p.add_argument("--size", type=int, default=256, help="face crop size (default 256)")
    p.set_defaults(func=run_render)

    pairs_parser = sub.add_parser("pairs", help="pair dataset tools (check)")
    pairs_sub = pairs_parser.add_subparsers(dest="pairs_command", metavar="ACTION")
    c = pairs_sub.add_parser("check", help="validate a pair dataset and print a summary",
                             description="Reads every pair (files, sizes, labels) and prints a summary; a bad "
                                         "dataset is one error line and exit code 2.")
    c.add_argument("pairs", type=Path, help="pair dataset folder")
    pairs_parser.set_defaults(func=run_pairs, pairs_help=pairs_parser.print_help)

    p = sub.add_parser("styles", help="list the built-in makeup looks, or validate and print one",
                       description="Without an argument: the built-in looks with one line each. With a name or "
                                   "a .yaml file: the style, validated, as YAML.")
    p.add_argument("style", nargs="?", default=None, help="a built-in look or a style .yaml file")
    p.set_defaults(func=run_styles)


def _positive(value: int | None, flag: str) -> None:
    from makeup.errors import TinyBeautyError

    if value is not None and value < 1:
        raise TinyBeautyError(f"{flag} must be >= 1, got {value}")


def run_synth_faces(args: argparse.Namespace) -> int:
    from makeup.errors import TinyBeautyError
    from makeup.synth import write_faces

    _positive(args.count, "--count")
    if args.size < 32:
        raise TinyBeautyError(f"--size must be >= 32, got {args.size}")
    paths = write_faces(args.out, args.count, seed=args.seed, size=args.size)
    print(f"{args.out}: {len(paths)} faces ({args.size}x{args.size}) with exact label maps in {args.out / 'labels'}")
    return 0


def _face_photos(folder: Path) -> list[Path]:
    from makeup.errors import TinyBeautyError
    from makeup.io import list_images

    try:
        photos = list_images(folder)
    except TinyBeautyError as exc:
        raise TinyBeautyError(f"--faces {exc}") from None
    if not photos:
        raise TinyBeautyError(f"--faces {folder}: no images in this folder (make some with `tinybeauty "
                              "synth-faces --out DIR --count N`)")
    return photos


def run_render(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from makeup.errors import NoFaceError, TinyBeautyError
    from makeup.pairs import PairWriter
    from makeup.parsing import get_parser, prepare_face
    from makeup.render import render_makeup
    from makeup.styles import load_style

    _positive(args.count, "--count")
    style = load_style(args.style)  # a bad style fails before anything is written
    photos = _face_photos(args.faces)
    if args.out.exists() and not args.out.is_dir():
        raise TinyBeautyError(f"--out {args.out}: is a file, expected a pair dataset folder")
    parser = get_parser(args.parser, facer_weights=args.facer_weights)
    # The dataset folder is created with the first pair, so a run that fails early leaves nothing behind.
    writer = PairWriter(args.out) if args.out.exists() else None
    done = len(writer) if writer is not None else 0
    target = len(photos) if args.count is None else args.count
    skipped: list[str] = []
    prepared: dict = {}
    if args.pick == "tones" and args.count is not None and args.count < len(photos):
        photos, prepared = _pick_tones(photos, args, parser, skipped)
    with tqdm(total=min(target, len(photos)), initial=min(done, target), desc=f"render {style.name}",
              unit="pair") as bar:
        for photo in photos:
            if writer is not None:
                if len(writer) >= target:
                    break
                if photo.stem in writer:
                    continue
            try:
                face = prepared.get(photo) or prepare_face(photo, size=args.size, parser=parser)
            except NoFaceError as exc:
                skipped.append(f"{photo.name} ({exc})")
                continue
            after = render_makeup(face.crop, face.labels, style)
            if writer is None:
                writer = PairWriter(args.out)
            writer.write(photo.stem, face.crop, after, face.labels, style=style.name, origin="render",
                         face=photo.name, parser=getattr(parser, "name", args.parser))
            bar.update(1)
    if writer is None:
        raise TinyBeautyError(f"--faces {args.faces}: no usable face in {len(photos)} photo(s): "
                              + "; ".join(skipped[:5]))
    _write_preview(args.out)
    print(f"{args.out}: {len(writer)} pairs of style {style.name}")
    if skipped:
        print(f"skipped {len(skipped)} photo(s) without a usable face:")
        for line in skipped:
            print(f"  {line}")
    if len(writer) < target:
        print(f"note: {len(writer)} pairs < --count {target} (not enough usable faces in {args.faces})")
    return 0


def _pick_tones(photos: list[Path], args: argparse.Namespace, parser, skipped: list[str]):
    """``render --pick tones``: every photo's face prepared and its skin tone read, then the ``--count`` photos
    whose tones spread evenly over their range (``makeup.region_models.spread_tones``), in the folder's order, and
    their prepared faces. Photos without a face are listed in ``skipped``."""
    from tqdm import tqdm

    from makeup.errors import NoFaceError
    from makeup.parsing import prepare_face
    from makeup.region_models import skin_lightness, spread_tones

    faces, tones = {}, []
    for photo in tqdm(photos, desc="skin tones", unit="face"):
        try:
            faces[photo] = prepare_face(photo, size=args.size, parser=parser)
        except NoFaceError as exc:
            skipped.append(f"{photo.name} ({exc})")
            tones.append(None)
            continue
        tones.append(skin_lightness(faces[photo].crop, faces[photo].labels))
    chosen = sorted(spread_tones(tones, args.count))
    print("seed skin tones (CIELAB L): " + ", ".join(f"{photos[i].name} {tones[i]:.1f}" for i in chosen))
    return [photos[i] for i in chosen], {photos[i]: faces[photos[i]] for i in chosen}


def _write_preview(root: Path, count: int = 6) -> None:
    """PAIRS/preview.png: before / after / regions of the first pairs, to look at rather than read."""
    from makeup.grid import save_grid
    from makeup.pairs import PairDataset
    from makeup.regions import overlay

    ds = PairDataset(root)
    if not len(ds):
        return
    pairs = [ds[i] for i in range(min(count, len(ds)))]
    rows = [[p.source for p in pairs], [p.target for p in pairs], [overlay(p.source, p.mask) for p in pairs]]
    save_grid(root / PREVIEW, rows, tile=128)


def run_pairs(args: argparse.Namespace) -> int:
    from makeup.pairs import check_pairs

    if args.pairs_command != "check":
        args.pairs_help()
        return 2

    print(check_pairs(args.pairs, progress=True).summary())
    return 0


def run_styles(args: argparse.Namespace) -> int:
    from makeup.styles import list_styles, load_style

    if args.style is not None:
        print(load_style(args.style).to_yaml(), end="")
        return 0
    for name in list_styles():
        style = load_style(name)
        print(f"{name:<12} {', '.join(style.products):<58} {style.description}")
    return 0
