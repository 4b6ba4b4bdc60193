"""The web demo in a real headless Chromium: LiteRT.js parity with ai_edge_litert, the page's face alignment
against makeup.align, the crop's soft region masks (a region-input model's channels 3..7) against
makeup.gate.input_masks and the page's model output against student.runtime on the same 8-channel input,
the look gate against makeup.gate (on by default, the toggle, a card without one), paste-back, a photo without
a face, an RGB-only (3-channel) export, the dropped-file message, the benchmark JSON, screenshots, and no
request leaving 127.0.0.1. One browser and one page load for the module (see conftest.py).

Figures (parity, latency beside Python LiteRT in the same run, frame time, gate parity) go to
``work/web_test/figures.json`` and the screenshots to ``work/web_test/`` (``screenshot.png``,
``screenshot_gate_on.png``, ``screenshot_gate_off.png``).
"""
from __future__ import annotations

import base64
import json
import statistics
import time

import numpy as np
import pytest

from webtools import (PRIOR_MAX_ABS, PRIOR_SHARE_ABOVE_HALF_LEVEL, ROOT, b64_array, check_prior_frame, prior_diff, psnr,
                      skip_without_browser)

skip_without_browser()

OUT = ROOT / "work" / "web_test"
# What a user's benchmark JSON must say: the figures, how they were made, and on what.
BENCHMARK_FIELDS = {"median_ms", "p90_ms", "mean_ms", "times_ms", "warmup", "runs", "threads", "backend",
                    "user_agent", "model", "crop_size", "cross_origin_isolated", "hardware_concurrency", "date"}
FIGURES: dict = {}


def _record(key: str, value) -> None:
    FIGURES[key] = value
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "figures.json").write_text(json.dumps(FIGURES, indent=2), encoding="utf-8")


@pytest.fixture(scope="module")
def astronaut_aligned(astronaut):
    from makeup.align import align_face

    return align_face(astronaut, 256)


@pytest.fixture(scope="module")
def litert(page):
    from ai_edge_litert.interpreter import Interpreter

    def make(threads: int):
        it = Interpreter(model_path=str(page["assets"] / "tinybeauty.tflite"), num_threads=threads)
        it.allocate_tensors()
        return it

    return make


@pytest.fixture(scope="module")
def card(page) -> dict:
    return json.loads((page["assets"] / "model_card.json").read_text())


def _region_masks(labels: np.ndarray, card: dict) -> np.ndarray:
    """float32 (C, H, W): makeup.gate.input_masks at the card's feather (the four soft region masks, then the
    cheeks), planes in the card's order."""
    from makeup.gate import INPUT_MASKS, input_masks

    ri = card["io"]["region_input"]
    masks = input_masks(labels, len(ri["channels"]), ri["feather"])
    return masks[[list(INPUT_MASKS).index(r) for r in ri["channels"]]]


