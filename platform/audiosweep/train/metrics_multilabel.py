"""Multi-label tagging metrics in vectorised torch: per-class AP, mAP, ROC AUC and d-prime.

Semantics follow scikit-learn: tied scores form a single threshold, so AP equals
``average_precision_score(average=None)`` and AUC equals ``roc_auc_score`` (ties count half).
All classes are processed at once (sort per column, cumulative sums), on any device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "average_precision",
    "mean_average_precision",
    "map_with_excluded",
    "auc_dprime",
    "roc_auc",
    "tagging_metrics",
]


def _check(targets: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """Validate and return (targets, scores) as float64 (N, C) tensors on the scores' device."""
    if not isinstance(targets, Tensor) or not isinstance(scores, Tensor):
        raise TypeError("targets and scores must be torch tensors")
    if targets.dim() == 1:
        targets = targets.unsqueeze(1)
    if scores.dim() == 1:
        scores = scores.unsqueeze(1)
    if targets.dim() != 2 or targets.shape != scores.shape:
        raise ValueError(
            f"targets and scores must both be (N, C) with the same shape; "
            f"got targets {tuple(targets.shape)} and scores {tuple(scores.shape)}"
        )
    if targets.shape[0] == 0:
        raise ValueError("targets and scores are empty (N = 0)")
    scores = scores.detach().to(torch.float64)
    targets = targets.detach().to(device=scores.device, dtype=torch.float64)
    if not bool(torch.isfinite(scores).all()):
        bad = (~torch.isfinite(scores)).nonzero()[0].tolist()
        raise ValueError(f"scores contain NaN or infinity (first at row {bad[0]}, class {bad[1]})")
    if not bool(((targets == 0) | (targets == 1)).all()):
        bad = ((targets != 0) & (targets != 1)).nonzero()[0].tolist()
        raise ValueError(
            f"targets must be binary (0/1); found {targets[bad[0], bad[1]].item()} "
            f"at row {bad[0]}, class {bad[1]}"
        )
    return targets, scores


class _Ranking:
    """Per-class ranking by descending score, in a (C, N) layout (contiguous per class).

    ``t``: sorted targets; ``tps``: cumulative true positives; ``first``/``last``: for every
    position, the index of the first/last element of its tie group (one shared threshold).
    """

    def __init__(self, targets: Tensor, scores: Tensor) -> None:
        scores = scores.t().contiguous()
        n = scores.shape[1]
        sorted_scores, order = torch.sort(scores, dim=1, descending=True)
        self.t = torch.gather(targets.t(), 1, order)
        self.tps = torch.cumsum(self.t, dim=1)
        pos = torch.arange(n, device=scores.device).expand_as(scores)
        differs = sorted_scores[:, 1:] != sorted_scores[:, :-1]
        edge = torch.ones((scores.shape[0], 1), dtype=torch.bool, device=scores.device)
        is_last = torch.cat([differs, edge], dim=1)
        is_first = torch.cat([edge, differs], dim=1)
        # First index of a group: running max of group starts; last: reversed running min.
        self.first = torch.cummax(torch.where(is_first, pos, 0), dim=1).values
        last_marks = torch.where(is_last, pos, n)
        self.last = torch.flip(torch.cummin(torch.flip(last_marks, [1]), dim=1).values, [1])
        self.n_pos = self.t.sum(dim=1)
        self.n = n

    def average_precision(self) -> Tensor:
        """AP = sum over thresholds of (R_k - R_{k-1}) * P_k: every positive contributes the
        precision at the end of its tie group, divided by the number of positives."""
        rank = torch.arange(1, self.n + 1, device=self.t.device, dtype=torch.float64)
        precision_at_threshold = torch.gather(self.tps / rank, 1, self.last)
        ap = (self.t * precision_at_threshold).sum(dim=1) / self.n_pos
        return torch.where(self.n_pos > 0, ap, float("nan"))

    def roc_auc(self) -> Tensor:
        """Each negative scores the positives ranked strictly above it plus half of those tied
        with it: the trapezoidal area under the ROC curve."""
        tps_at_end = torch.gather(self.tps, 1, self.last)
        before = torch.gather(self.tps, 1, (self.first - 1).clamp(min=0))
        tps_before = torch.where(self.first > 0, before, 0.0)
        n_neg = self.n - self.n_pos
        wins = ((1.0 - self.t) * (tps_before + tps_at_end) / 2.0).sum(dim=1)
        auc = wins / (self.n_pos * n_neg)
        return torch.where((self.n_pos > 0) & (n_neg > 0), auc, float("nan"))


