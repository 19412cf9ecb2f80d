"""What the worker loop asks of the run that started it, handed to the loop as an object: rank and
world, the checkpoint to resume from, its dataset shards, the device, and where each epoch's
report goes.

Two runs start the loop. In a Ray Train worker (`RayTrainSession`) these are Ray Train's own
calls. A one-worker trial run in its caller's process (`in_process.InProcessSession`) answers
them itself: inside a Tune trial Ray refuses ``ray.train.*``, which belong to Ray Train's
workers. The loop sees only this interface, so it cannot tell which of the two ran it.
"""

from __future__ import annotations

from typing import Any

import ray.train
from ray.train import Checkpoint


class WorkerSession:
    """The run a worker loop belongs to."""

    rank: int = 0
    world: int = 1

    def checkpoint(self) -> Checkpoint | None:
        """The checkpoint to resume from (None: a fresh start)."""
        raise NotImplementedError

    def dataset_shard(self, name: str) -> Any:
        """This worker's part of the dataset `name` (a Ray Data iterator)."""
        raise NotImplementedError

    def device(self) -> Any:
        raise NotImplementedError

    def prepare_model(self, model: Any) -> Any:
        """`model` on the run's device, wrapped for DDP when the run has several workers."""
        raise NotImplementedError

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        """The epoch's metrics (every rank) and rank 0's checkpoint."""
        raise NotImplementedError


class RayTrainSession(WorkerSession):
    """A worker of a Ray Train run: each answer is Ray Train's."""

    def __init__(self) -> None:
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()

    def checkpoint(self) -> Checkpoint | None:
        return ray.train.get_checkpoint()

    def dataset_shard(self, name: str) -> Any:
        return ray.train.get_dataset_shard(name)

    def device(self) -> Any:
        import ray.train.torch

        return ray.train.torch.get_device()

    def prepare_model(self, model: Any) -> Any:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        ray.train.report(metrics, checkpoint=checkpoint)
