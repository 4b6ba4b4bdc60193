"""The Android demo and the Python side must agree; these checks fail when they drift apart.

No Android tools needed: the Kotlin sources are parsed as text and compared with ``makeup.align`` (template,
landmark indices, feather, pixel-centre convention, face-mesh settings), the Makefile's ``android-assets``
target and the export format table (asset name), the model card that ``export/report.py`` builds from
``export/tflite.py``'s record (NHWC float32 RGB in [0, 1], signature names; 3, 7 or 8 input channels), and the
region input (``student.model`` ``REGION_CHANNELS``, ``makeup.gate.soft_region_masks``' regions, order and
blur, read from the card's ``io.region_input``) shared by the model input and the look gate.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from makeup import align

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "android_demo"
SRC = APP / "app" / "src" / "main" / "java" / "com" / "tinybeauty" / "demo"
ASSETS = APP / "app" / "src" / "main" / "assets"


# ---- a small Kotlin reader: comments out, string literals kept, a few literal forms understood ----

def _strip_comments(code: str) -> str:
    """Kotlin source without // and /* */ comments (string literals are kept intact)."""
    out, i, n = [], 0, len(code)
    while i < n:
        if code.startswith("//", i):
            j = code.find("\n", i)
            i = n if j < 0 else j
        elif code.startswith("/*", i):
            j = code.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif code[i] == '"':
            j = i + 1
            while j < n and code[j] != '"':
                j += 2 if code[j] == "\\" else 1
            out.append(code[i:j + 1])
            i = j + 1
        else:
            out.append(code[i])
            i += 1
    return "".join(out)


def _kotlin(name: str) -> str:
    return _strip_comments((SRC / name).read_text(encoding="utf-8"))


def _balanced(code: str, start: int, pair: str = "()") -> str:
    """The text inside the bracket ``pair`` opening at ``code[start]``."""
    depth = 0
    for i in range(start, len(code)):
        depth += {pair[0]: 1, pair[1]: -1}.get(code[i], 0)
        if depth == 0:
            return code[start + 1:i]
    raise AssertionError(f"unbalanced {pair}")


def _number(text: str):
    text = text.strip().rstrip("fFL")
    return float(text) if any(c in text for c in ".eE") else int(text)


def _literal(expr: str):
    expr = expr.strip()
    for fn, conv in (("intArrayOf", int), ("doubleArrayOf", float), ("floatArrayOf", float)):
        if expr.startswith(fn + "("):
            inner = _balanced(expr, len(fn))
            return [conv(_number(v)) for v in inner.split(",") if v.strip()]
    if expr.startswith("arrayOf("):
        inner = _balanced(expr, len("arrayOf"))
        items, depth, cur = [], 0, ""
        for ch in inner:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if ch == "," and depth == 0:
                items.append(cur)
                cur = ""
            else:
                cur += ch
        items.append(cur)
        return [_literal(it) for it in items if it.strip()]
    if expr.startswith('"'):
        return expr[1:expr.index('"', 1)]
    return _number(expr)


def kotlin_value(code: str, name: str):
    """Value of ``val NAME = <literal>`` / ``const val NAME = <literal>`` (exactly one declaration)."""
    matches = list(re.finditer(rf"\bval\s+{name}\s*(?::\s*[\w<>?]+\s*)?=\s*", code))
    assert len(matches) == 1, f"expected one declaration of {name}, found {len(matches)}"
    rest = code[matches[0].end():]
    if re.match(r"(intArrayOf|doubleArrayOf|floatArrayOf|arrayOf)\(", rest):
        paren = rest.index("(")
        return _literal(rest[:paren + len(_balanced(rest, paren)) + 2])
    return _literal(rest.splitlines()[0])


def _source_fixture(fixture: str, file: str):
    """A module-scoped fixture ``fixture`` holding one Kotlin file's code (comments out)."""
    return pytest.fixture(scope="module", name=fixture)(lambda: _kotlin(file))


