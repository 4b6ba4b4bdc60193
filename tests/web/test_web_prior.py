"""The web demo with a prior-input model bundled (``make web-assets`` from a prior-input export: build_assets.py
copies the look_prior.json its card names beside the model): the page starts with the 11-channel model, paints
the look prior (web_demo/src/prior.js) on the sample's crop as makeup.lookprior.LookPrior.paint does and runs
the model on [RGB, masks, prior] exactly as ai_edge_litert does; assets whose card names the look prior
without the file: one message, no model. One browser for the module (the drop-in cases of a prior-input model
are in test_web_demo.py). Figures go to ``work/web_test/figures_prior.json``.
"""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from webtools import ROOT, Server, b64_array, build_assets, check_prior_frame, served_page, skip_without_browser

skip_without_browser()

OUT = ROOT / "work" / "web_test"


def _without_cheeks_x255(frame: dict, shipped: dict) -> float:
    """Max |page's prior - Python's prior of the same file without its cheeks template| on the frame, in levels."""
    from makeup.lookprior import LookPrior

    n = frame["size"]
    crop = b64_array(frame["crop"], np.uint8, (n, n, 4))[..., :3]
    labels = b64_array(frame["labels"], np.uint8, (n, n))
    js = b64_array(frame["prior"], np.float32, (n, n, 3))
    py = LookPrior.from_arrays({k: v for k, v in shipped.items() if k != "template_cheeks_lab"}).paint(crop, labels)
    return float(np.abs(js - py).max() * 255)


@pytest.fixture(scope="module")
def prior_assets(prior_export, tmp_path_factory):
    """The page's assets built from the prior-input export by the same script as ``make web-assets``."""
    return build_assets(prior_export, tmp_path_factory.mktemp("prior_web") / "assets")


@pytest.fixture(scope="module")
def prior_page(prior_assets):
    with served_page(prior_assets) as p:
        yield p


def test_bundled_prior_model_starts_and_equals_python(prior_page, prior_export):
    browser = prior_page["browser"]
    assert (prior_page["assets"] / "look_prior.json").read_bytes() == (prior_export / "look_prior.json").read_bytes()
    info = browser.eval("() => window.tinybeauty.info()")
    assert info["message"] == "" and info["model"] == "tinybeauty.tflite" and info["channels"] == 11, info
    assert info["priorInput"] == {"file": "look_prior.json", "firstChannel": 8, "name": "look_prior.json"}, info
    # the prior has all three templates, the cheeks' (laid after the eyes' and lips') with support
    shipped = json.loads((prior_export / "look_prior.json").read_text())
    cheeks = np.asarray(shipped["template_cheeks_lab"], np.float32)
    assert cheeks.shape == (24, 32, 11) and cheeks[..., 4].any()
    frame = browser.eval("() => window.tinybeauty.lastFrame()")
    assert frame["face"] is True and frame["size"] == 64
    figures = check_prior_frame(frame, prior_export)
    # the frame's crop holds cheek cells with support: the page's prior is levels away from Python's without them
    figures["prior_without_cheeks_x255"] = _without_cheeks_x255(frame, shipped)
    assert figures["prior_without_cheeks_x255"] > 4.0, figures
    assert "look prior" in browser.eval("() => document.getElementById('timings').textContent")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "figures_prior.json").write_text(json.dumps({"bundled_prior_model_vs_python": figures}, indent=2))


def test_assets_without_the_look_prior_say_so(prior_page, prior_assets, tmp_path):
    """The card names look_prior.json and the assets folder has none: the page loads no model and says why in
    one message (the photo stays as it is)."""
    assets = tmp_path / "assets"
    shutil.copytree(prior_assets, assets)
    (assets / "look_prior.json").unlink()
    browser = prior_page["browser"]
    server = Server(assets)
    try:
        browser.call("goto", url=server.url)
        assert browser.eval("async () => window.tinybeauty.ready", timeout=240) is True
        for _ in range(100):
            info = browser.eval("() => window.tinybeauty.info()")
            if info["message"]:
                break
            time.sleep(0.05)
        assert info["model"] is None, info
        assert info["message"].startswith("tinybeauty.tflite: takes the look prior as input and look_prior.json is "
                                          "missing from the assets") and "make web-assets" in info["message"], info
        messages = browser.eval("() => Array.from(document.querySelectorAll('[role=alert]')).filter((e) => !e.hidden)"
                                ".map((e) => e.textContent)")
        assert len(messages) == 1, messages
    finally:
        server.close()
