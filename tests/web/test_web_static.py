"""Checks of web_demo/ that need no browser: the server's headers, the page's CSP and import map, pinned
packages, the model card's alignment entry, and the face-landmarker bundle built from the mediapipe wheel
(run in mediapipe's Python FaceLandmarker against makeup.align's FaceMesh)."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

from webtools import WEB


def _csp() -> str:
    sys.path.insert(0, str(WEB))
    from serve import page_csp

    return page_csp()


def test_csp_allows_only_this_server():
    csp = dict(part.strip().split(" ", 1) for part in _csp().split(";") if part.strip())
    assert csp["default-src"] == "'self'" and csp["connect-src"] == "'self'"
    for directive, sources in csp.items():
        assert "http" not in sources and "*" not in sources, (directive, sources)
    # The one inline script is the import map, allowed by its hash.
    html = (WEB / "index.html").read_text(encoding="utf-8")
    importmap = re.search(r'<script type="importmap">(.*?)</script>', html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(importmap.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp["script-src"], "index.html's import map changed: update its hash in the CSP"
    for target in json.loads(importmap)["imports"].values():
        assert (WEB / target).is_file() or not (WEB / "node_modules").is_dir(), target


def test_server_sends_isolation_and_csp_headers(tmp_path):
    proc = subprocess.Popen([sys.executable, str(WEB / "serve.py"), "--port", "0", "--assets", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line
        url = line.split()[1]
        with urllib.request.urlopen(url) as res:
            headers = res.headers
            assert "window.tinybeauty" not in res.read().decode()  # the page, not a listing
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert headers["Content-Security-Policy"] == _csp()
        (tmp_path / "x.tflite").write_bytes(b"TFL3")
        with urllib.request.urlopen(url + "assets/x.tflite") as res:
            assert res.read() == b"TFL3"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "assets/../serve.py")
    finally:
        proc.terminate()
        proc.wait(10)
    assert "make web-assets" in proc.stderr.read()  # no model in the assets folder: says what to run


def test_packages_are_pinned():
    pkg = json.loads((WEB / "package.json").read_text())
    deps = {**pkg["dependencies"], **pkg["devDependencies"]}
    assert deps["@litertjs/core"] == "2.5.3" and deps["@mediapipe/tasks-vision"] == "1.1.0"
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in deps.values()), deps
    lock = json.loads((WEB / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@litertjs/core"]["version"] == "2.5.3"
    assert lock["packages"]["node_modules/@mediapipe/tasks-vision"]["version"] == "1.1.0"


def test_model_card_alignment_is_makeup_align():
    import inspect

    from export.report import alignment_card
    from makeup import align

    card = alignment_card(256)
    np.testing.assert_array_equal(card["template"], align.TEMPLATE)
    assert card["crop_size"] == 256
    for key, name in (("right_eye_corners", "RIGHT_EYE_CORNERS"), ("left_eye_corners", "LEFT_EYE_CORNERS"),
                      ("mouth_corners", "MOUTH_CORNERS")):
        assert tuple(card["landmarks"][key]) == getattr(align, name)
    assert card["feather"] == inspect.signature(align.paste_back).parameters["feather"].default
    np.testing.assert_allclose(align.template_points(256), np.array(card["template"]) * 256 - card["pixel_centre"])
    json.dumps(card)  # plain JSON types


def test_page_reads_alignment_from_the_card_not_from_constants():
    src = "".join((WEB / "src" / f).read_text(encoding="utf-8") for f in ("align.js", "app.js", "gate.js"))
    for literal in ("0.375", "0.625", "0.745", "0.47", "0.04", "133", "362", "291"):
        assert not re.search(rf"(?<![\w.]){re.escape(literal)}(?![\w.])", src), f"{literal} hard-coded in the page"
    assert "alignment.template" in src and "alignment.feather" in src and "right_eye_corners" in src


def test_model_card_regions_are_makeup_parsing():
    """The "regions" entry the page's look gate rasterises: makeup.parsing's polygons in landmarks_to_labels's
    fill order (filling them as listed with cv2 gives landmarks_to_labels's map), its labels, EYE_REACH."""
    import cv2

    from export.report import regions_card
    from makeup import metrics, parsing, regions
    from makeup.parsing import landmarks_to_labels

    card = regions_card()
    json.dumps(card)
    assert card["labels"] == regions.REGION_NAMES and card["eye_reach"] == metrics.EYE_REACH
    assert set(metrics.FIDELITY_REGIONS) <= set(card["labels"])  # the gate's regions (gate.js GATE_REGIONS)
    rng = np.random.default_rng(0)
    for _ in range(5):
        lm = rng.uniform(-20, 276, (478, 2))
        lm[:] = 128 + (lm - 128) * rng.uniform(0.3, 1.0)
        labels = np.zeros((256, 256), np.uint8)
        for part in card["fill"]:
            poly = np.round(lm[part["points"]] * 2 ** card["subpixel_bits"]).astype(np.int32)
            cv2.fillPoly(labels, [poly], card["labels"][part["label"]], lineType=cv2.LINE_8, shift=card["subpixel_bits"])
        np.testing.assert_array_equal(labels, landmarks_to_labels(lm, (256, 256)))
    for name in ("RIGHT_EYE", "LEFT_EYE", "RIGHT_BROW", "LEFT_BROW", "LIPS_OUTER", "LIPS_INNER"):
        assert list(getattr(parsing, name)) in [p["points"] for p in card["fill"]], name


def test_landmarker_bundle_matches_face_mesh(tmp_path, astronaut):
    """The bundle the page loads, run by mediapipe's own Tasks FaceLandmarker: the FaceMesh points."""
    sys.path.insert(0, str(WEB / "tools"))
    from build_face_landmarker import build_bundle, python_landmarks

    from makeup.align import detect_landmarks

    task = build_bundle(tmp_path / "face_landmarker.task")
    import zipfile

    with zipfile.ZipFile(task) as z:
        assert sorted(z.namelist()) == ["face_detector.tflite", "face_landmarks_detector.tflite"]
    got = python_landmarks(task, astronaut)
    assert got.shape == (478, 2)
    assert np.abs(got - detect_landmarks(astronaut)).max() < 0.05
