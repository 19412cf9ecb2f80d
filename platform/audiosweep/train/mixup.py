"""Batch mixup with label smoothing for multi-label (multi-hot) targets.

Targets are smoothed first, ``y_s = (1 - eps) * y + eps / C`` (C classes; for a one-hot target
this is exactly timm's smoothing: off = eps/C, on = 1 - eps + eps/C), then mixed with the same
weight as the inputs: ``x = lam * x + (1 - lam) * x[j]``, ``y = lam * y_s + (1 - lam) * y_s[j]``,
one ``lam ~ Beta(alpha, alpha)`` per batch. The partner ``j`` is the flipped batch (timm's batch
mode) or a random permutation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MixupWithSmoothing", "smooth_targets"]

_PAIRINGS = ("flip", "permutation")


def smooth_targets(targets: Tensor, smoothing: float) -> Tensor:
    """``(1 - smoothing) * targets + smoothing / num_classes`` on (B, C) targets."""
    return targets * (1.0 - smoothing) + smoothing / targets.shape[-1]


class MixupWithSmoothing:
    """Callable ``(inputs, targets) -> (mixed_inputs, mixed_targets)``.

    ``inputs`` is any (B, ...) float batch (e.g. spectrograms (B, 1, F, T)); ``targets`` is
    (B, C) multi-hot, or (B,) class indices when ``num_classes`` is given. With probability
    ``1 - p`` (per batch) the batch is not mixed but its targets are still smoothed.
    Randomness comes from ``generator`` if given (call or constructor), else torch's global RNG.
    """

    def __init__(
        self,
        alpha: float = 0.8,
        smoothing: float = 0.1,
        p: float = 1.0,
        pairing: str = "flip",
        num_classes: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if pairing not in _PAIRINGS:
            raise ValueError(f"pairing must be one of {_PAIRINGS}, got {pairing!r}")
        self.alpha = float(alpha)
        self.smoothing = float(smoothing)
        self.p = float(p)
        self.pairing = pairing
        self.num_classes = num_classes
        self.generator = generator
        self.last_lam = 1.0

    def _sample_lam(self, generator: torch.Generator | None) -> float:
        # Beta(a, a) as a ratio of gammas: Beta.sample() has no generator argument.
        concentration = torch.full((2,), self.alpha, dtype=torch.float64)
        g = torch._standard_gamma(concentration, generator=generator)
        return float(g[0] / (g[0] + g[1]))

    def __call__(
        self, inputs: Tensor, targets: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        generator = generator if generator is not None else self.generator
        if targets.dim() == 1:
            if self.num_classes is None:
                raise ValueError("targets are class indices (B,): pass num_classes")
            targets = F.one_hot(targets.long(), self.num_classes)
        if targets.dim() != 2 or targets.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"targets must be (B, C) with B = {inputs.shape[0]}, got {tuple(targets.shape)}"
            )
        dtype = inputs.dtype if inputs.dtype.is_floating_point else torch.float32
        targets = smooth_targets(targets.to(dtype), self.smoothing)

        apply = self.p >= 1.0 or float(torch.rand((), generator=generator)) < self.p
        lam = self._sample_lam(generator) if apply else 1.0
        self.last_lam = lam
        if lam == 1.0:
            return inputs, targets
        if self.pairing == "flip":
            other_inputs, other_targets = inputs.flip(0), targets.flip(0)
        else:
            partner = torch.randperm(inputs.shape[0], generator=generator).to(inputs.device)
            other_inputs, other_targets = inputs[partner], targets[partner]
        mixed_inputs = inputs * lam + other_inputs * (1.0 - lam)
        mixed_targets = targets * lam + other_targets * (1.0 - lam)
        return mixed_inputs, mixed_targets

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(alpha={self.alpha}, smoothing={self.smoothing}, "
            f"p={self.p}, pairing={self.pairing!r})"
        )
