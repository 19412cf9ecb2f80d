"""MLflow tracking: a parent run per sweep, a child run per trial, epoch metrics as reported.

Runs are found again by tag (sweep id, trial key), so a resumed sweep or a restarted trial
keeps logging into the run it started instead of opening a duplicate. Everything goes through
`MlflowClient` with explicit run ids (no process-global active run), over HTTP: a file or
SQLite URI would land inside a Ray worker's session folder.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from ray.train.v2.api.callback import UserCallback

from audiosweep.errors import TrackingError

SWEEP_TAG = "audiosweep.sweep_id"
TRIAL_TAG = "audiosweep.trial_key"
ROLE_TAG = "audiosweep.role"
NODE_TAG = "audiosweep.node_id"
# Set on a trial run that failed in a way a rerun would repeat (its first error line).
FAILURE_TAG = "audiosweep.deterministic_failure"
LOCAL_URI_FILE = Path(".local") / "infra" / "mlflow_uri"
# The fingerprint (shortened) of the dataset a run or a sweep read.
DATASET_TAG = "audiosweep.dataset"


def configured_uri(explicit: str | None = None) -> str | None:
    """MLFLOW_TRACKING_URI, else the local server started by `make up`; None if neither."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri and LOCAL_URI_FILE.is_file():
        uri = LOCAL_URI_FILE.read_text().strip()
    if uri and not uri.startswith(("http://", "https://", "databricks")):
        raise TrackingError(
            f"MLFLOW_TRACKING_URI={uri!r}: use an HTTP(S) tracking server; a file or sqlite URI "
            "would be resolved inside each Ray worker's own session folder"
        )
    return uri or None


def tracking_uri(explicit: str | None = None) -> str:
    """The configured tracking server (see `configured_uri`), which must answer."""
    uri = configured_uri(explicit)
    if not uri:
        raise TrackingError(
            "no MLflow tracking server: set MLFLOW_TRACKING_URI (e.g. http://127.0.0.1:5000) "
            "or start the local one with `make up`"
        )
    check_server(uri)
    return uri


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail with a one-line `TrackingError` unless the MLflow server at `uri` answers."""
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as reply:
            if reply.status == 200:
                return
    except (OSError, urllib.error.URLError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(
            f"MLflow server {uri} is not reachable ({reason}); start it with `make up`, "
            "point MLFLOW_TRACKING_URI at a running one, or pass --no-track"
        ) from None
    raise TrackingError(f"MLflow server {uri} answered /health with an error; check its log")


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def git_commit() -> str:
    env = os.environ.get("AUDIOSWEEP_GIT_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def experiment_id(mlflow_client, family: str) -> str:
    exp = mlflow_client.get_experiment_by_name(family)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return mlflow_client.create_experiment(family)
    except Exception:  # created concurrently by another trial
        return mlflow_client.get_experiment_by_name(family).experiment_id


def find_run(mlflow_client, exp_id: str, tags: dict[str, str]):
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = mlflow_client.search_runs([exp_id], filter_string=query, max_results=2)
    return runs[0] if runs else None


def parent_run(mlflow_client, family: str, sweep_id: str, tags: dict[str, str]) -> str:
    exp_id = experiment_id(mlflow_client, family)
    found = find_run(mlflow_client, exp_id, {SWEEP_TAG: sweep_id, ROLE_TAG: "sweep"})
    if found is not None:
        mlflow_client.update_run(found.info.run_id, status="RUNNING")
        return found.info.run_id
    run = mlflow_client.create_run(
        exp_id,
        run_name=sweep_id,
        tags={SWEEP_TAG: sweep_id, ROLE_TAG: "sweep", **tags},
    )
    return run.info.run_id


def child_run(
    mlflow_client,
    *,
    family: str,
    sweep_id: str,
    parent_id: str,
    trial_key: str,
    tags: dict[str, str],
    role: str = "trial",
) -> tuple[Any, bool]:
    """(run, created) for the trial's child run, reusing the one a restarted trial opened.
    A run that already FINISHED is returned as it is (the caller skips the trial). A seed
    group's run has role ``group`` and its seeds' trial runs as children."""
    exp_id = experiment_id(mlflow_client, family)
    found = find_run(mlflow_client, exp_id, {SWEEP_TAG: sweep_id, TRIAL_TAG: trial_key})
    if found is not None:
        if found.info.status != "FINISHED":
            mlflow_client.update_run(found.info.run_id, status="RUNNING")
        return found, False
    run = mlflow_client.create_run(
        exp_id,
        run_name=trial_key,
        tags={
            "mlflow.parentRunId": parent_id,
            SWEEP_TAG: sweep_id,
            TRIAL_TAG: trial_key,
            ROLE_TAG: role,
            **tags,
        },
    )
    return run, True


def log_params(mlflow_client, run_id: str, params: dict[str, Any]) -> None:
    """Log params once: MLflow params are immutable, and a restarted trial has the same ones."""
    from mlflow.entities import Param

    existing = mlflow_client.get_run(run_id).data.params
    todo = [Param(k, _param_str(v)) for k, v in params.items() if k not in existing]
    for i in range(0, len(todo), 100):
        mlflow_client.log_batch(run_id, params=todo[i : i + 100])


def _param_str(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        out[key] = float(value)
    return out


def log_metrics(mlflow_client, run_id: str, metrics: dict[str, Any], step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, v, now, step) for k, v in numeric_metrics(metrics).items()]
    for i in range(0, len(batch), 500):
        mlflow_client.log_batch(run_id, metrics=batch[i : i + 500])


class MLflowEpochCallback(UserCallback):
    """Logs rank 0's epoch metrics to the trial's child run once the report (and its
    checkpoint) is persisted, so an epoch re-run after a restart is not logged twice."""

    EPOCH_KEYS = ("train_loss", "lr", "best_map", "train_samples_per_s", "epoch_seconds")
    # Every eval score (plain, _tta, _ema) is a curve; clip and class counts are not.
    NOT_CURVES = (
        "eval_clips",
        "eval_map_excluded_classes",
        "val_clips",
        "val_map_excluded_classes",
    )

    @classmethod
    def is_epoch_metric(cls, key: str) -> bool:
        return key in cls.EPOCH_KEYS or (
            key.startswith(("eval_", "val_")) and key not in cls.NOT_CURVES
        )

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri = uri
        self.run_id = run_id

    def after_report(self, run_context, metrics, checkpoint) -> None:
        row = metrics[0]
        epoch = int(row.get("epoch", 0))
        log_metrics(
            client(self.uri),
            self.run_id,
            {k: v for k, v in row.items() if self.is_epoch_metric(k)},
            epoch,
        )
