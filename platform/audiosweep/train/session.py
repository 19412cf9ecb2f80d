"""What the worker loop asks of its run: rank and world, the checkpoint to resume from, its
dataset shards, the device, and where each epoch's report goes.

In a Ray Train worker these are Ray Train's own calls. A one-worker trial run in its caller's
process (`in_process.py`) answers them itself: inside a Tune trial Ray refuses `ray.train.*`
(they belong to Ray Train's workers), and the loop must not need to know which of the two ran it.
"""

from __future__ import annotations

from typing import Any

import ray.train
import ray.train.torch
import torch
from torch import nn

from audiosweep.train import in_process


def world_rank_and_size() -> tuple[int, int]:
    if in_process.current() is not None:
        return 0, 1
    ctx = ray.train.get_context()
    return ctx.get_world_rank(), ctx.get_world_size()


def get_checkpoint() -> ray.train.Checkpoint | None:
    run = in_process.current()
    return run.checkpoint if run is not None else ray.train.get_checkpoint()


def get_dataset_shard(name: str) -> Any:
    run = in_process.current()
    return run.shards[name] if run is not None else ray.train.get_dataset_shard(name)


def get_device() -> torch.device:
    if in_process.current() is None:
        return ray.train.torch.get_device()
    # A trial that reserved a GPU sees only that one (Ray sets CUDA_VISIBLE_DEVICES).
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def prepare_model(model: nn.Module) -> nn.Module:
    """On the run's device; wrapped for DDP when the run has several workers."""
    if in_process.current() is None:
        return ray.train.torch.prepare_model(model)
    device = get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return model.to(device)


def report(metrics: dict[str, Any], checkpoint: ray.train.Checkpoint | None = None) -> None:
    run = in_process.current()
    if run is not None:
        run.report(metrics, checkpoint)
    else:
        ray.train.report(metrics, checkpoint=checkpoint)
