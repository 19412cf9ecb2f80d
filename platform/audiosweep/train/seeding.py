"""Deterministic seeds per trial, rank and epoch.

Re-seeding every RNG at the start of each epoch from (seed, rank, epoch) makes an epoch's
randomness independent of what ran before it, so a run resumed from an epoch checkpoint draws
the same augmentations and shuffles as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(*parts: int | str) -> int:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
