"""Fill the page's assets folder (``make web-assets``): the model and its card from an export folder (and the
look prior a prior-input model reads, the file its card's io.prior_input names), the face-landmarker bundle
built from the mediapipe wheel, and the sample photo (scikit-image's astronaut).

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
    files = [model, card]
    prior = (info.get("io") or {}).get("prior_input")
    if prior:
        name = prior.get("file") if isinstance(prior, dict) else None
        if not isinstance(name, str) or Path(name).name != name or not name.endswith(".json"):
            raise SystemExit(f"error: {card}: io.prior_input names no look prior file beside the model ({name!r})")
        if not (export / name).is_file():
            raise SystemExit(f"error: {export / name} not found: the model reads the look prior and its card names "
                             "this file (export again with this toolkit)")
        files.append(export / name)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in files:
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
    ap.add_argument("--export", type=Path, required=True,
                    help="an export folder (tinybeauty.tflite + model_card.json, + look_prior.json for a prior-input model)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "assets", help="the page's assets folder")
    args = ap.parse_args(argv)
    for p in build(args.export, args.out):
        print(f"{p} ({p.stat().st_size:,} B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