aligner_kt = _source_fixture("aligner_kt", "FaceAligner.kt")
model_kt = _source_fixture("model_kt", "MakeupModel.kt")
regions_kt = _source_fixture("regions_kt", "RegionMasks.kt")
activity_kt = _source_fixture("activity_kt", "MainActivity.kt")


def _function(code: str, name: str) -> str:
    """The body of Kotlin ``fun NAME(...) { ... }`` (the first declaration), braces balanced."""
    m = re.search(rf"\bfun\s+{name}\s*\(", code)
    assert m, f"no fun {name}"
    start = code.index("{", code.index(")", m.end() + len(_balanced(code, m.end() - 1))))
    return _balanced(code, start, "{}")


def _student_model_constants() -> dict:
    """student/model.py's module-level constants (read from its source: importing it needs torch)."""
    tree = ast.parse((ROOT / "student" / "model.py").read_text(encoding="utf-8"))
    return {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant) for t in node.targets if isinstance(t, ast.Name)}


# ---- alignment: makeup/align.py ----

def test_alignment_template_matches_makeup_align(aligner_kt):
    template = np.array(kotlin_value(aligner_kt, "TEMPLATE"), dtype=np.float64)
    assert template.shape == align.TEMPLATE.shape
    np.testing.assert_array_equal(template, align.TEMPLATE)


@pytest.mark.parametrize("name", ["RIGHT_EYE_CORNERS", "LEFT_EYE_CORNERS", "MOUTH_CORNERS"])
def test_landmark_indices_match_makeup_align(aligner_kt, name):
    assert tuple(kotlin_value(aligner_kt, name)) == tuple(getattr(align, name))


def test_feather_and_pixel_centre_match_makeup_align(aligner_kt):
    feather = kotlin_value(aligner_kt, "FEATHER")
    assert feather == inspect.signature(align.face_mask).parameters["feather"].default
    assert feather == inspect.signature(align.paste_back).parameters["feather"].default
    # template_points = TEMPLATE * size - PIXEL_CENTRE (pixel centres at integer coordinates)
    offset = kotlin_value(aligner_kt, "PIXEL_CENTRE")
    for size in (64, 256):
        np.testing.assert_allclose(align.template_points(size), align.TEMPLATE * size - offset)


def test_face_mesh_settings_match_makeup_align(aligner_kt):
    """Largest of up to N faces, the same detection threshold, 478 refined landmarks."""
    source = inspect.getsource(align._FaceMesh)
    max_faces = int(re.search(r"max_num_faces\s*=\s*(\d+)", source).group(1))
    confidence = float(re.search(r"min_detection_confidence\s*=\s*([\d.]+)", source).group(1))
    assert kotlin_value(aligner_kt, "MAX_FACES") == max_faces
    assert kotlin_value(aligner_kt, "MIN_DETECTION_CONFIDENCE") == pytest.approx(confidence)
    assert re.search(r"refine_landmarks\s*=\s*True", source), "478 points need refine_landmarks=True"
    assert kotlin_value(aligner_kt, "MESH_POINTS") == 478
    assert max(max(getattr(align, n)) for n in ("RIGHT_EYE_CORNERS", "LEFT_EYE_CORNERS", "MOUTH_CORNERS")) < 478


# ---- the asset: Makefile android-assets and the export format table ----