def average_precision(targets: Tensor, scores: Tensor) -> Tensor:
    """Per-class average precision, shape (C,); NaN for classes without positives."""
    return _Ranking(*_check(targets, scores)).average_precision()


def _map(ap: Tensor) -> tuple[float, int]:
    valid = ~torch.isnan(ap)
    n_excluded = int((~valid).sum().item())
    if not bool(valid.any()):
        return float("nan"), n_excluded
    return float(ap[valid].mean().item()), n_excluded


def map_with_excluded(targets: Tensor, scores: Tensor) -> tuple[float, int]:
    """(mAP over classes with at least one positive, number of classes excluded)."""
    return _map(average_precision(targets, scores))


def mean_average_precision(targets: Tensor, scores: Tensor) -> float:
    """Macro mAP over classes with at least one positive."""
    return map_with_excluded(targets, scores)[0]


def roc_auc(targets: Tensor, scores: Tensor) -> Tensor:
    """Per-class ROC AUC, shape (C,); NaN where a class has no positives or no negatives."""
    return _Ranking(*_check(targets, scores)).roc_auc()


def _dprime(auc: Tensor) -> Tensor:
    return math.sqrt(2.0) * torch.special.ndtri(auc)


def _auc_summary(auc: Tensor) -> dict:
    valid = ~torch.isnan(auc)
    per_class_dprime = _dprime(auc)
    if bool(valid.any()):
        mean_auc = float(auc[valid].mean().item())
        mean_dprime = float(per_class_dprime[valid].mean().item())
        dprime_of_mean = float(_dprime(torch.tensor(mean_auc, dtype=torch.float64)).item())
    else:
        mean_auc = mean_dprime = dprime_of_mean = float("nan")
    return {
        "mean_auc": mean_auc,
        "dprime_of_mean_auc": dprime_of_mean,
        "mean_dprime": mean_dprime,
        "per_class_auc": auc,
        "per_class_dprime": per_class_dprime,
        "excluded": int((~valid).sum().item()),
    }


def auc_dprime(targets: Tensor, scores: Tensor) -> dict:
    """Mean ROC AUC and the two d-prime summaries.

    Keys: ``mean_auc``; ``dprime_of_mean_auc`` = sqrt(2) * Phi^-1(mean AUC); ``mean_dprime`` =
    mean of per-class sqrt(2) * Phi^-1(AUC_c) (infinite if some class has AUC 0 or 1);
    ``per_class_auc`` and ``per_class_dprime`` (NaN for excluded classes); ``excluded``: number
    of classes without positives or without negatives, where AUC is undefined.
    """
    return _auc_summary(roc_auc(targets, scores))


def tagging_metrics(targets: Tensor, scores: Tensor) -> dict:
    """Everything from one ranking: the :func:`auc_dprime` keys, renamed ``auc_excluded`` for
    its exclusion count, plus ``map``, ``per_class_ap`` and ``map_excluded``."""
    ranking = _Ranking(*_check(targets, scores))
    ap = ranking.average_precision()
    mean_ap, map_excluded = _map(ap)
    summary = _auc_summary(ranking.roc_auc())
    summary["auc_excluded"] = summary.pop("excluded")
    return {"map": mean_ap, "per_class_ap": ap, "map_excluded": map_excluded, **summary}
