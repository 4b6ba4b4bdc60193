"""Helpers shared by the teacher test modules: read a pair dataset's images, assert two datasets are the same
bit for bit, and run `tinybeauty amplify` as two sharded processes the way `accelerate launch` starts them."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from makeup.pairs import PairDataset

ROOT = Path(__file__).resolve().parents[1]


def pair_images(root: Path) -> dict[str, tuple]:
    return {p.id: (p.source, p.target, p.mask) for p in PairDataset(root)}


def assert_same_pairs(a: Path, b: Path) -> None:
    first, second = pair_images(a), pair_images(b)
    assert sorted(first) == sorted(second)
    for pid in second:
        for x, y in zip(first[pid], second[pid]):
            np.testing.assert_array_equal(x, y)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_sharded_amplify(teacher: Path, out: Path, profile: Path, count: int, drop_env: tuple[str, ...] = (),
                        extra_env: dict | None = None, shards: int = 2) -> None:
    """`tinybeauty amplify` in ``shards`` processes with the env vars `accelerate launch` sets (one thread each)."""
    port = str(_free_port())
    procs = []
    for rank in range(shards):
        env = {**os.environ, "WORLD_SIZE": str(shards), "RANK": str(rank), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(shards), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "OMP_NUM_THREADS": "1", **(extra_env or {})}
        for key in drop_env:
            env.pop(key, None)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tinybeauty", "amplify", "--teacher", str(teacher), "--faces", "synthetic",
             "--count", str(count), "--out", str(out), "--profile", str(profile), "--device", "cpu"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]


def interrupt_writes_after(monkeypatch, count: int):
    """Make `PairWriter.write` raise KeyboardInterrupt after ``count`` pairs (a kill between two pairs); returns
    the real method so the test can put it back."""
    from makeup.pairs import PairWriter

    real_write = PairWriter.write
    calls = {"n": 0}

    def dying_write(self, *a, **k):
        if calls["n"] == count:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real_write(self, *a, **k)

    monkeypatch.setattr(PairWriter, "write", dying_write)
    return real_write
