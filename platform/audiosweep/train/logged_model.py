"""A trial's final weights as an MLflow logged model, linked to the trial's eval metrics.

Logged once per trial, when it finishes (not per epoch), at the step of its last epoch:
MLflow links every metric the run holds at that step (eval mAP, d', final/best mAP, ...) to
the model, so the sweep's models can be ranked by eval mAP in the UI (or with
``search_logged_models``) and evaluated again with ``audiosweep evaluate models:/<model_id>``.

The model carries the weights as safetensors next to the run's config (``extra_files``);
`audiosweep evaluate` reads those and never unpickles the pickled copy that the MLflow
PyTorch flavour also stores (and MLflow 3 refuses to load by default).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from audiosweep.config import TrialConfig

MODEL_NAME = "final"
MODEL_ID_TAG = "audiosweep.model_id"
_REQUIREMENTS = ("torch", "torchaudio", "timm", "dcls", "safetensors")


def log_final_model(
    uri: str, run_id: str, cfg: TrialConfig, run_dir: Path, *, step: int, tags: dict[str, str]
) -> str | None:
    """Log ``run_dir``'s final weights as a model of run `run_id`; returns its model id (None
    when the run folder holds no final weights, e.g. a trial stopped before its last epoch)."""
    import mlflow
    import mlflow.pytorch

    from audiosweep.data import DatasetInfo
    from audiosweep.layout import CONFIG_FILE, MODEL_EMA_FILE, MODEL_FILE
    from audiosweep.models import create_model_from_config
    from audiosweep.train.checkpoint import load_model_weights

    weights = Path(run_dir) / MODEL_FILE
    if not weights.is_file():
        return None
    model = create_model_from_config(cfg, DatasetInfo.load(cfg.data.path).num_classes)
    load_model_weights(model, weights)
    extra = [weights, Path(run_dir) / CONFIG_FILE, Path(run_dir) / MODEL_EMA_FILE]
    mlflow.set_tracking_uri(uri)  # Model.log resolves the server from the process's setting
    experiment = mlflow.MlflowClient(uri).get_run(run_id).info.experiment_id
    # Without an active run, MLflow files the model under the process's current experiment
    # (the default one), not the run's: name the run's for the time of the call.
    with _env("MLFLOW_EXPERIMENT_ID", experiment), _quiet("mlflow.pytorch"):
        info = mlflow.pytorch.log_model(
            model.eval(),
            name=MODEL_NAME,
            run_id=run_id,
            step=step,
            serialization_format="pickle",
            extra_files=[str(p) for p in extra if p.is_file()],
            pip_requirements=_requirements(),  # no requirement inference (it loads the model)
            tags=tags,
        )
    tracking_client = mlflow.MlflowClient(uri)
    tracking_client.set_tag(run_id, MODEL_ID_TAG, info.model_id)
    return info.model_id


def _requirements() -> list[str]:
    out = []
    for name in _REQUIREMENTS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out.append(f"{name}=={metadata.version(name)}")
    return out


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
