"""The Tune function trainable: one trial = one multi-worker Ray Train run, tracked in MLflow.

Ray Train V2 trainers are not Tune trainables; this function builds the `TorchTrainer` inside
the Tune trial and forwards rank 0's reports to Tune with `TuneReportCallback`. A trial run in
process (``train.in_process``) reports to Tune directly, from this process.
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


def trial_overrides(config: dict[str, Any]) -> tuple[str, int, dict[str, Any], str]:
    """(case, seed, overrides, key) from a grid variant or an Optuna sample."""
    from audiosweep.sweep.spaces import Variant

    if "variant" in config:
        v = config["variant"]
        variant = Variant(case=v["case"], seed=v["seed"], overrides=dict(v["overrides"]))
    else:  # Optuna: the case is a categorical parameter, searched params come dotted
        case_overrides = dict(config["cases"][config["case"]])
        case_overrides.update(config.get("params", {}))
        case_overrides["train.seed"] = config["seed"]
        case = config["case"].replace(":", "/")
        variant = Variant(case=case, seed=config["seed"], overrides=case_overrides)
    return variant.case, variant.seed, variant.overrides, variant.key


def run_trial_in_tune(config: dict[str, Any], context: SweepContext) -> dict[str, Any]:
    from ray.tune.integration.ray_train import TuneReportCallback

    from audiosweep import tracking
    from audiosweep.layout import SweepLayout
    from audiosweep.ray_cluster import quiet_data_progress
    from audiosweep.train.checks import resolve_trial
    from audiosweep.train.trainer import run_trial

    quiet_data_progress()
    case, seed, overrides, key = trial_overrides(config)
    cfg = TrialConfig.from_dict(context.base).with_overrides(overrides)
    cfg, _ = resolve_trial(cfg.with_overrides({"name": key}))
    trial = SweepLayout(context.sweep_dir).trials.trial(key)
    arch, conv = case.split("/")
    mlflow = tracking.client(context.tracking_uri)
    run, _ = tracking.child_run(
        mlflow,
        family=context.family,
        sweep_id=context.sweep_id,
        parent_id=context.parent_run_id,
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
        return {**run.data.metrics, "already_finished": True}
    failed_before = run.data.tags.get(tracking.FAILURE_TAG)
    if failed_before:
        # Tune runs a failed trial once more, for a driver lost with its node; a failure that
        # would repeat is not run again.
        mlflow.set_terminated(run_id, status="FAILED")
        raise RuntimeError(f"{key} failed deterministically before; not re-run: {failed_before}")
    tracking.log_params(mlflow, run_id, cfg.flat())
    result = run_trial(
        cfg,
        trial=trial,
        tracker=TrialRun(context.tracking_uri, run_id, cfg),
        callbacks=[TuneReportHere() if cfg.train.in_process else TuneReportCallback()],
    )
    final = result.metrics
    return {**result.summary, "epoch": final.get("epoch"), "eval_map": final.get("eval_map")}


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
