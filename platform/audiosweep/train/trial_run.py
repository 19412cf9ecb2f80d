"""One trial's MLflow run: opened before training, closed with its summary and artifacts.

Sweep trials (a child run of the sweep's parent) and single `audiosweep train` runs (a run of
their own in the `audiosweep-train` experiment) log the same params, per-epoch metrics,
summary metrics, tags and artifacts, so they compare side by side in the MLflow UI.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from audiosweep import tracking
from audiosweep.config import TrialConfig
from audiosweep.train.dataset_inputs import log_dataset_inputs

SINGLE_RUN_EXPERIMENT = "audiosweep-train"
SUMMARY_TAGS = ("cost_clip_shape",)


class TrialRun:
    """An open MLflow run for one trial; `callbacks()` log each epoch, `finish` closes it."""

    def __init__(self, uri: str, run_id: str, cfg: TrialConfig) -> None:
        self.uri = uri
        self.run_id = run_id
        self.cfg = cfg
        self.mlflow = tracking.client(uri)
        self.started = time.time()
        log_dataset_inputs(self.mlflow, run_id, cfg.data)

    @classmethod
    def open_single(cls, uri: str, cfg: TrialConfig) -> TrialRun:
        """A top-level run for `audiosweep train`, found again by name when resumed."""
        mlflow = tracking.client(uri)
        exp_id = tracking.experiment_id(mlflow, SINGLE_RUN_EXPERIMENT)
        tags = {tracking.TRIAL_TAG: f"{cfg.run_root}/{cfg.name}", tracking.ROLE_TAG: "train"}
        found = tracking.find_run(mlflow, exp_id, tags)
        if found is not None:
            mlflow.update_run(found.info.run_id, status="RUNNING")
            run_id = found.info.run_id
        else:
            run_id = mlflow.create_run(
                exp_id, run_name=cfg.name, tags={**tags, **trial_tags(cfg)}
            ).info.run_id
        run = cls(uri, run_id, cfg)
        tracking.log_params(mlflow, run_id, cfg.flat())
        return run

    @property
    def url(self) -> str:
        exp_id = self.mlflow.get_run(self.run_id).info.experiment_id
        return f"{self.uri.rstrip('/')}/#/experiments/{exp_id}/runs/{self.run_id}"

    def callbacks(self) -> list[Any]:
        return [tracking.MLflowEpochCallback(self.uri, self.run_id)]

    def finish(self, result: Any, run_dir: str) -> dict[str, Any]:
        """Log the summary metrics and artifacts of a finished `Result`; close the run."""
        final = dict(result.metrics or {})
        summary = {
            "final_map": final.get("eval_map"),
            "best_map": final.get("best_map"),
            # Single-label runs, and the final evaluation with test-time augmentation (None: absent).
            "final_accuracy": final.get("eval_accuracy"),
            "final_log_loss": final.get("eval_log_loss"),
            "final_map_tta": final.get("eval_map_tta"),
            "final_accuracy_tta": final.get("eval_accuracy_tta"),
            "final_log_loss_tta": final.get("eval_log_loss_tta"),
            "params_total": final.get("params_total"),
            "params_dcls_positions": final.get("params_dcls_positions"),
            "train_samples_per_s": final.get("train_samples_per_s"),
            "macs_per_clip": final.get("macs_per_clip"),
            "train_step_peak_bytes": final.get("train_step_peak_bytes"),
            "wall_time_s": time.time() - self.started,
        }
        tracking.log_metrics(self.mlflow, self.run_id, summary, step=int(final.get("epoch", 0)))
        for tag in SUMMARY_TAGS:
            if tag in final:
                self.mlflow.set_tag(self.run_id, tag, str(final[tag]))
        if "node_id" in final:  # rank 0's node in the last epoch (a restarted trial may move)
            self.mlflow.set_tag(self.run_id, tracking.NODE_TAG, str(final["node_id"]))
        log_trial_artifacts(self.mlflow, self.run_id, run_dir, self.cfg)
        self.log_model(run_dir, step=int(final.get("epoch", 0)))
        self.mlflow.set_terminated(self.run_id, status="FINISHED")
        return summary

    def log_model(self, run_dir: Path, *, step: int) -> str | None:
        """The final weights as an MLflow logged model, linked to the metrics at `step`.
        A failure here is reported, not raised: the trial itself has finished."""
        from audiosweep.train.logged_model import log_final_model

        tags = self.mlflow.get_run(self.run_id).data.tags
        model_tags = {k: tags[k] for k in (*trial_tags(self.cfg), tracking.SWEEP_TAG) if k in tags}
        try:
            return log_final_model(
                self.uri, self.run_id, self.cfg, run_dir, step=step, tags=model_tags
            )
        except Exception as err:  # noqa: BLE001 - the metrics and artifacts are logged already
            print(f"[audiosweep] could not log the final model to MLflow: {err}")
            return None

    def fail(self, deterministic_reason: str | None = None) -> None:
        if deterministic_reason:
            self.mlflow.set_tag(self.run_id, tracking.FAILURE_TAG, deterministic_reason)
        self.mlflow.set_terminated(self.run_id, status="FAILED")


def trial_tags(cfg: TrialConfig) -> dict[str, str]:
    return {
        "arch": cfg.model.arch,
        "model_arch": cfg.model.arch,
        "conv": cfg.model.conv,
        "case": cfg.case,
        "seed": str(cfg.train.seed),
        "preset": cfg.preset,
        "git_commit": tracking.git_commit(),
    }


def log_trial_artifacts(mlflow, run_id: str, run_dir: str, cfg: TrialConfig) -> None:
    """The run folder's small files, its learning curves and, for DCLS, a plot of the kernel
    positions as initialised and as learned (from their own file, not the training state)."""
    from audiosweep.layout import METRICS_FILE, POSITIONS_FILE, TRACKED_RUN_FILES
    from audiosweep.storage import Folder
    from audiosweep.train import plots
    from audiosweep.train.checkpoint import load_positions

    folder = Folder(run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp, "run")
        scratch.mkdir()
        local = {}
        for name in (*TRACKED_RUN_FILES, POSITIONS_FILE):
            path = folder.local_file(name, scratch)
            if path is not None:
                local[name] = path
                if name in TRACKED_RUN_FILES:
                    mlflow.log_artifact(run_id, str(path))
        if METRICS_FILE in local:
            rows = plots.read_metrics(local[METRICS_FILE])
            if rows:
                png = plots.learning_curves(rows, Path(tmp) / "learning_curves.png", title=cfg.case)
                mlflow.log_artifact(run_id, str(png))
        if POSITIONS_FILE in local:
            initial, final = load_positions(local[POSITIONS_FILE])
            png = plots.dcls_positions_plot(
                initial, final, cfg.model.dilated_kernel_size, Path(tmp) / "dcls_positions.png"
            )
            if png is not None:
                mlflow.log_artifact(run_id, str(png))
