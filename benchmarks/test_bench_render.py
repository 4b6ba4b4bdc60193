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


@pytest.fixture(scope="module")
def glamorous_prior():
    """The look prior a prior-input student reads, fit on five rendered glamorous faces at 256 px."""
    from makeup.lookprior import LookPrior

    faces = [generate_face(s, 256) for s in range(5)]
    return LookPrior.fit([f.image for f in faces], [render_makeup(f.image, f.labels, "glamorous") for f in faces],
                         [f.labels for f in faces])


@pytest.mark.parametrize("part", ["whole", "templates_only"])
def test_bench_look_prior_paint_256(benchmark, glamorous_prior, part):
    """What a prior-input student costs an app per frame besides the model: painting the look prior on the
    256 crop (``whole``; ``templates_only``: the same without the skin's and brows' models, their two
    bilateral filters in CIELAB)."""
    from dataclasses import replace

    prior = glamorous_prior if part == "whole" else replace(glamorous_prior, models=None)
    face = generate_face(99, 256)
    out = benchmark(prior.paint, face.image, face.labels)
    assert out.shape == (256, 256, 3) and abs(out).max() > 0.01
