"""One training epoch of a worker: augment → front end → mixup → model → loss → (accumulated)
optimizer step, in lockstep with the other workers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from audiosweep.config import TrialConfig
from audiosweep.train import checkpoint as ckpt
from audiosweep.train.batches import iterate
from audiosweep.train.ema import WeightEma
from audiosweep.train.gather import gather_rows
from audiosweep.train.pipeline import TrainingPipeline
from audiosweep.train.seeding import derive_seed
from audiosweep.train.throughput import StepTimer


def train_batches(shard: Any, cfg: TrialConfig, device: torch.device, *, rank: int, epoch: int):
    """This worker's training batches of `epoch`, shuffled locally from (seed, rank, epoch)."""
    return iterate(
        shard,
        cfg.train.batch_size,
        device,
        shuffle_buffer=cfg.data.shuffle_buffer,
        shuffle_seed=derive_seed(cfg.train.seed, "shuffle", rank, epoch),
        drop_last=True,
    )


def train_one_epoch(
    model: nn.Module,
    pipe: TrainingPipeline,
    batches: Iterable[dict[str, Any]],
    *,
    timer: StepTimer,
    ema: WeightEma | None = None,
) -> float:
    """Mean training loss of the epoch over all workers."""
    model.train()
    accum = pipe.optim.accumulation_steps
    # Summed on the device: read back once per epoch, not once per step.
    loss_sum = torch.zeros((), device=pipe.device)
    steps = 0
    pipe.optim.optimizer.zero_grad(set_to_none=True)
    timer.begin_epoch()
    for step, batch in enumerate(batches):
        if (
            step >= pipe.optim.batches_per_epoch
        ):  # the same step count on every rank keeps DDP in lockstep
            break
        spec, target = pipe.inputs.train_inputs(batch["waveform"], batch["target"])
        sync_now = (step + 1) % accum == 0
        no_sync = (
            model.no_sync
            if (hasattr(model, "no_sync") and not sync_now)
            else contextlib.nullcontext
        )
        with no_sync(), pipe.optim.autocast():
            loss = pipe.loss_fn(model(spec), target)
        pipe.optim.backward(loss / accum)
        if sync_now:
            pipe.optim.step(model)
            if ema is not None:
                ema.update(ckpt.unwrap(model))
        loss_sum += loss.detach().float()
        steps += 1
        timer.step(spec.shape[0])
    timer.end_epoch()
    mean = loss_sum / steps if steps else torch.full((), float("nan"), device=pipe.device)
    return float(gather_rows(mean.reshape(1)).mean().item())
