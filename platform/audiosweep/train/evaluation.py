"""Per-epoch evaluation on every eval clip once, gathered over the workers: the task's metrics
of the plain predictions, of the test-time augmented ones and of the EMA weights."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiosweep.config import TrialConfig
from audiosweep.train import checkpoint as ckpt
from audiosweep.train import session
from audiosweep.train.batches import iterate
from audiosweep.train.gather import gather_rows, gather_strings
from audiosweep.train.pipeline import TrainingPipeline
from audiosweep.train.seeding import derive_seed


@torch.no_grad()
def evaluate(
    model: nn.Module,
    pipe: TrainingPipeline,
    shard: Any,
    *,
    cfg: TrialConfig,
    num_classes: int,
    epoch: int = 0,
    tta: bool = False,
    ema: nn.Module | None = None,
) -> dict[str, Any]:
    """Metrics of the plain predictions (``eval_*``), with ``tta`` also of the test-time
    augmented ones (``eval_*_tta``; SP4ASC evaluates those once, after training), and with
    ``ema`` the same for the averaged weights on the same batches (``..._ema``)."""
    # Eval shards differ in length across ranks, so the forward must not go through DDP, whose
    # forward broadcasts buffers (a collective a rank with fewer batches would never join).
    models = {"": ckpt.unwrap(model), **({"_ema": ema} if ema is not None else {})}
    for m in models.values():
        m.eval()
    rank, _ = session.world_rank_and_size()
    scores: dict[str, list[torch.Tensor]] = {}
    targets, ids = [], []
    device = pipe.device
    batches = iterate(shard, cfg.train.eval_batch_size, device, drop_last=False)
    for index, batch in enumerate(batches):
        seed = derive_seed(cfg.train.seed, "tta", rank, epoch, index)
        for model_suffix, m in models.items():
            with pipe.optim.autocast():
                views = pipe.inputs.predict(m, batch["waveform"], tta=tta, seed=seed)
            for view_suffix, probs in views.items():
                scores.setdefault(view_suffix + model_suffix, []).append(probs.float())
        targets.append(batch["target"].float())
        ids.extend(batch["clip_id"])
    empty = torch.zeros(0, num_classes, device=device)
    all_targets = gather_rows(torch.cat(targets) if targets else empty)
    all_ids = gather_strings(ids)
    if len(set(all_ids)) != len(all_ids):
        raise RuntimeError(f"evaluation saw {len(all_ids) - len(set(all_ids))} duplicate clips")
    # Every rank holds the same keys (TTA on or off, EMA or not), so the gathers below pair up.
    views = [""] + (["_tta"] if tta and pipe.inputs.has_tta else [])
    result: dict[str, Any] = {"eval_clips": len(all_ids)}
    for suffix in [view + model_suffix for model_suffix in models for view in views]:
        local = scores.get(suffix, [])
        gathered = gather_rows(torch.cat(local) if local else empty)
        metrics = pipe.task.metrics(all_targets, gathered)
        per_class_ap = metrics.pop("per_class_ap")
        if not suffix:
            result["per_class_ap"] = per_class_ap
        result.update({f"{k}{suffix}": v for k, v in metrics.items()})
    return result


def write_per_class_ap(path: Path, class_names: list[str], ap: torch.Tensor) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "display_name", "ap"])
        for i, (name, value) in enumerate(zip(class_names, ap.tolist(), strict=True)):
            writer.writerow([i, name, "" if math.isnan(value) else f"{value:.6f}"])
