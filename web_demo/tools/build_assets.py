"""Fill the page's assets folder (``make web-assets``): the model and its card from an export folder, the
face-landmarker bundle built from the mediapipe wheel, and the sample photo (scikit-image's astronaut).

    python web_demo/tools/build_assets.py --export work/glamorous/export [--out web_demo/assets]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL, CARD, LANDMARKER, SAMPLE = "tinybeauty.tflite", "model_card.json", "face_landmarker.task", "sample.png"


def build(export: Path, out: Path) -> list[Path]:
    model, card = export / MODEL, export / CARD
    for p in (model, card):
        if not p.is_file():
            raise SystemExit(f"error: {p} not found: run `make export` first (or pass --export EXPORT_DIR)")
    info = json.loads(card.read_text(encoding="utf-8"))
    if "alignment" not in info:
        raise SystemExit(f"error: {card} has no \"alignment\" entry: export again with this toolkit")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in (model, card):
        shutil.copyfile(src, out / src.name)
        written.append(out / src.name)

    sys.path.insert(0, str(HERE))
    from build_face_landmarker import build_bundle

    written.append(build_bundle(out / LANDMARKER))
    sample = out / SAMPLE
    if not sample.is_file():
        from PIL import Image
        from skimage import data

        Image.fromarray(data.astronaut()).save(sample)  # PNG: lossless, so tests compare exact pixels
    written.append(sample)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", type=Path, required=True, help="an export folder (tinybeauty.tflite + model_card.json)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "assets", help="the page's assets folder")
    args = ap.parse_args(argv)
    for p in build(args.export, args.out):
        print(f"{p} ({p.stat().st_size:,} B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
