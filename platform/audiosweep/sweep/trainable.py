"""The Tune function trainable: one trial = one multi-worker Ray Train run, tracked in MLflow.

Ray Train V2 trainers are not Tune trainables; this function builds the `TorchTrainer` inside
the Tune trial and forwards rank 0's reports to Tune with `TuneReportCallback`. A trial run in
process (``train.in_process``) reports to Tune directly, from this process. With
``sweep.seeds_per_config`` > 1 a trial is a group of seeds (`sweep.seed_group`), each trained
by `run_seed` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray.train.v2.api.callback import UserCallback

from audiosweep.config import TrialConfig
from audiosweep.train.trial_run import TrialRun


@dataclass
class SweepContext:
    """What every trial of a sweep shares (passed with `tune.with_parameters`)."""

    sweep_id: str
    family: str
    space: str
    preset: str
    base: dict[str, Any]
    sweep_dir: str  # a local path or a URI
    tracking_uri: str
    parent_run_id: str
    git_commit: str
    # The metrics the searcher optimises: a trial measures `throughput_ratio_vs_dsc` only when
    # it is one of them.
    objectives: tuple[str, ...] = ("eval_map",)


@dataclass
class SeedOutcome:
    """One seed's trial as run (or found finished) by `run_seed`."""

    run_id: str
    cfg: TrialConfig  # resolved against the dataset
    num_classes: int
    result: dict[str, Any]  # what a single-seed trial reports to Tune last


def run_trial_in_tune(config: dict[str, Any], context: SweepContext) -> dict[str, Any] | None:
    from audiosweep import tracking
    from audiosweep.ray_cluster import quiet_data_progress
    from audiosweep.sweep.objectives import THROUGHPUT_RATIO, throughput_vs_dsc

    quiet_data_progress()
    if "seeds" in config:  # sweep.seeds_per_config > 1: one configuration, several seeds
        from audiosweep.sweep.seed_group import run_seed_group

        return run_seed_group(config, context, run_one=run_seed)
    # Tune wants every objective in every result, and the throughput objective exists only
    # once the trial has trained: such a trial reports once, at its end. (A search over it has
    # several objectives, hence no scheduler that would use per-epoch results.)
    per_epoch = THROUGHPUT_RATIO not in context.objectives
    outcome = run_seed(config, context, parent_id=context.parent_run_id, report_to_tune=per_epoch)
    # Measured after training (and again for a trial that finished but died before this).
    if not per_epoch and THROUGHPUT_RATIO not in outcome.result:
        cost = throughput_vs_dsc(outcome.cfg, outcome.num_classes)
        tracking.log_metrics(tracking.client(context.tracking_uri), outcome.run_id, cost, step=0)
        outcome.result.update(cost)
    return outcome.result


def run_seed(
    config: dict[str, Any], context: SweepContext, *, parent_id: str, report_to_tune: bool
) -> SeedOutcome:
    """Train one seed of a configuration as a child run of `parent_id` (the sweep's run, or a
    seed group's); with `report_to_tune`, each epoch goes to Tune as it is reported."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from audiosweep import tracking
    from audiosweep.layout import SweepLayout
    from audiosweep.sweep.spaces import trial_overrides
    from audiosweep.train.checks import resolve_trial
    from audiosweep.train.trainer import run_trial

    case, seed, overrides, key = trial_overrides(config)
    cfg = TrialConfig.from_dict(context.base).with_overrides(overrides)
    cfg, info = resolve_trial(cfg.with_overrides({"name": key}))
    trial = SweepLayout(context.sweep_dir).trials.trial(key)
    arch, conv = case.split("/")
    mlflow = tracking.client(context.tracking_uri)
    run, _ = tracking.child_run(
        mlflow,
        family=context.family,
        sweep_id=context.sweep_id,
        parent_id=parent_id,
        trial_key=key,
        tags={
            "arch": arch,
            "model_arch": cfg.model.arch,
            "conv": conv,
            "case": case,
            "seed": str(seed),
            "preset": context.preset,
            "space": context.space,
            "git_commit": context.git_commit,
        },
    )
    run_id = run.info.run_id
    if run.info.status == "FINISHED":
        # Finished before the sweep was interrupted (Tune's own state may lag behind):
        # report what it logged instead of touching it again.
        print(f"[audiosweep] {key} already finished; not re-run")
        result = {**run.data.metrics, "already_finished": True}
        return SeedOutcome(run_id, cfg, info.num_classes, result)
    failed_before = run.data.tags.get(tracking.FAILURE_TAG)
    if failed_before:
        # Tune runs a failed trial once more, for a driver lost with its node; a failure that
        # would repeat is not run again.
        mlflow.set_terminated(run_id, status="FAILED")
        raise RuntimeError(f"{key} failed deterministically before; not re-run: {failed_before}")
    tracking.log_params(mlflow, run_id, cfg.flat())
    callbacks = []
    if report_to_tune:
        callbacks = [TuneReportHere() if cfg.train.in_process else TuneReportCallback()]
    result = run_trial(
        cfg,
        trial=trial,
        tracker=TrialRun(context.tracking_uri, run_id, cfg),
        callbacks=callbacks,
    )
    final = result.metrics
    summary = {**result.summary, "epoch": final.get("epoch"), "eval_map": final.get("eval_map")}
    return SeedOutcome(run_id, cfg, info.num_classes, summary)


class TuneReportHere(UserCallback):
    """`TuneReportCallback` for a run whose loop reports in the Tune trial's own process: the
    same metrics and checkpoint path, handed to `ray.tune.report` without its queue actor."""

    def after_report(self, run_context, metrics, checkpoint) -> None:
        from ray import tune
        from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

        row = dict(metrics[0])
        if checkpoint is not None:
            row[CHECKPOINT_PATH_KEY] = checkpoint.path
        tune.report(row)
