"""Shared fixtures. Tests never touch the network or a GPU."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TINYBEAUTY_NO_WANDB", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def astronaut():
    """A real photo shipped inside scikit-image (512x512 RGB, one face)."""
    from skimage import data

    return data.astronaut()


@pytest.fixture
def one_thread():
    """Amplify here on one thread like each sharded process (float sums are ordered by the thread count: a conv
    on two threads can round a pixel one level apart from one on one thread)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
