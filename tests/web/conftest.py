"""Fixtures of the browser tests: the page's assets from a real export, the server, one warm Chromium
per module (helpers in webtools.py). Without Chromium or Node.js a browser test module skips with one line
saying what to install."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from webtools import ROOT, WEB, Browser, Server, export_student

@pytest.fixture(scope="session")
def web_assets(tmp_path_factory) -> Path:
    """The page's assets folder, built by the same script as ``make web-assets``."""
    root = tmp_path_factory.mktemp("web")
    export = export_student(root)
    assets = root / "assets"
    subprocess.run([sys.executable, str(WEB / "tools" / "build_assets.py"), "--export", str(export),
                    "--out", str(assets)], check=True, cwd=ROOT, capture_output=True, text=True)
    return assets


@pytest.fixture(scope="module")
def page(web_assets):
    """The demo page loaded once in a warm headless Chromium; yields (browser, server url, assets folder)."""
    server = Server(web_assets)
    browser = Browser()
    try:
        browser.call("goto", url=server.url)
        t0 = time.perf_counter()
        ok = browser.eval("async () => window.tinybeauty.ready", timeout=240)
        load_s = time.perf_counter() - t0
        if not ok:
            raise RuntimeError(f"page did not start: {browser.eval('() => window.tinybeauty.info()')}, "
                               f"{browser.call('log')}")
        yield {"browser": browser, "url": server.url, "assets": web_assets, "load_s": load_s}
    finally:
        browser.close()
        server.close()
