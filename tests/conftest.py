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
