"""``report.json`` (machine-readable), ``report.md`` (a person's table) and ``model_card.json`` (what an app
needs to feed the model)."""
from __future__ import annotations

from .formats import FORMATS
from .onnx import INPUT_NAME, OUTPUT_NAME


def _fmt(v, spec: str = ".2f") -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def report_markdown(report: dict) -> str:
    budget = report["budget_bytes"]
    lines = [
        f"# TinyBeauty export — {'PASSED' if report['passed'] else 'FAILED'}",
        "",
        f"checkpoint `{report['checkpoint']}`, quantization **{report['quantization']}**, "
        f"input {report['size']}x{report['size']}, budget {budget:,} B, parity on "
        f"{report['parity_set']['images']} {report['parity_set']['split']} images of "
        f"`{report['parity_set']['pairs'] or 'synthetic inputs'}`",
        "",
        "| format | file | bytes | % budget | PSNR vs PyTorch (dB) | PSNR vs target (dB) | PyTorch vs target (dB) "
        "| max abs diff | verified | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, r in report["formats"].items():
        note = r.get("reason") or ""
        lines.append(
            f"| {name} | `{r['path']}` | {r['bytes']:,} | {100 * r['bytes'] / budget:.1f} | "
            f"{_fmt(r['psnr_vs_torch'])} | {_fmt(r['psnr_vs_target'])} | {_fmt(r.get('torch_psnr_vs_target'))} | "
            f"{_fmt(r['max_abs_diff'], '.4f')} | {_fmt(r['verified'])} | {note} |")
    looks = {n: r for n, r in report["formats"].items() if r.get("fidelity")}
    if looks:
        from makeup.metrics import REPORTED_REGIONS

        lines += ["", "Look fidelity vs the target, per region (recovery: 1 = the whole look, 0 = the unchanged "
                  "face; spill in 0..255 and % of pixels visibly painted where the look puts nothing):", "",
                  "| format | " + " | ".join(REPORTED_REGIONS) + " | spill | visible % | PSNR gain (dB) |",
                  "|---|" + "---:|" * (len(REPORTED_REGIONS) + 3)]
        for name, r in looks.items():
            for label, fid in ((name, r["fidelity"]), (f"{name} (PyTorch)", r.get("torch_fidelity"))):
                if fid:
                    rec = " | ".join(_fmt(fid["recovery"].get(k), ".3f") for k in REPORTED_REGIONS)
                    lines.append(f"| {label} | {rec} | {_fmt(fid['spill'], '.3f')} | "
                                 f"{_fmt(fid['visible_spill'], '.2f')} | {_fmt(fid['psnr_gain'])} |")
    if report["failures"]:
        lines += ["", "## Failures", ""] + [f"- {f}" for f in report["failures"]]
    th = report["thresholds"]
    lines += ["", f"Gate: every shipped file ≤ {budget:,} B; PSNR vs PyTorch ≥ {th['min_psnr_vs_torch_db']} dB; "
              f"at most {th['max_target_psnr_drop_db']} dB lost vs target. Export took {report['export_seconds']} s.", ""]
    return "\n".join(lines)


def alignment_card(size: int) -> dict:
    """How an app frames the face for the model: ``makeup.align``'s template and landmark indices (the web
    and Android demos read these instead of copying them)."""
    import inspect

    from makeup import align

    pixel_centre = float(align.TEMPLATE[0, 0] - align.template_points(1)[0, 0])  # template_points = T * size - this
    return {"template": align.TEMPLATE.tolist(), "crop_size": int(size), "pixel_centre": pixel_centre,
            "landmarks": {"right_eye_corners": list(align.RIGHT_EYE_CORNERS),
                          "left_eye_corners": list(align.LEFT_EYE_CORNERS),
                          "mouth_corners": list(align.MOUTH_CORNERS), "mesh_points": 478},
            "feather": inspect.signature(align.face_mask).parameters["feather"].default}


def regions_card() -> dict:
    """How an app parses the crop into regions for the look gate: ``makeup.parsing.landmarks_to_labels``'s
    face-mesh polygons in fill order (later ones win; cv2.fillPoly, vertices rounded to 1/16 px, LINE_8) and
    ``makeup.metrics.region_masks``'s eye zone (the eye opening grown by round(eye_reach * crop side) px)."""
    from makeup import metrics, parsing
    from makeup.align import FACE_OVAL
    from makeup.regions import REGION_NAMES

    fill = (("skin", FACE_OVAL), ("eyes", parsing.RIGHT_EYE), ("eyes", parsing.LEFT_EYE),
            ("brows", parsing.RIGHT_BROW), ("brows", parsing.LEFT_BROW), ("lips", parsing.LIPS_OUTER),
            ("other", parsing.LIPS_INNER))
    return {"labels": dict(REGION_NAMES), "fill": [{"label": name, "points": list(ids)} for name, ids in fill],
            "subpixel_bits": 4, "eye_reach": metrics.EYE_REACH}


def io_card(size: int, channels: int) -> dict:
    """What goes in and comes out. With region input (7 or 8 channels) the input's channels from 3 on are the
    crop's masks ``region_input.channels`` names (``makeup.gate.input_masks`` of the label map parsed as
    ``regions`` says, at ``region_input.feather``): the four soft region masks the look gate fades its limits
    with, then (8 channels) the cheeks."""
    from makeup.gate import INPUT_MASKS
    from makeup.metrics import CHEEK_DROP, CHEEK_FALLOFF, CHEEK_MIN_PIXELS, CHEEK_OUT, CHEEK_SPREAD
    from student.model import PRIOR_CHANNELS, REGION_CHANNELS, REGION_FEATHER  # constants only: torch-free here
    from student.runtime import LOOK_PRIOR_FILE

    io = {"dtype": "float32", "value_range": [0.0, 1.0], "color": "RGB", "height": size, "width": size,
          "channels": channels, "input": "aligned face crop (makeup.align.align_face), RGB / 255",
          "output": "made-up crop, RGB, same layout, multiply by 255 and round"}
    prior = PRIOR_CHANNELS if channels - 3 > REGION_CHANNELS + 1 else 0  # 10 or 11: the masks, then the prior
    masks = channels - 3 - prior
    if channels > 3:
        names = list(INPUT_MASKS[:masks])
        io["input"] += ", then the crop's soft region masks (region_input)"
        io["region_input"] = {"channels": names, "first_channel": 3, "feather": REGION_FEATHER,
                              "masks": "makeup.gate.input_masks: the regions card's label map; eyes = the "
                                       "eye zone, skin = skin outside it; each Gaussian-blurred with sigma = "
                                       "feather * side / 2 (cv2 ksize 0, zero border)"}
        if "cheeks" in names:
            io["region_input"]["cheeks"] = {
                "outward": CHEEK_OUT, "drop": CHEEK_DROP, "spread": list(CHEEK_SPREAD), "falloff": CHEEK_FALLOFF,
                "min_pixels": CHEEK_MIN_PIXELS,
                "how": "makeup.metrics.cheek_map times the soft skin mask: eye pixels split at the lips' mean column; "
                       "per eye (>= min_pixels), width w = its column span + 1, centre (eye mean x + outward * w "
                       "away from the lips' column, eye mean y + drop * (lips' mean y - eye mean y)), value "
                       "exp(-falloff * ((x - cx) / (spread[0] w))^2) * exp(-falloff * ((y - cy) / (spread[1] w))^2), "
                       "the max of the two eyes; pixel indices as coordinates"}
    if prior:
        io["input"] += ", then the look prior painted on the crop (prior_input)"
        io["prior_input"] = {
            "first_channel": 3 + masks, "channels": prior, "file": LOOK_PRIOR_FILE,
            "how": "makeup.lookprior.LookPrior.paint(crop, labels): the RGB change (0..1 units, may be negative) "
                   "the look's fitted prior lays on this face: region colours and colour maps, the eye and lip "
                   "templates in each feature's own frame, the skin's and brows' models; the model adds it to "
                   "its output. Its parameters: the file named here, beside the model"}
    return io


def model_card(qs, report: dict, student_config: dict | None) -> dict:
    """I/O contract per artifact plus what the model is (style, size, cost)."""
    from student.model import count_macs, count_params

    size, channels = qs.size, qs.channels
    shapes = {"NCHW": [1, channels, size, size], "NHWC": [1, size, size, channels]}
    out_shapes = {"NCHW": [1, 3, size, size], "NHWC": [1, size, size, 3]}
    artifacts = {}
    for name, r in report["formats"].items():
        if not r.get("shipped"):
            continue
        layout = r.get("layout", "NCHW")
        shape, out_shape = list(shapes[layout]), list(out_shapes[layout])
        if r.get("batch") == "dynamic":
            shape[0] = out_shape[0] = "batch"
        artifacts[name] = {"file": r["path"], "layout": layout, "input": r.get("input_name", INPUT_NAME),
                           "output": r.get("output_name", OUTPUT_NAME), "shape": shape,
                           "output_shape": out_shape,
                           "weights": r.get("weights"), "activations": r.get("activations"),
                           "runtime": FORMATS[name].runtime}
    return {
        "name": "tinybeauty",
        "style": qs.meta.get("style"),
        "task": "face makeup transfer on an aligned face crop (output = clamp(input + residual, 0, 1))",
        "alignment": alignment_card(size),
        "io": io_card(size, channels),
        "artifacts": artifacts,
        "params": count_params(qs.float_model),
        "macs": int(count_macs(qs.float_model, size)),
        "quantization": report["quantization"],
        "student_config": student_config,
        # Where and how far the look changes each region (makeup.gate.LookGate): apps clip the model's change
        # to these per-region ranges over the photo's own parsed regions (tinybeauty apply does by default).
        "look_gate": qs.meta.get("look_gate"),
        "regions": regions_card(),  # the label map the gate's regions come from
    }