def _android_assets_copies() -> dict[str, tuple[str, str]]:
    """The android-assets recipe's copies, {file name: (source, destination)}."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"android-assets\s*:", line))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    copies = [line.split() for line in recipe if line.startswith("cp ")]
    assert all(len(c) == 3 for c in copies), f"one file per cp line, recipe: {recipe}"
    return {Path(src).name: (src, dst) for _, src, dst in copies}


def test_asset_name_matches_makefile_and_export(model_kt):
    from export.formats import FORMATS

    copies = _android_assets_copies()
    src, dst = copies[FORMATS["tflite"].filename]
    asset = kotlin_value(model_kt, "MODEL_ASSET")
    assert dst == f"{ASSETS.relative_to(ROOT).as_posix()}/{asset}"
    assert Path(src).name == FORMATS["tflite"].filename
    assert asset in (APP / "README.md").read_text(encoding="utf-8")


def test_model_card_is_copied_and_its_alignment_read(aligner_kt):
    """The app frames faces with the card's "alignment" entry (what the web demo reads too): the card is
    copied beside the model, Alignment.kt reads every key export/report.py writes, and FaceAligner uses it."""
    from export.pipeline import CARD
    from export.report import alignment_card

    alignment_kt = _kotlin("Alignment.kt")
    card_asset = kotlin_value(alignment_kt, "MODEL_CARD_ASSET")
    assert card_asset == CARD
    src, dst = _android_assets_copies()[CARD]
    assert dst == f"{ASSETS.relative_to(ROOT).as_posix()}/{card_asset}" and src.endswith(f"/export/{CARD}")
    card = alignment_card(256)
    for key in ("template", "feather", "pixel_centre", *card["landmarks"]):
        if key != "mesh_points":
            assert f'"{key}"' in alignment_kt, f"Alignment.kt does not read alignment.{key}"
    assert "Alignment.load(context)" in aligner_kt
    # The computation uses the loaded alignment; the companion constants are only the fallback.
    body = aligner_kt[:aligner_kt.index("companion object")]
    for name in ("TEMPLATE", "RIGHT_EYE_CORNERS", "LEFT_EYE_CORNERS", "MOUTH_CORNERS", "FEATHER", "PIXEL_CENTRE"):
        assert not re.search(rf"\b{name}\b", body), f"FaceAligner uses {name} instead of the card's alignment"
    assert card_asset in (APP / "README.md").read_text(encoding="utf-8")


def test_landmarker_asset_is_documented(aligner_kt):
    asset = kotlin_value(aligner_kt, "LANDMARKER_ASSET")
    assert asset.endswith(".task")
    assert asset in (APP / "README.md").read_text(encoding="utf-8")


def test_model_is_stored_uncompressed_for_memory_mapping():
    gradle = _strip_comments((APP / "app" / "build.gradle.kts").read_text(encoding="utf-8"))
    m = re.search(r"noCompress\s*\+=\s*(.+)", gradle)
    assert m and '"tflite"' in m.group(1), "MakeupModel memory-maps the asset: add noCompress += \"tflite\""


def test_model_files_are_ignored_not_committed(aligner_kt, model_kt):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True, text=True)
    if inside.returncode != 0:
        pytest.skip("not a git checkout")
    for asset in (kotlin_value(model_kt, "MODEL_ASSET"), kotlin_value(aligner_kt, "LANDMARKER_ASSET"),
                  kotlin_value(_kotlin("Alignment.kt"), "MODEL_CARD_ASSET")):
        path = (ASSETS / asset).relative_to(ROOT).as_posix()
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, f"{path} not ignored"
    tracked = subprocess.run(["git", "ls-files", "android_demo"], cwd=ROOT, capture_output=True, text=True).stdout
    assert not [f for f in tracked.split() if f.endswith((".tflite", ".task", "gradle-wrapper.jar", "model_card.json"))]


# ---- the I/O convention: export/tflite.py record -> export/report.py model card ----

def _tflite_exporter_record() -> dict:
    """The literal fields ``export.tflite.export_tflite`` returns (read from its source: importing the
    module needs torch), names resolved through the module's constants and imports."""
    path = ROOT / "export" / "tflite.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node.value.value
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            module = importlib.import_module(f"export.{node.module}")
            for alias in node.names:
                if hasattr(module, alias.name):
                    names[alias.asname or alias.name] = getattr(module, alias.name)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "export_tflite")
    ret = next(n for n in ast.walk(fn) if isinstance(n, ast.Return) and isinstance(n.value, ast.Dict))
    record = {}
    for key, value in zip(ret.value.keys, ret.value.values):
        if isinstance(value, ast.Constant):
            record[key.value] = value.value
        elif isinstance(value, ast.Name) and value.id in names:
            record[key.value] = names[value.id]
    return record


