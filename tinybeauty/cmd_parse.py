"""``tinybeauty parse``: photos -> region label maps at each photo's size (+ optional overlays)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PARSER_CHOICES = ("auto", "mediapipe", "facer", "synthetic")


def register(sub) -> None:
    p = sub.add_parser(
        "parse", help="region label maps (0 other, 1 eyes, 2 lips, 3 skin, 4 brows) for photos",
        description="Writes OUT/<stem>.png, a label map at the photo's size (0 other, 1 eyes, 2 lips, 3 skin, "
                    "4 brows); with --overlay also OUT/overlay/<stem>.png. A folder is parsed photo by photo; "
                    "photos without a face are skipped and listed.")
    p.add_argument("--input", required=True, type=Path, help="an image file or a folder of images")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--parser", default="auto", choices=PARSER_CHOICES,
                   help="auto: synthetic sidecar labels/<stem>.png if present, else facer if its weights are "
                        "given, else mediapipe (default: auto)")
    p.add_argument("--facer-weights", type=Path, default=None,
                   help="local FaRL LaPa TorchScript file for --parser facer "
                        "(or set TINYBEAUTY_FACER_WEIGHTS); never downloaded")
    p.add_argument("--overlay", action="store_true", help="also write colour overlays to OUT/overlay/")
    p.set_defaults(func=run_parse)


def _inputs(path: Path) -> list[Path]:
    from makeup.errors import TinyBeautyError
    from makeup.io import list_images

    if not path.exists():
        raise TinyBeautyError(f"--input {path}: no such file or folder")
    if path.is_file():
        return [path]
    photos = list_images(path)
    if not photos:
        raise TinyBeautyError(f"--input {path}: no images in this folder")
    return photos


def run_parse(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from makeup.errors import NoFaceError, TinyBeautyError
    from makeup.io import load_image, save_image
    from makeup.parsing import get_parser
    from makeup.regions import overlay

    photos = _inputs(args.input)
    if args.out.exists() and not args.out.is_dir():
        raise TinyBeautyError(f"--out {args.out}: is a file, expected a folder")
    parser = get_parser(args.parser, facer_weights=args.facer_weights)
    folder_mode = args.input.is_dir()
    skipped: list[str] = []
    for photo in tqdm(photos, desc=f"parse ({args.parser})", unit="photo", disable=len(photos) < 2):
        try:
            image = load_image(photo)
            labels = parser.parse(image, path=photo)
        except TinyBeautyError as exc:  # no face / unreadable: skip in a folder, fail for one photo
            if not folder_mode:
                raise
            kind = "no face" if isinstance(exc, NoFaceError) else str(exc)
            skipped.append(f"{photo.name} ({kind})")
            continue
        save_image(args.out / f"{photo.stem}.png", labels)
        if args.overlay:
            save_image(args.out / "overlay" / f"{photo.stem}.png", overlay(image, labels))
    done = len(photos) - len(skipped)
    if done == 0:
        raise TinyBeautyError(f"--input {args.input}: no photo could be parsed: " + ", ".join(skipped))
    if skipped:
        print(f"skipped {len(skipped)} of {len(photos)}: " + ", ".join(skipped), file=sys.stderr)
    print(f"parsed {done} photo(s) with {parser.name} -> {args.out}")
    return 0
