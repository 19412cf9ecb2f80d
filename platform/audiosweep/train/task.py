"""The label type of a dataset decides the loss, the activation and the eval metrics.

- ``multilabel`` (AudioSet tagging): sigmoid per class; BCE or focal loss; mAP, AUC and d'.
- ``singlelabel`` (acoustic scene classification): softmax over classes; cross-entropy or the
  SP4ASC report's softmax focal loss; accuracy and log loss (plus one-vs-rest mAP, so the
  per-class AP file and ``best_map`` exist for every run).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from audiosweep.config import ConfigError, TrialConfig

__all__ = ["Task", "MultiLabel", "SingleLabel", "task_for", "TASKS"]


class Task:
    name = ""
    activation = ""
    # Scalar eval metrics a trial reports and a sweep compares (key, higher is better).
    summary_metrics: tuple[tuple[str, bool], ...] = ()

    def loss(self, cfg: TrialConfig) -> nn.Module:
        raise NotImplementedError

    def metrics(self, targets: Tensor, probs: Tensor) -> dict[str, Any]:
        """``eval_*`` scalars and ``per_class_ap`` (a (C,) tensor) of gathered predictions."""
        raise NotImplementedError

    def epoch_line(self, metrics: dict[str, Any]) -> str:
        raise NotImplementedError


def _tagging(targets: Tensor, probs: Tensor) -> dict[str, Any]:
    from audiosweep.train.metrics_multilabel import tagging_metrics

    m = tagging_metrics(targets, probs)
    prevalence = targets.mean(0)
    return {
        # What random scores reach: mAP is averaged over the classes with positives.
        "eval_chance_map": float(prevalence[prevalence > 0].mean()),
        "eval_map": float(m["map"]),
        "eval_map_excluded_classes": int(m["map_excluded"]),
        "eval_mean_auc": float(m["mean_auc"]),
        "eval_dprime": float(m["dprime_of_mean_auc"]),
        "eval_mean_dprime": float(m["mean_dprime"]),
        "per_class_ap": m["per_class_ap"].cpu(),
    }


class MultiLabel(Task):
    name = "multilabel"
    activation = "sigmoid"
    summary_metrics = (("eval_map", True),)

    def loss(self, cfg: TrialConfig) -> nn.Module:
        from audiosweep.train.losses import build_loss

        if cfg.train.loss.startswith("focal"):
            return build_loss(cfg.train.loss, gamma=cfg.train.focal_gamma)
        return build_loss(cfg.train.loss)

    def metrics(self, targets: Tensor, probs: Tensor) -> dict[str, Any]:
        return _tagging(targets, probs)

    def epoch_line(self, metrics: dict[str, Any]) -> str:
        return f"mAP {metrics['eval_map']:.4f} d' {metrics['eval_dprime']:.3f}"


class SingleLabel(Task):
    name = "singlelabel"
    activation = "softmax"
    summary_metrics = (("eval_accuracy", True), ("eval_log_loss", False))

    def loss(self, cfg: TrialConfig) -> nn.Module:
        from audiosweep.train.losses import build_loss

        name = cfg.train.loss
        if name == "ce":
            return build_loss("ce")
        if name in ("focal", "focal_softmax"):
            return build_loss("focal_softmax", gamma=cfg.train.focal_gamma)
        raise ConfigError(
            f"train.loss={name!r} scores every class on its own; a single-label dataset trains "
            "with train.loss=ce or train.loss=focal (softmax focal loss)"
        )

    def metrics(self, targets: Tensor, probs: Tensor) -> dict[str, Any]:
        from audiosweep.train.metrics_singlelabel import classification_metrics

        m = classification_metrics(targets, probs)
        out = {f"eval_{k}": v for k, v in m.items()}
        tagging = _tagging(targets, probs)
        out["eval_map"] = tagging["eval_map"]
        out["per_class_ap"] = tagging["per_class_ap"]
        return out

    def epoch_line(self, metrics: dict[str, Any]) -> str:
        return f"acc {metrics['eval_accuracy']:.4f} log loss {metrics['eval_log_loss']:.4f}"


TASKS: dict[str, Task] = {"multilabel": MultiLabel(), "singlelabel": SingleLabel()}


def task_for(cfg_or_name: TrialConfig | str) -> Task:
    """The task of a resolved config (``data.task``) or by name; ``auto`` reads as multi-label
    until `resolve_trial` has set it from the dataset."""
    name = cfg_or_name if isinstance(cfg_or_name, str) else cfg_or_name.data.task
    if name == "auto":
        name = "multilabel"
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(
            f"data.task must be one of {sorted(TASKS)} or auto, not {name!r}"
        ) from None
