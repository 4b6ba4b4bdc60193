"""Helpers of the browser tests of web_demo/: a real headless Chromium (Debian's), driven by
playwright-core over a JSON-lines bridge (``browser.mjs``), against the page served by ``web_demo/serve.py`` on 127.0.0.1.

One warm browser and one page load per module. The model is a real export: the default student
architecture, a few QAT steps from a fixed seed, exported to TFLite by ``export.run_export`` (no training
run needed: parity and latency do not depend on what the weights learned).
"""
from __future__ import annotations

import base64
import contextlib
import itertools
import time
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web_demo"
BRIDGE = Path(__file__).resolve().parent / "browser.mjs"
INSTALL_HINT = ("web tests need Chromium and Node.js with the demo's packages: "
                "apt-get install -y chromium nodejs npm && (cd web_demo && npm ci)")


def chromium_path() -> str | None:
    for name in (os.environ.get("TINYBEAUTY_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def missing_tools() -> str | None:
    """None when the browser tests can run, else the one line saying what to install."""
    if chromium_path() is None or shutil.which("node") is None:
        return INSTALL_HINT
    for pkg in ("playwright-core", "@litertjs/core", "@mediapipe/tasks-vision"):
        if not (WEB / "node_modules" / pkg / "package.json").is_file():
            return INSTALL_HINT
    return None


def skip_without_browser() -> None:
    """Call at the top of a browser test module: one skip line saying what to install, or a failure where
    ``.ci/run`` installed everything (TINYBEAUTY_WEB_TESTS=required)."""
    reason = missing_tools()
    if reason is None:
        return
    if os.environ.get("TINYBEAUTY_WEB_TESTS") == "required":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


# ---- the model: a real export of the default student ----

def _test_gate():
    from makeup.gate import OPPONENT, LookGate

    # Tight on the skin (the test model's change is clipped there), loose on the lips, eyes and brows left
    # alone: the gate visibly changes the photo, and outside the feathered skin and lips nothing changes. In
    # the opponent basis every gate from pairs has, so the page maps the change through it and back.
    return LookGate({"eyes": None, "lips": ((-0.3, -0.3, -0.3), (0.3, 0.3, 0.3)),
                     "skin": ((-0.004, -0.004, -0.004), (0.004, 0.004, 0.004)), "brows": None}, basis=OPPONENT)


TEST_GATE = _test_gate()

def prior_seed_pairs(seeds: int = 4, style: str = "glamorous") -> tuple[list, list, list]:
    """The befores, afters and label maps :func:`fit_test_prior` fits on: ``seeds`` synthetic faces (seeds 0..) at
    256 px and the renderer's ``style`` on them."""
    from makeup.render import render_makeup
    from makeup.synth import generate_face

    faces = [generate_face(s, 256) for s in range(seeds)]
    return [f.image for f in faces], [render_makeup(f.image, f.labels, style) for f in faces], [f.labels for f in faces]


def fit_test_prior(seeds: int = 4, style: str = "glamorous", templates=None):
    """A look prior (``makeup.lookprior.LookPrior``) fit on :func:`prior_seed_pairs`: region colours, the eye, lip
    and cheek templates (``templates``: those frames; default DEFAULT_TEMPLATES) and the region models, as a
    prior-input student's checkpoint carries it."""
    from makeup.lookprior import DEFAULT_TEMPLATES, LookPrior

    return LookPrior.fit(*prior_seed_pairs(seeds, style), templates=templates or DEFAULT_TEMPLATES)


def export_student(root: Path, size: int = 256, region_input: bool = True, cheek_input: bool = True,
                   prior_input: bool = False) -> Path:
    """The default student (a few QAT steps, fixed seed) exported to ``root/export`` as TFLite: a region-input
    student (8 input channels, RGB then the eyes/lips/skin/brows soft masks and the cheeks) by default, the default
    architecture; ``region_input=False`` an RGB-only one (3 channels, as exports before region input);
    ``cheek_input=False`` one with the four region masks only (7 channels, as exports before the cheeks);
    ``prior_input=True`` one that also reads the look prior (11 channels, or 10 without the cheeks; the prior of
    :func:`fit_test_prior` in the checkpoint, so the export writes look_prior.json beside the model)."""
    import torch

    from export import ExportRequest, run_export
    from student.checkpoint import save_checkpoint
    from student.model import StudentConfig, build_model
    from student.qat import float_state_from_prepared, prepare_qat

    torch.manual_seed(0)
    cfg = StudentConfig(region_input=region_input, cheek_input=cheek_input, prior_input=prior_input)
    model = build_model(cfg)
    # A non-zero head gives a visible residual (the student's head starts at zero: an identity net).
    torch.nn.init.normal_(model.head.weight, 0.0, 0.02)
    # RGB, then (region input) mask-like channels in [0, 1]: the first conv's random weights on them make the
    # output depend on every mask channel, so a mask in the wrong channel changes the output.
    x = torch.rand(2, cfg.in_channels, 64, 64)
    target = (x[:, :3] + torch.tensor([0.06, -0.02, 0.01]).view(1, 3, 1, 1)).clamp(0, 1)
    prepared, _ = prepare_qat(model, x, dynamic_size=True)
    opt = torch.optim.Adam(prepared.parameters(), 1e-3)
    for _ in range(3):
        loss = ((prepared(x) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.load_state_dict(float_state_from_prepared(prepared, model))
    meta = {"style": "web-test", "look_gate": TEST_GATE.to_dict()}
    if prior_input:
        meta["look_prior"] = fit_test_prior().state()
    ckpt = save_checkpoint(root / "qat.pt", model, config=cfg, qat_state=prepared.state_dict(), meta=meta)
    out = root / "export"
    run_export(ExportRequest.build(ckpt, out, "tflite", config={"size": size, "parity_images": 2}), progress=False)
    return out


# ---- the server and the browser ----

class Server:
    def __init__(self, assets: Path):
        self.proc = subprocess.Popen([sys.executable, str(WEB / "serve.py"), "--port", "0", "--assets", str(assets)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("serving "):
            self.proc.kill()
            raise RuntimeError(f"web_demo/serve.py did not start: {line!r}")
        self.url = line.split()[1]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Browser:
    """Headless Chromium behind ``browser.mjs``: ``goto``, ``eval(js_function_source, arg)``, ``log``..."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="tb-chromium-")
        self.proc = subprocess.Popen(["node", str(BRIDGE), chromium_path(), self.profile], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._ids = itertools.count()
        self._lock = threading.Lock()
        hello = self.proc.stdout.readline()
        if not hello:
            raise RuntimeError(f"browser bridge failed: {self.proc.stderr.read()[-2000:]}")

    def call(self, op: str, timeout: float = 180, **kw):
        with self._lock:
            cmd = {"id": next(self._ids), "op": op, **kw}
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            timer = threading.Timer(timeout, self.proc.kill)
            timer.start()
            try:
                line = self.proc.stdout.readline()
            finally:
                timer.cancel()
        if not line:
            raise RuntimeError(f"browser bridge died during {op}: {self.proc.stderr.read()[-2000:]}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise RuntimeError(f"{op} failed in the browser: {reply['error']}")
        return reply.get("value")

    def eval(self, expr: str, arg=None, timeout: float = 180):
        return self.call("eval", expr=expr, arg=arg, timeout=timeout)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.call("close", timeout=30)
        except Exception:
            self.proc.kill()
        finally:
            self.proc.wait(10)
            shutil.rmtree(self.profile, ignore_errors=True)


def build_assets(export: Path, assets: Path) -> Path:
    """The page's assets folder from an export folder, by the same script as ``make web-assets``."""
    subprocess.run([sys.executable, str(WEB / "tools" / "build_assets.py"), "--export", str(export),
                    "--out", str(assets)], check=True, cwd=ROOT, capture_output=True, text=True)
    return assets


@contextlib.contextmanager
def served_page(assets: Path):
    """The demo page served from ``assets`` and loaded once in a warm headless Chromium; yields (browser, server
    url, assets folder, load time)."""
    server = Server(assets)
    browser = Browser()
    try:
        browser.call("goto", url=server.url)
        t0 = time.perf_counter()
        ok = browser.eval("async () => window.tinybeauty.ready", timeout=240)
        load_s = time.perf_counter() - t0
        if not ok:
            raise RuntimeError(f"page did not start: {browser.eval('() => window.tinybeauty.info()')}, "
                               f"{browser.call('log')}")
        yield {"browser": browser, "url": server.url, "assets": assets, "load_s": load_s}
    finally:
        browser.close()
        server.close()


def b64_array(text: str, dtype, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).reshape(shape)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak ** 2 / mse)


# ---- the look prior (web_demo/src/prior.js) ----

# JS prior (prior.js paintPrior) vs makeup.lookprior.LookPrior.paint, in 0..1 units. Measured (Chromium 156,
# OpenCV 4.11, numpy 1.26; synthetic faces 10-12 and the astronaut at 256 px, the prior-input models' 64 px
# frames of the sample): max 0.02/255 (synthetic_11), 0.0002/255 on the astronaut, no pixel above 0.5/255, the
# region prior alone bit-exact — the rest is float32 summation order and an odd entry of cv2's RGB2Lab table.
# The same with the cheeks' template (three templates): 0.0196/255 (synthetic_11), 0.00015/255 on the astronaut,
# 0.00009/255 on the 64 px frames. A dropped part (templates, eye, lip or cheek template, region models, colour
# maps) moves the prior 11 (the cheeks, synthetic faces) to 167 levels.
PRIOR_MAX_ABS = 0.1 / 255
PRIOR_SHARE_ABOVE_HALF_LEVEL = 0.0


def prior_diff(js: np.ndarray, py: np.ndarray) -> dict:
    """The page's prior against Python's (both (H, W, 3) in 0..1): max abs difference and the share of values
    more than half a level apart, in levels; and how much Python's prior paints."""
    d = np.abs(js.astype(np.float64) - py)
    return {"max_abs_x255": float(d.max() * 255), "share_above_half_level": float((d > 0.5 / 255).mean()),
            "py_max_abs_x255": float(np.abs(py).max() * 255)}


def check_prior_frame(frame: dict, export: Path) -> dict:
    """A prior-input model's frame on the page (``window.tinybeauty.lastFrame()``) against Python: its masks vs
    makeup.gate.input_masks of its labels, its look prior vs LookPrior.paint of the export's look_prior.json on
    its crop and labels, its output vs ai_edge_litert on the same input (exactly) and vs student.runtime
    (which paints the prior itself: a level at most). Asserts; returns the figures."""
    from ai_edge_litert.interpreter import Interpreter

    from makeup.gate import INPUT_MASKS, input_masks
    from makeup.lookprior import LookPrior
    from student.runtime import load_runner

    card = json.loads((export / "model_card.json").read_text())
    ri, pi = card["io"]["region_input"], card["io"]["prior_input"]
    k, n = len(ri["channels"]), frame["size"]
    assert frame["face"] is True and frame["prior"] is not None and frame["timings"]["prior_ms"] > 0, frame["skipped"]
    crop = b64_array(frame["crop"], np.uint8, (n, n, 4))[..., :3]
    labels = b64_array(frame["labels"], np.uint8, (n, n))
    masks = b64_array(frame["masks"], np.float32, (k, n, n))
    js_prior = b64_array(frame["prior"], np.float32, (n, n, 3))
    want = input_masks(labels, k, ri["feather"])[[list(INPUT_MASKS).index(r) for r in ri["channels"]]]
    assert np.abs(masks - want).max() <= 1e-6
    py_prior = LookPrior.from_arrays(json.loads((export / pi["file"]).read_text())).paint(crop, labels)
    figures = {"channels": card["io"]["channels"], "prior": prior_diff(js_prior, py_prior),
               "prior_ms": frame["timings"]["prior_ms"]}
    x = np.ascontiguousarray(np.concatenate([crop.astype(np.float32) / 255.0, masks.transpose(1, 2, 0), js_prior],
                                            axis=2)[None])
    assert pi["first_channel"] == 3 + k and x.shape[-1] == card["io"]["channels"]
    it = Interpreter(model_path=str(export / "tinybeauty.tflite"), num_threads=1)
    it.allocate_tensors()

    def run(inp):
        it.set_tensor(it.get_input_details()[0]["index"], inp)
        it.invoke()
        return np.round(np.clip(it.get_tensor(it.get_output_details()[0]["index"])[0], 0, 1) * 255).astype(np.uint8)

    expected = run(x)
    processed = b64_array(frame["processed"], np.uint8, (n, n, 4))[..., :3]
    np.testing.assert_array_equal(processed, expected)
    # without the prior channels the model's output is another (it adds the prior to its output)
    keep = np.array([1.0] * (3 + k) + [0.0] * 3, np.float32)
    figures["prior_zeroed_levels"] = int(np.abs(run(x * keep).astype(int) - expected).max())
    runner = load_runner(export / "tinybeauty.tflite")
    assert runner.channels == card["io"]["channels"]
    y = runner((crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None], labels[None])[0].transpose(1, 2, 0)
    diff = np.abs(np.round(np.clip(y, 0, 1) * 255).astype(int) - processed)
    figures["vs_student_runtime"] = {"max_levels": int(diff.max()), "share_differing": float((diff > 0).mean())}
    assert figures["prior"]["max_abs_x255"] <= PRIOR_MAX_ABS * 255, figures
    assert figures["prior"]["share_above_half_level"] <= PRIOR_SHARE_ABOVE_HALF_LEVEL, figures
    assert figures["prior"]["py_max_abs_x255"] > 5, figures  # the look paints something
    assert figures["prior_zeroed_levels"] >= 5, figures
    assert diff.max() <= 1 and figures["vs_student_runtime"]["share_differing"] < 0.01, figures
    return figures