def _card(channels: int) -> dict:
    """``export.report.model_card`` for a shipped TFLite artifact of a student with ``channels`` input channels,
    without torch (params/MACs stubbed, student.model's constants from its source)."""
    from export.formats import FORMATS
    from export.pipeline import DEFAULTS
    from export.report import model_card as build_card

    stub = types.ModuleType("student.model")
    stub.__dict__.update(_student_model_constants())
    stub.count_params = lambda model: 0
    stub.count_macs = lambda model, size: 0
    saved = sys.modules.get("student.model")
    sys.modules["student.model"] = stub
    try:
        qs = types.SimpleNamespace(size=DEFAULTS["size"], channels=channels, meta={"style": "test"}, float_model=None)
        entry = {"path": FORMATS["tflite"].filename, "shipped": True, **_tflite_exporter_record()}
        report = {"formats": {"tflite": entry}, "quantization": "qat"}
        return build_card(qs, report, None)
    finally:
        if saved is None:
            sys.modules.pop("student.model", None)
        else:
            sys.modules["student.model"] = saved


@pytest.fixture(scope="module", params=[8, 7, 3], ids=["cheek_input", "region_input", "rgb_only"])
def model_card(request) -> dict:
    """The card of a region-input student with the cheeks (the default), of one with the four region masks
    and of an RGB-only one (older exports)."""
    return _card(request.param)


def test_io_dtype_range_and_colour_match_model_card(model_kt, model_card):
    io = model_card["io"]
    assert kotlin_value(model_kt, "IO_DTYPE") == io["dtype"]
    assert [kotlin_value(model_kt, "VALUE_MIN"), kotlin_value(model_kt, "VALUE_MAX")] == io["value_range"]
    colour = kotlin_value(model_kt, "COLOR_ORDER")
    assert colour == io["color"]
    # Channel c of the tensor is (argb shr CHANNEL_SHIFTS[c]) and 0xFF: the shifts must spell the card's order.
    argb_shift = {"R": 16, "G": 8, "B": 0}
    assert kotlin_value(model_kt, "CHANNEL_SHIFTS") == [argb_shift[c] for c in io["color"]]
    assert kotlin_value(model_kt, "CHANNELS") == len(io["color"])
    # [0, 1] = pixel / 255 in, multiply by 255 and round out
    assert "/ 255" in io["input"] and "255" in io["output"]
    assert re.search(r"PIXEL_TO_VALUE\s*=\s*\(VALUE_MAX\s*-\s*VALUE_MIN\)\s*/\s*255f", model_kt)


def test_layout_shape_and_names_match_tflite_artifact(model_kt, model_card):
    art = model_card["artifacts"]["tflite"]
    io = model_card["io"]
    layout = kotlin_value(model_kt, "LAYOUT")
    assert layout == art["layout"] == "NHWC"
    colour = kotlin_value(model_kt, "CHANNELS")
    regions = kotlin_value(model_kt, "REGION_CHANNELS")
    # MakeupModel accepts [1, H, H, C] with C = CHANNELS (RGB) or CHANNELS + REGION_CHANNELS (region input):
    # batch 1, square, channels last; the output is [1, H, H, CHANNELS].
    assert re.search(r"val INPUT_CHANNELS\s*=\s*intArrayOf\(\s*CHANNELS\s*,\s*CHANNELS\s*\+\s*REGION_CHANNELS\s*,"
                     r"\s*CHANNELS\s*\+\s*REGION_CHANNELS\s*\+\s*CHEEK_CHANNELS\s*\)", model_kt)
    cheeks = kotlin_value(model_kt, "CHEEK_CHANNELS")
    assert re.search(r"shape\[3\]\s+in\s+INPUT_CHANNELS", model_kt)
    assert re.search(r"intArrayOf\(\s*1\s*,\s*shape\[1\]\s*,\s*shape\[2\]\s*,\s*CHANNELS\s*\)", model_kt)
    assert io["channels"] in (colour, colour + regions, colour + regions + cheeks)
    assert art["shape"] == [1, io["height"], io["width"], io["channels"]]
    assert art["output_shape"] == [1, io["height"], io["width"], colour]
    assert io["height"] == io["width"]
    assert kotlin_value(model_kt, "INPUT_NAME") == art["input"]
    assert kotlin_value(model_kt, "OUTPUT_NAME") == art["output"]
    assert art["file"] == kotlin_value(model_kt, "MODEL_ASSET")


