"""Training losses selectable by name: BCE, focal (multi-label sigmoid or single-label softmax), CE.

Focal loss (Lin et al. 2017, as used by SP4ASC with gamma = 1): ``-(1 - p_t)^gamma * log(p_t)``.
- ``"focal"`` (default form, for multi-label tagging): sigmoid per class, p_t = p for a positive
  and 1 - p for a negative; averaged over all (sample, class) entries like BCEWithLogitsLoss, to
  which it reduces at gamma = 0. Soft targets (mixup, smoothing) follow torchvision:
  ``BCE(logit, y) * (1 - p_t)^gamma`` with ``p_t = p*y + (1-p)*(1-y)``.
- ``"focal_softmax"`` (the SP4ASC report's form, single-label): softmax over classes, p_t the
  probability of the true class, averaged over the batch. Targets are class indices or (B, C)
  probabilities; with probabilities the loss is ``sum_c y_c (1 - p_c)^gamma (-log p_c)``, equal
  to the report's for one-hot targets.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

__all__ = ["BinaryFocalLoss", "SoftmaxFocalLoss", "build_loss", "LOSSES"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


class _FocalLoss(nn.Module):
    """Shared settings of the focal losses: the focusing exponent and the reduction."""

    def __init__(self, gamma: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, reduction={self.reduction!r}"


class BinaryFocalLoss(_FocalLoss):
    """Multi-label focal loss on logits (B, C) and multi-hot or soft targets (B, C)."""

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if logits.shape != targets.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must match"
            )
        return sigmoid_focal_loss(
            logits, targets.to(logits.dtype), alpha=-1, gamma=self.gamma, reduction=self.reduction
        )


class SoftmaxFocalLoss(_FocalLoss):
    """Single-label focal loss on logits (B, C); targets are indices (B,) or probabilities (B, C)."""

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if logits.dim() != 2:
            raise ValueError(f"logits must be (B, C), got {tuple(logits.shape)}")
        log_p = F.log_softmax(logits, dim=1)
        if targets.dim() == 1:
            if targets.dtype.is_floating_point:
                raise ValueError("class-index targets must be an integer tensor")
            targets = F.one_hot(targets.long(), num_classes=logits.shape[1])
        if targets.shape != logits.shape:
            raise ValueError(
                f"targets must be (B,) indices or (B, C) = {tuple(logits.shape)}, "
                f"got {tuple(targets.shape)}"
            )
        weight = (1.0 - log_p.exp()) ** self.gamma
        loss = -(targets.to(log_p.dtype) * weight * log_p).sum(dim=1)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


def _bce(**kw) -> nn.Module:
    return nn.BCEWithLogitsLoss(**kw)


def _ce(**kw) -> nn.Module:
    return nn.CrossEntropyLoss(**kw)


LOSSES = {
    "bce": _bce,
    "focal": BinaryFocalLoss,
    "focal_softmax": SoftmaxFocalLoss,
    "ce": _ce,
}


def build_loss(name: str, **kw) -> nn.Module:
    """Loss module by name: ``bce``, ``focal`` (sigmoid, multi-label), ``focal_softmax``, ``ce``.

    Keyword arguments go to the loss (e.g. ``gamma=1.0``, ``reduction="mean"``).
    """
    try:
        factory = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
    return factory(**kw)
