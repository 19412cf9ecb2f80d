"""Run one trial as a Ray Train `TorchTrainer` over Ray Data shards."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2.api.callback import UserCallback

from audiosweep.config import TrialConfig
from audiosweep.layout import (
    CHECKPOINT_POINTER,
    CONFIG_FILE,
    METRICS_FILE,
    RUN_FILES_FROM_CHECKPOINT,
    RunLayout,
)
from audiosweep.storage import Folder
from audiosweep.train.checks import resolve_trial
from audiosweep.train.failures import TrialTrainer
from audiosweep.train.loop import train_loop_per_worker
from audiosweep.train.seeding import derive_seed


class ExactEvalDataConfig(DataConfig):
    """Train split equally (DDP steps stay in lockstep); eval split unequally, so that every
    eval clip goes to exactly one worker instead of being dropped or padded.

    Which rows a worker gets must not depend on where and when Ray ran the read tasks, or a
    run resumed on another node trains on other batches than the uninterrupted one: blocks
    leave the reader in the plan's order (`preserve_order`), and Ray Data's split hands them
    out by row count only, not by the node that read them (no shard locality; the shards are
    read from a shared file system or an object store anyway).

    Ray Train configures one dataset per call, when the workers first ask for its shard.
    """

    def __init__(self, eval_name: str = "eval") -> None:
        super().__init__(datasets_to_split="all", enable_shard_locality=False)
        self._eval_name = eval_name

    def _resolve_execution_options(self, dataset_name: str):
        options = super()._resolve_execution_options(dataset_name)
        options.preserve_order = True
        return options

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        output = [{} for _ in range(world_size)]
        for name, ds in datasets.items():
            if name != self._eval_name:
                part = super().configure(
                    {name: ds}, world_size, worker_handles, worker_node_ids, **kwargs
                )
                for i in range(world_size):
                    output[i].update(part[i])
                continue
            ds = ds.copy(ds)
            if ds.name is None:
                ds.set_name(name)
            ds.context.execution_options = self._resolve_execution_options(name)
            hints = worker_node_ids if self._enable_shard_locality else None
            for i, split in enumerate(
                ds.streaming_split(world_size, equal=False, locality_hints=hints)
            ):
                output[i][name] = split
        return output


class RunFolderCallback(UserCallback):
    """Writes each epoch's metrics (JSONL) and the small files of its checkpoint (per-class AP,
    DCLS positions, init report; the final weights after the last epoch) into the run folder
    (a local path or a URI, see `storage.py`) as soon as a report and its checkpoint are
    persisted."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir

    def after_report(self, run_context, metrics, checkpoint) -> None:
        folder = Folder(self.run_dir)
        row = {k: _jsonable(v) for k, v in metrics[0].items()}
        folder.append_line(METRICS_FILE, json.dumps(row))
        if checkpoint is None:
            return
        with checkpoint.as_directory() as directory:
            for name in RUN_FILES_FROM_CHECKPOINT:
                src = Path(directory) / name
                if src.is_file():
                    folder.upload(src, name)
        folder.write_text(CHECKPOINT_POINTER, checkpoint.path + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


@dataclass
class TrialResult:
    run_dir: str  # a local path or a URI
    metrics: dict[str, Any]
    checkpoint_path: str | None
    raw: Any = None  # Ray Train's Result


def worker_gpus(cfg: TrialConfig) -> float:
    """`train.gpus_per_worker`, else one GPU per worker if any node the cluster can grow to
    has one (not only the nodes alive now: GPU workers often scale from zero)."""
    if cfg.train.gpus_per_worker is not None:
        return cfg.train.gpus_per_worker
    from audiosweep.sweep.capacity import cluster_capacity, default_worker_gpus

    return default_worker_gpus(cluster_capacity().node_types)


def build_trainer(
    cfg: TrialConfig,
    *,
    run_root: str,
    name: str,
    callbacks: list[Any] | None = None,
) -> TorchTrainer:
    """A TorchTrainer for one trial; `cfg` must come from `resolve_trial`."""
    from audiosweep.data import DatasetInfo, EpochClock, read_split, rows_per_epoch

    info = DatasetInfo.load(cfg.data.path)
    layout = RunLayout.at(run_root)
    run_dir = layout.trial(name).folder
    run_dir.makedirs()
    run_dir.write_text(CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    # The workers set the clock before each epoch; the train split is then read in that epoch's
    # order (and draws), planned from (seed, epoch).
    epoch_clock = EpochClock.new()
    datasets = {
        "train": read_split(
            cfg.data.path,
            cfg.data.train_split,
            clip_seconds=cfg.data.clip_seconds,
            task_cpus=cfg.data.task_cpus,
            seed=derive_seed(cfg.train.seed, "data"),
            epoch=epoch_clock,
            sampling=cfg.data.sampling,
            samples_per_epoch=cfg.data.samples_per_epoch,
            mix_rows=cfg.data.mix_rows,
        ),
        # Every eval clip once, in a fixed order, through the same datasource as training:
        # Ray's own Parquet reader samples file footers with tasks that each need a whole
        # CPU, which wait indefinitely while running trials hold fractions of every core.
        "eval": read_split(
            cfg.data.path,
            cfg.data.eval_split,
            clip_seconds=cfg.data.clip_seconds,
            with_clip_id=True,
            task_cpus=cfg.data.task_cpus,
            epoch=0,
        ),
    }
    gpus = worker_gpus(cfg)
    resources = {"CPU": cfg.train.cpus_per_worker, **({"GPU": gpus} if gpus else {})}
    return TrialTrainer(
        train_loop_per_worker,
        train_loop_config={
            "trial": cfg.to_dict(),
            "num_classes": info.num_classes,
            "class_names": info.class_names,
            "train_rows": rows_per_epoch(
                info.rows(cfg.data.train_split), cfg.data.sampling, cfg.data.samples_per_epoch
            ),
            "epoch_clock": epoch_clock.name,
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.train.num_workers, use_gpu=gpus > 0, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=name,
            storage_path=layout.root,  # a path or a URI: Ray writes through pyarrow's file systems
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
            callbacks=[RunFolderCallback(run_dir.location), *(callbacks or [])],
        ),
        datasets=datasets,
        dataset_config=ExactEvalDataConfig(),
    )


def run_trial(
    cfg: TrialConfig,
    *,
    run_root: str | None = None,
    name: str | None = None,
    callbacks: list[Any] | None = None,
) -> TrialResult:
    """Train one trial to completion (resuming from its run folder if it was interrupted)."""
    cfg, _ = resolve_trial(cfg)
    trial = RunLayout.at(run_root or cfg.run_root).trial(name or cfg.name)
    trainer = build_trainer(cfg, run_root=trial.root, name=trial.name, callbacks=callbacks)
    result = trainer.fit()
    return TrialResult(
        run_dir=trial.dir,
        metrics=dict(result.metrics or {}),
        checkpoint_path=result.checkpoint.path if result.checkpoint else None,
        raw=result,
    )
