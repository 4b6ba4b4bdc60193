"""The Android demo and the Python side must agree; these checks fail when they drift apart.

No Android tools needed: the Kotlin sources are parsed as text and compared with ``makeup.align`` (template,
landmark indices, feather, pixel-centre convention, face-mesh settings), the Makefile's ``android-assets``
target and the export format table (asset name), and the model card that ``export/report.py`` builds from
``export/tflite.py``'s record (NHWC float32 RGB in [0, 1], signature names).
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


def _balanced(code: str, start: int) -> str:
    """The text inside the parentheses opening at ``code[start] == '('``."""
    depth = 0
    for i in range(start, len(code)):
        depth += {"(": 1, ")": -1}.get(code[i], 0)
        if depth == 0:
            return code[start + 1:i]
    raise AssertionError("unbalanced parentheses")


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


@pytest.fixture(scope="module")
def aligner_kt() -> str:
    return _kotlin("FaceAligner.kt")


@pytest.fixture(scope="module")
def model_kt() -> str:
    return _kotlin("MakeupModel.kt")


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


@pytest.fixture(scope="module")
def model_card() -> dict:
    """``export.report.model_card`` for a shipped TFLite artifact, without torch (params/MACs stubbed)."""
    from export.formats import FORMATS
    from export.pipeline import DEFAULTS
    from export.report import model_card as build_card

    stub = types.ModuleType("student.model")
    stub.count_params = lambda model: 0
    stub.count_macs = lambda model, size: 0
    saved = sys.modules.get("student.model")
    sys.modules["student.model"] = stub
    try:
        qs = types.SimpleNamespace(size=DEFAULTS["size"], meta={"style": "test"}, float_model=None)
        entry = {"path": FORMATS["tflite"].filename, "shipped": True, **_tflite_exporter_record()}
        report = {"formats": {"tflite": entry}, "quantization": "qat"}
        return build_card(qs, report, None)
    finally:
        if saved is None:
            sys.modules.pop("student.model", None)
        else:
            sys.modules["student.model"] = saved


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
    channels = kotlin_value(model_kt, "CHANNELS")
    # MakeupModel accepts [1, H, H, CHANNELS]: batch 1, square, channels last
    assert art["shape"] == [1, io["height"], io["width"], channels]
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

def test_look_gate_reads_the_cards_gate_and_regions():
    """LookGate.kt reads every key export/report.py writes for the gate (``look_gate`` from makeup.gate,
    ``regions`` from makeup.parsing / makeup.metrics) and gates the regions makeup.metrics reports on."""
    from export.report import regions_card
    from makeup.gate import LookGate
    from makeup.metrics import FIDELITY_REGIONS

    gate_kt = _kotlin("LookGate.kt")
    assert kotlin_value(gate_kt, "REGIONS") == list(FIDELITY_REGIONS)
    regions = regions_card()
    stored = LookGate({"lips": ((-0.1, -0.1, -0.1), (0.1, 0.1, 0.1))}).to_dict()
    keys = ["look_gate", "regions", "bounds", "low", "high", "feather", "basis", "basis_inverse", "labels", "fill",
            "label", "points", "eye_reach"]
    for key in keys:
        assert f'"{key}"' in gate_kt, f"LookGate.kt does not read {key}"
    assert {"bounds", "feather", "basis", "basis_inverse"} <= set(stored) and {"low", "high"} == set(stored["bounds"]["lips"])
    assert {"labels", "fill", "eye_reach"} <= set(regions) and {"label", "points"} == set(regions["fill"][0])
    # Every region name the gate looks up is a label the card defines.
    for name in re.findall(r'getValue\("(\w+)"\)', gate_kt):
        assert name in regions["labels"], name
    # Feather as LookGate.limits: sigma = feather * size / 2, cv2's float kernel size round(sigma * 8 + 1) | 1.
    assert re.search(r"feather\s*\*\s*n\s*/\s*2\.0", gate_kt) and re.search(r"sigma\s*\*\s*8\.0\s*\+\s*1\.0", gate_kt)


def test_look_gate_runs_before_paste_back_with_a_switch():
    """MainActivity clips the model's change with the card's gate on the crop (gated_crop) before paste-back,
    only with crop landmarks; a switch, on by default, turns it off; the note says when the app is ungated."""
    activity = _kotlin("MainActivity.kt")
    assert "LookGate.load(context, fresh.size)" in activity
    apply_at = activity.index("lookGate.apply(aligner.crop, processed, cropLandmarks, gated)")
    assert "aligner.cropLandmarks(cropLandmarks)" in activity
    assert apply_at < activity.index("aligner.pasteBack(outPixels, change)")
    assert re.search(r"R\.id\.gate_switch\)\.setOnCheckedChangeListener\s*\{\s*_,\s*on\s*->\s*pipeline\.gateOn\s*=\s*on",
                     activity)
    assert re.search(r"var gateOn\s*=\s*true", activity)
    layout = (APP / "app" / "src" / "main" / "res" / "layout" / "activity_main.xml").read_text(encoding="utf-8")
    switch = re.search(r'android:id="@\+id/gate_switch"(.*?)/>', layout, re.S)
    assert switch and 'android:checked="true"' in switch.group(1)
    assert "gate.note" in activity
    readme = (APP / "README.md").read_text(encoding="utf-8")
    assert "LookGate.kt" in readme and "look gate" in readme.lower()
