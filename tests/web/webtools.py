"""Helpers of the browser tests of web_demo/: a real headless Chromium (Debian's), driven by
playwright-core over a JSON-lines bridge (``browser.mjs``), against the page served by ``web_demo/serve.py`` on 127.0.0.1.

One warm browser and one page load per module. The model is a real export: the default student
architecture, a few QAT steps from a fixed seed, exported to TFLite by ``export.run_export`` (no training
run needed: parity and latency do not depend on what the weights learned).
"""
from __future__ import annotations

import base64
import itertools
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

def export_student(root: Path, size: int = 256, region_input: bool = True, cheek_input: bool = True) -> Path:
    """The default student (a few QAT steps, fixed seed) exported to ``root/export`` as TFLite: a region-input
    student (8 input channels, RGB then the eyes/lips/skin/brows soft masks and the cheeks) by default, the default
    architecture; ``region_input=False`` an RGB-only one (3 channels, as exports before region input);
    ``cheek_input=False`` one with the four region masks only (7 channels, as exports before the cheeks)."""
    import torch

    from export import ExportRequest, run_export
    from student.checkpoint import save_checkpoint
    from student.model import StudentConfig, build_model
    from student.qat import float_state_from_prepared, prepare_qat

    torch.manual_seed(0)
    cfg = StudentConfig(region_input=region_input, cheek_input=cheek_input)
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
    ckpt = save_checkpoint(root / "qat.pt", model, config=cfg, qat_state=prepared.state_dict(),
                           meta={"style": "web-test", "look_gate": TEST_GATE.to_dict()})
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


def b64_array(text: str, dtype, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).reshape(shape)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak ** 2 / mse)
