"""Fixtures of the browser tests: the page's assets from a real export, the server, one warm Chromium
per module (helpers in webtools.py). Without Chromium or Node.js a browser test module skips with one line
saying what to install."""
from __future__ import annotations

from pathlib import Path

import pytest

from webtools import build_assets, export_student, served_page

@pytest.fixture(scope="session")
def web_assets(tmp_path_factory) -> Path:
    """The page's assets folder, built by the same script as ``make web-assets``."""
    root = tmp_path_factory.mktemp("web")
    return build_assets(export_student(root), root / "assets")


@pytest.fixture(scope="module")
def page(web_assets):
    """The demo page loaded once in a warm headless Chromium; yields (browser, server url, assets folder)."""
    with served_page(web_assets) as p:
        yield p


@pytest.fixture(scope="session")
def prior_export(tmp_path_factory) -> Path:
    """A prior-input student (11 channels: RGB, the five masks, the look prior) exported at 64 px, with
    look_prior.json beside it (webtools.export_student)."""
    return export_student(tmp_path_factory.mktemp("prior"), size=64, prior_input=True)
