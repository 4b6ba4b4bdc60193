"""Device choice and seeding shared by the training stages."""
from __future__ import annotations

import random

import numpy as np


def pick_device(preference: str = "auto"):
    """'auto' -> CUDA, then MPS, then CPU; or an explicit torch device string."""
    import torch

    if preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
