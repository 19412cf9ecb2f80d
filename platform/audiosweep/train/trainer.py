"""Run one trial as a Ray Train `TorchTrainer` over Ray Data shards (or its one worker in this
process), from config to tracked summary: `run_trial`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from audiosweep.config import TrialConfig
from audiosweep.layout import CONFIG_FILE, RunLayout, TrialLayout
from audiosweep.ray_compat import fit_with_failure_policy
from audiosweep.train.data_split import ExactEvalDataConfig
from audiosweep.train.failures import DeterministicFailurePolicy, deterministic_reason
from audiosweep.train.loop import run_worker, train_loop_per_worker
from audiosweep.train.run_folder import RunFolderCallback
from audiosweep.train.seeding import derive_seed

if TYPE_CHECKING:
    from audiosweep.train.trial_run import TrialRun


class TrialTrainer(TorchTrainer):
    """`TorchTrainer` whose run is not retried after a deterministic failure
    (`failures.DeterministicFailurePolicy`, through `ray_compat`). With `in_process_dir` set,
    its one worker's loop runs in this process (`in_process.py`)."""

    in_process_dir: str | None = None

    def fit(self):
        if self.in_process_dir is not None:
            from audiosweep.train.in_process import fit_in_process

            return fit_in_process(self, self.in_process_dir, run_worker)
        if self.running_in_local_mode:
            return super().fit()
        policy = DeterministicFailurePolicy(self.run_config.failure_config)
        return fit_with_failure_policy(self, policy)


@dataclass
class TrialResult:
    run_dir: str  # a local path or a URI
    metrics: dict[str, Any]
    checkpoint_path: str | None
    summary: dict[str, Any] = field(default_factory=dict)  # the tracker's; empty if untracked


def worker_gpus(cfg: TrialConfig) -> float:
    """`train.gpus_per_worker`, else one GPU per worker if any node the cluster can grow to
    has one (not only the nodes alive now: GPU workers often scale from zero)."""
    if cfg.train.gpus_per_worker is not None:
        return cfg.train.gpus_per_worker
    from audiosweep.capacity import cluster_capacity, default_worker_gpus

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
    # order (and draws), planned from (seed, epoch). A single worker plans its own dataset
    # (`ExactEvalDataConfig`), so its clock lives in its process; several workers' train split
    # is planned by a split coordinator, which reads a shared clock (an actor).
    epoch_clock = EpochClock.new(shared=cfg.train.num_workers > 1)

    def every_clip_once(split: str):
        # Every clip once, in a fixed order, through the same datasource as training: Ray's own
        # Parquet reader samples file footers with tasks that each need a whole CPU, which wait
        # indefinitely while running trials hold fractions of every core.
        return read_split(
            cfg.data.path,
            split,
            clip_seconds=cfg.data.clip_seconds,
            with_clip_id=True,
            read_cpus=cfg.data.read_cpus,
            epoch=0,
        )

    datasets = {
        "train": read_split(
            cfg.data.path,
            cfg.data.train_split,
            clip_seconds=cfg.data.clip_seconds,
            read_cpus=cfg.data.read_cpus,
            seed=derive_seed(cfg.train.seed, "data"),
            epoch=epoch_clock,
            sampling=cfg.data.sampling,
            samples_per_epoch=cfg.data.samples_per_epoch,
            mix_rows=cfg.data.mix_rows,
        ),
        "eval": every_clip_once(cfg.data.eval_split),
    }
    if cfg.data.val_split:  # read like the eval split; it decides, eval only scores
        datasets["val"] = every_clip_once(cfg.data.val_split)
    gpus = worker_gpus(cfg)
    resources = {"CPU": cfg.train.cpus_per_worker, **({"GPU": gpus} if gpus else {})}
    trainer = TrialTrainer(
        train_loop_per_worker,
        train_loop_config={
            "trial": cfg.to_dict(),
            "num_classes": info.num_classes,
            "class_names": info.class_names,
            "train_rows": rows_per_epoch(
                info.rows(cfg.data.train_split), cfg.data.sampling, cfg.data.samples_per_epoch
            ),
            "epoch_clock": epoch_clock,
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
    if cfg.train.in_process:
        trainer.in_process_dir = run_dir.location
    return trainer


def run_trial(
    cfg: TrialConfig,
    *,
    trial: TrialLayout | None = None,
    tracker: TrialRun | None = None,
    callbacks: list[Any] | None = None,
) -> TrialResult:
    """One trial from config to summary, for `audiosweep train` and every sweep trial alike:
    trainer → training (resumed from its run folder if it was interrupted) → the tracker's
    summary. `cfg` comes checked from `resolve_trial` (each caller has resolved it already, for
    its MLflow params or its checks before Ray starts). `trial` defaults to the config's
    ``run_root``/``name``; `tracker` (an open MLflow run) logs every epoch and is closed with
    the summary, or as failed."""
    trial = trial or RunLayout.at(cfg.run_root).trial(cfg.name)
    trainer = build_trainer(
        cfg,
        run_root=trial.root,
        name=trial.name,
        # The tracker first: MLflow logs an epoch before Tune sees it, and a scheduler that
        # stops the trial on that report (ASHA) ends the trial before later callbacks run.
        callbacks=[*(tracker.callbacks() if tracker else []), *(callbacks or [])],
    )
    try:
        result = trainer.fit()
    except (Exception, KeyboardInterrupt) as err:
        # Not SystemExit: that is how Tune ends a trial its scheduler stopped (the sweep closes
        # those runs as stopped early).
        if tracker is not None:
            tracker.fail(deterministic_reason(err))
        raise
    return TrialResult(
        run_dir=trial.dir,
        metrics=dict(result.metrics or {}),
        checkpoint_path=result.checkpoint.path if result.checkpoint else None,
        summary=tracker.finish(result, trial.dir) if tracker is not None else {},
    )
