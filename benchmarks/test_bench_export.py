"""LiteRT and ONNX Runtime CPU latency of the exported DEFAULT student at 256x256 (artifact sizes in extra_info).

The student is the default config exported untrained (export.latency.export_default: latency does not depend
on the weights). `make bench` also prints `tinybeauty bench`'s one-run table (torch, roofline, partitions,
per-op profile) for the demo export; this file keeps the same two runtimes under pytest-benchmark's statistics.
Run: .venv/bin/pytest benchmarks/test_bench_export.py --benchmark-enable --benchmark-only
"""
from __future__ import annotations

import numpy as np
import pytest

SIZE = 256


@pytest.fixture(scope="module")
def exported_default(tmp_path_factory):
    from export.latency import export_default

    root = tmp_path_factory.mktemp("bench_export")
    _, report = export_default(root, size=SIZE, formats="tflite,onnx")
    return root / "export", report


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_bench_exported_default_256(benchmark, exported_default, fmt):
    from student.model import DEFAULT_CONFIG
    from student.runtime import load_runner

    out, report = exported_default
    entry = report["formats"][fmt]
    runner = load_runner(out / entry["path"])
    x = np.random.default_rng(0).random((1, runner.channels, SIZE, SIZE), dtype=np.float32)
    benchmark.extra_info.update(format=fmt, bytes=entry["bytes"], layout=entry["layout"],
                                psnr_vs_torch=entry["psnr_vs_torch"], config=DEFAULT_CONFIG.to_dict())
    y = benchmark(runner, x)
    assert y.shape == (1, 3, SIZE, SIZE) and entry["within_budget"]
