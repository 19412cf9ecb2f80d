"""The Tune function trainable: one trial = one multi-worker Ray Train run, tracked in MLflow.

Ray Train V2 trainers are not Tune trainables; this function builds the `TorchTrainer` inside
the Tune trial and forwards rank 0's reports to Tune with `TuneReportCallback`.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiosweep.config import TrialConfig


@dataclass
class SweepContext:
    """What every trial of a sweep shares (passed with `tune.with_parameters`)."""

    sweep_id: str
    family: str
    space: str
    preset: str
    base: dict[str, Any]
    sweep_dir: str
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

    from audiosweep.ray_cluster import quiet_data_progress
    from audiosweep.sweep import tracking
    from audiosweep.train.trainer import build_trainer, resolve_trial

    quiet_data_progress()
    case, seed, overrides, key = trial_overrides(config)
    cfg = TrialConfig.from_dict(context.base).with_overrides(overrides)
    cfg, _ = resolve_trial(cfg.with_overrides({"name": key}))
    run_root = str(Path(context.sweep_dir) / "trials")
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
    tracking.log_params(mlflow, run_id, cfg.flat())
    trainer = build_trainer(
        cfg,
        run_root=run_root,
        name=key,
        callbacks=[
            TuneReportCallback(),
            tracking.MLflowEpochCallback(context.tracking_uri, run_id),
        ],
    )
    start = time.time()
    result = trainer.fit()
    final = dict(result.metrics or {})
    summary = {
        "final_map": final.get("eval_map"),
        "best_map": final.get("best_map"),
        "params_total": final.get("params_total"),
        "params_dcls_positions": final.get("params_dcls_positions"),
        "train_samples_per_s": final.get("train_samples_per_s"),
        "infer_samples_per_s": final.get("infer_samples_per_s"),
        "wall_time_s": time.time() - start,
    }
    tracking.log_metrics(mlflow, run_id, summary, step=int(final.get("epoch", 0)))
    if "node_id" in final:  # rank 0's node in the last epoch (a restarted trial may move)
        mlflow.set_tag(run_id, tracking.NODE_TAG, str(final["node_id"]))
    for tag in ("infer_shape", "infer_dtype", "infer_threads", "infer_device"):
        if tag in final:
            mlflow.set_tag(run_id, tag, str(final[tag]))
    log_trial_artifacts(mlflow, run_id, Path(run_root) / key, cfg, result.checkpoint)
    mlflow.set_terminated(run_id, status="FINISHED")
    return {**summary, "epoch": final.get("epoch"), "eval_map": final.get("eval_map")}


def log_trial_artifacts(mlflow, run_id: str, run_dir: Path, cfg: TrialConfig, checkpoint) -> None:
    from audiosweep.sweep import plots
    from audiosweep.train.checkpoint import load_training_state
    from audiosweep.train.trainer import CONFIG_FILE, METRICS_FILE

    for name in (CONFIG_FILE, METRICS_FILE, "per_class_ap.csv", "final_checkpoint.txt"):
        if (run_dir / name).is_file():
            mlflow.log_artifact(run_id, str(run_dir / name))
    with tempfile.TemporaryDirectory() as tmp:
        if (run_dir / METRICS_FILE).is_file():
            rows = plots.read_metrics(run_dir / METRICS_FILE)
            if rows:
                png = plots.learning_curves(rows, Path(tmp) / "learning_curves.png", title=cfg.case)
                mlflow.log_artifact(run_id, str(png))
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                extra = load_training_state(Path(directory))["extra"]
            png = plots.dcls_positions_plot(
                extra.get("positions_init", {}),
                extra.get("positions_final", {}),
                cfg.model.dilated_kernel_size,
                Path(tmp) / "dcls_positions.png",
            )
            if png is not None:
                mlflow.log_artifact(run_id, str(png))
