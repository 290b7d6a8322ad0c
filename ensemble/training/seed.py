"""Seeding without importing Lightning: the tree road must not pay Lightning's start-up for one call."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int | None = None) -> int:
    """Seed Python's, NumPy's and torch's generators and record the seed in ``PL_GLOBAL_SEED``, the
    variable Lightning's own ``seed_everything`` sets and the tree adapters read.

    ``None`` draws a seed. Returns the seed used.
    """
    import torch

    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed
