"""Test-time augmentation: the one place eval probabilities are computed, with or without views.

SP4ASC's test-time augmentation averages the softmax of the model over 30 SpecAugment draws of
each clip's log-mel; multi-label models average sigmoids the same way. Draws come from a private
RNG state seeded by ``seed`` (the caller's global torch RNG is left untouched), so an
evaluation is repeatable and does not shift the training run's random stream.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["ACTIVATIONS", "probabilities", "test_time_augment"]

ACTIVATIONS = ("sigmoid", "softmax")


def probabilities(logits: Tensor, activation: str) -> Tensor:
    """Float32 class probabilities from logits: per class (sigmoid) or over classes (softmax)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    logits = logits.float()
    return torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=-1)


@torch.no_grad()
def test_time_augment(
    model: Callable[[Tensor], Tensor],
    spec: Tensor,
    views: int,
    *,
    augment: Callable[[Tensor], Tensor] | None = None,
    activation: str = "softmax",
    seed: int | None = None,
) -> Tensor:
    """Mean of ``activation(model(augment(spec)))`` over ``views`` augmented draws.

    ``spec`` is a front-end batch (B, 1, F, T); ``views = 0`` (or no ``augment``) gives the
    plain prediction. With ``seed`` the draws are reproducible and the global RNG is not
    advanced; without it they come from the global RNG.
    """
    if views < 0:
        raise ValueError(f"views must be >= 0, got {views}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if views == 0 or augment is None:
        return probabilities(model(spec), activation)
    devices = [spec.device] if spec.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        total = probabilities(model(augment(spec)), activation)
        for _ in range(views - 1):
            total += probabilities(model(augment(spec)), activation)
    return total / views


# The name starts with "test": keep pytest from collecting it when a test module imports it.
test_time_augment.__test__ = False