def test_crop_size_comes_from_the_interpreter(model_kt):
    """No hard-coded crop size: the model's input tensor decides, and the aligner follows the model."""
    assert ".shape()" in model_kt and "size = shape[1]" in model_kt
    assert not re.search(r"\b(224|256|320|512)\b", model_kt), "crop size hard-coded in MakeupModel.kt"
    activity = _kotlin("MainActivity.kt")
    assert re.search(r"FaceAligner\(\s*context\s*,\s*\w+\.size\s*\)", activity)


# ---- the look gate: makeup/gate.py through the model card ----

def test_look_gate_reads_the_cards_gate_and_regions(regions_kt):
    """LookGate.kt reads every key export/report.py writes for the gate (``look_gate`` from makeup.gate) and
    RegionMasks.kt every key of ``regions`` (makeup.parsing / makeup.metrics); the gate's regions are the masks'
    (makeup.metrics FIDELITY_REGIONS) and its default feather makeup.gate.LookGate's."""
    from export.report import regions_card
    from makeup.gate import LookGate
    from makeup.metrics import FIDELITY_REGIONS

    gate_kt = _kotlin("LookGate.kt")
    assert kotlin_value(regions_kt, "REGIONS") == list(FIDELITY_REGIONS)
    assert re.search(r"val REGIONS\s*=\s*RegionMasks\.REGIONS\b", gate_kt)
    regions = regions_card()
    stored = LookGate({"lips": ((-0.1, -0.1, -0.1), (0.1, 0.1, 0.1))}).to_dict()
    for key in ["look_gate", "bounds", "low", "high", "feather", "basis", "basis_inverse", "regions"]:
        assert f'"{key}"' in gate_kt, f"LookGate.kt does not read {key}"
    for key in ["regions", "labels", "fill", "label", "points", "eye_reach"]:
        assert f'"{key}"' in regions_kt, f"RegionMasks.kt does not read {key}"
    assert {"bounds", "feather", "basis", "basis_inverse"} <= set(stored) and {"low", "high"} == set(stored["bounds"]["lips"])
    assert {"labels", "fill", "eye_reach"} <= set(regions) and {"label", "points"} == set(regions["fill"][0])
    # Every region name the masks look up is a label the card defines.
    names = re.findall(r'getValue\("(\w+)"\)', regions_kt)
    assert names and all(name in regions["labels"] for name in names), names
    assert kotlin_value(gate_kt, "DEFAULT_FEATHER") == inspect.signature(LookGate).parameters["feather"].default
    assert re.search(r'optDouble\("feather",\s*DEFAULT_FEATHER\)', gate_kt)
    # The gate does not compute masks of its own: it takes RegionMasks (one piece of code for both users).
    for own in ("fun blur", "fun eyeZone", "fun rasterise", "drawPath", "GaussianBlur"):
        assert own not in gate_kt, f"LookGate.kt has {own}: the masks belong to RegionMasks.kt"
    assert re.search(r"fun apply\(crop: IntArray, processed: IntArray, regions: RegionMasks, out: IntArray\)", gate_kt)
    assert re.search(r"regions\.feather\s*==\s*feather", gate_kt)
    # makeup.gate.LookGate.limits: a region's weight is 1 on its own (unblurred) pixels, 0 on another bounded
    # region's, its soft mask elsewhere; RegionMasks keeps the masks from before the blur for it.
    assert re.search(r"limits\(regions\.masks,\s*regions\.hard\)", gate_kt)
    assert re.search(r"if \(own\[i\] > 0f\) 1f else if \(inside\[i\]\) 0f else region\[i\]", gate_kt)
    assert re.search(r"m\.copyInto\(hard\[r\]\)\s*if\s*\(feather\s*>\s*0\)\s*blur\(m\)", regions_kt)


