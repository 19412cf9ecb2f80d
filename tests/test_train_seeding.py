"""An epoch's randomness depends on (seed, rank, epoch) only, which is what lets a run resumed
from an epoch checkpoint, in a fresh process on another node, draw what the uninterrupted run
drew (train/seeding.py, train/checkpoint.py)."""

from __future__ import annotations

import ast
import random
import subprocess
import sys

import numpy as np
import torch

from audiosweep.train.seeding import derive_seed, seed_everything


def _draws() -> list[float]:
    return [random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.randn(1))]


def _epoch_draws(seed: int, rank: int, epoch: int) -> list[float]:
    seed_everything(derive_seed(seed, "epoch", rank, epoch))
    return _draws()


def test_an_epoch_draws_the_same_whatever_ran_before_it():
    uninterrupted = [_epoch_draws(7, 0, e) for e in range(3)]
    for _ in range(5):  # a resumed process has consumed other numbers (model init, loading)
        _draws()
    assert _epoch_draws(7, 0, 2) == uninterrupted[2]


def test_a_fresh_process_draws_the_same_for_the_same_epoch():
    # Another process (a restarted worker on another node): derive_seed is a hash of the parts,
    # not Python's per-process salted hash(), and the draws follow from it.
    code = (
        "from audiosweep.train.seeding import derive_seed, seed_everything\n"
        "import random, numpy as np, torch\n"
        "seed_everything(derive_seed(7, 'epoch', 1, 2))\n"
        "print(repr([derive_seed(7, 'epoch', 1, 2), random.random(), float(np.random.rand()),"
        " float(torch.rand(1)), float(torch.randn(1))]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seed, *draws = ast.literal_eval(out.stdout)
    assert seed == derive_seed(7, "epoch", 1, 2)
    assert draws == _epoch_draws(7, 1, 2)


def test_ranks_and_epochs_draw_differently():
    draws = {tuple(_epoch_draws(7, r, e)) for r in range(2) for e in range(3)}
    assert len(draws) == 6
