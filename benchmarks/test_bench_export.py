"""LiteRT and ONNX Runtime CPU latency of the exported DEFAULT student at 256x256 (artifact sizes in extra_info).

The student is the default config put through PT2E QAT preparation (observers initialised on random
batches, no training: latency does not depend on the weights) and exported once per module.
Run: .venv/bin/pytest benchmarks/test_bench_export.py --benchmark-enable --benchmark-only
"""
from __future__ import annotations

import numpy as np
import pytest

SIZE = 256


@pytest.fixture(scope="module")
def exported_default(tmp_path_factory):
    import torch

    from export import ExportRequest, run_export
    from student.checkpoint import save_checkpoint
    from student.model import DEFAULT_CONFIG, build_model
    from student.qat import float_state_from_prepared, prepare_qat

    root = tmp_path_factory.mktemp("bench_export")
    torch.manual_seed(0)
    model = build_model(DEFAULT_CONFIG)
    torch.nn.init.normal_(model.head.weight, 0.0, 0.02)  # a non-identity residual, as after training
    prepared, _ = prepare_qat(model, torch.rand(2, 3, SIZE, SIZE))
    with torch.no_grad():
        for _ in range(2):
            prepared(torch.rand(2, 3, SIZE, SIZE))
    model.load_state_dict(float_state_from_prepared(prepared, model))
    ckpt = save_checkpoint(root / "default_qat.pt", model, config=DEFAULT_CONFIG,
                           qat_state=prepared.state_dict(), meta={"style": "benchmark"})
    report = run_export(ExportRequest.build(ckpt, root / "export", "tflite,onnx", config={"size": SIZE}),
                        progress=False)
    return root / "export", report


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_bench_exported_default_256(benchmark, exported_default, fmt):
    from student.model import DEFAULT_CONFIG
    from student.runtime import load_runner

    out, report = exported_default
    entry = report["formats"][fmt]
    runner = load_runner(out / entry["path"])
    x = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32)
    benchmark.extra_info.update(format=fmt, bytes=entry["bytes"], layout=entry["layout"],
                                psnr_vs_torch=entry["psnr_vs_torch"], config=DEFAULT_CONFIG.to_dict())
    y = benchmark(runner, x)
    assert y.shape == x.shape and entry["within_budget"]