def _model_input(crop: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """NHWC float32 [1, H, W, 3 or 8]: RGB / 255, then the mask planes (student.model.model_input, channels last)."""
    x = crop.astype(np.float32) / 255.0
    if masks is not None:
        x = np.concatenate([x, masks.transpose(1, 2, 0)], axis=2)
    return np.ascontiguousarray(x[None])


def _run_python(interp, x: np.ndarray) -> np.ndarray:
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    return interp.get_tensor(out["index"])[0]


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def test_page_starts_cross_origin_isolated_with_bundled_model(page, card):
    info = page["browser"].eval("() => window.tinybeauty.info()")
    assert info["message"] == "", info["message"]
    assert info["crossOriginIsolated"] is True  # COOP/COEP from serve.py: wasm threads available
    assert info["model"] == "tinybeauty.tflite" and info["size"] == 256 and info["landmarker"] is True
    assert info["alignment"] == card["alignment"]
    # The test model reads the region masks and the cheeks: 8 input channels, the card's channel order and feather.
    assert card["io"]["channels"] == 8 and card["artifacts"]["tflite"]["shape"] == [1, 256, 256, 8]
    assert card["artifacts"]["tflite"]["output_shape"] == [1, 256, 256, 3]
    assert info["channels"] == 8
    assert info["regionInput"] == {k: card["io"]["region_input"][k] for k in ("channels", "feather")}
    # Headless Chromium without a GPU has no WebGPU adapter: the panel offers only what can run.
    backends = page["browser"].eval("() => Array.from(document.querySelectorAll('#bench-backend option'), (o) => o.value)")
    assert backends == ["wasm"]
    _record("page_load_s", round(page["load_s"], 2))


def test_litert_js_output_equals_ai_edge_litert(page, litert, card, astronaut_aligned):
    """The same 8-channel input (Python's aligned crop, then input_masks of its labels) through LiteRT.js
    (MakeupModel.pack, wasm, 1 and 2 threads) and ai_edge_litert: bit-exact; and student.runtime's runner (which
    builds the masks from the labels itself) gives ai_edge_litert's output on it."""
    from makeup.parsing import landmarks_to_labels
    from student.runtime import load_runner

    crop = astronaut_aligned.crop
    labels = landmarks_to_labels(astronaut_aligned.landmarks, crop.shape[:2])
    masks = _region_masks(labels, card)
    expected = _run_python(litert(1), _model_input(crop, masks))
    assert expected.shape == (256, 256, 3)
    runner = load_runner(page["assets"] / "tinybeauty.tflite")
    assert runner.channels == 8
    via_runtime = runner((crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None], labels[None])[0]
    np.testing.assert_array_equal(via_runtime.transpose(1, 2, 0), expected)
    figures = {}
    for threads in (1, 2):
        got = b64_array(page["browser"].eval(
            "async ([crop, masks, threads]) => window.tinybeauty.runCrop(crop, {masks, threads})",
            [_b64(crop), _b64(masks.astype(np.float32)), threads]), np.float32, expected.shape)
        diff = float(np.abs(got - expected).max())
        figures[f"threads_{threads}"] = {"max_abs_diff": diff, "bit_exact": bool(np.array_equal(got, expected)),
                                         "psnr_db": psnr(got, expected, 1.0)}
        assert np.isfinite(got).all()
        assert figures[f"threads_{threads}"]["psnr_db"] >= 60.0, figures
    # The masks matter: the same crop with the lips and skin planes swapped gives another output.
    swapped = masks[[0, 2, 1, 3, 4]]
    other = _run_python(litert(1), _model_input(crop, swapped))
    figures["masks_swapped_max_abs_diff"] = float(np.abs(other - expected).max())
    _record("parity_litertjs_vs_ai_edge_litert", figures)
    # Measured: bit-exact on Chromium 156 / @litertjs/core 2.5.3 (same XNNPACK kernels).
    assert figures["threads_1"]["bit_exact"], figures
    assert figures["masks_swapped_max_abs_diff"] > 1e-3, figures


def test_region_masks_equal_makeup_gate(page, card, astronaut_aligned):
    """gate.js softRegionMasks (what the page feeds the model and fades the gate with) against
    makeup.gate.input_masks (the four soft region masks, then the cheeks): on Python's label map of the
    astronaut crop, and on the page's own frame (its label map, its masks in the card's channel order)."""
    from makeup.parsing import landmarks_to_labels

    browser = page["browser"]
    n = 256
    labels = landmarks_to_labels(astronaut_aligned.landmarks, (n, n)).astype(np.uint8)
    expected = _region_masks(labels, card)
    names = card["io"]["region_input"]["channels"]
    k = len(names)
    js = b64_array(browser.eval("(labels) => window.tinybeauty.regionMasks(labels)", _b64(labels)), np.float32, (k, n, n))
    # regionMasks answers in eyes, lips, skin, brows, cheeks order; the card's order is that one.
    assert names == ["eyes", "lips", "skin", "brows", "cheeks"]
    diff = np.abs(js - expected)
    frame = browser.eval("() => window.tinybeauty.lastFrame()")
    assert frame["face"] is True and frame["masks"] is not None
    page_labels = b64_array(frame["labels"], np.uint8, (n, n))
    page_masks = b64_array(frame["masks"], np.float32, (k, n, n))
    page_diff = np.abs(page_masks - _region_masks(page_labels, card))
    figures = {"max_abs_diff": float(diff.max()), "share_bit_exact": float((diff == 0).mean()),
               "frame_max_abs_diff": float(page_diff.max()),
               "per_channel_max": {r: float(diff[i].max()) for i, r in enumerate(names)},
               "mask_sums": {r: float(expected[i].sum()) for i, r in enumerate(names)}}
    _record("region_masks_js_vs_makeup_gate", figures)
    assert all(expected[i].sum() > 50 for i in range(k)), figures  # every region is on the astronaut's crop
    # cv2 sums the float taps in another order: a few float32 ulps apart at most.
    assert diff.max() <= 1e-6 and page_diff.max() <= 1e-6, figures


def test_page_model_output_equals_runtime_on_its_crop(page, card):
    """The page's own frame: its crop and crop landmarks through student.runtime (labels by
    makeup.parsing.landmarks_to_labels, masks by the runner) give the page's model output."""
    from makeup.parsing import landmarks_to_labels
    from student.runtime import load_runner

    frame = page["browser"].eval("() => window.tinybeauty.lastFrame()")
    n = frame["size"]
    crop = b64_array(frame["crop"], np.uint8, (n, n, 4))[..., :3]
    processed = b64_array(frame["processed"], np.uint8, (n, n, 4))[..., :3]
    labels = landmarks_to_labels(np.array(frame["cropLandmarks"]), (n, n))
    np.testing.assert_array_equal(b64_array(frame["labels"], np.uint8, (n, n)), labels)
    runner = load_runner(page["assets"] / "tinybeauty.tflite")
    y = runner((crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None], labels[None])[0].transpose(1, 2, 0)
    expected = np.round(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)
    diff = np.abs(processed.astype(int) - expected.astype(int))
    figures = {"max_abs_diff": int(diff.max()), "share_differing": float(np.any(diff > 0, axis=2).mean()),
               "px_changed_by_model": int(np.any(expected != crop, axis=2).sum())}
    _record("page_model_output_vs_student_runtime", figures)
    assert figures["px_changed_by_model"] > 1000, figures
    # The masks agree to a few ulps, so an int8 input rounding may rarely flip: a level at the odd pixel.
    assert diff.max() <= 1 and figures["share_differing"] < 0.001, figures


def test_page_finds_the_face_and_aligns_like_makeup_align(page, astronaut, astronaut_aligned):
    from makeup.align import detect_landmarks

    frame = page["browser"].eval("() => window.tinybeauty.lastFrame()")
    assert frame["face"] is True and (frame["width"], frame["height"]) == (512, 512)
    landmarks = np.array(frame["landmarks"])
    assert landmarks.shape == (478, 2)
    ref = detect_landmarks(astronaut)
    lm_err = np.linalg.norm(landmarks - ref, axis=1)
    crop = b64_array(frame["crop"], np.uint8, (256, 256, 4))[..., :3]
    crop_psnr = psnr(crop, astronaut_aligned.crop)
    _record("alignment_vs_makeup_align", {
        "landmarks_max_px": float(lm_err.max()), "landmarks_mean_px": float(lm_err.mean()),
        "matrix_max_abs_diff": float(np.abs(np.array(frame["matrix"]).reshape(2, 3) - astronaut_aligned.matrix).max()),
        "crop_psnr_db": crop_psnr, "crop_max_abs_diff": int(np.abs(crop.astype(int) - astronaut_aligned.crop).max())})
    assert lm_err.max() < 1.0, lm_err.max()   # the same models as FaceMesh (wasm vs native float)
    assert crop_psnr >= 35.0, crop_psnr


def _wait_frame(browser, pred: str, tries: int = 400):
    """Poll until ``pred`` (a JS expression over the last frame ``f``) holds; the frame's summary."""
    for _ in range(tries):
        if browser.eval(f"() => {{ const f = window.tinybeauty.lastFrame(); return Boolean(f && ({pred})); }}"):
            return browser.eval("() => window.tinybeauty.lastFrame()")
        time.sleep(0.05)
    raise AssertionError(f"no frame with {pred}")


def _python_gated(frame, card):
    """makeup.gate on the page's own crop, model output and crop landmarks (student/apply.py gated_crop)."""
    from makeup.gate import LookGate
    from makeup.parsing import landmarks_to_labels

    n = frame["size"]
    crop = b64_array(frame["crop"], np.uint8, (n, n, 4))[..., :3]
    processed = b64_array(frame["processed"], np.uint8, (n, n, 4))[..., :3]
    labels = landmarks_to_labels(np.array(frame["cropLandmarks"]), (n, n))
    gate = LookGate.from_dict(card["look_gate"])
    return crop, processed, labels, gate, gate.apply(crop, processed, labels)


def test_whole_photo_comes_back_made_up_only_around_the_face(page, astronaut, astronaut_aligned, card):
    import cv2

    from makeup.align import face_mask, paste_back
    from makeup.gate import LookGate
    from student.apply import gated_crop
    from student.runtime import load_runner

    frame = page["browser"].eval("() => window.tinybeauty.lastFrame()")
    result = b64_array(frame["result"], np.uint8, (512, 512, 4))[..., :3]
    assert result.shape == astronaut.shape
    changed = np.any(result != astronaut, axis=2)
    assert changed.sum() > 1000, "the look left no trace on the photo"
    # Where Python's feathered face mask reaches in the photo (grown by 2 px of bilinear reach).
    mask = face_mask(astronaut_aligned)
    reach = cv2.warpAffine(mask, astronaut_aligned.matrix, (512, 512), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    footprint = cv2.dilate((reach > 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    outside = changed & ~footprint
    assert not outside.any(), f"{outside.sum()} pixels changed outside the face"
    # The page's whole pipeline against Python's (the same .tflite through student.runtime, makeup.align, the
    # crop's face-mesh regions fed to the model and the card's look gate over them: student/apply.py gated_crop).
    runner = load_runner(page["assets"] / "tinybeauty.tflite")
    processed = gated_crop(runner, astronaut_aligned, LookGate.from_dict(card["look_gate"]))
    python_result = paste_back(astronaut, processed, astronaut_aligned)
    face = footprint
    _record("made_up_photo_vs_python_pipeline", {
        "psnr_db_whole_photo": psnr(result, python_result), "psnr_db_face_region": psnr(result[face], python_result[face]),
        "pixels_changed": int(changed.sum())})
    assert psnr(result[face], python_result[face]) >= 35.0


def test_look_gate_is_on_by_default_and_matches_makeup_gate(page, astronaut, card):
    """The page's gated crop vs makeup.gate.LookGate.apply on the same crop, model output and landmarks; the
    label maps (JS rasteriser vs cv2.fillPoly); pixels the gate closes keep the photo exactly."""
    import cv2

    browser = page["browser"]
    info = browser.eval("() => window.tinybeauty.info()")
    assert info["gate"] is True and info["gateOn"] is True and info["gateRegions"] == ["lips", "skin"], info
    assert info["gateNote"].startswith("look gate: lips, skin") and "\n" not in info["gateNote"]
    assert browser.eval("() => document.getElementById('gate-toggle').checked") is True
    frame = browser.eval("() => window.tinybeauty.lastFrame()")
    assert frame["gated"] is not None and frame["timings"]["gate_ms"] > 0
    n = frame["size"]
    crop, processed, labels, gate, expected = _python_gated(frame, card)
    js_labels = b64_array(frame["labels"], np.uint8, (n, n))
    gated = b64_array(frame["gated"], np.uint8, (n, n, 4))[..., :3]
    # Labels: equal, or off only where Python's map has a region edge (a polygon boundary pixel).
    off = js_labels != labels
    edge = cv2.dilate(labels, np.ones((3, 3), np.uint8)) != cv2.erode(labels, np.ones((3, 3), np.uint8))
    diff = np.abs(gated.astype(int) - expected.astype(int))
    lo, hi = gate.limits(labels)
    closed = np.all((lo == 0) & (hi == 0), axis=2)
    figures = {"labels_differing_px": int(off.sum()), "labels_differing_off_edges": int((off & ~edge).sum()),
               "gated_max_abs_diff": int(diff.max()), "gated_share_differing": float(np.any(diff > 0, axis=2).mean()),
               "gate_ms": round(frame["timings"]["gate_ms"], 2),
               "crop_px_changed_ungated": int(np.any(processed != crop, axis=2).sum()),
               "crop_px_changed_gated": int(np.any(gated != crop, axis=2).sum()), "crop_px_closed": int(closed.sum())}
    _record("look_gate_js_vs_makeup_gate", figures)
    assert not (off & ~edge).any() and off.mean() < 0.005, figures
    assert diff.max() <= 1 and figures["gated_share_differing"] < 0.001, figures
    # The gate changed something, and where it is closed the crop is the crop, exactly.
    assert np.any(gated != processed) and np.array_equal(gated[closed], crop[closed]), figures
    # On the photo: outside the gate's footprint (warped back, plus bilinear reach) the photo is untouched.
    result = b64_array(frame["result"], np.uint8, (frame["height"], frame["width"], 4))[..., :3]
    open_ = (~closed).astype(np.float32)
    matrix = np.array(frame["matrix"], np.float64).reshape(2, 3)
    reach = cv2.warpAffine(open_, matrix, (frame["width"], frame["height"]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    footprint = cv2.dilate((reach > 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.array_equal(result[~footprint], astronaut[~footprint])


def test_look_gate_toggle_switches_it(page):
    """Unticking the box pastes the model's whole change back; ticking it again gives the gated photo again.
    Screenshots of both."""
    browser = page["browser"]
    OUT.mkdir(parents=True, exist_ok=True)
    on = browser.eval("() => window.tinybeauty.lastFrame()")
    browser.call("screenshot", path=str(OUT / "screenshot_gate_on.png"))
    browser.eval("() => document.getElementById('gate-toggle').click()")
    off = _wait_frame(browser, "f.gated === null")
    info = browser.eval("() => window.tinybeauty.info()")
    assert info["gateOn"] is False and info["gate"] is True and "look gate off" in info["gateNote"], info
    assert browser.eval("() => document.getElementById('crop-after-caption').textContent") == "model output"
    browser.call("screenshot", path=str(OUT / "screenshot_gate_off.png"))
    result_on = b64_array(on["result"], np.uint8, (512, 512, 4))
    result_off = b64_array(off["result"], np.uint8, (512, 512, 4))
    photo_changed = int(np.any(result_on != result_off, axis=2).sum())
    assert photo_changed > 1000, photo_changed
    browser.eval("() => document.getElementById('gate-toggle').click()")
    again = _wait_frame(browser, "f.gated !== null")
    assert browser.eval("() => window.tinybeauty.info().gateOn") is True
    assert again["result"] == on["result"]  # the same photo, gated again: the same pixels
    _record("look_gate_toggle", {"photo_px_differing_on_vs_off": photo_changed,
                                 "screenshots": [str((OUT / f"screenshot_gate_{s}.png").relative_to(ROOT))
                                                 for s in ("on", "off")]})


def test_end_to_end_frame_time_on_the_astronaut(page):
    timings = page["browser"].eval("async () => window.tinybeauty.reprocess(5)", timeout=120)
    keys = ("landmarks_ms", "align_ms", "regions_ms", "model_ms", "gate_ms", "paste_ms", "frame_ms", "end_to_end_ms")
    summary = {k: round(statistics.median(t[k] for t in timings), 2) for k in keys}
    _record("frame_time_astronaut_median_of_5", summary)
    assert 0 < summary["model_ms"] < summary["frame_ms"] <= summary["end_to_end_ms"]
    # The label map and masks are parsed once, before the model; the gate figure includes them.
    assert all(0 < t["regions_ms"] <= t["gate_ms"] for t in timings), timings


def test_benchmark_json_beside_python_litert(page, litert, tmp_path):
    browser = page["browser"]
    results = {}
    for threads in (1, 2):
        r = browser.eval("async (t) => window.tinybeauty.benchmark({warmup: 5, runs: 30, threads: t})", threads,
                         timeout=300)
        assert BENCHMARK_FIELDS <= set(r), BENCHMARK_FIELDS - set(r)
        assert r["backend"] == "wasm" and r["threads"] == threads and r["runs"] == 30 and len(r["times_ms"]) == 30
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["max_ms"]
        assert r["cross_origin_isolated"] is True and "Chrome" in r["user_agent"]
        results[threads] = r
    assert all(r["input_channels"] == 8 for r in results.values())
    # Python LiteRT on the same file, same input size, same run.
    x = np.random.default_rng(0).random((1, 256, 256, 8)).astype(np.float32)
    python = {}
    for threads in (1, 2):
        interp = litert(threads)
        inp = interp.get_input_details()[0]["index"]
        times = []
        for i in range(35):
            t0 = time.perf_counter()
            interp.set_tensor(inp, x)
            interp.invoke()
            if i >= 5:
                times.append((time.perf_counter() - t0) * 1000)
        python[threads] = round(statistics.median(times), 2)
    _record("latency_ms_256", {
        "chromium_litertjs_wasm": {t: {"median": r["median_ms"], "p90": r["p90_ms"]} for t, r in results.items()},
        "python_ai_edge_litert_median": python, "user_agent": results[1]["user_agent"]})
    # The panel's download link gives the same JSON (the last run's).
    saved = browser.call("download", selector="#bench-download", path=str(tmp_path / "bench.json"))
    assert saved["suggested"] == "tinybeauty-benchmark.json"
    assert json.loads((tmp_path / "bench.json").read_text()) == results[2]


def test_dropped_files_get_one_clear_message(page, tmp_path):
    browser = page["browser"]
    visible = ("() => Array.from(document.querySelectorAll('[role=alert]')).filter((e) => !e.hidden)"
               ".map((e) => e.textContent)")

    def drop(*files):
        browser.call("drop", selector="body", files=[
            {"name": n, "type": t, "b64": base64.b64encode(b).decode()} for n, t, b in files])
        for _ in range(100):
            state = browser.eval(visible)
            if state or browser.eval("() => window.tinybeauty.info().model") != "tinybeauty.tflite":
                break
            time.sleep(0.05)
        return browser.eval(visible)

    messages = drop(("notes.txt", "text/plain", b"hello"))
    assert len(messages) == 1 and "notes.txt: not a .tflite model" in messages[0], messages
    messages = drop(("broken.tflite", "application/octet-stream", b"\x00" * 64))
    assert len(messages) == 1 and "broken.tflite" in messages[0], messages
    messages = drop(("model_card.json", "application/json", b'{"io": {}}'))
    assert len(messages) == 1 and "model_card.json" in messages[0], messages
    model = (page["assets"] / "tinybeauty.tflite").read_bytes()
    card = (page["assets"] / "model_card.json").read_bytes()
    # The region-input model with a card that does not say how to feed it (an RGB model's card): one message,
    # the bundled model stays.
    rgb_card = json.loads(card)
    rgb_card["io"] = {k: v for k, v in rgb_card["io"].items() if k != "region_input"} | {"channels": 3}
    browser.call("drop", selector="body", files=[
        {"name": "eight.tflite", "type": "", "b64": base64.b64encode(model).decode()},
        {"name": "model_card.json", "type": "application/json", "b64": base64.b64encode(json.dumps(rgb_card).encode()).decode()}])
    for _ in range(200):
        messages = browser.eval(visible)
        if messages and messages != ["model_card.json: not a TinyBeauty model_card.json (no \"io\" / \"artifacts\")"]:
            break
        time.sleep(0.05)
    assert len(messages) == 1 and messages[0].startswith("eight.tflite: takes 8 input channels") and \
        "has no io.region_input" in messages[0], messages
    assert browser.eval("() => window.tinybeauty.info().model") == "tinybeauty.tflite"
    # A real model and its card replace the bundled one and clear the message.
    browser.call("drop", selector="body", files=[
        {"name": "mine.tflite", "type": "", "b64": base64.b64encode(model).decode()},
        {"name": "model_card.json", "type": "application/json", "b64": base64.b64encode(card).decode()}])
    for _ in range(200):
        if browser.eval("() => window.tinybeauty.info().model") == "mine.tflite":
            break
        time.sleep(0.05)
    browser.eval("async () => { await window.tinybeauty.reprocess(1); }")
    info = browser.eval("() => window.tinybeauty.info()")
    assert info["model"] == "mine.tflite" and info["message"] == "" and browser.eval(visible) == []


def _drop(browser, name: str, model_b64: str, card_json=None):
    """Drop a model (and a card) on the page, wait until it is the page's model, process the photo once:
    (info, last frame)."""
    files = [{"name": name, "type": "", "b64": model_b64}]
    if card_json is not None:
        files.append({"name": "model_card.json", "type": "application/json",
                      "b64": base64.b64encode(json.dumps(card_json).encode()).decode()})
    browser.call("drop", selector="body", files=files)
    for _ in range(200):
        if browser.eval("() => window.tinybeauty.info().model") == name:
            break
        time.sleep(0.05)
    browser.eval("async () => { await window.tinybeauty.reprocess(1); }")
    return browser.eval("() => window.tinybeauty.info()"), browser.eval("() => window.tinybeauty.lastFrame()")


def test_card_without_look_gate_runs_ungated(page):
    """A model and a card without "look_gate" (an older export), then a model dropped without its card: the
    page runs ungated and says so in one line; the bundled model and card bring the gate back."""
    browser = page["browser"]
    model = base64.b64encode((page["assets"] / "tinybeauty.tflite").read_bytes()).decode()
    card = json.loads((page["assets"] / "model_card.json").read_text())
    old = {k: v for k, v in card.items() if k != "look_gate"}

    def drop(name, card_json=None):
        return _drop(browser, name, model, card_json)

    info, frame = drop("old.tflite", old)
    assert info["gate"] is False and frame["gated"] is None and info["message"] == "", info
    assert info["gateNote"] == "ungated: model_card.json has no look_gate (an older export): the model's change is not clipped"
    assert browser.eval("() => { const b = document.getElementById('gate-toggle'); return b.disabled && !b.checked; }")
    info, frame = drop("alone.tflite")
    assert info["gate"] is False and frame["gated"] is None
    assert info["gateNote"].startswith("ungated: alone.tflite came without its model_card.json"), info
    info, frame = drop("tinybeauty.tflite", card)
    assert info["gate"] is True and info["gateOn"] is True and frame["gated"] is not None, info
    assert browser.eval("() => document.getElementById('gate-toggle').checked") is True


def test_screenshot_is_saved(page):
    from PIL import Image

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "screenshot.png"
    page["browser"].call("screenshot", path=str(path))
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > 600 and img.shape[1] > 600
    assert img.std() > 20  # the photo, crops and panel are drawn, not a blank page
    _record("screenshot", str(path.relative_to(ROOT)))


def test_camera_frames_run_through_the_pipeline(page):
    """Chromium's synthetic camera (a test pattern, no face): VIDEO-mode landmarks run per frame, the page says
    it used the centred square, and the region-input model, which has no regions to read there, does not run:
    one message says so and the frame is the camera's; stopping returns the landmarker to IMAGE mode, and the
    next face clears the message."""
    browser = page["browser"]
    browser.eval("() => document.getElementById('webcam').click()")
    frame = None
    for _ in range(200):
        frame = browser.eval("() => { const f = window.tinybeauty.lastFrame(); "
                             "return f && {w: f.width, h: f.height, face: f.face, t: f.timings, skipped: f.skipped}; }")
        if frame and (frame["w"], frame["h"]) != (512, 512):
            break
        time.sleep(0.05)
    messages = browser.eval("() => Array.from(document.querySelectorAll('[role=alert]')).filter((e) => !e.hidden)"
                            ".map((e) => e.textContent)")
    browser.eval("() => document.getElementById('webcam').click()")  # stop
    assert frame and (frame["w"], frame["h"]) == (640, 480), frame
    assert frame["face"] is False and frame["t"]["model_ms"] == 0 and "no face was found" in frame["skipped"], frame
    assert len(messages) == 1 and "needs the face's regions and no face was found" in messages[0], messages
    assert "centred square" in browser.eval("() => document.getElementById('timings').textContent")
    time.sleep(0.3)
    browser.eval("async () => { await window.tinybeauty.loadSample(); }")  # IMAGE mode again, a face again
    assert browser.eval("() => window.tinybeauty.lastFrame().face") is True
    assert browser.eval("() => window.tinybeauty.info().message") == ""


def test_photo_without_a_face_is_left_as_it_is_with_one_message(page):
    """A region-input model needs the face's regions (student/apply.py gated_crop refuses a crop without a face
    mesh): a photo without a face is shown unchanged, the model does not run, one message says why; the
    sample (a face) clears it."""
    import io

    from PIL import Image

    browser = page["browser"]
    rng = np.random.default_rng(3)
    photo = (rng.random((240, 320, 3)) * 60 + 100).astype(np.uint8)  # flat grey noise: no face
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="PNG")
    browser.call("drop", selector="body", files=[{"name": "wall.png", "type": "image/png", "b64": _b64(np.frombuffer(buf.getvalue(), np.uint8))}])
    frame = _wait_frame(browser, "f.width === 320")
    info = browser.eval("() => window.tinybeauty.info()")
    assert frame["face"] is False and frame["skipped"] and frame["timings"]["model_ms"] == 0, frame["skipped"]
    result = b64_array(frame["result"], np.uint8, (240, 320, 4))[..., :3]
    np.testing.assert_array_equal(result, photo)
    assert info["message"] == frame["skipped"] and frame["skipped"].startswith("tinybeauty.tflite needs the face's regions")
    assert browser.eval("() => document.getElementById('crop-after-caption').textContent") == "model not run (no face)"
    browser.eval("async () => { await window.tinybeauty.loadSample(); }")
    assert browser.eval("() => window.tinybeauty.info().message") == ""
    assert browser.eval("() => window.tinybeauty.lastFrame().face") is True


@pytest.fixture(scope="module")
def rgb_export(tmp_path_factory):
    """An RGB-only (3-channel) student exported at 64 px: what exports before region input look like."""
    from webtools import export_student

    return export_student(tmp_path_factory.mktemp("rgb"), size=64, region_input=False)


def _frame_output_equals_litert(frame: dict, tflite, masks: np.ndarray | None):
    """The page's processed crop of ``frame`` equals ai_edge_litert's output on the same crop (and masks),
    clamped, times 255, rounded; returns (crop, processed) RGB."""
    from ai_edge_litert.interpreter import Interpreter

    n = frame["size"]
    crop = b64_array(frame["crop"], np.uint8, (n, n, 4))[..., :3]
    processed = b64_array(frame["processed"], np.uint8, (n, n, 4))[..., :3]
    it = Interpreter(model_path=str(tflite), num_threads=1)
    it.allocate_tensors()
    expected = np.round(np.clip(_run_python(it, _model_input(crop, masks)), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(processed, expected)
    return crop, processed


def test_rgb_only_model_still_runs(page, rgb_export, card):
    """A 3-channel model and its card (no io.region_input): the page packs RGB only, its output on the page's
    crop equals ai_edge_litert's, the gate still runs on the crop's labels; the bundled model comes back."""
    browser = page["browser"]
    rgb_card = json.loads((rgb_export / "model_card.json").read_text())
    assert rgb_card["io"]["channels"] == 3 and "region_input" not in rgb_card["io"]

    def drop(name, model_bytes, card_json):
        return _drop(browser, name, base64.b64encode(model_bytes).decode(), card_json)

    info, frame = drop("rgb.tflite", (rgb_export / "tinybeauty.tflite").read_bytes(), rgb_card)
    assert info["message"] == "" and info["channels"] == 3 and info["regionInput"] is None and info["size"] == 64, info
    assert frame["face"] is True and frame["masks"] is None and frame["gated"] is not None and frame["size"] == 64
    crop, processed = _frame_output_equals_litert(frame, rgb_export / "tinybeauty.tflite", None)
    assert np.any(processed != crop)
    bench = browser.eval("async () => window.tinybeauty.benchmark({warmup: 1, runs: 3, threads: 1})")
    assert bench["input_channels"] == 3 and bench["crop_size"] == 64
    info, frame = drop("tinybeauty.tflite", (page["assets"] / "tinybeauty.tflite").read_bytes(), card)
    assert info["channels"] == 8 and info["regionInput"] is not None and frame["masks"] is not None, info


@pytest.fixture(scope="module")
def four_mask_export(tmp_path_factory):
    """A student reading the four region masks without the cheeks (7 channels), exported at 64 px: what
    exports before the cheeks look like."""
    from webtools import export_student

    return export_student(tmp_path_factory.mktemp("four"), size=64, cheek_input=False)


def test_four_mask_model_still_runs_and_a_card_of_another_count_is_refused(page, four_mask_export, card):
    """A 7-channel model and its card (four masks, no cheeks): the page packs the four masks the card names,
    equal to makeup.gate.input_masks of the frame's labels, and its output on the page's crop equals
    ai_edge_litert's on that input. The same model with the bundled 8-channel card (five masks) is refused
    in one message; the bundled model comes back."""
    browser = page["browser"]
    four_card = json.loads((four_mask_export / "model_card.json").read_text())
    assert four_card["io"]["channels"] == 7 and four_card["io"]["region_input"]["channels"] == \
        ["eyes", "lips", "skin", "brows"] and "cheeks" not in four_card["io"]["region_input"]
    model = (four_mask_export / "tinybeauty.tflite").read_bytes()
    info, frame = _drop(browser, "four.tflite", base64.b64encode(model).decode(), four_card)
    assert info["message"] == "" and info["channels"] == 7 and info["size"] == 64, info
    assert info["regionInput"]["channels"] == ["eyes", "lips", "skin", "brows"] and frame["face"] is True
    labels = b64_array(frame["labels"], np.uint8, (64, 64))
    masks = b64_array(frame["masks"], np.float32, (4, 64, 64))
    assert np.abs(masks - _region_masks(labels, four_card)).max() <= 1e-6
    _frame_output_equals_litert(frame, four_mask_export / "tinybeauty.tflite", masks)
    # the 7-channel model with a card naming five masks: one message, the model is not taken
    _drop(browser, "tinybeauty.tflite", base64.b64encode((page["assets"] / "tinybeauty.tflite").read_bytes()).decode(), card)
    browser.call("drop", selector="body", files=[
        {"name": "mismatch.tflite", "type": "", "b64": base64.b64encode(model).decode()},
        {"name": "model_card.json", "type": "application/json", "b64": base64.b64encode(json.dumps(card).encode()).decode()}])
    visible = ("() => Array.from(document.querySelectorAll('[role=alert]')).filter((e) => !e.hidden)"
               ".map((e) => e.textContent)")
    for _ in range(200):
        messages = browser.eval(visible)
        if any("mismatch.tflite" in m for m in messages):
            break
        time.sleep(0.05)
    assert any(m.startswith("mismatch.tflite: takes 4 region masks after RGB and model_card.json names 5")
               for m in messages), messages
    assert browser.eval("() => window.tinybeauty.info().model") == "tinybeauty.tflite"


# ---- the look prior (prior.js) and a prior-input (11-channel) model ----

@pytest.fixture(scope="module")
def look_prior():
    """The test look prior as the page reads it (look_prior.json: LookPrior.to_dict) and as Python paints it
    (LookPrior.from_arrays of that file, as student.runtime does)."""
    from makeup.lookprior import LookPrior
    from webtools import fit_test_prior

    d = json.loads(json.dumps(fit_test_prior().to_dict()))
    return d, LookPrior.from_arrays(d)


def _paint_js(browser, crop: np.ndarray, labels: np.ndarray, prior_dict=None) -> tuple[np.ndarray, float]:
    n = labels.shape[0]
    r = browser.eval("([rgb, labels, prior]) => window.tinybeauty.paintPrior(rgb, labels, prior)",
                     [_b64(crop.astype(np.uint8)), _b64(labels.astype(np.uint8)), prior_dict])
    return b64_array(r["prior"], np.float32, (n, n, 3)), r["ms"]


def test_js_look_prior_equals_python(page, look_prior, astronaut_aligned, monkeypatch):
    """prior.js paintPrior against LookPrior.paint on synthetic faces the prior was not fit on and on the
    astronaut's aligned crop and face-mesh labels, to a small fraction of a level: the fitted prior (region
    constants, the CIELAB eye template added over the skin's model with d clamped to its cells' range, the CIELAB
    lip and cheek templates, the skin and brow models; no region took a colour map there), the same with colour
    maps on every region, the region prior alone, a look_prior.json written before the cheeks', lid-height eyes'
    and CIELAB lips' templates (the eye-width eye and RGB lip templates only: painted as Python's
    LookPrior.from_arrays of it paints it), one written before the CIELAB eye template (its eyes in the RGB
    eyes_liner), one with its template keys in another order (the frames are laid eyes, eyes_lid, eyes_liner,
    eyes_lab, lips, lips_lab, cheeks all the same), one written with the eye template of stops 34-35 (eyes_lab),
    one whose eye template is the other band's (the fitted prior takes eyes_band15 on these glamorous seeds; a
    natural look takes eyes_band10: both are painted), one whose
    skin model carries a tone curve (its lightness a bounded ramp in the face's skin tone: two knots), one whose curve
    has four knots, each with its own slope (the cubic Hermite the files of stops 33-34 carry, PCHIP), and the same
    file written before the curve (25 rows a region: painted without it). The
    comparison would see any part dropped: Python's prior without the templates, the eye or lip template (either
    form), the cheek template, the region models, the tone curve or the colour maps is levels away from the page's
    (the curve: over a level), and so are the eye template laid in another frame (eyes_lab's, a banded frame
    without its blend to lid heights or without its corner rows, the other band's) and, on the astronaut, the
    CIELAB eye template without its clamp. A template of the wrong size is refused."""
    import dataclasses

    from makeup.lookprior import EYE_BANDS, EYE_CORNER, EYE_LID_FROM, LID_BLEND, TEMPLATE_FRAMES, LookPrior
    from makeup.parsing import landmarks_to_labels
    from makeup.region_models import COEFFICIENTS, DARK_KNOTS, MODEL_ROWS, fit_region_models, tone_curve
    from makeup.render import eye_frame
    from makeup.synth import generate_face
    from webtools import fit_test_prior, prior_seed_pairs

    d, prior = look_prior
    assert prior.templates and set(prior.templates) == {"eyes_band15", "lips_lab", "cheeks_lab"} and prior.models is not None
    assert np.asarray(d["template_cheeks_lab"]).shape == (24, 32, 11) and prior.templates["cheeks_lab"][..., 4].any()
    cases = {f"synthetic_{s}": (f.image, f.labels.astype(np.uint8)) for s in (10, 11, 12)
             for f in [generate_face(s, 256)]}
    crop = astronaut_aligned.crop
    cases["astronaut"] = (crop, landmarks_to_labels(astronaut_aligned.landmarks, crop.shape[:2]).astype(np.uint8))
    colour = np.round(np.random.default_rng(0).normal(0.0, 0.15, (4, 3, 3)), 5).astype(np.float32)

    def shipped(p):  # what look_prior.json carries and Python reads back from it
        dd = json.loads(json.dumps(p.to_dict()))
        return dd, LookPrior.from_arrays(dd)

    def but(*names):  # the prior without some templates
        return dataclasses.replace(prior, templates={k: t for k, t in prior.templates.items() if k not in names})

    flat = fit_region_models(*prior_seed_pairs(), forms=("flat",))  # one coefficient a feature, at every knot
    # the skin's lightness as a tone curve (the "curve" form), the brows' model as fitted
    curved = prior.models.copy()
    curved[0] = fit_region_models(*prior_seed_pairs(), forms=("curve",))[0]
    assert tone_curve(curved[0]) is not None and len(tone_curve(curved[0])) == 2  # a bounded ramp's two ends
    # a curve of four knots with their own slopes (the PCHIP written until stop 35): the page paints any cubic Hermite
    hermite = curved.copy()
    hermite[0, COEFFICIENTS:] = 0.0
    hermite[0, COEFFICIENTS:COEFFICIENTS + 4] = [[30.0, 2.0, -0.01], [45.0, 1.6, -0.03], [60.0, 1.4, -0.01],
                                                 [75.0, 1.0, -0.04]]
    uncurved = curved.copy()
    uncurved[0, COEFFICIENTS:] = 0.0
    # the same file written before the curve (25 rows a region): painted without one
    before_curve = json.loads(json.dumps(dataclasses.replace(prior, models=uncurved).to_dict()))
    before_curve["models"] = np.asarray(before_curve["models"])[:, :COEFFICIENTS].tolist()
    # a look_prior.json from before the cheeks, lids, CIELAB lips and darkness knots
    older = fit_test_prior(templates=("eyes", "lips"))
    old = {k: v for k, v in json.loads(json.dumps(older.to_dict())).items()
           if k not in ("template_cheeks", "template_eyes_lid", "template_eyes_liner", "template_eyes_lab",
                        "template_eyes_band10", "template_eyes_band15",
                        "template_lips_lab", "template_cheeks_lab")}
    # one from before the CIELAB eye template (its eyes in the RGB eyes_liner) and, for it, the eye template's range
    # of d opened (the page must clamp d, or the astronaut's under-eye shadows come out lifted)
    liner = fit_test_prior(templates=("eyes_liner", "lips_lab", "cheeks"))
    liner_file = {k: v for k, v in json.loads(json.dumps(liner.to_dict())).items()
                  if k not in ("template_eyes_lab", "template_eyes_band10", "template_eyes_band15", "template_cheeks_lab")}
    unclamped = prior.templates["eyes_band15"].copy()
    unclamped[..., 11:14], unclamped[..., 14:17] = -1e3, 1e3
    old["models"] = np.round(flat[:, :COEFFICIENTS:len(DARK_KNOTS)].astype(np.float64), 5).tolist()  # (2, 5, 3)
    # the eye template of stops 34-35 (eyes_lab's frame) and the other band's, each also laid in another frame
    lab_eyes = fit_test_prior(templates=("eyes_lab", "lips_lab", "cheeks_lab"))
    band10 = fit_test_prior(templates=("eyes_band10", "lips_lab", "cheeks_lab"))

    def moved(p, frm, to):  # the same cells laid in another frame
        return dataclasses.replace(p, templates={to if k == frm else k: t for k, t in p.templates.items()})

    first, last = ("template_cheeks_lab",), ("template_eyes_band15",)  # the cheeks' key first, the eyes' last
    reordered = {k: d[k] for k in first + tuple(k for k in d if k not in first + last) + last}
    variants = {"fitted": ((d, prior), {"templates": dataclasses.replace(prior, templates=None),
                                         "eye_template": but("eyes_band15"), "lip_template": but("lips_lab"),
                                         "cheek_template": but("cheeks_lab"),
                                         "region_models": dataclasses.replace(prior, models=None),
                                         "darkness_knots": dataclasses.replace(prior, models=flat)}),
                "colour_maps": (shipped(dataclasses.replace(prior, region_colour=colour)), {"colour_maps": prior}),
                "region_prior_only": (shipped(dataclasses.replace(prior, templates=None, models=None)), {}),
                "tone_curve": (shipped(dataclasses.replace(prior, models=curved)),
                               {"tone_curve": dataclasses.replace(prior, models=uncurved)}),
                "hermite_curve": (shipped(dataclasses.replace(prior, models=hermite)),
                                  {"tone_curve": dataclasses.replace(prior, models=uncurved),
                                   "ramp_not_hermite": dataclasses.replace(prior, models=curved)}),
                "models_before_curve": ((before_curve, LookPrior.from_arrays(before_curve)),
                                        {"tone_curve": dataclasses.replace(prior, models=curved)}),
                "older_file": ((old, LookPrior.from_arrays(old)), {
                    "rgb_lip_template": dataclasses.replace(older, templates={"eyes": older.templates["eyes"]}),
                    "eye_width_template": dataclasses.replace(older, templates={"lips": older.templates["lips"]})}),
                "eyes_liner_file": ((liner_file, LookPrior.from_arrays(liner_file)), {
                    "lab_eye_template": prior,
                    "rgb_cheek_template": dataclasses.replace(liner, templates={
                        k: t for k, t in liner.templates.items() if k != "cheeks"})}),
                "eyes_lab_file": (shipped(lab_eyes), {"banded_frame": moved(lab_eyes, "eyes_lab", "eyes_band10")}),
                "eyes_band10": (shipped(band10), {"eyes_lab_frame": moved(band10, "eyes_band10", "eyes_lab"),
                                                  "band15_frame": moved(band10, "eyes_band10", "eyes_band15")}),
                "keys_reordered": ((reordered, prior), {})}
    browser = page["browser"]
    figures = {}
    for variant, ((dd, p), without) in variants.items():
        for name, (img, labels) in cases.items():
            if variant != "fitted" and name not in ("synthetic_10", "astronaut"):
                continue
            py = p.paint(img, labels)
            js, ms = _paint_js(browser, img, labels, dd)
            f = figures[f"{variant}/{name}"] = prior_diff(js, py) | {"js_ms": round(ms, 1)}
            f["without_x255"] = {k: float(np.abs(js - q.paint(img, labels)).max() * 255) for k, q in without.items()}
    _record("look_prior_js_vs_python", figures)
    assert set(LookPrior.from_arrays(old).templates) == {"eyes", "lips"} and list(reordered)[0] == "template_cheeks_lab"
    assert np.asarray(old["models"]).shape == (2, 5, 3) and np.asarray(d["models"]).shape == (2, MODEL_ROWS, 3)
    assert np.asarray(before_curve["models"]).shape == (2, COEFFICIENTS, 3)
    assert set(LookPrior.from_arrays(liner_file).templates) == {"eyes_liner", "lips_lab", "cheeks"}
    assert np.asarray(d["template_eyes_band15"]).shape == (192, 128, 17) and not np.asarray(d["template_eyes_lab"]).size
    assert set(band10.templates) == {"eyes_band10", "lips_lab", "cheeks_lab"} and "eyes_lab" in lab_eyes.templates
    # the page lays the eye template in lid heights over the liner's lash line, placed between the corners: in eye
    # widths her short lids come out apart, and on the degree-4 lash line and the centroid's offset the liner does
    img, labels = cases["astronaut"]
    js, _ = _paint_js(browser, img, labels, d)
    # on her the clamp of d matters: the prior painted without it is levels away from the page's
    opened = dataclasses.replace(prior, templates={**prior.templates, "eyes_band15": unclamped})
    assert float(np.abs(js - opened.paint(img, labels)).max() * 255) > 4.0
    frame, band = TEMPLATE_FRAMES["eyes_band15"], EYE_BANDS["eyes_band15"]
    apart = {}
    for what, other in {"liner": lambda lab, g=None: eye_frame(lab, g, liner=True),
                        "lid": lambda lab, g=None: eye_frame(lab, g, lid_from=EYE_LID_FROM),
                        "no_blend": lambda lab, g=None: eye_frame(lab, g, lid_from=band, liner=True, corner=EYE_CORNER),
                        "no_corner": lambda lab, g=None: eye_frame(lab, g, lid_from=band, liner=True,
                                                                   lid_blend=LID_BLEND)}.items():
        monkeypatch.setitem(TEMPLATE_FRAMES, "eyes_band15", dataclasses.replace(frame, coords=other))
        apart[what] = float(np.abs(js - prior.paint(img, labels)).max() * 255)
    assert all(v > 4.0 for v in apart.values()), apart
    monkeypatch.setitem(TEMPLATE_FRAMES, "eyes_band15", frame)
    for key in ("template_cheeks", "template_eyes_lid", "template_eyes_liner", "template_eyes_lab",
                "template_eyes_band10", "template_eyes_band15", "template_lips_lab",
                "template_cheeks_lab"):  # wrong size
        with pytest.raises(RuntimeError, match=key):
            _paint_js(browser, *cases["synthetic_10"], d | {key: [[1.0, 2.0]]})
    for name, f in figures.items():
        assert f["max_abs_x255"] <= PRIOR_MAX_ABS * 255 and f["share_above_half_level"] <= PRIOR_SHARE_ABOVE_HALF_LEVEL, (name, f)
        assert f["py_max_abs_x255"] > 10, (name, f)  # the look paints something
        # every part matters: without it Python's prior is levels away from the page's (the tone curve moves the
        # skin's lightness by about a level: its own bar)
        assert all(v > (1.0 if k in ("tone_curve", "ramp_not_hermite") else 4.0)
                   for k, v in f["without_x255"].items()), (name, f)


@pytest.fixture(scope="module")
def prior_export_10(tmp_path_factory):
    """A prior-input student without the cheeks (10 channels: RGB, the four masks, the look prior), at 64 px."""
    from webtools import export_student

    return export_student(tmp_path_factory.mktemp("prior10"), size=64, cheek_input=False, prior_input=True)


def _files(*items):
    return [{"name": n, "type": t, "b64": base64.b64encode(b).decode()} for n, t, b in items]


def _visible(browser):
    return browser.eval("() => Array.from(document.querySelectorAll('[role=alert]')).filter((e) => !e.hidden)"
                        ".map((e) => e.textContent)")


def _restore_bundled(browser, assets):
    _drop(browser, "tinybeauty.tflite", base64.b64encode((assets / "tinybeauty.tflite").read_bytes()).decode(),
          json.loads((assets / "model_card.json").read_text()))
    info = browser.eval("() => window.tinybeauty.info()")
    assert info["channels"] == 8 and info["priorInput"] is None and info["message"] == "", info


@pytest.mark.parametrize("which", ["prior_export", "prior_export_10"])
def test_prior_input_model_runs_and_equals_litert(page, which, request):
    """An 11-channel (and a 10-channel: no cheeks) model dropped with its card and look_prior.json: the page
    feeds [RGB, the masks, the look prior painted on its crop]; the prior equals LookPrior.paint of the shipped
    file on the page's crop and labels, and the page's output equals ai_edge_litert's on the same input
    (webtools.check_prior_frame). The bundled model comes back."""
    browser = page["browser"]
    export = request.getfixturevalue(which)
    card = json.loads((export / "model_card.json").read_text())
    channels = card["io"]["channels"]
    assert channels == (11 if which == "prior_export" else 10)
    assert card["io"]["prior_input"]["first_channel"] == channels - 3 and card["io"]["prior_input"]["file"] == "look_prior.json"
    browser.call("drop", selector="body", files=_files(
        ("tinybeauty.tflite", "", (export / "tinybeauty.tflite").read_bytes()),
        ("model_card.json", "application/json", json.dumps(card).encode()),
        ("look_prior.json", "application/json", (export / "look_prior.json").read_bytes())))
    for _ in range(200):
        if browser.eval("() => window.tinybeauty.info().channels") == channels:
            break
        time.sleep(0.05)
    browser.eval("async () => { await window.tinybeauty.reprocess(1); }")
    info, frame = browser.eval("() => window.tinybeauty.info()"), browser.eval("() => window.tinybeauty.lastFrame()")
    try:
        assert info["message"] == "" and info["channels"] == channels and info["size"] == 64, info
        assert info["priorInput"] == {"file": "look_prior.json", "firstChannel": channels - 3,
                                      "name": "look_prior.json"}, info
        assert "look prior" in browser.eval("() => document.getElementById('model-name').textContent")
        _record(f"prior_input_model_{channels}ch_vs_litert", check_prior_frame(frame, export))
    finally:
        _restore_bundled(browser, page["assets"])


def test_prior_input_model_without_its_card_or_prior_is_refused_in_one_message(page, prior_export):
    """An 11-channel model with a card that names no look prior, or with its card but without look_prior.json:
    one message each, the bundled model stays; a card naming the prior in another place is refused too.
    build_assets.py copies the look prior beside the model and refuses an export folder without it."""
    import shutil
    import sys

    browser = page["browser"]
    model = (prior_export / "tinybeauty.tflite").read_bytes()
    card = json.loads((prior_export / "model_card.json").read_text())
    prior_bytes = (prior_export / "look_prior.json").read_bytes()
    no_prior_card = json.loads(json.dumps(card))
    del no_prior_card["io"]["prior_input"]
    bad_card = json.loads(json.dumps(card))
    bad_card["io"]["prior_input"]["first_channel"] = 3
    cases = [
        ([("p.tflite", "", model), ("model_card.json", "application/json", json.dumps(no_prior_card).encode()),
          ("look_prior.json", "application/json", prior_bytes)],
         "p.tflite: takes 11 input channels (RGB, the face's region masks and the look prior) and model_card.json "
         "has no io.prior_input"),
        ([("p.tflite", "", model), ("model_card.json", "application/json", json.dumps(card).encode())],
         "p.tflite: takes the look prior as input and look_prior.json is missing"),
        ([("p.tflite", "", model), ("model_card.json", "application/json", json.dumps(bad_card).encode()),
          ("look_prior.json", "application/json", prior_bytes)],
         "model_card.json: io.prior_input"),
        ([("p.tflite", "", model), ("model_card.json", "application/json", json.dumps(card).encode()),
          ("look_prior.json", "application/json", b'{"region_prior": [1, 2]}')],
         "look_prior.json: not a look prior"),
    ]
    for files, start in cases:
        browser.call("drop", selector="body", files=_files(*files))
        messages = []
        for _ in range(200):
            messages = _visible(browser)
            if messages:
                break
            time.sleep(0.05)
        assert len(messages) == 1 and messages[0].startswith(start), (start, messages)
        assert browser.eval("() => window.tinybeauty.info().model") == "tinybeauty.tflite"
        assert browser.eval("() => window.tinybeauty.info().channels") == 8
        browser.eval("() => { document.getElementById('message').hidden = true; }")
    _restore_bundled(browser, page["assets"])
    # build_assets.py: the look prior travels with the model; an export folder without it is refused
    sys.path.insert(0, str(ROOT / "web_demo" / "tools"))
    from build_assets import build

    out = ROOT / "work" / "web_test" / "prior_assets"
    shutil.rmtree(out, ignore_errors=True)
    written = [p.name for p in build(prior_export, out)]
    assert "look_prior.json" in written and (out / "look_prior.json").read_bytes() == prior_bytes
    alone = out.parent / "prior_export_without_prior"
    shutil.rmtree(alone, ignore_errors=True)
    alone.mkdir(parents=True)
    for f in ("tinybeauty.tflite", "model_card.json"):
        shutil.copy(prior_export / f, alone / f)
    with pytest.raises(SystemExit, match="look_prior.json not found"):
        build(alone, out)
    shutil.rmtree(alone, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)


def test_no_request_leaves_127_0_0_1(page):
    """Closing the landmarker makes tasks-vision flush its usage log: the CSP must keep it on the page."""
    browser = page["browser"]
    browser.eval("() => window.tinybeauty.shutdown()")
    time.sleep(1.0)
    log = browser.call("log")
    assert log["requests"], "no requests recorded at all"
    assert log["outside"] == [], log["outside"]
    assert all(u.startswith(page["url"]) or u.startswith(("blob:", "data:")) for u in log["requests"])
    assert log["pageErrors"] == [], log["pageErrors"]
    # The CSP blocked only connections (tasks-vision's usage log), never a script, style or worker of the page.
    assert all("connect" in v.lower() for v in log["cspViolations"]), log["cspViolations"]
    _record("requests", {"count": len(log["requests"]), "outside": log["outside"],
                         "blocked_by_csp": log["cspViolations"]})
