"""Single-label (multi-class) metrics in torch: accuracy and log loss as scikit-learn defines them.

``accuracy`` equals ``sklearn.metrics.accuracy_score(y, argmax(p))`` and ``log_loss`` equals
``sklearn.metrics.log_loss(y, p, labels=range(C))``: probabilities are clipped to
``[eps, 1 - eps]`` with ``eps`` float64's machine epsilon and the loss is the mean negative
natural log of the true class's probability.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["class_indices", "accuracy", "log_loss", "classification_metrics"]


def class_indices(targets: Tensor) -> Tensor:
    """Class index per row of one-hot (N, C) targets, or the (N,) indices as given."""
    if targets.dim() == 1:
        return targets.long()
    if targets.dim() != 2:
        raise ValueError(
            f"targets must be (N,) indices or (N, C) one-hot, got {tuple(targets.shape)}"
        )
    positives = (targets > 0).sum(dim=1)
    if bool((positives != 1).any()):
        row = int((positives != 1).nonzero()[0, 0])
        raise ValueError(
            f"single-label targets need exactly one class per clip; row {row} has "
            f"{int(positives[row])}"
        )
    return targets.argmax(dim=1)


def _check(targets: Tensor, probs: Tensor) -> tuple[Tensor, Tensor]:
    if probs.dim() != 2 or probs.shape[0] == 0:
        raise ValueError(
            f"probabilities must be a non-empty (N, C) tensor, got {tuple(probs.shape)}"
        )
    y = class_indices(targets).to(probs.device)
    if y.shape[0] != probs.shape[0]:
        raise ValueError(f"{y.shape[0]} targets for {probs.shape[0]} predictions")
    if bool(((y < 0) | (y >= probs.shape[1])).any()):
        raise ValueError(f"class indices must lie in 0..{probs.shape[1] - 1}")
    return y, probs.detach().to(torch.float64)


def accuracy(targets: Tensor, probs: Tensor) -> float:
    """Fraction of clips whose highest-scoring class is the true one (first maximum on ties)."""
    y, p = _check(targets, probs)
    return float((p.argmax(dim=1) == y).double().mean())


def log_loss(targets: Tensor, probs: Tensor) -> float:
    """Mean of -ln p(true class), probabilities clipped to [eps, 1 - eps] (float64 eps)."""
    y, p = _check(targets, probs)
    eps = torch.finfo(torch.float64).eps
    true = p.gather(1, y[:, None]).squeeze(1).clamp(eps, 1.0 - eps)
    return float(-true.log().mean())


def classification_metrics(targets: Tensor, probs: Tensor) -> dict[str, float]:
    """Accuracy and log loss, with what a model that knows only the class frequencies reaches:
    the majority class's share and the entropy of the eval split's class distribution."""
    y, _ = _check(targets, probs)
    freq = torch.bincount(y, minlength=probs.shape[1]).double() / y.numel()
    nonzero = freq[freq > 0]
    return {
        "accuracy": accuracy(targets, probs),
        "log_loss": log_loss(targets, probs),
        "chance_accuracy": float(freq.max()),
        "chance_log_loss": float(-(nonzero * nonzero.log()).sum()),
        "uniform_log_loss": math.log(probs.shape[1]),
    }
