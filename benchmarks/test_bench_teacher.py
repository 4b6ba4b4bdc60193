"""Teacher sampling throughput (pairs/second) of the demo profile's tiny-ddpm config, untrained weights
(speed does not depend on the weights): one batch of ``amplify.batch`` faces through the sampler + paste.

Run: .venv/bin/pytest benchmarks/test_bench_teacher.py --benchmark-enable --benchmark-only
"""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def demo_teacher():
    import torch

    from makeup.config import load_profile, section
    from makeup.synth import generate_face
    from teacher.backends import get_backend
    from teacher.inference import Teacher

    profile = load_profile("demo")
    model_cfg = section(profile, "teacher").get("model") or {}
    amp = section(profile, "amplify")
    torch.manual_seed(0)
    backend = get_backend(section(profile, "teacher").get("backend", "tiny-ddpm")).from_config(model_cfg)
    teacher = Teacher(backend, {"style": "benchmark", "size": 256})
    batch = int(amp.get("batch", 16))
    faces = [generate_face(i, 256) for i in range(batch)]
    return teacher, faces, amp.get("steps")


def test_bench_teacher_sampling(benchmark, demo_teacher):
    teacher, faces, steps = demo_teacher
    seeds = list(range(len(faces)))
    benchmark.pedantic(lambda: teacher.translate([f.image for f in faces], [f.labels for f in faces], seeds,
                                                 steps=steps), rounds=2, iterations=1, warmup_rounds=0)
    benchmark.extra_info["pairs_per_second"] = len(faces) / benchmark.stats.stats.mean
    benchmark.extra_info["batch"] = len(faces)
    benchmark.extra_info["steps"] = steps or teacher.backend.config["sample_steps"]
