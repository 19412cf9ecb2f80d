"""An evaluation as an MLflow run: tagged with the checkpoint's sha256, linked to its model.

Runs go to the ``audiosweep-evaluate`` experiment. When the checkpoint was an MLflow logged
model (``models:/<id>``), the metrics are also logged against that model, so the model's page
lists every evaluation of it.
"""

from __future__ import annotations

import time
from pathlib import Path

from audiosweep import tracking
from audiosweep.config import TrialConfig
from audiosweep.evaluate.run import Evaluation
from audiosweep.evaluate.source import CheckpointSource
from audiosweep.layout import CONFIG_FILE, EVALUATION_FILE, PER_CLASS_AP_FILE
from audiosweep.train.dataset_inputs import log_dataset_inputs

EXPERIMENT = "audiosweep-evaluate"
SHA256_TAG = "audiosweep.checkpoint_sha256"
CHECKPOINT_TAG = "audiosweep.checkpoint"


def log_evaluation(
    uri: str,
    evaluation: Evaluation,
    checkpoint: CheckpointSource,
    cfg: TrialConfig,
    report_dir: Path,
    *,
    run_name: str,
) -> str:
    """Create the evaluation run, log everything, close it; returns the run id."""
    from mlflow.entities import Metric

    mlflow = tracking.client(uri)
    exp_id = tracking.experiment_id(mlflow, EXPERIMENT)
    m = evaluation.metrics
    tags = {
        tracking.ROLE_TAG: "evaluation",
        SHA256_TAG: checkpoint.sha256,
        CHECKPOINT_TAG: checkpoint.location[:5000],
        "checkpoint_layout": checkpoint.layout,
        "case": cfg.case,
        "arch": cfg.model.arch,
        "conv": cfg.model.conv,
        "split": str(m["split"]),
        "ema": str(m["ema"]).lower(),
        "tta_views": str(m["tta_views"]),
        "git_commit": tracking.git_commit(),
        **({"model_id": checkpoint.model_id} if checkpoint.model_id else {}),
    }
    run_id = mlflow.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
    try:
        params = {
            **cfg.flat(),
            "eval.split": m["split"],
            "eval.ema": m["ema"],
            "eval.tta_views": m["tta_views"],
            "eval.workers": m["workers"],
        }
        tracking.log_params(mlflow, run_id, params)
        # The split it scored, with the dataset's fingerprint as digest, as trials log theirs.
        log_dataset_inputs(mlflow, run_id, cfg.data, {str(m["split"]): "evaluation"})
        numeric = tracking.numeric_metrics(
            {k: v for k, v in m.items() if k not in ("ema", "tta_views", "workers")}
        )
        now = int(time.time() * 1000)
        batch = [
            Metric(k, v, now, 0, model_id=checkpoint.model_id, run_id=run_id)
            for k, v in numeric.items()
        ]
        mlflow.log_batch(run_id, metrics=batch)
        for name in (EVALUATION_FILE, PER_CLASS_AP_FILE, CONFIG_FILE):
            mlflow.log_artifact(run_id, str(Path(report_dir) / name))
    except BaseException:
        mlflow.set_terminated(run_id, status="FAILED")
        raise
    mlflow.set_terminated(run_id, status="FINISHED")
    return run_id
