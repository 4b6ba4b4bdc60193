"""Torch CPU latency of the default TinyBeauty student at 256x256 (params and MACs in extra_info).

Run: .venv/bin/pytest benchmarks/test_bench_student.py --benchmark-enable (or `make bench`)
"""
from __future__ import annotations

import pytest
import torch

from student.model import DEFAULT_CONFIG, build_model, count_macs, count_params


@pytest.mark.parametrize("threads", [1, 2])
def test_bench_student_torch_cpu_256(benchmark, threads):
    model = build_model(DEFAULT_CONFIG).eval()
    x = torch.rand(1, DEFAULT_CONFIG.in_channels, 256, 256)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        benchmark.extra_info.update(params=count_params(model), macs_256=count_macs(model, 256),
                                    config=DEFAULT_CONFIG.to_dict(), threads=threads)
        with torch.inference_mode():
            out = benchmark(model, x)
    finally:
        torch.set_num_threads(previous)
    assert out.shape == (1, 3, 256, 256)