def test_region_masks_follow_soft_region_masks(regions_kt):
    """RegionMasks.kt computes makeup.gate.soft_region_masks: the eye zone (eye opening grown by
    round(eye_reach * side), half to even), skin outside it, lips, brows; sigma = max(feather * side / 2, 1e-3),
    cv2's float kernel size round(sigma * 8 + 1) | 1, a zero border (taps outside the crop skipped); feather 0
    leaves the hard masks. The feather is the caller's (the card's), never a constant here."""
    import inspect as _inspect

    from makeup import gate, metrics

    src = _inspect.getsource(gate.soft_region_masks)
    assert "feather * lab.shape[0] / 2.0" in src and "1e-3" in src and "BORDER_CONSTANT" in src
    assert re.search(r"round\(eye_reach \* \w+\)|round\(\w+ \* eye_reach\)", _inspect.getsource(metrics)) or \
        "EYE_REACH" in _inspect.getsource(metrics)
    assert re.search(r"val sigma\s*=\s*max\(feather\s*\*\s*n\s*/\s*2\.0,\s*1e-3\)", regions_kt)
    assert re.search(r"sigma\s*\*\s*8\.0\s*\+\s*1\.0\)\.toInt\(\)\)\s*or\s*1", regions_kt)
    assert re.search(r"Math\.rint\(eyeReach\s*\*\s*n\)", regions_kt)
    assert "max(-r, -x)..min(r, n - 1 - x)" in regions_kt and "max(-r, -y)..min(r, n - 1 - y)" in regions_kt
    assert re.search(r"if\s*\(feather\s*>\s*0\)\s*blur\(m\)", regions_kt)
    compute = _function(regions_kt, "compute")
    assert re.search(r'"skin"\s*->.*labels\[i\]\s*==\s*skin\s*&&\s*zone\[i\]\s*==\s*0f', compute)
    assert re.search(r'"eyes"\s*->\s*zone\.copyInto\(m\)', compute)
    assert not re.search(r"(?<![\w.])0\.02(?![\w.])", regions_kt), "RegionMasks.kt hard-codes a feather"


