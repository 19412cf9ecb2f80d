"""How a trial's datasets are split over its Ray Train workers.

Kept apart from `trainer.py`: Ray Train unpickles this config in its controller and dataset
manager, fresh processes that would otherwise import torch, timm and the models with it.
"""

from __future__ import annotations

from ray.train import DataConfig


class ExactEvalDataConfig(DataConfig):
    """Train split equally (DDP steps stay in lockstep); eval split unequally, so that every
    eval clip goes to exactly one worker instead of being dropped or padded.

    Which rows a worker gets must not depend on where and when Ray ran the read tasks, or a
    run resumed on another node trains on other batches than the uninterrupted one: blocks
    leave the reader in the plan's order (`preserve_order`), and Ray Data's split hands them
    out by row count only, not by the node that read them (no shard locality; the shards are
    read from a shared file system or an object store anyway).

    A single worker reads each dataset itself (`Dataset.iterator`, executed in the worker's
    process) instead of through a one-way `streaming_split`: the same rows in the same order,
    without the split's coordinator actor, a process of its own per dataset and trial.

    Ray Train configures one dataset per call, when the workers first ask for its shard.
    """

    def __init__(self, eval_names: tuple[str, ...] = ("eval", "val")) -> None:
        super().__init__(datasets_to_split="all", enable_shard_locality=False)
        self._eval_names = eval_names

    @staticmethod
    def default_ingest_options():
        options = DataConfig.default_ingest_options()
        options.preserve_order = True
        return options

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        if world_size == 1:
            return [{name: self._prepared(name, ds).iterator() for name, ds in datasets.items()}]
        output = [{} for _ in range(world_size)]
        for name, ds in datasets.items():
            if name not in self._eval_names:
                part = super().configure(
                    {name: ds}, world_size, worker_handles, worker_node_ids, **kwargs
                )
                for i in range(world_size):
                    output[i].update(part[i])
                continue
            ds = self._prepared(name, ds)
            for i, split in enumerate(ds.streaming_split(world_size, equal=False)):
                output[i][name] = split
        return output

    def _prepared(self, name, ds):
        """A copy of `ds` named and with the ingest options, as `DataConfig.configure` makes."""
        ds = ds.copy(ds)
        if ds.name is None:
            ds.set_name(name)
        ds.context.execution_options = self.default_ingest_options()
        return ds
