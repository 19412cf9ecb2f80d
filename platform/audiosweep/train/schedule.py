"""Learning-rate schedule: linear warm-up then half-cycle cosine, stepped once per update.

For update number ``s = t + 1`` (``t`` = number of ``scheduler.step()`` calls so far), with
``W`` warm-up and ``T`` total updates, every group's lr is ``group_lr * f(t)`` where

    f = s / W                                                    for s <= W
    f = m + (1 - m) * (1 + cos(pi * (s - W) / (T - W))) / 2      for s >  W

and ``m = min_lr / base_lr``. The first update runs at ``group_lr / W``, the last warm-up update
at ``group_lr``, the last update at exactly ``min_lr * group_lr / base_lr``: the floor is scaled
per group like the peak, so a group at 5x the base lr ends at 5x ``min_lr``.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["WarmupCosine", "warmup_cosine", "scaled_lr"]


class WarmupCosine:
    """The multiplicative factor f(t); a plain object so LambdaLR checkpoints its fields."""

    def __init__(self, total_steps: int, warmup_steps: int, min_factor: float) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}"
            )
        if not 0.0 <= min_factor <= 1.0:
            raise ValueError(f"min_lr must be in [0, base_lr]; min_lr/base_lr = {min_factor}")
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_factor = float(min_factor)

    def __call__(self, t: int) -> float:
        s = min(t + 1, self.total_steps)
        if s <= self.warmup_steps:
            return s / self.warmup_steps
        progress = (s - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        m = self.min_factor
        return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: Optimizer,
    *,
    total_steps: int,
    warmup_steps: int,
    min_lr: float = 1e-6,
    base_lr: float | None = None,
    last_epoch: int = -1,
) -> LambdaLR:
    """Warm-up + cosine schedule over every param group of ``optimizer``.

    Each group's peak is its own ``lr`` when the scheduler is built; ``base_lr`` (default: the
    optimizer's constructor lr, ``optimizer.defaults["lr"]``) is the lr that ``min_lr`` refers
    to. Call ``step()`` after every optimizer update.
    """
    if base_lr is None:
        base_lr = float(optimizer.defaults["lr"])
    if base_lr <= 0:
        raise ValueError(f"base_lr must be > 0, got {base_lr}")
    factor = WarmupCosine(total_steps, warmup_steps, min_lr / base_lr)
    return LambdaLR(optimizer, lr_lambda=factor, last_epoch=last_epoch)


def scaled_lr(base_lr: float, effective_batch: int, reference: int = 4096) -> float:
    """Linear scaling rule: ``base_lr * effective_batch / reference``."""
    if effective_batch < 1 or reference < 1:
        raise ValueError(
            f"effective_batch and reference must be >= 1, got {effective_batch}, {reference}"
        )
    return base_lr * effective_batch / reference