def test_region_input_is_read_from_the_card(model_kt, regions_kt):
    """A region-input model's channels from 3 on: the card's io.region_input (export/report.py io_card) gives
    the order and feather, RegionInput reads both and checks the rest against MakeupModel's constants, which
    match student/model.py (REGION_CHANNELS, the masks after the RGB channels), makeup.metrics
    FIDELITY_REGIONS and makeup.gate INPUT_MASKS (the four, then the cheeks)."""
    from makeup.gate import INPUT_MASKS
    from makeup.metrics import FIDELITY_REGIONS

    constants = _student_model_constants()
    card = _card(3 + constants["REGION_CHANNELS"])
    ri = card["io"]["region_input"]
    assert kotlin_value(model_kt, "REGION_CHANNELS") == constants["REGION_CHANNELS"] == len(ri["channels"])
    assert ri["first_channel"] == kotlin_value(model_kt, "CHANNELS") == 3
    assert ri["channels"] == list(FIDELITY_REGIONS) == kotlin_value(regions_kt, "REGIONS")
    assert ri["feather"] == constants["REGION_FEATHER"]
    assert card["io"]["channels"] == 3 + constants["REGION_CHANNELS"] and "cheeks" not in ri
    five = _card(3 + constants["REGION_CHANNELS"] + kotlin_value(model_kt, "CHEEK_CHANNELS"))["io"]["region_input"]
    assert five["channels"] == list(INPUT_MASKS) and INPUT_MASKS[-1] == "cheeks"
    assert re.search(r'val INPUT_MASKS\s*=\s*REGIONS\s*\+\s*"cheeks"', regions_kt)
    assert "region_input" not in _card(3)["io"]
    reader = regions_kt[regions_kt.index("class RegionInput"):]
    for key in ("io", "region_input", "channels", "first_channel", "feather"):
        assert f'"{key}"' in reader, f"RegionInput does not read io.region_input's {key}"
    assert re.search(r'RegionInput\(channels,\s*ri\.getDouble\("feather"\)\)', reader)
    assert re.search(r"first\s*==\s*MakeupModel\.CHANNELS", reader)
    assert re.search(r"channels\.size\s+in\s+MakeupModel\.REGION_CHANNELS\.\.MakeupModel\.REGION_CHANNELS\s*\+\s*"
                     r"MakeupModel\.CHEEK_CHANNELS", reader)
    # the cheek shape: every number the card gives, read by CheekShape, and RegionMasks reads it from the card
    shape = regions_kt[regions_kt.index("class CheekShape"):regions_kt.index("class RegionInput")]
    for key in five["cheeks"]:
        if key != "how":
            assert f'"{key}"' in shape, f"CheekShape does not read io.region_input.cheeks' {key}"
    assert re.search(r'optJSONObject\("io"\)\?\.optJSONObject\("region_input"\)', regions_kt)
    assert re.search(r'ri\?\.optJSONObject\("cheeks"\)\?\.let\s*\{\s*CheekShape\.fromJson\(it\)\s*\}', regions_kt)


def test_cheek_mask_follows_cheek_map(regions_kt):
    """RegionMasks.kt's cheeks are makeup.metrics.cheek_map times the soft skin mask, in the same steps: eyes split
    at the lips' mean column (left: < mid, right: >= mid), the count threshold on the lips and on each eye, the
    eye's width from its column span + 1, the centre, a separable exp(-falloff * d^2), the max of the eyes."""
    import inspect as _inspect

    from makeup import metrics

    src = _inspect.getsource(metrics.cheek_centres) + _inspect.getsource(metrics.cheek_map)
    for step in ("ex < mid", "ex >= mid", "xs.max() - xs.min() + 1", "outward * CHEEK_OUT * width",
                 "CHEEK_DROP * (lips_y - eye_y)", "np.maximum(out"):
        assert step in src, step
    body = _function(regions_kt, "cheeks")
    for step in (r"lipCount\s*<\s*shape\.minPixels", r"count\s*<\s*shape\.minPixels", r"\(x\s*<\s*mid\)\s*!=\s*\(outward\s*<\s*0\)",
                 r"width\s*=\s*\(x1\s*-\s*x0\s*\+\s*1\)", r"cx\s*=\s*eyeX\s*\+\s*outward\s*\*\s*shape\.outward\s*\*\s*width",
                 r"cy\s*=\s*eyeY\s*\+\s*shape\.drop\s*\*\s*\(lipsY\s*-\s*eyeY\)", r"exp\(-shape\.falloff\s*\*\s*d\s*\*\s*d\)",
                 r"shape\.spreadX\s*\*\s*width", r"shape\.spreadY\s*\*\s*width", r"out\[i\]\s*\*=\s*skinSoft\[i\]"):
        assert re.search(step, body), step
    assert re.search(r'cheeks\(shape,\s*masks\[REGIONS\.indexOf\("skin"\)\]', _function(regions_kt, "compute"))


