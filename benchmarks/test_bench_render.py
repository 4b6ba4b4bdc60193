"""Latency of the built-in default data path: one synthetic 256x256 face, one render per look.

Run with ``make bench`` or ``.venv/bin/pytest benchmarks/test_bench_render.py --benchmark-enable``.
"""
from __future__ import annotations

import pytest

from makeup.render import render_makeup
from makeup.styles import BUILTIN_STYLES, load_style
from makeup.synth import generate_face


@pytest.mark.parametrize("size", [256, 512])
def test_bench_synth_face(benchmark, size):
    counter = iter(range(10**9))
    face = benchmark(lambda: generate_face(next(counter), size))
    assert face.image.shape == (size, size, 3)


@pytest.mark.parametrize("name", BUILTIN_STYLES)
def test_bench_render_face(benchmark, name):
    face = generate_face(0, 256)
    style = load_style(name)
    out = benchmark(render_makeup, face.image, face.labels, style)
    assert out.shape == face.image.shape