def test_model_input_packs_rgb_then_the_masks(model_kt):
    """MakeupModel.kt: 7 or 8 input channels = RGB / 255 then the 4 (or 5) masks per pixel (student/model.py
    model_input, channels last), in the order the caller hands them (RegionMasks.inOrder of the card's
    channels); the model takes masks exactly when it has region input, as many as its input has after RGB;
    the output stays RGB."""
    assert re.search(r"maskChannels\s*=\s*channels\s*-\s*CHANNELS", model_kt)
    assert re.search(r"regionInput\s*=\s*maskChannels\s*>\s*0", model_kt)
    assert re.search(r"channels\s*=\s*shape\[3\]", model_kt)
    run = _function(model_kt, "run")
    assert re.search(r"masks\.size\s*==\s*maskChannels", run) and "fillInput(crop, masks" in run
    fill = _function(model_kt, "fillInput")
    # Per pixel: the colour channels, then one value of each mask, for float and for quantised input.
    rgb_then_masks = r"for \(c in 0 until CHANNELS\)[\s\S]*?for \(k in masks\.indices\)[\s{]*[^\n]*masks\[k\]\[i\]"
    assert len(re.findall(rgb_then_masks, fill)) == 2, fill
    assert fill.index("for (i in crop.indices)") < fill.index("for (c in 0 until CHANNELS)")
    read = _function(model_kt, "readOutput")
    assert "for (c in 0 until CHANNELS)" in read and "REGION_CHANNELS" not in read


def test_regions_once_per_frame_for_the_model_and_the_gate(activity_kt):
    """MainActivity: the crop's RegionMasks computed once per frame from the crop landmarks, before the model;
    a region-input model gets them in the card's channel order (with or without a look gate), the gate the same
    object when the feathers agree; without a face a region-input model does not run."""
    process = _function(activity_kt, "process")
    assert len(re.findall(r"\bmasks\.compute\(cropLandmarks\)", process)) == 1
    compute_at = process.index("masks.compute(cropLandmarks)")
    run_at = process.index("model.run(aligner.crop, if (model.regionInput) modelMasks else null, processed)")
    apply_at = process.index("lookGate.apply(aligner.crop, processed, forGate, gated)")
    assert process.index("aligner.cropLandmarks(cropLandmarks)") < compute_at < run_at < apply_at
    assert apply_at < process.index("aligner.pasteBack(outPixels, change)")
    assert re.search(r"modelSkipped\s*=\s*model\.regionInput\s*&&\s*!face", process)
    setup = _function(activity_kt, "setupRegions")
    assert "RegionInput.load(context)" in setup and "shared.inOrder(input.channels)" in setup
    # The masks exist for a region-input model even without a look gate: the model's feather comes first.
    assert re.search(r"val feather\s*=\s*input\?\.feather\s*\?:\s*lookGate\?\.feather\s*\?:\s*return", setup)
    assert re.search(r"if \(lookGate\.feather == feather\) shared else RegionMasks\.load", setup)
    assert "setupRegions(fresh)" in _function(activity_kt, "ensureModel")
    assert re.search(r"\[1,%d,%d,%d\]", activity_kt) and "model.channels" in activity_kt


def test_look_gate_runs_before_paste_back_with_a_switch(activity_kt):
    """MainActivity clips the model's change with the card's gate on the crop (gated_crop) before paste-back,
    only with crop landmarks; a switch, on by default, turns it off; the note says when the app is ungated."""
    activity = activity_kt
    assert "LookGate.load(context, fresh.size)" in activity
    assert "aligner.cropLandmarks(cropLandmarks)" in activity
    assert re.search(r"if \(face && lookGate != null && forGate != null\)", activity)
    assert re.search(r"R\.id\.gate_switch\)\.setOnCheckedChangeListener\s*\{\s*_,\s*on\s*->\s*pipeline\.gateOn\s*=\s*on",
                     activity)
    assert re.search(r"var gateOn\s*=\s*true", activity)
    layout = (APP / "app" / "src" / "main" / "res" / "layout" / "activity_main.xml").read_text(encoding="utf-8")
    switch = re.search(r'android:id="@\+id/gate_switch"(.*?)/>', layout, re.S)
    assert switch and 'android:checked="true"' in switch.group(1)
    assert "gate.note" in activity
    readme = (APP / "README.md").read_text(encoding="utf-8")
    assert "LookGate.kt" in readme and "look gate" in readme.lower()
    assert "RegionMasks.kt" in readme and "region_input" in readme
